"""segcli train -m: one run dir per job, a summary table on stdout, a failing job reported without stopping the rest."""

from __future__ import annotations

import csv
import json

from helpers_train import segcli, tiny


def test_sweep_runs_every_job_and_reports_a_failure(tiny_data, tmp_path, capsys):
    sweep_dir = tmp_path / "sweep"
    code, out, err = segcli(["train", "-m", *tiny(tiny_data, "trainer.limit_train_batches=1", "final_eval=false"),
                             "model.encoder=resnet18,no_such_encoder", "--run-dir", sweep_dir], capsys)
    assert code == 1, err
    assert err.strip().splitlines()[-1].startswith("segcli: error: sweep: 1 of 2 jobs failed")
    assert out.strip().splitlines()[-1] == str(sweep_dir.resolve())
    assert "sweep summary" in out and "encoder=resnet18" in out and "failed (exit 2)" in out
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
