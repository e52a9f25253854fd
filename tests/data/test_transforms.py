"""Image and mask stay aligned through every augmentation preset; masks never get values they did not have.

The known pattern: 16-px blocks of class 0 (red (200, 40, 40) in the image) and class 1 (blue
(40, 40, 200)). No blend of the two colours and the fill (0, 0, 0) equals either colour, so after any
correct geometric transform a pixel that still shows exactly a class colour must carry that class in
the mask, and a pixel of the padding/rotation fill must be ignore. A one-pixel shift between image
and mask breaks this at every block edge.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from torchvision import tv_tensors

from segcli.config import conf_dir
from segcli.data.transforms import RandomScaleCrop, RandomScale, train_transform

PRESETS = ["none", "light", "strong", "robust"]
PHOTOMETRIC = {"brightness": 0.0, "contrast": 0.0, "saturation": 0.0, "hue": 0.0,
               "noise": {"p": 0}, "blur": {"p": 0}, "jpeg": {"p": 0}, "fog": {"p": 0}}
IGNORE = 255
COLOUR = {0: (200, 40, 40), 1: (40, 40, 200)}


def preset(name: str, **changes) -> dict:
    return {**yaml.safe_load((conf_dir() / "augment" / f"{name}.yaml").read_text()), **changes}


def pattern(h: int = 200, w: int = 260, seed: int = 0) -> tuple[tv_tensors.Image, tv_tensors.Mask]:
    grid = np.random.default_rng(seed).integers(0, 2, (h // 16 + 1, w // 16 + 1))
    mask = np.kron(grid, np.ones((16, 16), np.int64))[:h, :w].astype(np.uint8)
    image = np.array([COLOUR[0], COLOUR[1]], np.uint8)[mask].transpose(2, 0, 1).copy()
    return tv_tensors.Image(torch.from_numpy(image)), tv_tensors.Mask(torch.from_numpy(mask))


def exact_violations(image: torch.Tensor, mask: torch.Tensor) -> int:
    """Pixels whose unblended colour names another class than the mask (fill (0, 0, 0) must be ignore)."""
    def shows(rgb) -> torch.Tensor:
        return (image == torch.tensor(rgb, dtype=image.dtype).view(3, 1, 1)).all(0)

    bad = shows(COLOUR[0]) & (mask != 0)
    bad |= shows(COLOUR[1]) & (mask != 1)
    bad |= shows((0, 0, 0)) & (mask != IGNORE)
    return int(bad.sum())


def interior_agreement(image: torch.Tensor, mask: torch.Tensor) -> float:
    """Share of labelled pixels away from block edges whose redness (R - B, thresholded) matches their class."""
    lum = image[2].float() - image[0].float()  # high for class 1 (blue)
    m = mask.float()[None, None]
    interior = (F.max_pool2d(m, 5, 1, 2) == -F.max_pool2d(-m, 5, 1, 2))[0, 0] & (mask != IGNORE)
    if not ((mask == 0) & interior).any() or not ((mask == 1) & interior).any():
        return 1.0
    threshold = (lum[(mask == 0) & interior].mean() + lum[(mask == 1) & interior].mean()) / 2
    return float(((lum > threshold) == (mask == 1))[interior].float().mean())


@pytest.mark.parametrize("name", PRESETS)
def test_geometry_is_exactly_aligned(name):
    transform = train_transform(preset(name, **PHOTOMETRIC), IGNORE)
    for seed in range(8):
        torch.manual_seed(seed)
        image, mask = transform(*pattern(seed=seed))
        assert image.shape[-2:] == mask.shape and image.dtype == torch.uint8
        assert exact_violations(image, mask) == 0, f"{name}, seed {seed}"
        assert set(mask.unique().tolist()) <= {0, 1, IGNORE}


@pytest.mark.parametrize("name", PRESETS)
def test_full_preset_keeps_image_and_mask_aligned(name):
    transform = train_transform(preset(name), IGNORE)
    for seed in range(8):
        torch.manual_seed(seed)
        image, mask = transform(*pattern(seed=seed))
        assert set(mask.unique().tolist()) <= {0, 1, IGNORE}
        assert interior_agreement(image, mask) > 0.98, f"{name}, seed {seed}"


def test_the_checks_catch_misalignment():
    image, mask = pattern()
    shifted = torch.roll(image, 1, dims=-1)
    assert exact_violations(shifted, mask) > 100
    assert interior_agreement(torch.flip(image, dims=[-1]), mask) < 0.8


def test_downscaled_mask_stays_centred_on_its_image():
    image, mask = pattern(seed=3)
    torch.manual_seed(0)
    out_image, out_mask = RandomScale((0.25, 0.25))(image, mask)
    assert out_mask.shape == (50, 65) and exact_violations(out_image, out_mask) == 0
    out_image, out_mask = RandomScaleCrop((40, 40), IGNORE, scale=(0.25, 0.25))(image, mask)
    assert out_mask.shape == (40, 40) and exact_violations(out_image, out_mask) == 0


def test_crop_pads_image_with_0_and_mask_with_ignore():
    image, mask = pattern(40, 50)
    out_image, out_mask = RandomScaleCrop((64, 80), IGNORE)(image, mask)
    assert out_mask.shape == (64, 80)
    assert int((out_mask == IGNORE).sum()) == 64 * 80 - 40 * 50
    assert bool((out_image[:, out_mask == IGNORE] == 0).all())


def test_photometric_steps_leave_the_mask_untouched():
    augment = {k: v for k, v in preset("robust").items() if k not in ("crop_size", "scale", "rotate", "hflip")}
    augment.update({"noise": {"p": 1, "std": [5, 5]}, "blur": {"p": 1, "sigma": [1, 1]},
                    "jpeg": {"p": 1, "quality": [30, 30]}, "fog": {"p": 1, "density": [0.4, 0.4]}})
    image, mask = pattern()
    out_image, out_mask = train_transform(augment, IGNORE)(image, mask)
    assert torch.equal(out_mask, mask) and not torch.equal(out_image, image)


def _share_with_rare(crop) -> float:
    """The share of 200 seeded draws of `crop` (image, mask → image, mask) that hold any of a small rare region
    (class 1, 20×20 pixels) of a 200×200 mask that is class 0 elsewhere."""
    mask = np.zeros((200, 200), np.uint8)
    mask[150:170, 20:40] = 1
    image = tv_tensors.Image(torch.zeros(3, 200, 200, dtype=torch.uint8))
    mask_t = tv_tensors.Mask(torch.from_numpy(mask))
    torch.manual_seed(0)
    return sum(bool((crop(image, mask_t)[1] == 1).any()) for _ in range(200)) / 200


def test_class_aware_crop_favours_crops_with_several_classes():
    def share_with_rare(ratio: float) -> float:
        return _share_with_rare(RandomScaleCrop((64, 64), IGNORE, cat_max_ratio=ratio))

    assert share_with_rare(0.75) > 2 * share_with_rare(1.0)


def test_none_preset_returns_the_input():
    image, mask = pattern()
    out_image, out_mask = train_transform(preset("none"), IGNORE)(image, mask)
    assert torch.equal(out_image, image) and torch.equal(out_mask, mask)


@pytest.mark.parametrize("crop", [(64, 64), (33, 47), (40, 120)])
@pytest.mark.parametrize("degrees", [30, 45, 90, 180])
def test_wide_rotations_keep_crops_inside_the_image_and_aligned(crop, degrees):
    """A crop rotated by any angle up to `degrees`, cut from a large image, shows image everywhere (no fill in its
    corners) and stays aligned with its mask; the window it is cut from must hold every such rotation."""
    transform = train_transform(preset("strong", **PHOTOMETRIC, rotate=degrees, crop_size=list(crop), scale=[1, 1]),
                                 IGNORE)
    for seed in range(12):
        torch.manual_seed(seed)
        image, mask = transform(*pattern(400, 400, seed=seed))
        assert mask.shape == crop
        assert exact_violations(image, mask) == 0, f"seed {seed}"
        assert int((mask == IGNORE).sum()) == 0, f"seed {seed}"


def test_jpeg_artefacts_keep_a_grayscale_image_one_channel():
    augment = {**preset("robust"), "jpeg": {"p": 1, "quality": [30, 30]}}
    image, mask = pattern(40, 56)
    grey = tv_tensors.Image(image[:1].clone())
    torch.manual_seed(0)
    out_image, out_mask = train_transform(augment, IGNORE)(grey, mask)
    assert out_image.shape == (1, 192, 192) and out_mask.shape == (192, 192)


@pytest.mark.parametrize("size", [(4, 6), (7, 4), (13, 13), (20, 30)])
def test_blur_on_images_smaller_than_its_kernel(size):
    """Whole-image training (crop_size=null) on tiny images, or at a small data.input_scale: the blur's kernel
    (±3 sigma) may exceed the image; it is blurred with what fits instead of failing."""
    augment = preset("robust", crop_size=None, blur={"p": 1, "sigma": [2.0, 2.0]})
    image, mask = pattern(*size)
    image = tv_tensors.Image(image.permute(1, 2, 0).contiguous().permute(2, 0, 1))  # channels-last, as SegDataset gives
    for seed in range(4):
        torch.manual_seed(seed)
        out_image, out_mask = train_transform(augment, IGNORE, input_scale=0.3)(image, mask)
        assert out_image.shape[-2:] == out_mask.shape and out_image.dtype == torch.uint8


def test_cat_max_ratio_0_redraws_crops_rather_than_switching_them_off():
    """augment.cat_max_ratio=0 was read as `0 or 1.0`, i.e. off: the strictest setting gave plain random crops."""
    def share_with_rare(ratio: float) -> float:
        return _share_with_rare(train_transform({"crop_size": [64, 64], "cat_max_ratio": ratio}, IGNORE))

    assert share_with_rare(0) > 2 * share_with_rare(1.0)


def test_band_jitter_scales_every_band_of_a_multispectral_image():
    """Brightness and contrast on a 4-band image (torchvision's ColorJitter refuses any count but 1 and 3, so the
    default preset stopped every multispectral run): one factor for all bands, the mask untouched."""
    from segcli.data.transforms import BandJitter

    torch.manual_seed(0)
    image = tv_tensors.Image(torch.full((4, 8, 8), 100, dtype=torch.uint8))
    image[3] = 50
    mask = tv_tensors.Mask(torch.ones((8, 8), dtype=torch.int64))
    ratios = []
    for _ in range(5):
        out, same = BandJitter(0.5, 0.0)(image, mask)
        ratios.append(float(out[:3].float().mean() / 100))
        assert out.shape == (4, 8, 8) and out.dtype == torch.uint8 and torch.equal(same, mask)
        assert abs(float(out[3].float().mean() / 50) - ratios[-1]) < 0.02
    assert max(abs(r - 1) for r in ratios) > 0.05 and all(0.5 <= r <= 1.5 for r in ratios)
    out, _ = BandJitter(0.0, 0.9)(image, mask)  # contrast: bands move towards their joint mean (87.5)
    assert 50 <= int(out[3, 0, 0]) <= 88 and 87 <= int(out[0, 0, 0]) <= 100
    grey, _ = train_transform(preset("light", crop_size=None, scale=[1, 1]), IGNORE, channels=4)(image, mask)
    assert grey.shape == (4, 8, 8)
