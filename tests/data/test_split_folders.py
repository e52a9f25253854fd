"""`prepare folder` on the layouts other tools and dataset sites ship: split folders (mmsegmentation's img_dir/{train,val},
Kaggle's images/{train,valid,test}), one folder per split holding images/ and masks/, Roboflow's _classes.csv and
nnU-Net's dataset.json."""

from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from helpers_data import blocks, random_image, read_lint, write_grey, write_image


def _pairs(rng, images, masks, counts: dict[str, int], mask_suffix: str = "", values=(0, 1, 2), tag: str = "") -> None:
    """counts[folder] pairs of 16×16 images in images/folder/ and masks in masks/folder/ (names <folder or tag><i>, so
    that a prepared pair's name tells where it came from)."""
    for folder, count in counts.items():
        for i in range(count):
            name = f"{(folder or tag).lower()}{i}"
            write_image(images / folder / f"{name}.jpg", random_image(rng, 16, 16))
            write_grey(masks / folder / f"{name}{mask_suffix}.png", blocks(rng, 16, 16, list(values), 4).astype(np.uint8))


def _splits(out) -> dict[str, set[str]]:
    """split → the source folder of each of its pairs (its name less the number, as _pairs names them)."""
    card = yaml.safe_load((out / "dataset.yaml").read_text())
    return {split: {re.sub(r"[0-9]+$", "", Path(entry["image"]).stem) for entry in entries}
            for split, entries in card["splits"].items()}


def _sizes(out) -> dict[str, int]:
    card = yaml.safe_load((out / "dataset.yaml").read_text())
    return {split: len(entries) for split, entries in card["splits"].items()}


@pytest.mark.parametrize("folders", [("train", "val"), ("Training", "Validation"), ("train", "valid", "test")])
def test_split_folders_are_the_splits(folders, tmp_path, rng, run_cli):
    """mmsegmentation's img_dir/{train,val} + ann_dir/{train,val}: the stems became train/x and val/y and were split
    at random (val 0.2), so val images were trained on and train images validated on, without a word."""
    counts = dict(zip(folders, (6, 3, 2)))
    _pairs(rng, tmp_path / "img_dir", tmp_path / "ann_dir", counts)
    out = tmp_path / "out"
    code, stdout, stderr = run_cli("prepare", "folder", "--images", tmp_path / "img_dir", "--masks", tmp_path / "ann_dir",
                                   "--out", out, "--classes", "a,b,c")
    assert code == 0, stderr
    assert stdout.strip() == str(out / "dataset.yaml")
    named = dict(zip(("train", "val", "test"), folders))
    assert _splits(out) == {split: {folder.lower()} for split, folder in named.items()}
    assert _sizes(out) == {split: counts[folder] for split, folder in named.items()}
    note = next(line for line in stderr.splitlines() if "split folders" in line)
    assert f"train 6 ({folders[0]}/), val 3 ({folders[1]}/)" in note and "--val-fraction" in note


def test_train_and_test_folders_draw_val_from_train(tmp_path, rng, run_cli):
    """images/{train,test}: val is drawn at random from train/ (0.2, seeded), test/ stays whole and untouched; --folds
    divides the train split."""
    _pairs(rng, tmp_path / "images", tmp_path / "masks", {"train": 10, "test": 3})
    out = tmp_path / "out"
    code, _, stderr = run_cli("prepare", "folder", "--images", tmp_path / "images", "--masks", tmp_path / "masks",
                              "--out", out, "--classes", "a,b,c", "--folds", "2")
    assert code == 0, stderr
    assert _splits(out) == {"train": {"train"}, "val": {"train"}, "test": {"test"}}
    assert _sizes(out) == {"train": 8, "val": 2, "test": 3}
    card = yaml.safe_load((out / "dataset.yaml").read_text())
    assert sorted(e["fold"] for e in card["splits"]["train"]) == [0] * 4 + [1] * 4
    assert "no val folder: val is 0.2 of train/ drawn at random, --seed 0" in stderr


def test_a_fraction_given_splits_at_random_and_says_the_folders_are_not_used(tmp_path, rng, run_cli):
    _pairs(rng, tmp_path / "images", tmp_path / "masks", {"train": 6, "val": 2})
    out = tmp_path / "out"
    code, _, stderr = run_cli("prepare", "folder", "--images", tmp_path / "images", "--masks", tmp_path / "masks",
                              "--out", out, "--classes", "a,b,c", "--val-fraction", "0.5")
    assert code == 0, stderr
    assert _sizes(out) == {"train": 4, "val": 4}
    assert "split folders' names (train/, val/) are not used" in stderr


def test_pairs_outside_the_split_folders_are_left_out_with_a_warning(tmp_path, rng, run_cli):
    """As a split list's unlisted pairs: an `unassigned` warning (an error with --strict); --group leaks across the
    folders are warned about as for split lists."""
    _pairs(rng, tmp_path / "images", tmp_path / "masks", {"train": 4, "val": 2, "extra": 1})
    out = tmp_path / "out"
    code, _, stderr = run_cli("prepare", "folder", "--images", tmp_path / "images", "--masks", tmp_path / "masks",
                              "--out", out, "--classes", "a,b,c", "--group", "[0-9]$")
    assert code == 0, stderr
    assert _sizes(out) == {"train": 4, "val": 2}
    findings = read_lint(out / "lint.json")["findings"]
    assert [(f["kind"], f["stem"]) for f in findings if f["kind"] == "unassigned"] == [("unassigned", "extra/extra0")]
    assert {f["file"] for f in findings if f["kind"] == "group_leak"} == {"0", "1"}


def test_prepared_paths_leave_out_the_split_folder_and_group_matches_inside_it(tmp_path, rng, run_cli):
    """img_dir/{train,val}/seqN_i: the prepared pairs were images/train/train/seq1_0.jpg, and --group '^[^_]+' was
    matched against train/seq1_0, so it gave 'train/seq1' and 'val/seq1' and missed that seq1 sits in both splits."""
    for split, count in (("train", 4), ("val", 2)):
        for i in range(count):
            name = f"seq{i % 2}_{i}"
            write_image(tmp_path / "img_dir" / split / f"{name}.jpg", random_image(rng, 16, 16))
            write_grey(tmp_path / "ann_dir" / split / f"{name}.png", blocks(rng, 16, 16, [0, 1, 2], 4).astype(np.uint8))
    out = tmp_path / "out"
    code, _, stderr = run_cli("prepare", "folder", "--images", tmp_path / "img_dir", "--masks", tmp_path / "ann_dir",
                              "--out", out, "--classes", "a,b,c", "--group", "^[^_]+", "--folds", "2")
    assert code == 0, stderr
    card = yaml.safe_load((out / "dataset.yaml").read_text())
    assert sorted(e["image"] for e in card["splits"]["val"]) == ["images/val/seq0_0.jpg", "images/val/seq1_1.jpg"]
    assert sorted(e["mask"] for e in card["splits"]["val"]) == ["masks/val/seq0_0.png", "masks/val/seq1_1.png"]
    assert all((out / e["image"]).is_file() for entries in card["splits"].values() for e in entries)
    assert {e["group"] for e in card["splits"]["train"]} == {"seq0", "seq1"}
    findings = read_lint(out / "lint.json")["findings"]
    assert sorted(f["file"] for f in findings if f["kind"] == "group_leak") == ["seq0", "seq1"]


def test_a_split_of_two_folders_keeps_them_in_its_paths(tmp_path, rng, run_cli):
    """train/ and training/ both give the train split, and may hold the same name: those stems keep their folder.
    --group is still matched inside the folder, so x (in train/ and in val/) is one group that leaks."""
    for folder in ("train", "training", "val"):
        _pairs(rng, tmp_path / "images" / folder, tmp_path / "masks" / folder, {"": 2}, tag="x")
    out = tmp_path / "out"
    code, _, stderr = run_cli("prepare", "folder", "--images", tmp_path / "images", "--masks", tmp_path / "masks",
                              "--out", out, "--classes", "a,b,c", "--group", "^[a-z]+")
    assert code == 0, stderr
    card = yaml.safe_load((out / "dataset.yaml").read_text())
    assert sorted(e["image"] for e in card["splits"]["train"]) == [
        "images/train/train/x0.jpg", "images/train/train/x1.jpg", "images/train/training/x0.jpg",
        "images/train/training/x1.jpg"]
    assert sorted(e["image"] for e in card["splits"]["val"]) == ["images/val/x0.jpg", "images/val/x1.jpg"]
    assert {e["group"] for entries in card["splits"].values() for e in entries} == {"x"}
    assert [f["file"] for f in read_lint(out / "lint.json")["findings"] if f["kind"] == "group_leak"] == ["x"]


def test_one_folder_per_split_holding_images_and_masks(tmp_path, rng, run_cli):
    """DIR/{train,valid,test}/{images,masks}/ with --images DIR --masks DIR: was 'the same folder: say which files are
    masks with --mask-suffix', i.e. one command per split. The sibling folders pair, the split folders split."""
    root = tmp_path / "ds"
    for split, count in (("train", 5), ("valid", 2), ("test", 2)):
        _pairs(rng, root / split / "images", root / split / "labels", {"": count}, values=(0, 1), tag=split)
    out = tmp_path / "out"
    code, _, stderr = run_cli("prepare", "folder", "--images", root, "--masks", root, "--out", out, "--classes", "a,b")
    assert code == 0, stderr
    assert _splits(out) == {"train": {"train"}, "val": {"valid"}, "test": {"test"}}
    assert _sizes(out) == {"train": 5, "val": 2, "test": 2}
    # a file in neither images/ nor labels/ is named, with what to do
    write_image(root / "preview.jpg", random_image(rng, 16, 16))
    code, _, stderr = run_cli("prepare", "folder", "--images", root, "--masks", root, "--out", tmp_path / "o2")
    assert code == 2 and f"{root / 'preview.jpg'} lies in neither of them; move it" in stderr, stderr
    assert not (tmp_path / "o2").exists()


def test_sibling_split_and_mask_folders_pair(tmp_path, rng, run_cli):
    """SegNet's CamVid layout (train/ beside trainannot/) and Kaggle's CamVid (train/ beside train_labels/, colour masks
    named x_L.png, class_dict.csv) with --images DIR --masks DIR: were 'say which files are masks', with a suffix hint
    built from two frame numbers that happened to share a prefix (--image-suffix _00450 --mask-suffix _00901)."""
    segnet = tmp_path / "segnet"
    for split, count in (("train", 5), ("val", 2), ("test", 2)):
        _pairs(rng, segnet / split, segnet / f"{split}annot", {"": count}, values=(0, 1), tag=split)
    code, _, stderr = run_cli("prepare", "folder", "--images", segnet, "--masks", segnet, "--out", tmp_path / "o1",
                              "--classes", "a,b")
    assert code == 0, stderr
    assert _sizes(tmp_path / "o1") == {"train": 5, "val": 2, "test": 2}
    assert _splits(tmp_path / "o1") == {"train": {"train"}, "val": {"val"}, "test": {"test"}}

    kaggle = tmp_path / "kaggle"
    colours = {"road": (128, 64, 128), "sky": (128, 128, 128)}
    (kaggle / "class_dict.csv").parent.mkdir(parents=True)
    table = "".join(f"{name},{r},{g},{b}\n" for name, (r, g, b) in colours.items())
    (kaggle / "class_dict.csv").write_text(f"name,r,g,b\n{table}")
    for split, count in (("train", 4), ("val", 2)):
        for i in range(count):
            write_image(kaggle / split / f"f{i}.png", random_image(rng, 16, 16))
            ids = blocks(rng, 16, 16, [0, 1], 4)
            write_image(kaggle / f"{split}_labels" / f"f{i}_L.png", np.array(list(colours.values()), np.uint8)[ids])
    code, _, stderr = run_cli("prepare", "folder", "--images", kaggle, "--masks", kaggle, "--out", tmp_path / "o2",
                              "--mask-suffix", "_L", "--palette", kaggle / "class_dict.csv", "--strict")
    assert code == 0, stderr
    assert _sizes(tmp_path / "o2") == {"train": 4, "val": 2}
    card = yaml.safe_load((tmp_path / "o2" / "dataset.yaml").read_text())
    assert card["classes"] == ["road", "sky"]


def test_roboflow_export_with_its_classes_csv(tmp_path, rng, run_cli):
    """Roboflow's semantic export: train/x.jpg + train/x_mask.png + train/_classes.csv ('Pixel Value, Class'). The CSV
    given to --classes made one class of each line ('Pixel Value, Class', '0, background', ...): 4 classes, wrong
    names, and only a class_missing warning."""
    root = tmp_path / "export"
    _pairs(rng, root, root, {"train": 4, "valid": 2}, mask_suffix="_mask", values=(0, 1, 3))
    for split in ("train", "valid"):
        (root / split / "_classes.csv").write_text("Pixel Value, Class\n0, background\n1, cat\n3, dog\n")
    out = tmp_path / "out"
    code, _, stderr = run_cli("prepare", "folder", "--images", root, "--masks", root, "--mask-suffix", "_mask", "--out",
                              out, "--classes", root / "train" / "_classes.csv", "--strict")
    assert code == 0, stderr
    card = yaml.safe_load((out / "dataset.yaml").read_text())
    assert card["classes"] == ["background", "cat", "dog"]
    assert _sizes(out) == {"train": 4, "val": 2}
    stored = np.unique(np.concatenate([cv2.imread(str(p), cv2.IMREAD_UNCHANGED).ravel()
                                       for p in (out / "masks").rglob("*.png")]))
    assert stored.tolist() == [0, 1, 2]  # value 3 is the third class, dog


def test_nnunet_dataset_json_names_the_classes_and_its_ignore_label(tmp_path, rng, run_cli):
    root = tmp_path / "Dataset001_X"
    for i in range(5):
        write_grey(root / "imagesTr" / f"case_{i:03d}_0000.png", rng.integers(0, 256, (16, 16), dtype=np.uint8))
        write_grey(root / "labelsTr" / f"case_{i:03d}.png", blocks(rng, 16, 16, [0, 1, 2], 4).astype(np.uint8))
    (root / "dataset.json").write_text(json.dumps({"channel_names": {"0": "CT"}, "file_ending": ".png",
                                                   "labels": {"background": 0, "tumor": 1, "ignore": 2}}))
    out = tmp_path / "out"
    code, _, stderr = run_cli("prepare", "folder", "--images", root / "imagesTr", "--masks", root / "labelsTr",
                              "--image-suffix", "_0000", "--classes", root / "dataset.json", "--out", out)
    assert code == 0, stderr
    card = yaml.safe_load((out / "dataset.yaml").read_text())
    assert card["classes"] == ["background", "tumor"] and card["ignore_index"] == 255
    stored = np.unique(np.concatenate([cv2.imread(str(p), cv2.IMREAD_UNCHANGED).ravel()
                                       for p in (out / "masks").rglob("*.png")]))
    assert stored.tolist() == [0, 1, 255]


@pytest.mark.parametrize("table", ["Pixel Value;Class\n0;background\n1;cat\n3;dog\n",  # Excel, ',' the decimal mark
                                   "Pixel Value\tClass\n0\tbackground\n1\tcat\n3\tdog\n",
                                   "id,name,r,g,b\n0,background,0,0,0\n1,cat,255,0,0\n3,dog,0,255,0\n"])
def test_class_csv_with_semicolons_tabs_or_colour_columns(table, tmp_path, rng, run_cli):
    """A ';'-separated class CSV (European Excel) or a tab-separated one was read as one class name a line: 4 classes
    named 'Pixel Value;Class', '0;background', …, with only a class_missing warning."""
    _pairs(rng, tmp_path / "images", tmp_path / "masks", {"": 4}, values=(0, 1, 3))
    (tmp_path / "classes.csv").write_text(table)
    out = tmp_path / "out"
    code, _, stderr = run_cli("prepare", "folder", "--images", tmp_path / "images", "--masks", tmp_path / "masks",
                              "--out", out, "--classes", tmp_path / "classes.csv", "--val-fraction", "0.25", "--strict")
    assert code == 0, stderr
    card = yaml.safe_load((out / "dataset.yaml").read_text())
    assert card["classes"] == ["background", "cat", "dog"]


def test_one_column_class_csv_header_is_not_a_class(tmp_path):
    """pandas' to_csv of a list of names starts with its column's name: it became a class called 'name'."""
    from segcli.data.class_table import read_class_table

    (tmp_path / "classes.csv").write_text("name\nbackground\ncat\n")
    (tmp_path / "classes.txt").write_text("a, b\nc\n")  # a name list whose first name holds a comma stays a name list
    assert read_class_table(str(tmp_path / "classes.csv")) == (["background", "cat"], {}, False)
    assert read_class_table(str(tmp_path / "classes.txt")) == (["a, b", "c"], {}, False)


def test_a_mask_value_the_class_table_does_not_name_is_out_of_range(tmp_path, rng, run_cli):
    """Roboflow's _classes.csv names values 0, 1 and 3: a mask holding 2 was read as id 2, i.e. 'dog' (3's class),
    without a finding, even with --strict."""
    _pairs(rng, tmp_path / "images", tmp_path / "masks", {"": 3}, values=(0, 1, 3))
    write_image(tmp_path / "images" / "odd.jpg", random_image(rng, 16, 16))
    write_grey(tmp_path / "masks" / "odd.png", blocks(rng, 16, 16, [0, 2, 3], 4).astype(np.uint8))
    (tmp_path / "_classes.csv").write_text("Pixel Value, Class\n0, background\n1, cat\n3, dog\n")
    out = tmp_path / "out"
    code, _, stderr = run_cli("prepare", "folder", "--images", tmp_path / "images", "--masks", tmp_path / "masks",
                              "--out", out, "--classes", tmp_path / "_classes.csv", "--val-fraction", "0.25")
    assert code == 1, stderr
    findings = read_lint(out / "lint.json")["findings"]
    assert [(f["kind"], f["file"]) for f in findings] == [("out_of_range", str(tmp_path / "masks" / "odd.png"))]
    assert "mask values 2 are neither class ids (the values 0, 1, 3, read as 0..2)" in findings[0]["detail"]
    assert not (out / "dataset.yaml").exists()


def test_split_folders_below_a_folder_every_pair_shares(tmp_path, rng, run_cli):
    """An archive unpacked one folder deeper (`DIR/dataset/{train,val,test}/{images,masks}`): the stems were
    dataset/train/x, …, so the split folders went unseen and every pair, test/ and val/ included, was split at random
    without a word: test images were trained on."""
    root = tmp_path / "archive"
    for split, count in (("train", 5), ("val", 2), ("test", 2)):
        _pairs(rng, root / "dataset" / split / "images", root / "dataset" / split / "masks", {"": count}, tag=split)
    out = tmp_path / "out"
    code, _, stderr = run_cli("prepare", "folder", "--images", root, "--masks", root, "--out", out,
                              "--classes", "a,b,c")
    assert code == 0, stderr
    card = yaml.safe_load((out / "dataset.yaml").read_text())
    assert _splits(out) == {"train": {"train"}, "val": {"val"}, "test": {"test"}}
    assert card["splits"]["val"][0]["image"] == "images/val/val0.jpg"  # not images/val/dataset/val/val0.jpg
    assert _sizes(out) == {"train": 5, "val": 2, "test": 2}
    assert "train 5 (dataset/train/), val 2 (dataset/val/), test 2 (dataset/test/)" in stderr


def test_an_unlabelled_test_folder_is_named_and_keep_going_leaves_it_out(tmp_path, rng, run_cli):
    """Kaggle-style sets ship test/ without masks. Beside SegNet's train/ + trainannot/ it was 'lies in neither of them;
    move it' (exit 2, --keep-going or not); in images/{train,val,test} each image was a bare missing_mask."""
    segnet = tmp_path / "segnet"
    for split, count in (("train", 4), ("val", 2)):
        _pairs(rng, segnet / split, segnet / f"{split}annot", {"": count}, tag=split)
    for i in range(2):
        write_image(segnet / "test" / f"t{i}.png", random_image(rng, 16, 16))
    out = tmp_path / "out"
    code, _, stderr = run_cli("prepare", "folder", "--images", segnet, "--masks", segnet, "--out", out,
                              "--classes", "a,b,c")
    assert code == 1, stderr
    assert "test/ holds no masks at all (an unlabelled test set?): --keep-going leaves it out" in stderr
    assert {f["kind"] for f in read_lint(out / "lint.json")["findings"]} == {"missing_mask"}
    code, _, stderr = run_cli("prepare", "folder", "--images", segnet, "--masks", segnet, "--out", out,
                              "--classes", "a,b,c",
                              "--keep-going")
    assert code == 0, stderr
    assert _sizes(out) == {"train": 4, "val": 2}


def test_split_image_and_mask_folders_named_alike(tmp_path, rng, run_cli):
    """Kaggle's train_images/ + train_masks/ (val_images/ + val_masks/) with --images DIR --masks DIR: was 'say which
    files are masks with --mask-suffix, e.g. --mask-suffix _mask', which pairs nothing there."""
    root = tmp_path / "kaggle"
    for split, count in (("train", 4), ("val", 2)):
        _pairs(rng, root / f"{split}_images", root / f"{split}_masks", {"": count}, tag=split)
    out = tmp_path / "out"
    code, _, stderr = run_cli("prepare", "folder", "--images", root, "--masks", root, "--out", out,
                              "--classes", "a,b,c")
    assert code == 0, stderr
    assert _sizes(out) == {"train": 4, "val": 2}
    assert _splits(out) == {"train": {"train"}, "val": {"val"}}


@pytest.mark.parametrize("value", [1.5, True])
def test_dataset_json_label_values_must_be_whole_numbers(value, tmp_path):
    """{"liver": 1.5} or {"liver": true} was read as value 1 (int() of it) without a word."""
    from segcli.data.class_table import read_class_table
    from segcli.errors import ConfigError

    (tmp_path / "dataset.json").write_text(json.dumps({"labels": {"background": 0, "liver": value}}))
    with pytest.raises(ConfigError, match="label 'liver' has the value .*, not a whole number"):
        read_class_table(str(tmp_path / "dataset.json"))


def test_an_out_inside_the_one_source_folder_is_not_read_as_source(tmp_path, rng, run_cli):
    """--images DIR --masks DIR --out DIR/prepared: a second prepare (--overwrite) read the first's output as source:
    'DIR/prepared/class_frequencies.png lies in neither of them' (exit 2). It is left out, with a note."""
    root = tmp_path / "ds"
    for split, count in (("train", 4), ("val", 2)):
        _pairs(rng, root / split / "images", root / split / "masks", {"": count}, values=(0, 1), tag=split)
    args = ["prepare", "folder", "--images", root, "--masks", root, "--out", root / "prepared", "--classes", "a,b"]
    code, _, stderr = run_cli(*args)
    assert code == 0 and "left out" not in stderr, stderr
    code, _, stderr = run_cli(*args, "--overwrite")
    assert code == 0, stderr
    assert f"left out {root / 'prepared'}: a prepared dataset" in stderr
    assert _sizes(root / "prepared") == {"train": 4, "val": 2}
