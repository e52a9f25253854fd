"""ONNX export with dynamic batch/height/width and segcli's self-description in metadata_props."""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path

import torch

from segcli.console import info
from segcli.errors import ConfigError, first_line
from segcli.export.heads import exportable
from segcli.inference.backends import META_KEY


def opsets() -> tuple[int, int]:
    """The ONNX opsets torch's TorchScript-based exporter (dynamo=False, used here) can write: (lowest, highest)."""
    from torch.onnx import _constants

    return (int(getattr(_constants, "ONNX_MIN_OPSET", 7)),
            int(getattr(_constants, "ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET", getattr(_constants, "ONNX_MAX_OPSET", 17))))


class AdaptiveAvgPoolAnySize(torch.nn.Module):
    """nn.AdaptiveAvgPool2d to an output of more than 1×1 (PSPNet's and UPerNet's pyramid pooling: 2, 3, 6) as two
    averaging matrices built from the input's height and width: torch's TorchScript-based ONNX exporter cannot
    write the pooling itself when height and width are dynamic ("input size not accessible"). The bins are
    torch's own: bin i of n over a side of s covers [floor(i·s/n), ceil((i+1)·s/n))."""

    def __init__(self, output_size):
        super().__init__()
        size = output_size if isinstance(output_size, (tuple, list)) else (output_size, output_size)
        self.bins = tuple(int(b) for b in size)

    @staticmethod
    def _averaging(side: torch.Tensor, bins: int, like: torch.Tensor) -> torch.Tensor:
        """(bins, side) matrix whose row i averages bin i's positions."""
        i = torch.arange(bins, device=like.device)
        start = torch.div(i * side, bins, rounding_mode="floor")
        end = torch.div((i + 1) * side + bins - 1, bins, rounding_mode="floor")
        pos = torch.arange(side, device=like.device)
        inside = ((pos[None, :] >= start[:, None]) & (pos[None, :] < end[:, None])).to(like.dtype)
        return inside / inside.sum(1, keepdim=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = torch._shape_as_tensor(x)  # traced as the input's Shape, not as constants of the example
        rows = self._averaging(shape[2], self.bins[0], x)
        cols = self._averaging(shape[3], self.bins[1], x)
        return torch.matmul(torch.matmul(rows, x), cols.transpose(0, 1))


def _psp_block_forward(self, x: torch.Tensor) -> torch.Tensor:
    """smp's PSPBlock.forward without its ONNX-export branch (F.interpolate mode="area", which the exporter
    cannot write for dynamic sizes either): its own pooling, made exportable, then its upsampling."""
    height, width = x.shape[2:]
    return torch.nn.functional.interpolate(self.pool(x), size=(height, width), mode="bilinear", align_corners=True)


def with_exportable_pooling(net: torch.nn.Module) -> torch.nn.Module:
    """`net` with every AdaptiveAvgPool2d to more than 1×1 replaced by AdaptiveAvgPoolAnySize, and smp's PSPBlocks
    taking their own pooling path when exported (in place)."""
    import types

    for module in net.modules():
        if type(module).__name__ == "PSPBlock" and isinstance(getattr(module, "pool", None), torch.nn.Sequential):
            module.forward = types.MethodType(_psp_block_forward, module)
    for name, module in list(net.named_modules()):
        size = getattr(module, "output_size", None)
        sizes = size if isinstance(size, (tuple, list)) else (size,)
        if isinstance(module, torch.nn.AdaptiveAvgPool2d) and any(s not in (1, None) for s in sizes):
            parent_name, _, child = name.rpartition(".")
            setattr(net.get_submodule(parent_name) if parent_name else net, child, AdaptiveAvgPoolAnySize(size))
    return net


DYNAMO_FALLBACK_FROM = 17  # from this --opset on, what the TorchScript-based exporter cannot write goes to torch.export
DYNAMO_MIN_OPSET = 18  # the lowest opset torch.export's ONNX exporter writes


def _first_line(err: BaseException) -> str:
    """The first line of what went wrong: torch.export wraps the cause in a multi-line how-to to debug the exporter
    ("Failed to export the model with torch.export. This is step 1/3 ..."), in terminal colours."""
    while err.__cause__ is not None:
        err = err.__cause__
    line = re.sub(r"\x1b\[[0-9;]*m", "", first_line(err))
    return line.split(". Please feel free")[0]  # torch's request for a pull request


def _export_dynamo(net: torch.nn.Module, example: torch.Tensor, path: str | Path, meta: dict, output: str,
                   label: str) -> None:
    """torch.export's ONNX exporter (onnxscript), for what the TorchScript-based one cannot write (e.g. the
    antialiased bicubic resampling of a ViT's position embeddings): batch, height and width dynamic, height and
    width multiples of meta["size_multiple"] from meta["min_size"] up to 8192."""
    step = max(int(meta["size_multiple"]), 1)
    low = max(1, -(-int(meta.get("min_size") or step) // step))
    dim = torch.export.Dim
    shapes = ({0: dim("batch", min=1, max=4096), 2: step * dim("rows", min=low, max=8192 // step),
               3: step * dim("cols", min=low, max=8192 // step)},)
    try:
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad(), _stdout_muted():
            warnings.simplefilter("ignore")
            torch.onnx.export(net, (example.repeat(2, 1, 1, 1),), str(path), input_names=["input"],
                              output_names=[output], opset_version=int(meta["opset"]), dynamic_shapes=shapes,
                              dynamo=True, verbose=False, external_data=False)
    except Exception as err:  # torch.export raises many kinds (UserError, ConstraintViolationError, …)
        _raise_missing_package(err)
        raise ConfigError(f"cannot export {label} to ONNX (torch.export, opset {meta['opset']}): {_first_line(err)}; "
                          "try --format torchscript") from None


def _raise_missing_package(err: BaseException) -> None:
    """The ImportError behind an exporter's error, raised for what segcli says of a missing or broken package (the
    pip command that installs it, exit 2): onnx or onnxscript left out of an install was 'cannot export
    unet/resnet18 …; try --opset 17 or --format torchscript', which blamed the model."""
    from segcli.errors import exception_chain

    for cause in exception_chain(err):
        if isinstance(cause, ImportError):
            raise cause
    found = re.search(r"No module named '([\w.]+)'", str(err))  # torch's message, the exception itself not chained
    if found:
        raise ModuleNotFoundError(found.group(0), name=found.group(1)) from None


@contextmanager
def _stdout_muted():
    """File descriptor 1 to /dev/null: torch's exporter prints the whole graph (hundreds of lines) to stdout, from
    C++, when it fails, and stdout carries segcli's results. Python logging off too: torch.export logs the
    tracebacks of the operators it fails on (hundreds of lines on stderr) before it raises. SEGCLI_DEBUG=1 keeps both."""
    if os.environ.get("SEGCLI_DEBUG", "") not in ("", "0"):
        yield
        return
    sys.stdout.flush()
    saved, null = os.dup(1), os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    logged = logging.root.manager.disable
    logging.disable(logging.CRITICAL)
    try:
        yield
    finally:
        logging.disable(logged)
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
        os.close(null)


def export_onnx(model: torch.nn.Module, meta: dict, path: str | Path, opset: int = 17, device: str = "cpu",
                dynamo: bool = False) -> bool:
    """Write `model` to `path` as ONNX, with `meta` (see segcli.export.metadata) as JSON in metadata_props["segcli"].

    Input "input": (N, C, H, W) normalised float32 (float16 when meta["dtype"] says so). Output "logits":
    (N, K, H, W) of the same type, or "ids": (N, H, W) uint8 when meta["output"] == "ids". Batch, height
    and width are dynamic; height and width must be multiples of meta["size_multiple"]. Written by torch's
    TorchScript-based exporter, or with `dynamo` (or when that one cannot write the model and opset >= 17) by
    torch.export's, at opset 18 at least (meta["opset"] then says which). Returns whether torch.export wrote it.
    """
    net, example = exportable(model, meta, device)
    net = with_exportable_pooling(net)
    output = "ids" if meta.get("output") == "ids" else "logits"
    out_axes = {0: "batch", 1: "height", 2: "width"} if output == "ids" else {0: "batch", 2: "height", 3: "width"}
    label = f"{meta['model']['arch']}/{meta['model']['encoder']}"
    if dynamo:
        meta["opset"] = max(int(opset), DYNAMO_MIN_OPSET)
        _export_dynamo(net, example, path, meta, output, label)
    else:
        dynamo = _export_torchscript_based(net, example, path, meta, output, out_axes, label, opset)
    _add_meta(path, meta, output)
    return dynamo


def _export_torchscript_based(net, example, path, meta: dict, output: str, out_axes: dict, label: str,
                              opset: int) -> bool:
    """The TorchScript-based exporter; what it cannot write goes to torch.export's from opset 17 on (True then)."""
    try:
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad(), _stdout_muted():
            warnings.simplefilter("ignore")
            torch.onnx.export(net, (example,), str(path), input_names=["input"], output_names=[output],
                              opset_version=int(opset), dynamic_axes={"input": {0: "batch", 2: "height", 3: "width"},
                                                                      output: out_axes},
                              dynamo=False)
    except (ValueError, RuntimeError, torch.onnx.errors.OnnxExporterError) as err:
        _raise_missing_package(err)
        first = _first_line(err)
        if int(opset) < DYNAMO_FALLBACK_FROM:
            raise ConfigError(f"cannot export {label} to ONNX opset {opset}: {first}; try --opset "
                              f"{DYNAMO_FALLBACK_FROM} or --format torchscript") from None
        meta["opset"] = max(int(opset), DYNAMO_MIN_OPSET)
        info(f"export: torch's TorchScript-based exporter cannot write {label} ({first}); exporting with "
             f"torch.export at opset {meta['opset']}")
        _export_dynamo(net, example, path, meta, output, label)
        return True
    return False


def _add_meta(path: str | Path, meta: dict, output: str) -> None:
    import onnx

    proto = onnx.load(str(path))
    entry = proto.metadata_props.add()
    entry.key, entry.value = META_KEY, json.dumps(meta)
    proto.doc_string = f"segcli {meta['model']['arch']}/{meta['model']['encoder']}: {len(meta['classes'])} classes, output {output}"
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))
