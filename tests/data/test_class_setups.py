"""Unusual class tables through prepare: duplicate names in a palette file."""

from __future__ import annotations

import numpy as np

from helpers_data import random_image, write_image


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
