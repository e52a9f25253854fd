"""Sliding-window class ids band by band: equal to the argmax of the whole score map, bit for bit, without holding it.

Predictor.ids in `inference.mode=slide` (one pass, no TTA, one scale) argmaxes each band of rows as soon as its last
window has been added (sliding.slide_bands); where probabilities are averaged (TTA, scales, ensembles) or logits are
resized back to the input (input_scale), it still argmaxes the whole (N, K, H, W) map.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from segcli.errors import DataError
from segcli.inference import predictor as predictor_module
from segcli.inference import sliding
from segcli.inference.predictor import Ensemble, Predictor, to_ids

META = {"classes": [f"c{i}" for i in range(7)], "palette": [[0, 0, 0]] * 7, "ignore_index": 255,
        "mean": [0.5] * 3, "std": [0.25] * 3, "size_multiple": 8, "train_crop": [16, 24]}


def conv_model(classes: int = 7, kernel: int = 5, seed: int = 0):
    """A seeded convolution (3 → `classes`): a window's logits near its border differ from the whole image's, so
    blending decides the ids, and ties between classes do not happen."""
    torch.manual_seed(seed)
    conv = torch.nn.Conv2d(3, classes, kernel, padding=kernel // 2)
    return lambda x: conv(x)


def meta(classes: int = 7, **extra) -> dict:
    return {**META, "classes": [f"c{i}" for i in range(classes)], "palette": [[0, 0, 0]] * classes, **extra}


def images(n: int, h: int, w: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 255, (h, w, 3), dtype=np.uint8) for _ in range(n)]


def slide(forward, classes: int = 7, batch_size: int = 4, **options) -> Predictor:
    return Predictor(forward, meta(classes), batch_size=batch_size).configure({"mode": "slide", **options})


def largest_allocation(fn) -> int:
    """Bytes of the largest single CPU tensor allocation made while `fn()` runs (torch's profiler)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    return max((e.cpu_memory_usage for e in prof.events() if e.cpu_memory_usage > 0), default=0)


@pytest.fixture
def bands_used(monkeypatch) -> list:
    """Calls of slide_bands made through the predictor."""
    calls = []
    real = sliding.slide_bands

    def spy(*args, **kwargs):
        calls.append(args[1].shape)
        return real(*args, **kwargs)

    monkeypatch.setattr(predictor_module, "slide_bands", spy)
    return calls


# (N, H, W, tile, stride, blend, windows per batch): smaller than the tile, sizes no multiple of the stride, N > 1
CASES = [(1, 37, 53, (16, 24), (8, 12), "gaussian", 3), (3, 10, 11, (16, 24), (8, 12), "gaussian", 4),
         (2, 61, 29, (16, 16), (11, 11), "constant", 5), (2, 100, 7, (24, 32), (24, 32), "gaussian", 1),
         (1, 45, 45, (16, 16), (1, 16), "gaussian", 7), (4, 33, 40, (32, 16), (5, 9), "constant", 2)]


def whole_map(run, x, tile, stride, blend, per_batch) -> torch.Tensor:
    """The reference: every window's weighted logits added into one (N, K, H, W) map in window order (rows top to
    bottom, left to right within a row), `per_batch` windows per call of `run`, then divided by the summed weights."""
    n, _, h, w = x.shape
    th, tw = min(tile[0], h), min(tile[1], w)
    boxes = [(y, xx) for y in sliding.window_starts(h, th, stride[0]) for xx in sliding.window_starts(w, tw, stride[1])]
    weight = sliding.blend_weights(th, tw, blend)
    total, weight_sum = None, torch.zeros(h, w)
    for i in range(0, len(boxes), per_batch):
        chunk = boxes[i: i + per_batch]
        out = run(torch.cat([x[..., y: y + th, xx: xx + tw] for y, xx in chunk])).float()
        total = torch.zeros(n, out.shape[1], h, w) if total is None else total
        for j, (y, xx) in enumerate(chunk):
            total[..., y: y + th, xx: xx + tw] += out[j * n: (j + 1) * n] * weight
            weight_sum[y: y + th, xx: xx + tw] += weight
    return total / weight_sum


@pytest.mark.parametrize("n,h,w,tile,stride,blend,per_batch", CASES)
def test_bands_concatenate_to_the_whole_blended_map_bit_for_bit(n, h, w, tile, stride, blend, per_batch):
    x = torch.randn(n, 3, h, w, generator=torch.Generator().manual_seed(h * w))
    run = conv_model()
    with torch.inference_mode():
        full = whole_map(run, x, tile, stride, blend, per_batch)
        assert torch.equal(sliding.slide_logits(run, x, tile, stride, blend, per_batch).view(torch.int32),
                           full.view(torch.int32))
        bands = [(top, band.clone()) for top, band in sliding.slide_bands(run, x, tile, stride, blend, per_batch)]
    tops = [top for top, _ in bands]
    assert tops[0] == 0 and tops == sorted(set(tops))
    assert [top + band.shape[2] for top, band in bands] == tops[1:] + [h]  # every row once, top to bottom
    assert all(band.shape[2] <= min(tile[0], h) for _, band in bands)  # a band is at most one window tall
    joined = torch.cat([band for _, band in bands], 2)
    assert torch.equal(joined.view(torch.int32), full.view(torch.int32))  # the same bits, not merely close


@pytest.mark.parametrize("n,h,w,tile,overlap,blend,batch_size",
                         [(1, 37, 53, [16, 24], 0.5, "gaussian", 4), (3, 10, 11, [16, 24], 0.5, "gaussian", 4),
                          (2, 61, 29, [16, 16], 0.3, "constant", 5), (2, 100, 100, [24, 32], 0.0, "gaussian", 1),
                          (3, 40, 57, [16, 24], 0.6, "gaussian", 8)])
def test_ids_equal_the_argmax_of_the_whole_score_map(bands_used, n, h, w, tile, overlap, blend, batch_size):
    p = slide(conv_model(), tile=tile, overlap=overlap, blend=blend, batch_size=batch_size)
    imgs = images(n, h, w, seed=h + w)
    expected = to_ids(p.logits(imgs))
    ids = p.ids(imgs)
    assert bands_used  # the band-wise path answered
    assert ids.dtype == expected.dtype == np.uint8 and np.array_equal(ids, expected)
    assert all(np.array_equal(a, b) for a, b in zip(p.predict(imgs), expected))


def test_ids_of_more_than_256_classes_are_uint16(bands_used):
    p = slide(conv_model(300, kernel=1), classes=300, tile=[16, 16])
    imgs = images(2, 21, 19)
    ids = p.ids(imgs)
    assert bands_used and ids.dtype == np.uint16 and int(ids.max()) > 255
    assert np.array_equal(ids, to_ids(p.logits(imgs)))


def test_slide_ids_hold_one_band_of_scores_not_the_whole_map():
    """The largest buffer allocated for ids scales with the tile's rows, not the image's: 32 classes of a 256×48
    image are 1.6 MB of float32 scores, one 32-row window's 0.2 MB (the input itself is 0.15 MB)."""
    classes, h, w, tile = 32, 256, 48, 32
    p = slide(conv_model(classes, kernel=1), classes=classes, tile=[tile, tile], batch_size=2)
    imgs = images(1, h, w)
    whole_map = classes * h * w * 4
    assert largest_allocation(lambda: p.logits(imgs)) >= whole_map  # the measure sees the whole map where it is made
    held = largest_allocation(lambda: p.ids(imgs))
    band, window_logits, image = classes * tile * w * 4, 2 * classes * tile * tile * 4, 3 * h * w * 4  # batch_size 2
    assert held <= max(band, window_logits, image) < whole_map // 4


@pytest.mark.parametrize("options,extra_meta", [
    ({"tta": "flip"}, {}),  # averaged probabilities of two passes
    ({"scales": [0.5, 1.0]}, {}),
    # logits resized back to an input of H + W <= 128, where F.interpolate runs a kernel resized_ids does not follow
    # (larger resized inputs go band by band: tests/predict/test_slide_scaled.py)
    ({}, {"input_scale": 0.5}),
])
def test_averaged_or_resized_scores_keep_the_whole_map(monkeypatch, options, extra_meta):
    def refuse(*args, **kwargs):
        raise AssertionError("slide_bands used where the whole score map is needed")

    monkeypatch.setattr(predictor_module, "slide_bands", refuse)
    p = Predictor(conv_model(), meta(**extra_meta), batch_size=4).configure({"mode": "slide", "tile": [16, 16],
                                                                            **options})
    imgs = images(2, 37, 41)
    assert np.array_equal(p.ids(imgs), to_ids(p.logits(imgs)))


def test_an_ensemble_of_sliding_members_averages_their_whole_maps(monkeypatch):
    members = [slide(conv_model(seed=s), tile=[16, 16]) for s in (0, 1)]
    members[1].source = "second"  # two Python-built members: no files to compare
    ens = Ensemble(members)
    imgs = images(2, 30, 35)
    expected = to_ids(ens.logits(imgs))
    monkeypatch.setattr(predictor_module, "slide_bands", None)  # any band-wise call would fail
    assert np.array_equal(ens.ids(imgs), expected)


@pytest.mark.parametrize("scale,h,w", [(1.0, 40, 30), (0.5, 80, 70)])  # 0.5: bands resized (test_slide_scaled.py)
def test_nan_logits_fail_with_the_same_message_as_the_whole_map(scale, h, w):
    run = conv_model()

    def broken(x):  # NaN in the bottom 3 rows of every window: the first band is finite, later ones are not
        out = run(x)
        out[:, 2, -3:] = float("nan")
        return out

    p = Predictor(broken, meta(input_scale=scale), batch_size=4).configure({"mode": "slide", "tile": [16, 16]})
    imgs = images(2, h, w)
    with pytest.raises(DataError) as whole:
        p.logits(imgs)
    with pytest.raises(DataError) as banded:
        p.ids(imgs)
    assert "its logits are NaN or infinite" in str(banded.value) and str(banded.value) == str(whole.value)
    assert f"of {2 * 7 * int(h * scale) * int(w * scale)} values" in str(whole.value)  # counted at the network's size
