"""Everything eval accumulates over a split, one (prediction, ground truth) pair at a time.

Per split: the (C, C) confusion matrix, boundary-IoU intersection/union counts, and per-class image
support. Per image: IoU of each class (for per_image.csv) and their mean. The K images with the
lowest mean IoU keep their predictions for the `--worst` figures. Several processes each
accumulate a shard and `reduce()` sums the counts and gathers the rows (segcli.evaluation.distributed).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

import numpy as np
import torch

from segcli.evaluation.boundary import boundary_counts
from segcli.metrics import ConfusionMatrix, compute_metrics


@dataclass
class ImageScore:
    """One image's result: IoU per class (None where the class is absent from both maps) and their mean."""

    index: int  # position in the split
    key: str  # relative stem, e.g. "seq1/0001"
    iou: list[float | None]
    miou: float | None


@dataclass(order=True)
class _Worst:
    neg_miou: float
    index: int
    key: str = field(compare=False)
    pred: np.ndarray = field(compare=False, repr=False)


def image_iou(matrix: np.ndarray) -> list[float | None]:
    """Per-class IoU of one image's (C, C) matrix; None where the class has no gt and no predicted pixel."""
    tp = np.diag(matrix)
    union = matrix.sum(0) + matrix.sum(1) - tp
    return [float(t / u) if u > 0 else None for t, u in zip(tp, union)]


class EvalAccumulator:
    """Accumulates one split. `add(index, key, pred, target)` with (H, W) integer class-id arrays."""

    def __init__(self, num_classes: int, ignore_index: int, boundary_ratio: float | None = 0.02, worst: int = 0,
                 keep_images: bool = True):
        self.num_classes = int(num_classes)
        self.ignore_index = int(ignore_index)
        self.boundary_ratio = boundary_ratio
        self.cm = ConfusionMatrix(self.num_classes, self.ignore_index)
        self.boundary = np.zeros((self.num_classes, 2), np.int64)
        self.support = np.zeros(self.num_classes, np.int64)
        self.images: list[ImageScore] = []
        self.keep_images = keep_images
        self.worst_k = int(worst)
        self._worst: list[_Worst] = []  # max-heap on mIoU (via negation) of the K lowest

    def add(self, index: int, key: str, pred: np.ndarray, target: np.ndarray) -> ImageScore:
        """Score one image. Raises LabelRangeError (target) / ValueError (pred) for ids outside the classes."""
        m = self.cm.update_image(torch.from_numpy(np.ascontiguousarray(pred)), torch.from_numpy(np.ascontiguousarray(target)))
        m = m.numpy()
        self.support += m.sum(1) > 0
        if self.boundary_ratio is not None:
            self.boundary += boundary_counts(pred, target, self.num_classes, self.ignore_index, self.boundary_ratio)
        iou = image_iou(m)
        defined = [v for v in iou if v is not None]
        score = ImageScore(index, key, iou, float(np.mean(defined)) if defined else None)
        if self.keep_images:
            self.images.append(score)
        if self.worst_k > 0 and score.miou is not None:
            item = _Worst(-score.miou, -index, key, pred.copy())
            if len(self._worst) < self.worst_k:
                heapq.heappush(self._worst, item)
            elif item > self._worst[0]:
                heapq.heapreplace(self._worst, item)
        return score

    def worst(self) -> list[tuple[str, int, float, np.ndarray]]:
        """(key, index, mIoU, prediction) of the lowest-mIoU images, worst first (ties: split order)."""
        return [(w.key, -w.index, -w.neg_miou, w.pred) for w in sorted(self._worst, reverse=True)]

    def metrics(self, class_names: list[str]) -> dict:
        """compute_metrics over the split, with image support and (when measured) boundary IoU."""
        return compute_metrics(self.cm.matrix, class_names, image_support=self.support,
                               boundary=self.boundary if self.boundary_ratio is not None else None)

    def reduce(self) -> None:
        """Combine the shards of all processes (no-op in a single process); every rank ends with the totals."""
        from segcli.evaluation import distributed

        if not distributed.active():
            return
        matrix = distributed.sum_tensor(self.cm.matrix)
        self.cm.reset()
        self.cm.merge(matrix)
        self.boundary = distributed.sum_tensor(torch.from_numpy(self.boundary)).numpy()
        self.support = distributed.sum_tensor(torch.from_numpy(self.support)).numpy()
        self.images = sorted((s for part in distributed.gather(self.images) for s in part), key=lambda s: s.index)
        merged = [w for part in distributed.gather(self._worst) for w in part]
        self._worst = sorted(merged, reverse=True)[: self.worst_k] if self.worst_k else []
        self._worst = sorted(self._worst)
