"""Tests for segcli.metrics: hand-computed numbers, edge cases, a numpy reference."""

from fractions import Fraction as F

import numpy as np
import pytest
import torch

from segcli.errors import DataError
from segcli.metrics import (
    ConfusionMatrix,
    LabelRangeError,
    compute_metrics,
    format_value,
    reduce_matrix,
)

IG = 255

# 3 classes, 3x4 image, two ignore pixels.
TARGET = [[0, 0, 0, 1],
          [1, 1, 2, 2],
          [2, IG, IG, 0]]
PRED = [[0, 0, 1, 1],
        [1, 2, 2, 2],
        [0, 1, 0, 1]]
# (t, p) pairs, row by row, skipping ignore:
#   (0,0) (0,0) (0,1) (1,1) | (1,1) (1,2) (2,2) (2,2) | (2,0) -- -- (0,1)
# rows = ground truth, cols = prediction
EXPECTED_M = [[2, 2, 0],
              [0, 2, 1],
              [1, 0, 2]]


def t(x, dtype=torch.int64):
    return torch.tensor(x, dtype=dtype)


def approx(x):
    return pytest.approx(float(x), abs=1e-12)


def matrix_of(pred, target, c, ignore=IG):
    cm = ConfusionMatrix(c, ignore_index=ignore)
    cm.update(pred, target)
    return cm.matrix


def test_crafted_example_by_hand():
    m = matrix_of(t(PRED), t(TARGET), 3)
    assert m.dtype == torch.int64 and m.tolist() == EXPECTED_M
    r = compute_metrics(m, ["road", "car", "sky"])
    # GT (row sums) = 4, 3, 3; PRED (col sums) = 3, 4, 3; TP = 2, 2, 2; total 10
    # FP = PRED - TP = 1, 2, 1; FN = GT - TP = 2, 1, 1
    iou = [F(2, 2 + 1 + 2), F(2, 2 + 2 + 1), F(2, 2 + 1 + 1)]  # 2/5, 2/5, 1/2
    acc = [F(2, 4), F(2, 3), F(2, 3)]
    dice = [F(4, 4 + 1 + 2), F(4, 4 + 2 + 1), F(4, 4 + 1 + 1)]  # 4/7, 4/7, 2/3
    prec = [F(2, 3), F(2, 4), F(2, 3)]
    for c, row in enumerate(r["classes"]):
        assert row["id"] == c and row["name"] == ["road", "car", "sky"][c]
        assert row["iou"] == approx(iou[c]) and row["acc"] == approx(acc[c])
        assert row["dice"] == approx(dice[c]) and row["precision"] == approx(prec[c])
        assert row["gt_pixels"] == [4, 3, 3][c] and row["pred_pixels"] == [3, 4, 3][c]
        assert type(row["gt_pixels"]) is int and type(row["iou"]) is float
    assert r["mIoU"] == approx(F(13, 30))  # (2/5 + 2/5 + 1/2) / 3
    assert r["mAcc"] == approx(F(11, 18))  # (1/2 + 2/3 + 2/3) / 3
    assert r["mDice"] == approx(F(38, 63))  # (4/7 + 4/7 + 2/3) / 3
    assert r["aAcc"] == approx(F(6, 10))  # trace 6 / total 10
    # fwIoU = 4/10 * 2/5 + 3/10 * 2/5 + 3/10 * 1/2 = 0.16 + 0.12 + 0.15
    assert r["fwIoU"] == approx(F(43, 100))
    for k in ("mIoU", "mAcc", "mDice", "aAcc", "fwIoU"):
        assert type(r[k]) is float


def test_absent_class_is_none_and_excluded():
    r = compute_metrics(matrix_of(t(PRED), t(TARGET), 4))  # class 3 never appears
    absent = r["classes"][3]
    assert absent["name"] == "3" and absent["gt_pixels"] == 0 and absent["pred_pixels"] == 0
    assert all(absent[k] is None for k in ("iou", "acc", "dice", "precision"))
    assert r["mIoU"] == approx(F(13, 30)) and r["mAcc"] == approx(F(11, 18))
    assert r["mDice"] == approx(F(38, 63)) and r["fwIoU"] == approx(F(43, 100))


def test_predicted_only_class():
    pred = t(PRED)
    pred[0, 0] = 3  # gt 0 predicted as class 3, which has no ground truth
    m = matrix_of(pred, t(TARGET), 4)
    assert m[0].tolist() == [1, 2, 0, 1] and m[3].tolist() == [0, 0, 0, 0]
    r = compute_metrics(m)
    c3 = r["classes"][3]
    assert c3["iou"] == 0.0 and c3["dice"] == 0.0 and c3["precision"] == 0.0
    assert c3["acc"] is None and c3["gt_pixels"] == 0 and c3["pred_pixels"] == 1
    # class 0: TP 1, FP 1, FN 3 -> IoU 1/5; mIoU over 4 classes, mAcc over 3
    assert r["classes"][0]["iou"] == approx(F(1, 5))
    assert r["mIoU"] == approx((F(1, 5) + F(2, 5) + F(1, 2) + 0) / 4)
    assert r["mAcc"] == approx((F(1, 4) + F(2, 3) + F(2, 3)) / 3)
    assert r["mDice"] == approx((F(2, 2 + 1 + 3) + F(4, 7) + F(2, 3) + 0) / 4)
    assert r["aAcc"] == approx(F(5, 10))


def test_accumulation_equals_one_update_on_concatenation():
    g = torch.Generator().manual_seed(0)
    targets = [torch.randint(0, 3, (2, 5, 6), generator=g) for _ in range(3)]
    targets[1][0, :2] = 4  # class 4 only present in the second batch
    targets[2][1, 0] = IG
    preds = [torch.randint(0, 5, (2, 5, 6), generator=g) for _ in range(3)]
    cm = ConfusionMatrix(5)
    per_image = [cm.update_image(p, tg) for p, tg in zip(preds, targets)]
    whole = matrix_of(torch.cat(preds), torch.cat(targets), 5)
    assert torch.equal(cm.matrix, whole)
    assert torch.equal(sum(per_image), whole)
    assert per_image[1][4].sum() == 12 and per_image[0][4].sum() == 0
    assert compute_metrics(cm.matrix) == compute_metrics(whole)


def test_ignore_pixels_count_nowhere():
    base = matrix_of(t(PRED), t(TARGET), 3)
    target = t(TARGET)
    for fill in (0, 1, 2, 200):  # 200 is out of range but only at ignored pixels
        pred = t(PRED)
        pred[target == IG] = fill
        assert torch.equal(matrix_of(pred, target, 3), base)
    assert base.sum() == 10  # 12 pixels - 2 ignored


def test_ignore_index_inside_class_range():
    m = matrix_of(t([0, 1, 2, 1]), t([0, 1, 2, 2]), 3, ignore=2)
    assert m.tolist() == [[1, 0, 0], [0, 1, 0], [0, 0, 0]]


def test_target_out_of_range_raises_naming_value():
    target = t(TARGET)
    target[0, 0] = 7
    with pytest.raises(ValueError, match=r"\b7\b") as exc:
        matrix_of(t(PRED), target, 3)
    assert isinstance(exc.value, DataError) and isinstance(exc.value, LabelRangeError)
    target[0, 1] = -1
    with pytest.raises(ValueError, match=r"\[-1, 7\]"):
        matrix_of(t(PRED), target, 3)


def test_target_out_of_range_not_hidden_by_casts():
    with pytest.raises(ValueError, match=str(2**32 + 1)):  # would wrap to 1 in int32
        matrix_of(t([0, 1]), t([0, 2**32 + 1]), 3)
    # ignore_index=-1 must not match uint8 255
    with pytest.raises(ValueError, match="255"):
        matrix_of(t([0, 1], torch.uint8), t([0, 255], torch.uint8), 3, ignore=-1)


def test_pred_out_of_range_raises():
    pred = t(PRED)
    pred[1, 1] = 3
    with pytest.raises(ValueError, match="3"):
        matrix_of(pred, t(TARGET), 3)
    pred[1, 1] = -2
    with pytest.raises(ValueError, match="-2"):
        matrix_of(pred, t(TARGET), 3)


def test_bad_inputs():
    cm = ConfusionMatrix(3)
    with pytest.raises(TypeError):
        cm.update(torch.zeros(4), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="shape"):
        cm.update(torch.zeros(4, dtype=torch.long), torch.zeros(5, dtype=torch.long))
    cm.update(torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long))
    assert cm.matrix.sum() == 0


def naive(pred, target, c, ignore):
    keep = target != ignore
    idx = c * target[keep].astype(np.int64) + pred[keep]
    return np.bincount(idx, minlength=c * c).reshape(c, c)


@pytest.mark.parametrize("shape", [(17,), (9, 13), (3, 21, 19), (2, 3, 8, 8)])
@pytest.mark.parametrize("c", [2, 3, 7, 12, 20])
def test_matches_numpy_reference(shape, c):
    rng = np.random.default_rng(c * 100 + len(shape))
    target = rng.integers(0, c, shape)
    target[rng.random(shape) < 0.2] = IG
    pred = rng.integers(0, c, shape)
    cm = ConfusionMatrix(c)
    cm.update(torch.from_numpy(pred), torch.from_numpy(target))
    cm.update(torch.from_numpy(pred), torch.from_numpy(target))
    np.testing.assert_array_equal(cm.matrix.numpy(), 2 * naive(pred, target, c, IG))


@pytest.mark.parametrize("pdt", [torch.uint8, torch.int16, torch.int32, torch.int64])
@pytest.mark.parametrize("tdt", [torch.uint8, torch.int32, torch.int64])
def test_dtypes(pdt, tdt):
    m = matrix_of(t(PRED, pdt), t(TARGET, tdt), 3)
    assert m.dtype == torch.int64 and m.tolist() == EXPECTED_M


def test_numpy_and_bool_inputs():
    for dt in (np.uint8, np.uint16, np.int32):  # 16-bit PNG masks load as uint16
        m = matrix_of(np.array(PRED, np.uint8), np.array(TARGET, dt), 3)
        assert m.tolist() == EXPECTED_M
    m = matrix_of(t([True, False, True]), t([True, True, False]), 2)
    assert m.tolist() == [[0, 1], [1, 1]]


def test_merge_reset_and_matrix_is_a_copy():
    cm = ConfusionMatrix(3)
    cm.update(t(PRED), t(TARGET))
    cm.matrix.zero_()
    assert cm.matrix.tolist() == EXPECTED_M
    cm.merge(np.array(EXPECTED_M))
    assert cm.matrix.tolist() == (2 * torch.tensor(EXPECTED_M)).tolist()
    with pytest.raises(ValueError):
        cm.merge(torch.zeros(2, 2))
    cm.reset()
    assert cm.matrix.sum() == 0


def test_compute_metrics_inputs_and_empty():
    assert compute_metrics(np.array(EXPECTED_M)) == compute_metrics(torch.tensor(EXPECTED_M))
    empty = compute_metrics(torch.zeros(3, 3, dtype=torch.int64))
    assert all(empty[k] is None for k in ("mIoU", "mAcc", "mDice", "aAcc", "fwIoU"))
    assert all(v is None for row in empty["classes"] for k, v in row.items()
               if k in ("iou", "acc", "dice", "precision"))
    with pytest.raises(ValueError):
        compute_metrics(np.zeros((2, 3)))
    with pytest.raises(ValueError):
        compute_metrics(np.eye(3), ["a", "b"])
    perfect = compute_metrics(np.diag([5, 3]))
    assert perfect["mIoU"] == 1.0 and perfect["fwIoU"] == 1.0 and perfect["aAcc"] == 1.0


def test_format_value():
    assert format_value(0.63214) == "63.21"
    assert format_value(1.0, digits=1) == "100.0"
    assert format_value(0.0) == "0.00"
    assert format_value(None) == "—" and format_value(float("nan")) == "—"


def test_reduce_matrix(tmp_path):
    import torch.distributed as dist

    m = torch.tensor(EXPECTED_M)
    assert reduce_matrix(m) is m  # not initialized: unchanged
    if not dist.is_available():
        pytest.skip("torch.distributed not available")
    store = f"file://{tmp_path}/store"
    dist.init_process_group("gloo", init_method=store, rank=0, world_size=1)
    try:
        out = reduce_matrix(m)
    finally:
        dist.destroy_process_group()
    assert out is not m and torch.equal(out, m)


@pytest.mark.parametrize("ignore, tdt", [(255, np.uint8), (65535, np.uint16), (-1, np.int64), (1000, np.int32)])
def test_dense_and_masked_paths_agree(ignore, tdt):
    """Small value ranges are counted in one (target, pred) table, large ones by masking: same matrix,
    same errors (out-of-range ids at ignored pixels are fine, elsewhere they are named)."""
    rng = np.random.default_rng(abs(ignore))
    c = 6
    target = rng.integers(0, c, (3, 20, 30)).astype(tdt)
    target[rng.random(target.shape) < 0.2] = ignore
    pred = rng.integers(0, c, target.shape).astype(np.uint8)
    pred[target == ignore] = 200  # out of range, but only where the ground truth is ignored
    cm = ConfusionMatrix(c, ignore_index=ignore)
    cm.update(torch.from_numpy(pred), torch.from_numpy(target))
    expected = naive(np.where(target == ignore, 0, pred), target.astype(np.int64), c, ignore)
    np.testing.assert_array_equal(cm.matrix.numpy(), expected)
    bad = target.copy()
    bad[0, 0, 0] = 9
    with pytest.raises(LabelRangeError, match=r"\[9\]"):
        cm.update(torch.from_numpy(pred), torch.from_numpy(bad))
    pred[0, 0, 0], target[0, 0, 0] = 7, 1
    with pytest.raises(ValueError, match=r"\[7\]"):
        cm.update(torch.from_numpy(pred), torch.from_numpy(target))
