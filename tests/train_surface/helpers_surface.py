"""Shared fixtures of the training-surface tests: a tiny prepared dataset and a CLI runner."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
QUICK = ["trainer.max_epochs=1", "data.num_workers=0", "augment.crop_size=[32,32]", "trainer.enable_progress_bar=false",
         "data.batch_size=4"]


def segcli(*args, timeout: int = 300, cwd=None, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run `python -m segcli ARGS` in a fresh interpreter (this worktree's code); `env`: added variables."""
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "segcli", *map(str, args)], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=cwd)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """A prepared synthetic dataset: 12 images of 48x64 (train and val splits), 6 classes + ignore."""
    root = tmp_path_factory.mktemp("surface") / "syn"
    proc = segcli("prepare", "synthetic", "--out", root, "--num-images", "12", "synthetic.height=48", "synthetic.width=64")
    assert proc.returncode == 0, proc.stderr[-2000:]
    return root
