"""data.fold on a card prepared for cross-validation alone (`prepare folder --folds K --val-fraction 0`: a train
split and no val split). Fold k validates, so the card's val split is not needed: train refused it (exit 2, "no
split 'val' … or train without validation: data.val_split=null"), and so did every job of a sweep over the folds,
which runs the same check (a sweep over folds is tested in test_sweep.py)."""

from __future__ import annotations

import shutil

import pytest
import yaml
from helpers_train import segcli, tiny, val_rows


@pytest.fixture(scope="module")
def folds_only(tiny_data, tmp_path_factory):
    """The tiny dataset's 10 pairs prepared again with 2 folds and no held-out split."""
    flat = tmp_path_factory.mktemp("flat")
    for kind in ("images", "masks"):
        (flat / kind).mkdir()
        for path in (tiny_data / kind).rglob("*.png"):
            shutil.copy(path, flat / kind / path.name)
    out = flat / "folds"
    from segcli.cli import main

    try:
        main(["prepare", "folder", "--images", str(flat / "images"), "--masks", str(flat / "masks"), "--out",
              str(out), "--folds", "2", "--val-fraction", "0"])
    except SystemExit as done:
        assert not done.code, f"prepare failed with {done.code}"
    card = yaml.safe_load((out / "dataset.yaml").read_text())
    assert list(card["splits"]) == ["train"]
    assert sorted({entry["fold"] for entry in card["splits"]["train"]}) == [0, 1]
    return out


def test_a_fold_trains_and_validates_without_a_val_split(folds_only, tmp_path, capsys):
    import torch

    run = tmp_path / "run"
    code, out, err = segcli(["train", *tiny(folds_only, "data.fold=1", "trainer.max_epochs=1"), "--run-dir", run],
                            capsys)
    assert code == 0, err
    assert len(val_rows(run)) == 1
    best = run / "checkpoints" / "best.ckpt"
    assert best.is_file()
    meta = torch.load(best, map_location="cpu", weights_only=False)["hyper_parameters"]["meta"]
    assert meta["dataset"]["val_split"] == "train"  # the split fold 1 lies in: what export verifies on


def test_a_missing_val_split_without_a_fold_is_still_refused(folds_only, tmp_path, capsys):
    code, _, err = segcli(["train", *tiny(folds_only), "--run-dir", tmp_path / "run"], capsys)
    assert code == 2
    assert "no split 'val'" in err and "data.val_split=null" in err
    assert not (tmp_path / "run").exists()
