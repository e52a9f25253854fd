"""Shared fixtures for the predict tests: an untrained (random, seeded) checkpoint.

No training: a resnet18 U-Net with seeded random weights is saved in the segcli checkpoint format,
so every test predicts with a real model in a fraction of a second.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from predict_helpers import CLASSES, PALETTE


@pytest.fixture(scope="session")
def ckpt(tmp_path_factory) -> Path:
    import torch

    from segcli.models.factory import build_model

    torch.manual_seed(0)
    kwargs = {"arch": "unet", "encoder": "resnet18", "classes": len(CLASSES)}
    model = build_model(**kwargs)
    meta = {"classes": CLASSES, "palette": PALETTE, "ignore_index": 255, "mean": [0.485, 0.456, 0.406],
            "std": [0.229, 0.224, 0.225], "size_multiple": 32, "model": kwargs}
    path = tmp_path_factory.mktemp("model") / "random.ckpt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
                "hyper_parameters": {"meta": meta}}, path)
    return path


