"""Class names a figure cannot draw as they are: very long ones, and ones in a script OpenCV's font lacks."""

from __future__ import annotations

import numpy as np

from segcli.evaluation.figures import confusion_image
from segcli.inference.io import class_labels


def test_one_very_long_class_name_does_not_shrink_the_confusion_matrix_into_a_corner():
    matrix = np.diag([10, 20, 30, 40, 50])
    short = ["road", "car", "sky", "tree", "x" * 40]
    long = short[:4] + ["x" * 100]
    figure, reference = confusion_image(matrix, long), confusion_image(matrix, short)
    assert figure.shape[0] <= reference.shape[0] and figure.shape[1] <= reference.shape[1]  # 863 × 860 in full
    labels = class_labels(long)
    assert labels[:4] == short[:4] and len(labels[4]) <= 40 and "..." in labels[4]


def test_names_the_font_cannot_draw_stay_apart_in_figures():
    # drawn as they were, '道路' and '天空' were both '??': two rows of the confusion matrix with one label
    assert class_labels(["道路", "天空", "car"]) == ["0 ??", "1 ??", "2 car"]
    assert class_labels(["café", "naïve"]) == ["cafe", "naive"]  # accents dropped, nothing lost: no ids needed
    assert class_labels(["a" * 30 + "_left_front_cam", "a" * 30 + "_right_front_cam"])[0].startswith("0 ")


def test_overlay_legends_keep_names_the_font_cannot_draw_apart():
    """predict's overlay legend drew '道路' and '天空' both as '??': two classes of one colour read the same."""
    from segcli.inference.outputs import draw_legend

    def legend(class_id: int) -> np.ndarray:
        canvas = np.zeros((120, 160, 3), np.uint8)
        draw_legend(canvas, np.full((120, 160), class_id, np.uint8), ["道路", "天空"], [[255, 0, 0], [255, 0, 0]])
        return canvas

    assert not np.array_equal(legend(0), legend(1))
    assert class_labels(["道路", "天空"]) == ["0 ??", "1 ??"]
