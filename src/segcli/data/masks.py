"""Reading source images and masks for `prepare`, and turning raw mask values into class ids.

Source masks come in many encodings: 8/16-bit grey ids, palette-mode PNGs (VOC), RGB colours,
sometimes (wrongly) JPEG. `read_source_mask` says which; a `MaskDecoder` maps the raw values of a
format to segcli's ids and reports, as lint findings, every value or colour it cannot map.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from segcli.data.lint import Finding, error, warning
from segcli.data.palette import NEAR, ColourMap
from segcli.errors import DataError
from segcli.inference.io import (COLOUR, JPEG_MAGIC, cannot_read, exif_orientation, imdecode, is_palette_png,
                                 jpeg_cut_short, png_colour_type, png_cut_short, stored_levels, to_uint8)

GIF_MAGIC = b"GIF8"


def read_bytes(path: Path) -> bytes:
    """The whole file, checked for truncation (PNG without IEND, JPEG without its end marker; bytes after either
    are allowed, as decoders ignore them)."""
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise DataError(f"{path}: {cannot_read(path, err)}") from None
    if not data:
        raise DataError(f"{path}: empty file")
    if png_cut_short(data):
        raise DataError(f"{path}: truncated PNG (no IEND chunk at the end); re-export or re-download it")
    if jpeg_cut_short(data):
        raise DataError(f"{path}: truncated JPEG (no end-of-image marker); re-export or re-download it")
    return data


def _decode(data: bytes, flags: int, path: Path) -> np.ndarray:
    array = imdecode(np.frombuffer(data, np.uint8), flags)
    if array is None:
        raise DataError(f"{path}: not a readable image (corrupt or unsupported format)")
    return array


def decode_image_raw(data: bytes, path: Path) -> np.ndarray:
    """An image file's bytes → (H, W, 3) BGR at the depth stored, EXIF orientation applied, alpha dropped."""
    return _decode(data, COLOUR, path)


@dataclass
class RawMask:
    """A mask as stored. array: (H, W) raw values, or (H, W, 3) uint8 RGB when kind == 'rgb'.

    kind: 'ids' (one channel), 'palette' (palette-mode PNG, array = palette indices),
    'grey3' (three identical channels, array = one of them), 'rgb' (colours).
    lossy: stored as JPEG.
    table: for kind 'palette', the PNG's colour table, (256, 3) uint8 RGB (index → colour), black past the
    `entries` the file lists; else None.
    transparent: pixels whose alpha is 0 (a mask with an alpha channel); alpha is not read.
    """

    array: np.ndarray
    kind: str
    lossy: bool
    table: np.ndarray | None = None
    transparent: int = 0
    orientation: int = 1  # a PNG, JPEG or WebP's EXIF orientation tag (masks are read as stored, whatever it says)
    entries: int = 256  # for kind 'palette': the colours its table lists


def read_source_mask(path: Path) -> RawMask:
    """Read a mask without interpreting it (raises DataError when unreadable)."""
    data = read_bytes(path)
    raw = _raw_mask(data, path)
    raw.orientation = exif_orientation(data)
    return raw


def _raw_mask(data: bytes, path: Path) -> RawMask:
    return indexed_mask(data, path) or stored_mask(_decode(data, cv2.IMREAD_UNCHANGED, path), data)


def indexed_mask(data: bytes, path: Path) -> RawMask | None:
    """A palette PNG or a GIF read by PIL (kind 'palette' with its table, or a grey GIF's 'ids'); None for any other
    file. Unreadable: a DataError naming the file."""
    gif = data.startswith(GIF_MAGIC)  # Carvana's masks, for one: indexed or grey, read by PIL (first frame)
    if is_palette_png(data) or gif:
        from PIL import Image

        try:
            with Image.open(io.BytesIO(data)) as img:
                if img.mode != "P":  # a grey GIF: its values are the ids
                    return RawMask(np.asarray(img.convert("L"), dtype=np.uint8).copy(), "ids", False)
                table = np.zeros((256, 3), np.uint8)
                colours = np.asarray(img.getpalette("RGB") or [], np.uint8).reshape(-1, 3)[:256]
                table[: len(colours)] = colours
                return RawMask(np.asarray(img, dtype=np.uint8).copy(), "palette", False, table, entries=len(colours))
        except Exception as err:
            raise DataError(f"{path}: unreadable {'GIF' if gif else 'palette PNG'} ({type(err).__name__}: {err})")
    return None


def stored_mask(array: np.ndarray, data: bytes) -> RawMask:
    """A mask file's IMREAD_UNCHANGED decode (`data`: the file's bytes) as a RawMask: one channel (or grey + alpha)
    'ids', three equal channels 'grey3', else 'rgb' as 8-bit colours (_colour_bytes); 1/2/4-bit grey as the levels
    stored."""
    array = stored_levels(array, data)  # a 1-bit mask: 0/1, as eval reads it
    lossy = data.startswith(JPEG_MAGIC)
    clear = int(np.count_nonzero(array[..., -1] == 0)) if array.ndim == 3 and array.shape[2] in (2, 4) else 0
    if array.ndim == 2 or array.shape[2] == 2 or png_colour_type(data) == 4:  # one channel, or grey + alpha
        return RawMask(np.ascontiguousarray(array if array.ndim == 2 else array[..., 0]), "ids", lossy,
                       transparent=clear)
    colour = array[..., :3]
    if np.array_equal(colour[..., 0], colour[..., 1]) and np.array_equal(colour[..., 1], colour[..., 2]):
        return RawMask(np.ascontiguousarray(colour[..., 0]), "grey3", lossy, transparent=clear)
    return RawMask(cv2.cvtColor(_colour_bytes(colour), cv2.COLOR_BGR2RGB), "rgb", lossy, transparent=clear)


def _colour_bytes(colour: np.ndarray) -> np.ndarray:
    """A colour mask's channels as the 8-bit colours a palette names. 16-bit: widened from 8 bits by ×257 (255 →
    65535) or by a shift (×256, 255 → 65280), both undone exactly by >> 8 (dividing by 257 made 142 × 256 a 141);
    a mask whose values are all in 0..255 stored its colours unscaled. Other depths through to_uint8."""
    if colour.dtype != np.uint16:
        return to_uint8(colour)
    return colour.astype(np.uint8) if int(colour.max(initial=0)) <= 255 else (colour >> 8).astype(np.uint8)


def grey_bytes(grey: np.ndarray) -> np.ndarray | None:
    """The (H, W) uint8 grey levels a one-channel (or r = g = b) mask holds if it is a colour mask: an 8-bit one as
    it is, a 16-bit one as _colour_bytes narrows it when its values are 8-bit levels widened exactly (×257, ×256) or
    all in 0..255; None for other 16-bit values (ids, not colours) and other depths."""
    if grey.dtype == np.uint8:
        return grey
    if grey.dtype != np.uint16:
        return None
    narrow = _colour_bytes(grey)
    widened = narrow.astype(np.uint16)
    exact = grey.max(initial=0) <= 255 or np.array_equal(widened * 257, grey) or np.array_equal(widened << 8, grey)
    return narrow if exact else None


_TURNS = {2: "mirrored", 3: "turned 180°", 4: "flipped", 5: "mirrored and turned 90°", 6: "turned 90°",
          7: "mirrored and turned 270°", 8: "turned 270°"}


def id_dtype(num_classes: int, ignore_index: int) -> type:
    """uint8 when every id and the ignore index fit, else uint16."""
    return np.uint8 if max(num_classes - 1, ignore_index) < 256 else np.uint16


@dataclass
class MaskDecoder:
    """Raw mask values → class ids, with findings for what cannot be mapped.

    lut: raw value → id (an id in 0..num_classes-1 or ignore_index), -1 = not a valid raw value;
        None = the raw values are the ids themselves.
    num_classes: None while the class table is unknown (folder without --classes): every value but
        the ignore index is then a class id.
    colours: maps RGB masks to raw values (folder --palette, VOC masks saved as RGB); None = RGB is an error.
    ignore_declared: False when nobody said what 255 means: a mask holding only 0 and 255 is then
        flagged as a likely binary mask (its foreground would silently become 'ignore').
    raw_name: how the raw values are called in messages.
    remap: raw value → id applied before the checks when there is no lut (folder --remap 255=1).
    threshold: a two-valued mask stored as JPEG (Kvasir-SEG's 0/255 masks) or blurred by it once, read as
        value >= threshold → 1, else 0 (an RGB one through its grey value): its edges' invented values are gone.
    """

    num_classes: int | None
    ignore_index: int
    lut: np.ndarray | None = None
    colours: ColourMap | None = None
    ignore_declared: bool = True
    raw_name: str = "mask values"
    remap: dict[int, int] = field(default_factory=dict)
    threshold: int | None = None  # folder --mask-threshold T: a two-valued mask read as value >= T → 1, else 0
    options: bool = False  # prepare folder's: the fixes may name --palette, --remap, --ignore-index, --mask-threshold

    def _fix(self, folder: str, other: str) -> str:
        """The fix a finding names: `folder` where the command takes those options, else `other` (prepare camvid,
        voc, cityscapes, ade20k and lint take none of them)."""
        return folder if self.options else other

    def _is_class(self, value: int) -> bool:
        return value != self.ignore_index and (self.num_classes is None or value < self.num_classes)

    def _target(self, value: int) -> int:
        """The id a raw value maps to, or -1."""
        if self.lut is not None:
            return int(self.lut[value]) if value < len(self.lut) else -1
        value = self.remap.get(value, value)
        return value if (self._is_class(value) or value == self.ignore_index) else -1

    def decode(self, raw: RawMask, where: Path | str) -> tuple[np.ndarray | None, list[Finding]]:
        """(H, W) ids (uint8/uint16) and the findings; ids is None when the mask cannot be used at all."""
        findings: list[Finding] = []
        where = str(where)
        if raw.lossy and self.threshold is None:
            findings.append(error("lossy_mask", where, "mask stored as JPEG: compression invents values at every edge; "
                                  + self._fix("export masks as PNG, or, for a two-valued mask (0/255), pass "
                                              "--mask-threshold 128 to read value >= 128 as 1 and the rest as 0",
                                              "use the dataset's PNG masks (or, for a two-valued mask, convert it with "
                                              "`segcli prepare folder --mask-threshold 128`)")))
        if raw.orientation != 1:
            findings.append(warning("mask_orientation", where, f"mask carries EXIF orientation {raw.orientation} "
                                    f"({_TURNS[raw.orientation]}); masks are read as stored, not turned, while images "
                                    "are read as shown: if the mask was drawn on the image as shown, save its pixels "
                                    "as shown, without the orientation tag"))
        if raw.transparent:
            how = "colour" if raw.kind == "rgb" else "value"
            findings.append(warning("mask_alpha", where, f"{raw.transparent} transparent pixel(s) (alpha 0): alpha is "
                                    f"not read, so they take the class of their {how}; if transparent means 'not "
                                    f"labelled', paint them with the ignore {how} (a palette line 'ignore R G B', or "
                                    "--ignore-index)"))
        if raw.kind == "palette" and self.colours is not None and self.lut is None and raw.table is not None:
            # colour masks (folder --palette, CamVid's colour layout) stored as a palette PNG, as PNG optimisers
            # and labelling tools write them: the colours are the labels, the indices are in any order
            beyond = int(raw.array.max(initial=0))
            if beyond >= raw.entries:  # PIL reads such an index as black: silently the ignore colour, or a class
                findings.append(error("unreadable", where, f"palette PNG uses index {beyond}, but its colour table "
                                      f"lists {raw.entries} colour(s), so the pixel has no colour; the file is "
                                      "damaged or was written with its table cut short: re-save it with every colour "
                                      "it uses"))
                return None, findings
            raw = RawMask(raw.table[raw.array], "rgb", raw.lossy)
        if self.threshold is not None and raw.kind in ("ids", "grey3", "rgb"):
            grey = cv2.cvtColor(raw.array, cv2.COLOR_RGB2GRAY) if raw.kind == "rgb" else raw.array  # JPEG's chroma noise
            raw = RawMask((grey >= self.threshold).astype(np.uint8), "ids", False)
        values = raw.array
        grey = grey_bytes(raw.array) if raw.kind in ("grey3", "ids") and self.colours is not None else None
        if grey is not None and self.colours.knows_all_greys(grey):
            # grey colours of the palette (background 0 0 0, defect 255 255 255), in three channels or in one, 8 or
            # 16 bits (0 and 65535)
            raw = RawMask(np.repeat(grey[..., None], 3, axis=-1), "rgb", raw.lossy)
        if raw.kind == "rgb":
            if self.colours is None:
                findings.append(error("rgb_mask", where, "mask holds RGB colours but class ids are expected; "
                                      + self._fix("store one channel of ids, or pass --palette FILE to map colours "
                                                  "to classes", "use the dataset's own masks of class ids, or convert "
                                                  "colour masks with `segcli prepare folder --palette FILE`")))
                return None, findings
            values, unknown, smoothed = self.colours.decode(raw.array)
            fix = self._fix("add them to --palette (a line 'ignore R G B' maps a colour to the ignore index)",
                            "repaint them in the dataset's colours, or convert the masks with `segcli prepare folder "
                            "--palette FILE` that lists them")
            if smoothed:  # (0, 0, 2) beside black: "add them to --palette" would make a class of every stray level
                fix = (f"most of these pixels are within {NEAR} levels of a palette colour or of a blend of two, as "
                       "JPEG compression or anti-aliased drawing or resizing leaves colours: re-export the masks as "
                       "PNG without smoothing (nearest-neighbour resizing, no anti-aliasing), or set each pixel to its "
                       "nearest palette colour" + self._fix("; colours that are classes of their own go into "
                                                             "--palette", ""))
            if unknown:
                findings.append(error("unknown_colour", where, f"colours not in the palette: {unknown}; {fix}"))
        elif raw.kind == "grey3":
            findings.append(warning("rgb_mask", where, "mask stored with 3 identical channels; read as ids, "
                                    "but store a single channel"))
        counts = np.bincount(values.ravel())
        present = np.flatnonzero(counts)
        targets = {int(v): self._target(int(v)) for v in present}
        bad = [v for v, t in targets.items() if t < 0]
        t255 = targets.get(255, -1)
        coloured = raw.kind == "rgb"  # ids from colours: a 255 there is a colour the palette maps to the ignore index
        # values nobody declared (no --classes covering them, no --remap) are checked for JPEG's blur
        declared = all(v in self.remap or (self.num_classes is not None and t >= 0) for v, t in targets.items())
        named = [v for v in (*self.remap, *([self.ignore_index] if self.ignore_declared else [])) if v < len(counts)]
        # with --classes, the values it leaves out must lie at both ends, as blur's do (ids 0..30 with a stray 254
        # are out of range, not blurred)
        both_ends = self.num_classes is None or (any(v < 64 for v in bad) and any(v >= 192 for v in bad))
        blurred = None if (raw.lossy or self.lut is not None or raw.kind not in ("ids", "grey3") or declared
                           or values.dtype != np.uint8 or not both_ends) else _blurred_levels(_without(counts, named))
        if blurred:
            # a two-valued mask saved as JPEG once (then converted to PNG): its edges became values next to the two
            # levels, which would be read as dozens of classes (and 255's core as 'not labelled')
            findings.append(error("lossy_mask", where, f"values {blurred} look like a two-valued mask blurred by "
                                  "JPEG compression (saved as JPEG once): every edge would become classes of its "
                                  "own; " + self._fix("pass --mask-threshold 128 to read value >= 128 as 1 and the "
                                  "rest as 0 (if they are all class ids, name the classes with --classes)",
                                  "fix the masks, or convert them with `segcli prepare folder --mask-threshold 128`")))
        elif set(targets) == {0, 255} and not (t255 >= 0 and self._is_class(t255)) and not (
                self.ignore_declared and t255 == self.ignore_index) and not coloured:
            findings.append(error("binary_mask", where, "values are only 0 and 255: looks like a binary mask whose "
                                  "foreground would be lost; " + self._fix("pass --remap 255=1 to make 255 class 1, "
                                  "or --ignore-index 255 to declare that 255 means 'not labelled'", "fix the masks, or "
                                  "convert them with `segcli prepare folder --remap 255=1` (or --ignore-index 255)")))
        elif set(targets) == {0, 65535} and 65535 not in self.remap and self.num_classes is None and not (
                self.ignore_declared and self.ignore_index == 65535) and not coloured:
            # a 16-bit 0/65535 mask: 65535 would be read as a class id, making a table of 65,536 classes
            findings.append(error("binary_mask", where, "values are only 0 and 65535: looks like a 16-bit binary "
                                  "mask; pass --remap 65535=1 to make 65535 class 1 (with --classes to name the two), "
                                  "or --ignore-index 65535 to declare that 65535 means 'not labelled'"))
        elif bad:
            shown = ", ".join(str(v) for v in bad[:8]) + (" …" if len(bad) > 8 else "")
            what = (f"{self.raw_name}: {shown} are not among them" if self.lut is not None  # a format's own table
                    else f"{self.raw_name} {shown} are neither class ids {self._describe()} nor the ignore index "
                    f"{self.ignore_index}")  # (a format's 255 is no 'ignore index 255': it maps values, 255 among them)
            findings.append(error("out_of_range", where, f"{what}; fix the masks, "
                                  + self._fix("add classes (--classes), or map them with --remap / --ignore-index",
                                              "or convert them with `segcli prepare folder` (--classes, --remap, "
                                              "--ignore-index)")))
        if self.lut is None and not self.remap and not bad:
            ids = values
        else:
            lut = np.full(int(present.max()) + 1 if len(present) else 1, self.ignore_index, np.int64)
            for v, t in targets.items():
                lut[v] = t if t >= 0 else self.ignore_index
            ids = lut[values]
        top = max(self.ignore_index, int(ids.max()) if ids.size else 0)
        return ids.astype(np.uint8 if top < 256 else np.uint16, copy=False), findings

    def _describe(self) -> str:
        """The class ids, as the raw values that read as them where a remap (--remap, --reduce-zero-label, a --classes
        table) moves some: 'mask values 2 are neither class ids 0..2' read as a contradiction for a table of 0, 1, 3."""
        if self.num_classes is None:
            return "(any)"
        if not self.remap:
            return f"0..{self.num_classes - 1}"
        raw = sorted({v for v, t in self.remap.items() if self._is_class(t)}
                     | {v for v in range(self.num_classes) if v not in self.remap})
        shown = ", ".join(str(v) for v in raw[:12]) + (" …" if len(raw) > 12 else "")
        return f"(the values {shown}, read as 0..{self.num_classes - 1})"


def _without(counts: np.ndarray, values: list[int]) -> np.ndarray:
    """`counts` without the values the user named (--remap 254=255, --ignore-index 254): a value someone named is in
    the masks on purpose, not an edge JPEG blurred (0..2 with 254 and 255 were 'blurred' even with --remap 254=255)."""
    if not values:
        return counts
    counts = counts.copy()
    counts[values] = 0
    return counts


def _blurred_levels(counts: np.ndarray) -> str | None:
    """'0..5 and 251..255' when an 8-bit mask's value counts (np.bincount) look like two levels blurred by JPEG
    compression: the smallest value dark and the largest bright, more than one value near each, and (nearly) every
    pixel near one of them; None otherwise. (A class-id mask with ids 0..k and the ignore value 255 has one value
    near 255.)"""
    present = np.flatnonzero(counts)
    if len(present) < 4:
        return None
    low, high = int(present[0]), int(present[-1])
    if low > 63 or high < 192:  # black and white (or nearly): the two levels of a binary mask saved as an image
        return None
    band = (high - low) // 8
    lows, highs = present[present <= low + band], present[present >= high - band]
    near = int(counts[lows].sum() + counts[highs].sum())
    if len(lows) < 2 or len(highs) < 2 or near < 0.98 * counts.sum():
        return None
    return f"{low}..{int(lows[-1])} and {int(highs[0])}..{high}"


def value_lut(mapping: dict[int, int], size: int = 256) -> np.ndarray:
    """A lut for MaskDecoder: `mapping` raw value → id, every other raw value invalid (-1)."""
    lut = np.full(size, -1, np.int64)
    for raw, target in mapping.items():
        lut[int(raw)] = int(target)
    return lut
