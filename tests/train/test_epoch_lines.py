"""`segcli train` with stderr in a file (a CI log): the rich progress bar drew a whole frame there per epoch, wrapped
over about 8 lines of box characters. Off a terminal each epoch now gets one plain line; on one, the bar stays."""

from __future__ import annotations

import re

import pytest
from helpers_train import TINY, segcli, val_rows

LINE = re.compile(r"train: epoch (\d+)/(\d+) \(\d+:\d\d:\d\d\): loss (\d+\.\d{4}), lr \d\.\de-\d\d, \d+\.\d images/s"
                  r"(?:, val mIoU (\d+\.\d\d) \(best (\d+\.\d\d)\))?$")


def _args(data, *extra):
    return [f"data.root={data}", *[a for a in TINY if "progress_bar" not in a], *extra]  # the bar left on


def test_a_log_file_gets_one_line_per_epoch(tiny_data, tmp_path, capsys):
    run = tmp_path / "run"
    code, _, err = segcli(["train", *_args(tiny_data, "trainer.max_epochs=4", "trainer.check_val_every_n_epoch=2"),
                           "--run-dir", run], capsys)
    assert code == 0, err
    assert "early stopping" not in err  # it ran its 4 epochs
    assert "Epoch " not in err and "it/s" not in err  # the bar's "Epoch 0/3 ━━━ 2/2 0:00:09 • 0.76it/s"
    lines = [line for line in err.splitlines() if line.startswith("train: epoch ")]
    matches = [LINE.match(line) for line in lines]
    assert all(matches), lines
    assert [(m[1], m[2]) for m in matches] == [("1", "4"), ("2", "4"), ("3", "4"), ("4", "4")]
    assert [m[4] is not None for m in matches] == [False, True, False, True]  # epochs 2 and 4 validate
    logged = [round(100 * float(miou), 2) for _, _, miou in val_rows(run)]
    shown = [float(m[4]) for m in matches if m[4]]
    assert shown == pytest.approx(logged, abs=0.006)
    assert [float(m[5]) for m in matches if m[5]] == pytest.approx(
        [max(logged[:i + 1]) for i in range(len(logged))], abs=0.006)


def test_without_validation_the_line_has_no_val(tiny_data, tmp_path, capsys):
    code, _, err = segcli(["train", *_args(tiny_data, "trainer.max_epochs=1", "data.val_split=null"),
                           "--run-dir", tmp_path / "run"], capsys)
    assert code == 0, err
    lines = [line for line in err.splitlines() if line.startswith("train: epoch ")]
    assert len(lines) == 1 and LINE.match(lines[0]) and "val mIoU" not in lines[0], lines


@pytest.mark.parametrize("terminal, bar, expected", [(True, True, "ProgressBar"), (False, True, "EpochLines"),
                                                     (True, False, None), (False, False, None)])
def test_the_bar_on_a_terminal_lines_elsewhere_neither_when_off(monkeypatch, terminal, bar, expected):
    from omegaconf import OmegaConf

    from segcli.commands import train
    from segcli.config import compose

    monkeypatch.setattr(train, "stderr_is_terminal", lambda: terminal)
    cfg = compose("train", [])
    cfg.trainer.enable_progress_bar = bar
    names = {type(c).__name__ for c in train._callbacks(OmegaConf.create(OmegaConf.to_container(cfg)))}
    assert {"ProgressBar", "EpochLines"} & names == ({expected} if expected else set())


def test_the_bar_shows_the_learning_rate_in_scientific_notation():
    """Lightning's bar formats every metric '.3f': a learning rate of 1e-4 showed as 0.000 all run long."""
    from types import SimpleNamespace

    from segcli.training.callbacks import ProgressBar

    trainer = SimpleNamespace(loggers=[], progress_bar_metrics={"train/lr": 1e-4, "train/images_per_s": 24.9123,
                                                                 "train/loss_step": 0.52314})
    items = ProgressBar().get_metrics(trainer, None)
    assert items["train/lr"] == "1.0e-04" and items["train/images_per_s"] == "24.9"
    assert items["train/loss_step"] == 0.52314  # the bar's own format for the rest
