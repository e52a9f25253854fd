"""data.val_split=null: train on the train split alone (e.g. train + val for a final model), keep last.ckpt."""

from __future__ import annotations

import shutil

import yaml
from helpers_surface import QUICK, segcli


def _train_only(tiny_data, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(tiny_data, root)
    card = yaml.safe_load((root / "dataset.yaml").read_text())
    card["splits"] = {"train": card["splits"]["train"] + card["splits"]["val"]}
    (root / "dataset.yaml").write_text(yaml.safe_dump(card, sort_keys=False))
    return root


def test_a_card_without_val_says_how_to_train_without_it(tiny_data, tmp_path):
    root = _train_only(tiny_data, tmp_path)
    proc = segcli("train", f"data.root={root}", *QUICK, "--run-dir", tmp_path / "run")
    assert proc.returncode == 2 and "no split 'val'" in proc.stderr and "data.val_split=null" in proc.stderr
    assert not (tmp_path / "run").exists()


def test_training_without_validation(tiny_data, tmp_path):
    root = _train_only(tiny_data, tmp_path)
    run = tmp_path / "run"
    proc = segcli("train", f"data.root={root}", *QUICK, "trainer.max_epochs=2", "data.val_split=null", "--run-dir", run)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == str(run)
    # last.ckpt only: no best.ckpt, and none of Lightning's own epoch=N-step=M.ckpt files
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["last.ckpt"]
    assert not (run / "eval").exists() and "no validation (data.val_split=null)" in proc.stderr
    assert "Total length" not in proc.stderr
    last = run / "checkpoints" / "last.ckpt"
    proc = segcli("eval", "--ckpt", last, "--split", "train", "--json", "-")
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = tmp_path / "model.onnx"  # verified on the card's first split, as there is no val split
    proc = segcli("export", "--ckpt", last, "--out", out, "verify_max_images=1")
    assert proc.returncode == 0 and out.is_file(), proc.stderr[-2000:]


def test_early_stopping_needs_validation(tiny_data, tmp_path):
    proc = segcli("train", f"data.root={tiny_data}", *QUICK, "data.val_split=null", "early_stopping.patience=2",
                  "--run-dir", tmp_path / "run")
    assert proc.returncode == 2 and "early_stopping.patience needs validation" in proc.stderr
    assert not (tmp_path / "run").exists()


def test_validating_on_the_training_split_is_pointed_out(tiny_data, tmp_path):
    proc = segcli("train", f"data.root={tiny_data}", *QUICK, "data.val_split=train", "--run-dir", tmp_path / "run")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "data.val_split is the training split 'train'" in proc.stderr
