"""segcli at scale: many classes, large images, many files. Not timing tests: each case checks the behaviour that
kept the time or memory in bounds (what goes into one forward pass, ...).

A 1,000-class model batched four 400×512 images into one pass: 10 GB of memory for `segcli eval --ckpt` (the
logits alone, 1,000 × 205k pixels × 4 bytes, are 0.8 GB an image), 3.3 GB one image at a time."""

from __future__ import annotations

import numpy as np
import torch

from segcli.inference import predictor as predictor_module
from segcli.inference.predictor import Predictor


def _meta(num_classes: int) -> dict:
    return {"classes": [f"c{i}" for i in range(num_classes)], "palette": [[i % 256, 0, 0] for i in range(num_classes)],
            "ignore_index": 65535, "mean": [0.5] * 3, "std": [0.25] * 3, "size_multiple": 1}


def _recording(num_classes: int) -> tuple[Predictor, list[int]]:
    """A predictor whose network records each pass's batch size (logits: the last class wherever red > 0)."""
    seen: list[int] = []

    def forward(x: torch.Tensor) -> torch.Tensor:
        seen.append(x.shape[0])
        logits = torch.zeros((x.shape[0], num_classes, *x.shape[2:]))
        logits[:, -1] = x[:, 0]
        return logits

    return Predictor(forward, _meta(num_classes), batch_size=4), seen


def test_many_classes_go_fewer_images_at_a_time():
    """400×512 images: four at a time for 40 classes, one at a time for 1,000 (their logits are 25 times larger)."""
    assert _recording(40)[0].images_per_batch((400, 512, 3)) == 4
    assert _recording(1000)[0].images_per_batch((400, 512, 3)) == 1
    assert _recording(1000)[0].images_per_batch((64, 64, 3)) == 4  # small images: batch_size still holds
    assert _recording(1000)[0].images_per_batch((6000, 8000, 3)) == 1  # never below one


def test_many_class_predictions_are_batched_by_their_logits(monkeypatch):
    """The stream batches by the logits' size, and every image still gets its own mask (uint16 ids: 1,000 classes)."""
    monkeypatch.setattr(predictor_module, "MAX_BATCH_SCORES", 1000 * 60 * 80 * 2,
                        raising=False)  # two 60×80 images of 1,000 classes
    predictor, seen = _recording(1000)
    images = [np.full((60, 80, 3), 200, np.uint8) for _ in range(5)]
    masks = [ids for _, _, ids in predictor.predict_stream(enumerate(images))]
    assert seen == [2, 2, 1]
    assert len(masks) == 5 and all(m.dtype == np.uint16 and m.shape == (60, 80) and (m == 999).all() for m in masks)
    few, seen_few = _recording(40)  # 40 classes under the same budget: four at a time, as batch_size says
    assert len(list(few.predict_stream(enumerate(images)))) == 5 and seen_few == [4, 1]
