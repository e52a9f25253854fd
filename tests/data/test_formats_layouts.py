"""The published layouts when --src is not quite what the format expects: half a download, or another layout."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import yaml
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
        mask = np.zeros((16, 16, 3), np.uint8)
        mask[8:] = 1  # two classes: masks of one would be single_class
        write_image(tmp_path / "src" / "masks" / f"p{i}.png", mask)
    assert run_cli("prepare", "folder", "--images", tmp_path / "src" / "images", "--masks", tmp_path / "src" / "masks",
                   "--out", d, "--classes", "a,b", "--val-fraction", "0.25")[0] == 0
    shutil.copytree(d / "images" / "train", d / "raw_images")
    shutil.copytree(d / "masks" / "train", d / "raw_masks")
    code, _, stderr = run_cli("prepare", "folder", "--images", d / "raw_images", "--masks", d / "raw_masks", "--out", d,
                              "--classes", "a,b", "--val-fraction", "0.25", "--overwrite")
    assert code == 2 and "a source file inside --out" in stderr
    assert (d / "raw_images").is_dir()


def test_an_out_holding_the_palette_split_lists_or_voc_lists_is_refused(tmp_path, rng, voc_src, run_cli):
    """Only images and masks inside --out were refused: `--palette d/meta/palette.txt --split-file
    train=d/meta/train.txt … --out d/meta --overwrite` deleted the palette and the lists (exit 0), and so did
    `prepare voc --out VOC2012/ImageSets --overwrite` VOC's split lists."""
    d = tmp_path / "d"
    for i in range(4):
        write_image(d / "images" / f"x{i}.png", random_image(rng, 16, 16))
        mask = np.zeros((16, 16, 3), np.uint8)
        mask[8:] = (255, 0, 0)
        write_image(d / "masks" / f"x{i}.png", mask)
    meta = d / "meta"
    meta.mkdir()
    (meta / "palette.txt").write_text("bg 0 0 0\nfg 255 0 0\n")
    (meta / "train.txt").write_text("x0\nx1\nx2\n")
    (meta / "val.txt").write_text("x3\n")
    before = {p.name: p.read_bytes() for p in meta.iterdir()}
    args = ["prepare", "folder", "--images", d / "images", "--masks", d / "masks", "--palette", meta / "palette.txt",
            "--split-file", f"train={meta / 'train.txt'}", "--split-file", f"val={meta / 'val.txt'}"]
    code, _, stderr = run_cli(*args, "--out", meta, "--overwrite")
    assert code == 2, stderr
    assert stderr.strip().splitlines()[-1].startswith(f"segcli: error: {meta / 'palette.txt'}: a file prepare reads, "
                                                      f"inside --out {meta.resolve()}, which prepare replaces")
    assert {p.name: p.read_bytes() for p in meta.iterdir()} == before
    assert run_cli(*args, "--out", tmp_path / "out")[0] == 0  # elsewhere it works
    lists = voc_src[0] / "VOC2012" / "ImageSets"
    before = sorted(p.name for p in (lists / "Segmentation").iterdir())
    code, _, stderr = run_cli("prepare", "voc", "--src", voc_src[0], "--out", lists, "--overwrite")
    assert code == 2 and "train.txt: a file prepare reads, inside --out" in stderr, stderr
    assert sorted(p.name for p in (lists / "Segmentation").iterdir()) == before


def test_a_bad_camvid_class_table_is_a_data_error_naming_the_file(tmp_path, rng, run_cli):
    """A malformed class_dict.csv of the download was exit 2 (a usage error) and one read '--palette <file>: no
    classes' though no --palette was given: the table is input data (exit 3), named as the file it is."""
    src = tmp_path / "CamVid"
    write_image(src / "train" / "a.png", random_image(rng, 8, 8))
    write_image(src / "train_labels" / "a_L.png", np.zeros((8, 8, 3), np.uint8))
    for text, what in (("name,r,g,b\nSky,128,128\n", ":2: cannot read 'Sky,128,128'"), ("", ": no classes")):
        (src / "class_dict.csv").write_text(text)
        code, _, stderr = run_cli("prepare", "camvid", "--src", src, "--out", tmp_path / "out")
        assert code == 3 and stderr.strip().splitlines() == [stderr.strip()], stderr
        assert f"segcli: error: {src / 'class_dict.csv'}{what}" in stderr and "--palette" not in stderr
        assert not (tmp_path / "out").exists()


def test_voc_with_only_the_augmented_masks(voc_src, tmp_path, run_cli):
    """A VOC copy shared with SegmentationClassAug/ and no SegmentationClass/ was refused as 'the test download'
    (masks missing); a macOS '._train.txt' was offered as a split name."""
    root = voc_src[0] / "VOC2012"
    (root / "SegmentationClass").rename(root / "SegmentationClassAug")
    (root / "ImageSets" / "Segmentation" / "._train.txt").write_bytes(b"\x00\x05\x16\x07")
    out = tmp_path / "out"
    code, _, stderr = run_cli("prepare", "voc", "--src", voc_src[0], "--out", out)
    assert code == 0, stderr
    card = yaml.safe_load((out / "dataset.yaml").read_text())
    assert {s: len(e) for s, e in card["splits"].items()} == {"train": 3, "val": 2}
    code, _, stderr = run_cli("prepare", "voc", "--src", voc_src[0], "--out", tmp_path / "o2", "--split", "train_aug")
    assert code == 3 and stderr.rstrip().endswith("available: train, trainval, val"), stderr


def test_ade20k_full_release_or_a_missing_split_folder_says_what_to_do(ade_src, tmp_path, rng, run_cli):
    """The full ADE20K release (images/ADE/training/<scene>/...) was 'not an ADEChallengeData2016 folder; point --src
    at ADEChallengeData2016/'; a missing images/validation/ was 'split folder not found' with no fix."""
    full = tmp_path / "dl" / "ADE20K_2021_17_01"
    write_image(full / "images" / "ADE" / "training" / "urban" / "street" / "ADE_train_00000001.jpg",
                random_image(rng, 8, 8))
    for src in (full, full.parent):
        code, _, stderr = run_cli("prepare", "ade20k", "--src", src, "--out", tmp_path / "out")
        assert code == 3 and f"{full}: the full ADE20K release" in stderr and "ADEChallengeData2016.zip" in stderr
    root = ade_src[0]
    shutil.rmtree(root / "images" / "validation")
    code, _, stderr = run_cli("prepare", "ade20k", "--src", root, "--out", tmp_path / "out")
    assert code == 3 and stderr.rstrip().endswith(
        "images/validation: split folder not found; extract images/validation/ from ADEChallengeData2016.zip, "
        "or leave 'val' out: --split train"), stderr
    assert not (tmp_path / "out").exists()
    assert run_cli("prepare", "ade20k", "--src", root, "--out", tmp_path / "out", "--split", "train")[0] == 0


def test_src_above_a_download_nested_two_or_three_levels_deep(voc_src, cityscapes_src, tmp_path, run_cli):
    """--src at the folder a download was extracted into, with the dataset further down (Downloads/
    VOCtrainval_11-May-2012/VOCdevkit/VOC2012), got 'point --src at VOCdevkit/'; and the two Cityscapes zips each
    extracted into a folder of their own (gtFine_trainvaltest/gtFine/) got the generic 'not a Cityscapes folder'."""
    downloads = tmp_path / "Downloads"
    voc = downloads / "VOCtrainval_11-May-2012" / "VOCdevkit"
    voc.parent.mkdir(parents=True)
    shutil.move(voc_src[0], voc)
    code, _, stderr = run_cli("prepare", "voc", "--src", downloads, "--out", tmp_path / "out")
    assert code == 3 and stderr.strip().endswith(f"point --src at {(voc / 'VOC2012').absolute()}"), stderr
    assert run_cli("prepare", "voc", "--src", voc / "VOC2012", "--out", tmp_path / "out")[0] == 0

    apart = tmp_path / "cs"
    images, labels = apart / "leftImg8bit_trainvaltest", apart / "gtFine_trainvaltest"
    for folder, name in ((images, "leftImg8bit"), (labels, "gtFine")):
        folder.mkdir(parents=True)
        shutil.move(cityscapes_src[0] / name, folder / name)
    code, _, stderr = run_cli("prepare", "cityscapes", "--src", apart, "--out", tmp_path / "cs_out")
    assert code == 3 and len(stderr.strip().splitlines()) == 1, stderr
    assert f"leftImg8bit/ is in {images} but gtFine/ in {labels}; move {labels / 'gtFine'} into {images}" in stderr
    shutil.move(labels / "gtFine", images / "gtFine")  # the fix it gives
    assert run_cli("prepare", "cityscapes", "--src", images, "--out", tmp_path / "cs_out")[0] == 0


@pytest.mark.parametrize("given", ["cls.txt", "lists/classes", "labels.json"])
def test_a_classes_file_that_is_not_there_is_named(given, tmp_path, rng, run_cli):
    """--classes naming a file that does not exist (a typo, another folder) was read as one class name; lint then
    blamed every mask ('class ids 0..0', exit 1). It is exit 3 naming the path, as a missing --split-file or
    --images folder is; names given as 'a,b' still work."""
    for i in range(4):
        write_image(tmp_path / "src" / "images" / f"p{i}.png", random_image(rng, 16, 16))
        write_image(tmp_path / "src" / "masks" / f"p{i}.png", np.full((16, 16), i % 2, np.uint8))
    args = ["prepare", "folder", "--images", tmp_path / "src" / "images", "--masks", tmp_path / "src" / "masks",
            "--val-fraction", "0.25"]
    code, _, stderr = run_cli(*args, "--out", tmp_path / "d", "--classes", tmp_path / given)
    assert code == 3, stderr
    assert stderr.strip().splitlines()[-1] == (f"segcli: error: {tmp_path / given}: class list file not found; check "
                                               "--classes (or give the names as 'a,b,c')")
    assert not (tmp_path / "d").exists()
    assert run_cli(*args, "--out", tmp_path / "e", "--classes", "background,object")[0] == 0


@pytest.mark.parametrize("given, what", [("nope.txt", "file not found"), ("folder", "not a file")])
def test_a_palette_that_cannot_be_read_is_a_data_error_as_other_input_files(given, what, tmp_path, rng, run_cli):
    """A missing --palette was exit 2 where a missing --classes or --split-file file is exit 3 (a folder given was
    'file not found' too)."""
    (tmp_path / "folder").mkdir()
    for i in range(4):
        write_image(tmp_path / "src" / "images" / f"p{i}.png", random_image(rng, 16, 16))
        write_image(tmp_path / "src" / "masks" / f"p{i}.png", np.full((16, 16), i % 2, np.uint8))
    code, _, stderr = run_cli("prepare", "folder", "--images", tmp_path / "src" / "images", "--masks",
                              tmp_path / "src" / "masks", "--out", tmp_path / "d", "--palette", tmp_path / given)
    assert code == 3, stderr
    assert stderr.strip().splitlines()[-1] == f"segcli: error: --palette {tmp_path / given}: {what}; check the path"
    assert not (tmp_path / "d").exists()
