"""Shared fixtures: a `run_cli` helper, a tiny synthetic dataset and run, and camvid-mini + run.

Training is the expensive part of the suite, so every dataset and every run is made
once per session and shared by the eval/predict/export/error tests. All CLI calls go
through the real entry point (`python -m segcli`) as subprocesses.
"""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
CAMVID_MINI = Path(__file__).resolve().parents[2] / "shared/datasets/camvid-mini"
HEAVY_MODULES = ("torch", "lightning", "segmentation_models_pytorch", "cv2", "hydra")

# Tiny settings: one epoch of a resnet18 U-Net, no worker processes.
SYNTHETIC_PREPARE = ["--num-images", "12", "--seed", "0", "synthetic.height=90", "synthetic.width=120"]
SYNTHETIC_TRAIN = ["model.encoder=resnet18", "trainer.max_epochs=1", "data.batch_size=4", "data.num_workers=0",
                   "augment.crop_size=[64,64]"]
CAMVID_TRAIN = ["trainer.max_epochs=1", "trainer.limit_train_batches=2", "augment.crop_size=[96,128]",
                "data.num_workers=0"]


def run_cli(*args, cwd, env: dict | None = None, timeout: float = 900) -> subprocess.CompletedProcess:
    """Run `python -m segcli ARGS` in `cwd`; stdout and stderr are captured separately (text)."""
    full_env = {k: v for k, v in os.environ.items() if k != "SEGCLI_DEBUG"}
    full_env.update({"PYTHONUNBUFFERED": "1", "COLUMNS": "200"})
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "segcli", *map(str, args)], cwd=str(cwd), env=full_env,
                          capture_output=True, text=True, timeout=timeout)



# settings of the process running the tests that would change what segcli writes: left out of segcli_bytes's
STREAM_SETTINGS = ("SEGCLI_DEBUG", "PYTHONIOENCODING", "PYTHONUTF8", "FORCE_COLOR", "TTY_COMPATIBLE", "NO_COLOR",
                   "COLUMNS")


def segcli_bytes(*args, cwd, env: dict | None = None, **kwargs) -> subprocess.CompletedProcess:
    """`python -m segcli ARGS` with stdout and stderr as bytes (what a pipeline reads), this process's encoding and
    colour settings left out and `env` added."""
    full_env = {k: v for k, v in os.environ.items() if k not in STREAM_SETTINGS}
    full_env.update(env or {})
    kwargs.setdefault("capture_output", "stdout" not in kwargs and "stderr" not in kwargs)
    return subprocess.run([sys.executable, "-m", "segcli", *map(str, args)], cwd=str(cwd), env=full_env,
                          timeout=600, **kwargs)


def one_error_line(proc: subprocess.CompletedProcess, code: int, alone: bool = False) -> str:
    """The one `segcli: error:` line of a segcli_bytes run that failed with exit `code`, no traceback; `alone`: and
    nothing else on stderr."""
    err = proc.stderr.decode("utf-8", "replace")
    assert proc.returncode == code, f"exit {proc.returncode}: {err[-2000:]}"
    assert "Traceback" not in err, err
    lines = err.splitlines() if alone else [line for line in err.splitlines() if line.startswith("segcli: error: ")]
    assert len(lines) == 1 and lines[0].startswith("segcli: error: "), err
    return lines[0]

def describe(proc: subprocess.CompletedProcess) -> str:
    """Exit code, stdout and the end of stderr, for assertion messages."""
    return f"exit {proc.returncode}\n--- stdout ---\n{proc.stdout[-3000:]}\n--- stderr ---\n{proc.stderr[-3000:]}"


def assert_ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, describe(proc)
    return proc


def assert_error(proc: subprocess.CompletedProcess, code: int) -> str:
    """The documented failure shape: exit `code`, exactly one stderr line `segcli: error: ...`, no traceback.

    Returns the error line.
    """
    assert proc.returncode == code, describe(proc)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, describe(proc)
    assert lines[0].startswith("segcli: error: "), describe(proc)
    assert "Traceback" not in proc.stderr
    return lines[0]


def assert_error_after_report(proc: subprocess.CompletedProcess, code: int) -> str:
    """Commands that report per-item problems first (predict's unreadable inputs): exit `code`, the last
    stderr line is `segcli: error: ...`, no traceback. Returns that line."""
    assert proc.returncode == code, describe(proc)
    lines = proc.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("segcli: error: "), describe(proc)
    assert "Traceback" not in proc.stderr
    return lines[-1]


def assert_lint_failed(proc: subprocess.CompletedProcess) -> str:
    """Lint errors: exit 1, the summary table on stderr, then one `segcli: error: ...` line; no traceback.

    Returns the error line.
    """
    assert proc.returncode == 1, describe(proc)
    lines = proc.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("segcli: error: lint:"), describe(proc)
    assert "Traceback" not in proc.stderr
    return lines[-1]


def stdout_lines(proc: subprocess.CompletedProcess) -> list[str]:
    return [line for line in proc.stdout.splitlines() if line.strip()]


def argmax_agreement(stderr: str) -> float:
    """The percentage of pixels on which export's verification found the exported model and torch agreeing. Near
    ties between two classes' logits may round either way, so tests compare it with export's own tolerance (99.99%)
    rather than 100%."""
    found = re.findall(r"argmax agreement ([0-9.]+)%", stderr)
    assert found, stderr[-2000:]
    return float(found[-1])


def load_yaml(path: Path) -> dict:
    return yaml.safe_load(Path(path).read_text(encoding="utf-8"))


def read_metrics_csv(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@dataclass
class Run:
    """A finished `segcli train`: its run directory, dataset and the process that made it."""

    name: str
    run_dir: Path
    data: Path
    cwd: Path
    proc: subprocess.CompletedProcess

    @property
    def best(self) -> Path:
        return self.run_dir / "checkpoints" / "best.ckpt"

    @property
    def last(self) -> Path:
        return self.run_dir / "checkpoints" / "last.ckpt"

    @property
    def card(self) -> dict:
        return load_yaml(self.data / "dataset.yaml")


@pytest.fixture(scope="session", name="run_cli")
def run_cli_fixture():
    """`run_cli(*args, cwd=..., env=None)` → CompletedProcess of `python -m segcli ARGS`."""
    return run_cli


def _prepare(args: list, cwd: Path, out: Path) -> Path:
    proc = run_cli(*args, "--out", out, cwd=cwd)
    if proc.returncode != 0:
        pytest.fail(f"segcli prepare failed: {describe(proc)}")
    return out


def _train(name: str, data: Path, overrides: list[str], cwd: Path) -> Run:
    proc = run_cli("train", f"data.root={data}", *overrides, cwd=cwd)
    if proc.returncode != 0:
        pytest.fail(f"segcli train ({name}) failed: {describe(proc)}")
    lines = stdout_lines(proc)
    assert lines, describe(proc)
    return Run(name=name, run_dir=Path(lines[-1]), data=data, cwd=cwd, proc=proc)


@pytest.fixture(scope="session")
def synthetic_data(tmp_path_factory) -> Path:
    """12 synthetic 90x120 scenes (10 train, 2 val), seed 0."""
    root = tmp_path_factory.mktemp("synthetic")
    return _prepare(["prepare", "synthetic", *SYNTHETIC_PREPARE], cwd=root, out=root / "dataset")


@pytest.fixture(scope="session")
def synthetic_run(synthetic_data, tmp_path_factory) -> Run:
    """One epoch on the synthetic dataset, run dir at its default place (runs/train/<timestamp> under cwd)."""
    cwd = tmp_path_factory.mktemp("synthetic_train")
    return _train("synthetic", synthetic_data, SYNTHETIC_TRAIN, cwd)


@pytest.fixture(scope="session")
def camvid_src() -> Path:
    if not (CAMVID_MINI / "train").is_dir() or not (CAMVID_MINI / "trainannot").is_dir():
        pytest.skip(f"camvid-mini not found at {CAMVID_MINI}")
    return CAMVID_MINI


@pytest.fixture(scope="session")
def camvid_data(camvid_src, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("camvid")
    return _prepare(["prepare", "camvid", "--src", camvid_src], cwd=root, out=root / "dataset")


@pytest.fixture(scope="session")
def camvid_run(camvid_data, tmp_path_factory) -> Run:
    """Two training batches on camvid-mini, then validation on all 8 full 360x480 val frames."""
    cwd = tmp_path_factory.mktemp("camvid_train")
    return _train("camvid", camvid_data, CAMVID_TRAIN, cwd)


def run_in_process(args: list) -> int:
    """Run `segcli ARGS` in this process (faster than a subprocess: torch is imported once); return the exit code."""
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
        code = run_in_process(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    return call



def torchrun_segcli(args: list, nproc: int = 2, timeout: float = 300) -> subprocess.CompletedProcess:
    """`python -m torch.distributed.run --standalone --nproc-per-node N -m segcli ARGS` (gloo on the CPU), retried
    once if the rendezvous port was taken (the launcher's free-port pick can race with other jobs on a shared
    machine); any other failure is returned as it is, so that a crash of a rank fails the test."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc),
               "-m", "segcli", *map(str, args)]
    for _attempt in range(2):
        proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
        if proc.returncode == 0 or "address already in use" not in proc.stderr.lower():
            break
    return proc
