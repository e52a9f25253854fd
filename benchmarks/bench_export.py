"""`make bench` figure for `segcli export`: onnxruntime CPU latency vs torch eager for Unet/resnet18 at
384×480 (CamVid's 360×480 padded to the size multiple), with the fp32 parity of the same export measured
in the same run: max |logit diff| and argmax pixel agreement on real images.

Goals (issue 7): latency ratio ≤ 1.0, max |logit diff| ≤ 1e-4, argmax agreement ≥ 99.99%.

The model is the checkpoint given with --ckpt (or $SEGCLI_BENCH_CKPT), else a Unet/resnet18 with a fixed
random initialisation and CamVid's 11 classes. Parity images: that checkpoint's val images when
available, else CamVid-mini's val images (/work/shared/datasets/camvid-mini or $SEGCLI_BENCH_IMAGES),
else synthetic street scenes at 360×480. Both backends use the session options of conf/export.yaml and
this process's torch threads; runs alternate torch, onnxruntime, torch, ... (see segcli.export.benchmark).

    python benchmarks/bench_export.py [--runs 15] [--ckpt CKPT]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

SIZE = (360, 480)  # CamVid's resolution; the Predictor pads it to 384×480 for a size multiple of 32
CAMVID_MINI = Path("/work/shared/datasets/camvid-mini")
CMD = "python benchmarks/bench_export.py --runs N [--ckpt CKPT]   (per model: segcli export --ckpt CKPT --benchmark)"


def _model(ckpt: str | None):
    """(model, meta): a checkpoint's, or a seeded random Unet/resnet18 with CamVid-like meta."""
    import torch

    from segcli import __version__
    from segcli.inference.backends import load_torch_model
    from segcli.models.factory import build_model, size_multiple

    if ckpt:
        return load_torch_model(ckpt)
    torch.manual_seed(0)
    kwargs = {"arch": "unet", "encoder": "resnet18", "in_channels": 3, "classes": 11, "kwargs": {}}
    model = build_model(**kwargs).eval()
    meta = {"segcli_version": __version__, "classes": [f"class{i}" for i in range(11)], "palette": [[i * 20] * 3 for i in range(11)],
            "ignore_index": 255, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
            "size_multiple": size_multiple(model), "model": kwargs, "dataset": {}}
    return model, meta


def _images(meta: dict, limit: int = 8) -> tuple[list, str]:
    """Up to `limit` real (H, W, 3) uint8 RGB images, and where they came from."""
    from segcli.inference.io import list_images, read_image

    root = (meta.get("dataset") or {}).get("root")
    split = (meta.get("dataset") or {}).get("val_split", "val")
    candidates = [Path(root) / "images" / split] if root else []
    candidates += [Path(os.environ.get("SEGCLI_BENCH_IMAGES", CAMVID_MINI / "val"))]
    for folder in candidates:
        paths = list_images(folder) if folder.is_dir() else []
        if paths:
            return [read_image(p) for p in paths[:limit]], str(folder)
    from segcli.data.formats.synthetic import generate

    return [image for _, image, _ in generate(limit, seed=0, height=SIZE[0], width=SIZE[1])], "synthetic 360×480"


def bench_export(runs: int, ckpt: str | None = None) -> dict:
    """One row for benchmarks/run.py: a = onnxruntime CPU, b = torch eager (median seconds per 1×3×384×480
    forward), ratio = median of the per-pair ratios a/b; plus the fp32 parity figures of the same export."""
    import torch

    from segcli.config import compose
    from segcli.export.benchmark import benchmark_input, paired
    from segcli.export.metadata import export_meta
    from segcli.export.onnx import export_onnx
    from segcli.export.verify import compare
    from segcli.inference.backends import eager_predictor, onnx_predictor

    ckpt = ckpt or os.environ.get("SEGCLI_BENCH_CKPT") or None
    cfg = compose("export", [])
    model, meta = _model(ckpt)
    images, source = _images(meta)
    with tempfile.TemporaryDirectory(prefix="segcli-bench-") as tmp:
        path = Path(tmp) / "model.onnx"
        exported_meta = export_meta(meta, ckpt, "onnx", False, False, int(cfg.opset)) if ckpt else {**meta, "output": "logits"}
        export_onnx(model, exported_meta, path, opset=int(cfg.opset))
        torch_eager = eager_predictor(model, meta, "cpu", batch_size=1)
        ort = onnx_predictor(path, "cpu", 1, str(cfg.onnxruntime.graph_optimization), int(cfg.onnxruntime.intra_op_threads))
        parity = compare(torch_eager, ort, images)
        x = benchmark_input(torch_eager, images[0], SIZE)  # 360×480, zero-padded to 384×480 as the Predictor does
        timings, ratios = paired({"torch eager": torch_eager.forward, "onnxruntime": ort.forward}, x, runs)
    size = tuple(x.shape[-2:])
    b, a = timings[0].latency_s, timings[1].latency_s
    ratio = statistics.median(ratios)  # per-pair onnxruntime / torch eager
    diff, agree = parity.max_abs_logit_diff, parity.argmax_agreement
    ok = ratio <= 1.0 and diff <= 1e-4 and agree >= 0.9999
    model_name = f"{meta['model']['arch']}/{meta['model']['encoder']}" + ("" if ckpt else " (random init)")
    return {"name": f"Export {model_name} at {size[0]}×{size[1]}, {torch.get_num_threads()} threads: onnxruntime CPU latency / "
                    f"torch eager; fp32 max |logit diff| {diff:.1e}, argmax agreement {agree * 100:.4f}% "
                    f"on {parity.images} images ({source})",
            "a": a, "b": b, "ratio": ratio, "goal": "≤ 1.0, diff ≤ 1e-4, agreement ≥ 99.99%", "ok": ok, "cmd": CMD,
            "max_abs_logit_diff": diff, "argmax_agreement": agree, "miou_vs_torch": parity.miou}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=15, help="timed runs per backend (alternating)")
    parser.add_argument("--ckpt", default=None, help="a segcli checkpoint (default: $SEGCLI_BENCH_CKPT or random Unet/resnet18)")
    args = parser.parse_args()
    sys.stdout.write(json.dumps(bench_export(args.runs, args.ckpt), indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
