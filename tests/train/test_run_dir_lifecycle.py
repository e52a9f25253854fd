"""The run directory over a run's life: one process at a time trains in it, a run that never reached a checkpoint
can be started again there, a moved dataset is named on --resume, and RUN_DIR/eval never describes a best.ckpt
that has been replaced."""

from __future__ import annotations

import json
import shutil
import signal

import yaml

from helpers_train import epochs_run, rows, segcli, start_and_wait_for_last, tiny, val_rows


def test_a_second_resume_of_a_running_run_is_refused(tiny_data, tmp_path, capsys):
    """Two `--resume` of one run at once (or a resume beside the run still going) both trained: metrics.csv got
    every epoch twice, interleaved, and both wrote last.ckpt and best.ckpt."""
    run_dir = tmp_path / "run"
    proc = start_and_wait_for_last(tiny(tiny_data, "trainer.max_epochs=50", "trainer.max_time=00:00:10:00",
                                        "final_eval=false"), run_dir, tmp_path)
    try:
        saved = (run_dir / "config.yaml").read_bytes()
        # (its budget, already spent, would end a second resume that was let through at once)
        code, out, err = segcli(["train", "--resume", run_dir, "trainer.max_time=00:00:00:01"], capsys)
        assert code == 2 and out == "", err
        assert err.strip().splitlines() == [
            f"segcli: error: {run_dir.resolve()}: another segcli train is running in this run directory now; wait "
            "for it to end (or stop it) before resuming"]
        assert (run_dir / "config.yaml").read_bytes() == saved  # its max_time did not get in
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=120) == 143
    # once it has stopped, the run resumes (a 1-s budget, spent already: it ends at once)
    code, out, err = segcli(["train", "--resume", run_dir, "trainer.max_time=00:00:00:01"], capsys)
    assert code == 0, err
    epochs = [int(e) for e, _, _ in val_rows(run_dir)]
    assert epochs == list(range(len(epochs)))  # each epoch once


def test_a_run_stopped_before_its_first_checkpoint_starts_again_in_its_folder(tiny_data, tmp_path, capsys):
    """A run killed during its first epoch (SIGKILL, the OOM killer; or a bad image, Ctrl-C in an existing folder)
    left config.yaml and logs but no checkpoint: --resume said to start it again without --resume, and starting it
    again was refused ('holds a run already (config.yaml)'): the folder had to be deleted by hand."""
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "config.yaml").write_text("seed: 0\n")
    (run_dir / "metrics.csv").write_text("epoch,step,train/loss_step\n0,0,9.5\n0,1,9.25\n")
    (run_dir / "tensorboard").mkdir()
    (run_dir / "tensorboard" / "events.out.tfevents.0.killed").write_bytes(b"")
    (run_dir / "checkpoints" / ".last.ckpt.abc123.tmp").write_bytes(b"half")  # its first write, killed
    code, _, err = segcli(["train", "--resume", run_dir], capsys)
    assert code == 3 and "start it again without --resume" in err, err
    code, out, err = segcli(["train", *tiny(tiny_data, "final_eval=false"), "--run-dir", run_dir], capsys)
    assert code == 0, err
    assert out.strip().splitlines()[-1] == str(run_dir.resolve())
    assert "stopped before its first checkpoint; starting it afresh" in err
    losses = [r.get("train/loss_step") for r in rows(run_dir)]  # only this run's rows (a loss of 9.59… is fine)
    assert "9.5" not in losses and "9.25" not in losses
    assert [r["epoch"] for r in rows(run_dir) if r.get("val/mIoU")] == ["0"]
    assert not (run_dir / "tensorboard" / "events.out.tfevents.0.killed").exists()
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    # a folder with a checkpoint is still refused
    code, out, err = segcli(["train", *tiny(tiny_data, "final_eval=false"), "--run-dir", run_dir], capsys)
    assert code == 2 and "holds a run already (checkpoints)" in err, err


def test_resume_after_the_dataset_folder_moved(tiny_data, tmp_path, capsys):
    """The dataset moved since the run began: --resume failed with 'no dataset card; prepare the dataset first', and
    data.root could not be given with --resume, so the run could only continue after config.yaml was edited."""
    data, run_dir = tmp_path / "data", tmp_path / "run"
    shutil.copytree(tiny_data, data)
    code, _, err = segcli(["train", *tiny(data, "final_eval=false"), "--run-dir", run_dir], capsys)
    assert code == 0, err
    moved = tmp_path / "Daten (neu)"
    data.rename(moved)
    code, _, err = segcli(["train", "--resume", run_dir, "trainer.max_epochs=2"], capsys)
    assert code == 3 and err.strip().splitlines() == [
        f"segcli: error: {run_dir.resolve() / 'config.yaml'}: the run's dataset {data} has no dataset.yaml now (moved "
        f"or deleted?); give its new place: segcli train --resume {run_dir.resolve()} data.root=NEW_FOLDER"], err
    code, _, err = segcli(["train", "--resume", run_dir, "trainer.max_epochs=2", f"data.root={moved}"], capsys)
    assert code == 0, err
    assert epochs_run(run_dir) == 2
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["data"]["root"] == str(moved)  # a long path wraps
    card = (moved / "dataset.yaml").read_text()  # another dataset at the new place is still refused
    (moved / "dataset.yaml").write_text(card.replace("road,", "street,", 1))
    code, _, err = segcli(["train", "--resume", run_dir, "trainer.max_epochs=3", f"data.root={moved}"], capsys)
    assert code == 3 and "the dataset changed since this run began" in err, err
    (moved / "dataset.yaml").write_text(card.replace("  val:", "  held:", 1))  # its val split renamed by hand
    code, _, err = segcli(["train", "--resume", run_dir, "trainer.max_epochs=3", f"data.root={moved}"], capsys)
    assert code == 3 and err.strip().splitlines()[-1] == (  # was exit 2 advising data.val_split=null, refused on resume
        f"segcli: error: {moved / 'dataset.yaml'}: no split 'val' now, which the run validates on; the dataset "
        "changed since the run began: restore that split, or start a new run"), err


def test_a_resume_that_replaces_best_ckpt_leaves_no_stale_final_evaluation(tiny_data, reference_run, tmp_path,
                                                                           capsys):
    """A finished run (eval/ scored its best.ckpt) resumed for more epochs with final_eval=false kept eval/ beside a
    newer best.ckpt: report.json's mIoU was no longer what `segcli eval` of best.ckpt says."""
    import torch

    run_dir = tmp_path / "run"
    shutil.copytree(reference_run, run_dir)
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    state = next(s for k, s in last["callbacks"].items() if k.startswith("ModelCheckpoint"))
    state["best_model_score"] = torch.tensor(-1.0)  # so the next validation surely replaces best.ckpt
    torch.save(last, run_dir / "checkpoints" / "last.ckpt")
    code, _, err = segcli(["train", "--resume", run_dir, "trainer.max_epochs=4", "final_eval=false"], capsys)
    assert code == 0, err
    assert f"removed {run_dir.resolve() / 'eval'}" in err
    assert not (run_dir / "eval").exists()
    code, _, err = segcli(["train", "--resume", run_dir, "final_eval=true"], capsys)  # finished: evaluated again
    assert code == 0, err
    code, out, err = segcli(["eval", "--ckpt", run_dir / "checkpoints" / "best.ckpt", "--json", "-"], capsys)
    assert code == 0, err
    assert json.loads(out)["mIoU"] == json.loads((run_dir / "eval" / "report.json").read_text())["mIoU"]


def test_a_card_file_of_another_name_is_the_dataset_of_the_run_and_its_checkpoints(tiny_data, tmp_path, capsys):
    """data.root=DIR/v2.yaml (a second card beside DIR/dataset.yaml, here with a split of its own): config.yaml, the
    final evaluation and the checkpoint named DIR, so they read DIR/dataset.yaml, which has no such split."""
    import yaml

    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    card = yaml.safe_load((data / "dataset.yaml").read_text())
    card["splits"]["check"] = card["splits"].pop("val")
    (data / "v2.yaml").write_text(yaml.safe_dump(card))
    run_dir = tmp_path / "run"
    code, _, err = segcli(["train", *tiny(data / "v2.yaml", "data.val_split=check", "trainer.max_epochs=1"),
                           "--run-dir", run_dir], capsys)
    assert code == 0, err
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["data"]["root"] == str((data / "v2.yaml").resolve())
    report = json.loads((run_dir / "eval" / "report.json").read_text())
    code, out, err = segcli(["eval", "--ckpt", run_dir / "checkpoints" / "best.ckpt", "--split", "check",
                             "--json", "-"], capsys)
    assert code == 0, err
    assert json.loads(out)["mIoU"] == report["mIoU"]


def test_a_finished_runs_logs_are_kept_when_its_checkpoints_were_deleted(tiny_data, tmp_path, capsys):
    """A finished run whose checkpoints/ was deleted to save space, kept for its metrics: a new run given its folder
    said 'stopped before its first checkpoint; starting it afresh' and deleted metrics.csv, curves.png and
    hparams.yaml. It is refused (exit 2), and the logs stay."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text("seed: 0\n")
    logs = "epoch,step,train/loss_step,val/mIoU\n0,3,0.9,\n0,3,,0.41\n1,7,,0.52\n"
    (run_dir / "metrics.csv").write_text(logs)
    (run_dir / "curves.png").write_bytes(b"png")
    code, out, err = segcli(["train", *tiny(tiny_data, "final_eval=false"), "--run-dir", run_dir], capsys)
    assert code == 2 and out == "", err
    assert "holds the logs of a run that validated 2 epoch(s) (metrics.csv), though not its checkpoints" in err
    assert (run_dir / "metrics.csv").read_text() == logs and (run_dir / "curves.png").is_file()
