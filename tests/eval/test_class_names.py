"""Class names a figure cannot draw as they are: very long ones, and ones in a script OpenCV's font lacks."""

from __future__ import annotations

import numpy as np

from segcli.evaluation.figures import axis_labels, confusion_image


def test_one_very_long_class_name_does_not_shrink_the_confusion_matrix_into_a_corner():
    matrix = np.diag([10, 20, 30, 40, 50])
    short = ["road", "car", "sky", "tree", "x" * 40]
    long = short[:4] + ["x" * 100]
    figure, reference = confusion_image(matrix, long), confusion_image(matrix, short)
    assert figure.shape[0] <= reference.shape[0] and figure.shape[1] <= reference.shape[1]  # 863 × 860 in full
    labels = axis_labels(long)
    assert labels[:4] == short[:4] and len(labels[4]) <= 40 and "..." in labels[4]


def test_names_the_font_cannot_draw_stay_apart_in_figures():
    # drawn as they were, '道路' and '天空' were both '??': two rows of the confusion matrix with one label
    assert axis_labels(["道路", "天空", "car"]) == ["0 ??", "1 ??", "2 car"]
    assert axis_labels(["café", "naïve"]) == ["cafe", "naive"]  # accents dropped, nothing lost: no ids needed
    assert axis_labels(["a" * 30 + "_left_front_cam", "a" * 30 + "_right_front_cam"])[0].startswith("0 ")
