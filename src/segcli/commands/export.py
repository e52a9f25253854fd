"""segcli export: checkpoint → ONNX, verified on real images before it is put in place."""

from __future__ import annotations

import os
from pathlib import Path

from segcli.console import info, result
from segcli.errors import CheckFailed, ConfigError, DataError


def _verification_images(cfg, meta: dict) -> list:
    from segcli.data.card import load_card
    from segcli.inference.io import list_images, read_image

    limit = int(cfg.verify_max_images)
    if cfg.verify_images:
        paths = list_images(cfg.verify_images)
        source = str(cfg.verify_images)
    else:
        dataset = meta.get("dataset", {})
        root = dataset.get("root")
        if not root or not (Path(root) / "dataset.yaml").is_file():
            raise ConfigError(f"the checkpoint's dataset {root} is not available to verify on; pass --verify-images DIR")
        paths = [image for image, _ in load_card(root).pairs(dataset.get("val_split", "val"))]
        source = f"{root} ({dataset.get('val_split', 'val')})"
    if not paths:
        raise DataError(f"{source}: no images to verify the export on")
    info(f"export: verifying on {min(limit, len(paths))} images from {source}")
    return [read_image(p) for p in paths[:limit]]


def run(cfg) -> Path:
    from segcli.export.onnx import export_onnx
    from segcli.export.verify import compare
    from segcli.inference.backends import load_torch_model, onnx_predictor
    from segcli.inference.predictor import Predictor

    if not cfg.ckpt:
        raise ConfigError("no checkpoint given; pass --ckpt RUN_DIR/checkpoints/best.ckpt")
    if cfg.format != "onnx":
        raise ConfigError(f"unknown --format '{cfg.format}'; choose from onnx")
    model, meta = load_torch_model(cfg.ckpt)
    out = Path(cfg.out) if cfg.out else Path(cfg.ckpt).with_suffix(".onnx")
    out.parent.mkdir(parents=True, exist_ok=True)
    images = _verification_images(cfg, meta)

    staging = out.with_name(f".{out.name}.partial-{os.getpid()}")
    try:
        export_onnx(model, meta, staging, opset=int(cfg.opset))
        reference = Predictor(model, meta, "cpu", batch_size=1)
        parity = compare(reference, onnx_predictor(staging, batch_size=1), images)
        info(f"export: max |logit diff| {parity.max_abs_logit_diff:.2e}, argmax agreement "
             f"{parity.argmax_agreement * 100:.4f}% over {parity.images} images")
        tol = cfg.verify
        if not parity.ok(float(tol.max_abs_logit_diff), float(tol.min_argmax_agreement)):
            raise CheckFailed(f"{out}: exported model disagrees with the checkpoint (max |logit diff| "
                              f"{parity.max_abs_logit_diff:.2e} > {tol.max_abs_logit_diff} or agreement "
                              f"{parity.argmax_agreement:.6f} < {tol.min_argmax_agreement}); the file was not written")
        os.replace(staging, out)
    finally:
        staging.unlink(missing_ok=True)
    result(str(out.resolve()))
    return out
