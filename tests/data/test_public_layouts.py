"""`prepare folder` on public datasets' own layouts, as downloaded (tiny mocks of their folder and file naming and
mask values): LoveDA, Oxford-IIIT Pet, ISIC 2018, a Cityscapes-like export."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import yaml
from helpers_data import blocks, random_image, write_grey, write_image


def _card(out) -> dict:
    return yaml.safe_load((out / "dataset.yaml").read_text())


def test_loveda_images_png_beside_masks_png(tmp_path, rng, run_cli):
    """LoveDA's Train/{Urban,Rural}/images_png + masks_png, Val/ alike, an unlabelled Test/: the folder names were
    not paired, and the error asked for '--mask-suffix _mask', which pairs nothing. Train/ and Val/ are the splits,
    0 (no data) is ignore with --reduce-zero-label, and Test/ is named as unlabelled."""
    root, number, truth = tmp_path / "LoveDA", 0, {}
    for split in ("Train", "Val"):
        for domain in ("Urban", "Rural"):
            for _ in range(2):
                write_image(root / split / domain / "images_png" / f"{number}.png", random_image(rng, 32, 48))
                truth[f"{split}/{domain}/{number}"] = blocks(rng, 32, 48, list(range(8))).astype(np.uint8)
                write_grey(root / split / domain / "masks_png" / f"{number}.png", truth[f"{split}/{domain}/{number}"])
                number += 1
    write_image(root / "Test" / "Rural" / "images_png" / f"{number}.png", random_image(rng, 32, 48))
    names = "background,building,road,water,barren,forest,agriculture"
    args = ("prepare", "folder", "--images", root, "--masks", root, "--reduce-zero-label", "--classes", names)

    code, _, stderr = run_cli(*args, "--out", tmp_path / "failed")
    assert code == 1
    assert "Test/ holds no masks at all" in stderr and "--keep-going" in stderr

    out = tmp_path / "out"
    code, stdout, stderr = run_cli(*args, "--keep-going", "--out", out)
    assert code == 0, stderr
    assert stdout.strip() == str(out / "dataset.yaml")
    card = _card(out)
    assert card["classes"] == names.split(",") and card["ignore_index"] == 255
    stems = {split: sorted(entry["mask"].split("/", 2)[2][:-4] for entry in entries)
             for split, entries in card["splits"].items()}
    folder = {"train": "Train/", "val": "Val/"}  # the split folder is left out of the prepared paths
    assert stems == {split: sorted(s[len(top):] for s in truth if s.startswith(top)) for split, top in folder.items()}
    for split, listed in stems.items():
        for stem in listed:
            ids = cv2.imread(str(out / "masks" / split / f"{stem}.png"), cv2.IMREAD_UNCHANGED)
            source = truth[folder[split] + stem].astype(int)
            assert np.array_equal(ids, np.where(source == 0, 255, source - 1))


def test_split_lists_with_extra_columns_oxford_pet(tmp_path, rng, run_cli):
    """Oxford-IIIT Pet's annotations/trainval.txt lists 'Abyssinian_100 1 1 1' (name, class, species, breed): each
    line was taken whole as a name, so nothing was listed and train was empty."""
    root = tmp_path / "oxford-iiit-pet"
    names = [f"{breed}_{i}" for breed in ("Abyssinian", "american_bulldog") for i in (1, 2, 100)]
    for name in names:
        write_image(root / "images" / f"{name}.jpg", random_image(rng, 32, 48))
        write_grey(root / "annotations" / "trimaps" / f"{name}.png", blocks(rng, 32, 48, [1, 2, 3]).astype(np.uint8))
    (root / "annotations" / "trainval.txt").write_text("".join(f"{n} 1 1 1\n" for n in names[:4]))
    (root / "annotations" / "test.txt").write_text("".join(f"{n} 2 2 1\n" for n in names[4:]))
    out = tmp_path / "out"
    code, _, stderr = run_cli("prepare", "folder", "--images", root / "images", "--masks", root / "annotations" / "trimaps",
                              "--split-file", f"train={root / 'annotations' / 'trainval.txt'}",
                              "--split-file", f"test={root / 'annotations' / 'test.txt'}",
                              "--reduce-zero-label", "--remap", "3=255", "--classes", "pet,background", "--out", out)
    assert code == 0, stderr
    card = _card(out)
    assert {split: sorted(e["image"].rsplit("/", 1)[1][:-4] for e in entries)
            for split, entries in card["splits"].items()} == {"train": sorted(names[:4]), "test": sorted(names[4:])}


def test_images_and_masks_in_folders_not_paired_by_name_are_named(tmp_path, rng, run_cli):
    """ISIC 2018 (…_Training_Input/ISIC_x.jpg beside …_Training_GroundTruth/ISIC_x_segmentation.png) given as one
    folder: the error said '--mask-suffix _mask', which pairs nothing; it names the two folders and the suffix, and
    that command prepares."""
    root = tmp_path / "isic2018"
    for kind, ids in (("Training", range(4)), ("Validation", range(20, 22))):
        for i in ids:
            write_image(root / f"ISIC2018_Task1-2_{kind}_Input" / f"ISIC_{i:07d}.jpg", random_image(rng, 32, 48))
            write_grey(root / f"ISIC2018_Task1_{kind}_GroundTruth" / f"ISIC_{i:07d}_segmentation.png",
                       blocks(rng, 32, 48, [0, 255]).astype(np.uint8))
    code, stdout, stderr = run_cli("prepare", "folder", "--images", root, "--masks", root, "--out", tmp_path / "x")
    assert code == 2 and stdout == ""
    line = stderr.strip().splitlines()[-1]
    images, masks = root / "ISIC2018_Task1-2_Training_Input", root / "ISIC2018_Task1_Training_GroundTruth"
    assert f"--images {images} --masks {masks} --mask-suffix _segmentation" in line
    assert "--mask-suffix _mask" not in line and "Traceback" not in stderr
    out = tmp_path / "out"
    code, _, stderr = run_cli("prepare", "folder", "--images", images, "--masks", masks, "--mask-suffix", "_segmentation",
                              "--remap", "255=1", "--out", out)
    assert code == 0, stderr
    assert len(_card(out)["classes"]) == 2


def test_suffix_hint_prefers_label_ids_to_colour_masks(tmp_path, rng, run_cli):
    """A Cityscapes-like export (x_leftImg8bit.png; x_gtFine_labelIds.png beside x_gtFine_color.png): the hint chose
    the shorter '--mask-suffix _gtFine_color', RGB colours that then fail as ids."""
    for i in range(3):
        write_image(tmp_path / "leftImg8bit" / f"a_{i}_leftImg8bit.png", random_image(rng, 32, 48))
        write_grey(tmp_path / "gtFine" / f"a_{i}_gtFine_labelIds.png", blocks(rng, 32, 48, [0, 7, 8]).astype(np.uint8))
        write_image(tmp_path / "gtFine" / f"a_{i}_gtFine_color.png", random_image(rng, 32, 48))
    code, _, stderr = run_cli("prepare", "folder", "--images", tmp_path / "leftImg8bit", "--masks", tmp_path / "gtFine",
                              "--out", tmp_path / "out")
    assert code == 1
    assert "--image-suffix _leftImg8bit --mask-suffix _gtFine_labelIds" in stderr.strip().splitlines()[-1]


def test_jpeg_binary_masks_read_through_mask_threshold(tmp_path, rng, run_cli):
    """Kvasir-SEG ships its 0/255 masks only as JPEG: prepare said 'export masks as PNG', which its users cannot do.
    --mask-threshold 128 reads them as value >= 128 → 1, else 0; the lossy_mask error names that option."""
    truth = {}
    (tmp_path / "masks").mkdir()
    for i in range(6):
        write_image(tmp_path / "images" / f"k{i}.jpg", random_image(rng, 48, 64))
        truth[f"k{i}"] = blocks(rng, 48, 64, [0, 1], 8).astype(np.uint8)
        grey = cv2.cvtColor(truth[f"k{i}"] * np.uint8(255), cv2.COLOR_GRAY2BGR)  # saved as colour, as Kvasir's are
        assert cv2.imwrite(str(tmp_path / "masks" / f"k{i}.jpg"), grey, [cv2.IMWRITE_JPEG_QUALITY, 75])
    args = ["prepare", "folder", "--images", tmp_path / "images", "--masks", tmp_path / "masks", "--classes",
            "background,polyp", "--val-fraction", "0.5"]
    code, _, stderr = run_cli(*args, "--out", tmp_path / "o1")
    assert code == 1 and "pass --mask-threshold 128 to read value >= 128 as 1" in stderr, stderr
    code, _, stderr = run_cli(*args, "--out", tmp_path / "o2", "--mask-threshold", "128", "--strict")
    assert code == 0, stderr
    card = yaml.safe_load((tmp_path / "o2" / "dataset.yaml").read_text())
    for entry in card["splits"]["train"] + card["splits"]["val"]:
        stored = cv2.imread(str(tmp_path / "o2" / entry["mask"]), cv2.IMREAD_UNCHANGED)
        assert set(np.unique(stored)) <= {0, 1}
        assert (stored == truth[Path(entry["mask"]).stem]).mean() > 0.99
    code, _, stderr = run_cli(*args, "--out", tmp_path / "o3", "--mask-threshold", "0")
    assert code == 2 and "--mask-threshold 0: give a whole number 1..65535" in stderr, stderr


def test_masks_numbered_from_one_get_the_reduce_zero_label_hint(tmp_path, rng, run_cli):
    """Oxford-IIIT Pet's trimaps hold 1, 2, 3: without --classes the card had 4 classes, class_0 never present, and
    the class_missing warning said nothing of why."""
    for i in range(4):
        write_image(tmp_path / "images" / f"p{i}.jpg", random_image(rng, 24, 32))
        write_grey(tmp_path / "trimaps" / f"p{i}.png", blocks(rng, 24, 32, [1, 2, 3], 8).astype(np.uint8))
    code, _, stderr = run_cli("prepare", "folder", "--images", tmp_path / "images", "--masks", tmp_path / "trimaps",
                              "--out", tmp_path / "out", "--val-fraction", "0.5")
    assert code == 0, stderr
    findings = yaml.safe_load((tmp_path / "out" / "lint.json").read_text())["findings"]
    assert {f["kind"] for f in findings} == {"class_missing"}
    assert all("no mask uses id 0: if the classes are 1..N, --reduce-zero-label" in f["detail"] for f in findings)
