"""ONNX export with dynamic batch/height/width and segcli's self-description in metadata_props."""

from __future__ import annotations

import json
import os
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path

import torch

from segcli.errors import ConfigError
from segcli.export.heads import exportable
from segcli.inference.backends import META_KEY


def opsets() -> tuple[int, int]:
    """The ONNX opsets torch's TorchScript-based exporter (dynamo=False, used here) can write: (lowest, highest)."""
    from torch.onnx import _constants

    return (int(getattr(_constants, "ONNX_MIN_OPSET", 7)),
            int(getattr(_constants, "ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET", getattr(_constants, "ONNX_MAX_OPSET", 17))))


@contextmanager
def _stdout_muted():
    """File descriptor 1 to /dev/null: torch's exporter prints the whole graph (hundreds of lines) to stdout, from
    C++, when it fails, and stdout carries segcli's results. SEGCLI_DEBUG=1 keeps it."""
    if os.environ.get("SEGCLI_DEBUG", "") not in ("", "0"):
        yield
        return
    sys.stdout.flush()
    saved, null = os.dup(1), os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
        os.close(null)


def export_onnx(model: torch.nn.Module, meta: dict, path: str | Path, opset: int = 17, device: str = "cpu") -> None:
    """Write `model` to `path` as ONNX, with `meta` (see segcli.export.metadata) as JSON in metadata_props["segcli"].

    Input "input": (N, C, H, W) normalised float32 (float16 when meta["dtype"] says so). Output "logits":
    (N, K, H, W) of the same type, or "ids": (N, H, W) uint8 when meta["output"] == "ids". Batch, height
    and width are dynamic; height and width must be multiples of meta["size_multiple"].
    """
    import onnx

    net, example = exportable(model, meta, device)
    output = "ids" if meta.get("output") == "ids" else "logits"
    out_axes = {0: "batch", 1: "height", 2: "width"} if output == "ids" else {0: "batch", 2: "height", 3: "width"}
    try:
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad(), _stdout_muted():
            warnings.simplefilter("ignore")
            torch.onnx.export(net, (example,), str(path), input_names=["input"], output_names=[output],
                              opset_version=int(opset), dynamic_axes={"input": {0: "batch", 2: "height", 3: "width"},
                                                                      output: out_axes},
                              dynamo=False)
    except (ValueError, RuntimeError, torch.onnx.errors.OnnxExporterError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        first = first.split(". Please feel free")[0][:200]  # torch's request for a pull request
        raise ConfigError(f"cannot export {meta['model']['arch']}/{meta['model']['encoder']} to ONNX opset {opset}: "
                          f"{first}; try another --opset (e.g. 17) or --format torchscript") from None
    proto = onnx.load(str(path))
    entry = proto.metadata_props.add()
    entry.key, entry.value = META_KEY, json.dumps(meta)
    proto.doc_string = f"segcli {meta['model']['arch']}/{meta['model']['encoder']}: {len(meta['classes'])} classes, output {output}"
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))
