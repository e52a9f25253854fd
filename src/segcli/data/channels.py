"""Normalisation for models whose input is not RGB (model.in_channels != 3).

The dataset card's stats.mean/std are RGB. For grayscale (1) or multispectral (C) models, the
per-channel mean/std are measured from the train images, read the way training reads them
(segcli.inference.io.read_image(path, channels)).
"""

from __future__ import annotations

import numpy as np

from segcli.data.card import DatasetCard
from segcli.data.stats import MIN_STD
from segcli.errors import ConfigError

PHOTOMETRIC = ("brightness", "contrast", "saturation", "hue")


def channel_stats(card: DatasetCard, split: str, channels: int, limit: int = 256) -> tuple[list[float], list[float]]:
    """Per-channel (mean, std) in [0, 1] of up to `limit` images of `split` (evenly spaced), read with `channels` channels;
    std at least stats.MIN_STD, as the card's."""
    from segcli.inference.io import read_image

    pairs = card.pairs(split)
    # spread over the whole split: every len // limit-th image from the start was the first `limit` of 257-511 images
    # (a split sorted by name, and so by sequence, site or date, gave a mean 0.11 off)
    chosen = np.unique(np.linspace(0, len(pairs) - 1, min(len(pairs), limit)).round().astype(int)) if pairs else []
    total, total_sq, pixels = np.zeros(channels), np.zeros(channels), 0
    for image_path, _ in (pairs[i] for i in chosen):
        image = read_image(image_path, channels, card.image_range).reshape(-1, channels).astype(np.float64) / 255.0
        total += image.sum(0)
        total_sq += (image**2).sum(0)
        pixels += image.shape[0]
    mean = total / max(pixels, 1)
    std = np.maximum(np.sqrt(np.maximum(total_sq / max(pixels, 1) - mean**2, 0.0)), MIN_STD)  # a constant band: not ÷ 0
    return [round(float(v), 6) for v in mean], [round(float(v), 6) for v in std]


def fit_normalization(meta: dict, card: DatasetCard, train_split: str = "train") -> dict:
    """meta with mean/std of meta["model"]["in_channels"] entries (measured on `train_split` when the card's
    RGB stats do not fit); unchanged for RGB models."""
    channels = int(meta["model"].get("in_channels", 3))
    if len(meta["mean"]) == channels and len(meta["std"]) == channels:
        return meta
    split = train_split if train_split in card.splits else next(iter(card.splits))
    mean, std = channel_stats(card, split, channels)
    return {**meta, "mean": mean, "std": std, "input": f"float32 NCHW, {channels} channel(s), (x / 255 - mean) / std"}


def check_augment(augment: dict, channels: int) -> None:
    """Saturation, hue and JPEG artefacts are defined for 1 or 3 channels only: a clear error for other counts
    (brightness and contrast apply to any number of bands: transforms.BandJitter)."""
    if channels in (1, 3):
        return
    used = [k for k in PHOTOMETRIC[2:] if float(augment.get(k) or 0)] + (["jpeg"] if (augment.get("jpeg") or {}).get("p") else [])
    if used:
        raise ConfigError(f"augment.{used[0]} needs 1 or 3 image channels, the model takes {channels}; set "
                          + " ".join(f"augment.{k}=0" if k != "jpeg" else "augment.jpeg.p=0" for k in used))
