"""Trainer settings that Lightning or torch refused only after `segcli train` had said 'train: run directory ...' (or
after torch was imported, where no data is needed to tell): each is now one line naming the setting (exit 2), with no
traceback and no run directory left behind."""

from __future__ import annotations

import subprocess
import sys

import pytest

from helpers_train import segcli, tiny


def assert_refused(code: int, err: str, key: str, run_dir) -> str:
    """Exit 2, one stderr line `segcli: error: KEY...`, no traceback, no run directory; returns the line."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert "Traceback" not in err and "run directory" not in err, err
    assert len(lines) == 1 and lines[0].startswith(f"segcli: error: {key}"), err
    assert not run_dir.exists()
    return lines[0]


@pytest.mark.parametrize("setting, key", [
    ("trainer.limit_train_batches=0.3", "trainer.limit_train_batches=0.3"),
    ("trainer.limit_val_batches=0.3", "trainer.limit_val_batches=0.3"),
    ("+trainer.overfit_batches=0.3", "trainer.overfit_batches=0.3"),
])
def test_a_batch_fraction_that_leaves_no_batch_fails_before_the_run_directory(tiny_data, tmp_path, capsys, setting,
                                                                               key):
    """0.3 of 2 batches (8 train images of batch 4; 2 val images of 1) is none: Lightning said so inside fit, after
    the run directory was made."""
    run_dir = tmp_path / "run"
    code, out, err = segcli(["train", *tiny(tiny_data, setting), "--run-dir", run_dir], capsys)
    line = assert_refused(code, err, key, run_dir)
    assert "leaves 0 of the 2" in line and "at least 0.5" in line, line
    assert out == ""


def test_a_validation_interval_longer_than_an_epoch_fails_before_the_run_directory(tiny_data, tmp_path, capsys):
    """+trainer.val_check_interval=5 with 2 training batches an epoch: Lightning's ValueError inside fit was an
    internal error (exit 4) after the run directory was made."""
    run_dir = tmp_path / "run"
    code, _, err = segcli(["train", *tiny(tiny_data, "+trainer.val_check_interval=5"), "--run-dir", run_dir], capsys)
    line = assert_refused(code, err, "trainer.val_check_interval=5", run_dir)
    assert "more than the 2 training batch(es)" in line, line


@pytest.mark.parametrize("setting, start", [
    ("trainer.strategy=bogus", "unknown trainer.strategy 'bogus'"),  # Lightning's ValueError from Trainer()
    ("+trainer.detect_anomaly=maybe", "trainer.detect_anomaly='maybe'"),  # torch's TypeError inside fit: exit 4
    ("+trainer.barebones=true", "trainer.barebones=true"),  # Lightning refused segcli's checkpoints
])
def test_trainer_arguments_lightning_refused_late_fail_before_the_run_directory(tiny_data, tmp_path, capsys, setting,
                                                                                start):
    run_dir = tmp_path / "run"
    code, _, err = segcli(["train", *tiny(tiny_data, setting), "--run-dir", run_dir], capsys)
    assert_refused(code, err, start, run_dir)


@pytest.mark.parametrize("setting", [
    "+trainer.val_check_interval=0",  # ZeroDivisionError inside fit (exit 4)
    "+trainer.val_check_interval=1.5",  # Lightning's MisconfigurationException after the run directory
    "+trainer.max_steps=0",  # trained nothing: exit 0 and no checkpoint
    "+trainer.max_steps=-3",
    "+trainer.min_epochs=3",  # above trainer.max_epochs=1: ignored without a word
    "trainer.num_sanity_val_steps=-2",  # ignored without a word
    "+trainer.reload_dataloaders_every_n_epochs=-1",
    "+trainer.overfit_batches=-1",
])
def test_step_epoch_and_interval_values_are_told_before_torch_is_imported(tiny_data, tmp_path, setting):
    script = ("import sys\nfrom segcli.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit as e:\n"
              "    print(e.code, 'torch' in sys.modules, 'lightning' in sys.modules)\n")
    run_dir = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-c", script, "train", *tiny(tiny_data, setting), "--run-dir",
                           str(run_dir)], capture_output=True, text=True, timeout=300)
    assert proc.stdout.split() == ["2", "False", "False"], (setting, proc.stdout, proc.stderr)
    assert_refused(2, proc.stderr, setting.lstrip("+"), run_dir)
