"""How many images go into one forward pass: inference.batch_size, fewer of large images. Predict batched four
6000×4000 images into one pass and was killed for memory (exit 137, no message) on a 23 GB machine."""

from __future__ import annotations

import numpy as np
import torch

from segcli.inference.predictor import MAX_BATCH_PIXELS, Predictor

META = {"classes": ["a", "b"], "palette": [[0, 0, 0], [255, 255, 255]], "ignore_index": 255,
        "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25], "size_multiple": 1}


def _recording(meta: dict = META, batch_size: int = 4) -> tuple[Predictor, list[int]]:
    """A predictor whose network records the batch size of each forward pass (logits: class 1 where red > 0)."""
    seen: list[int] = []

    def forward(x: torch.Tensor) -> torch.Tensor:
        seen.append(x.shape[0])
        return torch.cat([torch.zeros_like(x[:, :1]), x[:, :1]], 1)

    return Predictor(forward, meta, batch_size=batch_size), seen


def test_large_images_go_fewer_at_a_time():
    predictor, seen = _recording()
    side = int((MAX_BATCH_PIXELS // 2) ** 0.5) + 1  # two of these are just over the budget
    large = [np.full((side, side, 3), 200, np.uint8) for _ in range(3)]
    small = [np.full((60, 80, 3), 200, np.uint8) for _ in range(5)]
    masks = [ids for _, _, ids in predictor.predict_stream(enumerate(large + small))]
    assert seen == [1, 1, 1, 4, 1]  # one large image per pass; the small ones four at a time, as batch_size says
    assert [m.shape for m in masks] == [(side, side)] * 3 + [(60, 80)] * 5 and all((m == 1).all() for m in masks)


def test_the_budget_counts_the_pixels_the_network_sees():
    predictor, _ = _recording({**META, "input_scale": 0.5})  # a half-scale model sees a quarter of the pixels
    side = int(MAX_BATCH_PIXELS ** 0.5)
    assert predictor.images_per_batch((side, side, 3)) == 4
    assert predictor.images_per_batch((2 * side, 2 * side, 3)) == 1
    assert predictor.images_per_batch((4 * side, 4 * side)) == 1  # never below one
    assert _recording(batch_size=2)[0].images_per_batch((10, 10)) == 2  # never above inference.batch_size
