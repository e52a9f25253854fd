"""Ctrl-C (SIGINT) in the middle of predict and train: exit 130, one `segcli: interrupted` line, no traceback,
no half-written file; an interrupted predict resumed with --skip-existing gives exactly the uninterrupted output.

(SIGKILL during train then `train --resume RUN_DIR` belongs here once --resume exists.)"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from helpers_cli import run_in_process
from helpers_reliability import assert_clean, files_under, noise, write_image


def _start(*args, cwd: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "SEGCLI_DEBUG"}
    env["PYTHONUNBUFFERED"] = "1"
    return subprocess.Popen([sys.executable, "-m", "segcli", *map(str, args)], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _interrupt_when(proc: subprocess.Popen, ready, what: str, delay: float = 0.0) -> tuple[str, str]:
    """Send SIGINT once ready() holds (then `delay` s later); → (stdout, stderr) after the process ended."""
    try:
        deadline = time.monotonic() + 120
        while not ready():
            assert proc.poll() is None, f"ended before {what}: {proc.communicate()[1][-2000:]}"
            assert time.monotonic() < deadline, f"never {what}"
            time.sleep(0.02)
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        return proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _assert_interrupted(proc: subprocess.Popen, stderr: str) -> None:
    assert proc.returncode == 130, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    assert stderr.strip().splitlines()[-1] == "segcli: interrupted"


def _contents(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in files_under(root)}


def test_interrupted_predict_resumes_to_identical_output(model_ckpt, tmp_path):
    folder = tmp_path / "in"
    for i in range(24):
        write_image(folder / f"img{i:03d}.png", noise(32, 32, seed=i))
    options = ["--ckpt", model_ckpt, "--save", "mask,overlay", "inference.batch_size=1"]
    reference = tmp_path / "reference"
    assert run_in_process(["predict", folder, "--out", reference, *options]) == 0

    out = tmp_path / "out"
    proc = _start("predict", folder, "--out", out, *options, cwd=tmp_path)
    _, stderr = _interrupt_when(proc, lambda: out.is_dir() and any(out.glob("img*.png")), "wrote a mask")
    _assert_interrupted(proc, stderr)
    assert_clean(out)
    partial = _contents(out)
    assert 0 < len(partial) < 2 * 24, "the interrupt came too late to test a resume"
    assert all(reference.joinpath(name).read_bytes() == data for name, data in partial.items())

    assert run_in_process(["predict", folder, "--out", out, *options, "--skip-existing"]) == 0
    assert _contents(out) == _contents(reference)


def test_interrupted_train_exits_130(tiny_data, tmp_path):
    run = tmp_path / "run"
    proc = _start("train", f"data.root={tiny_data}", "trainer.max_epochs=1000", "data.num_workers=0",
                  "augment.crop_size=[32,32]", "data.batch_size=2", "--run-dir", run, cwd=tmp_path)
    _, stderr = _interrupt_when(proc, lambda: (run / "config.yaml").is_file(), "created the run directory", delay=3.0)
    _assert_interrupted(proc, stderr)
    assert_clean(run)
    assert (run / "config.yaml").is_file()
    checkpoints = list((run / "checkpoints").glob("*.ckpt")) if (run / "checkpoints").is_dir() else []
    for ckpt in checkpoints:  # whatever was saved is whole
        from segcli.inference.backends import read_checkpoint

        read_checkpoint(ckpt)
