"""inference.amp: validated everywhere, applied on CUDA only (the CPU result is unchanged)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from segcli.errors import ConfigError
from segcli.inference.predictor import Predictor

META = {"classes": ["a", "b", "c"], "palette": [[0, 0, 0], [1, 1, 1], [2, 2, 2]], "ignore_index": 255,
        "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25], "size_multiple": 8, "model": {"in_channels": 3}}


def _predictor(amp: str) -> Predictor:
    torch.manual_seed(0)
    net = torch.nn.Conv2d(3, 3, 3, padding=1).eval()
    return Predictor(net, META, "cpu").configure(OmegaConf.create({"mode": "whole", "amp": amp}))


def test_amp_is_ignored_on_cpu():
    image = np.random.default_rng(0).integers(0, 256, (21, 35, 3), dtype=np.uint8)
    plain = _predictor("none").logits([image])
    for amp in ("bf16", "fp16"):
        assert torch.equal(_predictor(amp).logits([image]), plain)


def test_unknown_amp_is_a_config_error():
    with pytest.raises(ConfigError, match="did you mean bf16"):
        _predictor("bf61")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_bf16_autocast_on_cuda_stays_close():
    image = np.random.default_rng(0).integers(0, 256, (64, 96, 3), dtype=np.uint8)
    full = _predictor("none")
    half = _predictor("bf16")
    for p in (full, half):
        p.device = torch.device("cuda")
        p.forward = p.forward.cuda()
    a, b = full.logits([image]).cpu(), half.logits([image]).cpu()
    assert b.dtype == torch.float32
    assert (a.argmax(1) == b.argmax(1)).float().mean() > 0.99
