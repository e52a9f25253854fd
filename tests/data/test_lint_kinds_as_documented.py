"""Lint findings of the kind data/README.md's table names: a palette's ignore colour is declared (no binary_mask),
masks holding one of the named classes are single_class, and a card pair in two splits is split_overlap."""

from __future__ import annotations

import numpy as np
import yaml
from helpers_data import random_image, read_lint, write_grey, write_image


def _colour_pairs(tmp_path, rng, count=5):
    """Colour masks: black background, a white 'void' band on top, and a road square on all but the first."""
    images, masks = tmp_path / "images", tmp_path / "masks"
    for i in range(count):
        write_image(images / f"x{i}.png", random_image(rng, 24, 32))
        rgb = np.zeros((24, 32, 3), np.uint8)
        rgb[:6] = 255
        if i:
            rgb[10:20, 8:20] = (128, 64, 128)
        write_image(masks / f"x{i}.png", rgb)
    palette = tmp_path / "palette.txt"
    palette.write_text("bg 0 0 0\nroad 128 64 128\nvoid 255 255 255\n")
    return images, masks, palette


def test_a_colour_mask_of_background_and_the_palettes_void_colour_is_not_a_binary_mask(tmp_path, rng, run_cli):
    """Before: x0 (black and the void colour only) failed as 'values are only 0 and 255: looks like a binary mask',
    whose first fix, --remap 255=1, silently made every void pixel 'road'."""
    images, masks, palette = _colour_pairs(tmp_path, rng)
    out = tmp_path / "out"
    code, _, stderr = run_cli("prepare", "folder", "--images", images, "--masks", masks, "--palette", palette,
                              "--out", out, "--val-fraction", "0.2", "--seed", "0")
    assert code == 0, stderr
    card = yaml.safe_load((out / "dataset.yaml").read_text())
    assert card["classes"] == ["bg", "road"] and card["ignore_index"] == 255
    entry = next(e for entries in card["splits"].values() for e in entries if "x0" in e["mask"])
    import cv2

    ids = cv2.imread(str(out / entry["mask"]), cv2.IMREAD_UNCHANGED)
    assert (ids[:6] == 255).all() and (ids[6:] == 0).all()  # void stays 'not labelled', the rest background


def test_masks_holding_only_one_of_the_named_classes_are_single_class(tmp_path, rng, run_cli):
    """Before: exit 0 with a class_missing warning, a card on which any model scores 100%."""
    for i in range(6):
        write_image(tmp_path / "images" / f"i{i}.png", random_image(rng, 16, 24))
        ids = np.zeros((16, 24), np.uint8)
        ids[:3] = 255  # some pixels not labelled: still one class
        write_grey(tmp_path / "masks" / f"i{i}.png", ids)
    out = tmp_path / "out"
    code, _, stderr = run_cli("prepare", "folder", "--images", tmp_path / "images", "--masks", tmp_path / "masks",
                              "--classes", "bg,car", "--ignore-index", "255", "--out", out, "--val-fraction", "0.2")
    assert code == 1, stderr
    assert not (out / "dataset.yaml").exists()
    findings = [f for f in read_lint(out / "lint.json")["findings"] if f["severity"] == "error"]
    assert [f["kind"] for f in findings] == ["single_class"]
    assert "'bg' (of 2 classes named)" in findings[0]["detail"]


def test_two_classes_each_in_a_different_split_are_not_single_class(tmp_path, rng, run_cli):
    for i in range(6):
        write_image(tmp_path / "images" / f"i{i}.png", random_image(rng, 16, 24))
        write_grey(tmp_path / "masks" / f"i{i}.png", np.full((16, 24), 1 if i == 5 else 0, np.uint8))
    (tmp_path / "val.txt").write_text("i5\n")
    (tmp_path / "train.txt").write_text("".join(f"i{i}\n" for i in range(5)))
    out = tmp_path / "out"
    code, _, stderr = run_cli("prepare", "folder", "--images", tmp_path / "images", "--masks", tmp_path / "masks",
                              "--classes", "bg,car", "--out", out, "--split-file", f"train={tmp_path / 'train.txt'}",
                              "--split-file", f"val={tmp_path / 'val.txt'}")
    kinds = {f["kind"] for f in read_lint(out / "lint.json")["findings"]}
    assert "single_class" not in kinds, stderr
    assert code == 0, stderr


def test_a_card_pair_listed_in_two_splits_is_split_overlap_and_twice_in_one_duplicate_stem(tmp_path, rng, run_cli):
    """Before: both were duplicate_stem, where the table gives split_overlap for 'a pair is listed in two splits'."""
    for i in range(6):
        write_image(tmp_path / "images" / f"i{i}.png", random_image(rng, 16, 24))
        ids = np.zeros((16, 24), np.uint8)
        ids[4:10, 4:12] = 1
        write_grey(tmp_path / "masks" / f"i{i}.png", ids)
    out = tmp_path / "out"
    code, _, stderr = run_cli("prepare", "folder", "--images", tmp_path / "images", "--masks", tmp_path / "masks",
                              "--classes", "bg,car", "--out", out, "--val-fraction", "0.34")
    assert code == 0, stderr
    card_path = out / "dataset.yaml"
    card = yaml.safe_load(card_path.read_text())
    for split, kind in (("val", "split_overlap"), ("train", "duplicate_stem")):
        changed = {**card, "splits": {**card["splits"], split: card["splits"][split] + [card["splits"]["train"][0]]}}
        card_path.write_text(yaml.safe_dump(changed, sort_keys=False))
        code, _, stderr = run_cli("prepare", "lint", out)
        assert code == 1, stderr
        findings = read_lint(out / "lint.json")["findings"] if (out / "lint.json").exists() else []
        errors = [f for f in findings if f["severity"] == "error"]
        assert [f["kind"] for f in errors] == [kind], (split, errors)
        assert card["splits"]["train"][0]["image"].split("/")[-1] in errors[0]["file"]
