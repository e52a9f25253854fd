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
    """`segcli ARGS` → its exit code, stdout and stderr. In this process (torch, Lightning and smp are imported
    once, not per call: seconds each) on one thread, as a fresh interpreter would run with OMP_NUM_THREADS=1;
    in a fresh interpreter (this worktree's code) where a folder or environment is given, and for multi-process
    (DDP) runs, which Lightning starts by running the command line again."""
    if cwd is not None or env or any("ddp" in str(a) or "devices=" in str(a) for a in args):
        env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1", **(env or {})}
        return subprocess.run([sys.executable, "-m", "segcli", *map(str, args)], env=env, capture_output=True,
                              text=True, timeout=timeout, cwd=cwd)
    return _in_process([str(a) for a in args])


def _in_process(argv: list[str]) -> subprocess.CompletedProcess:
    import contextlib
    import io

    import torch

    from helpers_cli import run_in_process

    out, err = io.StringIO(), io.StringIO()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = run_in_process(argv)
    finally:
        torch.set_num_threads(threads)
    return subprocess.CompletedProcess(["segcli", *argv], code, out.getvalue(), err.getvalue())


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """A prepared synthetic dataset: 12 images of 48x64 (train and val splits), 6 classes + ignore."""
    root = tmp_path_factory.mktemp("surface") / "syn"
    proc = segcli("prepare", "synthetic", "--out", root, "--num-images", "12", "synthetic.height=48", "synthetic.width=64")
    assert proc.returncode == 0, proc.stderr[-2000:]
    return root
