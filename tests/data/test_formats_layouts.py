"""The published layouts when --src is not quite what the format expects: half a download, or another layout."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from helpers_data import random_image, write_image


@pytest.mark.parametrize("fmt, fixture, lost, image_dir, others", [
    ("cityscapes", "cityscapes_src", "gtFine/val", "leftImg8bit/val", "--split train"),
    ("ade20k", "ade_src", "annotations/validation", "images/validation", "--split train"),
    ("camvid", "camvid_src", "valannot", "val", "--split train"),
])
def test_a_split_without_its_mask_folder_is_one_line(fmt, fixture, lost, image_dir, others, tmp_path, run_cli, request):
    """Half a download (gtFine/val/ missing): was one missing_mask finding per image (500 for Cityscapes' val),
    exit 1, with a '--keep-going drops the bad pairs' hint that could not work (the split is then empty)."""
    root = request.getfixturevalue(fixture)[0]
    shutil.rmtree(root / lost)
    out = tmp_path / "out"
    code, _, stderr = run_cli("prepare", fmt, "--src", root, "--out", out)
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert code == 3 and len(lines) == 1, stderr
    assert f"{root / lost}: not found, so none of the 2 image(s) in {root / image_dir} has a mask" in lines[0]
    assert lines[0].endswith(f"or leave 'val' out: {others}") and not out.exists()
    # an empty mask folder (or, for Cityscapes, one without label ids) reads the same
    (root / lost).mkdir()
    code, _, stderr = run_cli("prepare", fmt, "--src", root, "--out", out)
    assert code == 3 and f"{root / lost}: holds no " in stderr and not out.exists()
    # the other splits convert alone, as the message says
    assert run_cli("prepare", fmt, "--src", root, "--out", out, *others.split())[0] == 0


def test_one_image_without_its_mask_is_still_a_lint_finding(cityscapes_src, tmp_path, run_cli):
    root = cityscapes_src[0]
    write_image(root / "leftImg8bit" / "val" / "frankfurt" / "frankfurt_000009_000019_leftImg8bit.png",
                random_image(np.random.default_rng(0), 32, 64))
    code, _, stderr = run_cli("prepare", "cityscapes", "--src", root, "--out", tmp_path / "out")
    assert code == 1 and "frankfurt_000009_000019_gtFine_labelIds.png" in stderr


@pytest.mark.parametrize("fmt, fixture, other, sub", [
    ("voc", "cityscapes_src", "cityscapes", ""),
    ("cityscapes", "ade_src", "ade20k", ""),
    ("ade20k", "camvid_src", "camvid", ""),
    ("camvid", "voc_src", "voc", "VOC2012"),
])
def test_src_of_another_layout_names_the_command_that_reads_it(fmt, fixture, other, sub, tmp_path, run_cli, request):
    """`prepare voc --src cityscapes/` said only 'not a VOC folder; point --src at VOCdevkit/'."""
    root = request.getfixturevalue(fixture)[0]
    code, _, stderr = run_cli("prepare", fmt, "--src", root, "--out", tmp_path / "out")
    found = (root / sub).absolute() if sub else root.absolute()
    assert code == 3 and f"`segcli prepare {other} --src {found} --out DIR`" in stderr, stderr
    assert "Traceback" not in stderr and not (tmp_path / "out").exists()


def test_src_that_is_a_prepared_dataset_or_missing(camvid_src, tmp_path, run_cli):
    out = tmp_path / "camvid"
    assert run_cli("prepare", "camvid", "--src", camvid_src[0], "--out", out)[0] == 0
    for fmt in ("voc", "cityscapes", "ade20k", "camvid"):
        code, _, stderr = run_cli("prepare", fmt, "--src", out, "--out", tmp_path / "again")
        assert code == 3 and f"it is a dataset prepare already wrote: train on it with data.root={out}" in stderr
        code, _, stderr = run_cli("prepare", fmt, "--src", tmp_path / "typo", "--out", tmp_path / "again")
        assert code == 3 and f"{tmp_path / 'typo'}: not a" in stderr and "it does not exist; check the path" in stderr
    assert not (tmp_path / "again").exists()


def test_a_rerun_with_out_inside_a_listed_folder(ade_src, run_cli):
    """--out inside a folder the format lists (ADE20K's images/training/out): the first run worked, and a re-run
    with --overwrite read that output's images and chart as images without masks (exit 1). The output's files are
    not source."""
    root = ade_src[0]
    out = root / "images" / "training" / "out"
    args = ["prepare", "ade20k", "--src", root, "--out", out]
    assert run_cli(*args)[0] == 0
    first = (out / "dataset.yaml").read_text()
    code, _, stderr = run_cli(*args, "--overwrite")
    assert code == 0, stderr
    assert (out / "dataset.yaml").read_text() == first


def test_out_that_is_the_source_of_a_prepared_dataset_is_still_refused(tmp_path, rng, run_cli):
    """--images d/images --masks d/masks --out d where d is a dataset prepare wrote: the source itself lies in
    --out, so --overwrite would delete it; refused as before."""
    d = tmp_path / "d"
    for i in range(4):
        write_image(tmp_path / "src" / "images" / f"p{i}.png", random_image(rng, 16, 16))
        write_image(tmp_path / "src" / "masks" / f"p{i}.png", np.zeros((16, 16, 3), np.uint8))
    assert run_cli("prepare", "folder", "--images", tmp_path / "src" / "images", "--masks", tmp_path / "src" / "masks",
                   "--out", d, "--classes", "a,b", "--val-fraction", "0.25")[0] == 0
    shutil.copytree(d / "images" / "train", d / "raw_images")
    shutil.copytree(d / "masks" / "train", d / "raw_masks")
    code, _, stderr = run_cli("prepare", "folder", "--images", d / "raw_images", "--masks", d / "raw_masks", "--out", d,
                              "--classes", "a,b", "--val-fraction", "0.25", "--overwrite")
    assert code == 2 and "a source file inside --out" in stderr
    assert (d / "raw_images").is_dir()
