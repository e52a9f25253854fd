"""Compare an exported model with the PyTorch model on real images, both through the shared Predictor."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from segcli.console import counted


@dataclass
class Parity:
    """How closely an exported model follows the torch model over `images` images.

    max_abs_logit_diff: worst |torch - exported| logit (None when the export returns ids).
    logit_scale: the largest |torch logit| (None with ids): float32 rounding grows with the logits' size, so the
        difference is judged relative to it (at least 1), not as an absolute number.
    argmax_agreement: fraction of pixels with the same class id.
    miou: mIoU of the exported ids scored against the torch ids as ground truth (segcli.metrics), over
        the classes torch predicts somewhere: a class only the export predicts, on a pixel or two, lowers
        the IoU of the class torch saw there instead of adding a 0 that would swing the mean.
    """

    images: int
    max_abs_logit_diff: float | None
    argmax_agreement: float
    miou: float
    logit_scale: float | None = None

    @property
    def relative_logit_diff(self) -> float | None:
        """max_abs_logit_diff / max(1, logit_scale)."""
        if self.max_abs_logit_diff is None:
            return None
        return self.max_abs_logit_diff / max(1.0, self.logit_scale or 0.0)

    def failures(self, max_rel_logit_diff: float, min_argmax_agreement: float, min_miou: float) -> list[str]:
        """The tolerances this parity is outside of, as short phrases (empty when it passes)."""
        failed = []
        relative = self.relative_logit_diff
        if relative is not None and not relative <= max_rel_logit_diff:
            shown = _beyond(relative, max_rel_logit_diff, "e")
            failed.append(f"max |logit diff| {self.max_abs_logit_diff:.2e}, {shown} of the largest |logit| "
                          f"{max(1.0, self.logit_scale or 0.0):.3g}, > {max_rel_logit_diff:g}")
        if not self.argmax_agreement >= min_argmax_agreement:
            failed.append(f"argmax agreement {_beyond(self.argmax_agreement, min_argmax_agreement, 'f')} < "
                          f"{min_argmax_agreement:g}")
        if not self.miou >= min_miou:
            failed.append(f"mIoU vs torch {_beyond(self.miou, min_miou, 'f')} < {min_miou:g}")
        return failed

    def summary(self) -> str:
        diff = "n/a (ids output)" if self.max_abs_logit_diff is None else \
            f"{self.max_abs_logit_diff:.2e} ({self.relative_logit_diff:.1e} of the largest |logit|)"
        return (f"max |logit diff| {diff}, argmax agreement {self.argmax_agreement * 100:.4f}%, "
                f"mIoU vs torch {self.miou * 100:.4f}% over {counted(self.images, 'image')}")


class CandidateFailed(Exception):
    """The exported model raised on a verification image (e.g. a size of the tracing example baked into a Reshape)."""

    def __init__(self, height: int, width: int, error: BaseException):
        self.size = (height, width)
        error = getattr(error, "cause", error)  # the library's own error, not the predictor's message around it
        lines = [line.strip() for line in str(error).splitlines() if line.strip()] or [type(error).__name__]
        cause = lines[-1] if len(lines) > 1 else lines[0]  # TorchScript's last line names the error, ORT's only one
        super().__init__(f"fails on a {height}x{width} image ({cause[:240]})")


def compare(reference, candidate, images: list[np.ndarray]) -> Parity:
    """Run both Predictors image by image (any sizes: padding and cropping are the Predictor's).

    reference: a logits Predictor (the checkpoint in torch). candidate: the exported model's Predictor,
    returning logits or ids (then only the ids are compared). images: (H, W, 3) uint8 RGB arrays.
    """
    import torch

    from segcli.metrics import ConfusionMatrix, compute_metrics

    num_classes = len(reference.classes)
    matrix = ConfusionMatrix(num_classes, ignore_index=-1)  # nothing is ignored: torch ids are the "ground truth"
    worst: float | None = None if candidate.outputs_ids else 0.0
    scale = 0.0
    same = total = 0
    for image in images:
        a = reference.logits([image]).cpu()
        ref_ids = a.argmax(1)
        scale = max(scale, float(a.abs().max()))
        try:
            if candidate.outputs_ids:
                ids = torch.from_numpy(candidate.ids([image]).astype(np.int64))
            else:
                b = candidate.logits([image]).cpu()
        except Exception as err:  # onnxruntime's Fail, torch.jit's RuntimeError: the file, not the image, is at fault
            raise CandidateFailed(image.shape[0], image.shape[1], err) from None
        if not candidate.outputs_ids:
            worst = max(worst, float((a - b).abs().max()))
            ids = b.argmax(1)
        same += int((ids == ref_ids).sum())
        total += ref_ids.numel()
        matrix.update(ids, ref_ids)
    ious = [c["iou"] for c in compute_metrics(matrix.matrix)["classes"] if c["gt_pixels"] > 0]
    return Parity(len(images), worst, same / max(total, 1), float(np.mean(ious)) if ious else 1.0,
                  None if worst is None else scale)


def _beyond(value: float, limit: float, kind: str) -> str:
    """`value` with as many digits as show it on its side of `limit` (kind 'e': from 3 significant digits, 'f': from
    6 decimals): 1.0005e-4 against 1e-4 read "1.00e-04 > 0.0001"."""
    for digits in range(3 if kind == "e" else 6, 17):
        text = f"{value:.{digits - 1}e}" if kind == "e" else f"{value:.{digits}f}"
        if (float(text) > limit) == (value > limit) and float(text) != limit:
            return text
    return repr(value)
