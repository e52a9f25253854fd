"""--resume refuses a dataset whose validated images or fold assignment changed since the run began: best.ckpt and
early stopping would compare val scores of different images, or validate on images the run trained on."""

from __future__ import annotations

import re
import shutil

from helpers_train import segcli, tiny, val_rows


def _card(data, edit) -> None:
    path = data / "dataset.yaml"
    path.write_text(edit(path.read_text()))


def test_a_val_split_changed_since_the_run_began_is_refused_on_resume(tiny_data, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    run_dir = tmp_path / "run"
    code, _, err = segcli(["train", *tiny(data, "trainer.max_epochs=1", "final_eval=false"), "--run-dir", run_dir],
                          capsys)
    assert code == 0, err
    rows, last = val_rows(run_dir), (run_dir / "checkpoints" / "last.ckpt").read_bytes()
    card = (data / "dataset.yaml").read_text()
    val_lines = [line for line in card[card.index("\n  val:"):].splitlines() if "image:" in line]
    assert len(val_lines) == 2
    _card(data, lambda text: text.replace(val_lines[0] + "\n", ""))  # train split and its statistics unchanged
    code, _, err = segcli(["train", "--resume", run_dir, "trainer.max_epochs=2"], capsys)
    assert code == 3, err
    assert "the dataset changed since this run began (the images it validates on (split 'val'" in err
    assert "prepare the data as it was, or start a new run" in err
    assert val_rows(run_dir) == rows and (run_dir / "checkpoints" / "last.ckpt").read_bytes() == last
    _card(data, lambda text: card)  # put back: the resume goes on
    code, _, err = segcli(["train", "--resume", run_dir, "trainer.max_epochs=2"], capsys)
    assert code == 0, err


def test_a_fold_assignment_changed_since_the_run_began_is_refused_on_resume(tiny_data, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    counter = iter(range(100))

    def folds(order):
        def edit(text):
            head, tail = text.split("\n  val:", 1)
            head = re.sub(r"mask: (masks/train/[^}]+)\}", lambda m: f"mask: {m.group(1)}, fold: {order(next(counter))}}}",
                          re.sub(r", fold: \d", "", head))
            return head + "\n  val:" + tail
        return edit

    _card(data, folds(lambda i: i % 2))
    run_dir = tmp_path / "run"
    code, _, err = segcli(["train", *tiny(data, "data.fold=0", "trainer.max_epochs=1", "final_eval=false"),
                           "--run-dir", run_dir], capsys)
    assert code == 0, err
    counter = iter(range(100))
    _card(data, folds(lambda i: (i // 4) % 2))  # the same folds' sizes, other images in each
    code, _, err = segcli(["train", "--resume", run_dir, "trainer.max_epochs=2"], capsys)
    assert code == 3, err
    assert "the images it trains on (the train split, or its folds)" in err
    assert "the images it validates on (split 'train', or its folds)" in err
