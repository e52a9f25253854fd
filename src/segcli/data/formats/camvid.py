"""CamVid in the SegNet layout: train/ trainannot/ val/ valannot/ test/ testannot/.

Masks hold ids 0..10 for 11 classes and 11 for Unlabelled, which becomes the
ignore index (255).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np

from segcli.data.layout import Sample
from segcli.errors import DataError
from segcli.inference.io import list_images

CLASSES = ["Sky", "Building", "Pole", "Road", "Pavement", "Tree", "SignSymbol", "Fence", "Car", "Pedestrian", "Bicyclist"]
PALETTE = [[128, 128, 128], [128, 0, 0], [192, 192, 128], [128, 64, 128], [60, 40, 222], [128, 128, 0],
           [192, 128, 128], [64, 64, 128], [64, 0, 128], [64, 64, 0], [0, 128, 192]]
IGNORE_INDEX = 255
UNLABELLED = 11
SPLITS = ("train", "val", "test")


def label_map(mask: np.ndarray) -> np.ndarray:
    """SegNet ids → segcli ids: Unlabelled (11) → 255, others unchanged (out-of-range values are kept, and rejected later)."""
    mask = mask.copy()
    mask[mask == UNLABELLED] = IGNORE_INDEX
    return mask


def samples(src: str | Path) -> Iterator[Sample]:
    """Every (image, annotation) pair of the splits present under `src`."""
    src = Path(src)
    if not src.is_dir():
        raise DataError(f"{src}: CamVid source directory not found; pass --src pointing at the folder holding train/ and trainannot/")
    present = [s for s in SPLITS if (src / s).is_dir()]
    if "train" not in present:
        raise DataError(f"{src}: no train/ folder; expected the SegNet layout (train/, trainannot/, val/, valannot/, test/, testannot/)")
    for split in present:
        annot_dir = src / f"{split}annot"
        if not annot_dir.is_dir():
            raise DataError(f"{annot_dir}: missing annotation folder for {src / split}")
        masks = {p.stem: p for p in list_images(annot_dir)}
        for image in list_images(src / split):
            if image.stem not in masks:
                raise DataError(f"{image}: no annotation {annot_dir / (image.stem + '.png')}; add it or remove the image")
            yield Sample(split=split, stem=image.stem, image=image, mask=masks[image.stem])
