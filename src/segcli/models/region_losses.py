"""Soft Dice, Jaccard and Tversky losses (multiclass) from three per-class sums, not from one-hot tensors.

They compute what smp.losses.DiceLoss / JaccardLoss / TverskyLoss compute in multiclass mode (smp 0.6's formulas,
same keyword arguments; equal to 1e-12 in value and gradient, tests/train_surface/test_losses.py), 3.5–4× faster:
smp builds an int64 one-hot target of N·H·W·C values and a masked copy of the probabilities, and reduces
an L1 norm over them (fwd + bwd for a batch of 8×11×160×224, 2-core CPUs: 49 ms against 14 ms on an Intel Xeon,
55 ms against 14 ms on an AMD EPYC; the Dice term was 9% of a CamVid training step).

With p = softmax(logits) and only labelled pixels (target != ignore_index) counted, per class c:
    tp_c = Σ p_c over pixels of class c,  fp_c = Σ p_c − tp_c,  fn_c = (pixels of class c) − tp_c
    score_c = (tp_c + smooth) / max(tp_c + alpha·fp_c + beta·fn_c + smooth, eps)
    loss_c = 1 − score_c  (−log max(score_c, eps) with log_loss), 0 for a class absent from the batch's target
and the loss is the mean over classes (or `classes` only; weighted by `class_weights` when given), raised to gamma.
Dice: alpha = beta = 0.5; Jaccard: alpha = beta = 1.
"""

from __future__ import annotations

import torch
from torch import nn


class RegionLoss(nn.Module):
    """(N, C, H, W) float logits (probabilities with from_logits=False), (N, H, W) int64 ids → scalar loss."""

    def __init__(self, ignore_index: int | None = None, alpha: float = 0.5, beta: float = 0.5, gamma: float = 1.0,
                 classes: list[int] | None = None, log_loss: bool = False, from_logits: bool = True,
                 smooth: float = 0.0, eps: float = 1e-7, class_weights: list[float] | None = None):
        super().__init__()
        self.ignore_index = ignore_index
        self.alpha, self.beta, self.gamma = float(alpha), float(beta), float(gamma)
        self.log_loss, self.from_logits = bool(log_loss), bool(from_logits)
        self.smooth, self.eps = float(smooth), float(eps)
        # buffers (moved with the module, so no per-step copy to the device), not saved in checkpoints
        self.register_buffer("classes", None if classes is None else torch.as_tensor(classes, dtype=torch.long),
                             persistent=False)
        self.register_buffer("class_weights", None if class_weights is None else
                             torch.as_tensor(class_weights, dtype=torch.float32), persistent=False)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        num_classes = logits.shape[1]
        probs = logits.softmax(1) if self.from_logits else logits
        labelled = torch.ones_like(target, dtype=torch.bool) if self.ignore_index is None else target != self.ignore_index
        ids = torch.where(labelled, target, 0)
        weight = labelled.unsqueeze(1).to(probs.dtype)
        predicted = (probs * weight).sum((0, 2, 3))  # tp + fp
        true_class = probs.gather(1, ids.unsqueeze(1)) * weight  # each labelled pixel's probability of its class
        tp = probs.new_zeros(num_classes).index_add(0, ids.flatten(), true_class.flatten())
        # tp + fn: labelled pixels per class (index_add, not bincount of ids[labelled]: both of those wait on a GPU
        # for the device to report a size)
        present = probs.new_zeros(num_classes).index_add(0, ids.flatten(), weight.flatten())
        denominator = tp + self.alpha * (predicted - tp) + self.beta * (present - tp) + self.smooth
        score = (tp + self.smooth) / denominator.clamp_min(self.eps)
        loss = -torch.log(score.clamp_min(self.eps)) if self.log_loss else 1.0 - score
        loss = loss * (present > 0).to(loss.dtype)
        weights = self.class_weights
        if self.classes is not None:
            loss = loss[self.classes]
            weights = None if weights is None else weights[self.classes]
        mean = loss.mean() if weights is None else (loss * weights).sum() / weights.sum()
        if self.gamma == 1.0:
            return mean
        # mean ** gamma has an infinite slope at 0 for gamma < 1 (a batch without the classes scored: loss 0), which
        # made every gradient nan; the clamped branch has a finite one, and where() keeps the value 0 there
        return torch.where(mean > 0, mean.clamp_min(1e-12) ** self.gamma, mean * 0.0)


class DiceLoss(RegionLoss):
    """smp.losses.DiceLoss(mode='multiclass', ...) computed from per-class sums."""

    def __init__(self, ignore_index: int | None = None, classes: list[int] | None = None, log_loss: bool = False,
                 from_logits: bool = True, smooth: float = 0.0, eps: float = 1e-7,
                 class_weights: list[float] | None = None):
        super().__init__(ignore_index, 0.5, 0.5, 1.0, classes, log_loss, from_logits, smooth, eps, class_weights)


class JaccardLoss(RegionLoss):
    """smp.losses.JaccardLoss(mode='multiclass', ...) computed from per-class sums."""

    def __init__(self, ignore_index: int | None = None, classes: list[int] | None = None, log_loss: bool = False,
                 from_logits: bool = True, smooth: float = 0.0, eps: float = 1e-7,
                 class_weights: list[float] | None = None):
        super().__init__(ignore_index, 1.0, 1.0, 1.0, classes, log_loss, from_logits, smooth, eps, class_weights)


class TverskyLoss(RegionLoss):
    """smp.losses.TverskyLoss(mode='multiclass', ...) computed from per-class sums."""
