"""Palette files (class name + RGB per line) and the RGB-mask → id mapping they define.

A palette file, one class per line in id order (blank lines and `#` comments skipped):

    road 128 64 128
    traffic sign, 220, 220, 0
    sky #4682b4
    64 128 64  Animal     # colour first, as CamVid's label_colors.txt
    ignore 0 0 0          # the names ignore, void, unlabelled and unlabeled map a colour to the ignore index

A CSV's header line naming the columns (`name,r,g,b`, as the class_dict.csv of several datasets) is skipped; when
it names more columns after b (`name,r,g,b,class_11`), those columns are dropped from every line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from segcli.errors import ConfigError

_DECIMAL = re.compile(r"^(?P<name>.*?)[\s,:;=]+(?P<r>\d{1,3})[\s,;]+(?P<g>\d{1,3})[\s,;]+(?P<b>\d{1,3})$")
_HEX = re.compile(r"^(?P<name>.*?)[\s,:;=]+#(?P<hex>[0-9a-fA-F]{6})$")
_DECIMAL_FIRST = re.compile(r"^(?P<r>\d{1,3})[\s,;]+(?P<g>\d{1,3})[\s,;]+(?P<b>\d{1,3})[\s,:;=]+(?P<name>\D.*)$")
_HEX_FIRST = re.compile(r"^#(?P<hex>[0-9a-fA-F]{6})[\s,:;=]+(?P<name>.+)$")
_COMMENT = re.compile(r"(^|\s)#(?![0-9a-fA-F]{6}(\s|$)).*$")  # '#' starts a comment unless it is a #rrggbb colour
IGNORE_NAMES = ("ignore", "void", "unlabelled", "unlabeled")  # a colour that marks pixels without a class
_HEADER = re.compile(r"^\W*[a-z_ ]*\W+r(ed)?\W+g(reen)?\W+b(lue)?(?P<extra>(\s*,\s*[\w ]+)*)\W*$",
                     re.IGNORECASE)  # name,r,g,b / class,red,… (more CSV columns after b: class_11 flags, …)


@dataclass
class Palette:
    """classes: names in id order; colours: one RGB per class; ignore_colours: RGB meaning 'not labelled'."""

    classes: list[str]
    colours: list[list[int]]
    ignore_colours: list[list[int]]


def parse_palette(path: str | Path) -> Palette:
    """Read a palette file; a one-line ConfigError names the first line it cannot read."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--palette {path}: file not found")
    classes, colours, ignore = [], [], []
    lines: dict[str, int] = {}  # class name → its line
    extra_columns = False  # a CSV header with columns after b: each line's are dropped
    from segcli.inference.io import read_lines

    for number, line in enumerate(read_lines(path, "palette"), 1):
        line = _COMMENT.sub("", line).strip()
        header = None if classes or ignore else _HEADER.match(line)
        if not line or header:
            extra_columns = extra_columns or bool(header and header["extra"])
            continue
        if extra_columns:
            line = ",".join(line.split(",")[:4])
        match = _DECIMAL.match(line) or _HEX.match(line) or _DECIMAL_FIRST.match(line) or _HEX_FIRST.match(line)
        if not match:
            raise ConfigError(f"{path}:{number}: cannot read {line!r}; write 'name R G B' (0-255), 'R G B name' or "
                              "'name #rrggbb'")
        name = match["name"].strip().strip("'\"")
        rgb = ([int(match[k]) for k in "rgb"] if "hex" not in match.groupdict()
               else [int(match["hex"][i:i + 2], 16) for i in (0, 2, 4)])
        if not name or max(rgb) > 255:
            raise ConfigError(f"{path}:{number}: {line!r} needs a name and R G B values in 0-255")
        if rgb in colours or rgb in ignore:
            raise ConfigError(f"{path}:{number}: colour {tuple(rgb)} is listed twice; give each class its own colour")
        if name in lines:  # reports, --compare, --fail-under class:NAME and predict's JSON tell classes by name
            raise ConfigError(f"{path}:{number}: class name {name!r} is also on line {lines[name]}; give each class "
                              "its own name")
        (ignore if name.lower() in IGNORE_NAMES else colours).append(rgb)
        if name.lower() not in IGNORE_NAMES:
            classes.append(name)
            lines[name] = number
    if not classes:
        raise ConfigError(f"--palette {path}: no classes; write one 'name R G B' line per class")
    return Palette(classes, colours, ignore)


def _codes(rgb: np.ndarray) -> np.ndarray:
    rgb = rgb.astype(np.uint32)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


class ColourMap:
    """RGB colours → raw values: `colours[i]` → i, each of `ignore_colours` → `ignore_index`."""

    def __init__(self, colours: list[list[int]], ignore_colours: list[list[int]], ignore_index: int):
        keys = [_codes(np.array(c)) for c in colours] + [_codes(np.array(c)) for c in ignore_colours]
        values = list(range(len(colours))) + [ignore_index] * len(ignore_colours)
        order = np.argsort(keys)
        self.keys = np.asarray(keys, np.uint32)[order]
        self.values = np.asarray(values, np.int64)[order]
        self.dtype = np.uint8 if max(values) < 256 else np.uint16

    def knows_all_greys(self, grey: np.ndarray) -> bool:
        """True when every grey level in (H, W) `grey` is a palette colour (r = g = b)."""
        levels = np.flatnonzero(np.bincount(grey.ravel().astype(np.int64)))
        return bool(np.isin(levels.astype(np.uint32) * 0x010101, self.keys).all())

    def to_values(self, rgb: np.ndarray) -> tuple[np.ndarray, str]:
        """(H, W, 3) uint8 RGB → ((H, W) values, '' or a description of the colours that are not in the palette)."""
        codes = _codes(rgb)
        index = np.clip(np.searchsorted(self.keys, codes), 0, len(self.keys) - 1)
        known = self.keys[index] == codes
        values = self.values[index].astype(self.dtype)
        if known.all():
            return values, ""
        values[~known] = 0
        unknown, first, counts = np.unique(codes[~known], return_index=True, return_counts=True)
        rows, cols = np.nonzero(~known)
        parts = []
        for code, at, count in sorted(zip(unknown, first, counts), key=lambda t: -t[2])[:5]:
            r, g, b = int(code) >> 16, (int(code) >> 8) & 255, int(code) & 255
            parts.append(f"({r}, {g}, {b}) × {count} px, first at x={cols[at]} y={rows[at]}")
        more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        return values, "; ".join(parts) + more

