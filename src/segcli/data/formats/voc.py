"""PASCAL VOC 2012 segmentation: JPEGImages/, SegmentationClass/ (palette PNGs), ImageSets/Segmentation/*.txt.

`--src` may be the VOC2012 folder itself, or a folder holding VOC2012/ or VOCdevkit/VOC2012/. Masks are
palette-mode PNGs whose indices are the class ids 0..20 with 255 (the white object borders) = ignore.
Masks re-saved as RGB are mapped back through the VOC palette (border colour (224, 224, 192) → ignore).
Splits come from ImageSets/Segmentation/<split>.txt (train and val by default; trainval is their union).

The SBD-augmented set (10,582 training images, as most VOC results since DeepLab use): with SegmentationClassAug/
(grayscale PNGs of the same ids, 0..20 and 255) beside SegmentationClass/, a listed image without a mask of its
own takes its mask from there; VOC's own mask wins where both exist. Put the augmented list into
ImageSets/Segmentation/ (e.g. train_aug.txt, one stem per line or "/JPEGImages/<stem>.jpg /SegmentationClassAug/
<stem>.png" lines) and convert it as the train split: --split train=train_aug --split val.
"""

from __future__ import annotations

from pathlib import Path

from segcli.data.formats.folder import default_palette
from segcli.data.lint import error
from segcli.data.masks import MaskDecoder, value_lut
from segcli.data.palette import ColourMap
from segcli.data.source import Sample, Source
from segcli.data.splits import read_split_list
from segcli.errors import DataError

CLASSES = ["background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
           "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor"]
PALETTE = default_palette(len(CLASSES))  # VOC's own colour map: (0,0,0) background, (128,0,0) aeroplane, ...
BORDER_COLOUR = [224, 224, 192]  # colour of index 255 in the VOC palette
IGNORE_INDEX = 255
DEFAULT_SPLITS = ["train", "val"]
AUG_MASKS = "SegmentationClassAug"  # SBD's extra masks, converted to VOC ids


def find_root(src: Path) -> Path:
    for root in (src, src / "VOC2012", src / "VOCdevkit" / "VOC2012"):
        if (root / "JPEGImages").is_dir() and (root / "SegmentationClass").is_dir():
            return root
    raise DataError(f"{src}: not a VOC folder; expected JPEGImages/ and SegmentationClass/ in it, in VOC2012/ or in "
                    "VOCdevkit/VOC2012/")


def decoder() -> MaskDecoder:
    lut = value_lut({**{i: i for i in range(len(CLASSES))}, IGNORE_INDEX: IGNORE_INDEX})
    return MaskDecoder(len(CLASSES), IGNORE_INDEX, lut=lut, colours=ColourMap(PALETTE, [BORDER_COLOUR], IGNORE_INDEX),
                       raw_name="VOC palette indices (0..20 and 255 valid)")


def collect(src: str | Path, splits: list[str] | None = None) -> Source:
    root = find_root(Path(src))
    lists_dir = root / "ImageSets" / "Segmentation"
    wanted = list(splits or DEFAULT_SPLITS)
    mask_dirs = [root / "SegmentationClass"] + ([root / AUG_MASKS] if (root / AUG_MASKS).is_dir() else [])
    samples, findings = [], []
    for split in wanted:
        list_file = lists_dir / f"{split}.txt"
        if not list_file.is_file():
            raise DataError(f"{list_file}: split list not found; available: "
                            f"{', '.join(p.stem for p in sorted(lists_dir.glob('*.txt'))) or 'none'}")
        for stem in (Path(listed).name for listed in read_split_list(list_file)):  # "/JPEGImages/<stem>.jpg ..."
            image = root / "JPEGImages" / f"{stem}.jpg"
            mask = next((d / f"{stem}.png" for d in mask_dirs if (d / f"{stem}.png").is_file()), None)
            if not image.is_file():
                findings.append(error("missing_image", str(list_file), f"lists '{stem}' but {image} does not exist",
                                      split=split, stem=stem))
            elif mask is None:
                where = " or ".join(str(d / f"{stem}.png") for d in mask_dirs)
                findings.append(error("missing_mask", str(image), f"no mask {where}", split=split, stem=stem))
            else:
                samples.append(Sample(split=split, stem=stem, image=image, mask=mask))
    return Source(name="voc", classes=CLASSES, palette=PALETTE, ignore_index=IGNORE_INDEX, samples=samples,
                  decoder=decoder(), splits=wanted, findings=findings)
