"""Cityscapes fine annotations: leftImg8bit/<split>/<city>/*_leftImg8bit.png + gtFine/<split>/<city>/*_gtFine_labelIds.png.

The 34 label ids (0..33) become the 19 official train ids (cityscapesScripts `labels.py`); every
label with trainId 255 or -1 becomes the ignore index 255. Any other value is a lint error.
Splits: train and val by default (the public test annotations are all 'unlabeled').
A copy that holds only cityscapesScripts' *_gtFine_labelTrainIds.png (its createTrainIdLabelImgs output, values
0..18 and 255) is read from those instead, as they are.
KITTI's semantic benchmark (data_semantics/: training/image_2/*.png + training/semantic/*.png) holds the same label ids
and is read with the same mapping; its testing/ has no labels, so val is a seeded random share of training/.
"""

from __future__ import annotations

from pathlib import Path

from segcli.data.formats.native import below, by_stem, index, nearby, point_at, unlabelled_split
from segcli.data.masks import MaskDecoder, value_lut
from segcli.data.source import Source, pair_by_stem
from segcli.data.splits import DEFAULT_VAL_FRACTION, random_split
from segcli.errors import ConfigError, DataError

# (train id, name, colour) in train-id order; LABEL_TO_TRAIN: label id → train id for these 19.
CLASSES = ["road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign", "vegetation",
           "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle"]
PALETTE = [[128, 64, 128], [244, 35, 232], [70, 70, 70], [102, 102, 156], [190, 153, 153], [153, 153, 153],
           [250, 170, 30], [220, 220, 0], [107, 142, 35], [152, 251, 152], [70, 130, 180], [220, 20, 60], [255, 0, 0],
           [0, 0, 142], [0, 0, 70], [0, 60, 100], [0, 80, 100], [0, 0, 230], [119, 11, 32]]
LABEL_TO_TRAIN = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12, 26: 13,
                  27: 14, 28: 15, 31: 16, 32: 17, 33: 18}
NUM_LABEL_IDS = 34  # 0 unlabeled … 33 bicycle; all others (ego vehicle, parking, guard rail, caravan, …) → ignore
IGNORE_INDEX = 255
DEFAULT_SPLITS = ["train", "val"]
IMAGE_SUFFIX, MASK_SUFFIX = "_leftImg8bit", "_gtFine_labelIds"
TRAIN_ID_SUFFIX = "_gtFine_labelTrainIds"  # cityscapesScripts' createTrainIdLabelImgs: train ids 0..18, 255


def decoder(train_ids: bool = False) -> MaskDecoder:
    """label ids 0..33 → train ids (255 for the rest); with `train_ids`, masks already in train ids (0..18, 255)."""
    if train_ids:
        mapping = {**{i: i for i in range(len(CLASSES))}, IGNORE_INDEX: IGNORE_INDEX}
        return MaskDecoder(len(CLASSES), IGNORE_INDEX, lut=value_lut(mapping),
                           raw_name="Cityscapes train ids (0..18 and 255 valid)")
    mapping = {label: LABEL_TO_TRAIN.get(label, IGNORE_INDEX) for label in range(NUM_LABEL_IDS)}
    return MaskDecoder(len(CLASSES), IGNORE_INDEX, lut=value_lut(mapping), raw_name="Cityscapes label ids (0..33 valid)")


KITTI_IMAGES, KITTI_MASKS = "training/image_2", "training/semantic"  # KITTI semantics: Cityscapes label ids


def _is_root(path: Path) -> bool:
    return _is_cityscapes(path) or _is_kitti(path)


def _is_cityscapes(path: Path) -> bool:
    return (path / "leftImg8bit").is_dir() and (path / "gtFine").is_dir()


def _is_kitti(path: Path) -> bool:
    return (path / KITTI_IMAGES).is_dir() and (path / KITTI_MASKS).is_dir()


def find_root(src: Path) -> Path:
    for root in (src, src / "cityscapes"):
        if _is_root(root):
            return root
    for folder in (src, *list(src.absolute().parents)[:2]):  # a partial download: one of the two zips extracted
        for have, lack, download in (("gtFine", "leftImg8bit", "leftImg8bit_trainvaltest.zip"),
                                     ("leftImg8bit", "gtFine", "gtFine_trainvaltest.zip")):
            if (folder / have).is_dir() and not (folder / lack).is_dir():
                raise DataError(f"{folder}: holds {have}/ but no {lack}/ beside it; extract {download} into {folder} "
                                f"too, then point --src at {folder}")
    if nearby(src, _is_root) is None:  # each zip extracted into a folder of its own (gtFine_trainvaltest/gtFine/)
        images = below(src, lambda p: (p / "leftImg8bit").is_dir())
        labels = below(src, lambda p: (p / "gtFine").is_dir())
        if images is not None and labels is not None:
            raise DataError(f"{src}: leftImg8bit/ is in {images} but gtFine/ in {labels}; move "
                            f"{labels / 'gtFine'} into {images}, then point --src at {images}")
    raise DataError(f"{src}: not a Cityscapes folder; expected leftImg8bit/ and gtFine/ in it (or KITTI semantics' "
                    f"{KITTI_IMAGES}/ and {KITTI_MASKS}/); "
                    + point_at(src, _is_root, "the folder holding leftImg8bit/ and gtFine/ (where both zips were extracted)"))


def collect(src: str | Path, splits: list[str] | None = None, val_fraction: float | None = None,
            seed: int = 0) -> Source:
    """val_fraction, seed: the share of KITTI's training/ held out as val (None: 0.2); Cityscapes has its own val."""
    root = find_root(Path(src))
    wanted = list(splits or DEFAULT_SPLITS)
    if not _is_cityscapes(root):  # find_root found KITTI's folders
        return _kitti(root, wanted, val_fraction, seed)
    if val_fraction is not None:
        raise ConfigError(f"val_fraction={val_fraction}: {root} is Cityscapes, whose val split is its own "
                          "(leftImg8bit/val); leave val_fraction out")
    train_ids = _only_train_ids(root, wanted)
    suffix = TRAIN_ID_SUFFIX if train_ids else MASK_SUFFIX
    samples, findings = [], []
    for split in wanted:
        image_dir, mask_dir = root / "leftImg8bit" / split, root / "gtFine" / split
        if not image_dir.is_dir():
            available = sorted(p.name for p in (root / "leftImg8bit").iterdir() if p.is_dir() and p.name[0] != ".")
            raise DataError(f"{image_dir}: split folder not found; available: {', '.join(available) or 'none'}")
        images = by_stem(image_dir, split, findings, IMAGE_SUFFIX)
        known = len(findings)
        masks = by_stem(mask_dir, split, findings, suffix)
        if len(findings) == known:  # no gtFine/<split>/, or one without label ids: one line, not 500 findings
            unlabelled_split(split, images, masks, image_dir, mask_dir, f"*{suffix}.png masks",
                             [s for s in wanted if s != split], f"extract gtFine_trainvaltest.zip into {root}")
        pairs, missing = pair_by_stem(split, images, masks,
                                      lambda stem: f"no {mask_dir / (stem + suffix + '.png')}",
                                      lambda stem: f"no {image_dir / (stem + IMAGE_SUFFIX + '.png')}")
        samples += pairs
        findings += missing
    return Source(name="cityscapes", classes=CLASSES, palette=PALETTE, ignore_index=IGNORE_INDEX, samples=samples,
                  decoder=decoder(train_ids), splits=wanted, findings=findings)


def _only_train_ids(root: Path, splits: list[str]) -> bool:
    """True when gtFine/ holds *_gtFine_labelTrainIds.png but no *_gtFine_labelIds.png for these splits."""
    folders = [root / "gtFine" / split for split in splits if (root / "gtFine" / split).is_dir()]

    def has(suffix: str) -> bool:
        return any(index(folder, suffix)[0] for folder in folders)

    return not has(MASK_SUFFIX) and has(TRAIN_ID_SUFFIX)


def _kitti(root: Path, wanted: list[str], val_fraction: float | None, seed: int) -> Source:
    """KITTI semantics: training/image_2/<stem>.png ↔ training/semantic/<stem>.png, split at random into train and
    val (`val_fraction` of the pairs, default 0.2; all train when 'val' is not wanted)."""
    import dataclasses

    other = next((split for split in wanted if split not in DEFAULT_SPLITS), None)
    if other or "train" not in wanted:
        why = f"has no split '{other}'" if other else "needs --split train beside --split val"
        raise DataError(f"{root}: KITTI semantics {why}: its training/ gives train and val (testing/ holds no labels: "
                        "label it with `segcli predict`); leave --split out")
    if val_fraction is not None and "val" not in wanted:
        raise ConfigError(f"val_fraction={val_fraction}: --split train keeps every pair of {root} for training; leave "
                          "one of them out")
    image_dir, mask_dir = root / KITTI_IMAGES, root / KITTI_MASKS
    findings: list = []
    images, masks = by_stem(image_dir, "train", findings), by_stem(mask_dir, "train", findings)
    unlabelled_split("train", images, masks, image_dir, mask_dir, "masks", [], f"extract data_semantics.zip into {root}")
    pairs, missing = pair_by_stem("train", images, masks, lambda stem: f"no {mask_dir / (stem + '.png')}",
                                  lambda stem: f"no {image_dir / (stem + '.png')}")
    fraction = (DEFAULT_VAL_FRACTION if val_fraction is None else float(val_fraction)) if "val" in wanted else 0.0
    try:
        assigned = random_split([pair.stem for pair in pairs], fraction, 0.0, int(seed))
    except ConfigError as err:  # it names prepare folder's --val-fraction, which prepare cityscapes takes as val_fraction=
        raise ConfigError(str(err).replace("--val-fraction ", "val_fraction=").replace("--val-fraction", "val_fraction")
                          ) from None
    samples = sorted((dataclasses.replace(pair, split=assigned[pair.stem]) for pair in pairs),
                     key=lambda pair: DEFAULT_SPLITS.index(pair.split))  # train first, each in stem order
    return Source(name="kitti", classes=CLASSES, palette=PALETTE, ignore_index=IGNORE_INDEX, samples=samples,
                  decoder=decoder(), splits=["train", "val"] if fraction else ["train"], findings=findings + missing)
