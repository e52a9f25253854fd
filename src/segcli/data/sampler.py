"""Rare-class-aware image sampling: repeat-factor sampling (Gupta et al., LVIS 2019) over class presence.

f(c) = fraction of training images that contain class c; r(c) = max(1, sqrt(threshold / f(c)));
an image is drawn with weight max over its classes of r(c). Images with a class present in fewer
than `threshold` of the images are oversampled; the epoch keeps its length. Each epoch draws image i
floor(e_i) or ceil(e_i) times, e_i = length * w_i / sum(w) its expected count (the remainders drawn without
replacement): with every weight 1 that is each image once, a shuffled pass. (Drawing with replacement, as
torch's WeightedRandomSampler does, left a third of the images out of every epoch even with no rare class.)
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
    written = path.stat().st_mtime_ns if known else 0
    presence = []
    for entry, (_, mask) in zip(card.splits[split], card.pairs(split)):
        ids = known.get(entry["mask"])
        if not isinstance(ids, list) or _newer(mask, written):  # a mask edited since prepare wrote the file
            ids = [int(v) for v in np.unique(read_mask(mask)) if v != card.ignore_index]
        presence.append(ids)
    return presence


def _newer(path, than_ns: int) -> bool:
    """Whether file `path` was modified after time `than_ns` (or cannot be looked at: then it is read)."""
    try:
        return path.stat().st_mtime_ns > than_ns
    except OSError:
        return True


def repeat_factors(presence: list[list[int]], num_classes: int, threshold: float) -> np.ndarray:
    """(N,) float64 weight per image (>= 1)."""
    counts = np.zeros(num_classes)
    for ids in presence:
        counts[[i for i in ids if i < num_classes]] += 1
    freq = counts / max(len(presence), 1)
    per_class = np.where(freq > 0, np.maximum(1.0, np.sqrt(threshold / np.maximum(freq, 1e-12))), 1.0)
    return np.array([max((per_class[i] for i in ids if i < num_classes), default=1.0) for ids in presence])


class RepeatFactorSampler(torch.utils.data.Sampler):
    """`num_samples` indices per epoch, index i floor(e_i) or ceil(e_i) times (e_i = num_samples * w_i / sum(w)), in
    a shuffled order, from torch's global generator (which `seed` in the train config seeds)."""

    def __init__(self, weights, num_samples: int) -> None:
        self.weights = torch.as_tensor(weights, dtype=torch.float64)
        self.num_samples = int(num_samples)

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self):
        expected = self.weights * (self.num_samples / float(self.weights.sum()))
        counts = (expected + 1e-9).floor()  # (an expected 2.9999999999 of float rounding is 3)
        left = self.num_samples - int(counts.sum())
        remainders = (expected - counts).clamp_min(0)
        if left > 0 and int((remainders > 0).sum()) >= left:
            counts[torch.multinomial(remainders, left, replacement=False)] += 1
        elif left > 0:  # float rounding left fewer remainders than draws: by weight
            counts += torch.bincount(torch.multinomial(self.weights, left, replacement=True), minlength=len(counts))
        indices = torch.repeat_interleave(torch.arange(len(counts)), counts.long())
        return iter(indices[torch.randperm(len(indices))].tolist())


def rare_class_sampler(card: DatasetCard, split: str, indices: list[int],
                       threshold: float, repeat: int = 1) -> RepeatFactorSampler:
    """A sampler over the dataset built from `indices` of `split`, drawing len(indices) * repeat images per
    epoch (RepeatFactorSampler)."""
    presence = class_presence(card, split)
    weights = repeat_factors([presence[i] for i in indices], card.num_classes, float(threshold))
    return RepeatFactorSampler(weights, num_samples=len(indices) * int(repeat))

