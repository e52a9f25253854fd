"""KITTI semantics, Mapillary Vistas and BDD100K as downloaded (tiny mocks of their folder and file naming and mask
values), and DRIVE given as one folder: what `prepare` reads of them, or the command its error names."""

from __future__ import annotations

import json

import cv2
import numpy as np
import yaml
from helpers_data import blocks, random_image, write_grey, write_image, write_palette_png

LABEL_IDS = [0, 1, 4, 7, 8, 11, 17, 21, 23, 24, 26, 33]  # Cityscapes label ids; 7 road … 33 bicycle, 0/1/4 → ignore
TRAIN_ID = {7: 0, 8: 1, 11: 2, 17: 5, 21: 8, 23: 10, 24: 11, 26: 13, 33: 18}


def _kitti(root, rng, count=10):
    truth = {}
    for i in range(count):
        stem = f"{i:06d}_10"
        write_image(root / "training" / "image_2" / f"{stem}.png", random_image(rng, 24, 80))
        truth[stem] = blocks(rng, 24, 80, LABEL_IDS).astype(np.uint8)
        write_grey(root / "training" / "semantic" / f"{stem}.png", truth[stem])
        write_image(root / "training" / "semantic_rgb" / f"{stem}.png", random_image(rng, 24, 80))
    write_image(root / "testing" / "image_2" / "000000_10.png", random_image(rng, 24, 80))
    return truth


def test_kitti_semantics_reads_as_cityscapes_with_val_drawn_from_training(tmp_path, rng, run_cli):
    """KITTI's data_semantics/ (training/image_2 + training/semantic in Cityscapes label ids, an unlabelled testing/):
    `prepare cityscapes` said only 'expected leftImg8bit/ and gtFine/', and `prepare folder` kept the 27 raw label ids
    as classes. It now gives the 19 train ids, the rest ignore, and val 0.2 of training/ (val_fraction=, seed=)."""
    root = tmp_path / "data_semantics"
    truth = _kitti(root, rng)
    out = tmp_path / "out"
    code, stdout, stderr = run_cli("prepare", "cityscapes", "--src", root, "--out", out)
    assert code == 0, stderr
    card = yaml.safe_load((out / "dataset.yaml").read_text())
    assert card["classes"][:3] == ["road", "sidewalk", "building"] and len(card["classes"]) == 19
    assert {split: len(entries) for split, entries in card["splits"].items()} == {"train": 8, "val": 2}
    for split, entries in card["splits"].items():
        for entry in entries:
            stem = entry["mask"].rsplit("/", 1)[1][:-4]
            expected = np.vectorize(lambda v: TRAIN_ID.get(int(v), 255))(truth[stem]).astype(np.uint8)
            assert np.array_equal(cv2.imread(str(out / entry["mask"]), cv2.IMREAD_UNCHANGED), expected)
    code, _, stderr = run_cli("prepare", "cityscapes", "--src", root, "--out", tmp_path / "half", "val_fraction=0.5",
                              "seed=3")
    assert code == 0, stderr
    halves = yaml.safe_load((tmp_path / "half" / "dataset.yaml").read_text())["splits"]
    assert {split: len(entries) for split, entries in halves.items()} == {"train": 5, "val": 5}
    # prepare cityscapes takes val_fraction= (prepare folder's --val-fraction is not its option), not with --split train
    for args, text in ((["val_fraction=1"], "segcli: error: val_fraction=1.0 must be in [0, 1)"),
                       (["--split", "train", "val_fraction=0.3"], "segcli: error: val_fraction=0.3: --split train keeps")):
        code, _, stderr = run_cli("prepare", "cityscapes", "--src", root, "--out", tmp_path / "f", *args)
        assert code == 2 and stderr.strip().splitlines()[-1].startswith(text), stderr
    # testing/ has no labels: named, not an empty split
    code, _, stderr = run_cli("prepare", "cityscapes", "--src", root, "--out", tmp_path / "t", "--split", "test")
    assert code == 3 and "has no split 'test'" in stderr and "segcli predict" in stderr, stderr
    # the wrong prepare command names this one
    code, _, stderr = run_cli("prepare", "voc", "--src", root, "--out", tmp_path / "v")
    assert code == 3 and f"segcli prepare cityscapes --src {root}" in stderr, stderr


def _mapillary(root, rng):
    labels = [{"name": "construction--flat--road", "readable": "Road", "color": [128, 64, 128], "evaluate": True},
              {"name": "nature--sky", "readable": "Sky", "color": [70, 130, 180], "evaluate": True},
              {"name": "object--vehicle--car", "readable": "Car", "color": [0, 0, 142], "evaluate": True},
              {"name": "void--unlabeled", "readable": "Unlabeled", "color": [0, 0, 0], "evaluate": False}]
    root.mkdir(parents=True)
    (root / "config_v1.2.json").write_text(json.dumps({"labels": labels, "version": "1.2"}))
    truth = {}
    for split, count in (("training", 4), ("validation", 2)):
        for i in range(count):
            stem = f"{split[0]}Ab{i}_xYz"
            write_image(root / split / "images" / f"{stem}.jpg", random_image(rng, 24, 32))
            truth[stem] = blocks(rng, 24, 32, [0, 1, 2, 3]).astype(np.uint8)
            colours = np.asarray([label["color"] for label in labels], np.uint8)[truth[stem]]
            write_image(root / split / "v1.2" / "labels" / f"{stem}.png", colours)  # RGB colour labels
    return truth


def test_mapillary_config_json_is_a_palette_and_one_folder_names_the_image_and_label_folders(tmp_path, rng, run_cli):
    """Mapillary Vistas' config_v1.2.json ({"labels": [{"name", "readable", "color"}, …]}): --palette printed the whole
    JSON as a line it could not read, and --images DIR --masks DIR failed on every pair without naming the folders
    (its labels lie a level deeper, in training/v1.2/labels/). The readable names become the classes, void--unlabeled
    the ignore colour, and the error names the two folders."""
    root = tmp_path / "mapillary"
    truth = _mapillary(root, rng)
    config = root / "config_v1.2.json"
    code, _, stderr = run_cli("prepare", "folder", "--images", root, "--masks", root, "--palette", config,
                              "--out", tmp_path / "one")
    assert code == 2 and (f"give --images {root / 'training' / 'images'} --masks "
                          f"{root / 'training' / 'v1.2' / 'labels'}") in stderr, stderr
    out = tmp_path / "out"
    code, _, stderr = run_cli("prepare", "folder", "--images", root / "training" / "images", "--masks",
                              root / "training" / "v1.2" / "labels", "--palette", config, "--val-fraction", "0.25",
                              "--out", out)
    assert code == 0, stderr
    card = yaml.safe_load((out / "dataset.yaml").read_text())
    assert card["classes"] == ["Road", "Sky", "Car"] and card["palette"][2] == [0, 0, 142]
    for entries in card["splits"].values():
        for entry in entries:
            stem = entry["mask"].rsplit("/", 1)[1][:-4]
            expected = np.where(truth[stem] == 3, 255, truth[stem]).astype(np.uint8)  # Unlabeled → ignore
            assert np.array_equal(cv2.imread(str(out / entry["mask"]), cv2.IMREAD_UNCHANGED), expected)
    code, _, stderr = run_cli("prepare", "folder", "--images", root / "training" / "images", "--masks",
                              root / "training" / "v1.2" / "labels", "--classes", config, "--out", tmp_path / "c")
    assert code == 2 and f"give it as --palette {config}" in stderr, stderr


def test_mapillary_palette_json_without_colours_is_one_line(tmp_path, rng, run_cli):
    """A JSON palette whose labels lack a colour is named in one line, not printed whole."""
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"labels": [{"name": "road", "color": [1, 2, 3]}, {"name": "sky"}] * 40}))
    write_image(tmp_path / "i" / "x.jpg", random_image(rng, 16, 16))
    write_palette_png(tmp_path / "m" / "x.png", np.zeros((16, 16), np.uint8), [[1, 2, 3]])
    code, _, stderr = run_cli("prepare", "folder", "--images", tmp_path / "i", "--masks", tmp_path / "m",
                              "--palette", path, "--out", tmp_path / "out")
    assert code == 2 and "label 2" in stderr and "\"color\" of three values" in stderr, stderr
    assert len(stderr.strip().splitlines()) == 1 and len(stderr) < 400, stderr


def test_bdd100k_and_drive_given_as_one_folder_name_the_folders_to_give(tmp_path, rng, run_cli):
    """BDD100K (images/10k/{train,val,test} + labels/sem_seg/{masks,colormaps}/{train,val}) and DRIVE
    ({training,test}/{images,1st_manual,mask}) given as --images DIR --masks DIR: the error said a file 'lies in two
    of them' / 'in neither' without naming the folders. It now names them: for BDD100K the folders above the split
    folders (grey masks/, not the colour colormaps/), with --keep-going for the unlabelled test/."""
    bdd = tmp_path / "bdd100k"
    for split, count in (("train", 4), ("val", 2), ("test", 2)):
        for i in range(count):
            write_image(bdd / "images" / "10k" / split / f"{split}{i}-12cd.jpg", random_image(rng, 24, 32))
            if split != "test":
                write_grey(bdd / "labels" / "sem_seg" / "masks" / split / f"{split}{i}-12cd.png",
                           blocks(rng, 24, 32, [0, 1, 2, 255]).astype(np.uint8))
                write_image(bdd / "labels" / "sem_seg" / "colormaps" / split / f"{split}{i}-12cd.png",
                            random_image(rng, 24, 32))
    code, _, stderr = run_cli("prepare", "folder", "--images", bdd, "--masks", bdd, "--out", tmp_path / "b1")
    command = f"--images {bdd / 'images' / '10k'} --masks {bdd / 'labels' / 'sem_seg' / 'masks'} --keep-going"
    assert code == 2 and f"give {command}, as test/ hold(s) no masks" in stderr, stderr
    code, _, stderr = run_cli("prepare", "folder", *command.split()[:5], "--out", tmp_path / "b2")
    assert code == 0 and "3 classes, train 4, val 2" in stderr, stderr

    drive = tmp_path / "DRIVE"
    for part, numbers in (("training", range(21, 25)), ("test", range(1, 3))):
        for i in numbers:
            write_image(drive / part / "images" / f"{i:02d}_{part}.png", random_image(rng, 24, 24))
            write_grey(drive / part / "1st_manual" / f"{i:02d}_manual1.png", blocks(rng, 24, 24, [0, 1]).astype(np.uint8))
            write_grey(drive / part / "mask" / f"{i:02d}_{part}_mask.png", np.full((24, 24), 1, np.uint8))
    code, _, stderr = run_cli("prepare", "folder", "--images", drive, "--masks", drive, "--out", tmp_path / "d1")
    assert code == 2 and (f"give --images {drive / 'training' / 'images'} --masks {drive / 'training' / '1st_manual'} "
                          "--image-suffix _training --mask-suffix _manual1") in stderr, stderr
    assert f"--masks {drive / 'training' / 'mask'} --mask-suffix _mask" in stderr  # the field-of-view masks, named too


def test_split_folders_inside_the_image_folder_are_not_named_as_its_images(tmp_path, rng, run_cli):
    """fp/{train,val}/*.jpg beside fp/labels/{train,val}/*.png given as one folder: the hint said --images fp
    --masks fp/labels, whose images would include the masks (6 lint errors). It names one pair of folders instead."""
    root = tmp_path / "fp"
    for split, count in (("train", 4), ("val", 2)):
        for i in range(count):
            write_image(root / split / f"{split}{i}.jpg", random_image(rng, 24, 32))
            write_grey(root / "labels" / split / f"{split}{i}.png", blocks(rng, 24, 32, [0, 1]).astype(np.uint8))
    code, _, stderr = run_cli("prepare", "folder", "--images", root, "--masks", root, "--out", tmp_path / "o")
    assert code == 2 and f"--images {root} " not in stderr, stderr
    assert f"give --images {root / 'train'} --masks {root / 'labels' / 'train'}" in stderr, stderr
