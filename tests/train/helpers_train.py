"""Shared fixtures for the train tests: a tiny synthetic dataset, the tiny training arguments, runners.

Every run is `experiment=smoke` on 8 train + 2 val synthetic 90x120 scenes: 2 optimiser steps per
epoch on 64x64 crops, a few seconds per epoch on a CPU.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

TINY = ["experiment=smoke", "trainer.enable_progress_bar=false"]  # + data.root=...


def segcli(args: list, capsys) -> tuple[int, str, str]:
    """Run `segcli ARGS` in this process → (exit code, stdout, stderr)."""
    from segcli.cli import main

    capsys.readouterr()
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    out, err = capsys.readouterr()
    return code, out, err


def popen(args: list, cwd: Path, stderr_path: Path) -> subprocess.Popen:
    """Start `python -m segcli ARGS` (a real process: signals reach it as they would from a shell)."""
    env = {k: v for k, v in os.environ.items() if k != "SEGCLI_DEBUG"}
    env["PYTHONUNBUFFERED"] = "1"
    return subprocess.Popen([sys.executable, "-m", "segcli", *map(str, args)], cwd=str(cwd), env=env,
                            stdout=subprocess.PIPE, stderr=open(stderr_path, "w"), text=True)


def start_and_wait_for_last(args, run_dir, tmp_path):
    """Start `segcli train ARGS --run-dir RUN_DIR` in a process; return it once checkpoints/last.ckpt exists."""
    proc = popen(["train", *args, "--run-dir", run_dir], tmp_path, tmp_path / "stderr.txt")
    last = run_dir / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 300
    while not last.is_file():
        assert proc.poll() is None, (tmp_path / "stderr.txt").read_text()[-2000:]
        assert time.monotonic() < deadline, "no last.ckpt after 300 s"
        time.sleep(0.05)
    return proc


def rows(run_dir: Path) -> list[dict]:
    with open(Path(run_dir) / "metrics.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def val_rows(run_dir: Path) -> list[tuple[str, str, str]]:
    """(epoch, step, val/mIoU) of every validation row, in order."""
    return [(r["epoch"], r["step"], r["val/mIoU"]) for r in rows(run_dir) if r.get("val/mIoU")]


def epochs_run(run_dir: Path) -> int:
    return len(val_rows(run_dir))


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """10 synthetic 90x120 scenes (8 train, 2 val), seed 0."""
    from segcli.cli import main

    out = tmp_path_factory.mktemp("train_data") / "syn"
    try:
        main(["prepare", "synthetic", "--out", str(out), "--num-images", "10", "--seed", "0",
              "synthetic.height=90", "synthetic.width=120"])
    except SystemExit as done:
        assert not done.code, f"prepare failed with {done.code}"
    return out


def tiny(data: Path, *extra) -> list[str]:
    """The arguments of a tiny training run on `data`."""
    return [f"data.root={data}", *TINY, *map(str, extra)]


@pytest.fixture(scope="session")
def reference_run(tiny_data, tmp_path_factory) -> Path:
    """3 epochs, seed 0, with the final evaluation: the run other tests compare with."""
    from segcli.cli import main

    run_dir = tmp_path_factory.mktemp("reference") / "run"
    try:
        main(["train", *tiny(tiny_data, "trainer.max_epochs=3"), "--run-dir", str(run_dir)])
    except SystemExit as done:
        assert not done.code, f"train failed with {done.code}"
    return run_dir
