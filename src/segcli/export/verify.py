"""Compare an exported model with the PyTorch model on real images, through the shared predictor."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Parity:
    images: int
    max_abs_logit_diff: float
    argmax_agreement: float  # fraction of pixels with the same predicted class

    def ok(self, max_abs_logit_diff: float, min_argmax_agreement: float) -> bool:
        return self.max_abs_logit_diff <= max_abs_logit_diff and self.argmax_agreement >= min_argmax_agreement


def compare(reference, candidate, images: list[np.ndarray]) -> Parity:
    """Run both Predictors image by image (any sizes) → worst logit difference and pixel agreement."""
    worst, same, total = 0.0, 0, 0
    for image in images:
        a = reference.logits([image]).cpu()
        b = candidate.logits([image]).cpu()
        worst = max(worst, float((a - b).abs().max()))
        same += int((a.argmax(1) == b.argmax(1)).sum())
        total += a.shape[0] * a.shape[2] * a.shape[3]
    return Parity(len(images), worst, same / max(total, 1))
