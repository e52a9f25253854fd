"""The card's statistics against a NumPy computation on the written files; the class-frequency chart of many classes."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from helpers_data import random_image, write_grey, write_image


def _card(out: Path) -> dict:
    return yaml.safe_load((out / "dataset.yaml").read_text())


def test_a_dominant_class_beside_tiny_ones_keeps_a_positive_weight(tmp_path, rng, run_cli):
    """Background beside defects of one pixel per 200×200 image weighs ~2.5e-5: rounded to 4 decimals it was 0.0,
    which `loss.class_weights=auto` turned into a class the loss ignores."""
    for i in range(4):
        write_image(tmp_path / "images" / f"p{i}.png", random_image(rng, 200, 200))
        mask = np.zeros((200, 200), np.uint8)
        mask[5, 5], mask[10, 10] = 1, 2
        write_grey(tmp_path / "masks" / f"p{i}.png", mask)
    out = tmp_path / "out"
    assert run_cli("prepare", "folder", "--images", tmp_path / "images", "--masks", tmp_path / "masks", "--out", out,
                   "--classes", "background,defect,scratch", "--val-fraction", "0.25")[0] == 0
    weights = _card(out)["stats"]["class_weights"]
    freq = np.array([39998, 1, 1]) / 40000  # each class is in every image: its share of their labelled pixels
    assert all(w > 0 for w in weights), weights
    np.testing.assert_allclose(weights, np.median(freq) / freq, rtol=1e-4)

    from segcli.models.losses import resolve_class_weights

    assert resolve_class_weights("auto", 3, str(out))[0] > 0


def test_card_stats_match_numpy_on_the_written_files(tmp_path, rng, run_cli):
    """Per split: class pixels and images, mean/std of the written images; train's median-frequency weights."""
    for i in range(6):
        write_image(tmp_path / "images" / f"p{i}.png", random_image(rng, 20, 30))
        write_grey(tmp_path / "masks" / f"p{i}.png", rng.choice([0, 1, 2, 255], (20, 30)).astype(np.uint8))
    out = tmp_path / "out"
    assert run_cli("prepare", "folder", "--images", tmp_path / "images", "--masks", tmp_path / "masks", "--out", out,
                   "--classes", "a,b,c,never", "--val-fraction", "0.34")[0] == 0
    card = _card(out)
    for split, entries in card["splits"].items():
        pixels, images, context, values = np.zeros(4), np.zeros(4), np.zeros(4), []
        for entry in entries:
            ids = cv2.imread(str(out / entry["mask"]), cv2.IMREAD_UNCHANGED)
            counts = np.bincount(ids.ravel(), minlength=256)[:4]
            pixels, images, context = pixels + counts, images + (counts > 0), context + (counts > 0) * (ids != 255).sum()
            values.append(cv2.imread(str(out / entry["image"]))[..., ::-1].reshape(-1, 3) / 255.0)
        stats = card["stats"]["splits"][split]
        assert stats["class_pixels"] == pixels.astype(int).tolist() and stats["class_images"] == images.astype(int).tolist()
        np.testing.assert_allclose(stats["mean"], np.concatenate(values).mean(0), atol=1e-5)
        np.testing.assert_allclose(stats["std"], np.concatenate(values).std(0), atol=1e-5)
        if split == "train":
            freq = pixels[:3] / context[:3]
            np.testing.assert_allclose(card["stats"]["class_weights"], [*(np.median(freq) / freq), 0.0], rtol=1e-4)
    text = (out / "dataset.yaml").read_text()  # a list written twice is written out twice, not as &id001 … *id001
    assert "&id" not in text and "*id" not in text


def test_the_chart_of_sparse_16_bit_ids_draws_the_present_classes(tmp_path, rng, run_cli):
    """Masks with ids 0, 1 and 3000 (no --classes) make a 3001-class table: the chart drew a row for each (72,000
    pixels tall; at 50,000 ids libpng refused it and prepare failed with exit 3 after a passing lint)."""
    for i in range(3):
        write_image(tmp_path / "images" / f"p{i}.png", random_image(rng, 20, 30))
        write_grey(tmp_path / "masks" / f"p{i}.png", rng.choice([0, 1, 3000], (20, 30)).astype(np.uint16))
    out = tmp_path / "out"
    code, _, stderr = run_cli("prepare", "folder", "--images", tmp_path / "images", "--masks", tmp_path / "masks",
                              "--out", out, "--ignore-index", "65535", "--val-fraction", "0.34")
    assert code == 0, stderr
    assert len(_card(out)["stats"]["splits"]["train"]["class_pixels"]) == 3001  # the card keeps every class
    chart = cv2.imread(str(out / "class_frequencies.png"))
    assert chart is not None and chart.shape[0] < 400, chart.shape  # three rows, not 3001


def test_the_chart_draws_at_most_max_rows():
    from segcli.data.chart import MAX_ROWS, class_frequency_chart

    classes = [f"c{i}" for i in range(MAX_ROWS + 50)]
    few = class_frequency_chart(classes[:MAX_ROWS], {"train": [1] * MAX_ROWS})
    many = class_frequency_chart(classes, {"train": [1] * len(classes), "val": [0] * len(classes)})
    assert many.shape[0] <= few.shape[0] + 9 * MAX_ROWS + 20  # MAX_ROWS rows of two bars, and the note
    assert class_frequency_chart(classes[:3], {"train": [5, 0, 1]}).shape[0] < 200  # few classes: unchanged


@pytest.mark.parametrize("n, fractions, message", [
    (1, ["--val-fraction", "0.2"], "--val-fraction: 1 pair(s) cannot fill train and 1 held-out split(s); add pairs, "
                                   "or give --val-fraction 0"),
    (2, ["--val-fraction", "0.2", "--test-fraction", "0.1"], "2 pair(s) cannot fill train and 2 held-out"),
])
def test_too_few_pairs_for_the_random_split_is_one_line_exit_2(tmp_path, rng, run_cli, n, fractions, message):
    """One pair with the default --val-fraction 0.2 was a lint failure, exit 1, 'split 'val' has no pair', which
    named neither the cause nor the fix (too few groups for --group already said so, exit 2)."""
    for i in range(n):
        write_image(tmp_path / "images" / f"p{i}.png", random_image(rng, 8, 8))
        write_grey(tmp_path / "masks" / f"p{i}.png", np.array([[0, 1], [1, 0]], np.uint8).repeat(4, 0).repeat(4, 1))
    base = ["prepare", "folder", "--images", tmp_path / "images", "--masks", tmp_path / "masks", "--classes", "a,b"]
    code, _, stderr = run_cli(*base, "--out", tmp_path / "out", *fractions)
    assert code == 2 and message in stderr and "Traceback" not in stderr
    assert not (tmp_path / "out").exists()
    assert run_cli(*base, "--out", tmp_path / "all", "--val-fraction", "0")[0] == 0  # the fix the message gives


def test_group_takes_the_capture_group_that_matched(tmp_path, rng, run_cli):
    """'^(seq[A-Z])_|^(other)' matches other1 through its second group: that was 'gives no group ... make it match
    every stem' (exit 2), though it does match."""
    for stem in ("seqA_1", "seqA_2", "seqB_1", "seqB_2", "other1", "other2"):
        write_image(tmp_path / "images" / f"{stem}.png", random_image(rng, 8, 8))
        write_grey(tmp_path / "masks" / f"{stem}.png", np.array([[0, 1], [1, 0]], np.uint8).repeat(4, 0).repeat(4, 1))
    out = tmp_path / "out"
    code, _, stderr = run_cli("prepare", "folder", "--images", tmp_path / "images", "--masks", tmp_path / "masks",
                              "--out", out, "--classes", "a,b", "--group", "^(seq[A-Z])_|^(other)", "--val-fraction", "0.3")
    assert code == 0, stderr
    groups = {Path(e["image"]).stem: e["group"] for entries in _card(out)["splits"].values() for e in entries}
    assert groups == {"seqA_1": "seqA", "seqA_2": "seqA", "seqB_1": "seqB", "seqB_2": "seqB", "other1": "other",
                      "other2": "other"}


def test_split_files_keep_names_with_spaces_and_hashes(tmp_path, rng, run_cli):
    """A split file line was cut at its first space or '#': 'IMG 0001' was read as 'IMG' (exit 1, 'lists IMG,
    which has no image/mask pair'). Comments (a line's start, or after a space) and 'image mask' path pairs (VOC's
    augmented lists) still read as before."""
    names = ["IMG 0001", "IMG 0002", "a#1", "plain"]
    for name in names:
        write_image(tmp_path / "images" / f"{name}.png", random_image(rng, 16, 16))
        write_grey(tmp_path / "masks" / f"{name}.png", rng.integers(0, 2, (16, 16)).astype(np.uint8))
    (tmp_path / "train.txt").write_text("# train frames\nIMG 0001\n  IMG 0002   # the second one\n\n"
                                        "a#1.png masks/a#1.png\n", encoding="utf-8")
    (tmp_path / "val.txt").write_text("./plain\n", encoding="utf-8")
    out = tmp_path / "out"
    code, _, err = run_cli("prepare", "folder", "--images", tmp_path / "images", "--masks", tmp_path / "masks",
                           "--out", out, "--classes", "a,b", "--split-file", f"train={tmp_path / 'train.txt'}",
                           "--split-file", f"val={tmp_path / 'val.txt'}")
    assert code == 0, err
    splits = _card(out)["splits"]
    assert sorted(Path(e["mask"]).stem for e in splits["train"]) == ["IMG 0001", "IMG 0002", "a#1"]
    assert [Path(e["mask"]).stem for e in splits["val"]] == ["plain"]
