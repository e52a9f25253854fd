"""Helpers for the predict tests (a unique module name: tests/ has other conftest modules)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

CLASSES = ["background", "road", "building", "tree"]
PALETTE = [[0, 0, 0], [128, 64, 128], [70, 70, 70], [107, 142, 35]]


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
