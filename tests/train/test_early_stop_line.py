"""A run that early stopping ends said nothing about it: a 30-epoch run ended after 2 with no reason given, where
max_epochs and max_time each get Lightning's line."""

from __future__ import annotations

from helpers_train import segcli, tiny, val_rows


def test_early_stopping_says_that_it_ended_the_run(tiny_data, tmp_path, capsys):
    run = tmp_path / "run"
    code, _, err = segcli(["train", *tiny(tiny_data, "trainer.max_epochs=30", "early_stopping.patience=1",
                                          "early_stopping.min_delta=0.5"), "--run-dir", run], capsys)
    assert code == 0, err
    assert len(val_rows(run)) == 2  # no rise of 0.5 (50 points) after the first validation: one more, then stop
    # in points, as the epoch lines give val mIoU: "by more than 0.5" read as half a point after a rise of 3.94
    assert ("train: early stopping after epoch 2: val mIoU has not risen by more than 50 points in 1 validation "
            "(early_stopping.patience=1, early_stopping.min_delta=0.5)\n") in err
    assert err.index("train: early stopping") < err.index("train: evaluating best.ckpt")
