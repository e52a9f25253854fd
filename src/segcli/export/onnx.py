"""ONNX export with dynamic batch/height/width and segcli's self-description in metadata_props."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch

from segcli.inference.backends import META_KEY


def export_onnx(model: torch.nn.Module, meta: dict, path: Path, opset: int = 17, sample_hw: tuple[int, int] | None = None) -> None:
    """Write `model` ((N, C, H, W) normalised float32 → (N, K, H, W) logits) to `path` as ONNX.

    Input "input" and output "logits" have dynamic batch, height and width; the
    JSON `meta` (classes, palette, normalisation, size multiple, ...) is stored
    under metadata_props["segcli"].
    """
    import onnx

    multiple = int(meta["size_multiple"])
    h, w = sample_hw or (2 * max(multiple, 32), 3 * max(multiple, 32))
    dummy = torch.zeros(1, int(meta["model"]["in_channels"]), h, w)
    model = model.eval().to(memory_format=torch.contiguous_format)
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (dummy,), str(path), input_names=["input"], output_names=["logits"], opset_version=opset,
                          dynamic_axes={"input": {0: "batch", 2: "height", 3: "width"},
                                        "logits": {0: "batch", 2: "height", 3: "width"}},
                          dynamo=False)
    proto = onnx.load(str(path))
    entry = proto.metadata_props.add()
    entry.key, entry.value = META_KEY, json.dumps(meta)
    onnx.save(proto, str(path))
