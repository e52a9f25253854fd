"""Boundary IoU: the one-pass band equals the reference per-class `mask_to_boundary` (Cheng et al. 2021)."""

import cv2
import numpy as np
import pytest

from segcli.evaluation.accumulate import EvalAccumulator
from segcli.evaluation.boundary import boundary_band, boundary_counts, boundary_distance

IG = 255


def reference_boundary(mask: np.ndarray, d: int) -> np.ndarray:
    """The authors' mask_to_boundary with the dilation given in pixels (bool mask → bool band)."""
    h, w = mask.shape
    padded = cv2.copyMakeBorder(mask.astype(np.uint8), 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
    eroded = cv2.erode(padded, np.ones((3, 3), np.uint8), iterations=d)[1:h + 1, 1:w + 1]
    return (mask.astype(np.uint8) - eroded).astype(bool)


def reference_counts(pred, target, c, d):
    """Per class, the reference bands; ignored pixels belong to no class in either map."""
    valid = target != IG
    out = np.zeros((c, 2), np.int64)
    for k in range(c):
        g = reference_boundary(target == k, d) & valid
        p = reference_boundary((pred == k) & valid, d) & valid
        out[k] = [(g & p).sum(), (g | p).sum()]
    return out


def test_distance_is_two_percent_of_the_diagonal():
    assert boundary_distance(360, 480) == 12  # diagonal 600
    assert boundary_distance(4, 6) == 1  # never below one pixel
    assert boundary_distance(300, 400, ratio=0.05) == 25


@pytest.mark.parametrize("seed", range(4))
def test_band_and_counts_match_the_reference(seed):
    rng = np.random.default_rng(seed)
    c, h, w = 5, 37, 53
    # blocky label maps (so that there are interiors), some ignore
    target = cv2.resize(rng.integers(0, c, (6, 8)).astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST)
    target[rng.random((h, w)) < 0.05] = IG
    pred = cv2.resize(rng.integers(0, c, (5, 9)).astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST)
    for d in (1, 2, 3, 7):
        band = boundary_band(target, d)
        for k in range(c):
            assert np.array_equal(band & (target == k), reference_boundary(target == k, d))
        ratio = d / np.hypot(h, w)
        assert boundary_distance(h, w, ratio) == d
        assert np.array_equal(boundary_counts(pred, target, c, IG, ratio), reference_counts(pred, target, c, d))


def test_prediction_equal_where_labelled_scores_full_boundary_iou():
    """VOC-style ignore bands between objects: whatever a perfect prediction says inside them, boundary IoU is 1."""
    target = np.zeros((40, 60), np.uint8)
    target[10:30, 15:45] = 1
    ring = cv2.dilate((target == 1).astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    ring &= ~cv2.erode((target == 1).astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    target[ring] = IG
    for fill in (0, 1):
        pred = target.copy()
        pred[ring] = fill
        counts = boundary_counts(pred, target, 2, IG, 2 / np.hypot(40, 60))
        assert (counts[:, 0] == counts[:, 1]).all() and counts[:, 1].min() > 0


def test_hand_example():
    # 6x6, class 1 is a 4x4 square at rows/cols 1..4 in ground truth, shifted one column right in the prediction.
    target = np.zeros((6, 6), np.uint8)
    target[1:5, 1:5] = 1
    pred = np.zeros((6, 6), np.uint8)
    pred[1:5, 2:6] = 1
    ratio = 1 / np.hypot(6, 6)  # d = 1
    counts = boundary_counts(pred, target, 2, IG, ratio)
    # class 1, d=1: G_d = the 12-pixel ring of the GT square (cols 1..4); the predicted square touches the right
    # border, so P_d is all of it except its interior (rows 2..3, col 3..4) = 16 - 4 = 12 pixels.
    # G_d ∩ P_d: ring pixels of GT in cols 2..4 that are not P's interior: rows 1 and 4 cols 2..4 (6) + col 4 rows 2..3
    # is P-interior → excluded; so 6. Union = 12 + 12 - 6 = 18.
    assert counts[1].tolist() == [6, 18]
    # class 0: everything outside the squares is within 1 of a contour or the border.
    g0 = reference_boundary(target == 0, 1)
    p0 = reference_boundary(pred == 0, 1)
    assert counts[0].tolist() == [int((g0 & p0).sum()), int((g0 | p0).sum())]


def test_accumulator_sums_boundary_counts_over_images():
    rng = np.random.default_rng(1)
    acc = EvalAccumulator(3, IG, boundary_ratio=0.1)
    total = np.zeros((3, 2), np.int64)
    for i in range(3):
        t = rng.integers(0, 3, (20, 30)).astype(np.uint8)
        p = rng.integers(0, 3, (20, 30)).astype(np.uint8)
        acc.add(i, str(i), p, t)
        total += boundary_counts(p, t, 3, IG, 0.1)
    metrics = acc.metrics(["a", "b", "c"])
    for k in range(3):
        assert metrics["classes"][k]["biou"] == pytest.approx(total[k, 0] / total[k, 1])
    assert metrics["mBIoU"] == pytest.approx(np.mean(total[:, 0] / total[:, 1]))


@pytest.mark.parametrize("h, w", [(9, 1), (1, 9), (3, 5), (23, 31)])
def test_band_of_any_width_matches_the_reference_up_to_distances_past_the_image(h, w):
    """1-px wide images and d from 1 to beyond the image's sides (boundary.dilation_ratio up to 1)."""
    rng = np.random.default_rng(h * w)
    target = rng.integers(0, 3, (h, w)).astype(np.uint8)
    target[target.shape[0] // 2, target.shape[1] // 2] = 4  # a class present as one pixel
    for d in (1, 2, 3, 5, 11, 16, 40):
        band = boundary_band(target, d)
        for k in range(5):
            assert np.array_equal(band & (target == k), reference_boundary(target == k, d)), (d, k)

