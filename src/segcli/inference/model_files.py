"""Model files named on the command line (--ckpt, --model): which kind each is and whether it is there, without
importing torch, so that a usage error in eval, predict or export is said before the heavy imports."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

from segcli.errors import ConfigError, DataError


def refuse_folder(path: str | Path) -> None:
    """A DataError for a folder given where a model file belongs (a run directory as --ckpt or --model), naming the
    checkpoint inside it to pass: it was 'model file not found', of a folder that is there."""
    path = Path(path)
    if not path.is_dir():
        return
    found = next((path / sub / name for name in ("best.ckpt", "last.ckpt") for sub in ("checkpoints", "")
                  if (path / sub / name).is_file()), None)
    fix = f"pass --ckpt {found}" if found else \
        "pass a .ckpt checkpoint (RUN_DIR/checkpoints/best.ckpt) or an exported file"
    raise DataError(f"{path}: a folder, not a model file; {fix}")


def check_model_there(path: str | Path) -> None:
    """A DataError for a --ckpt/--model that is not there (a folder: the checkpoint inside it to pass)."""
    refuse_folder(path)
    if not Path(path).is_file():
        raise DataError(f"{path}: model file not found; pass a .ckpt checkpoint or a file written by `segcli export`")


def model_kind(path: str | Path) -> str:
    """'onnx', 'torchscript' or 'checkpoint', from the suffix (.onnx) or the archive's content."""
    path = Path(path)
    check_model_there(path)
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            if any(name.endswith("/constants.pkl") for name in archive.namelist()):
                return "torchscript"
        return "checkpoint"
    if path.suffix.lower() == ".onnx" or _onnx_header(path):
        return "onnx"
    return "checkpoint"


def _onnx_header(path: Path) -> bool:
    """Whether the file starts as an ONNX ModelProto does: field 1 (ir_version, a small varint) first. A renamed
    export (model.bin) is thus still run by onnxruntime; a torch checkpoint starts with a zip or pickle header."""
    with open(path, "rb") as handle:
        head = handle.read(2)
    return len(head) == 2 and head[0] == 0x08 and 1 <= head[1] <= 64


def model_paths(value) -> list[str]:
    """--ckpt/--model as the config holds it (null, one path, or a list of paths: an ensemble) → the paths. A path
    given twice is a usage error: it would weigh that model double without a word."""
    values = [] if value is None or value == "" else [value] if isinstance(value, (str, Path)) else list(value)
    if any(v is None or not str(v).strip() for v in values):  # ckpt=[a,null] or [a,''] read None or '.' as a file
        raise ConfigError(f"{[None if v is None else str(v) for v in values]}: an empty entry; give each model's path")
    paths = [str(v) for v in values]
    seen: dict = {}  # file → the path that named it first
    for path in paths:
        try:  # the same file under another name: a symlink, a hard link, another spelling of its path
            key = os.stat(path)[1:3]  # (inode, device)
        except OSError:
            key = os.path.realpath(path)
        if key in seen:
            first = seen[key]
            also = "" if first == path else f" (as {first})"
            raise ConfigError(f"{path}: given twice{also}; an ensemble names each model once")
        seen[key] = path
    return paths


def check_checkpoint_there(path: str | Path) -> None:
    """A DataError for a --ckpt that is not there (a folder: the checkpoint inside it to pass)."""
    refuse_folder(path)
    if not Path(path).is_file():
        raise DataError(f"{path}: checkpoint not found; pass --ckpt RUN_DIR/checkpoints/best.ckpt")
