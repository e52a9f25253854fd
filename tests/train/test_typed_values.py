"""Values that passed segcli's checks and then broke deeper in: a whole number written as a float for Lightning's
int arguments (an internal error, exit 4), null for settings the checks read as their default (exit 4), a bad
inference.batch_size found only after the whole run had trained, deterministic's word in capitals (passed on
unread), and a mapping given for a mapping key (named an unknown key)."""

from __future__ import annotations

import pytest

from helpers_train import epochs_run, segcli, tiny


@pytest.mark.parametrize("setting", ["trainer.max_epochs=2.0", "trainer.check_val_every_n_epoch=1.0"])
def test_a_whole_number_written_as_a_float_trains_as_that_number(tiny_data, tmp_path, capsys, setting):
    run_dir = tmp_path / "run"
    code, _, err = segcli(["train", *tiny(tiny_data, "trainer.max_epochs=2", setting, "final_eval=false"),
                           "--run-dir", run_dir], capsys)
    assert code == 0, err
    assert epochs_run(run_dir) == 2


@pytest.mark.parametrize("setting", ["optim.betas=null", "optim.weight_decay=null", "sched.min_lr_ratio=null"])
def test_null_for_a_setting_with_a_default_trains_with_the_default(tiny_data, tmp_path, capsys, setting):
    run_dir = tmp_path / "run"
    code, _, err = segcli(["train", *tiny(tiny_data, "trainer.max_epochs=1", setting, "final_eval=false"),
                           "--run-dir", run_dir], capsys)
    assert code == 0, err
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()


@pytest.mark.parametrize("value", ["0", "-1", "2.5"])
def test_a_bad_inference_batch_size_is_refused_before_training(tiny_data, tmp_path, capsys, value):
    """Before: the run trained, wrote its checkpoints, then stopped at the final evaluation with exit 2."""
    run_dir = tmp_path / "run"
    code, _, err = segcli(["train", *tiny(tiny_data, f"inference.batch_size={value}"), "--run-dir", run_dir], capsys)
    assert code == 2, err
    assert f"segcli: error: inference.batch_size={value}" in err and "whole number >= 1" in err
    assert not run_dir.exists() and "run directory" not in err


def test_deterministic_in_capitals_reaches_lightning_as_its_word():
    from segcli.models.trainer_args import for_this_machine

    assert for_this_machine({"accelerator": "cpu", "deterministic": "WARN"})["deterministic"] == "warn"
    whole = for_this_machine({"accelerator": "cpu", "max_epochs": 3.0, "limit_train_batches": 1.0})
    assert whole["max_epochs"] == 3 and isinstance(whole["max_epochs"], int)
    assert whole["limit_train_batches"] == 1.0 and isinstance(whole["limit_train_batches"], float)  # all batches


def test_a_mapping_for_a_mapping_key_is_explained_not_called_unknown(capsys):
    code, _, err = segcli(["train", "--cfg", "loss.terms={focal:1.0}"], capsys)
    assert code == 2
    assert "unknown config key" not in err
    assert "a mapping is merged into the one already at 'loss.terms'" in err and "+loss.terms.NAME=VALUE" in err
