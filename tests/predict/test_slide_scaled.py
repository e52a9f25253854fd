"""Sliding-window class ids of a model run at another size (input_scale × scale != 1), band by band.

Predictor.ids in `inference.mode=slide` (one pass, no TTA, one scale) resizes each band of network-size logits to the
input's size as soon as the rows it reads are final (sliding.resized_ids), so the (N, K, H, W) full-size score map is
never built; the ids equal to_ids(logits()), the whole map resized by F.interpolate and argmaxed, bit for bit.
logits() checks NaN/inf at the network's size, before resizing.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from segcli.inference import predictor as predictor_module
from segcli.inference import sliding
from segcli.inference.predictor import Predictor, to_ids

from test_slide_bands import conv_model, images, largest_allocation, meta


def scaled(forward, classes: int = 7, input_scale: float = 0.5, batch_size: int = 4, **options) -> Predictor:
    return Predictor(forward, meta(classes, input_scale=input_scale), batch_size=batch_size).configure(
        {"mode": "slide", **options})


@pytest.fixture
def resized_used(monkeypatch) -> list:
    """Calls of resized_ids made through the predictor: (map size, output size)."""
    calls = []
    real = sliding.resized_ids

    def spy(bands, size, out_size, arithmetic):
        calls.append((size, out_size))
        return real(bands, size, out_size, arithmetic)

    monkeypatch.setattr(predictor_module, "resized_ids", spy)
    return calls


def tied(classes: int, seed: int = 0):
    """A convolution whose last class copies class 1's logits: exact ties everywhere, which the whole map's argmax
    gives to the lower class."""
    run = conv_model(classes - 1, kernel=3, seed=seed)
    return lambda x: torch.cat([run(x), run(x)[:, 1:2]], 1)


def test_the_rounding_of_the_bilinear_kernel_is_known_on_the_cpu():
    assert sliding.bilinear_arithmetic("cpu") in ("fused", "plain")


# (N, K, h, w) of the map, (H, W) resized, band heights: up (×2, ×4/3, odd), down (÷1.5), one axis only
MAPS = [((1, 40, 30, 50), (60, 100), 7), ((2, 2, 45, 61), (90, 121), 1), ((1, 5, 37, 53), (49, 71), 16),
        ((3, 40, 64, 90), (43, 60), 9), ((1, 7, 40, 100), (40, 150), 13), ((2, 40, 33, 120), (99, 120), 40),
        ((1, 2, 1, 130), (2, 260), 1),
        # the map more than twice the output: a later output row reads rows of a band not yet come
        ((1, 6, 250, 70), (100, 70), 2), ((2, 5, 400, 40), (100, 90), 3), ((1, 4, 130, 50), (50, 60), 1)]


@pytest.mark.parametrize("shape,out_size,band", MAPS)
def test_resized_ids_equal_the_argmax_of_the_interpolated_map(shape, out_size, band):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(sum(shape))) * 6
    x[:, -1] = x[:, 0]  # exact ties too
    expected = F.interpolate(x, size=out_size, mode="bilinear", align_corners=False).argmax(1)
    arithmetic = sliding.bilinear_arithmetic("cpu")
    parts = list(sliding.resized_ids([(top, x[:, :, top: top + band]) for top in range(0, shape[2], band)],
                                     shape[2:], out_size, arithmetic))
    tops = [top for top, _ in parts]
    assert tops[0] == 0 and [top + part.shape[1] for top, part in parts] == tops[1:] + [out_size[0]]
    assert torch.equal(torch.cat([part for _, part in parts], 1), expected)


# (N, H, W, classes, input_scale, inference scale, tile, overlap, batch size): odd sizes, smaller than the tile,
# N > 1, network at 0.5, 0.75, 1.5 of the input, 2 and 40 classes
CASES = [(1, 97, 131, 40, 0.5, 1.0, [16, 24], 0.5, 4), (2, 75, 91, 2, 0.5, 1.0, [16, 16], 0.3, 4),
         (3, 61, 89, 40, 0.75, 1.0, [24, 32], 0.0, 1), (1, 70, 80, 2, 0.5, 1.5, [16, 16], 0.6, 8),
         (2, 40, 100, 40, 1.0, 1.5, [32, 32], 0.5, 2), (1, 50, 90, 7, 1.0, 0.5, [64, 64], 0.5, 4),
         (2, 123, 45, 40, 0.75, 1.0, [16, 16], 0.7, 3), (1, 150, 150, 2, 0.5, 1.0, [48, 16], 0.5, 4),
         (4, 33, 101, 40, 0.5, 1.5, [16, 24], 0.5, 8), (1, 129, 64, 40, 0.5, 1.0, [200, 200], 0.5, 4),
         # the network at more than twice the input (input_scale 4; 2 × 1.5; 2.5): masks were wrong on 15-70% of pixels
         (1, 60, 90, 7, 4.0, 1.0, [16, 16], 0.5, 4), (1, 60, 80, 40, 2.0, 1.5, [16, 16], 0.5, 4),
         (2, 45, 90, 2, 1.0, 2.5, [16, 16], 0.5, 4)]


@pytest.mark.parametrize("n,h,w,classes,base,scale,tile,overlap,batch_size", CASES)
def test_ids_at_another_size_equal_the_argmax_of_the_whole_score_map(resized_used, n, h, w, classes, base, scale,
                                                                     tile, overlap, batch_size):
    p = scaled(conv_model(classes, kernel=5, seed=h), classes, base, batch_size, tile=tile, overlap=overlap,
               scales=[scale], blend="gaussian" if h % 2 else "constant")
    imgs = images(n, h, w, seed=w)
    expected = to_ids(p.logits(imgs))
    ids = p.ids(imgs)
    assert resized_used  # the band-wise path answered
    assert ids.dtype == expected.dtype == np.uint8 and np.array_equal(ids, expected)


@pytest.mark.parametrize("base", [0.5, 0.75])
def test_tied_classes_go_to_the_lower_one_as_in_the_whole_map(resized_used, base):
    p = scaled(tied(6), 6, base, tile=[16, 16])
    imgs = images(2, 63, 85)
    expected = to_ids(p.logits(imgs))
    assert (expected == 5).sum() == 0  # class 5 ties with class 1 wherever it is best, and loses
    ids = p.ids(imgs)
    assert resized_used and np.array_equal(ids, expected)


def test_scaled_slide_ids_never_build_the_full_size_score_map(monkeypatch):
    """32 classes of a 256×96 image are 3.1 MB of full-size float32 scores; at input_scale 0.5 a 16-row window of the
    network's 128×48 logits is 0.1 MB. Neither at_scale (the whole map resized) nor any full-size buffer is made."""
    classes, h, w = 32, 256, 96
    p = scaled(conv_model(classes, kernel=1), classes, 0.5, batch_size=2, tile=[16, 16])
    imgs = images(1, h, w)
    whole_map = classes * h * w * 4
    assert largest_allocation(lambda: p.logits(imgs)) >= whole_map  # the measure sees the whole map where it is made
    expected = to_ids(p.logits(imgs))

    def refuse(*args, **kwargs):
        raise AssertionError("the whole score map was resized")

    monkeypatch.setattr(predictor_module, "at_scale", refuse)
    held = largest_allocation(lambda: p.ids(imgs))
    assert held < whole_map // 4
    assert np.array_equal(p.ids(imgs), expected)


@pytest.mark.parametrize("h,w,classes,threads", [(40, 60, 7, None), (64, 64, 7, None), (80, 90, 3, 1)])
def test_the_channels_last_kernel_keeps_the_whole_map(resized_used, h, w, classes, threads):
    """F.interpolate resizes outputs of H + W <= 128, and 3 channels on one thread, with another kernel (its weights
    multiplied first): those keep the whole-map path."""
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        p = scaled(conv_model(classes), classes, 0.5, tile=[16, 16])
        imgs = images(2, h, w)
        assert np.array_equal(p.ids(imgs), to_ids(p.logits(imgs)))
    finally:
        torch.set_num_threads(before)
    assert resized_used == []


def test_a_one_pixel_map_keeps_the_whole_map(resized_used):
    """At scale 0.01 a 70×80 image is a 1×1 map: channels-last contiguous as well, so F.interpolate resizes it with
    its channels-last kernel for more than 3 classes (535 pixels differed when it went band by band)."""
    p = scaled(conv_model(7, kernel=1), 7, 1.0, tile=[16, 16], scales=[0.01])
    imgs = images(1, 70, 80)
    assert np.array_equal(p.ids(imgs), to_ids(p.logits(imgs)))
    assert resized_used == []


def test_subnormal_logits_resize_as_the_whole_map():
    """Below 2**-126 float32 rounds by absolute steps, which a margin relative to the largest logit missed."""
    x = torch.randn((1, 5, 40, 60), generator=torch.Generator().manual_seed(3)) * 1e-43
    expected = F.interpolate(x, size=(90, 131), mode="bilinear", align_corners=False).argmax(1)
    parts = sliding.resized_ids([(top, x[:, :, top: top + 4]) for top in range(0, 40, 4)], (40, 60), (90, 131),
                                sliding.bilinear_arithmetic("cpu"))
    assert torch.equal(torch.cat([part for _, part in parts], 1), expected)


@pytest.mark.parametrize("options", [{}, {"tta": "flip"}, {"scales": [0.5, 1.0]}])
def test_logits_are_checked_finite_at_the_network_size(monkeypatch, options):
    shapes = []
    real = predictor_module._finite

    def spy(logits, *args, **kwargs):
        shapes.append(tuple(logits.shape[-2:]))
        return real(logits, *args, **kwargs)

    monkeypatch.setattr(predictor_module, "_finite", spy)
    p = Predictor(conv_model(), meta(input_scale=0.5)).configure(options)
    out = p.logits(images(1, 60, 80))
    assert out.shape[-2:] == (60, 80)
    expected = [(30, 40)] if not options or "tta" in options else [(15, 20), (30, 40)]
    assert shapes == expected * (2 if "tta" in options else 1)
