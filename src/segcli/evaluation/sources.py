"""Where eval's predictions come from: a model through the shared predictor, or a folder of PNGs.

Both yield `Item`s in split order (this process's shard of it) with checked shapes, so scoring
never has to know which one it got.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from segcli.errors import DataError


@dataclass
class Item:
    index: int  # position in the split
    key: str  # relative stem (posix), e.g. "seq1/0001": names the image in reports and predictions
    image_path: Path
    mask_path: Path
    pred: np.ndarray  # (H, W) integer class ids
    target: np.ndarray  # (H, W) uint8/uint16 class ids (+ ignore)
    pred_path: Path | None = None  # the PNG it was read from (model-free mode)


def relative_stem(card, split: str, image_path: Path, mask_path: Path) -> str:
    """The pair's path relative to masks/<split>/ (else images/<split>/) without suffix, e.g. "seq1/0001". A split
    made by hand from others (a `trainval` of train and val) holds masks of other folders: relative to masks/
    (else images/) then, e.g. "train/seq1/0001", as `predict DATA/images --out DIR` names them; the bare stem
    would lose the folders and give two images of the same name one key (and one prediction file)."""
    for path, folder in ((mask_path, card.root / "masks" / split), (image_path, card.root / "images" / split),
                         (mask_path, card.root / "masks"), (image_path, card.root / "images")):
        try:
            return path.relative_to(folder).with_suffix("").as_posix()
        except ValueError:
            continue
    return mask_path.stem


def split_pairs(card, split: str) -> list[tuple[str, Path, Path]]:
    """(key, image path, mask path) for every pair of the split, in the card's order."""
    from segcli.errors import ConfigError

    if split not in card.splits:  # card.pairs' fix names data.val_split=..., which eval refuses as a key
        raise ConfigError(f"{card.path}: no split '{split}'; available: {', '.join(card.splits)}; name one of them "
                          "(--split NAME), or re-run segcli prepare with that split (--val-fraction, --split-file)")
    pairs = card.pairs(split)
    if not pairs:
        others = [name for name in card.splits if name != split and card.pairs(name)]
        raise DataError(f"{card.path}: split '{split}' is empty, no image to score; "
                        + (f"score another split (--split {' or --split '.join(others)}), or " if others else "")
                        + "add pairs to it (re-run segcli prepare)")
    return [(relative_stem(card, split, image, mask), image, mask) for image, mask in pairs]


def _target(mask_path: Path, shape: tuple[int, int], image_path: Path) -> np.ndarray:
    from segcli.inference.io import read_mask

    target = read_mask(mask_path)
    if target.shape != shape:
        raise DataError(f"{mask_path}: mask is {target.shape[1]}x{target.shape[0]} but its image {image_path} is "
                        f"{shape[1]}x{shape[0]}; re-run segcli prepare")
    return target


def model_items(predictor, shard: list[tuple[int, tuple[str, Path, Path]]],
                corrupt: Callable[[np.ndarray, int], np.ndarray] | None = None) -> Iterator[Item]:
    """Predict every image of `shard` ((index, (key, image, mask)) pairs), optionally corrupted first."""
    from segcli.inference.io import read_image

    def images():
        for index, (key, image_path, mask_path) in shard:
            image = read_image(image_path, predictor.read_channels, predictor.image_range)
            yield (index, key, image_path, mask_path), (corrupt(image, index) if corrupt else image)

    for (index, key, image_path, mask_path), image, pred in predictor.predict_stream(images()):
        yield Item(index, key, image_path, mask_path, pred, _target(mask_path, image.shape[:2], image_path))


def prediction_path(pred_dir: Path, split: str, key: str) -> Path:
    """DIR/<key>.png, or DIR/<split>/<key>.png when predictions of a whole images/ tree were written; either with the
    suffix in capitals (a.PNG, as Windows tools and cameras name PNGs) where the lower-case one is not there."""
    direct = pred_dir / f"{key}.png"
    candidates = (direct, pred_dir / split / f"{key}.png", pred_dir / f"{key}.PNG", pred_dir / split / f"{key}.PNG")
    found: list[Path] = []
    for candidate in candidates:
        if candidate.is_file() and not any(_same_file(candidate, other) for other in found):  # one file, two names
            found.append(candidate)
    if len(found) > 1:  # e.g. `predict images/val --out DIR`, then `predict images --out DIR`: two runs' masks
        raise DataError(f"--predictions {pred_dir}: two predictions of image {split}/{key}: {found[0]} and {found[1]} "
                        "(from two predict runs into one folder?); remove the stale one, or give a folder that "
                        "holds one run's masks")
    return found[0] if found else direct


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.samefile(b)  # a case-insensitive file system: x.png and x.PNG are one file
    except OSError:
        return False


def _other_format(path: Path) -> Path | None:
    """A file beside the missing `path` (DIR/<key>.png) with its stem and another image suffix (a.tif, a.jpg), as
    other tools save predictions; None if there is none."""
    from segcli.inference.io import IMAGE_EXTENSIONS

    for suffix in sorted(IMAGE_EXTENSIONS - {".png"}):
        for candidate in (path.with_suffix(suffix), path.with_suffix(suffix.upper())):
            if candidate.is_file():
                return candidate
    return None


def palette_colours(card):
    """The card's palette as a ColourMap (colour → class id) for predictions stored in colour, as many tools write
    them; None when two classes share a colour (then a colour cannot name its class)."""
    from segcli.data.palette import ColourMap

    colours = [tuple(int(v) for v in rgb) for rgb in (card.palette or [])]
    if len(colours) != card.num_classes or len(set(colours)) != len(colours):
        return None
    return ColourMap([list(c) for c in colours], [], card.ignore_index)


def prediction_items(pred_dir: Path, split: str, shard: list[tuple[int, tuple[str, Path, Path]]],
                     colours=None) -> Iterator[Item]:
    """Read DIR/<key>.png predictions for every pair of `shard`: class ids, or colours of `colours` (a ColourMap,
    see palette_colours); missing or mis-sized ones are errors."""
    from segcli.inference.io import read_mask

    for index, (key, image_path, mask_path) in shard:
        path = prediction_path(pred_dir, split, key)
        if not path.is_file():
            other = _other_format(path)
            if other is not None:
                raise DataError(f"{path}: prediction missing for {image_path.name}, but {other.name} is there: "
                                "predictions are read from PNGs; convert it to a PNG of the same ids or colours"
                                + (" (from the predicted ids: a JPEG's compression has changed them at every edge)"
                                   if other.suffix.lower() in (".jpg", ".jpeg") else ""))
            raise DataError(f"{path}: prediction missing for {image_path.name}; --predictions must hold a class-id PNG "
                            "per image, named like the split's masks (<relative stem>.png)")
        pred = read_mask(path, colours, what="prediction")
        target = read_mask(mask_path)
        if pred.shape != target.shape:
            raise DataError(f"{path}: prediction is {pred.shape[1]}x{pred.shape[0]} but the ground truth {mask_path} is "
                            f"{target.shape[1]}x{target.shape[0]}; predictions must have the image's exact size")
        yield Item(index, key, image_path, mask_path, pred, target, pred_path=path)
