"""The `--worst` panels stay readable whatever the image size: headers apart, small images scaled up, huge ones down."""

from __future__ import annotations

import numpy as np
import pytest

from helpers_eval import _runs, panel_boxes

PALETTE = [[0, 0, 0], [200, 0, 0], [0, 200, 0]]
NAMES = ["background", "a rather long class name for a header", "x"]


def _panel(h: int, w: int, title: str = "seq/0001: mIoU 12.34"):
    from segcli.evaluation.figures import worst_panel

    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    target, pred = (rng.integers(0, 3, (h, w)).astype(np.uint8) for _ in range(2))
    return worst_panel(image, target, pred, PALETTE, 255, NAMES, [0.5, 0.1, 0.3], title)


def _header_groups(panel: np.ndarray, top: int) -> list[tuple[int, int]]:
    """Column spans of the header labels (the text line just above the pictures); ink closer than 12 px (the spaces
    between words) is one label."""
    band = (panel[:top] != 255).any(axis=(1, 2))
    first, last = _runs(band)[-1]  # the last text line above the pictures: the headers
    groups = []
    for left, right in _runs((panel[first:last] != 255).any(axis=(0, 2))):
        if groups and left - groups[-1][1] < 12:
            groups[-1] = (groups[-1][0], right)
        else:
            groups.append((left, right))
    return groups


@pytest.mark.parametrize("h, w", [(50, 50), (2, 4), (400, 20), (36, 48), (20, 300)])
def test_worst_panel_headers_stand_apart_over_their_pictures(h, w):
    """On images ~50 px wide the four headers were drawn over each other ('ground truthprediction...') and the
    pictures were stamps; a tall, narrow image did the same."""
    panel = _panel(h, w)
    boxes = panel_boxes(panel)
    assert len(boxes) == 4
    groups = _header_groups(panel, boxes[0][0])
    assert len(groups) == 4, groups  # four separate headers
    for (left, right), (_, _, p_left, p_right) in zip(groups, boxes):
        assert left < p_right and right > p_left  # each over its own picture
    for top, bottom, left, right in boxes:
        assert min(bottom - top, right - left) >= min(160, 800 // max(h, w) * min(h, w))  # scaled up (whole factors)
        assert (bottom - top) * w == pytest.approx((right - left) * h, rel=0.05)  # aspect ratio kept


@pytest.mark.parametrize("h, w", [(3000, 4000), (6000, 500)])
def test_worst_panel_of_a_huge_image_is_scaled_down(h, w):
    """A 4000-px wide image made a 16,012 x 3,068 panel (tens of MB as PNG per worst image)."""
    panel = _panel(h, w)
    assert panel.shape[0] <= 1000 and panel.shape[1] <= 3300
    top, bottom, left, right = panel_boxes(panel)[0]
    assert max(bottom - top, right - left) == 800


def test_worst_panel_wraps_a_long_title_and_legend_inside_the_figure():
    """Text runs past no edge: the title (a long nested image key) and the legend are wrapped to the figure's width."""
    panel = _panel(50, 50, "some/deeply/nested/folder/" * 4 + "with_a_rather_long_image_file_name_0000123456789: mIoU 1.00")
    top, bottom, _, _ = panel_boxes(panel)[0]
    text = np.concatenate([panel[:top], panel[bottom:]])
    assert (text[:, -3:] == 255).all()  # no text drawn up to the right edge, nothing cut there
    assert (panel[-3:] == 255).all()
    assert len(_runs((panel[:top] != 255).any(axis=(1, 2)))) >= 3  # the title took two lines, then the headers


def test_confusion_image_of_thousands_of_classes_stays_a_reasonable_size():
    """3,000 classes at 8 px per cell made a 24,000 x 24,000 confusion.png (170 MB, 40 s to draw and encode)."""
    from segcli.evaluation.figures import confusion_image

    c = 3000
    matrix = np.eye(c, dtype=np.int64) * 10
    matrix[:, 0] += 1
    image = confusion_image(matrix, [f"class {i}" for i in range(c)])
    assert max(image.shape[:2]) <= 2200
    assert len(np.unique(image.reshape(-1, 3), axis=0)) > 3  # a heat map, not blank or all grid lines
