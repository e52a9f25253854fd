"""Rare-class-aware image sampling: repeat-factor sampling (Gupta et al., LVIS 2019) over class presence.

f(c) = fraction of training images that contain class c; r(c) = max(1, sqrt(threshold / f(c)));
an image is drawn with weight max over its classes of r(c). Images with a class present in fewer
than `threshold` of the images are oversampled; the epoch keeps its length.
"""

from __future__ import annotations

import json

import numpy as np
import torch

from segcli.data.card import DatasetCard
from segcli.inference.io import read_mask

PRESENCE_NAME = "class_presence.json"


def class_presence(card: DatasetCard, split: str) -> list[list[int]]:
    """Class ids present in each entry of `split`: from DIR/class_presence.json, by mask file (a card edited by hand,
    entries moved between splits, still finds each its own; the list per split it held before was trusted when only
    its length matched), else read from the mask."""
    known: dict = {}
    path = card.root / PRESENCE_NAME
    if path.is_file():
        try:
            stored = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):  # unreadable: the masks tell
            stored = {}
        known = stored.get("masks") if isinstance(stored, dict) else None
        known = known if isinstance(known, dict) else {}
    presence = []
    for entry, (_, mask) in zip(card.splits[split], card.pairs(split)):
        ids = known.get(entry["mask"])
        if not isinstance(ids, list):
            ids = [int(v) for v in np.unique(read_mask(mask)) if v != card.ignore_index]
        presence.append(ids)
    return presence


def repeat_factors(presence: list[list[int]], num_classes: int, threshold: float) -> np.ndarray:
    """(N,) float64 weight per image (>= 1)."""
    counts = np.zeros(num_classes)
    for ids in presence:
        counts[[i for i in ids if i < num_classes]] += 1
    freq = counts / max(len(presence), 1)
    per_class = np.where(freq > 0, np.maximum(1.0, np.sqrt(threshold / np.maximum(freq, 1e-12))), 1.0)
    return np.array([max((per_class[i] for i in ids if i < num_classes), default=1.0) for ids in presence])


def rare_class_sampler(card: DatasetCard, split: str, indices: list[int],
                       threshold: float, repeat: int = 1) -> torch.utils.data.WeightedRandomSampler:
    """A sampler over the dataset built from `indices` of `split`, drawing len(indices) * repeat images per
    epoch (from torch's global generator, which `seed` in the train config seeds)."""
    presence = class_presence(card, split)
    weights = repeat_factors([presence[i] for i in indices], card.num_classes, float(threshold))
    return torch.utils.data.WeightedRandomSampler(torch.as_tensor(weights), num_samples=len(indices) * int(repeat),
                                                 replacement=True)

