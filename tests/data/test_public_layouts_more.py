"""More public datasets' own layouts, as downloaded (tiny mocks of their folder and file naming and mask values):
COCO-Stuff's year-named split folders, CVAT's segmentation mask export given to `prepare voc`."""

from __future__ import annotations

import shlex

import cv2
import numpy as np
import yaml
from helpers_data import blocks, random_image, write_grey, write_image


def test_cocostuff_year_named_split_folders_are_the_splits(tmp_path, rng, run_cli):
    """COCO-Stuff's images/{train2017,val2017} + annotations/{train2017,val2017} (ids with gaps, 255 unlabelled): the
    year-named folders were not split folders, so val2017 was drawn into a random split and 4 of its 6 pairs trained."""
    root, truth = tmp_path / "cocostuff", {}
    for split, numbers in (("train2017", range(100, 106)), ("val2017", range(6))):
        for n in numbers:
            write_image(root / "images" / split / f"{n:012d}.jpg", random_image(rng, 32, 48))
            truth[f"{split}/{n:012d}"] = blocks(rng, 32, 48, [0, 1, 2, 5, 255]).astype(np.uint8)
            write_grey(root / "annotations" / split / f"{n:012d}.png", truth[f"{split}/{n:012d}"])
    out = tmp_path / "out"
    code, _, stderr = run_cli("prepare", "folder", "--images", root / "images", "--masks", root / "annotations",
                              "--out", out)
    assert code == 0, stderr
    assert "train 6 (train2017/), val 6 (val2017/)" in stderr
    card = yaml.safe_load((out / "dataset.yaml").read_text())
    assert {split: sorted(e["image"] for e in entries) for split, entries in card["splits"].items()} == {
        "train": [f"images/train/{n:012d}.jpg" for n in range(100, 106)],
        "val": [f"images/val/{n:012d}.jpg" for n in range(6)]}
    for folder, split in (("train2017", "train"), ("val2017", "val")):
        for n in range(100, 106) if split == "train" else range(6):
            stored = cv2.imread(str(out / "masks" / split / f"{n:012d}.png"), cv2.IMREAD_UNCHANGED)
            assert np.array_equal(stored, truth[f"{folder}/{n:012d}"])  # ids as they are, 255 still ignore


def test_cvat_segmentation_mask_export_given_to_prepare_voc_names_prepare_folder(tmp_path, rng, run_cli):
    """CVAT's 'Segmentation mask 1.1' export looks like VOC (JPEGImages/, SegmentationClass/, ImageSets/Segmentation/
    default.txt) but colours its masks after its labelmap.txt: `prepare voc` said 'train.txt: split list not found;
    available: default', and with --split train=default failed on every colour. The error names the folder command,
    and that command prepares it."""
    root = tmp_path / "task_1-2024_01_01_00_00_00-segmentation mask 1.1"
    colours = {"background": (0, 0, 0), "car": (250, 50, 83), "person": (51, 221, 255)}
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    (root / "labelmap.txt").write_text("# label:color_rgb:parts:actions\n"
                                       + "".join(f"{n}:{','.join(map(str, c))}::\n" for n, c in colours.items()))
    truth = {}
    for i in range(5):
        write_image(root / "JPEGImages" / f"frame_{i:06d}.jpg", random_image(rng, 32, 48))
        truth[f"frame_{i:06d}"] = blocks(rng, 32, 48, [0, 1, 2])
        write_image(root / "SegmentationClass" / f"frame_{i:06d}.png", np.asarray(list(colours.values()), np.uint8)[
            truth[f"frame_{i:06d}"]])
    (root / "ImageSets" / "Segmentation" / "default.txt").write_text("".join(f"{s}\n" for s in truth))
    code, stdout, stderr = run_cli("prepare", "voc", "--src", root, "--out", tmp_path / "voc")
    assert code == 3 and stdout == "" and "Traceback" not in stderr
    command = shlex.split(stderr.strip().splitlines()[-1].partition(": segcli ")[2])  # pasted into a shell as it is
    assert command == ["prepare", "folder", "--images", str(root / "JPEGImages"), "--masks",
                       str(root / "SegmentationClass"), "--palette", str(root / "labelmap.txt"), "--out", "DIR"]
    out = tmp_path / "out"
    code, _, stderr = run_cli("prepare", "folder", "--images", root / "JPEGImages", "--masks", root / "SegmentationClass",
                              "--palette", root / "labelmap.txt", "--out", out)
    assert code == 0, stderr
    card = yaml.safe_load((out / "dataset.yaml").read_text())
    assert card["classes"] == list(colours)
    for entry in card["splits"]["train"] + card["splits"]["val"]:
        stored = cv2.imread(str(out / entry["mask"]), cv2.IMREAD_UNCHANGED)
        assert np.array_equal(stored, truth[entry["mask"].rsplit("/", 1)[1][:-4]])


def test_a_year_named_folder_that_holds_every_pair_is_not_taken_for_a_split():
    """test2020/{train,val}/: the folder above the split folders, shared by every pair, was read as the split 'test'
    (no train: a random split instead, silently) once year-named folders became splits."""
    from segcli.data.splits import split_folders

    assert split_folders(["test2020/train/a", "test2020/train/b", "test2020/val/c"]) == {
        "test2020/train/a": ("train", "test2020/train/"), "test2020/train/b": ("train", "test2020/train/"),
        "test2020/val/c": ("val", "test2020/val/")}
    assert split_folders(["train2017/a", "val2017/b"]) == {"train2017/a": ("train", "train2017/"),
                                                           "val2017/b": ("val", "val2017/")}
