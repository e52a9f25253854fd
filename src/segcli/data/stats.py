"""Dataset-card statistics, accumulated pair by pair.

Per split: number of images, pixels, per-class pixel and image counts, image mean/std. From the
train split: the normalisation mean/std and median-frequency class weights (Eigen & Fergus 2015):
freq(c) = pixels of c / labelled pixels of the images that contain c; weight(c) = median(freq) / freq(c).
"""

from __future__ import annotations

import numpy as np


# The smallest normalisation std: one 8-bit grey level (a spread below it is quantisation, not signal). A channel that
# is constant over the train images (std 0: a band stored as zeros, a 2-band image saved as RGB with an empty third
# channel) would otherwise be divided by 1e-6: any value that differs from its mean by one grey level, as contrast
# jitter or padding makes it in training and any new image at inference, reaches the network as thousands.
MIN_STD = round(1 / 255, 6)


def _grow(array: np.ndarray, size: int) -> np.ndarray:
    return array if len(array) >= size else np.concatenate([array, np.zeros(size - len(array), array.dtype)])


class SplitStats:
    """Running totals of one split; `add` takes one pair."""

    def __init__(self) -> None:
        self.images = 0
        self.pixels = 0
        self.counts = np.zeros(0, np.int64)  # pixels per mask value (ids and the ignore index)
        self.images_with = np.zeros(0, np.int64)  # images containing each value
        self.context = np.zeros(0, np.int64)  # labelled pixels of the images containing each value
        self.channel_sum = np.zeros(3)
        self.channel_sq = np.zeros(3)

    def add(self, counts: np.ndarray, ignore_index: int, mean: np.ndarray | None = None,
            std: np.ndarray | None = None) -> None:
        """counts: np.bincount of one mask; mean, std: (3,) per-channel image statistics in [0, 1] (None: added
        later with add_channels)."""
        size = max(len(counts), len(self.counts))
        self.counts, self.images_with, self.context = (_grow(a, size) for a in (self.counts, self.images_with, self.context))
        counts = _grow(counts.astype(np.int64), size)
        pixels = int(counts.sum())
        labelled = pixels - (int(counts[ignore_index]) if ignore_index < size else 0)
        present = counts > 0
        self.counts += counts
        self.images_with += present
        self.context += present * labelled
        self.images += 1
        self.pixels += pixels
        if mean is not None:
            self.add_channels(mean, std, pixels)

    def add_channels(self, mean: np.ndarray, std: np.ndarray, pixels: int) -> None:
        """One image's per-channel mean and std (in [0, 1]) over its `pixels` pixels."""
        self.channel_sum += mean * pixels
        self.channel_sq += (std**2 + mean**2) * pixels

    def mean_std(self) -> tuple[list[float], list[float]]:
        if not self.pixels:
            return [0.0] * 3, [0.0] * 3
        mean = self.channel_sum / self.pixels
        std = np.sqrt(np.maximum(self.channel_sq / self.pixels - mean**2, 1e-12))
        return [round(float(v), 6) for v in mean], [round(float(v), 6) for v in std]

    def max_id(self, ignore_index: int) -> int:
        """Largest class id present (ignore excluded), -1 if none."""
        ids = [v for v in np.flatnonzero(self.counts) if v != ignore_index]
        return int(max(ids)) if ids else -1

    def to_dict(self, num_classes: int) -> dict:
        mean, std = self.mean_std()
        return {"images": self.images, "pixels": self.pixels, "mean": mean, "std": std,
                "class_pixels": [int(v) for v in _grow(self.counts, num_classes)[:num_classes]],
                "class_images": [int(v) for v in _grow(self.images_with, num_classes)[:num_classes]]}


def median_frequency_weights(stats: SplitStats, num_classes: int) -> list[float]:
    """One weight per class; 0.0 for a class absent from the split. Rounded to 5 significant digits, not decimal
    places: a dominant class beside rare ones (background beside defects of a few pixels) may weigh 1e-5, and a
    weight of 0 would leave that class out of the loss."""
    pixels = _grow(stats.counts, num_classes)[:num_classes].astype(np.float64)
    context = _grow(stats.context, num_classes)[:num_classes].astype(np.float64)
    present = (pixels > 0) & (context > 0)
    if not present.any():
        return [0.0] * num_classes
    freq = np.where(present, pixels / np.maximum(context, 1), 0.0)
    median = float(np.median(freq[present]))
    return [float(f"{median / f:.5g}") if p else 0.0 for f, p in zip(freq, present)]


def card_stats(splits: dict[str, SplitStats], num_classes: int, train_split: str = "train") -> dict:
    """The card's `stats`: normalisation (std at least MIN_STD) and class weights from `train_split`, and every
    split's figures (their std as measured)."""
    train = splits.get(train_split, SplitStats())
    mean, std = train.mean_std()
    std = [max(v, MIN_STD) for v in std]
    per_split = {name: s.to_dict(num_classes) for name, s in splits.items()}
    return {"mean": mean, "std": std, "class_weights": median_frequency_weights(train, num_classes),
            "class_pixels": {name: d["class_pixels"] for name, d in per_split.items()},  # the foundation's schema
            "splits": per_split}
