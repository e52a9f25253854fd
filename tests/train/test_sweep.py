"""segcli train -m: one run dir per job, a summary table on stdout, a failing job reported without stopping the rest."""

from __future__ import annotations

import csv
import json
import re

import pytest
from helpers_train import segcli, tiny


def test_sweep_runs_every_job_and_reports_a_failure(tiny_data, tmp_path, capsys):
    sweep_dir = tmp_path / "sweep"
    code, out, err = segcli(["train", "-m", *tiny(tiny_data, "trainer.limit_train_batches=1", "final_eval=false"),
                             "model.encoder=resnet18,no_such_encoder", "--run-dir", sweep_dir], capsys)
    assert code == 1, err
    assert err.strip().splitlines()[-1].startswith("segcli: error: sweep: 1 of 2 jobs failed")
    assert out.strip().splitlines()[-1] == str(sweep_dir.resolve())
    assert "sweep summary" in out and "encoder=resnet18" in out and "failed (exit 2)" in out
    # numbered alike, and as the run folders and the table number the jobs (from 0)
    assert "train: sweep job 1 (2 of 2): " in err and "train: sweep job 1 (2 of 2) failed: " in err
    assert re.search(r"│\s+1 │ model.encoder=no_such_encoder", out), out
    with open(sweep_dir / "summary.csv", newline="") as handle:
        jobs = list(csv.DictReader(handle))
    assert [j["status"] for j in jobs] == ["ok", "failed (exit 2)"]
    assert float(jobs[0]["best_val_mIoU"]) > 0 and jobs[0]["epochs"] == "1"
    assert (sweep_dir / "0-encoder=resnet18" / "checkpoints" / "best.ckpt").is_file()
    assert "no_such_encoder" in jobs[1]["error"]
    assert jobs[1]["run_dir"] == "" and not (sweep_dir / "1-encoder=no_such_encoder").exists()  # none was made
    assert len(json.loads((sweep_dir / "summary.json").read_text())["jobs"]) == 2
    # the same --run-dir again: refused before any job (each job failed over the earlier runs, and the summary
    # showed the earlier figures for the failed jobs)
    before = (sweep_dir / "summary.csv").read_bytes()
    code, out, err = segcli(["train", "-m", *tiny(tiny_data, "trainer.limit_train_batches=1", "final_eval=false"),
                             "model.encoder=resnet18,no_such_encoder", "--run-dir", sweep_dir], capsys)
    assert code == 2 and out == "" and "holds a sweep already (sweep.json)" in err
    assert f"segcli train --resume {sweep_dir}" in err
    assert (sweep_dir / "summary.csv").read_bytes() == before
    # ... and while that sweep runs (holds its folder), the advice is to wait: --resume is refused then too
    import fcntl
    import os

    handle = os.open(sweep_dir, os.O_RDONLY)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        code, out, err = segcli(["train", "-m", *tiny(tiny_data, "trainer.limit_train_batches=1", "final_eval=false"),
                                 "model.encoder=resnet18,no_such_encoder", "--run-dir", sweep_dir], capsys)
    finally:
        os.close(handle)
    assert code == 2 and "wait for that sweep to end" in err and "--resume" not in err, err
    # --resume of a sweep that ended: no job runs again (the failed one keeps its row), the summary is shown again
    code, out, err = segcli(["train", "--resume", sweep_dir], capsys)
    assert code == 1 and "1 of 2 jobs failed" in err and "2 jobs ended before, 0 to run" in err
    assert "sweep summary" in out and out.strip().splitlines()[-1] == str(sweep_dir.resolve())
    assert (sweep_dir / "summary.csv").read_bytes() == before
    # only the overrides a resume may give; and a sweep recorded by nothing cannot be continued
    code, _, err = segcli(["train", "--resume", sweep_dir, "optim.lr=0.5"], capsys)
    assert code == 2 and "'optim.lr=0.5' cannot change it" in err
    code, _, err = segcli(["train", "--resume", sweep_dir, "--run-dir", tmp_path / "x"], capsys)
    assert code == 2 and "drop --run-dir" in err
    (sweep_dir / "sweep.json").unlink()
    code, _, err = segcli(["train", "--resume", sweep_dir], capsys)
    assert code == 3 and "sweep.json: not found" in err and err.count("\n") == 1


def test_a_sweep_without_m_is_refused(tiny_data, capsys):
    code, _, err = segcli(["train", *tiny(tiny_data), "optim.lr=0.1,0.2"], capsys)
    assert code == 2 and "add -m" in err


def test_epochs_count_training_epochs_not_validations(tmp_path):
    """The summary's epochs column counted validations: 1 for 3 epochs validated every other epoch, 0 without a
    val split."""
    from segcli.training.sweep import run_results

    (tmp_path / "metrics.csv").write_text(
        "epoch,step,train/loss_epoch,val/mIoU\n0,4,1.5,\n1,9,,0.25\n1,9,1.2,\n2,14,,0.5\n2,14,1.0,\n")
    assert run_results(tmp_path) == {"best_val_mIoU": 0.5, "epochs": 3}
    (tmp_path / "metrics.csv").write_text("epoch,step,train/loss_epoch\n0,4,1.5\n1,9,1.2\n")
    assert run_results(tmp_path) == {"best_val_mIoU": None, "epochs": 2}


def test_sweep_cfg_prints_nothing_when_a_job_does_not_compose(capsys):
    """`train -m --cfg` printed job 0's config, then failed on job 1's unresolvable interpolation."""
    code, out, err = segcli(["train", "-m", "--cfg", "optim.lr=1e-3,${nope}"], capsys)
    assert code == 2 and out == "" and "nope" in err, err
    code, out, _ = segcli(["train", "-m", "--cfg", "optim.lr=1e-3,3e-4"], capsys)
    assert code == 0 and out.count("# optim.lr=") == 2


def test_summary_shows_overrides_and_paths_as_written(capsys):
    """The summary table read its cells as console markup: a data.root holding '[/]' stopped the sweep's last step
    with a MarkupError (exit 4) after every job had trained; '[bold]' vanished from the row."""
    from segcli.training.sweep import print_summary

    print_summary([{"job": 0, "overrides": "data.root=/d/[bold]x[/]", "status": "ok", "best_val_mIoU": 0.5,
                    "final_mIoU": None, "epochs": 1, "run_dir": "/s/[/]"}])
    out = capsys.readouterr().out
    assert "data.root=/d/[bold]x[/]" in out and "/s/[/]" in out


def test_an_empty_sweep_is_refused_and_glob_lists_a_groups_options(tmp_path, capsys):
    """`seed=range(0)` (or range(5,1)) ran a sweep of no job: an empty summary, exit 0; `model=glob(unet*)`,
    Hydra's sweep over a group's options, failed with 'ConfigLoader is not set'."""
    code, out, err = segcli(["train", "-m", "seed=range(5,1)", "--run-dir", tmp_path / "sweep"], capsys)
    assert code == 2 and out == "" and "'seed=range(5,1)' gives no value to sweep over" in err, err
    assert not (tmp_path / "sweep").exists()
    code, _, err = segcli(["train", "-m", "--cfg", "seed=glob(*)"], capsys)
    assert code == 2 and "glob() picks options of a config group: " in err and "model" in err, err
    code, out, err = segcli(["train", "-m", "--cfg", "model=glob(unet*)"], capsys)
    assert code == 0, err
    assert [line for line in out.splitlines() if line.startswith("# ")] == [
        "# model=unet", "# model=unet_slim", "# model=unetplusplus"]


def _fake_jobs(monkeypatch, calls: list, stop_at: int | None = None, started: bool = False, extras=None):
    """Replace the job runner: record each job's overrides (and in `extras` the resume's), return an ok row, or stop
    (Ctrl-C) at call `stop_at`; `started`: the stopped job leaves a config.yaml and a last.ckpt, as a run killed
    after its first epoch."""
    extras = [] if extras is None else extras
    import segcli.training.sweep as sweep_module
    from segcli.config import compose
    from segcli.runs import save_config

    def run_job(index, job, swept, root, config_dir, total, extra, cwd):
        calls.append(job)
        extras.append(list(extra))
        run_dir = root / sweep_module.job_name(index, job, swept)
        if len(calls) == stop_at:
            if started:
                (run_dir / "checkpoints").mkdir(parents=True)
                save_config(run_dir, compose("train", job))
                (run_dir / "checkpoints" / "last.ckpt").write_bytes(b"")
            raise KeyboardInterrupt
        run_dir.mkdir(parents=True, exist_ok=True)
        return {"job": index, "overrides": job[-1], "status": "ok", "best_val_mIoU": 0.5, "final_mIoU": None,
                "epochs": 1, "run_dir": str(run_dir), "error": ""}

    monkeypatch.setattr(sweep_module, "_run_job", run_job)


def test_a_resumed_sweep_runs_the_jobs_it_recorded_and_names_its_moved_folders(tiny_data, tmp_path, capsys,
                                                                             monkeypatch):
    """--resume SWEEP_DIR expanded the command line again: `shuffle()` then gave another order, so the resume ran
    some values twice and others never; a sweep folder moved since kept naming the old folders in its summary."""
    import random
    import shutil

    sweep_dir, calls = tmp_path / "sweep", []
    _fake_jobs(monkeypatch, calls, stop_at=3)
    random.seed(0)
    code, _, err = segcli(["train", "-m", *tiny(tiny_data), "seed=shuffle(range(1,21))", "--run-dir", sweep_dir],
                          capsys)
    assert code == 130, err
    first = [job[-1] for job in calls[:2]]  # the two jobs that ended; the third was stopped
    order = [job[-1] for job in calls] + [None] * 17  # the order the sweep had: its summary keeps it
    moved = tmp_path / "moved"
    shutil.move(sweep_dir, moved)
    calls.clear()
    _fake_jobs(monkeypatch, calls)
    random.seed(1)
    code, out, err = segcli(["train", "--resume", moved], capsys)
    assert code == 0, err
    assert "2 of 20 jobs ended before, 18 to run" in err
    seeds = first + [job[-1] for job in calls]
    assert sorted(seeds) == sorted(f"seed={s}" for s in range(1, 21))  # each value once
    jobs = json.loads((moved / "summary.json").read_text())["jobs"]
    assert [j["overrides"] for j in jobs][:3] == order[:3] and len(jobs) == 20
    assert all(j["run_dir"].startswith(str(moved.resolve()) + "/") for j in jobs), jobs[0]
    assert str(sweep_dir) not in out


def test_resume_overrides_a_started_job_refuses_stop_the_sweep_before_it_runs(tiny_data, tmp_path, capsys,
                                                                            monkeypatch):
    """An override the started job's --resume refuses (trainer.max_epochs lowered) was found by that job only: it
    failed with exit 2, and its row kept 'failed' for every later --resume. Now it is a usage error up front."""
    sweep_dir, calls = tmp_path / "sweep", []
    _fake_jobs(monkeypatch, calls, stop_at=1, started=True)
    code, _, err = segcli(["train", "-m", *tiny(tiny_data, "trainer.max_epochs=3"), "seed=range(1,2)",
                           "--run-dir", sweep_dir], capsys)  # one job, stopped after its first checkpoint
    assert code == 130, err
    before = (sweep_dir / "summary.json").read_bytes()
    for override, text in [("trainer.max_epochs=2", "trainer.max_epochs=2: give a whole number >= the run's 3"),
                           ("save_min_interval_s=-1", "save_min_interval_s=-1: give a number of seconds >= 0")]:
        code, out, err = segcli(["train", "--resume", sweep_dir, override], capsys)
        assert code == 2 and out == "", err
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"segcli: error: sweep job 0 (0-seed=1): {text}"), err
        assert (sweep_dir / "summary.json").read_bytes() == before


def test_a_resumed_sweeps_data_root_is_resolved_and_a_dollar_brace_in_it_kept(tiny_data, tmp_path, capsys,
                                                                                monkeypatch):
    """Before: `--resume SWEEP 'data.root=${oc.env:PLACE}'` gave every job data.root=CWD/${oc.env:PLACE}, and a
    folder named with '${' reached the jobs unescaped (an interpolation there)."""
    import shutil

    from segcli.config import compose

    moved = tmp_path / "d${x}"
    shutil.copytree(tiny_data, moved)
    sweep_dir, calls, extras = tmp_path / "sweep", [], []
    _fake_jobs(monkeypatch, calls, stop_at=2)
    code, _, err = segcli(["train", "-m", *tiny(tiny_data), "seed=1,2", "--run-dir", sweep_dir], capsys)
    assert code == 130, err
    monkeypatch.setenv("SEGCLI_TEST_PLACE", str(moved))
    monkeypatch.chdir(tmp_path / "sweep")
    for given in ("data.root=${oc.env:SEGCLI_TEST_PLACE}", r"data.root=../d\${x}"):
        calls.clear()
        extras.clear()
        _fake_jobs(monkeypatch, calls, extras=extras)
        code, _, err = segcli(["train", "--resume", sweep_dir, given], capsys)
        assert code == 0, err
        assert [job[-1] for job in calls] == ["seed=2"]
        assert compose("train", calls[0] + extras[0]).data.root == str(moved)
        (sweep_dir / "summary.json").write_text(json.dumps({"jobs": json.loads(
            (sweep_dir / "summary.json").read_text())["jobs"][:1]}))  # job 2 to run again


def test_a_sweep_over_folds_reports_their_mean_and_the_ensemble_command(tiny_data, tmp_path, capsys):
    """k-fold cross-validation: `-m data.fold=0,1` showed each fold's figure, but not what cross-validation is for,
    their mean and spread, nor how to predict with the folds' models together."""
    import shutil
    import statistics

    import yaml

    data = tmp_path / "folded"
    shutil.copytree(tiny_data, data)
    card = yaml.safe_load((data / "dataset.yaml").read_text())
    for i, entry in enumerate(card["splits"]["train"]):
        entry["fold"] = i % 2
    (data / "dataset.yaml").write_text(yaml.safe_dump(card, sort_keys=False))
    sweep_dir = tmp_path / "cv"
    code, out, err = segcli(["train", "-m", *tiny(data, "trainer.limit_train_batches=1"), "data.fold=0,1",
                             "--run-dir", sweep_dir], capsys)
    assert code == 0, err
    summary = json.loads((sweep_dir / "summary.json").read_text())
    best = [job["best_val_mIoU"] for job in summary["jobs"]]
    assert len(best) == 2 and all(b is not None for b in best)
    assert summary["cross_validation"] == [{
        "overrides": "", "folds": 2, "ok": 2, "run_dirs": [job["run_dir"] for job in summary["jobs"]],
        "best_val_mIoU_mean": pytest.approx(statistics.fmean(best)),
        "best_val_mIoU_std": pytest.approx(statistics.stdev(best))}]
    assert "cross-validation (mean ± std over folds)" in out
    assert f"{statistics.fmean(best) * 100:.2f} ± {statistics.stdev(best) * 100:.2f}" in out
    assert out.strip().splitlines()[-1] == str(sweep_dir.resolve())
    ckpts = [sweep_dir.resolve() / name / "checkpoints" / "best.ckpt" for name in ("0-fold=0", "1-fold=1")]
    assert all(c.is_file() for c in ckpts)
    assert f"segcli predict --ckpt {ckpts[0]} --ckpt {ckpts[1]} INPUT... --out DIR" in err


def test_a_job_stopped_while_writing_its_first_best_checkpoint_starts_afresh_on_resume(tiny_data, tmp_path, capsys,
                                                                                      monkeypatch):
    """A stop held during the first best.ckpt write ends the job before its last.ckpt: --resume launched it afresh
    into its folder, which its --run-dir check refused (it holds a run's best.ckpt), so the job failed with exit 2
    and its row kept 'failed' for every later --resume: the sweep could never be completed."""
    sweep_dir, calls = tmp_path / "sweep", []
    with monkeypatch.context() as patched:
        _fake_jobs(patched, calls, stop_at=1)
        code, _, err = segcli(["train", "-m", *tiny(tiny_data, "trainer.max_epochs=1", "final_eval=false"),
                               "seed=range(1,2)", "--run-dir", sweep_dir], capsys)
    assert code == 130, err
    job_dir = sweep_dir / "0-seed=1"
    (job_dir / "checkpoints").mkdir(parents=True)
    (job_dir / "checkpoints" / "best.ckpt").write_bytes(b"written before the stop")
    (job_dir / "metrics.csv").write_text("epoch,step,val/mIoU\n0,4,0.1\n")
    code, _, err = segcli(["train", "--resume", sweep_dir], capsys)
    assert code == 0, err
    assert "was stopped before a last.ckpt to continue from; it starts afresh" in err
    jobs = json.loads((sweep_dir / "summary.json").read_text())["jobs"]
    assert [j["status"] for j in jobs] == ["ok"] and (job_dir / "checkpoints" / "last.ckpt").is_file()
