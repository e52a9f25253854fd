"""TorchScript export (torch.jit.trace) with segcli's self-description as the extra file "segcli.json"."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch

from segcli.errors import ConfigError, first_line
from segcli.export.heads import exportable
from segcli.inference.backends import TORCHSCRIPT_META


def export_torchscript(model: torch.nn.Module, meta: dict, path: str | Path, device: str = "cpu") -> None:
    """Trace `model` and save it to `path`, with `meta` (see segcli.export.metadata) as JSON in `_extra_files`.

    The traced module maps (N, C, H, W) normalised float32 (float16 when meta["dtype"] says so) to
    (N, K, H, W) logits, or (N, H, W) uint8 ids when meta["output"] == "ids"; any batch, height and
    width (multiples of meta["size_multiple"]). Load it with
    `torch.jit.load(path, _extra_files={"segcli.json": ""})`.
    """
    net, example = exportable(model, meta, device)
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")  # torch.jit is deprecated upstream, and tracing warns about shape arithmetic
        try:
            traced = torch.jit.trace(net, (example,), check_trace=False)
        except (RuntimeError, TypeError, ValueError) as err:
            first = first_line(err)
            raise ConfigError(f"cannot trace {meta['model']['arch']}/{meta['model']['encoder']} to TorchScript: {first}; "
                              "try --format onnx") from None
        with open(path, "wb") as handle:  # through Python: torch's own file writer aborts the process on a full disk
            torch.jit.save(traced, handle, _extra_files={TORCHSCRIPT_META: json.dumps(meta)})
