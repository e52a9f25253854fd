"""data.input_scale: a model that works at a fraction of the dataset's resolution, end to end.

Training crops are cut from images resized by the factor, the checkpoint stores it, and every
consumer (training validation, eval, predict) resizes inputs alike and returns full-size masks.
"""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
import torch

from helpers_cli import SYNTHETIC_TRAIN, assert_error, assert_ok, read_metrics_csv


def _meta(scale: float) -> dict:
    return {"classes": ["dark", "bright"], "palette": [[0, 0, 0], [255, 255, 255]], "ignore_index": 255,
            "mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0], "size_multiple": 32, "input_scale": scale}


def _threshold_net(seen: list):
    """A 'model' that calls pixels brighter than 0.5 class 1, recording the input sizes it was given."""

    def forward(x: torch.Tensor) -> torch.Tensor:
        seen.append(tuple(x.shape[-2:]))
        return torch.stack([0.5 - x[:, 0], x[:, 0] - 0.5], 1)

    return forward


@pytest.mark.parametrize("scale, network_size", [(1.0, (96, 128)), (0.5, (64, 64))])
def test_predictor_runs_the_network_at_the_models_scale(scale, network_size):
    from segcli.inference.predictor import Predictor

    seen: list = []
    image = np.zeros((90, 120, 3), np.uint8)
    image[:, 60:] = 255  # right half bright
    ids = Predictor(_threshold_net(seen), _meta(scale)).predict([image])[0]
    assert seen == [network_size]  # 90×120 (×0.5 = 45×60) padded to multiples of 32
    assert ids.shape == (90, 120)
    assert (ids[:, :58] == 0).all() and (ids[:, 62:] == 1).all()


def test_flip_tta_composes_with_the_models_scale():
    from segcli.inference.options import InferenceOptions
    from segcli.inference.predictor import Predictor

    seen: list = []
    image = np.zeros((90, 120, 3), np.uint8)
    image[:, 60:] = 255
    predictor = Predictor(_threshold_net(seen), _meta(0.5), options=InferenceOptions(tta="flip", scales=(1.0, 2.0)))
    ids = predictor.predict([image])[0]
    assert sorted(set(seen)) == [(64, 64), (96, 128)]  # scales 0.5 and 1.0 of the input, each flipped and not
    assert len(seen) == 4 and ids.shape == (90, 120)


def test_training_crops_are_cut_at_the_input_scale():
    from torchvision import tv_tensors

    from segcli.data.transforms import train_transform

    image = tv_tensors.Image(torch.zeros(3, 180, 240, dtype=torch.uint8))
    mask = tv_tensors.Mask(torch.zeros(180, 240, dtype=torch.uint8))
    whole = {"crop_size": None, "scale": [1.0, 1.0]}
    out_image, out_mask = train_transform(whole, 255, input_scale=0.5)(image, mask)
    assert tuple(out_image.shape[-2:]) == (90, 120) and tuple(out_mask.shape) == (90, 120)
    ranged = {"crop_size": None, "scale": [0.8, 1.2]}
    for _ in range(5):
        h = train_transform(ranged, 255, input_scale=0.5)(image, mask)[0].shape[-2]
        assert 72 <= h <= 108


@pytest.mark.parametrize("value", ["0", "-1", "abc", "9"])
def test_bad_input_scale_is_a_config_error(run_cli, cli, synthetic_data, tmp_path, value):
    args = ("train", f"data.root={synthetic_data}", f"data.input_scale={value}", "--run-dir", tmp_path / "run")
    if value == "0":  # a fresh process: its whole stderr is the one line (nothing printed while importing)
        proc = run_cli(*args, cwd=tmp_path)
    else:  # the other values in this process: the same check, without importing torch and Lightning again
        code, out, err = cli(*args)
        proc = subprocess.CompletedProcess(args, code, out, err)
    assert "data.input_scale" in assert_error(proc, 2)
    assert not (tmp_path / "run").exists()


def test_half_scale_training_end_to_end(run_cli, synthetic_data, tmp_path):
    """Train at half scale: the checkpoint says so, eval equals the training validation, predict is full size."""
    run_dir = tmp_path / "run"
    assert_ok(run_cli("train", f"data.root={synthetic_data}", *SYNTHETIC_TRAIN, "data.input_scale=0.5",
                      "final_eval=false", "--run-dir", run_dir, cwd=tmp_path))  # the eval below is the check
    best = run_dir / "checkpoints" / "best.ckpt"
    meta = torch.load(best, map_location="cpu", weights_only=True)["hyper_parameters"]["meta"]
    assert meta["input_scale"] == 0.5
    logged = max(float(r["val/mIoU"]) for r in read_metrics_csv(run_dir / "metrics.csv") if r.get("val/mIoU"))
    proc = assert_ok(run_cli("eval", "--ckpt", best, "--json", "-", "inference.batch_size=1",  # as it validated
                             cwd=tmp_path))
    assert json.loads(proc.stdout)["mIoU"] == pytest.approx(logged, abs=1e-6)
    out = tmp_path / "pred"
    assert_ok(run_cli("predict", "--ckpt", best, synthetic_data / "images" / "val", "--out", out, "--save", "mask",
                      cwd=tmp_path))
    import cv2

    masks = sorted(out.glob("*.png"))
    assert masks and all(cv2.imread(str(m), cv2.IMREAD_UNCHANGED).shape == (90, 120) for m in masks)


def test_shrinking_an_image_one_or_two_pixels_wide_is_exact():
    """predict's input is channels-last (a permuted NHWC batch); torch's antialiased bilinear kernel gives wrong
    values on such a tensor when the output is 1-2 pixels wide (a 300x1 image at input_scale 0.5: off by up to 0.74
    of the 0..1 range), so masks and the README's own onnxruntime recipe disagreed beyond ties."""
    import torch
    import torch.nn.functional as F

    from segcli.inference.predictor import resize

    torch.manual_seed(0)
    for h, w, scale in [(300, 1, 0.5), (40, 2, 0.5), (300, 1, 0.75), (1, 300, 0.5), (33, 65, 0.5)]:
        x = torch.rand(1, h, w, 3).permute(0, 3, 1, 2)
        got = resize(x, scale)
        exact = F.interpolate(x.double().contiguous(), size=got.shape[-2:], mode="bilinear", align_corners=False,
                              antialias=True)
        assert float((got.double() - exact).abs().max()) < 1e-6, (h, w, scale)
