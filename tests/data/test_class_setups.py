"""Unusual class tables through prepare: duplicate names in a palette file; binary masks stored oddly."""

from __future__ import annotations

import numpy as np
import pytest

from helpers_data import random_image, write_grey, write_image


def test_palette_with_a_class_name_listed_twice_is_refused_by_line(tmp_path, rng, run_cli):
    # a card with two classes named 'road' made --compare match one row twice (a model against itself showed
    # +25.9 points), predict --jsonl's fractions/pixels by name kept only one of them, class:road gates the first
    (tmp_path / "palette.txt").write_text("road 1 2 3\nroad 4 5 6\ncar 7 8 9\n")
    mask = np.zeros((8, 8, 3), np.uint8)
    mask[:4], mask[4:] = [1, 2, 3], [4, 5, 6]
    write_image(tmp_path / "images" / "x.png", random_image(rng, 8, 8))
    write_image(tmp_path / "masks" / "x.png", mask)
    code, out, err = run_cli("prepare", "folder", "--images", tmp_path / "images", "--masks", tmp_path / "masks",
                             "--out", tmp_path / "out", "--palette", tmp_path / "palette.txt", "--val-fraction", "0")
    assert code == 2 and out == "" and not (tmp_path / "out").exists()
    assert err.strip() == (f"segcli: error: {tmp_path / 'palette.txt'}:2: class name 'road' is also on line 1; "
                           "give each class its own name")


def test_class_frequency_chart_leaves_no_blank_column_for_a_name_cut_to_40_characters():
    from segcli.data.chart import class_frequency_chart

    pixels = {"train": [5, 10], "val": [3, 0]}
    assert class_frequency_chart(["a", "x" * 100], pixels).shape == class_frequency_chart(["a", "x" * 40], pixels).shape


def _binary_pairs(tmp_path, rng, mask_of):
    """Four image/mask pairs; each mask, a white (255) disc on black, is stored as `mask_of(mask)` returns it."""
    import cv2

    for i in range(4):
        mask = np.zeros((48, 64), np.uint8)
        cv2.circle(mask, (20 + 6 * i, 24), 9, 255, -1)
        write_image(tmp_path / "images" / f"m{i}.png", random_image(rng, 48, 64))
        write_grey(tmp_path / "masks" / f"m{i}.png", mask_of(mask))
    return ["prepare", "folder", "--images", tmp_path / "images", "--masks", tmp_path / "masks", "--val-fraction", "0"]


def _once_jpeg(mask):
    """A 0/255 mask saved as JPEG once and converted back to PNG: its edges hold values such as 1..5 and 250..254."""
    import cv2

    return cv2.imdecode(cv2.imencode(".jpg", mask, [cv2.IMWRITE_JPEG_QUALITY, 90])[1], cv2.IMREAD_UNCHANGED)


def _kinds(path):
    import json

    return {f["kind"] for f in json.loads(path.read_text())["findings"]}


@pytest.mark.parametrize("extra", [[], ["--remap", "255=1"], ["--classes", "background,defect"]])
def test_binary_masks_blurred_by_jpeg_once_are_refused_by_name(tmp_path, rng, run_cli, extra):
    # PNG masks converted from JPEG ones became a dataset of 255 classes (every blurred edge value a class of its
    # own, the foreground's core 255 'not labelled'), exit 0 with two class_missing warnings
    base = _binary_pairs(tmp_path, rng, _once_jpeg)
    code, out, err = run_cli(*base, "--out", tmp_path / "out", *extra)
    assert code == 1 and not (tmp_path / "out" / "dataset.yaml").exists()
    assert "look like a two-valued mask blurred by JPEG compression" in err and "--mask-threshold 128" in err
    assert "lossy_mask" in _kinds(tmp_path / "out" / "lint.json")
    assert "out_of_range" not in _kinds(tmp_path / "out" / "lint.json")
    code, _, err = run_cli(*base, "--out", tmp_path / "fixed", *extra, "--mask-threshold", "128")  # the fix it names
    assert code == 0, err


def test_class_ids_beside_the_ignore_value_are_not_taken_for_jpeg_blur(tmp_path, rng, run_cli):
    from helpers_data import blocks

    base = _binary_pairs(tmp_path, rng, lambda mask: blocks(rng, 48, 64, [0, 1, 2, 3, 255]).astype(np.uint8))
    code, out, err = run_cli(*base, "--out", tmp_path / "out")
    assert code == 0, err
    assert __import__("yaml").safe_load((tmp_path / "out" / "dataset.yaml").read_text())["classes"] == [
        "class_0", "class_1", "class_2", "class_3"]


def test_values_named_by_remap_are_not_taken_for_jpeg_blur(tmp_path, rng, run_cli):
    # ids 0..2 with 254 and 255 at the top end: with --remap 254=255 (the user says what 254 is) they stopped as
    # 'values 0..2 and 254..255 look like a two-valued mask blurred by JPEG compression'
    from helpers_data import blocks

    base = _binary_pairs(tmp_path, rng, lambda mask: blocks(rng, 48, 64, [0, 1, 2, 254, 255]).astype(np.uint8))
    code, out, err = run_cli(*base, "--out", tmp_path / "out", "--remap", "254=255")
    assert code == 0, err
    assert __import__("yaml").safe_load((tmp_path / "out" / "dataset.yaml").read_text())["classes"] == [
        "class_0", "class_1", "class_2"]



def test_a_stray_value_outside_the_named_classes_is_out_of_range_not_jpeg_blur(tmp_path, rng, run_cli):
    # ids 0..2 named by --classes, with a stray 254 beside the ignore value 255: 'blurred by JPEG' and a hint to
    # name the classes (which they were) instead of the value that is out of range
    from helpers_data import blocks

    base = _binary_pairs(tmp_path, rng, lambda mask: blocks(rng, 48, 64, [0, 1, 2, 254, 255]).astype(np.uint8))
    code, out, err = run_cli(*base, "--out", tmp_path / "out", "--classes", "a,b,c")
    assert code == 1 and "out_of_range" in err and "254" in err, err
    assert "lossy_mask" not in err

def test_16_bit_binary_masks_get_the_remap_that_keeps_two_classes(tmp_path, rng, run_cli):
    # 0/65535 masks (a 16-bit export of a binary mask) stopped with "pick an --ignore-index above 65535", which
    # cannot be given (ignore values are 0..65535)
    base = _binary_pairs(tmp_path, rng, lambda mask: mask.astype(np.uint16) * 257)
    code, out, err = run_cli(*base, "--out", tmp_path / "out")
    assert code == 1 and "values are only 0 and 65535" in err and "--remap 65535=1" in err
    assert "binary_mask" in _kinds(tmp_path / "out" / "lint.json")
    code, out, err = run_cli(*base, "--out", tmp_path / "ok", "--remap", "65535=1", "--classes", "background,defect")
    assert code == 0, err
    card = __import__("yaml").safe_load((tmp_path / "ok" / "dataset.yaml").read_text())
    assert card["classes"] == ["background", "defect"] and card["stats"]["splits"]["train"]["class_pixels"][1] > 0


def test_one_channel_black_and_white_masks_map_through_a_black_and_white_palette(tmp_path, rng, run_cli):
    # the same masks stored with three identical channels were read through the palette; stored as one channel
    # (as most tools write a binary mask) they stopped with binary_mask and its "--remap 255=1", the palette unread
    (tmp_path / "bw.txt").write_text("background 0 0 0\ndefect 255 255 255\n")
    base = _binary_pairs(tmp_path, rng, lambda mask: mask)
    code, out, err = run_cli(*base, "--out", tmp_path / "out", "--palette", tmp_path / "bw.txt")
    assert code == 0, err
    card = __import__("yaml").safe_load((tmp_path / "out" / "dataset.yaml").read_text())
    pixels = card["stats"]["splits"]["train"]["class_pixels"]
    assert card["classes"] == ["background", "defect"] and pixels[1] > 0 and sum(pixels) == 4 * 48 * 64


def test_one_bit_masks_are_read_as_the_0_and_1_they_store(tmp_path, rng, run_cli):
    """A bool array saved by PIL is a 1-bit PNG holding 0/1; OpenCV scaled it to 0/255, so prepare stopped with
    binary_mask ('pass --remap 255=1'), while eval --predictions reads the same files as 0/1."""
    from PIL import Image

    base = _binary_pairs(tmp_path, rng, lambda mask: mask)
    for path in (tmp_path / "masks").glob("*.png"):
        grey = np.asarray(Image.open(path))
        Image.fromarray(grey > 0).save(path)
    code, _, err = run_cli(*base, "--classes", "background,defect", "--out", tmp_path / "out")
    assert code == 0, err
    card = __import__("yaml").safe_load((tmp_path / "out" / "dataset.yaml").read_text())
    assert card["stats"]["class_pixels"]["train"][1] > 0  # the discs are the foreground class
