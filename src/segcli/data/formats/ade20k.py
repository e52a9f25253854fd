"""ADE20K scene parsing (ADEChallengeData2016): images/{training,validation}/*.jpg + annotations/…/*.png.

Annotations hold 0 = "other" (not one of the 150 classes) and 1..150; segcli stores 0 → ignore (255)
and k → k - 1 ("reduce zero label"), so ids 0..149 follow the class table below (the benchmark's
objectInfo150 order, short names). Values above 150 are a lint error.
"""

from __future__ import annotations

from itertools import islice
from pathlib import Path

from segcli.data.formats.native import by_stem, point_at, unlabelled_split
from segcli.data.masks import MaskDecoder, value_lut
from segcli.data.source import Source, pair_by_stem
from segcli.errors import DataError

CLASSES = [
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass", "cabinet", "sidewalk",
    "person", "earth", "door", "table", "mountain", "plant", "curtain", "chair", "car", "water", "painting", "sofa",
    "shelf", "house", "sea", "mirror", "rug", "field", "armchair", "seat", "fence", "desk", "rock", "wardrobe", "lamp",
    "bathtub", "railing", "cushion", "base", "box", "column", "signboard", "chest of drawers", "counter", "sand", "sink",
    "skyscraper", "fireplace", "refrigerator", "grandstand", "path", "stairs", "runway", "case", "pool table", "pillow",
    "screen door", "stairway", "river", "bridge", "bookcase", "blind", "coffee table", "toilet", "flower", "book", "hill",
    "bench", "countertop", "stove", "palm", "kitchen island", "computer", "swivel chair", "boat", "bar",
    "arcade machine", "hovel", "bus", "towel", "light", "truck", "tower", "chandelier", "awning", "streetlight",
    "booth", "television receiver", "airplane", "dirt track", "apparel", "pole", "land", "bannister", "escalator",
    "ottoman", "bottle", "buffet", "poster", "stage", "van", "ship", "fountain", "conveyer belt", "canopy", "washer",
    "plaything", "swimming pool", "stool", "barrel", "basket", "waterfall", "tent", "bag", "minibike", "cradle", "oven",
    "ball", "food", "step", "tank", "trade name", "microwave", "pot", "animal", "bicycle", "lake", "dishwasher",
    "screen", "blanket", "sculpture", "hood", "sconce", "vase", "traffic light", "tray", "ashcan", "fan", "pier",
    "crt screen", "plate", "monitor", "bulletin board", "shower", "radiator", "glass", "clock", "flag",
]
PALETTE = [
    [120, 120, 120], [180, 120, 120], [6, 230, 230], [80, 50, 50], [4, 200, 3], [120, 120, 80], [140, 140, 140],
    [204, 5, 255], [230, 230, 230], [4, 250, 7], [224, 5, 255], [235, 255, 7], [150, 5, 61], [120, 120, 70],
    [8, 255, 51], [255, 6, 82], [143, 255, 140], [204, 255, 4], [255, 51, 7], [204, 70, 3], [0, 102, 200],
    [61, 230, 250], [255, 6, 51], [11, 102, 255], [255, 7, 71], [255, 9, 224], [9, 7, 230], [220, 220, 220],
    [255, 9, 92], [112, 9, 255], [8, 255, 214], [7, 255, 224], [255, 184, 6], [10, 255, 71], [255, 41, 10],
    [7, 255, 255], [224, 255, 8], [102, 8, 255], [255, 61, 6], [255, 194, 7], [255, 122, 8], [0, 255, 20],
    [255, 8, 41], [255, 5, 153], [6, 51, 255], [235, 12, 255], [160, 150, 20], [0, 163, 255], [140, 140, 140],
    [250, 10, 15], [20, 255, 0], [31, 255, 0], [255, 31, 0], [255, 224, 0], [153, 255, 0], [0, 0, 255],
    [255, 71, 0], [0, 235, 255], [0, 173, 255], [31, 0, 255], [11, 200, 200], [255, 82, 0], [0, 255, 245],
    [0, 61, 255], [0, 255, 112], [0, 255, 133], [255, 0, 0], [255, 163, 0], [255, 102, 0], [194, 255, 0],
    [0, 143, 255], [51, 255, 0], [0, 82, 255], [0, 255, 41], [0, 255, 173], [10, 0, 255], [173, 255, 0],
    [0, 255, 153], [255, 92, 0], [255, 0, 255], [255, 0, 245], [255, 0, 102], [255, 173, 0], [255, 0, 20],
    [255, 184, 184], [0, 31, 255], [0, 255, 61], [0, 71, 255], [255, 0, 204], [0, 255, 194], [0, 255, 82],
    [0, 10, 255], [0, 112, 255], [51, 0, 255], [0, 194, 255], [0, 122, 255], [0, 255, 163], [255, 153, 0],
    [0, 255, 10], [255, 112, 0], [143, 255, 0], [82, 0, 255], [163, 255, 0], [255, 235, 0], [8, 184, 170],
    [133, 0, 255], [0, 255, 92], [184, 0, 255], [255, 0, 31], [0, 184, 255], [0, 214, 255], [255, 0, 112],
    [92, 255, 0], [0, 224, 255], [112, 224, 255], [70, 184, 160], [163, 0, 255], [153, 0, 255], [71, 255, 0],
    [255, 0, 163], [255, 204, 0], [255, 0, 143], [0, 255, 235], [133, 255, 0], [255, 0, 235], [245, 0, 255],
    [255, 0, 122], [255, 245, 0], [10, 190, 212], [214, 255, 0], [0, 204, 255], [20, 0, 255], [255, 255, 0],
    [0, 153, 255], [0, 41, 255], [0, 255, 204], [41, 0, 255], [41, 255, 0], [173, 0, 255], [0, 245, 255],
    [71, 0, 255], [122, 0, 255], [0, 255, 184], [0, 92, 255], [184, 255, 0], [0, 133, 255], [255, 214, 0],
    [25, 194, 194], [102, 255, 0], [92, 0, 255],
]
IGNORE_INDEX = 255
OTHER = 0  # "other objects": not one of the 150 classes
SPLIT_DIRS = {"train": "training", "val": "validation"}


def decoder() -> MaskDecoder:
    mapping = {OTHER: IGNORE_INDEX, **{k: k - 1 for k in range(1, len(CLASSES) + 1)}}
    return MaskDecoder(len(CLASSES), IGNORE_INDEX, lut=value_lut(mapping), raw_name="ADE20K values (0..150 valid)")


def _is_root(path: Path) -> bool:
    return (path / "images").is_dir() and (path / "annotations").is_dir()


def find_root(src: Path) -> Path:
    for root in (src, src / "ADEChallengeData2016"):
        if _is_root(root):
            return root
    for root in (src, *(p for p in islice(src.glob("*"), 5000) if p.is_dir() and not p.name.startswith("."))):
        # the full ADE20K release, ~3,000 classes, not the 150: images/ADE/ (2021), index_ade20k.mat beside images/
        # (ADE20K_2016_07_26)
        if (root / "images" / "ADE").is_dir() or any((root / f"index_ade20k.{x}").is_file() for x in ("mat", "pkl")):
            raise DataError(f"{root}: the full ADE20K release (*_seg.png, ~3,000 classes), not the 150-class "
                            "SceneParsing benchmark segcli reads; download ADEChallengeData2016.zip (SceneParsing) "
                            "and point --src at its ADEChallengeData2016/")
    raise DataError(f"{src}: not an ADEChallengeData2016 folder; expected images/ and annotations/ in it; "
                    + point_at(src, _is_root, "ADEChallengeData2016/ (from ADEChallengeData2016.zip)"))


def collect(src: str | Path, splits: list[str] | None = None) -> Source:
    root = find_root(Path(src))
    wanted = list(splits or SPLIT_DIRS)
    samples, findings = [], []
    for split in wanted:
        if split not in SPLIT_DIRS:
            raise DataError(f"ADE20K has no split '{split}'; choose from {', '.join(SPLIT_DIRS)} (read from the folders "
                            f"{', '.join(SPLIT_DIRS.values())})")
        image_dir, mask_dir = root / "images" / SPLIT_DIRS[split], root / "annotations" / SPLIT_DIRS[split]
        if not image_dir.is_dir():
            others = [s for s in wanted if s != split and (root / "images" / SPLIT_DIRS.get(s, s)).is_dir()]
            leave_out = (f", or leave '{split}' out: {' '.join(f'--split {s}' for s in others)}"
                         if others and split != "train" else "")  # without train there is nothing to train on
            raise DataError(f"{image_dir}: split folder not found; extract images/{SPLIT_DIRS[split]}/ from "
                            f"ADEChallengeData2016.zip{leave_out}")
        images = by_stem(image_dir, split, findings)
        known = len(findings)
        masks = by_stem(mask_dir, split, findings)
        if len(findings) == known:  # no annotations/<folder>/, or an empty one: one line, not a finding per image
            unlabelled_split(split, images, masks, image_dir, mask_dir, "annotations (<name>.png)",
                             [s for s in wanted if s != split],
                             f"extract annotations/{SPLIT_DIRS[split]}/ from ADEChallengeData2016.zip")
        pairs, missing = pair_by_stem(split, images, masks, lambda stem: f"no {mask_dir / (stem + '.png')}",
                                      lambda stem: f"no image {stem}.* in {image_dir}")
        samples += pairs
        findings += missing
    return Source(name="ade20k", classes=CLASSES, palette=PALETTE, ignore_index=IGNORE_INDEX, samples=samples,
                  decoder=decoder(), splits=wanted, findings=findings)
