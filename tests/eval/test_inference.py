"""The shared predictor's inference options: sliding window, blending, flip TTA and multi-scale."""

import json

import numpy as np
import pytest
import torch

from segcli.errors import ConfigError
from segcli.inference.options import InferenceOptions
from segcli.inference.predictor import Predictor
from segcli.inference.sliding import blend_weights, slide_logits, window_starts

META = {"classes": ["a", "b", "c"], "palette": [[0, 0, 0]] * 3, "ignore_index": 255, "mean": [0.5] * 3,
        "std": [0.25] * 3, "size_multiple": 8, "train_crop": [16, 24]}


def pointwise(x: torch.Tensor) -> torch.Tensor:
    """A per-pixel 'model' (3 → 3 channels, a fixed mixing): its output at a pixel depends on that pixel only."""
    w = torch.tensor([[1.0, -0.5, 0.2], [0.3, 1.1, -0.4], [-0.7, 0.2, 0.9]])
    return torch.einsum("kc,nchw->nkhw", w, x)


def counting(calls: list):
    def forward(x):
        calls.append(tuple(x.shape))
        return pointwise(x)
    return forward


def images(n=2, h=37, w=53, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 255, (h, w, 3), dtype=np.uint8) for _ in range(n)]


def test_window_starts_cover_and_end_at_the_border():
    assert window_starts(10, 16, 8) == [0]  # image smaller than the tile: one window
    assert window_starts(16, 16, 8) == [0]
    assert window_starts(37, 16, 8) == [0, 8, 16, 21]
    for size, tile, stride in ((100, 32, 16), (101, 32, 24), (33, 32, 1)):
        starts = window_starts(size, tile, stride)
        covered = np.zeros(size, bool)
        for s in starts:
            covered[s:s + tile] = True
        assert covered.all() and starts[-1] == size - tile and all(b - a <= stride for a, b in zip(starts, starts[1:]))


def test_gaussian_weights_peak_at_the_centre_and_never_vanish():
    g = blend_weights(16, 24, "gaussian")
    assert g.shape == (16, 24) and float(g.max()) == pytest.approx(1.0, abs=1e-3) and float(g.min()) > 0
    assert g[8, 12] > g[0, 0] and torch.equal(blend_weights(4, 5, "constant"), torch.ones(4, 5))


@pytest.mark.parametrize("blend", ["gaussian", "constant"])
def test_slide_equals_whole_for_a_pointwise_model(blend):
    x = torch.randn(2, 3, 37, 53)
    calls = []
    out = slide_logits(counting(calls), x, (16, 24), (8, 12), blend, windows_per_batch=3)
    assert out.shape == (2, 3, 37, 53)
    torch.testing.assert_close(out, pointwise(x), rtol=1e-5, atol=1e-5)
    assert sum(c[0] for c in calls) == 2 * len(window_starts(37, 16, 8)) * len(window_starts(53, 24, 12))
    assert all(c[0] <= 2 * 3 for c in calls)  # at most 3 windows of both images per forward


def test_slide_blends_overlapping_windows():
    # a 'model' that outputs a constant per call: blended values must be convex combinations of the calls
    counter = iter(range(1, 1000))

    def forward(x):
        return torch.full((x.shape[0], 1, *x.shape[-2:]), float(next(counter)))

    out = slide_logits(forward, torch.zeros(1, 3, 20, 20), (10, 10), (5, 5), "constant", windows_per_batch=1)
    assert out[0, 0, 0, 0] == 1.0 and out[0, 0, -1, -1] == 9.0  # corners: one window each
    assert out[0, 0, 7, 7] == pytest.approx((1 + 2 + 4 + 5) / 4)  # centre of the first 2x2 windows


def test_predictor_default_is_the_plain_whole_image_path():
    p = Predictor(pointwise, META)
    assert p.options.plain
    imgs = images()
    expected = pointwise(p.preprocess(imgs))
    torch.testing.assert_close(p.logits(imgs), expected)


def test_predictor_slide_uses_the_training_crop_and_matches_whole():
    calls = []
    p = Predictor(counting(calls), META, batch_size=4).configure({"mode": "slide"})
    assert p.options.tile == (16, 24) and p.options.stride() == (8, 12)
    imgs = images()
    whole = Predictor(pointwise, META).predict(imgs)
    slide = p.predict(imgs)
    assert all(np.array_equal(a, b) for a, b in zip(whole, slide))
    assert all(c[-2:] == (16, 24) for c in calls)  # windows padded to the size multiple: 16x24 already are


def test_flip_tta_averages_probabilities():
    p = Predictor(pointwise, META).configure({"tta": "flip"})
    imgs = images(1)
    x = p.preprocess(imgs)
    # pointwise model is flip-equivariant: averaging a pass and its mirror gives the same probabilities
    torch.testing.assert_close(p.logits(imgs).exp(), pointwise(x).softmax(1), rtol=1e-5, atol=1e-6)

    def asymmetric(z):  # depends on the column: flip TTA must average two different maps
        ramp = torch.linspace(0, 3, z.shape[-1]).view(1, 1, 1, -1)
        return pointwise(z) + ramp * torch.tensor([1.0, 0.0, -1.0]).view(1, 3, 1, 1)

    imgs = images(1, 40, 56)  # multiples of the size multiple: no padding changes the ramp
    x = p.preprocess(imgs)
    q = Predictor(asymmetric, META).configure({"tta": "flip"})
    expected = (asymmetric(x).softmax(1) + asymmetric(x.flip(-1)).flip(-1).softmax(1)) / 2
    torch.testing.assert_close(q.logits(imgs).exp(), expected, rtol=1e-5, atol=1e-6)


def test_multi_scale_returns_input_resolution():
    calls = []
    p = Predictor(counting(calls), META).configure({"scales": [0.5, 1.0, 1.5], "tta": "flip"})
    out = p.logits(images(2, 37, 53))
    assert out.shape == (2, 3, 37, 53)
    assert len(calls) == 6 and (2, 3, 24, 32) in calls  # 0.5 * (37, 53) → (18, 26), padded to multiples of 8
    probs = out.exp().sum(1)
    torch.testing.assert_close(probs, torch.ones_like(probs), rtol=1e-4, atol=1e-4)


def test_option_errors():
    with pytest.raises(ConfigError, match="did you mean slide"):
        InferenceOptions.from_config({"mode": "slid"}, META)
    with pytest.raises(ConfigError, match="records no training crop"):
        InferenceOptions.from_config({"mode": "slide"}, {**META, "train_crop": None})
    assert InferenceOptions.from_config({"mode": "slide", "tile": 32}, {}).tile == (32, 32)
    with pytest.raises(ConfigError, match=r"tile=\[7, 9\] is smaller than this model's smallest input \(32 px"):
        InferenceOptions.from_config({"mode": "slide", "tile": [7, 9]}, {**META, "size_multiple": 32})
    with pytest.raises(ConfigError, match=r"smallest input \(128 px"):
        InferenceOptions.from_config({"mode": "slide", "tile": [96, 200]}, {**META, "size_multiple": 32, "min_size": 128})
    with pytest.raises(ConfigError, match="overlap"):
        InferenceOptions.from_config({"overlap": 1.0}, META)
    with pytest.raises(ConfigError, match="scales"):
        InferenceOptions.from_config({"scales": [0, 1]}, META)
    with pytest.raises(ConfigError, match="choose from none, flip"):
        InferenceOptions.from_config({"tta": "flop"}, META)


@pytest.mark.parametrize("cfg, key", [
    ({"overlap": "abc"}, "overlap"), ({"overlap": None}, "overlap"), ({"overlap": float("nan")}, "overlap"),
    ({"scales": "abc"}, "scales"), ({"scales": [float("nan")]}, "scales"), ({"scales": [1.0, float("inf")]}, "scales"),
    ({"scales": 0}, "scales"), ({"scales": ["x", 1.0]}, "scales"),
    ({"mode": "slide", "tile": ["a", "b"]}, "tile"), ({"mode": "slide", "tile": [32, None]}, "tile"),
    ({"mode": "slide", "tile": 32.7}, "tile"), ({"mode": "slide", "tile": [32.5, 40]}, "tile"),
    ({"tile": "big"}, "tile"), ({"tile": [0, 16]}, "tile"),
])
def test_option_values_that_are_not_numbers_are_config_errors(cfg, key):
    # not an internal error (ValueError, OverflowError from inside inference), nor silently another value
    # (scales=0 ran at scale 1, tile=32.7 ran 32x32 windows)
    with pytest.raises(ConfigError, match=rf"^inference\.{key}=.* must "):
        InferenceOptions.from_config(cfg, META)


def test_a_tile_given_in_whole_mode_is_checked_and_reported():
    # inference.tile=32 without mode=slide crashed when the report described the options
    assert InferenceOptions.from_config({"tile": 32}, META).describe()["tile"] == [32, 32]
    assert InferenceOptions.from_config({"tile": [40, 56]}, META).describe()["tile"] == [40, 56]
    assert InferenceOptions.from_config({}, META).describe()["tile"] is None
    assert InferenceOptions.from_config({"scales": 0.5}, META).scales == (0.5,)
    assert InferenceOptions.from_config({"scales": []}, META).scales == (1.0,)


def test_a_default_tile_below_the_models_smallest_input_says_it_is_the_training_crop():
    meta = {**META, "train_crop": [64, 64], "size_multiple": 32, "min_size": 128}
    with pytest.raises(ConfigError, match=r"tile=\[64, 64\] \(the model's training crop, the default\) is smaller .*"
                                          r"give at least inference\.tile=\[128,128\]"):
        InferenceOptions.from_config({"mode": "slide"}, meta)


@pytest.mark.parametrize("size", [(1, 50), (50, 1), (1, 1), (7, 7), (33, 517), (20, 900)])
@pytest.mark.parametrize("cfg", [{"mode": "slide", "tta": "flip", "scales": [0.01, 0.5, 1.0, 1.7]},
                                 {"mode": "slide", "overlap": 0.0, "blend": "constant"},
                                 {"mode": "slide", "overlap": 0.95, "tile": [8, 8]}])
def test_odd_sizes_keep_their_size_and_probabilities_sum_to_one(size, cfg):
    p = Predictor(pointwise, META).configure(cfg)
    imgs = images(2, *size)
    out = p.logits(imgs)
    assert out.shape == (2, 3, *size) and torch.isfinite(out).all()
    probs = out.softmax(1).sum(1)
    torch.testing.assert_close(probs, torch.ones_like(probs), rtol=1e-5, atol=1e-5)
    assert p.predict(imgs)[0].shape == size


def test_eval_cli_inference_options(trained, capsys):
    from helpers_eval import run_cli

    base = ["eval", "--ckpt", trained["ckpt"], "--data", trained["data"], "--json", "-"]
    code, out, err = run_cli(base + ["inference.overlap=abc"], capsys)
    assert code == 2 and out == "" and err.strip().splitlines() == [
        "segcli: error: inference.overlap=abc must be a number in [0, 1), e.g. 0.5"]
    code, out, err = run_cli(base + ["inference.scales=[nan]"], capsys)
    assert code == 2 and "inference.scales=[nan] must all be numbers > 0" in err and "Traceback" not in err
    code, out, err = run_cli(base + ["inference.tile=32"], capsys)  # whole mode: the tile is unused, but reported
    assert code == 0, err
    whole = json.loads(out)
    assert whole["inference"]["mode"] == "whole" and whole["inference"]["tile"] == [32, 32]
    # one window covering the whole (60x80) image: the same scores as no tiling
    code, out, err = run_cli(base + ["inference.mode=slide", "inference.tile=[64,96]"], capsys)
    assert code == 0, err
    slide = json.loads(out)
    assert slide["inference"]["tile"] == [64, 96] and slide["mIoU"] == whole["mIoU"]
    assert [c["iou"] for c in slide["classes"]] == [c["iou"] for c in whole["classes"]]
