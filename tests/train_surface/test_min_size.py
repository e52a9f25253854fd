"""Networks with a smallest input (PAN pools its 1/32 grid three more times): training crops below it are a usage
error before anything is written, and inference pads smaller images up to it (meta["min_size"]) in every backend."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from helpers_surface import QUICK, segcli

from segcli.errors import ConfigError
from segcli.models.factory import build_model, check_input_size


def _kwargs(arch: str, **extra) -> dict:
    return {"arch": arch, "encoder": "resnet18", "in_channels": 3, "classes": 4, "kwargs": extra}


def test_smallest_input_per_architecture():
    assert check_input_size(build_model(**_kwargs("unet")), _kwargs("unet"), [32, 32]) == 32
    assert check_input_size(build_model(**_kwargs("pan")), _kwargs("pan"), None) == 128
    with pytest.raises(ConfigError, match=r"pan/resnet18 needs inputs of at least 128x128 pixels, and "
                                          r"augment.crop_size=\[64, 64\] is smaller"):
        check_input_size(build_model(**_kwargs("pan")), _kwargs("pan"), [64, 64])
    fpn = _kwargs("fpn", encoder_depth=3)  # was exit 4: "size mismatch (got input: [8, 7, 256, 256], target: ...)"
    with pytest.raises(ConfigError, match="fpn/resnet18 with encoder_depth=3 gives 32x32 logits for a 8x8 input"):
        check_input_size(build_model(**fpn), fpn, [64, 64])


def test_pan_crops_below_its_minimum_fail_before_the_run_directory(tiny_data, tmp_path):
    proc = segcli("train", f"data.root={tiny_data}", *QUICK, "model=pan", "--run-dir", tmp_path / "run")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1].startswith("segcli: error: pan/resnet18 needs inputs of at least 128x128")
    assert not (tmp_path / "run").exists()


def test_images_smaller_than_the_minimum_are_padded_in_predict_and_export(tiny_data, tmp_path):
    """A 50x60 image through a PAN checkpoint (exit 4 before: "Output size is too small"), its ONNX export
    verified on it, and the ONNX model's mask equal to the checkpoint's."""
    from segcli.data.card import load_card
    from segcli.runs import model_meta

    torch.manual_seed(0)
    card = load_card(tiny_data)
    kwargs = {**_kwargs("pan"), "classes": card.num_classes}
    model = build_model(**kwargs)
    meta = model_meta(card, kwargs, 32, "val", train_crop=[128, 128], min_size=check_input_size(model, kwargs, None))
    ckpt = tmp_path / "pan.ckpt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
                "hyper_parameters": {"meta": meta}}, ckpt)
    images = tmp_path / "small"
    images.mkdir()
    cv2.imwrite(str(images / "a.png"), np.random.default_rng(0).integers(0, 256, (50, 60, 3), np.uint8))
    proc = segcli("predict", images, "--ckpt", ckpt, "--out", tmp_path / "pred", "--save", "mask")
    assert proc.returncode == 0, proc.stderr[-2000:]
    mask = cv2.imread(str(tmp_path / "pred" / "a.png"), cv2.IMREAD_UNCHANGED)
    assert mask.shape == (50, 60)
    proc = segcli("export", "--ckpt", ckpt, "--out", tmp_path / "pan.onnx", "--verify-images", images)
    assert proc.returncode == 0 and "argmax agreement 100.0000%" in proc.stderr, proc.stderr[-2000:]
    proc = segcli("predict", images, "--model", tmp_path / "pan.onnx", "--out", tmp_path / "onnx", "--save", "mask")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert np.array_equal(cv2.imread(str(tmp_path / "onnx" / "a.png"), cv2.IMREAD_UNCHANGED), mask)
