"""Shared fixtures for the predict tests: an untrained (random, seeded) checkpoint and in-process CLI calls.

No training: a resnet18 U-Net with seeded random weights is saved in the segcli checkpoint format,
so every test predicts with a real model in a fraction of a second.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

CLASSES = ["background", "road", "building", "tree"]
PALETTE = [[0, 0, 0], [128, 64, 128], [70, 70, 70], [107, 142, 35]]


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


def run_cli(args: list) -> int:
    from segcli.cli import main

    try:
        main([str(a) for a in args])
    except SystemExit as done:
        return int(done.code or 0)
    return 0


@pytest.fixture
def cli(capsys):
    """cli(*args) → (exit code, stdout, stderr) of `segcli ARGS` run in this process."""

    def call(*args):
        capsys.readouterr()
        code = run_cli(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    return call


def subprocess_cli(*args, cwd, stdin: str | None = None, **kwargs) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "SEGCLI_DEBUG"}
    return subprocess.run([sys.executable, "-m", "segcli", *map(str, args)], cwd=str(cwd), env=env, input=stdin,
                          capture_output=True, text=True, timeout=300, **kwargs)


def scene(height: int, width: int, seed: int) -> np.ndarray:
    """(H, W, 3) uint8 RGB with some structure (blocks of colour plus noise)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (max(1, height // 16), max(1, width // 16), 3), dtype=np.uint8)
    import cv2

    big = cv2.resize(small, (width, height), interpolation=cv2.INTER_NEAREST)
    return np.clip(big.astype(np.int16) + rng.integers(-20, 20, big.shape), 0, 255).astype(np.uint8)


def write_images(folder: Path, count: int, height: int = 64, width: int = 80, suffix: str = ".png") -> list[Path]:
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"img_{i:03d}{suffix}"
        assert cv2.imwrite(str(path), cv2.cvtColor(scene(height, width, i), cv2.COLOR_RGB2BGR))
        paths.append(path)
    return paths
