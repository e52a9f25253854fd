"""CamVid in the SegNet layout: train/ trainannot/ val/ valannot/ test/ testannot/.

Masks hold ids 0..10 for 11 classes and 11 for Unlabelled, which becomes the ignore index (255).
Any other value is reported by the lint (never silently mapped).
"""

from __future__ import annotations

from pathlib import Path

from segcli.data.masks import MaskDecoder, value_lut
from segcli.data.source import Source, pair_by_stem
from segcli.errors import DataError
from segcli.inference.io import list_images

CLASSES = ["Sky", "Building", "Pole", "Road", "Pavement", "Tree", "SignSymbol", "Fence", "Car", "Pedestrian", "Bicyclist"]
PALETTE = [[128, 128, 128], [128, 0, 0], [192, 192, 128], [128, 64, 128], [60, 40, 222], [128, 128, 0],
           [192, 128, 128], [64, 64, 128], [64, 0, 128], [64, 64, 0], [0, 128, 192]]
IGNORE_INDEX = 255
UNLABELLED = 11
SPLITS = ("train", "val", "test")


def decoder() -> MaskDecoder:
    """SegNet ids → segcli ids: 0..10 unchanged, Unlabelled (11) → 255, anything else invalid."""
    lut = value_lut({**{i: i for i in range(len(CLASSES))}, UNLABELLED: IGNORE_INDEX})
    return MaskDecoder(len(CLASSES), IGNORE_INDEX, lut=lut, raw_name="CamVid ids (0..11 valid)")


def collect(src: str | Path, splits: list[str] | None = None) -> Source:
    """Every (image, annotation) pair of the splits present under `src` (or of `splits`)."""
    src = Path(src)
    if not src.is_dir():
        raise DataError(f"{src}: CamVid source directory not found; pass --src pointing at the folder holding train/ and trainannot/")
    present = [s for s in (splits or SPLITS) if (src / s).is_dir()]
    if "train" not in present:
        raise DataError(f"{src}: no train/ folder; expected the SegNet layout (train/, trainannot/, val/, valannot/, test/, testannot/)")
    samples, findings = [], []
    for split in present:
        annot_dir = src / f"{split}annot"
        if not annot_dir.is_dir():
            raise DataError(f"{annot_dir}: missing annotation folder for {src / split}")
        masks = {p.stem: p for p in list_images(annot_dir)}
        images = {p.stem: p for p in list_images(src / split)}
        pairs, missing = pair_by_stem(split, {stem: images[stem] for stem in sorted(images)}, masks,
                                      lambda stem: f"no annotation {annot_dir / (stem + '.png')}",
                                      lambda stem: f"no image {stem}.* in {src / split}")
        samples += pairs
        findings += missing
    return Source(name="camvid", classes=CLASSES, palette=PALETTE, ignore_index=IGNORE_INDEX, samples=samples,
                  decoder=decoder(), splits=present, findings=findings)
