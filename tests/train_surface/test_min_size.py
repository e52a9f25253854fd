"""Networks with a smallest input (PAN pools its 1/32 grid three more times): training pads crops and inference pads
images up to it (meta["min_size"]) in every backend; a combination smp sizes wrongly fails before anything is written."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from helpers_cli import argmax_agreement
from helpers_surface import QUICK, segcli

from segcli.errors import ConfigError
from segcli.models.factory import build_model, min_input_size


def _kwargs(arch: str, **extra) -> dict:
    return {"arch": arch, "encoder": "resnet18", "in_channels": 3, "classes": 4, "kwargs": extra}


def test_smallest_input_per_architecture():
    assert min_input_size(build_model(**_kwargs("unet")), _kwargs("unet")) == 32
    assert min_input_size(build_model(**_kwargs("pan")), _kwargs("pan")) == 128
    fpn = _kwargs("fpn", encoder_depth=3)  # was exit 4: "size mismatch (got input: [8, 7, 256, 256], target: ...)"
    with pytest.raises(ConfigError, match="fpn/resnet18 with encoder_depth=3 gives 32x32 logits for a 8x8 input"
                                          r".*; add \+model.kwargs.upsampling=1 \(it is 4\)"):
        min_input_size(build_model(**fpn), fpn)
    for depth, upsampling in ((3, 1), (4, 2)):  # the fix the message names works
        fixed = _kwargs("fpn", encoder_depth=depth, upsampling=upsampling)
        assert min_input_size(build_model(**fixed), fixed) == 2 ** depth


def test_a_vit_built_for_one_input_size_is_refused_before_training(tiny_data, tmp_path):
    """DPT with a timm ViT but without dynamic_img_size runs on 224x224 only: it trained on crops padded to 224x224,
    then failed at validation (exit 4, 'Input width (256) doesn't match model (224)')."""
    vit = {"arch": "dpt", "encoder": "tu-vit_tiny_patch16_224", "in_channels": 3, "classes": 4, "kwargs": {}}
    with pytest.raises(ConfigError, match=r"only the input size its timm encoder was built for .*dynamic_img_size=true"):
        min_input_size(build_model(**vit), vit)
    dynamic = {**vit, "kwargs": {"dynamic_img_size": True}}
    assert min_input_size(build_model(**dynamic), dynamic) == 32
    proc = segcli("train", f"data.root={tiny_data}", *QUICK, "model=dpt", "model.encoder=tu-vit_tiny_patch16_224",
                  "~model.kwargs.dynamic_img_size", "--run-dir", tmp_path / "run")
    assert proc.returncode == 2 and "+model.kwargs.dynamic_img_size=true" in proc.stderr, proc.stderr[-2000:]
    assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "run").exists()


def test_pan_trains_on_crops_below_its_minimum_padded_up(tiny_data, tmp_path):
    """32x32 crops (and 48x64 validation images) through PAN: exit 4 before ("Output size is too small")."""
    proc = segcli("train", f"data.root={tiny_data}", *QUICK, "model=pan", "--run-dir", tmp_path / "run")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "runs on inputs of at least 128x128; crops of 32x32 are padded up to it" in proc.stderr
    assert (tmp_path / "run" / "checkpoints" / "best.ckpt").is_file()
    proc = segcli("train", f"data.root={tiny_data}", *QUICK, "model=fpn", "+model.kwargs.encoder_depth=3",
                  "--run-dir", tmp_path / "fpn")
    assert proc.returncode == 2 and "gives 32x32 logits for a 8x8 input" in proc.stderr, proc.stderr[-2000:]
    assert not (tmp_path / "fpn").exists()


def test_images_smaller_than_the_minimum_are_padded_in_predict_and_export(tiny_data, tmp_path):
    """A 50x60 image through a PAN checkpoint (exit 4 before: "Output size is too small"), its ONNX export
    verified on it, and the ONNX model's mask equal to the checkpoint's."""
    from segcli.data.card import load_card
    from segcli.runs import model_meta

    torch.manual_seed(0)
    card = load_card(tiny_data)
    kwargs = {**_kwargs("pan"), "classes": card.num_classes}
    model = build_model(**kwargs)
    meta = model_meta(card, kwargs, 32, "val", train_crop=[128, 128], min_size=min_input_size(model, kwargs))
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
    assert proc.returncode == 0 and argmax_agreement(proc.stderr) >= 99.99, proc.stderr[-2000:]
    proc = segcli("predict", images, "--model", tmp_path / "pan.onnx", "--out", tmp_path / "onnx", "--save", "mask")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert np.array_equal(cv2.imread(str(tmp_path / "onnx" / "a.png"), cv2.IMREAD_UNCHANGED), mask)


def test_crops_much_larger_than_the_images_get_a_note(tiny_data, tmp_path):
    """96x96 crops of 48x64 images: two thirds of every crop is unlabelled padding, silently (the default 192x192
    crop on 100x100 tiles, 73%). A note now gives the share and a crop that fits; crops that fit get none."""
    proc = segcli("train", f"data.root={tiny_data}", *QUICK, "augment.crop_size=[96,96]", "final_eval=false",
                  "--run-dir", tmp_path / "run")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert ("the train images hold 3,072 pixels each on average (about 55x55), but crops are 96x96: 67% of a crop "
            "is unlabelled padding" in proc.stderr and "augment.crop_size=[64,64]" in proc.stderr), proc.stderr
    proc = segcli("train", f"data.root={tiny_data}", *QUICK, "augment.crop_size=[48,64]", "final_eval=false",
                  "--run-dir", tmp_path / "fits")
    assert proc.returncode == 0 and "unlabelled padding" not in proc.stderr, proc.stderr[-2000:]


def test_no_crop_note_when_the_crop_is_already_the_smallest_the_network_takes(capsys):
    """8x8 images under 32x32 crops (the size multiple): the note said 94% padding and suggested
    augment.crop_size=[32,32], the crop in use."""
    from types import SimpleNamespace

    from segcli.commands.train import _crop_note

    card = SimpleNamespace(stats={"splits": {"train": {"images": 10, "pixels": 640}}})
    data = {"train_split": "train", "input_scale": 1.0}
    _crop_note(card, SimpleNamespace(**data, get=data.get), [32, 32], 32)
    assert "padding" not in capsys.readouterr().err
    _crop_note(card, SimpleNamespace(**data, get=data.get), [96, 96], 32)  # a smaller crop exists: said
    assert "augment.crop_size=[32,32]" in capsys.readouterr().err


def test_crops_that_see_a_sliver_of_large_photos_get_a_note(capsys):
    """Six 3000x4000 photos under the default 192x192 crop: each crop is 0.3% of an image, one optimiser step per
    epoch; a probe's run learnt nothing (mIoU 3.2) and said nothing, where data.input_scale=0.25 data.repeat=8 reached
    94.8 in the same budget."""
    from types import SimpleNamespace

    from segcli.commands.train import _crop_note

    card = SimpleNamespace(stats={"splits": {"train": {"images": 6, "pixels": 6 * 3000 * 4000}}})
    data = {"train_split": "train", "input_scale": 1.0, "batch_size": 8, "repeat": 1}
    _crop_note(card, SimpleNamespace(**data, get=data.get), [192, 192], 32)
    assert capsys.readouterr().err.strip() == (
        "train: note: each 192x192 crop covers 0.3% of a train image (about 3464x3464 pixels on average), so training "
        "sees little of each in a step; let the network see smaller images, e.g. data.input_scale=0.25 (or prepare "
        "--max-size), or crop larger, and data.repeat=6 or more: 6 images a pass make 1 optimiser step(s) per epoch, "
        "each followed by a validation")
    data.update(repeat=2)  # 12 images a pass, batch 8: one step (the last partial batch is dropped); 6 make 4
    _crop_note(card, SimpleNamespace(**data, get=data.get), [192, 192], 32)
    assert "data.repeat=6 or more: 12 images a pass make 1 optimiser step(s)" in capsys.readouterr().err
    data.update(input_scale=0.25, repeat=8)  # what the note suggests: nothing more to say
    _crop_note(card, SimpleNamespace(**data, get=data.get), [192, 192], 32)
    assert capsys.readouterr().err == ""
    camvid = SimpleNamespace(stats={"splits": {"train": {"images": 367, "pixels": 367 * 360 * 480}}})
    data.update(input_scale=1.0, repeat=1)  # CamVid's frames under the default crop: 21% each, no note
    _crop_note(camvid, SimpleNamespace(**data, get=data.get), [192, 192], 32)
    assert capsys.readouterr().err == ""


def test_dpt_with_a_patch_size_its_decoder_cannot_resize_is_refused_at_once(monkeypatch):
    """A patch-14 ViT (DINOv2's) under smp's DPT fails at every input size: the size probe tried 224, 448, … up to
    3584 px, each pass slower than the last, and train sat silent for many minutes before any line."""
    from segcli.models import factory

    passes = []
    monkeypatch.setattr(factory, "_probe", lambda *args: passes.append(args[2:]) or "failed")
    vit = {"arch": "dpt", "encoder": "tu-vit_small_patch14_dinov2", "in_channels": 3, "classes": 4,
           "kwargs": {"dynamic_img_size": True}}
    with pytest.raises(ConfigError, match=r"DPT needs a ViT whose patch size is a power of 2 .* patches are 14 px"):
        min_input_size(build_model(**vit), vit)
    assert passes == []  # refused before any pass (the first, at 224 px, took 2.5 s)
    for patch in (8, 16):  # powers of 2 are probed as before
        vit = {**vit, "encoder": f"tu-vit_small_patch{patch}_224"}
        monkeypatch.undo()
        assert min_input_size(build_model(**vit), vit) == 32


def test_the_size_probe_gives_up_after_its_time_budget(monkeypatch):
    """A network that fails at every size is refused once the failed passes have taken PROBE_SECONDS, naming the
    sides tried, not after all sixteen (each larger and slower than the last)."""
    from segcli.models import factory

    clock = [0.0]
    sides = []

    def failing(model, channels, h, w):
        sides.append(h)
        clock[0] += 12.0  # each pass takes 12 s of the (fake) clock
        return "The size of tensor a (16) must match the size of tensor b (32)"

    monkeypatch.setattr(factory, "_probe", failing)
    monkeypatch.setattr(factory, "monotonic", lambda: clock[0])
    unet = _kwargs("unet")
    model = build_model(**unet)
    with pytest.raises(ConfigError, match=r"unet/resnet18 cannot run on inputs from 32x32 up to 96x96 \(The size of"):
        min_input_size(model, unet)
    assert sides == [32, 64, 96]  # 36 s > PROBE_SECONDS (30) after the third
