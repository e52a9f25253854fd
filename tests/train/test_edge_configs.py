"""Edge-case settings of `segcli train` a user types: each either trains to a valid run directory, or stops before
any work with one line naming the setting (exit 2) and no run directory left behind."""

from __future__ import annotations

import warnings

from helpers_train import segcli, tiny


def test_limit_val_batches_zero_trains_without_validation_and_says_so(tiny_data, tmp_path, capsys):
    """trainer.limit_val_batches=0 turns validation off, as data.val_split=null does: no best.ckpt (and no raw
    Lightning warning that its checkpoint callback found no val/mIoU), a summary that names the setting, and the
    trained weights in last.ckpt."""
    run_dir = tmp_path / "run"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code, out, err = segcli(["train", *tiny(tiny_data, "trainer.limit_val_batches=0",
                                                "trainer.limit_train_batches=1"),
                                 "--run-dir", run_dir], capsys)
    assert code == 0, err
    assert out.strip().splitlines()[-1] == str(run_dir)
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert not (run_dir / "checkpoints" / "best.ckpt").exists()
    assert not [w for w in caught if "could not find the monitored key" in str(w.message)]
    assert "could not find the monitored key" not in err
    assert "no validation (trainer.limit_val_batches=0)" in err
    assert "final evaluation skipped: trainer.limit_val_batches=0" in err


def test_early_stopping_with_limit_val_batches_zero_is_a_usage_error(tiny_data, tmp_path, capsys):
    run_dir = tmp_path / "run"
    code, out, err = segcli(["train", *tiny(tiny_data, "trainer.limit_val_batches=0", "early_stopping.patience=2"),
                             "--run-dir", run_dir], capsys)
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("segcli: error: early_stopping.patience")
    assert "trainer.limit_val_batches" in lines[0]
    assert not run_dir.exists()


def test_batch_of_one_for_a_pooling_model_fails_before_the_run_starts(tiny_data, tmp_path, capsys):
    """DeepLabV3 with data.batch_size=1: the usage error comes before the run directory is made or Lightning
    starts (it came from the first training step, after 'train: run directory ...')."""
    run_dir = tmp_path / "run"
    code, out, err = segcli(["train", *tiny(tiny_data, "model=deeplabv3", "data.batch_size=1"),
                             "--run-dir", run_dir], capsys)
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "data.batch_size" in lines[0], err
    assert lines[0].startswith("segcli: error: model=deeplabv3 cannot train on a batch of 1 image")
    assert not run_dir.exists() and out == ""


def test_more_loader_workers_than_cores_is_one_note_not_torch_warnings(tiny_data, tmp_path, capsys, monkeypatch):
    """data.num_workers above the cores: one segcli note, not torch's raw UserWarning once per loader."""
    import os

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code, out, err = segcli(["train", *tiny(tiny_data, "data.num_workers=2", "trainer.limit_train_batches=1",
                                                "trainer.limit_val_batches=1", "final_eval=false"),
                                 "--run-dir", tmp_path / "run"], capsys)
    assert code == 0, err
    assert not [w for w in caught if "worker processes in total" in str(w.message)]
    assert err.count("data.num_workers=2 is more than the 1 CPU core(s)") == 1


def test_accumulating_more_batches_than_an_epoch_has_is_a_note(tiny_data, tmp_path, capsys):
    """trainer.accumulate_grad_batches=5 with 2 batches per epoch (8 images, batch 4): Lightning steps at each epoch's
    end, so each step summed 2 batches, not 5, without a word. A count the epoch holds gets no note."""
    args = ["data.batch_size=4", "trainer.max_epochs=1", "final_eval=false"]
    code, _, err = segcli(["train", *tiny(tiny_data, *args, "trainer.accumulate_grad_batches=5"),
                           "--run-dir", tmp_path / "five"], capsys)
    assert code == 0, err
    assert ("train: note: trainer.accumulate_grad_batches=5 is more than the 2 batch(es) of an epoch, and the "
            "optimiser steps at every epoch's end: each step sums 2 batch(es) of 4") in err, err
    code, _, err = segcli(["train", *tiny(tiny_data, *args, "trainer.accumulate_grad_batches=2"),
                           "--run-dir", tmp_path / "two"], capsys)
    assert code == 0, err
    assert "note: trainer.accumulate_grad_batches" not in err, err


def test_a_batch_limit_given_as_text_is_a_usage_error(tiny_data, tmp_path, capsys):
    """trainer.limit_val_batches='0' (quoted: a string) reached Lightning, which failed inside fit with 'internal
    error: TypeError', after the run directory was made."""
    for key, value in (("limit_val_batches", "'0'"), ("limit_train_batches", "abc"), ("limit_val_batches", "1.5")):
        run_dir = tmp_path / key
        code, out, err = segcli(["train", *tiny(tiny_data, f"trainer.{key}={value}"), "--run-dir", run_dir], capsys)
        assert code == 2, err
        assert err.startswith(f"segcli: error: trainer.{key}=") and "give a fraction of the batches in [0, 1]" in err
        assert len(err.strip().splitlines()) == 1 and not run_dir.exists(), err


def test_the_pooled_batch_check_shares_images_among_processes_as_the_sampler_does(tiny_data):
    """8 training images on 5 processes: DistributedSampler gives each 2 (rounding up), a batch of 2; the check
    divided rounding down (1 each) and refused the run. On 8 processes each gets 1, which is refused."""
    import pytest
    from omegaconf import OmegaConf

    from segcli.commands.train import _check_pooled_batch
    from segcli.data.card import load_card
    from segcli.errors import ConfigError

    card = load_card(tiny_data)
    data = OmegaConf.create({"train_split": "train", "batch_size": 4, "fold": None, "repeat": 1})
    assert len(card.indices("train")) == 8
    _check_pooled_batch("deeplabv3", card, data, 5)
    with pytest.raises(ConfigError, match="each of 8 process"):
        _check_pooled_batch("deeplabv3", card, data, 8)
    _check_pooled_batch("unet", card, data, 8)  # no pooling: a batch of 1 trains


def test_a_mistyped_value_is_told_before_torch_and_lightning_are_imported(tiny_data, tmp_path):
    """data.input_scale=abc and ema.decay=1.5 were checked only after torch, Lightning and the network were loaded
    (8 s on a 2-core CPU before the one-line error; 1 s now): the values are checked first."""
    import subprocess
    import sys

    script = ("import sys\nfrom segcli.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit as e:\n"
              "    print(e.code, 'torch' in sys.modules, 'lightning' in sys.modules)\n")
    for value in ("data.input_scale=abc", "ema.decay=1.5", "trainer.limit_val_batches=-1"):
        proc = subprocess.run([sys.executable, "-c", script, "train", f"data.root={tiny_data}", value, "--run-dir",
                               str(tmp_path / "run")], capture_output=True, text=True, timeout=300)
        assert proc.stdout.split() == ["2", "False", "False"], (value, proc.stdout, proc.stderr)
        assert proc.stderr.startswith(f"segcli: error: {value.split('=')[0]}="), proc.stderr
        assert not (tmp_path / "run").exists()
