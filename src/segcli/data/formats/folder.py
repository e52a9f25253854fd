"""A plain pair of folders: images/ and masks/ holding class ids, matched by relative stem.

Nested folders are allowed (`a/b/x.jpg` pairs with `a/b/x.png`). Without split
lists, a seeded random fraction of the pairs becomes the val split.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from segcli.data.layout import Sample
from segcli.errors import ConfigError, DataError
from segcli.inference.io import list_images, read_mask


def _by_stem(root: Path, kind: str) -> dict[str, Path]:
    if not root.is_dir():
        raise DataError(f"{root}: {kind} folder not found; check --{kind}")
    found: dict[str, Path] = {}
    for path in list_images(root):
        stem = path.relative_to(root).with_suffix("").as_posix()
        if stem in found:
            raise DataError(f"{path}: duplicate stem '{stem}' (also {found[stem]}); keep one file per stem")
        found[stem] = path
    if not found:
        raise DataError(f"{root}: no images found in the {kind} folder")
    return found


def parse_classes(spec: str | None, ids_found: list[int]) -> list[str]:
    """'a,b,c' or a file with one name per line; None → class_<id> for ids 0..max found."""
    if spec is None:
        return [f"class_{i}" for i in range(max(ids_found) + 1 if ids_found else 1)]
    path = Path(spec)
    names = path.read_text(encoding="utf-8").splitlines() if path.is_file() else spec.split(",")
    names = [n.strip() for n in names if n.strip()]
    if not names:
        raise ConfigError(f"--classes {spec!r} names no classes; give 'a,b,c' or a file with one name per line")
    return names


def default_palette(num_classes: int) -> list[list[int]]:
    """Distinct, deterministic colours (the PASCAL VOC bit-interleaving scheme)."""
    palette = []
    for i in range(num_classes):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        palette.append([r, g, b])
    return palette


def collect(images: str | Path, masks: str | Path, val_fraction: float, seed: int) -> list[Sample]:
    """Match pairs and assign train/val splits."""
    image_map, mask_map = _by_stem(Path(images), "images"), _by_stem(Path(masks), "masks")
    missing = sorted(set(image_map) - set(mask_map))
    if missing:
        raise DataError(f"{image_map[missing[0]]}: no mask with stem '{missing[0]}' in {masks} "
                        f"({len(missing)} image(s) without a mask); add the masks or remove the images")
    orphans = sorted(set(mask_map) - set(image_map))
    if orphans:
        raise DataError(f"{mask_map[orphans[0]]}: no image with stem '{orphans[0]}' in {images} ({len(orphans)} mask(s) without an image)")
    if not 0.0 <= val_fraction < 1.0:
        raise ConfigError(f"--val-fraction {val_fraction} must be in [0, 1)")
    stems = sorted(image_map)
    order = np.random.default_rng(seed).permutation(len(stems))
    num_val = int(round(val_fraction * len(stems)))
    if val_fraction > 0 and len(stems) > 1:
        num_val = min(max(num_val, 1), len(stems) - 1)
    val = {stems[i] for i in order[:num_val]}
    return [Sample(split="val" if s in val else "train", stem=s, image=image_map[s], mask=mask_map[s]) for s in stems]


def ids_found(samples: list[Sample], ignore_index: int) -> list[int]:
    """Sorted class ids present in the masks (ignore excluded)."""
    present: set[int] = set()
    for sample in samples:
        present.update(int(v) for v in np.unique(read_mask(sample.mask)))
    present.discard(ignore_index)
    return sorted(present)
