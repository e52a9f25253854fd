"""Palette files (class name + RGB per line) and the RGB-mask → id mapping they define.

A palette file, one class per line in id order (blank lines and `#` comments skipped):

    road 128 64 128
    traffic sign, 220, 220, 0
    sky #4682b4
    64 128 64  Animal     # colour first, as CamVid's label_colors.txt
    ignore 0 0 0          # the names ignore, void, unlabelled and unlabeled map a colour to the ignore index

A CSV's header line naming the columns (`name,r,g,b`, as the class_dict.csv of several datasets) is skipped; when
it names more columns after b (`name,r,g,b,class_11`), those columns are dropped from every line. Lines that all
start with an id (`0 road 128 64 128`, `255 void 0 0 0`) are read without it; the ids of the classes must then run
0, 1, 2, … in line order; lines that all end in a fourth number, the same on each or 0/255 (R G B A), are
refused. CVAT's labelmap.txt (`background:0,0,0::`, from its segmentation mask export) is read too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from segcli.errors import ConfigError, DataError

_DECIMAL = re.compile(r"^(?P<name>.*?)[\s,:;=]+(?P<r>\d{1,3})[\s,;]+(?P<g>\d{1,3})[\s,;]+(?P<b>\d{1,3})$")
_HEX = re.compile(r"^(?P<name>.*?)[\s,:;=]+#(?P<hex>[0-9a-fA-F]{6})$")
_DECIMAL_FIRST = re.compile(r"^(?P<r>\d{1,3})[\s,;]+(?P<g>\d{1,3})[\s,;]+(?P<b>\d{1,3})[\s,:;=]+(?P<name>\D.*)$")
_HEX_FIRST = re.compile(r"^#(?P<hex>[0-9a-fA-F]{6})[\s,:;=]+(?P<name>.+)$")
_COMMENT = re.compile(r"(^|\s)#(?![0-9a-fA-F]{6}(\s|$)).*$")  # '#' starts a comment unless it is a #rrggbb colour
_CVAT = re.compile(r"^(?P<name>[^:]+):(?P<rgb>\d{1,3},\d{1,3},\d{1,3}):[^:]*:[^:]*$")
IGNORE_NAMES = ("ignore", "void", "unlabelled", "unlabeled")  # a colour that marks pixels without a class
_HEADER = re.compile(r"^\W*([a-z_ ]*\W+)?[a-z_ ]*\W+r(ed)?\W+g(reen)?\W+b(lue)?(?P<extra>(\s*,\s*[\w ]+)*)\W*$",
                     re.IGNORECASE)  # [id,]name,r,g,b / class,red,… (more CSV columns after b: class_11 flags, …)


@dataclass
class Palette:
    """classes: names in id order; colours: one RGB per class; ignore_colours: RGB meaning 'not labelled'."""

    classes: list[str]
    colours: list[list[int]]
    ignore_colours: list[list[int]]


def parse_palette(path: str | Path) -> Palette:
    """Read a palette file; a one-line ConfigError names the first line it cannot read."""
    path = Path(path)
    if not path.is_file():  # an input that cannot be read is exit 3, as a missing --classes or --split-file file
        what = "not a file" if path.exists() else "file not found"
        raise DataError(f"--palette {path}: {what}; check the path")
    entries = _json_entries(path) if path.suffix.lower() == ".json" else []  # (line number, text, name, rgb)
    extra_columns = False  # a CSV header with columns after b: each line's are dropped
    from segcli.inference.io import read_lines

    for number, line in enumerate([] if entries else read_lines(path, "palette"), 1):
        line = _COMMENT.sub("", line).strip()
        header = None if entries else _HEADER.match(line)
        if not line or header:
            extra_columns = extra_columns or bool(header and header["extra"])
            continue
        if extra_columns:
            line = ",".join(line.split(",")[:4])
        cvat = _CVAT.match(line)
        if cvat:  # CVAT's labelmap.txt (its segmentation mask export): name:r,g,b:parts:actions
            line = f"{cvat['name']}, {cvat['rgb']}"
        match = _DECIMAL.match(line) or _HEX.match(line) or _DECIMAL_FIRST.match(line) or _HEX_FIRST.match(line)
        if not match:
            raise ConfigError(f"{path}:{number}: cannot read {line!r}; write 'name R G B' (0-255), 'R G B name' or "
                              "'name #rrggbb'")
        name = match["name"].strip().strip("'\"")
        rgb = ([int(match[k]) for k in "rgb"] if "hex" not in match.groupdict()
               else [int(match["hex"][i:i + 2], 16) for i in (0, 2, 4)])
        if not name or max(rgb) > 255:
            raise ConfigError(f"{path}:{number}: {line!r} needs a name and R G B values in 0-255")
        entries.append((number, line, name, rgb))
    _refuse_alpha(path, entries)
    entries = _without_ids(path, entries)
    classes, colours, ignore = [], [], []
    lines: dict[str, int] = {}  # class name → its line
    for number, line, name, rgb in entries:
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


def _json_entries(path: Path) -> list:
    """Mapillary Vistas' config.json, {"labels": [{"name": "construction--flat--road", "readable": "Road",
    "color": [128, 64, 128], ...}, ...]}, as palette lines: its readable names (its names where two readable ones
    are alike); a label whose readable name or last `--` part is an ignore name (void--unlabeled) marks ignore."""
    import json

    from segcli.inference.io import read_lines

    try:
        labels = json.loads("\n".join(read_lines(path, "palette"))).get("labels")
    except (json.JSONDecodeError, AttributeError) as err:
        raise ConfigError(f"--palette {path}: not a JSON object with a \"labels\" list ({err})") from None
    if not isinstance(labels, list) or not labels or not all(isinstance(label, dict) for label in labels):
        raise ConfigError(f"--palette {path}: no \"labels\" list of {{\"name\": ..., \"color\": [r, g, b]}} "
                          "(Mapillary Vistas' config.json); write one 'name R G B' line per class instead")
    readable = [str(label.get("readable") or label.get("name") or "") for label in labels]
    use_readable = len(set(readable)) == len(readable)
    entries = []
    for number, label in enumerate(labels, 1):
        name = readable[number - 1] if use_readable else str(label.get("name") or "")
        rgb = label.get("color")
        if (not name or not isinstance(rgb, list) or len(rgb) != 3
                or not all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 255 for c in rgb)):
            raise ConfigError(f"--palette {path}: label {number} ({json.dumps(label)[:80]}) needs a \"name\" and a "
                              "\"color\" of three values in 0-255")
        last = str(label.get("name") or "").rpartition("--")[2]
        void = name.lower() in IGNORE_NAMES or last.lower() in IGNORE_NAMES
        entries.append((f"label {number}", name, "ignore" if void else name, list(rgb)))
    return entries


_RGBA = re.compile(r"(^|[\s,:;=])\d{1,3}[\s,;]+\d{1,3}[\s,;]+\d{1,3}[\s,;]+(?P<alpha>\d{1,3})$")


def _refuse_alpha(path: Path, entries: list) -> None:
    """Lines that end in four numbers (`road 128 64 128 255`: R G B A, or an extra column without a header) read as
    a name ending in R ('road 128') and the colour G B A: every colour wrong, and the lint then blamed the masks for
    colours the file names. Refused when every line ends so (an ignore line of three numbers aside: `void 0 0 0`) and
    the fourth numbers are one value, or each 0 or 255 (alpha: opaque, or a transparent void). Names that end in a
    number ('lane 2 128 64 128') are read unless their blues are so too; quoted ('lane 2') they always are."""
    lines = [(line, name) for number, line, name, _ in entries if isinstance(number, int)]
    found = [_RGBA.search(line) for line, _ in lines]
    fourth = {match["alpha"] for match in found if match}
    three = [name for (_, name), match in zip(lines, found) if not match]
    if len(fourth) and len(found) - len(three) >= 2 and (len(fourth) == 1 or fourth <= {"0", "255"}) \
            and all(name.strip("'\"").lower() in IGNORE_NAMES for name in three):
        raise ConfigError(f"--palette {path}: its lines end in four numbers, the last {' or '.join(sorted(fourth))} "
                          "(R G B A?); write 'name R G B' lines (0-255) without the fourth, or quote names that end "
                          "in a number ('lane 2' 0 0 255)")


_ID_FIRST = re.compile(r"^(?P<id>\d+)[\s,:;=]+(?P<name>\S.*)$")


def _without_ids(path: Path, entries: list) -> list:
    """Lines that all start with an id (`0 road 128 64 128`, `255 void 0 0 0`) lose it: the name is what follows.
    A class's id is its line's position, so the ids of the classes must run 0, 1, 2, … in line order (an ignore
    line may carry any id); other ids are refused rather than read into names such as '0 road'."""
    found = [_ID_FIRST.match(name) for _, _, name, _ in entries]
    if len(entries) < 2 or not all(found):
        return entries
    stripped = [(number, line, match["name"].strip().strip("'\""), rgb)
                for (number, line, _, rgb), match in zip(entries, found)]
    expected = 0
    for (number, line, name, _), match in zip(stripped, found):
        if name.lower() in IGNORE_NAMES:
            continue
        if int(match["id"]) != expected:
            raise ConfigError(f"{path}:{number}: {line!r} gives class {name!r} the id {match['id']}, but the lines "
                              f"before it make it {expected}: a class's id is its position among the palette's "
                              "classes; list the classes in id order from 0 without gaps, or drop the ids")
        expected += 1
    return stripped


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
        values, unknown, _ = self.decode(rgb)
        return values, unknown

    def decode(self, rgb: np.ndarray) -> tuple[np.ndarray, str, bool]:
        """As to_values, and whether most of the unknown pixels lie within NEAR levels of a palette colour or of a
        blend of two (each listed colour then names them): what JPEG compression or anti-aliased drawing and
        resizing leave, not classes missing from the palette."""
        codes = _codes(rgb)
        index = np.clip(np.searchsorted(self.keys, codes), 0, len(self.keys) - 1)
        known = self.keys[index] == codes
        values = self.values[index].astype(self.dtype)
        if known.all():
            return values, "", False
        values[~known] = 0
        unknown, first, counts = np.unique(codes[~known], return_index=True, return_counts=True)
        rows, cols = np.nonzero(~known)
        top = np.argsort(-counts, kind="stable")[:256]  # the most frequent ones tell (a photo has ~10^5 colours)
        notes = self._smoothing(unknown[top])
        shown = counts[top]
        # smoothing leaves many stray colours, none holding most of the pixels; a class missing from the palette is
        # one solid colour, which on a palette of grid colours (CamVid's) often lies on the line between two others.
        # JPEG shifts a flat area as a whole, to one colour a level or two from its palette colour: a colour that
        # near one may hold most of the pixels (a solid colour merely between two others may not)
        near_first = bool(notes[0]) and not notes[0].startswith(", between")
        smoothed = (2 * int(shown[[bool(n) for n in notes]].sum()) >= int(shown.sum()) and len(unknown) >= 4
                    and (near_first or 2 * int(shown.max()) < int(shown.sum())))
        parts = []
        for k in range(min(5, len(top))):
            code, at, count = int(unknown[top[k]]), first[top[k]], counts[top[k]]
            note = notes[k] if smoothed or not notes[k].startswith(", between") else ""
            parts.append(f"{_rgb(code)} × {count} px, first at x={cols[at]} y={rows[at]}{note}")
        more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        return values, "; ".join(parts) + more, smoothed

    def _smoothing(self, codes: np.ndarray) -> list[str]:
        """For (M,) colour codes not in the palette: ', 2 level(s) from (0, 0, 0)' for one within NEAR levels (the
        largest channel difference) of a palette colour, ', between (a) and (b)' for one within NEAR levels of a
        blend of two (an anti-aliased or resized edge; checked for palettes of up to 64 colours), else ''
        (always '' for palettes of more than 4096 colours)."""
        def channels(c):
            return np.stack([(c >> 16) & 255, (c >> 8) & 255, c & 255], -1).astype(np.float32)

        colours, keys = channels(codes), channels(self.keys)
        if len(keys) > 4096:  # (M, K) distances of a palette this large would take too much memory for a hint
            return [""] * len(codes)
        distance = np.abs(colours[:, None, :] - keys[None, :, :]).max(-1)  # (M, K)
        best = distance.argmin(1)
        off = distance[np.arange(len(codes)), best]
        notes = [f", {int(d)} level(s) from {_rgb(int(self.keys[b]))}" if d <= NEAR else "" for b, d in zip(best, off)]
        if 2 <= len(keys) <= 64:
            i, j = np.triu_indices(len(keys), 1)
            p, step = keys[i], keys[j] - keys[i]  # (P, 3): the segments between two palette colours
            t = np.clip(((colours[:, None, :] - p) * step).sum(-1) / (step * step).sum(-1), 0, 1)  # (M, P)
            gap = np.abs(colours[:, None, :] - (p + t[..., None] * step)).max(-1)
            pair = gap.argmin(1)
            for m, (note, g) in enumerate(zip(notes, gap[np.arange(len(codes)), pair])):
                if not note and g <= NEAR:
                    a, b = int(self.keys[i[pair[m]]]), int(self.keys[j[pair[m]]])
                    notes[m] = f", between {_rgb(a)} and {_rgb(b)}"
        return notes


NEAR = 8  # levels: an unknown colour this close to a palette colour is that colour smoothed (JPEG, anti-aliasing)


def _rgb(code: int) -> str:
    return f"({code >> 16}, {(code >> 8) & 255}, {code & 255})"
