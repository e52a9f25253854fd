"""How many images go into one forward pass: inference.batch_size, fewer of large images. Predict batched four
6000×4000 images into one pass and was killed for memory (exit 137, no message) on a 23 GB machine."""

from __future__ import annotations

import numpy as np
import torch

from segcli.inference import predictor as predictor_module
from segcli.inference.options import InferenceOptions
from segcli.inference.predictor import MAX_BATCH_PIXELS, Predictor

META = {"classes": ["a", "b"], "palette": [[0, 0, 0], [255, 255, 255]], "ignore_index": 255,
        "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25], "size_multiple": 1}


def _recording(meta: dict = META, batch_size: int = 4, **options) -> tuple[Predictor, list[int]]:
    """A predictor whose network records the batch size of each forward pass (logits: the last class where red > 0)."""
    seen: list[int] = []

    def forward(x: torch.Tensor) -> torch.Tensor:
        seen.append(x.shape[0])
        logits = torch.zeros((x.shape[0], len(meta["classes"]), *x.shape[2:]))
        logits[:, -1] = x[:, 0]
        return logits

    return Predictor(forward, meta, batch_size=batch_size, **options), seen


def _classes(count: int, **more) -> dict:
    """META with `count` classes."""
    return {**META, "classes": [f"c{i}" for i in range(count)], "palette": [[i % 256, 0, 0] for i in range(count)],
            "ignore_index": 65535, **more}


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


def test_many_classes_go_fewer_images_at_a_time():
    """The logits count too: a 1,000-class model batched four 400×512 images into one pass, 10 GB for `segcli eval
    --ckpt` (0.8 GB of logits an image; 3.2 GB one at a time). 40 classes: four at a time, as before."""
    assert _recording(_classes(40))[0].images_per_batch((400, 512, 3)) == 4
    assert _recording(_classes(1000))[0].images_per_batch((400, 512, 3)) == 1
    assert _recording(_classes(1000))[0].images_per_batch((64, 64, 3)) == 4  # small images: batch_size still holds
    assert _recording(_classes(1000))[0].images_per_batch((6000, 8000, 3)) == 1  # never below one


def test_the_logits_budget_counts_the_network_s_scale_and_not_ids():
    """The network's logits are input_scale (and the largest inference scale) times the image's size: 256×256
    images of a 1,000-class model at input_scale 2 go one at a time. A model exported with --argmax returns ids."""
    assert _recording(_classes(1000))[0].images_per_batch((256, 256, 3)) == 4
    assert _recording(_classes(1000, input_scale=2.0))[0].images_per_batch((256, 256, 3)) == 1
    scaled = _recording(_classes(1000), options=InferenceOptions(scales=(1.0, 2.0)))[0]
    assert scaled.images_per_batch((256, 256, 3)) == 1
    assert _recording(_classes(1000, output="ids"))[0].images_per_batch((400, 512, 3)) == 4


def test_many_class_predictions_are_batched_by_their_logits(monkeypatch):
    """The stream batches by the logits' size, and every image still gets its own mask (uint16 ids: 1,000 classes)."""
    monkeypatch.setattr(predictor_module, "MAX_BATCH_SCORES", 1000 * 60 * 80 * 2)  # two 60×80 images of 1,000 classes
    predictor, seen = _recording(_classes(1000))
    images = [np.full((60, 80, 3), 200, np.uint8) for _ in range(5)]
    masks = [ids for _, _, ids in predictor.predict_stream(enumerate(images))]
    assert seen == [2, 2, 1]
    assert len(masks) == 5 and all(m.dtype == np.uint16 and m.shape == (60, 80) and (m == 999).all() for m in masks)
    few, seen_few = _recording(_classes(40))  # 40 classes under the same budget: four at a time, as batch_size says
    assert len(list(few.predict_stream(enumerate(images)))) == 5 and seen_few == [4, 1]
