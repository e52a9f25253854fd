"""Small parts: atomic checkpoint writes, RNG state, CSV appending, loggers, curves, sweep expansion, experiments."""

from __future__ import annotations

import random
import signal

import numpy as np
import pytest
import torch

from segcli.errors import ConfigError


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_ctrl_c_that_python_drops_inside_a_finaliser_still_stops_training():
    from segcli.training.callbacks import CtrlC

    class Collected:
        def __del__(self):  # Ctrl-C landing while an object is collected: Python drops what __del__ raises
            signal.raise_signal(signal.SIGINT)  # the handler runs at once, inside __del__

    before = signal.signal(signal.SIGINT, signal.default_int_handler)  # Python's; another in-process test may have
    try:  # left Lightning's SIG_IGN
        ctrl_c = CtrlC()
        with ctrl_c.installed():
            Collected()  # prints "Exception ignored in ..." and goes on: the KeyboardInterrupt is lost
            assert ctrl_c.noted
            with pytest.raises(KeyboardInterrupt):  # the next batch raises it again
                ctrl_c.on_train_batch_start(None, None, None, 0)
            with pytest.raises(KeyboardInterrupt):
                ctrl_c.on_validation_batch_start(None, None, None, 0)
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the previous handler is back
    finally:
        signal.signal(signal.SIGINT, before)


def test_a_ctrl_c_set_to_be_ignored_stays_ignored_in_training():
    """A run started with SIGINT ignored (`segcli train ... &` from a script, which the terminal's Ctrl-C is not
    meant to stop) was stopped by Ctrl-C during training, though not during its final evaluation: the training's
    handler replaced the inherited SIG_IGN."""
    from segcli.training.callbacks import CtrlC

    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        ctrl_c = CtrlC()
        with ctrl_c.installed():
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            signal.raise_signal(signal.SIGINT)
            ctrl_c.on_train_batch_start(None, None, None, 0)  # no KeyboardInterrupt
        assert not ctrl_c.noted and signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, before)


def test_atomic_checkpoint_keeps_the_old_file_when_a_write_dies(tmp_path, monkeypatch):
    from segcli.training import checkpoints

    path = tmp_path / "last.ckpt"
    io = checkpoints.AtomicCheckpointIO()
    io.save_checkpoint({"a": torch.zeros(3)}, path)

    def dies(obj, handle, *args, **kwargs):
        handle.write(b"half a checkpoint")
        raise KeyboardInterrupt  # as if killed mid-write

    monkeypatch.setattr(checkpoints.torch, "save", dies)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"a": torch.ones(3)}, path)
    assert torch.equal(torch.load(path, weights_only=True)["a"], torch.zeros(3))
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temp file left


def test_sigterm_during_a_checkpoint_write_waits_for_the_file(tmp_path, monkeypatch):
    """SIGTERM raises Terminated under segcli's main(); inside a checkpoint write it is held until the new file is
    in place (torch's zip writer cut off half-way raises a RuntimeError that would hide the stop)."""
    from segcli import errors
    from segcli.training import checkpoints

    path = tmp_path / "last.ckpt"
    real_save = torch.save

    def save_with_a_signal_inside(obj, handle, *args, **kwargs):
        handle.write(b"")
        signal.raise_signal(signal.SIGTERM)  # would end the write here if it were not held
        real_save(obj, handle, *args, **kwargs)

    monkeypatch.setattr(checkpoints.torch, "save", save_with_a_signal_inside)
    before = signal.getsignal(signal.SIGTERM)
    with errors.stop_signals_raise():
        with pytest.raises(errors.Terminated):
            checkpoints.AtomicCheckpointIO().save_checkpoint({"a": torch.ones(3)}, path)
        assert errors.stop_exit_code() == 143
    assert signal.getsignal(signal.SIGTERM) == before  # the previous handler is back
    assert torch.equal(torch.load(path, weights_only=True)["a"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_an_ignored_sigterm_stays_ignored():
    """Under `nohup` (SIGHUP ignored) or a parent that ignores SIGTERM, segcli does not take the signal back."""
    from segcli import errors

    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        with errors.stop_signals_raise():
            assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
            assert signal.getsignal(signal.SIGTERM) != signal.SIG_DFL
    finally:
        signal.signal(signal.SIGHUP, previous)


def test_rng_state_round_trips_through_a_weights_only_checkpoint(tmp_path):
    from segcli.training.callbacks import RngState

    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    torch.save({"rng": RngState().state_dict()}, tmp_path / "c.ckpt")
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    state = torch.load(tmp_path / "c.ckpt", weights_only=True)["rng"]
    RngState().load_state_dict(state)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


def test_csv_logger_appends_to_an_existing_metrics_csv(tmp_path):
    from segcli.training.loggers import RunCSVLogger

    (tmp_path / "metrics.csv").write_text("epoch,step,val/mIoU\n0,1,0.5\n")
    logger = RunCSVLogger(tmp_path)
    logger.log_metrics({"epoch": 1, "val/mIoU": 0.6}, step=3)
    logger.save()
    lines = (tmp_path / "metrics.csv").read_text().split()
    assert lines[0] == "epoch,step,val/mIoU" and lines[1] == "0,1,0.5" and lines[2].startswith("1,3,0.6")


def test_tensorboard_logger_only_when_installed(tmp_path, monkeypatch):
    from segcli.training import loggers

    monkeypatch.setattr(loggers, "tensorboard_available", lambda: False)
    assert [type(x).__name__ for x in loggers.make_loggers(tmp_path)] == ["RunCSVLogger"]
    monkeypatch.undo()
    pytest.importorskip("tensorboard")
    assert [type(x).__name__ for x in loggers.make_loggers(tmp_path)] == ["RunCSVLogger", "TensorBoardLogger"]


def test_curves_from_metrics_csv(tmp_path):
    from segcli.training.curves import read_series, write_curves

    assert write_curves(tmp_path) is None
    (tmp_path / "metrics.csv").write_text(
        "epoch,step,train/loss_epoch,train/loss_step,val/mIoU\n0,0,,2.0,\n0,1,,1.5,\n0,1,,,0.25\n0,1,1.7,,\n1,3,,,0.5\n")
    series = read_series(tmp_path / "metrics.csv")
    assert series["loss_step"] == [(0.0, 2.0), (1.0, 1.5)] and series["miou"] == [(1.0, 25.0), (2.0, 50.0)]
    assert write_curves(tmp_path).is_file()


def test_curves_place_validations_within_an_epoch_at_their_fraction_of_it(tmp_path):
    """trainer.val_check_interval=0.5 (4 steps an epoch): the validations after steps 1 and 5 were drawn at epochs 1
    and 2 above the epoch-end ones, a vertical zig-zag read as a fall and rise between epochs."""
    from segcli.training.curves import read_series

    rows = ["epoch,step,train/loss_epoch,train/loss_step,val/mIoU"]
    for epoch in range(2):
        first = 4 * epoch
        rows += [f"{epoch},{first + i},,1.0," for i in range(4)]
        rows += [f"{epoch},{first + 1},,,0.{epoch}2", f"{epoch},{first + 3},,,0.{epoch}4", f"{epoch},{first + 3},1.0,,"]
    (tmp_path / "metrics.csv").write_text("\n".join(rows) + "\n")
    points = read_series(tmp_path / "metrics.csv")["miou"]
    assert [x for x, _ in points] == [0.5, 1.0, 1.5, 2.0]
    assert [y for _, y in points] == pytest.approx([2, 4, 12, 14])


def test_resume_config_refuses_other_overrides(tmp_path):
    from segcli.training.resume import resume_config

    (tmp_path / "config.yaml").write_text("trainer: {max_epochs: 5, max_time: null}\nrun_dir: null\nmodel: {arch: unet}\n")
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.ckpt").write_bytes(b"")
    cfg = resume_config(tmp_path, ["trainer.max_epochs=8", "trainer.max_time=00:00:10:00"])
    assert cfg.trainer.max_epochs == 8 and cfg.run_dir == str(tmp_path.resolve())
    for bad in (["model.arch=fpn"], ["trainer.max_epochs=4"], ["trainer.max_epochs=6,7"]):
        with pytest.raises(ConfigError):
            resume_config(tmp_path, bad)


def test_sweep_expansion_uses_hydra_grammar():
    from segcli.training.sweep import expand, job_name, refuse_sweep

    jobs, swept = expand(["optim.lr=0.1,0.2", "trainer.max_epochs=range(1,3)", "seed=3"])
    assert swept == ["optim.lr", "trainer.max_epochs"]
    assert jobs == [["optim.lr=0.1", "trainer.max_epochs=1", "seed=3"], ["optim.lr=0.1", "trainer.max_epochs=2", "seed=3"],
                    ["optim.lr=0.2", "trainer.max_epochs=1", "seed=3"], ["optim.lr=0.2", "trainer.max_epochs=2", "seed=3"]]
    assert job_name(3, jobs[3], swept) == "3-lr=0.2,max_epochs=2"
    refuse_sweep(["augment.crop_size=[64,64]", "model.encoder=resnet18"])  # lists are not sweeps
    with pytest.raises(ConfigError, match="-m"):
        refuse_sweep(["optim.lr=0.1,0.2"])
    # a tuple, read only once each comma's part was quoted: said it "is a sweep" (of '(64' and '64)'), add -m
    with pytest.raises(ConfigError, match=r"^'augment.crop_size=\(64,64\)' reads as a sweep of '\(64', '64\)'; write "
                                          r"a list as \[a,b\]"):
        refuse_sweep(["augment.crop_size=(64,64)"])


def test_experiment_bundles_resolve_from_conf_experiment(tmp_path):
    from segcli.config import compose

    cfg = compose("train", ["experiment=smoke", "trainer.max_epochs=2"])
    assert cfg.augment.crop_size == [64, 64] and cfg.data.num_workers == 0 and cfg.trainer.max_epochs == 2
    cfg = compose("train", ["experiment=camvid"])  # the packaged CamVid recipe
    assert cfg.data.input_scale == 0.5 and cfg.trainer.max_time == "00:00:12:00"
    gpu = compose("train", ["experiment=camvid_gpu"])  # the same recipe on one GPU, at full resolution
    assert gpu.trainer.accelerator == "gpu" and gpu.data.input_scale == 1.0 and gpu.model.kwargs == {}
    assert gpu.loss == cfg.loss and gpu.optim == cfg.optim and gpu.trainer.max_time == "00:00:30:00"
    assert gpu.data.repeat == 10 and gpu.trainer.check_val_every_n_epoch == 2  # 10-pass epochs, validated every 20 passes
    (tmp_path / "experiment").mkdir()  # a user's own bundle from --config-dir resolves the same way
    (tmp_path / "experiment" / "mine.yaml").write_text("# @package _global_\ndefaults:\n  - override /model: fpn\n"
                                                       "trainer:\n  max_epochs: 7\n")
    cfg = compose("train", ["experiment=mine"], config_dir=tmp_path)
    assert cfg.trainer.max_epochs == 7 and cfg.model.arch == "fpn"
    (tmp_path / "experiment" / "camvid.yaml").write_text("# @package _global_\n")
    with pytest.raises(ConfigError, match="camvid.yaml: a packaged experiment option"):
        compose("train", ["experiment=mine"], config_dir=tmp_path)
    with pytest.raises(ConfigError, match="smoke"):
        compose("train", ["experiment=smok"])


def test_last_checkpoint_with_a_minimum_interval_skips_epoch_ends_but_not_the_last(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from segcli.training import checkpoints

    clock = [100.0]
    monkeypatch.setattr(checkpoints.time, "monotonic", lambda: clock[0])
    written = []
    trainer = SimpleNamespace(should_stop=False, max_epochs=-1, max_steps=-1, current_epoch=0, global_step=0,
                              world_size=1, fit_loop=SimpleNamespace(min_epochs=None, min_steps=None),
                              save_checkpoint=lambda path, weights_only: written.append(trainer.current_epoch))
    last = checkpoints.LastCheckpoint(tmp_path, min_interval_s=60)
    for epoch, seconds in enumerate([10, 10, 10, 40, 10]):  # epoch ends at 110, 120, 130, 170, 180 s
        clock[0] += seconds
        trainer.current_epoch = epoch
        last.on_train_epoch_start(trainer, None)
        last.on_train_epoch_end(trainer, None)
    assert written == [0, 3]  # the first epoch end, then the first one 60 s after it
    trainer.current_epoch, trainer.should_stop = 5, True  # the time budget ran out in epoch 5
    clock[0] += 1
    last.on_train_epoch_start(trainer, None)
    last.on_train_epoch_end(trainer, None)
    last.on_train_end(trainer, None)
    assert written == [0, 3, 5]  # the last epoch is written once
    trainer.should_stop = False
    every = checkpoints.LastCheckpoint(tmp_path)  # default: every epoch end
    written.clear()
    for epoch in range(3):
        trainer.current_epoch = epoch
        every.on_train_epoch_start(trainer, None)
        every.on_train_epoch_end(trainer, None)
    every.on_train_end(trainer, None)
    assert written == [0, 1, 2]
    skipped = checkpoints.LastCheckpoint(tmp_path, min_interval_s=60)
    written.clear()
    for epoch in range(2):
        trainer.current_epoch = epoch
        skipped.on_train_epoch_start(trainer, None)
        skipped.on_train_epoch_end(trainer, None)
    skipped.on_train_end(trainer, None)  # a stop the epoch end did not see coming: the skipped epoch is written
    assert written == [0, 1]


def test_a_stop_before_the_minimum_epochs_is_not_the_last_epoch(tmp_path, monkeypatch):
    """Early stopping asks to stop in epoch 2, but trainer.min_epochs=5 trains on: with a minimum interval
    between writes, the epoch ends in between are skipped as usual, and epoch 4 (the real last) is written."""
    from types import SimpleNamespace

    from segcli.training import checkpoints

    clock = [100.0]
    monkeypatch.setattr(checkpoints.time, "monotonic", lambda: clock[0])
    written = []
    trainer = SimpleNamespace(should_stop=False, max_epochs=-1, max_steps=-1, current_epoch=0, global_step=0,
                              world_size=1, fit_loop=SimpleNamespace(min_epochs=5, min_steps=None),
                              save_checkpoint=lambda path, weights_only: written.append(trainer.current_epoch))
    last = checkpoints.LastCheckpoint(tmp_path, min_interval_s=60)
    for epoch in range(5):
        clock[0] += 5
        trainer.current_epoch, trainer.global_step = epoch, 10 * (epoch + 1)
        trainer.should_stop = epoch >= 2  # Lightning keeps asking and keeps training until min_epochs
        last.on_train_epoch_start(trainer, None)
        last.on_train_epoch_end(trainer, None)
    last.on_train_end(trainer, None)
    assert written == [0, 4]
    trainer.fit_loop = SimpleNamespace(min_epochs=None, min_steps=100)  # min_steps: 10 steps per epoch here
    written.clear()
    last = checkpoints.LastCheckpoint(tmp_path, min_interval_s=60)
    for epoch in range(10):
        clock[0] += 5
        trainer.current_epoch, trainer.global_step, trainer.should_stop = epoch, 10 * (epoch + 1), True
        last.on_train_epoch_start(trainer, None)
        last.on_train_epoch_end(trainer, None)
    last.on_train_end(trainer, None)
    assert written == [0, 9]


def test_metrics_csv_keeps_its_rows_when_a_new_metric_widens_it_and_the_write_is_cut(tmp_path, monkeypatch):
    """A metric logged for the first time (val/mIoU) makes the CSV writer rewrite metrics.csv under a wider header;
    a run killed during that rewrite lost every earlier row (the file was emptied first). Now it is written beside
    and renamed: cut short, the old file stays whole."""
    import csv

    from segcli.training.loggers import RunCSVLogger

    def two_rows_then_val(run_dir):
        logger = RunCSVLogger(run_dir)
        for step, loss in enumerate((1.0, 0.5)):
            logger.log_metrics({"train/loss": loss}, step=step)
            logger.save()
        logger.log_metrics({"val/mIoU": 0.3}, step=1)
        return logger

    two_rows_then_val(tmp_path / "whole").save()
    with open(tmp_path / "whole" / "metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["train/loss"], r["val/mIoU"]) for r in rows] == [("1.0", ""), ("0.5", ""), ("", "0.3")]

    logger = two_rows_then_val(tmp_path / "cut")
    before = (tmp_path / "cut" / "metrics.csv").read_text()

    def killed(self, rows):
        raise KeyboardInterrupt  # the process dies part-way through writing the rows

    monkeypatch.setattr(csv.DictWriter, "writerows", killed)
    with pytest.raises(KeyboardInterrupt):
        logger.save()
    assert (tmp_path / "cut" / "metrics.csv").read_text() == before
    assert len(before.splitlines()) == 3


def test_resume_trims_a_metrics_csv_with_damaged_rows(tmp_path, capsys):
    """A segcli before 2026-12-06 could leave rows of more fields than the header (or cut short) in metrics.csv on a
    full disk; --resume then stopped with "internal error: ValueError: dict contains fields not in fieldnames".
    They are left out with a note, and the rows before the resumed step stay."""
    from segcli.training.resume import trim_metrics

    (tmp_path / "metrics.csv").write_text("epoch,step,train/loss\r\n0,1,0.9\r\n0,2,0.8,0.5,extra\r\n0,3\r\n"
                                          "1,4,0.7\r\n1,9,0.1\r\n", newline="")
    trim_metrics(tmp_path, global_step=5)
    assert (tmp_path / "metrics.csv").read_text() == "epoch,step,train/loss\n0,1,0.9\n1,4,0.7\n"
    assert "left out 2 damaged row(s)" in capsys.readouterr().err


def test_a_broken_tensorboard_leaves_the_run_with_metrics_csv(tmp_path, monkeypatch, capsys):
    """tensorboard installed but failing to import (another protobuf's build) stopped `segcli train`; the run now
    logs to metrics.csv alone and a note says why and how to mend it."""
    import sys

    from segcli.training import loggers

    pytest.importorskip("tensorboard")
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # its import raises ImportError
    assert [type(x).__name__ for x in loggers.make_loggers(tmp_path)] == ["RunCSVLogger"]
    err = capsys.readouterr().err
    assert "tensorboard is installed but cannot be imported" in err and "--force-reinstall tensorboard" in err
