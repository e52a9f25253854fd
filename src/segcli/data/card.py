"""The dataset card, DIR/dataset.yaml: what every later stage reads about a dataset.

    name: str
    classes: [str, ...]              # list index = class id
    palette: [[r, g, b], ...]        # one colour per class
    ignore_index: int                # mask value that counts nowhere
    splits: {split: [{image: rel/path, mask: rel/path, fold: int (only with --folds), group: str (only with --group)}, ...]}
    image_range: [low, high]         # only when images are stored deeper than 8 bits: the values mapped onto
                                     # 0..255 when they are read (segcli.data.depth)
    stats:
      mean: [r, g, b]                # per-channel mean of the train images, in [0, 1] (the model's normalisation)
      std: [r, g, b]                 # per-channel std of the train images, in [0, 1]
      class_weights: [float, ...]    # median-frequency balancing weights from train (loss.class_weights=auto)
      class_pixels: {split: [int per class id]}   # the same counts as splits.<split>.class_pixels
      splits:
        <split>: {images: int, pixels: int, mean: [r, g, b], std: [r, g, b],
                  class_pixels: [int per class id], class_images: [int per class id]}
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from segcli.data.depth import check_range
from segcli.errors import ConfigError, DataError

CARD_NAME = "dataset.yaml"


@dataclass
class DatasetCard:
    root: Path
    name: str
    classes: list[str]
    palette: list[list[int]]
    ignore_index: int
    splits: dict[str, list[dict[str, str]]]
    stats: dict = field(default_factory=dict)
    image_range: list[float] | None = None
    file: Path | None = None  # the card file read, when not ROOT/dataset.yaml (data.root=DIR/v2.yaml)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def path(self) -> Path:
        """The card file itself."""
        return self.file or self.root / CARD_NAME

    @property
    def location(self) -> Path:
        """What data.root, a checkpoint and eval --data name this dataset by: its folder, or the card file where it
        has another name than dataset.yaml (the folder would read ROOT/dataset.yaml, another card or none)."""
        return self.root if self.path.name == CARD_NAME else self.path

    def pairs(self, split: str) -> list[tuple[Path, Path]]:
        """Absolute (image, mask) paths of a split; a one-line error lists the splits if unknown."""
        if split not in self.splits:
            raise self._no_split(split)
        return [(self.root / p["image"], self.root / p["mask"]) for p in self.splits[split]]

    def _no_split(self, split: str) -> ConfigError:
        return ConfigError(f"{self.path}: no split '{split}'; available: {', '.join(self.splits)}; name one "
                           "of them (data.val_split=..., --split ...), or re-run segcli prepare with that split "
                           "(--val-fraction, --split-file)")

    def indices(self, split: str, fold: int | None = None, held_out: bool = False) -> list[int]:
        """Positions in splits[split]: all of them, or (fold given) those in fold `fold` (held_out=True)
        or in every other fold (held_out=False)."""
        if split not in self.splits:
            raise self._no_split(split)
        entries = self.splits[split]
        if fold is None:
            return list(range(len(entries)))
        folds = {p.get("fold") for p in entries}
        if None in folds:
            raise ConfigError(f"{self.path}: split '{split}' has no fold assignment; "
                              "prepare with --folds K, or set data.fold=null")
        if fold not in folds:
            raise ConfigError(f"data.fold={fold}: split '{split}' has folds {', '.join(map(str, sorted(folds)))}; "
                              "choose one of them, or set data.fold=null to train on every fold")
        return [i for i, p in enumerate(entries) if (p["fold"] == fold) == held_out]

    def to_dict(self) -> dict:
        out = {"name": self.name, "classes": list(self.classes), "palette": [list(map(int, c)) for c in self.palette],
               "ignore_index": int(self.ignore_index), "splits": self.splits}
        if self.image_range is not None:
            out["image_range"] = [float(v) for v in self.image_range]
        return {**out, "stats": self.stats}


REQUIRED_KEYS = ("classes", "palette", "ignore_index", "splits")


def _unprepared(folder: Path) -> str:
    """The fix for a data.root / --data without dataset.yaml: the prepare command for the layout it holds (a
    download, images/ + masks/), or what to give."""
    if not folder.is_dir():
        return "give the folder `segcli prepare` wrote (it holds dataset.yaml), or prepare the dataset first"
    from segcli.data.formats.native import other_layout

    try:
        hint, filled = other_layout(folder), any(folder.iterdir())
    except OSError as err:  # a folder this user may not read
        return f"cannot look inside it ({err.strerror or err}); give a prepared dataset's folder you can read"
    if hint:
        return hint
    if filled:
        return ("it is not a prepared dataset: prepare it into a new folder first (`segcli prepare folder --images "
                "DIR --masks DIR --out NEW`, or camvid, voc, cityscapes, ade20k; see `segcli prepare --help`)")
    return f"prepare the dataset first, e.g. `segcli prepare synthetic --out {folder}`"


def load_card(root: str | Path) -> DatasetCard:
    """Read DIR/dataset.yaml (DIR may also be the card file itself; ~ is expanded: `data.root=~/data` reaches segcli
    as typed, the shell expands ~ only at the start of a word)."""
    if root is None or not str(root).strip():  # data.root=null
        raise ConfigError("data.root is not set; give the prepared dataset's folder, data.root=DIR (it holds "
                          "dataset.yaml)")
    root = Path(root).expanduser()
    path = root if root.suffix in (".yaml", ".yml") else root / CARD_NAME
    if not path.is_file():
        raise DataError(f"{path}: no dataset card; {_unprepared(path.parent)}")
    from segcli.inference.io import read_text  # OpenCV comes with it: not for every importer of this module

    try:
        raw = _load_yaml(read_text(path, "dataset card"))
        missing = [key for key in REQUIRED_KEYS if not isinstance(raw, dict) or key not in raw]
        if missing:
            raise DataError(f"{path}: a dataset card needs {', '.join(REQUIRED_KEYS)}; this one has no "
                            f"{', '.join(missing)}. Let `segcli prepare` write the card (images/ and masks/ folders: "
                            "segcli prepare folder --images DIR --masks DIR --out NEW)")
        card = DatasetCard(root=path.parent, name=raw.get("name", path.parent.name), classes=list(raw["classes"]),
                           palette=_palette(path, raw["palette"]), ignore_index=int(raw["ignore_index"]),
                           splits=dict(raw["splits"]), stats=dict(raw.get("stats") or {}),
                           image_range=check_range(raw.get("image_range"), "image_range"),
                           file=None if path.name == CARD_NAME else path)
    except (yaml.YAMLError, KeyError, TypeError, AttributeError, ValueError) as err:
        detail = " ".join(str(err).split())  # a YAML error spans lines; the message is one line
        raise DataError(f"{path}: invalid dataset card ({type(err).__name__}: {detail}); re-run `segcli prepare`")
    if isinstance(raw["classes"], str) or not all(isinstance(c, (str, int, float)) for c in card.classes):
        raise DataError(f"{path}: classes must be a list of names, one per class id (got {raw['classes']!r})")
    card.classes = [str(c) for c in card.classes]  # `classes: [0, 1]` written by hand: names all the same
    # reports, --compare, --fail-under class:NAME and predict's JSON tell classes by name; one pass with a dict (a
    # search of the names before each one took a minute for a card of 70,000 classes)
    first_id: dict[str, int] = {}
    for second, name in enumerate(card.classes):
        first = first_id.setdefault(name, second)
        if first != second:
            raise DataError(f"{path}: class name {name!r} is given to ids {first} and {second}; give each class its "
                            "own name in the card's classes")
    _check_entries(path, card.splits)
    if 0 <= card.ignore_index < len(card.classes):  # its pixels count nowhere, so that class could only be predicted
        raise DataError(f"{path}: ignore_index {card.ignore_index} is also the id of class "
                        f"'{card.classes[card.ignore_index]}', which then has no ground truth and scores 0 wherever "
                        f"predicted; prepare the masks again with `segcli prepare folder --ignore-index` >= "
                        f"{len(card.classes)}" + (" or --reduce-zero-label (0 → ignore, k → k-1)"
                                                  if card.ignore_index == 0 else ""))
    if len(card.palette) != len(card.classes):
        raise DataError(f"{path}: {len(card.palette)} palette colours for {len(card.classes)} classes; give one colour per class")
    return card


def _palette(path: Path, palette) -> list[list[int]]:
    """The card's palette as [r, g, b] lists: each entry three whole numbers 0-255, or '#rrggbb' (a card edited by
    hand); anything else fails here, naming the entry, rather than as an internal error where colours are drawn."""
    if not isinstance(palette, list):
        raise DataError(f"{path}: palette must be a list of [R, G, B] colours, one per class (got {palette!r})")
    colours = []
    for i, colour in enumerate(palette):
        if isinstance(colour, str) and re.fullmatch(r"#[0-9a-fA-F]{6}", colour.strip()):
            colours.append([int(colour.strip()[k:k + 2], 16) for k in (1, 3, 5)])
            continue
        if isinstance(colour, list):  # 128.0, as some tools write whole numbers
            colour = [int(v) if isinstance(v, float) and v.is_integer() else v for v in colour]
        if not (isinstance(colour, list) and len(colour) == 3
                and all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in colour)):
            raise DataError(f"{path}: palette entry {i + 1} ({colour!r}) is not a colour; give [R, G, B], three whole "
                            "numbers 0-255 (or '#rrggbb')")
        colours.append(list(colour))
    return colours


def _check_entries(path: Path, splits: dict) -> None:
    """Every split a list of {image: rel/path, mask: rel/path, ...}: a card edited by hand fails here, by name,
    rather than wherever an entry is first used."""
    for split, entries in splits.items():
        if not isinstance(entries, list):
            raise DataError(f"{path}: split '{split}' must be a list of {{image: ..., mask: ...}} entries "
                            f"(got {entries!r}); remove the split or list its pairs")
        for i, entry in enumerate(entries):
            if not (isinstance(entry, dict) and all(isinstance(entry.get(key), str) and entry[key]
                                                    for key in ("image", "mask"))):
                raise DataError(f"{path}: entry {i + 1} of split '{split}' ({entry!r}) needs an image and a mask "
                                "path, e.g. {image: images/train/x.png, mask: masks/train/x.png}")


def dump_card(card: DatasetCard) -> str:
    data = card.to_dict()
    try:
        return yaml.dump(data, Dumper=_DUMPER, sort_keys=False, default_flow_style=None, width=120)
    except UnicodeEncodeError:  # a file name that is not UTF-8 (surrogate escapes): libyaml cannot write it
        return yaml.dump(data, Dumper=_PlainDumper, sort_keys=False, default_flow_style=None, width=120)


def _load_yaml(text: str):
    try:
        return yaml.load(text, Loader=_LOADER)
    except yaml.YAMLError:  # libyaml refuses "\uDCxx", how a name that is not UTF-8 is written; PyYAML reads it
        return yaml.safe_load(text)


# libyaml's safe loader and dumper where PyYAML has them (same documents, same text): pure Python took 0.46 s to read
# a card of 4,000 pairs, in every command that reads one, and 1.4 s to write it. Names that are not UTF-8 go through
# PyYAML's own.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Dumper(getattr(yaml, "CSafeDumper", yaml.SafeDumper)):
    """Writes a list the card holds twice (a split's class_pixels, in stats and in its split's entry) twice, not as
    an anchor and an alias (`&id001` … `*id001`), which a person reading the card cannot follow."""

    def ignore_aliases(self, data) -> bool:
        return True


_DUMPER = _Dumper


class _PlainDumper(yaml.SafeDumper):  # PyYAML's own, for names libyaml cannot write; no aliases either
    ignore_aliases = _Dumper.ignore_aliases
