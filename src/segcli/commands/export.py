"""segcli export: checkpoint → ONNX or TorchScript, verified on real images before it is put in place.

Order: check the options, load the checkpoint, export to a hidden staging file next to --out, load
that file back through the shared Predictor and compare it with the checkpoint's torch model on real
images; only when it is within the tolerances is it renamed to --out. Then, with --benchmark, time
torch eager against the exported model.
"""

from __future__ import annotations

import os
import shlex
import stat
from pathlib import Path

from segcli.console import counted, info, print_wide, result, stdout_console
from segcli.errors import CheckFailed, ConfigError, DataError

FORMATS = {"onnx": ".onnx", "torchscript": ".pt"}  # format → default suffix of --out
DEFAULT_OPSET = 17  # what an ONNX export uses when --opset is not given (conf/export.yaml: opset null)


def _check_options(cfg) -> None:
    """Fail fast (exit 2) on options that cannot work, before anything is loaded or written."""
    if not cfg.ckpt:
        raise ConfigError("no checkpoint given; pass --ckpt RUN_DIR/checkpoints/best.ckpt")
    from omegaconf import OmegaConf

    if OmegaConf.is_list(cfg.ckpt):  # ckpt=[a,b], Hydra's list (two --ckpt options are refused by the CLI)
        from segcli.inference.model_files import model_paths

        paths = model_paths(cfg.ckpt) if len(cfg.ckpt) == 1 else [str(v) for v in cfg.ckpt]
        if len(paths) != 1:
            raise ConfigError(f"ckpt={paths}: export writes one model from one checkpoint; run export once per "
                              "checkpoint (predict and eval take several, as an ensemble)")
        cfg.ckpt = paths[0]
    _check_is_checkpoint(cfg.ckpt)  # a missing file or a folder (exit 3), before torch is loaded (seconds)
    if cfg.format not in FORMATS:
        raise ConfigError(f"unknown --format '{cfg.format}'; choose from {', '.join(FORMATS)}")
    if cfg.out:
        suffix = Path(cfg.out).suffix.lower()
        if Path(cfg.out).is_dir():  # before the suffix: `--out runs/x/` was told "an ONNX file must end in .onnx"
            raise ConfigError(f"--out {cfg.out}: a folder, but the exported model is one file; give a file path "
                              f"such as {Path(cfg.out) / ('model' + FORMATS[cfg.format])}")
        if cfg.format == "onnx" and suffix != ".onnx":
            raise ConfigError(f"--out {cfg.out}: an ONNX file must end in .onnx (that is how `segcli predict --model` recognises it)")
        if cfg.format == "torchscript" and suffix in (".onnx", ".ckpt"):
            raise ConfigError(f"--out {cfg.out}: a TorchScript file must not end in {suffix}; use .pt")
        from segcli.inference.io import file_in_the_way

        above = file_in_the_way(Path(cfg.out).parent)  # mkdir's "File exists" blamed permissions and free space
        if above is not None:
            raise DataError(f"--out {cfg.out}: {above} is a file, not a folder; give a path in a folder")
    if cfg.format == "torchscript" and cfg.opset is not None:
        raise ConfigError(f"--opset={cfg.opset}: an ONNX opset, but --format is torchscript, which has none; "
                          "drop --opset, or export with --format onnx")
    if cfg.opset is None:
        cfg.opset = DEFAULT_OPSET if cfg.format == "onnx" else None
    _check_values(cfg)
    if cfg.half:
        import torch

        if not torch.cuda.is_available():
            raise ConfigError("--half exports float16 for a GPU and is verified there, but no CUDA device is available; "
                              "export float32 (without --half)")
        if cfg.format == "onnx" and not _ort_has_cuda():
            raise ConfigError("--half --format onnx is verified with onnxruntime's CUDA provider, which this "
                              "onnxruntime lacks; install onnxruntime-gpu, or use --format torchscript")


def _check_values(cfg) -> None:
    """The numeric settings: an opset torch's exporter writes, at least one verification image, tolerances that
    can be met (fractions in [0, 1]), benchmark sizes and counts >= 1."""
    from segcli.checks import is_size, number
    from segcli.export.onnx import opsets

    if cfg.format == "onnx":
        low, high = opsets()
        number("--opset", cfg.opset, low, high, integer=True,
               what=f"an ONNX opset from {low} to {high} (torch's exporter)")
    number("verify_max_images", cfg.verify_max_images, 1, integer=True)
    for group in ("verify", "verify_half"):
        tolerances = cfg.get(group) or {}
        number(f"{group}.max_rel_logit_diff", tolerances.get("max_rel_logit_diff"), 0)
        for key in ("min_argmax_agreement", "min_miou"):
            number(f"{group}.{key}", tolerances.get(key), 0, 1, what="a fraction from 0 to 1")
    number("onnxruntime.intra_op_threads", cfg.onnxruntime.intra_op_threads, 0, integer=True,
           what="a whole number >= 0 (0: onnxruntime's default)")
    from segcli.inference.backends import ORT_OPTIMIZATION

    level = cfg.onnxruntime.graph_optimization  # found after the export and part of its verification, unnamed
    if str(level) not in ORT_OPTIMIZATION:
        raise ConfigError(f"onnxruntime.graph_optimization={level}: choose from {', '.join(ORT_OPTIMIZATION)}")
    number("benchmark.batch_size", cfg.benchmark.batch_size, 1, integer=True)
    number("benchmark.runs", cfg.benchmark.runs, 1, integer=True)
    size = cfg.benchmark.size
    if size is not None and not is_size(size):
        raise ConfigError(f"benchmark.size={size!r}: give [height, width] in whole pixels >= 1, or null for the "
                          "verification images' size")


def _check_is_checkpoint(path) -> None:
    """--ckpt must be a checkpoint: an exported file given instead was 'not a readable checkpoint (UnpicklingError);
    it may be truncated' (ONNX), or that after a torch.load warning on stderr (TorchScript)."""
    from segcli.inference.model_files import check_checkpoint_there, model_kind

    check_checkpoint_there(path)  # a run directory: was "checkpoint not found", of a folder that is there
    kind = model_kind(path)
    if kind != "checkpoint":
        name = {"onnx": "ONNX", "torchscript": "TorchScript"}[kind]
        raise DataError(f"{path}: an exported {name} model, not a checkpoint; export from the .ckpt it came from "
                        "(RUN_DIR/checkpoints/best.ckpt)")


def _check_not_protected(cfg, out: Path) -> None:
    """An --out file whose write permission was taken away (a deployed model someone protected) is not replaced: the
    rename that puts the export in place needs only the folder's permission, so it replaced such a file silently."""
    if out.is_file() and not out.stat().st_mode & stat.S_IWUSR:  # its owner's write bit (root may write any file)
        where = f"--out {out}" if cfg.out else f"{out} (the default --out, beside the checkpoint)"
        raise ConfigError(f"{where}: a read-only file, which the export would replace; make it writable "
                          f"(chmod u+w {shlex.quote(('./' if str(out).startswith('-') else '') + str(out))}) or give "
                          "another --out")  # ./: chmod would read a leading '-' as its options


def _check_not_the_checkpoint(cfg, out: Path) -> None:
    """--out (or its default, the checkpoint's name with the format's suffix: a .pt checkpoint exported to TorchScript)
    must not be the checkpoint itself, nor a link to it: the verified export was renamed over it, the checkpoint lost."""
    ckpt = Path(cfg.ckpt)
    same = out.absolute() == ckpt.absolute() or (out.exists() and ckpt.exists() and os.path.samefile(out, ckpt))
    if same:
        other = ckpt.with_name(f"{ckpt.stem}.{cfg.format}{FORMATS[str(cfg.format)]}")
        where = f"--out {out}: is" if cfg.out else f"{ckpt}: the default --out of a {cfg.format} export is"
        raise ConfigError(f"{where} the checkpoint itself, which the export would replace; give another --out, "
                          f"such as {other}")


def _check_argmax(cfg, meta: dict) -> None:
    """--argmax needs a model run at the image's own resolution: one with input_scale != 1 has its logits resized
    back to the image before the argmax, which class ids (nearest-neighbour at best) cannot reproduce; such an
    export disagreed with the checkpoint on every boundary and failed verification (exit 1) after exporting."""
    from segcli.inference.predictor import input_scale

    scale = input_scale(meta)
    if cfg.argmax and scale != 1.0:
        raise ConfigError(f"{cfg.ckpt}: --argmax cannot reproduce this model's masks: it works at input_scale {scale:g} "
                          "and its logits are resized back to the image before the argmax, which class ids cannot be; "
                          "export without --argmax (predict and eval take the argmax)")


def _verification_images(cfg, meta: dict) -> list:
    """(H, W, C) uint8 images (RGB, or a multispectral model's channels): --verify-images DIR, else the
    checkpoint dataset's val split."""
    from segcli.data.card import load_card
    from segcli.inference.io import list_images, read_image
    from segcli.inference.predictor import image_range, read_channels

    limit = int(cfg.verify_max_images)
    if cfg.verify_images:
        if not Path(cfg.verify_images).exists():
            raise DataError(f"--verify-images {cfg.verify_images}: not found; pass a folder of images")
        paths = list_images(cfg.verify_images)
        source = str(cfg.verify_images)
    else:
        dataset = meta.get("dataset", {})
        root = dataset.get("root")
        card_file = Path(root or ".") if str(root).endswith((".yaml", ".yml")) else Path(root or ".") / "dataset.yaml"
        if not root or not card_file.is_file():  # a checkpoint of an earlier segcli may name the card file itself
            where = f"its dataset {root} is not on this machine" if root else "it names no dataset"
            raise ConfigError(f"{cfg.ckpt}: {where} to verify the export on; pass --verify-images DIR (a few real images)")
        card = load_card(root)
        split = dataset.get("val_split", "val") or next(iter(card.splits))  # null: a run trained without validation
        if split not in card.splits:  # card.pairs' fix (data.val_split=..., --split) is no option of export
            raise ConfigError(f"{cfg.ckpt}: its dataset {root} has no split '{split}' any more (splits: "
                              f"{', '.join(card.splits)}) to verify the export on; pass --verify-images DIR (a few real "
                              "images)")
        paths = [image for image, _ in card.pairs(split)]
        missing = next((p for p in paths[:limit] if not Path(p).is_file()), None)
        if missing is not None:  # read_image's fix, "check the path and permissions", left the way out unsaid
            raise DataError(f"{missing}: not found, an image of the split '{split}' the checkpoint's dataset lists to "
                            "verify the export on; restore it, or pass --verify-images DIR (a few real images)")
        source = f"{root} ({split})"
    if not paths and cfg.verify_images:  # the fix below is what the user did
        from segcli.inference.io import IMAGE_EXTENSIONS

        kinds = ", ".join(sorted(IMAGE_EXTENSIONS))
        raise DataError(f"--verify-images {cfg.verify_images}: holds no image files ({kinds}; hidden files and "
                        "folders are skipped); give a folder with a few real images")
    if not paths:
        raise DataError(f"{source}: no images to verify the export on; pass --verify-images DIR")
    count = min(limit, len(paths))
    info(f"export: verifying on {counted(count, 'image')} from {source}, and on the first at a size the "
         "export was not traced at")
    return [read_image(p, read_channels(meta), image_range(meta)) for p in paths[:limit]]


def _off_example(image, meta: dict):
    """`image` resized (nearest neighbour) so that the network's input is larger than the exporters' example input
    (segcli.export.heads.example_size) in height and width: a size the tracing baked in then fails verification even
    when every verification image pads to the example's size (images of 64x96, or 50x70), which wrote a file that
    failed on any other size. (H', W', C) of the image's dtype."""
    import math

    import numpy as np

    from segcli.export.heads import example_size
    from segcli.inference.predictor import input_scale

    step, scale = max(int(meta["size_multiple"]), 1), input_scale(meta)
    height, width = (math.ceil((side + step) / scale) for side in example_size(meta))
    rows = np.arange(height) * image.shape[0] // height
    cols = np.arange(width) * image.shape[1] // width
    return image[rows][:, cols]


def _load_exported(path: Path, fmt: str, device: str, cfg):
    from segcli.inference.backends import onnx_predictor, torchscript_predictor

    if fmt == "onnx":
        return onnx_predictor(path, device, 1, str(cfg.onnxruntime.graph_optimization), int(cfg.onnxruntime.intra_op_threads))
    return torchscript_predictor(path, device, 1)


class SizeBound(CheckFailed):
    """The exported file runs only at the size of the example input it was traced with; size: (H, W) it failed on."""

    def __init__(self, message: str, size: tuple[int, int]):
        super().__init__(message)
        self.size = size


def _verify(cfg, reference, candidate, images: list, half: bool, out: Path) -> None:
    from segcli.export.verify import CandidateFailed, compare

    try:
        parity = compare(reference, candidate, images)
    except CandidateFailed as err:
        other = "torchscript" if cfg.format == "onnx" else "onnx"
        raise SizeBound(f"{out}: the exported model {err}; the file was not written. The export holds a size of its "
                        f"example input where the model computes it from the image: try --format {other} or "
                        "another model.encoder", err.size) from None
    info(f"export: {parity.summary()}")
    tol = cfg.verify_half if half else cfg.verify
    failed = parity.failures(float(tol.max_rel_logit_diff), float(tol.min_argmax_agreement), float(tol.min_miou))
    if failed:
        key = "verify_half" if half else "verify"
        raise CheckFailed(f"{out}: the exported model disagrees with the checkpoint ({'; '.join(failed)}); the file was "
                          f"not written. Tolerances are {key}.* (see `segcli export --cfg`)")


def _ort_has_cuda() -> bool:
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers()


def _benchmark(cfg, model, meta: dict, path: Path, images: list) -> None:
    """Time torch eager vs the exported file on CPU (and on CUDA when present); print the table to stdout."""
    import copy

    import torch

    from segcli.export.benchmark import benchmark_input, benchmark_table, paired
    from segcli.inference.backends import eager_predictor

    size = tuple(int(v) for v in cfg.benchmark.size) if cfg.benchmark.size else None  # None: the image's own size
    batch = int(cfg.benchmark.batch_size)
    devices = ([] if cfg.half else ["cpu"]) + (["cuda"] if torch.cuda.is_available() else [])
    if "cuda" in devices and cfg.format == "onnx" and not _ort_has_cuda():
        info("export: benchmark on CPU only: onnxruntime has no CUDA provider here (install onnxruntime-gpu)")
        devices.remove("cuda")
    rows = []
    for device in devices:
        eager_model = copy.deepcopy(model)
        if cfg.half:
            eager_model = eager_model.half()
        torch_eager = eager_predictor(eager_model, meta, device)
        exported = _load_exported(path, cfg.format, device, cfg)
        x = benchmark_input(torch_eager, images[0], size, batch)
        x = x.half() if cfg.half else x
        name = "onnxruntime" if cfg.format == "onnx" else "torchscript"
        info(f"export: benchmarking torch eager vs {name} on {device}, {cfg.benchmark.runs} alternating runs")
        timings, ratios = paired({"torch eager": torch_eager.forward, name: exported.forward}, x, int(cfg.benchmark.runs))
        rows.append((device, timings, ratios))
    print_wide(stdout_console(), benchmark_table(rows, tuple(x.shape[-2:]), batch))


def run(cfg) -> Path:
    """Export, verify, put in place, optionally benchmark; returns (and prints as the last stdout line) the file."""
    from segcli.inference.io import missing_folders, remove_empty

    _check_options(cfg)
    out = Path(cfg.out) if cfg.out else Path(cfg.ckpt).with_suffix(FORMATS[str(cfg.format)])
    _check_not_the_checkpoint(cfg, out)
    _check_not_protected(cfg, out)
    created = missing_folders(out.parent)
    try:
        return _export(cfg, out)
    except BaseException:  # an export that failed leaves no folders behind it either
        remove_empty(created)
        raise


def _export(cfg, out: Path) -> Path:
    from segcli.export.metadata import export_meta
    from segcli.inference.backends import eager_predictor, load_torch_model
    from segcli.inference.io import not_writable, staging_path, writing

    half, fmt = bool(cfg.half), str(cfg.format)
    model, meta = load_torch_model(cfg.ckpt)
    _check_argmax(cfg, meta)
    out.parent.mkdir(parents=True, exist_ok=True)
    if not_writable(out.parent) is not None:  # failed after exporting, naming the hidden staging file
        beside = "" if cfg.out else " (by default the export goes beside the checkpoint)"
        raise DataError(f"{out.parent}: not writable, so {out.name} cannot be written there{beside}; pass --out FILE "
                        "in a folder you can write to")
    images = _verification_images(cfg, meta)
    checked = [*images, _off_example(images[0], meta)]  # and at a size the export was not traced at
    meta_out = export_meta(meta, cfg.ckpt, fmt, bool(cfg.argmax), half, int(cfg.opset) if fmt == "onnx" else None)
    device = "cuda" if half else "cpu"  # fp32 is verified on the CPU: exact arithmetic, no TF32

    staging = staging_path(out.parent, f".{out.stem}", out.suffix)
    with writing(out):  # a full disk while the file is written is named as --out, not the hidden staging file
        try:
            info(f"export: {fmt}, output {meta_out['output']}, {meta_out['dtype']}"
                 + (f", opset {cfg.opset}" if fmt == "onnx" else "") + f" → {out}"
                 + (" (replacing the file there)" if out.is_file() else ""))
            if fmt == "onnx":
                from segcli.export.onnx import DYNAMO_FALLBACK_FROM, export_onnx

                dynamo = export_onnx(model, meta_out, staging, opset=int(cfg.opset), device=device)
            else:
                from segcli.export.torchscript import export_torchscript

                export_torchscript(model, meta_out, staging, device=device)
            reference = eager_predictor(model, meta, "cpu", batch_size=1)
            try:
                _verify(cfg, reference, _load_exported(staging, fmt, device, cfg), checked, half, out)
            except SizeBound as err:
                if fmt != "onnx" or dynamo or int(cfg.opset) < DYNAMO_FALLBACK_FROM:
                    raise
                info(f"export: the TorchScript-based exporter's file runs only at its example input's size (it fails "
                     f"on a {err.size[0]}x{err.size[1]} image); exporting with torch.export instead")
                export_onnx(model, meta_out, staging, opset=int(cfg.opset), device=device, dynamo=True)
                _verify(cfg, reference, _load_exported(staging, fmt, device, cfg), checked, half, out)
            os.replace(staging, out)
        finally:
            staging.unlink(missing_ok=True)
    if cfg.benchmark.enabled:
        _benchmark(cfg, model, meta, out, images)
    result(str(out.resolve()))
    return out
