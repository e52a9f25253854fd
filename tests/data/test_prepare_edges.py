"""`segcli prepare` at the edges of its options: settings a format does not read, split lists given with fractions,
blank class names, and what a --keep-going failure names."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from helpers_data import blocks, random_image, write_grey, write_image


def _pairs(root: Path, rng: np.random.Generator, count: int = 4, values=(0, 1)) -> tuple[Path, Path]:
    for i in range(count):
        write_image(root / "images" / f"x{i}.png", random_image(rng, 16, 24))
        write_grey(root / "masks" / f"x{i}.png", blocks(rng, 16, 24, list(values), block=4).astype(np.uint8))
    return root / "images", root / "masks"


def _error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("segcli: error:")]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


@pytest.mark.parametrize("override, flag", [("folds=3", "--folds"), ("group=^[^_]+", "--group"),
                                            ("ignore_index=0", "--ignore-index")])
def test_a_folder_only_setting_on_a_native_format_is_refused(camvid_src, run_cli, tmp_path, override, flag):
    """`prepare camvid ... folds=3` wrote a card without folds (and group=, ignore_index= were dropped alike), exit 0:
    `train data.fold=k` failed later. It is a usage error naming the setting."""
    out = tmp_path / "out"
    code, stdout, stderr = run_cli("prepare", "camvid", "--src", camvid_src[0], "--out", out, override)
    assert code == 2 and stdout == ""
    line = _error_line(stderr)
    assert flag in line and "prepare folder" in line
    assert not out.exists()


def test_split_files_with_a_fraction_are_refused(tmp_path, rng, run_cli):
    """--split-file train=FILE --val-fraction 0.3: the fraction was silently unused (no val split, the unlisted pairs
    left out with a warning, exit 0)."""
    images, masks = _pairs(tmp_path, rng)
    (tmp_path / "train.txt").write_text("x0\nx1\nx2\n")
    out = tmp_path / "out"
    code, _, stderr = run_cli("prepare", "folder", "--images", images, "--masks", masks, "--classes", "a,b",
                              "--split-file", f"train={tmp_path / 'train.txt'}", "--val-fraction", "0.3", "--out", out)
    assert code == 2
    line = _error_line(stderr)
    assert "--val-fraction" in line and "--split-file" in line
    assert not out.exists()


def test_a_blank_name_in_a_class_list_is_refused(tmp_path, rng, run_cli):
    """--classes 'bg,,road': the blank was dropped, so road became id 1 (the user's id 2) and masks of 0/1 prepared
    silently as 2 classes."""
    images, masks = _pairs(tmp_path, rng)
    out = tmp_path / "out"
    code, _, stderr = run_cli("prepare", "folder", "--images", images, "--masks", masks, "--classes", "bg,,road",
                              "--out", out)
    assert code == 2
    assert "class 1 has no name" in _error_line(stderr)
    assert not out.exists()
    code, _, stderr = run_cli("prepare", "folder", "--images", images, "--masks", masks, "--classes", "bg,road,",
                              "--out", out)  # a trailing comma names no class: fine
    assert code == 0, stderr


def test_a_keep_going_failure_names_what_still_blocks(tmp_path, rng, run_cli):
    """--keep-going dropped the one val pair (an empty mask), so the empty val split failed the run; the error line's
    'first:' named the dropped pair's empty file, which --keep-going had already dealt with."""
    images, masks = _pairs(tmp_path, rng)
    (masks / "x3.png").write_bytes(b"")
    (tmp_path / "train.txt").write_text("x0\nx1\nx2\n")
    (tmp_path / "val.txt").write_text("x3\n")
    out = tmp_path / "out"
    code, _, stderr = run_cli("prepare", "folder", "--images", images, "--masks", masks, "--classes", "a,b",
                              "--split-file", f"train={tmp_path / 'train.txt'}",
                              "--split-file", f"val={tmp_path / 'val.txt'}", "--keep-going", "--out", out)
    assert code == 1
    line = _error_line(stderr)
    assert "first: val: split 'val'" in line and "empty file" not in line
    assert not (out / "dataset.yaml").exists()
