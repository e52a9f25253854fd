"""What a finished run leaves: metrics.csv with lr and throughput, curves.png, RUN_DIR/eval equal to `segcli eval`."""

from __future__ import annotations

import json

import cv2
import pytest

from helpers_train import rows, segcli, tiny, val_rows


def test_metrics_csv_logs_lr_throughput_loss_and_val_per_epoch(reference_run):
    table = rows(reference_run)
    steps = [r for r in table if r.get("train/lr")]
    assert len(steps) == 6  # 3 epochs x 2 steps, logged every step
    assert all(float(r["train/images_per_s"]) > 0 for r in steps)
    assert all(r["train/loss_step"] for r in steps)
    assert float(steps[0]["train/lr"]) > float(steps[-1]["train/lr"])  # the poly schedule decays
    epoch_rows = [r for r in table if r.get("train/epoch_images_per_s")]
    assert len(epoch_rows) == 3 and all(r["train/loss_epoch"] for r in epoch_rows)
    assert [e for e, _, _ in val_rows(reference_run)] == ["0", "1", "2"]


def test_metrics_csv_logs_the_lr_each_step_trained_with(tiny_data, tmp_path, capsys):
    """train/lr is the lr the row's optimiser step used: it was read after the scheduler had stepped, so the row of
    step 0 showed step 1's lr (a warm-up's first value and the peak never appeared; the last row showed 0 for poly)."""
    run = tmp_path / "run"
    # 6 steps of batch 2 over 2 epochs (3 an epoch): through the warm-up, across an epoch boundary, and at the peak
    code, _, err = segcli(["train", *tiny(tiny_data, "trainer.max_epochs=2", "data.batch_size=2",
                                          "trainer.limit_train_batches=3", "sched=constant", "sched.warmup_steps=4",
                                          "optim.lr=0.001", "final_eval=false"), "--run-dir", run], capsys)
    assert code == 0, err
    logged = [(int(r["step"]), float(r["train/lr"])) for r in rows(run) if r.get("train/lr")]
    assert logged == [(step, pytest.approx(0.001 * min(step + 1, 4) / 4)) for step in range(6)]


def test_the_first_step_under_a_time_budget_trains_at_the_peak_lr(tiny_data, tmp_path, capsys):
    """Under trainer.max_time the first step's lr counted the trainer's and the data's set-up as training time,
    which the Timer leaves out: poly's first step trained below the peak (92% of it with a 40-s budget)."""
    run = tmp_path / "run"
    code, _, err = segcli(["train", *tiny(tiny_data, "trainer.max_epochs=1", "data.batch_size=2",
                                          "trainer.limit_train_batches=2", "trainer.max_time=00:00:00:30",
                                          "sched=poly", "optim.lr=0.001", "final_eval=false"), "--run-dir", run],
                          capsys)
    assert code == 0, err
    logged = [(int(r["step"]), float(r["train/lr"])) for r in rows(run) if r.get("train/lr")]
    assert logged[0] == (0, pytest.approx(0.001, rel=1e-6))  # logged as float32


def test_tensorboard_events_hold_what_metrics_csv_holds(reference_run):
    """With tensorboard installed (the dev extra), RUN_DIR/tensorboard/ holds the same scalars as metrics.csv."""
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(reference_run / "tensorboard"))
    events.Reload()
    assert {"train/loss_step", "train/lr", "val/mIoU"} <= set(events.Tags()["scalars"])
    logged = [round(e.value, 5) for e in events.Scalars("val/mIoU")]
    assert logged == [round(float(v), 5) for _, _, v in val_rows(reference_run)]
    assert [e.step for e in events.Scalars("train/lr")] == [int(r["step"]) for r in rows(reference_run) if r.get("train/lr")]


def test_curves_png_is_written(reference_run):
    image = cv2.imread(str(reference_run / "curves.png"))
    assert image is not None and image.shape[0] > 100 and image.shape[1] > image.shape[0]
    assert not list(reference_run.glob(".curves.png.*"))  # no temp file left


def test_final_eval_with_other_inference_settings_says_how_to_reproduce_it(tiny_data, tmp_path, capsys):
    """A run with inference=tta evaluated best.ckpt with flip + three scales: the final mIoU differed from what a
    plain `segcli eval --ckpt best.ckpt` gave, without a word. The line names the settings and the command."""
    from segcli.training.final_eval import inference_overrides

    run = tmp_path / "run"
    code, _, err = segcli(["train", *tiny(tiny_data, "trainer.max_epochs=1", "inference=tta"), "--run-dir", run],
                          capsys)
    assert code == 0, err
    given = "inference.tta=flip inference.scales=[0.75,1.0,1.25]"
    best = run / "checkpoints" / "best.ckpt"
    assert f"(with {given}: `segcli eval --ckpt {best} {given}` reproduces it;" in err
    code, out, err = segcli(["eval", "--ckpt", best, *given.split(), "--json", "-"], capsys)
    assert code == 0, err
    assert json.loads(out)["mIoU"] == json.loads((run / "eval" / "report.json").read_text())["mIoU"]
    from segcli.config import compose

    assert inference_overrides(compose("train", [])) == []  # whole-image defaults: a plain eval reproduces it
    for same in ("inference.scales=[]", "inference.scales=1", "inference.scales=[1]"):  # the default, spelt otherwise
        assert inference_overrides(compose("train", [same])) == [], same
    assert inference_overrides(compose("train", ["inference.scales=[1,0.5]"])) == ["inference.scales=[1,0.5]"]
    assert inference_overrides(compose("train", ["inference=slide", "inference.batch_size=8"])) == ["inference.mode=slide"]


def test_final_eval_equals_segcli_eval(reference_run, capsys):
    report = json.loads((reference_run / "eval" / "report.json").read_text())
    assert (reference_run / "eval" / "per_class.csv").is_file()
    code, out, err = segcli(["eval", "--ckpt", reference_run / "checkpoints" / "best.ckpt", "--json", "-"], capsys)
    assert code == 0, err
    assert json.loads(out)["mIoU"] == report["mIoU"]
    assert report["inference"]["mode"] == "whole"


def test_stdout_is_the_run_dir_only(tiny_data, tmp_path, capsys):
    from helpers_train import tiny

    code, out, err = segcli(["train", *tiny(tiny_data, "trainer.limit_train_batches=1", "final_eval=false"),
                             "--run-dir", tmp_path / "run"], capsys)
    assert code == 0, err
    assert out.strip().splitlines() == [str(tmp_path / "run")]
    assert "mIoU" in err and "IoU" in err  # per-class table and summary lines on stderr
    assert (tmp_path / "run" / "curves.png").is_file() and not (tmp_path / "run" / "eval").exists()


def test_lightning_log_keeps_its_facts_but_not_its_adverts(tiny_data, tmp_path, capsys):
    import logging

    from helpers_train import tiny

    messages: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: messages.append(record.getMessage())
    logger = logging.getLogger("lightning.pytorch")
    logger.addHandler(handler)
    try:
        code, _, err = segcli(["train", *tiny(tiny_data, "trainer.limit_train_batches=1", "final_eval=false"),
                               "--run-dir", tmp_path / "run"], capsys)
    finally:
        logger.removeHandler(handler)
    assert code == 0, err
    assert any("GPU available" in m for m in messages)  # Lightning's own report still reaches the log
    assert not [m for m in messages if "litlogger" in m or "💡" in m or "stepping batches" in m]
    assert "stepping batches" not in err  # Lightning's word on its internals: not for a pipeline's stderr


def test_a_run_directory_holding_a_run_is_refused(tiny_data, reference_run, capsys):
    """--run-dir naming a finished run trained over it (best.ckpt and last.ckpt replaced, metrics mixed), and two
    runs started at once into one folder both wrote there."""
    from helpers_train import tiny

    files = {p: p.stat().st_mtime_ns for p in reference_run.rglob("*") if p.is_file()}
    code, out, err = segcli(["train", *tiny(tiny_data, "trainer.max_epochs=1"), "--run-dir", reference_run], capsys)
    assert code == 2 and out == ""
    assert err.strip().splitlines()[-1] == (
        f"segcli: error: --run-dir {reference_run} holds a run already (checkpoints); continue it "
        f"with `segcli train --resume {reference_run}`, or give another --run-dir (a new run would overwrite its "
        "checkpoints)")
    assert {p: p.stat().st_mtime_ns for p in reference_run.rglob("*") if p.is_file()} == files


def test_a_final_evaluation_that_predicts_most_classes_nowhere_gets_a_note(capsys):
    """60 classes after a 2-minute run: 58 at IoU 0, each never predicted, and only the per-class table said so."""
    from omegaconf import OmegaConf

    from segcli.commands.train import _unlearnt_note

    rows = [{"name": f"c{i}", "gt_pixels": 100, "pred_pixels": 5000 if i < 2 else 0} for i in range(60)]
    rows.append({"name": "absent", "gt_pixels": 0, "pred_pixels": 0})  # not in val: not counted
    _unlearnt_note({"classes": rows}, OmegaConf.create({"loss": {"class_weights": None}}))
    assert capsys.readouterr().err.strip() == (
        "train: note: best.ckpt predicts no pixel of 58 of the 60 classes in the val images (c2, c3, c4, c5, c6, …): "
        "it has not learnt them yet; train longer (trainer.max_time or trainer.max_epochs), or weight rare classes "
        "(loss.class_weights=auto)")
    _unlearnt_note({"classes": rows}, OmegaConf.create({"loss": {"class_weights": "auto"}}))
    assert "loss.class_weights" not in capsys.readouterr().err
    for row in rows[2:32]:  # 28 of 60 never predicted: under half, nothing said
        row["pred_pixels"] = 1
    _unlearnt_note({"classes": rows}, OmegaConf.create({"loss": {"class_weights": None}}))
    assert capsys.readouterr().err == ""


def test_throughput_counts_the_batches_after_a_validation_within_the_epoch(tiny_data, tmp_path, capsys):
    """With val_check_interval < 1 the first batch after each validation went untimed and uncounted: its row repeated
    the step before's images/s, and the epoch's images/s counted the other batches only. The epoch figure is all
    its images over the sum of the steps' times."""
    run = tmp_path / "run"
    code, _, err = segcli(["train", *tiny(tiny_data, "trainer.max_epochs=1", "data.batch_size=2",
                                          "trainer.limit_train_batches=4", "trainer.limit_val_batches=1",
                                          "+trainer.val_check_interval=0.5", "final_eval=false"),
                           "--run-dir", run], capsys)
    assert code == 0, err
    table = rows(run)
    assert len([r for r in table if r.get("val/mIoU")]) == 2  # after batches 2 and 4
    rates = [float(r["train/images_per_s"]) for r in table if r.get("train/images_per_s")]
    assert len(rates) == 4
    (epoch,) = [float(r["train/epoch_images_per_s"]) for r in table if r.get("train/epoch_images_per_s")]
    assert epoch == pytest.approx(8 / sum(2 / rate for rate in rates), rel=1e-4)


def test_the_epoch_lines_time_is_the_runs_training_time_over_all_sessions(tiny_data, tmp_path, capsys, monkeypatch):
    """The epoch line's time counted this session only: after --resume it restarted at 0:00:00 while trainer.max_time
    counts every session (Lightning's 'Time limit reached. Elapsed time is 0:01:02' beside 'epoch 6 (0:00:29)')."""
    from lightning.pytorch.callbacks import Timer

    monkeypatch.setattr(Timer, "time_elapsed", lambda self, stage="train": 3725.4)  # as a restored Timer gives
    code, _, err = segcli(["train", *tiny(tiny_data, "trainer.max_epochs=1", "final_eval=false",
                                          "trainer.enable_progress_bar=true"),  # stderr is no terminal: the lines
                           "--run-dir", tmp_path / "run"], capsys)
    assert code == 0, err
    assert "train: epoch 1/1 (1:02:05): loss " in err


def test_a_steps_images_per_s_covers_all_its_accumulated_batches(tiny_data, tmp_path, capsys):
    """With trainer.accumulate_grad_batches=2 a step's row held its last micro-batch's images/s only (the first,
    slowest batch of each step never appeared, and the rows disagreed with the epoch's figure)."""
    run = tmp_path / "run"
    code, _, err = segcli(["train", *tiny(tiny_data, "trainer.max_epochs=1", "data.batch_size=2",
                                          "trainer.limit_train_batches=4", "trainer.accumulate_grad_batches=2",
                                          "final_eval=false"), "--run-dir", run], capsys)
    assert code == 0, err
    table = rows(run)
    rates = [float(r["train/images_per_s"]) for r in table if r.get("train/images_per_s")]
    assert len(rates) == 2  # two optimiser steps of 4 images each
    (epoch,) = [float(r["train/epoch_images_per_s"]) for r in table if r.get("train/epoch_images_per_s")]
    assert epoch == pytest.approx(8 / sum(4 / rate for rate in rates), rel=1e-4)
