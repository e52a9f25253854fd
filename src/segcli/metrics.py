"""Segmentation metrics: one confusion matrix, one set of definitions.

`ConfusionMatrix` accumulates a (C, C) int64 matrix (rows = ground truth, cols =
prediction) with a single vectorised `torch.bincount` per update, on whatever
device the inputs live on. `compute_metrics` turns a matrix into IoU / Acc /
Dice / precision per class plus mIoU, mAcc, mDice, aAcc and fwIoU (float64;
a rate whose denominator is zero is None and is left out of every mean), and,
when given, image support and boundary IoU (mBIoU) per class.
Training validation, `eval` and reports all use these functions.
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import torch

from segcli.errors import DataError

_WIDEN = (torch.bool, torch.uint16, torch.uint32, torch.uint64)


class LabelRangeError(DataError, ValueError):
    """A mask holds a value that is neither a class id in [0, C) nor ignore_index."""


def _bad_values(x: torch.Tensor, keep: torch.Tensor, num_classes: int) -> list[int]:
    """Sorted distinct values of x[keep] outside [0, num_classes) (at most 10)."""
    x = x[keep]
    return torch.unique(x[(x < 0) | (x >= num_classes)]).tolist()[:10]


def _int_tensor(x, name: str) -> torch.Tensor:
    x = torch.as_tensor(x)
    if x.is_floating_point() or x.is_complex():
        raise TypeError(f"{name} must be an integer tensor of class ids, got {x.dtype}")
    # bool and the "limited support" unsigned types (e.g. 16-bit PNG masks) lack aminmax
    return x.to(torch.int64) if x.dtype in _WIDEN else x


@contextmanager
def _single_thread(device: torch.device):
    """Count on one CPU thread: these passes are memory-bound, and with more intra-op threads than free
    cores (a busy CI machine) every parallel op waits a scheduler time slice for its slowest thread."""
    threads = torch.get_num_threads()
    if device.type != "cpu" or threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


_DENSE_BINS = 1 << 18  # largest (target, pred) value table counted directly (2 MiB of int64)


def _index_dtype(t: torch.Tensor, needed: int, ignore_index: int) -> torch.dtype:
    """The narrowest of int16/int32/int64 that holds 0..needed, ignore_index and every value of `t`
    without wrapping (narrow indices cut memory traffic; uint8 → int16 is also the fastest cast)."""
    for dtype in (torch.int16, torch.int32):
        info = torch.iinfo(dtype)
        if needed > info.max or not info.min <= ignore_index <= info.max:
            continue
        if torch.iinfo(t.dtype).bits < info.bits or t.dtype == dtype:
            return dtype
        lo, hi = torch.aminmax(t)
        if lo >= info.min and hi <= info.max:
            return dtype
    return torch.int64


class ConfusionMatrix:
    """Accumulates a (C, C) int64 confusion matrix: rows = ground truth, cols = prediction.

    The matrix lives on `device` (default CPU); counting runs on the inputs' device
    and only the (C, C) result is moved.
    """

    def __init__(self, num_classes: int, ignore_index: int = 255, device=None):
        if int(num_classes) < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = int(num_classes)
        self.ignore_index = int(ignore_index)
        self._mat = torch.zeros((self.num_classes,) * 2, dtype=torch.int64, device=device)

    def _count(self, pred, target) -> torch.Tensor:
        """(C, C) int64 counts for one batch, on the matrix's device."""
        pred, target = _int_tensor(pred, "pred"), _int_tensor(target, "target")
        if pred.shape != target.shape:
            raise ValueError(f"pred shape {tuple(pred.shape)} != target {tuple(target.shape)}")
        t = target.reshape(-1)
        p = pred.reshape(-1).to(t.device)
        if t.numel() == 0:
            return torch.zeros_like(self._mat)
        with _single_thread(t.device):
            return self._count_flat(p, t)

    def _count_flat(self, p: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """(P,) pred and target → (C, C) counts: one bincount over all (target, pred) value pairs when
        their ranges are small (the usual uint8 masks), else the masking path for any range."""
        c = self.num_classes
        tlo, thi, plo, phi = torch.stack([*torch.aminmax(t), *torch.aminmax(p)]).tolist()
        rows, cols = max(thi + 1, c), max(phi + 1, c)
        if min(tlo, plo) >= 0 and rows * cols <= _DENSE_BINS:
            return self._count_dense(p, t, rows, cols)
        return self._count_masked(p, t)

    def _count_dense(self, p: torch.Tensor, t: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
        """Count every (target, pred) pair in a (rows, cols) table with one bincount, then check and crop it:
        rows >= C other than ignore_index are bad labels; columns >= C in kept rows are bad predictions."""
        c, ignore = self.num_classes, self.ignore_index
        idx = t.to(torch.int16 if rows * cols <= torch.iinfo(torch.int16).max else torch.int32, copy=True)
        torch.add(p.to(idx.dtype), idx, alpha=cols, out=idx)  # idx = cols * t + p
        table = torch.bincount(idx, minlength=rows * cols).view(rows, cols)
        if 0 <= ignore < rows:
            table[ignore] = 0
        bad = (torch.nonzero(table[c:].sum(1)).flatten() + c).tolist()
        if bad:
            raise LabelRangeError(
                f"target contains values {bad[:10]} outside the class ids 0..{c - 1} "
                f"(num_classes={c}, ignore_index={ignore}); fix masks or config")
        bad = (torch.nonzero(table[:c, c:].sum(0)).flatten() + c).tolist()
        if bad:
            raise ValueError(f"pred contains class ids {bad[:10]} outside 0..{c - 1}")
        return table[:c, :c].to(self._mat.device, torch.int64)

    def _count_masked(self, p: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Any value range: ignored pixels are masked into a spare bin after range checks."""
        c = self.num_classes
        wide = _index_dtype(t, c * c + 1, self.ignore_index)
        idx = t.to(wide, copy=True)  # (P,) our own buffer, modified in place below
        ign = idx == self.ignore_index  # compare after the cast: -1 must not match uint8 255
        idx.masked_fill_(ign, 0)
        lo, hi = torch.aminmax(idx)
        if lo < 0 or hi >= c:
            bad = _bad_values(t.to(torch.int64), ~ign, c)
            raise LabelRangeError(
                f"target contains values {bad} outside the class ids 0..{c - 1} "
                f"(num_classes={c}, ignore_index={self.ignore_index}); fix masks or config")
        plo, phi = torch.aminmax(p)
        if plo < 0 or phi >= c:  # out-of-range predictions only matter at non-ignored pixels
            bad = _bad_values(p.to(torch.int64), ~ign, c)
            if bad:
                raise ValueError(f"pred contains class ids {bad} outside 0..{c - 1}")
            p = p.masked_fill(ign, 0)
        torch.add(p.to(wide), idx, alpha=c, out=idx)  # idx = C*t + p
        idx.masked_fill_(ign, c * c)  # ignored pixels go to a spare bin that is dropped
        counts = torch.bincount(idx, minlength=c * c + 1)[: c * c]
        return counts.view(c, c).to(self._mat.device, torch.int64)

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch. pred, target: integer tensors (any int dtype incl. uint8) of the
        same shape, e.g. (N, H, W) or (H, W). Pixels with target == ignore_index count
        nowhere. Raises LabelRangeError (a ValueError) for target values outside [0, C)
        and ValueError for pred values outside [0, C), naming the bad values."""
        self.update_image(pred, target)

    def update_image(self, pred, target) -> torch.Tensor:
        """Like `update`, and also return this input's own (C, C) int64 matrix."""
        m = self._count(pred, target)
        self._mat += m
        return m

    @property
    def matrix(self) -> torch.Tensor:
        """A copy of the accumulated (C, C) int64 matrix."""
        return self._mat.clone()

    def merge(self, other_matrix) -> None:
        """Add a (C, C) matrix (e.g. from another worker or after all_reduce)."""
        other = torch.as_tensor(other_matrix)
        if other.shape != self._mat.shape:
            raise ValueError(f"cannot merge {tuple(other.shape)} into {tuple(self._mat.shape)}")
        self._mat += other.to(self._mat.device, torch.int64)

    def reset(self) -> None:
        self._mat.zero_()


def reduce_matrix(matrix: torch.Tensor) -> torch.Tensor:
    """SUM-all_reduce a copy of `matrix` across ranks when torch.distributed is
    initialized (moving it to CUDA and back for NCCL); otherwise return it unchanged."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return matrix
    out = matrix.clone()
    if dist.get_backend() == "nccl" and out.device.type != "cuda":
        out = out.to(torch.device("cuda", torch.cuda.current_device()))
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out.to(matrix.device)


def _rate(num: np.ndarray, den: np.ndarray) -> list[float | None]:
    return [float(n / d) if d > 0 else None for n, d in zip(num, den)]


def _mean(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return float(np.mean(vals)) if vals else None


def _vector(values, c: int, name: str) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    v = np.asarray(values).astype(np.int64)
    if v.shape[0] != c or (v < 0).any():
        raise ValueError(f"{name} needs {c} rows of counts >= 0, got shape {v.shape}")
    return v


def compute_metrics(matrix, class_names: list[str] | None = None, image_support=None, boundary=None) -> dict:
    """Metrics from a (C, C) confusion matrix (torch tensor on any device, numpy array
    or nested list; rows = ground truth). Returns {"mIoU", "mAcc", "mDice", "aAcc",
    "fwIoU", "classes": [{"id", "name", "iou", "acc", "dice", "precision",
    "gt_pixels", "pred_pixels"}]}; rates are floats in [0, 1] or None, counts ints.

    image_support: optional (C,) counts of images whose ground truth holds each class → "images" per class.
    boundary: optional (C, 2) [intersection, union] pixel counts of the boundary bands
    (segcli.evaluation.boundary) → "biou" per class (None when the union is 0) and "mBIoU".
    """
    if isinstance(matrix, torch.Tensor):
        matrix = matrix.detach().cpu().numpy()
    mi = np.asarray(matrix).astype(np.int64)
    if mi.ndim != 2 or mi.shape[0] != mi.shape[1] or (mi < 0).any():
        raise ValueError(f"need a square (C, C) matrix of counts >= 0, got shape {mi.shape}")
    m = mi.astype(np.float64)
    c = m.shape[0]
    names = [str(i) for i in range(c)] if class_names is None else list(class_names)
    if len(names) != c:
        raise ValueError(f"{len(names)} class names for a {c}-class confusion matrix")
    tp, gt, pr = np.diag(m), m.sum(axis=1), m.sum(axis=0)  # float64
    fp, fn, gt_n, pr_n = pr - tp, gt - tp, mi.sum(axis=1), mi.sum(axis=0)
    iou, acc = _rate(tp, tp + fp + fn), _rate(tp, gt)
    dice, prec = _rate(2 * tp, 2 * tp + fp + fn), _rate(tp, pr)
    total = float(m.sum())
    fw = float(sum(g / total * v for g, v in zip(gt, iou) if v is not None)) if total else None
    classes = [{"id": i, "name": names[i], "iou": iou[i], "acc": acc[i], "dice": dice[i],
                "precision": prec[i], "gt_pixels": int(gt_n[i]), "pred_pixels": int(pr_n[i])}
               for i in range(c)]
    out = {"mIoU": _mean(iou), "mAcc": _mean(acc), "mDice": _mean(dice),
           "aAcc": float(tp.sum() / total) if total else None, "fwIoU": fw, "classes": classes}
    if image_support is not None:
        support = _vector(image_support, c, "image_support")
        for row, n in zip(classes, support):
            row["images"] = int(n)
    if boundary is not None:
        counts = _vector(boundary, c, "boundary")
        biou = _rate(counts[:, 0].astype(np.float64), counts[:, 1].astype(np.float64))
        for row, v in zip(classes, biou):
            row["biou"] = v
        out["mBIoU"] = _mean(biou)
    return out


def format_value(v: float | None, digits: int = 2) -> str:
    """A rate in [0, 1] as a percent string ("63.21"), or "—" for None/NaN."""
    if v is None or v != v:
        return "—"
    return f"{100.0 * v:.{digits}f}"
