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


@pytest.mark.parametrize("trainer", [
    {"val_check_interval": "0:0:30:0"},  # Lightning's own form: any number of digits per part
    {"val_check_interval": "00:01:00:00"},
    {"val_check_interval": {"minutes": 30}},
    {"val_check_interval": 0.25},
    {"val_check_interval": 2.0},
    {"check_val_every_n_epoch": None, "val_check_interval": 5},  # every 5 batches, counted across epochs
    {"check_val_every_n_epoch": None, "val_check_interval": "00:00:10:00"},
    {"num_sanity_val_steps": -1},
    {"max_steps": -1, "min_steps": 0, "min_epochs": 1, "max_epochs": 3},
    {"profiler": "Simple"},
    {"limit_train_batches": 0.5, "limit_val_batches": 1, "overfit_batches": 0.0},
])
def test_valid_trainer_values_are_not_refused(trainer):
    from segcli.checks import _trainer_values

    _trainer_values(trainer)


def test_check_val_every_n_epoch_null_needs_a_whole_number_of_batches():
    """null counts batches across epochs: a fraction of an epoch (or no interval) was Lightning's error in Trainer()."""
    from segcli.checks import _trainer_values
    from segcli.errors import ConfigError

    for interval in (None, 0.5, 2.0):
        with pytest.raises(ConfigError, match="check_val_every_n_epoch=null validates every trainer.val_check_interval"):
            _trainer_values({"check_val_every_n_epoch": None, "val_check_interval": interval})


def test_validation_every_n_batches_across_epochs_trains(tiny_data, tmp_path, capsys):
    """check_val_every_n_epoch=null reaches Lightning (it was dropped, so epochs were counted): 3 epochs of 2 batches,
    validated every 3 batches, validate after batches 3 and 6 (logged at steps 2 and 5, as an epoch's end after batch 2
    is logged at step 1), not at each of the 3 epochs' ends (steps 1, 3 and 5)."""
    import csv

    run_dir = tmp_path / "run"
    code, _, err = segcli(["train", *tiny(tiny_data, "trainer.max_epochs=3", "trainer.check_val_every_n_epoch=null",
                                          "+trainer.val_check_interval=3", "final_eval=false"),
                           "--run-dir", run_dir], capsys)
    assert code == 0, err
    rows = list(csv.DictReader((run_dir / "metrics.csv").open()))
    validated = sorted({int(r["step"]) for r in rows if r.get("val/mIoU")})
    assert validated == [2, 5], validated


def test_devices_auto_counts_every_gpu_lightning_would_use(monkeypatch):
    """devices auto (the gpu and ddp presets) trains on every visible GPU: the per-process checks counted one."""
    from segcli.models import trainer_args

    monkeypatch.setattr(trainer_args, "_gpu_count", lambda: 4)
    assert trainer_args.processes({"accelerator": "gpu", "devices": "auto"}) == 4
    assert trainer_args.processes({"accelerator": "auto", "devices": -1, "num_nodes": 2}) == 8
    assert trainer_args.processes({"accelerator": "cpu", "devices": "auto"}) == 1
    assert trainer_args.processes({"accelerator": "gpu", "devices": [0, 1]}) == 2
    monkeypatch.setattr(trainer_args, "_gpu_count", lambda: 0)
    assert trainer_args.processes({"accelerator": "auto", "devices": "auto"}) == 1


def test_a_validation_limited_to_some_batches_is_noted(tiny_data, tmp_path, capsys):
    """smoke's limit_val_batches=4 (here 1 of 2 val images): best val mIoU differed from the final evaluation's with
    no word why."""
    run_dir = tmp_path / "run"
    code, _, err = segcli(["train", *tiny(tiny_data, "trainer.limit_val_batches=1", "final_eval=false"), "--run-dir",
                           run_dir], capsys)
    assert code == 0, err
    assert ("train: note: trainer.limit_val_batches=1 validates 1 of the 2 val batches an epoch has: val mIoU (and so "
            "best.ckpt's choice) is of those images only") in err, err
    code, _, err = segcli(["train", *tiny(tiny_data, "final_eval=false"), "--run-dir", tmp_path / "all"], capsys)
    assert code == 0 and "validates" not in err, err
