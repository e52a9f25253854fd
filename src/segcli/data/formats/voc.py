"""PASCAL VOC 2012 segmentation: JPEGImages/, SegmentationClass/ (palette PNGs), ImageSets/Segmentation/*.txt.

`--src` may be the VOC2012 folder itself, or a folder holding VOC2012/ or VOCdevkit/VOC2012/. Masks are
palette-mode PNGs whose indices are the class ids 0..20 with 255 (the white object borders) = ignore.
Masks re-saved as RGB are mapped back through the VOC palette (border colour (224, 224, 192) → ignore).
Splits come from ImageSets/Segmentation/<split>.txt (train and val by default; trainval is their union).

The SBD-augmented set (10,582 training images, as most VOC results since DeepLab use): with SegmentationClassAug/
(grayscale PNGs of the same ids, 0..20 and 255) beside SegmentationClass/, a listed image without a mask of its
own takes its mask from there; VOC's own mask wins where both exist (a copy with SegmentationClassAug/ alone is read
from it). Put the augmented list into ImageSets/Segmentation/ (e.g. train_aug.txt, one stem per line or
"/JPEGImages/<stem>.jpg /SegmentationClassAug/<stem>.png" lines) and convert it as the train split:
--split train=train_aug --split val.
CVAT's "Segmentation mask 1.1" export has VOC's folders but its own colours (labelmap.txt): the error names the
`prepare folder --palette labelmap.txt` command that reads it.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from segcli.data.formats.folder import default_palette
from segcli.data.formats.native import duplicate, index, point_at
from segcli.data.lint import error, warning
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


def _is_root(path: Path) -> bool:
    """JPEGImages/ beside SegmentationClass/, or beside SegmentationClassAug/ alone (the augmented set as some copies
    of it are shared, without VOC's own masks)."""
    return (path / "JPEGImages").is_dir() and ((path / "SegmentationClass").is_dir() or (path / AUG_MASKS).is_dir())


def find_root(src: Path) -> Path:
    for root in (src, src / "VOC2012", src / "VOCdevkit" / "VOC2012"):
        if _is_root(root):
            return root
    for root in (src, src / "VOC2012", src / "VOCdevkit" / "VOC2012"):
        if (root / "JPEGImages").is_dir():  # the test download (VOC2012test.tar) alone: images without masks
            raise DataError(f"{root}: JPEGImages/ but no SegmentationClass/ (the masks); the test download has none: "
                            "extract the trainval download (VOCtrainval_11-May-2012.tar) and point --src at its "
                            "VOCdevkit/")
    raise DataError(f"{src}: not a VOC folder; expected JPEGImages/ and SegmentationClass/ in it, in VOC2012/ or in "
                    "VOCdevkit/VOC2012/; " + point_at(src, _is_root, "VOCdevkit/ (or VOCdevkit/VOC2012/)"))


def decoder() -> MaskDecoder:
    lut = value_lut({**{i: i for i in range(len(CLASSES))}, IGNORE_INDEX: IGNORE_INDEX})
    return MaskDecoder(len(CLASSES), IGNORE_INDEX, lut=lut, colours=ColourMap(PALETTE, [BORDER_COLOUR], IGNORE_INDEX),
                       raw_name="VOC palette indices (0..20 and 255 valid)")


def collect(src: str | Path, splits: list[str] | None = None) -> Source:
    root = find_root(Path(src))
    if (root / "labelmap.txt").is_file():  # CVAT's "Segmentation mask 1.1" export: VOC's folders, its own colours
        images, masks, labelmap = (shlex.quote(str(root / name)) for name in ("JPEGImages", "SegmentationClass",
                                                                              "labelmap.txt"))
        raise DataError(f"{root}: a CVAT segmentation mask export (labelmap.txt), whose classes and colours are its "
                        f"own, not VOC's: segcli prepare folder --images {images} --masks {masks} --palette "
                        f"{labelmap} --out DIR")
    lists_dir = root / "ImageSets" / "Segmentation"
    wanted = list(splits or DEFAULT_SPLITS)
    mask_dirs = [d for d in (root / "SegmentationClass", root / AUG_MASKS) if d.is_dir()]
    samples, findings = [], []
    images, image_twins = index(root / "JPEGImages")  # by stem: x.jpg, or x.JPG as some copies have it
    masks = [index(d) for d in mask_dirs]
    lists = {}
    for split in wanted:
        list_file = lists_dir / f"{split}.txt"
        if not list_file.is_file():
            there = sorted(p.stem for p in lists_dir.glob("*.txt") if not p.name.startswith("."))  # not macOS's ._x
            raise DataError(f"{list_file}: split list not found; available: {', '.join(there) or 'none'}")
        # "/JPEGImages/<stem>.jpg ..."; a stem listed twice (lists concatenated) is read once
        lists[split] = list(dict.fromkeys(Path(line).name for line in read_split_list(list_file)))
    splits_of: dict[str, list[str]] = {}
    for split, listed in lists.items():
        for stem in listed:
            splits_of.setdefault(stem, []).append(split)
    for split, listed in lists.items():
        list_file = lists_dir / f"{split}.txt"
        found, unlabelled = len(samples), 0
        for stem in listed:
            if len(splits_of[stem]) > 1:  # which split it belongs to is not known: left out of each (--keep-going)
                others = ", ".join(f"'{s}'" for s in splits_of[stem] if s != split)
                findings.append(error("split_overlap", str(list_file), f"'{stem}' is also listed in split {others}; a "
                                      "pair belongs to one split: choose splits that do not overlap (VOC's trainval "
                                      "is train + val)", split=split, stem=stem))
                continue
            image, mask = images.get(stem), None
            twins = image_twins.get(stem)
            for files, mask_twins in masks:  # VOC's own mask first, then SegmentationClassAug's
                if stem in files or stem in mask_twins:
                    mask, twins = files.get(stem), twins or mask_twins.get(stem)
                    break
            if twins:
                findings.append(duplicate(split, stem, twins))
            elif image is None:
                findings.append(error("missing_image", str(list_file), f"lists '{stem}' but "
                                      f"{root / 'JPEGImages' / stem}.jpg does not exist", split=split, stem=stem))
            elif mask is None:
                where = " or ".join(str(d / f"{stem}.png") for d in mask_dirs)
                findings.append(error("missing_mask", str(image), f"no mask {where}", split=split, stem=stem))
                unlabelled += 1
            else:
                samples.append(Sample(split=split, stem=stem, image=image, mask=mask))
        if listed and unlabelled == len(listed) and len(samples) == found:
            raise DataError(f"{list_file}: none of the {len(listed)} images it lists has a mask in "
                            f"{' or '.join(d.name + '/' for d in mask_dirs)} (VOC's test split is released without "
                            f"masks); leave '{split}' out of --split")
    own = masks[0][0] if mask_dirs and mask_dirs[0].name == "SegmentationClass" else {}
    findings += _unlisted(own, lists_dir, images, splits_of)
    return Source(name="voc", classes=CLASSES, palette=PALETTE, ignore_index=IGNORE_INDEX, samples=samples,
                  decoder=decoder(), splits=wanted, findings=findings,
                  inputs=[lists_dir / f"{split}.txt" for split in wanted])


def _unlisted(masks: dict[str, Path], lists_dir: Path, images: dict, chosen: dict) -> list:
    """An `unassigned` warning (as the folder format gives) for each pair with a mask in VOC's own
    SegmentationClass/ (`masks`) that no split list in ImageSets/Segmentation names, a pair added by hand and not
    listed: left out without a word before. The pairs of lists not chosen (--split train leaves val's out) are
    left out on purpose, and SegmentationClassAug's masks are SBD's, for images VOC's lists do not name."""
    if not masks:
        return []
    listed = set(chosen)
    for list_file in lists_dir.glob("*.txt"):
        if not list_file.name.startswith("."):  # not macOS's ._x
            try:
                listed.update(Path(line).name for line in read_split_list(list_file))
            except DataError:  # a list not asked for that cannot be read: not this check's to report
                continue
    return [warning("unassigned", str(masks[stem]), f"in no split list in {lists_dir}; left out", stem=stem)
            for stem in sorted(masks) if stem in images and stem not in listed]
