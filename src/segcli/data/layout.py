"""Write a dataset into the canonical layout, atomically, with its card and statistics.

    DIR/images/<split>/<stem>.<ext>   images (copied byte for byte, or PNG when generated)
    DIR/masks/<split>/<stem>.png      class ids (8-bit, 16-bit when there are > 255 ids)
    DIR/dataset.yaml                  the card (see segcli.data.card)

Everything is written into a temporary sibling directory that replaces DIR only
when every pair has been read, checked and written: a failure or Ctrl-C leaves
DIR as it was.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from segcli.data.card import CARD_NAME, DatasetCard, dump_card
from segcli.errors import ConfigError, DataError
from segcli.inference.io import atomic_write_bytes, read_image, read_mask, write_png


@dataclass
class Sample:
    """One image/mask pair of a native dataset.

    image: a file to copy, or an (H, W, 3) uint8 RGB array to write as PNG.
    mask: a file holding ids, or an (H, W) integer array of ids.
    """

    split: str
    stem: str
    image: Path | np.ndarray
    mask: Path | np.ndarray


def _mask_array(sample: Sample, label_map: Callable[[np.ndarray], np.ndarray] | None) -> np.ndarray:
    mask = read_mask(sample.mask) if isinstance(sample.mask, Path) else sample.mask
    return label_map(mask) if label_map is not None else mask


def _check_values(mask: np.ndarray, num_classes: int, ignore_index: int, where: object) -> np.ndarray:
    counts = np.bincount(mask.ravel(), minlength=num_classes)
    bad = [v for v in np.flatnonzero(counts) if v >= num_classes and v != ignore_index]
    if bad:
        shown = ", ".join(str(v) for v in bad[:8])
        raise DataError(f"{where}: mask values {shown} are not class ids 0..{num_classes - 1} nor ignore {ignore_index}; "
                        "fix the mask, add classes, or set --ignore-index")
    return counts[:num_classes]


def write_dataset(out: str | Path, name: str, classes: list[str], palette: list[list[int]], ignore_index: int,
                  samples: Iterable[Sample], label_map: Callable[[np.ndarray], np.ndarray] | None = None,
                  overwrite: bool = False, progress: Callable[[Sample], None] | None = None) -> DatasetCard:
    """Check and write every sample, compute statistics, and put the result at `out`."""
    out = Path(out).resolve()
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise ConfigError(f"{out} already exists and is not empty; choose another --out or pass --overwrite")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        card = _write_all(staging, name, classes, palette, ignore_index, samples, label_map, progress)
        _swap_into_place(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    card.root = out
    return card


def _write_all(root, name, classes, palette, ignore_index, samples, label_map, progress) -> DatasetCard:
    num_classes = len(classes)
    splits: dict[str, list[dict[str, str]]] = {}
    class_pixels: dict[str, np.ndarray] = {}
    channel_sum = np.zeros(3)
    channel_sq = np.zeros(3)
    train_pixels = 0
    seen: set[tuple[str, str]] = set()
    for sample in samples:
        if (sample.split, sample.stem) in seen:
            raise DataError(f"{sample.image}: duplicate stem '{sample.stem}' in split '{sample.split}'; rename one of the files")
        seen.add((sample.split, sample.stem))
        image = read_image(sample.image) if isinstance(sample.image, Path) else sample.image
        mask = _mask_array(sample, label_map)
        where = sample.mask if isinstance(sample.mask, Path) else sample.stem
        if image.shape[:2] != mask.shape[:2]:
            raise DataError(f"{where}: mask is {mask.shape[1]}x{mask.shape[0]} but its image {sample.image} is "
                            f"{image.shape[1]}x{image.shape[0]}; masks must match their image's size")
        counts = _check_values(mask, num_classes, ignore_index, where)
        class_pixels[sample.split] = class_pixels.get(sample.split, 0) + counts

        ext = sample.image.suffix.lower() if isinstance(sample.image, Path) else ".png"
        image_rel = f"images/{sample.split}/{sample.stem}{ext}"
        mask_rel = f"masks/{sample.split}/{sample.stem}.png"
        if isinstance(sample.image, Path):
            target = root / image_rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(sample.image, target)
        else:
            write_png(root / image_rel, image)
        write_png(root / mask_rel, mask.astype(np.uint8 if max(num_classes - 1, ignore_index) < 256 else np.uint16))
        splits.setdefault(sample.split, []).append({"image": image_rel, "mask": mask_rel})
        if sample.split == "train":
            pixels = image.reshape(-1, 3).astype(np.float64) / 255.0
            channel_sum += pixels.sum(0)
            channel_sq += (pixels**2).sum(0)
            train_pixels += pixels.shape[0]
        if progress:
            progress(sample)
    if not splits:
        raise DataError("no image/mask pairs found; check the source paths")
    if train_pixels == 0:
        raise DataError(f"no 'train' split among {', '.join(splits)}; a dataset needs training images")
    mean = channel_sum / train_pixels
    std = np.sqrt(np.maximum(channel_sq / train_pixels - mean**2, 1e-12))
    stats = {"mean": [round(float(v), 6) for v in mean], "std": [round(float(v), 6) for v in std],
             "class_pixels": {s: [int(v) for v in c] for s, c in class_pixels.items()}}
    card = DatasetCard(root=root, name=name, classes=list(classes), palette=[list(map(int, c)) for c in palette],
                       ignore_index=int(ignore_index), splits=splits, stats=stats)
    atomic_write_bytes(root / CARD_NAME, dump_card(card).encode("utf-8"))
    return card


def _swap_into_place(staging: Path, out: Path) -> None:
    """Replace `out` by `staging`; an old `out` is removed only after the new one is in place."""
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        os.replace(out, old)
    os.replace(staging, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
