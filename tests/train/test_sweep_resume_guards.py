"""What made a sweep's jobs fail for good on `--resume SWEEP_DIR` (a row once 'failed' is never run again): a data.root
without a card or with other data, a job folder still held by a job the killed sweep left running; and how a job
that was stopped or killed on its own is recorded."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import yaml
from helpers_train import segcli, tiny
from test_sweep import _fake_jobs


def test_a_data_root_without_a_card_is_refused_before_any_job(tiny_data, tmp_path, capsys, monkeypatch):
    """Before: every job left ran and failed ('no dataset card'), and a later --resume ran none of them."""
    sweep_dir, calls = tmp_path / "sweep", []
    _fake_jobs(monkeypatch, calls, stop_at=2)
    code, _, err = segcli(["train", "-m", *tiny(tiny_data), "seed=1,2", "--run-dir", sweep_dir], capsys)
    assert code == 130, err
    before = (sweep_dir / "summary.json").read_bytes()
    calls.clear()
    code, _, err = segcli(["train", "--resume", sweep_dir, f"data.root={tmp_path / 'nowhere'}"], capsys)
    assert code == 3 and calls == [] and "dataset.yaml" in err.strip().splitlines()[-1], err
    assert (sweep_dir / "summary.json").read_bytes() == before


def test_a_data_root_with_other_data_than_the_jobs_trained_on_is_refused(tiny_data, tmp_path, capsys):
    """Before: a started job failed ('the dataset changed') and kept that row, while a job starting afresh trained on
    the other data: one sweep, two datasets. A copy of the same data (the dataset moved) is accepted."""
    sweep_dir = tmp_path / "sweep"
    code, _, err = segcli(["train", "-m", *tiny(tiny_data, "final_eval=false"), "seed=range(1,2)",
                           "--run-dir", sweep_dir], capsys)
    assert code == 0, err
    other = tmp_path / "other"
    shutil.copytree(tiny_data, other)
    card = yaml.safe_load((other / "dataset.yaml").read_text())
    card["splits"]["train"].append(card["splits"]["val"].pop())  # the same images, split otherwise
    (other / "dataset.yaml").write_text(yaml.safe_dump(card, sort_keys=False))
    before = (sweep_dir / "summary.json").read_bytes()
    code, _, err = segcli(["train", "--resume", sweep_dir, f"data.root={other}"], capsys)
    line = err.strip().splitlines()[-1]
    assert code == 3 and line.startswith("segcli: error: sweep job 0 (0-seed=1): "), err
    assert "the dataset changed since this job began" in line and "give data.root the dataset the sweep" in line
    assert (sweep_dir / "summary.json").read_bytes() == before
    moved = tmp_path / "moved"
    shutil.copytree(tiny_data, moved)
    code, _, err = segcli(["train", "--resume", sweep_dir, f"data.root={moved}"], capsys)
    assert code == 0, err


def test_a_job_folder_held_by_a_running_job_is_refused_before_any_job(tiny_data, tmp_path, capsys, monkeypatch):
    """A sweep killed with SIGKILL left its job training; a --resume then failed that job ('another segcli train is
    running in this run directory') for good, and ran the next one beside it."""
    sweep_dir, calls = tmp_path / "sweep", []
    _fake_jobs(monkeypatch, calls, stop_at=1, started=True)
    code, _, err = segcli(["train", "-m", *tiny(tiny_data), "seed=1,2", "--run-dir", sweep_dir], capsys)
    assert code == 130, err
    job = sweep_dir / "0-seed=1"
    before = (sweep_dir / "summary.json").read_bytes() if (sweep_dir / "summary.json").exists() else None
    handle = os.open(job, os.O_RDONLY)
    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as the orphaned job's segcli train holds it
    try:
        calls.clear()
        code, _, err = segcli(["train", "--resume", sweep_dir], capsys)
    finally:
        os.close(handle)
    assert code == 2 and calls == [], err
    assert err.strip().splitlines()[-1] == (f"segcli: error: sweep job 0 (0-seed=1): another segcli train is running "
                                            f"in {job} now (left running by a sweep that was killed?); wait for it to "
                                            "end (or stop it), then continue the sweep")
    assert ((sweep_dir / "summary.json").read_bytes() if before is not None else None) == before


def _fake_python(tmp_path, monkeypatch, body: str) -> None:
    """The job processes run `sys.executable -m segcli train …`: a script standing in for it."""
    script = tmp_path / "python"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(script))


def test_a_job_stopped_on_its_own_stops_the_sweep_and_a_killed_one_is_named_so(tiny_data, tmp_path, capsys,
                                                                            monkeypatch):
    """`kill PID` of a job (exit 143) was a failure for good ('failed (exit 143)'), where Ctrl-C (130) stops the sweep
    for --resume; a job killed by SIGKILL read 'exit -9: TPU available: False, …' (its last stderr line)."""
    _fake_python(tmp_path, monkeypatch, 'echo "segcli: terminated (SIGTERM)" >&2; exit 143')
    code, _, err = segcli(["train", "-m", *tiny(tiny_data), "seed=1,2", "--run-dir", tmp_path / "s1"], capsys)
    assert code == 130 and "sweep job 0 (1 of 2) was stopped (SIGTERM)" in err, err
    assert json.loads((tmp_path / "s1" / "summary.json").read_text())["jobs"] == []
    _fake_python(tmp_path, monkeypatch, 'echo "TPU available: False, using: 0 TPU cores" >&2; kill -9 $$')
    code, _, err = segcli(["train", "-m", *tiny(tiny_data), "seed=range(1,2)", "--run-dir", tmp_path / "s2"], capsys)
    rows = json.loads((tmp_path / "s2" / "summary.json").read_text())["jobs"]
    assert code == 1 and rows[0]["error"] == "killed by SIGKILL (out of memory?)", (err, rows)


def test_a_job_stops_when_its_sweep_process_is_killed(tmp_path):
    """A job went on training as an orphan after its sweep got SIGKILL (follow_parent: PR_SET_PDEATHSIG)."""
    child = ("import os, time; from segcli.training.sweep import follow_parent; follow_parent(); "
             "print(os.getpid(), 'SEGCLI_SWEEP_PARENT' in os.environ, flush=True); time.sleep(120)")
    parent = ("import os, subprocess, sys, time; "
              f"subprocess.Popen([sys.executable, '-c', {child!r}], env={{**os.environ, "
              "'SEGCLI_SWEEP_PARENT': str(os.getpid())}); time.sleep(120)")
    proc = subprocess.Popen([sys.executable, "-c", parent], stdout=subprocess.PIPE, text=True)
    pid, passed_on = proc.stdout.readline().split()
    assert passed_on == "False"  # not handed on to the processes a job starts (Lightning's DDP ranks)
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and _alive(int(pid)):
        time.sleep(0.1)
    alive = _alive(int(pid))
    if alive:
        os.kill(int(pid), signal.SIGKILL)
    assert not alive


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has ended
    except FileNotFoundError:
        return False


def test_a_sweep_and_a_run_do_not_share_a_folder(tiny_data, tmp_path, capsys, monkeypatch):
    """`train -m … --run-dir RUN` wrote its summary and job folders into a run's folder, and `--resume RUN` then
    continued the sweep, not the run; a plain run's --run-dir could be a sweep's folder."""
    calls = []
    _fake_jobs(monkeypatch, calls)
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("seed: 0\n")
    code, _, err = segcli(["train", "-m", *tiny(tiny_data), "seed=1,2", "--run-dir", run], capsys)
    assert code == 2 and calls == [] and "holds a run (config.yaml, checkpoints)" in err, err
    assert sorted(p.name for p in run.iterdir()) == ["checkpoints", "config.yaml"]
    sweep_dir = tmp_path / "sweep"
    code, _, err = segcli(["train", "-m", *tiny(tiny_data), "seed=1,2", "--run-dir", sweep_dir], capsys)
    assert code == 0, err
    before = sorted(p.name for p in sweep_dir.iterdir())
    code, _, err = segcli(["train", *tiny(tiny_data), "--run-dir", sweep_dir], capsys)
    assert code == 2 and f"--run-dir {sweep_dir} holds a sweep" in err.strip().splitlines()[-1], err
    assert sorted(p.name for p in sweep_dir.iterdir()) == before


def test_a_swept_key_given_twice_is_refused(tiny_data, tmp_path, capsys, monkeypatch):
    """`-m seed=0,1 seed=2` ran one job (seed=2: Hydra keeps the last), its table still calling seed swept."""
    calls = []
    _fake_jobs(monkeypatch, calls)
    code, _, err = segcli(["train", "-m", *tiny(tiny_data), "seed=0,1", "seed=2", "--run-dir", tmp_path / "s"], capsys)
    assert code == 2 and calls == [] and not (tmp_path / "s").exists(), err
    assert err.strip().splitlines()[-1] == ("segcli: error: 'seed=0,1' and 'seed=2': seed is given more than once "
                                            "(the last would win); give all its values in one override, e.g. "
                                            "seed=0,1,2")
