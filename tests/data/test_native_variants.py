"""The published layouts in variants a user plausibly has on disk: copies converted already, lists concatenated, the
full ADE20K release, a download linted before it was prepared, a train split without its masks."""

from __future__ import annotations

import shutil

import cv2
import numpy as np
import pytest
import yaml
from helpers_data import random_image, read_lint, write_grey, write_image


def test_camvid_annotations_with_255_already_as_ignore(camvid_src, tmp_path, run_cli):
    """A SegNet-layout copy whose Unlabelled (11) was converted to 255 already: every mask was an out_of_range error,
    '255 are neither class ids 0..10 nor the ignore index 255', with a --remap hint prepare camvid does not take."""
    root, truth = camvid_src
    for stem, ids in truth.items():
        split = stem.split("_")[1]
        write_grey(root / f"{split}annot" / f"{stem}.png", np.where(ids == 11, 255, ids).astype(np.uint8))
    out = tmp_path / "out"
    code, _, stderr = run_cli("prepare", "camvid", "--src", root, "--out", out)
    assert code == 0, stderr
    for stem, ids in truth.items():
        stored = cv2.imread(str(out / "masks" / stem.split("_")[1] / f"{stem}.png"), cv2.IMREAD_UNCHANGED)
        assert np.array_equal(stored, np.where(ids == 11, 255, ids))


@pytest.mark.parametrize("fmt, fixture, lost", [
    ("camvid", "camvid_src", "trainannot"),
    ("ade20k", "ade_src", "annotations/training"),
    ("cityscapes", "cityscapes_src", "gtFine/train"),
])
def test_train_without_its_masks_is_not_told_to_leave_train_out(fmt, fixture, lost, tmp_path, run_cli, request):
    """A train split whose mask folder is empty: the line ended 'or leave 'train' out: --split val', which then fails
    with "split 'train' has no pair (every dataset needs a train split)"."""
    root = request.getfixturevalue(fixture)[0]
    shutil.rmtree(root / lost)
    (root / lost).mkdir()  # (CamVid without trainannot/ at all is no CamVid folder)
    out = tmp_path / "out"
    code, _, stderr = run_cli("prepare", fmt, "--src", root, "--out", out)
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert code == 3 and len(lines) == 1, stderr
    assert f"{root / lost}: holds no" in lines[0] and "has a mask" in lines[0], stderr
    assert "leave 'train' out" not in lines[0] and not out.exists()


def test_voc_list_naming_a_stem_twice_reads_it_once(voc_src, tmp_path, run_cli):
    """train.txt naming an image twice (lists concatenated: VOC's train + SBD's): was a duplicate_stem error, 'a
    second pair with stem ... in split 'train'', where `prepare folder --split-file` reads such a list once."""
    root = voc_src[0]
    listing = root / "VOC2012" / "ImageSets" / "Segmentation" / "train.txt"
    listing.write_text(listing.read_text() + "2007_000032\n")
    out = tmp_path / "out"
    code, _, stderr = run_cli("prepare", "voc", "--src", root, "--out", out)
    assert code == 0, stderr
    card = yaml.safe_load((out / "dataset.yaml").read_text())
    assert [e["image"] for e in card["splits"]["train"]] == [
        f"images/train/{stem}.jpg" for stem in ("2007_000032", "2007_000033", "2008_000001")]


def test_full_ade20k_2016_release_is_named(tmp_path, rng, run_cli):
    """ADE20K_2016_07_26 (index_ade20k.mat, images/training/<letter>/<scene>/*_seg.png, no images/ADE/): was the
    generic 'not an ADEChallengeData2016 folder', as if it were some other folder."""
    full = tmp_path / "dl" / "ADE20K_2016_07_26"
    scene = full / "images" / "training" / "a" / "abbey"
    write_image(scene / "ADE_train_00000970.jpg", random_image(rng, 8, 8))
    write_image(scene / "ADE_train_00000970_seg.png", random_image(rng, 8, 8))
    (full / "index_ade20k.mat").write_bytes(b"MATLAB 5.0 MAT-file")
    for src in (full, full.parent):
        code, _, stderr = run_cli("prepare", "ade20k", "--src", src, "--out", tmp_path / "out")
        assert code == 3 and f"{full}: the full ADE20K release" in stderr and "ADEChallengeData2016.zip" in stderr
        assert not (tmp_path / "out").exists()


def test_lint_of_a_download_names_the_prepare_command(cityscapes_src, voc_src, run_cli):
    """`prepare lint` pointed at the download instead of the prepared dataset: 'no dataset card; prepare the dataset
    first, e.g. `segcli prepare synthetic --out <the download>`'."""
    for fmt, src, found in (("cityscapes", cityscapes_src[0], cityscapes_src[0]),
                            ("voc", voc_src[0], voc_src[0] / "VOC2012")):
        code, stdout, stderr = run_cli("prepare", "lint", src)
        assert code == 3 and not stdout, stderr
        assert "no dataset card; it " in stderr and f"`segcli prepare {fmt} --src {found} --out DIR`" in stderr
        assert "synthetic" not in stderr and not (src / "lint.json").exists()


def test_lint_fixes_name_only_options_the_command_takes(ade_src, cityscapes_src, tmp_path, rng, run_cli):
    """prepare ade20k of RGB masks said 'pass --palette FILE', and of values outside the table 'map them with
    `segcli prepare … --remap / --ignore-index`': options only prepare folder takes (prepare ade20k --palette is 'No such
    option')."""
    ade, _ = ade_src
    stem = next((ade / "annotations" / "training").glob("*.png"))
    write_image(stem, random_image(rng, 24, 32))  # re-saved in colour
    city, _ = cityscapes_src
    label = next((city / "gtFine" / "train").rglob("*_labelIds.png"))
    write_grey(label, np.full((32, 64), 200, np.uint8))  # no Cityscapes label id
    for fmt, src, kind in (("ade20k", ade, "rgb_mask"), ("cityscapes", city, "out_of_range")):
        code, _, stderr = run_cli("prepare", fmt, "--src", src, "--out", tmp_path / "out" / fmt)
        assert code == 1 and kind in stderr, stderr
        findings = read_lint(tmp_path / "out" / fmt / "lint.json")["findings"]
        detail = next(f["detail"] for f in findings if f["kind"] == kind)
        assert "or convert" in detail and "with `segcli prepare folder" in detail, detail  # the command that takes them
        assert "pass --palette" not in detail and "map them with" not in detail, detail


def test_the_hints_for_a_missing_or_unlabelled_train_split_can_be_followed(cityscapes_src, tmp_path, rng, run_cli):
    """`prepare cityscapes --split val` was told '--split train=trainval for VOC or Cityscapes' (Cityscapes has no
    trainval: exit 3), and a folder whose train masks hold only ignored values was told to leave train out."""
    root = cityscapes_src[0]
    code, _, stderr = run_cli("prepare", "cityscapes", "--src", root, "--out", tmp_path / "o1", "--split", "val")
    assert code == 1, stderr
    found = [f["detail"] for f in read_lint(tmp_path / "o1" / "lint.json")["findings"] if f["kind"] == "empty_split"]
    assert len(found) == 1 and "split 'train' has no pair" in found[0], found
    assert "--split train for a native format" in found[0] and "Cityscapes" not in found[0], found
    code, _, stderr = run_cli("prepare", "cityscapes", "--src", root, "--out", tmp_path / "o1", "--split", "val",
                              "--split", "train")
    assert code == 0, stderr
    for i in range(5):
        write_image(tmp_path / "f" / "images" / f"x{i}.png", random_image(rng, 16, 16))
        write_grey(tmp_path / "f" / "masks" / f"x{i}.png", np.full((16, 16), 255, np.uint8))
    code, _, stderr = run_cli("prepare", "folder", "--images", tmp_path / "f" / "images", "--masks",
                              tmp_path / "f" / "masks", "--classes", "a,b", "--val-fraction", "0.2",
                              "--out", tmp_path / "o2")
    assert code == 1, stderr
    found = {f["split"]: f["detail"] for f in read_lint(tmp_path / "o2" / "lint.json")["findings"]
             if f["kind"] == "empty_split"}
    assert "leave it out" not in found["train"] and "check the masks' values" in found["train"], found
    assert "leave it out" in found["val"], found


def test_an_empty_split_folder_of_a_download_names_the_folders(ade_src, tmp_path, run_cli):
    """images/validation/ and annotations/validation/ both empty: 'first: val: split 'val' has no pair' (exit 1)
    named neither folder nor a fix."""
    root = ade_src[0]
    for folder in (root / "images" / "validation", root / "annotations" / "validation"):
        shutil.rmtree(folder)
        folder.mkdir()
    out = tmp_path / "out"
    code, _, stderr = run_cli("prepare", "ade20k", "--src", root, "--out", out)
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert code == 3 and len(lines) == 1 and not out.exists(), stderr
    assert lines[0] == (f"segcli: error: {root / 'images' / 'validation'}: holds no images, and "
                        f"{root / 'annotations' / 'validation'} no annotations (<name>.png), so split 'val' would be "
                        "empty; restore both (a partial download or extraction?), or leave 'val' out: --split train")
    assert run_cli("prepare", "ade20k", "--src", root, "--out", out, "--split", "train")[0] == 0
