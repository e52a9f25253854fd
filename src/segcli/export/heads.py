"""Wrappers that set what an exported network returns."""

from __future__ import annotations

import copy

import torch
from torch import nn


class ArgmaxHead(nn.Module):
    """(N, C, H, W) input → the wrapped network's (N, K, H, W) logits → (N, H, W) class ids.

    The ids are uint8 when K <= 256 (int32 otherwise), so a consumer gets a label image directly.
    Ties go to the lowest class id, as in torch.argmax and ONNX ArgMax.
    """

    def __init__(self, model: nn.Module, num_classes: int):
        super().__init__()
        self.model = model
        self.ids_dtype = torch.uint8 if num_classes <= 256 else torch.int32

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).argmax(1).to(self.ids_dtype)


def exportable(model: nn.Module, meta: dict, device: str | torch.device = "cpu") -> tuple[nn.Module, torch.Tensor]:
    """A copy of `model` to export (with ArgmaxHead when meta["output"] == "ids"), in eval mode, in
    meta["dtype"], on `device`; and an example (1, C, H, W) input whose H and W are 2× and 3× the size
    multiple (at least 64 × 96, and at least meta's min_size; verification then runs other sizes, so nothing
    depends on this one)."""
    dtype = torch.float16 if meta.get("dtype") == "float16" else torch.float32
    model = copy.deepcopy(model)
    net = ArgmaxHead(model, len(meta["classes"])) if meta.get("output") == "ids" else model
    net = net.eval().to(device=device, dtype=dtype, memory_format=torch.contiguous_format)
    example = torch.zeros(1, int(meta["model"]["in_channels"]), *example_size(meta), device=device, dtype=dtype)
    return net, example


def example_size(meta: dict) -> tuple[int, int]:
    """(H, W) of the example input the exporters trace with: 2× and 3× the size multiple (at least 64 × 96), H at
    least meta's min_size (a network with a minimum input, PAN), W one multiple more."""
    step = max(int(meta["size_multiple"]), 32)
    side = -(-max(2 * step, int(meta.get("min_size") or 0)) // step) * step
    return side, side + step
