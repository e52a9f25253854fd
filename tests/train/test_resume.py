"""--resume: a run killed with SIGKILL (or stopped with Ctrl-C or SIGTERM) continues from last.ckpt to the same end."""

from __future__ import annotations

import json
import signal

import pytest

from helpers_train import epochs_run, segcli, start_and_wait_for_last, tiny, val_rows


def test_sigkill_then_resume_ends_like_an_uninterrupted_run(tiny_data, reference_run, tmp_path, capsys):
    run_dir = tmp_path / "run"
    proc = start_and_wait_for_last(tiny(tiny_data, "trainer.max_epochs=3"), run_dir, tmp_path)
    proc.send_signal(signal.SIGKILL)  # last.ckpt exists (epoch 1 done); the kill may land during a later write
    assert proc.wait(timeout=60) == -signal.SIGKILL
    code, out, err = segcli(["train", "--resume", run_dir], capsys)
    assert code == 0, err
    assert out.strip().splitlines()[-1] == str(run_dir.resolve())
    assert epochs_run(run_dir) == 3
    assert val_rows(run_dir) == val_rows(reference_run)  # same seed → same validation results, epoch by epoch
    code, out, err = segcli(["eval", "--ckpt", run_dir / "checkpoints" / "best.ckpt", "--json", "-"], capsys)
    assert code == 0, err
    assert json.loads(out)["mIoU"] == json.loads((run_dir / "eval" / "report.json").read_text())["mIoU"]


@pytest.mark.parametrize("signum, code, line", [(signal.SIGINT, 130, "segcli: interrupted"),
                                                (signal.SIGTERM, 143, "segcli: terminated (SIGTERM)")])
def test_a_stopped_run_exits_with_the_signals_code_and_resumes(tiny_data, tmp_path, capsys, signum, code, line):
    run_dir = tmp_path / "run"
    proc = start_and_wait_for_last(tiny(tiny_data, "trainer.max_epochs=50", "trainer.max_time=00:00:10:00",
                                         "final_eval=false"), run_dir, tmp_path)
    proc.send_signal(signum)  # Ctrl-C; SIGTERM: a cancelled CI job, `timeout`, a cluster's pre-emption
    assert proc.wait(timeout=120) == code, (tmp_path / "stderr.txt").read_text()[-2000:]
    assert (tmp_path / "stderr.txt").read_text().strip().splitlines()[-1] == line
    assert "Traceback" not in (tmp_path / "stderr.txt").read_text()
    done = epochs_run(run_dir)
    assert done < 50
    # max_time counts over all sessions of the run: a 1 s budget, already spent, ends the resumed part at once.
    code, out, err = segcli(["train", "--resume", run_dir, "trainer.max_time=00:00:00:01"], capsys)
    assert code == 0, err
    assert "resuming" in err and done <= epochs_run(run_dir) < 50
    epochs = [int(e) for e, _, _ in val_rows(run_dir)]
    assert epochs == list(range(len(epochs)))  # each epoch validated once: no duplicated rows after the resume


@pytest.mark.parametrize("setup, args, code, text", [
    ("none", [], 3, "existing run directory"),
    ("config", [], 3, "no last.ckpt"),
    ("last", ["model.arch=fpn"], 2, "cannot change"),
    ("last", ["trainer.max_epochs=1"], 2, "may only be raised"),
    ("last", ["trainer.max_epochs=abc"], 2, "trainer.max_epochs='abc': give a whole number >= the run's 5"),
])
def test_resume_errors_are_one_line(tmp_path, capsys, setup, args, code, text):
    if setup in ("config", "last"):
        (tmp_path / "config.yaml").write_text("trainer: {max_epochs: 5}\nrun_dir: null\nfinal_eval: false\n")
    if setup == "last":  # the override checks come before the checkpoint is read
        (tmp_path / "checkpoints").mkdir()
        (tmp_path / "checkpoints" / "last.ckpt").write_bytes(b"")
    got, out, err = segcli(["train", "--resume", tmp_path / "nope" if setup == "none" else tmp_path, *args], capsys)
    assert got == code, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("segcli: error: ") and text in lines[0]


def test_a_failed_resume_leaves_the_runs_config_as_it_was(tiny_data, tmp_path, capsys):
    """Overrides a resume rejects, or a resume that fails before its first new checkpoint, do not end up in
    config.yaml (a later plain --resume would use them); a checkpoint given instead of its run is named."""
    import shutil

    data, run_dir = tmp_path / "data", tmp_path / "run"
    shutil.copytree(tiny_data, data)
    code, _, err = segcli(["train", *tiny(data, "trainer.max_epochs=1", "final_eval=false", "data.cache=false"),
                           "--run-dir", run_dir], capsys)
    assert code == 0, err
    saved = (run_dir / "config.yaml").read_bytes()
    for override, text in [("final_eval=maybe", "final_eval='maybe': give true or false"),
                           ("data.num_workers=-3", "data.num_workers=-3: give auto or a whole number >= 0"),
                           ("data.cache=sometimes", "data.cache='sometimes': give auto, true or false")]:
        code, _, err = segcli(["train", "--resume", run_dir, override], capsys)
        assert code == 2 and err.strip().splitlines() == [f"segcli: error: {text}"], err
        assert (run_dir / "config.yaml").read_bytes() == saved
    card = (data / "dataset.yaml").read_text()  # prepared again with other classes: was exit 4 (state_dict shapes)
    assert "road," in card
    (data / "dataset.yaml").write_text(card.replace("road,", "street,", 1))
    code, _, err = segcli(["train", "--resume", run_dir, "trainer.max_epochs=3"], capsys)
    assert code == 3 and err.strip().splitlines() == [err.strip()], err  # one line, before 'resuming'
    assert "the dataset changed since this run began (classes " in err and ",street," in err, err
    assert (run_dir / "config.yaml").read_bytes() == saved and epochs_run(run_dir) == 1
    (data / "dataset.yaml").write_text(card)
    image = sorted((data / "images" / "train").glob("*.png"))[0]
    image.write_bytes(image.read_bytes()[:200])  # unreadable once training reads it
    code, _, err = segcli(["train", "--resume", run_dir, "trainer.max_epochs=3"], capsys)
    assert code == 3 and f"{image.name}: not a readable image" in err, err
    assert (run_dir / "config.yaml").read_bytes() == saved
    assert epochs_run(run_dir) == 1
    code, _, err = segcli(["train", "--resume", run_dir / "checkpoints" / "last.ckpt"], capsys)
    assert code == 3 and f"not a checkpoint: --resume {run_dir.resolve()}" in err, err


def test_throttled_last_checkpoint_resumes_and_holds_the_final_epoch(tiny_data, reference_run, tmp_path, capsys):
    import torch

    run_dir = tmp_path / "run"
    args = tiny(tiny_data, "trainer.max_epochs=3", "save_min_interval_s=3600",  # an hour: only first and last
                "final_eval=false")  # (what is checked is training's: metrics.csv and last.ckpt)
    proc = start_and_wait_for_last(args, run_dir, tmp_path)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL
    code, _, err = segcli(["train", "--resume", run_dir], capsys)
    assert code == 0, err
    assert epochs_run(run_dir) == 3
    assert val_rows(run_dir) == val_rows(reference_run)
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert last["epoch"] == 2  # the epoch that ends training is written, however recent the previous write


def _callback_state(run_dir, prefix: str) -> dict:
    import torch

    last = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    return next(state for key, state in last["callbacks"].items() if key.startswith(prefix))


def test_last_ckpt_holds_its_epochs_best_score_and_a_moved_run_keeps_it(tiny_data, reference_run, tmp_path, capsys):
    """last.ckpt is written after its epoch's validation updated best.ckpt's and early stopping's state (it was one
    epoch behind: a resumed run could replace best.ckpt with a worse model, and stop an epoch late); a run directory
    moved or copied elsewhere resumes with that state too (Lightning dropped it when the folder's path changed)."""
    import shutil

    best = max(float(v) for _, _, v in val_rows(reference_run))
    assert float(_callback_state(reference_run, "ModelCheckpoint")["best_model_score"]) == pytest.approx(best)
    moved = tmp_path / "moved"
    shutil.copytree(reference_run, moved)
    code, out, err = segcli(["train", "--resume", moved, "final_eval=false"], capsys)  # finished: nothing to train
    assert code == 0, err
    assert f"train: best val mIoU {best * 100:.2f} → {moved.resolve() / 'checkpoints' / 'best.ckpt'}" in err, err
    assert "dirpath has changed" not in err
    run_dir = tmp_path / "stopping"
    code, _, err = segcli(["train", *tiny(tiny_data, "trainer.max_epochs=2", "final_eval=false",
                                          "early_stopping.patience=5"), "--run-dir", run_dir], capsys)
    assert code == 0, err
    stopping = _callback_state(run_dir, "EarlyStopping")
    assert float(stopping["best_score"]) == pytest.approx(max(float(v) for _, _, v in val_rows(run_dir)))


def test_a_run_started_with_a_relative_data_root_resumes_from_another_folder(tiny_data, tmp_path, capsys,
                                                                             monkeypatch):
    """config.yaml kept data.root as typed (`data.root=syn`): --resume from any other folder found no dataset card
    (exit 3). It is saved absolute now; a run saved before takes the folder from its checkpoint."""
    import shutil

    import yaml

    start, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    start.mkdir(), elsewhere.mkdir()
    shutil.copytree(tiny_data, start / "syn")
    monkeypatch.chdir(start)
    args = [a for a in tiny(tiny_data, "trainer.max_epochs=1", "final_eval=false") if not a.startswith("data.root=")]
    code, _, err = segcli(["train", "data.root=syn", *args, "--run-dir", "run"], capsys)
    assert code == 0, err
    saved = start / "run" / "config.yaml"
    assert yaml.safe_load(saved.read_text())["data"]["root"] == str((start / "syn").resolve())
    monkeypatch.chdir(elsewhere)
    code, _, err = segcli(["train", "--resume", start / "run", "trainer.max_epochs=2"], capsys)
    assert code == 0, err
    config = yaml.safe_load(saved.read_text())
    config["data"]["root"] = "syn"  # as runs before the fix saved it
    saved.write_text(yaml.safe_dump(config))
    code, _, err = segcli(["train", "--resume", start / "run", "trainer.max_epochs=3"], capsys)
    assert code == 0, err
    assert epochs_run(start / "run") == 3


def test_a_run_started_from_a_weights_file_resumes_from_another_folder_and_without_it(tiny_data, tmp_path, capsys,
                                                                                    monkeypatch):
    """model.encoder_weights=r18.pth (relative) was saved as typed, and --resume read the file again: from another
    folder, or once the file had gone, the resume failed (exit 3 'encoder weights file not found') although the
    weights come from last.ckpt. The path is saved absolute, and a resume does not read it."""
    import torch
    import yaml

    from segcli.models.factory import build_model

    start, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    start.mkdir(), elsewhere.mkdir()
    torch.save(build_model("unet", "resnet18", classes=2).encoder.state_dict(), start / "r18.pth")
    monkeypatch.chdir(start)
    code, _, err = segcli(["train", *tiny(tiny_data, "trainer.max_epochs=1", "final_eval=false",
                                          "model.encoder_weights=r18.pth"), "--run-dir", "run"], capsys)
    assert code == 0, err
    assert "encoder weights r18.pth: 120 tensors loaded" in err
    saved = start / "run" / "config.yaml"
    assert yaml.safe_load(saved.read_text())["model"]["encoder_weights"] == str((start / "r18.pth").resolve())
    monkeypatch.chdir(elsewhere)
    (start / "r18.pth").unlink()
    code, _, err = segcli(["train", "--resume", start / "run", "trainer.max_epochs=2"], capsys)
    assert code == 0, err
    assert "encoder weights" not in err
    assert epochs_run(start / "run") == 2


def test_a_resume_that_lengthens_the_run_trains_on_at_the_lengthened_schedules_lr(tiny_data, reference_run, tmp_path,
                                                                                  capsys):
    """A 2-epoch run resumed with trainer.max_epochs=3: the schedule now spreads over 3 epochs, but the first resumed
    step trained at the lr restored from last.ckpt, computed under the 2-epoch budget (poly's end: 0); the later
    steps followed the new schedule. Every step of the added epoch must train at the 3-epoch run's lr."""
    from helpers_train import rows

    run_dir = tmp_path / "run"
    code, out, err = segcli(["train", *tiny(tiny_data, "trainer.max_epochs=2", "final_eval=false"), "--run-dir", run_dir],
                           capsys)
    assert code == 0, err
    code, out, err = segcli(["train", "--resume", run_dir, "trainer.max_epochs=3"], capsys)
    assert code == 0, err

    def lrs(folder):
        return [(r["step"], float(r["train/lr"])) for r in rows(folder) if r.get("train/lr") and r["epoch"] == "2"]

    assert lrs(run_dir) and lrs(run_dir) == lrs(reference_run)
    assert lrs(run_dir)[0][1] > 0


def test_a_run_of_an_early_segcli_whose_config_lacks_later_settings_resumes(tiny_data, tmp_path, capsys):
    """A run started by the first segcli (its config.yaml had no early_stopping, ema, final_eval, and one parameter
    group, torch's default AdamW step, no colour jitter): --resume stopped with 'internal error: ValueError: Input cfg is not an
    OmegaConf config object', and with today's defaults filled in, with 'a different number of parameter groups'."""
    import yaml

    run_dir = tmp_path / "run"
    code, _, err = segcli(["train", *tiny(tiny_data, "trainer.max_epochs=1", "final_eval=false", "optim=adamw",
                                          "optim.no_decay_norm_bias=false", "optim.fused=false"),
                           "--run-dir", run_dir], capsys)
    assert code == 0, err
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    for key in ("early_stopping", "ema", "final_eval", "save_min_interval_s"):
        del saved[key]
    del saved["optim"]["no_decay_norm_bias"], saved["optim"]["fused"], saved["augment"]["brightness"]
    (run_dir / "config.yaml").write_text(yaml.safe_dump(saved))
    code, out, err = segcli(["train", "--resume", run_dir, "trainer.max_epochs=2"], capsys)
    assert code == 0 and out.strip().splitlines()[-1] == str(run_dir.resolve()), err
    assert f"train: note: {run_dir.resolve() / 'config.yaml'} lacks " in err
    assert ("but augment.brightness=0.0 and optim.fused=false and optim.no_decay_norm_bias=false, as the run "
            "trained: ") in err, err
    assert epochs_run(run_dir) == 2
