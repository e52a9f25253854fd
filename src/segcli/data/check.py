"""Read and lint one image/mask pair: every finding is collected, nothing is raised."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from segcli.data.lint import Finding, error, warning
from segcli.data.masks import MaskDecoder, RawMask, decode_image_raw, read_bytes, read_source_mask
from segcli.data.source import Sample
from segcli.errors import DataError
from segcli.inference.io import decode_stored, non_finite_to, page_count, pages_noun, png_colour_type, to_uint8


@dataclass
class CheckedPair:
    """image: (H, W, 3) uint8 RGB (None if unreadable); data: the image file's bytes (None for arrays);
    ids: (H, W) uint8/uint16 class ids (None if unusable).

    stored: the image as stored (every channel) when it is deeper than 8 bits, else None; deep_stats: for such
    an image, when no image_range was given, its RGB channel (mean, std) in stored values (the card's stats scale
    them once the dataset's image_range is chosen, segcli.data.depth)."""

    sample: Sample
    image: np.ndarray | None = None
    data: bytes | None = None
    stored: np.ndarray | None = None
    deep_stats: tuple[np.ndarray, np.ndarray] | None = None
    ids: np.ndarray | None = None
    findings: list[Finding] = field(default_factory=list)


def _size_hint(data: bytes | None, mask, image_shape: tuple[int, ...], mask_shape: tuple[int, ...]) -> str:
    """Say so when the mask's EXIF orientation (which masks are read without) or the image's explains the sizes."""
    if isinstance(mask, Path):  # first: an image and a mask that carry the same orientation fail here too
        try:
            shown = cv2.imdecode(np.fromfile(str(mask), np.uint8), cv2.IMREAD_GRAYSCALE)  # as viewers show it
        except (OSError, cv2.error):
            shown = None
        if shown is not None and shown.shape[:2] == image_shape[:2]:
            return (" (the mask carries an EXIF orientation, which masks are read without: a viewer shows it "
                    f"{shown.shape[1]}x{shown.shape[0]}; save its pixels as shown, without the orientation tag)")
    if data is None:
        return ""
    stored = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE | cv2.IMREAD_IGNORE_ORIENTATION)
    if stored is not None and stored.shape[:2] == mask_shape[:2]:
        return " (the image carries an EXIF rotation; its mask matches the unrotated pixels: rotate the mask too)"
    return ""


def _keep_stored(pair: CheckedPair, colour: np.ndarray, image_range: list[float] | None) -> None:
    """For a deeper image: pair.deep_stats from its BGR decode, and pair.stored: every channel as stored (decoded
    again, unless the file is a grey or RGB PNG, whose colour decode holds them all)."""
    if colour.dtype == np.uint8:
        return
    if image_range is None:  # the range is chosen from all the images: stats wait for it
        pair.deep_stats = stored_stats(colour)
    png_type = png_colour_type(pair.data)
    if png_type in (0, 2):
        pair.stored = np.ascontiguousarray(colour[..., 0]) if png_type == 0 else colour
        return
    stored = decode_stored(np.frombuffer(pair.data, np.uint8), colour) if pair.data else None
    pair.stored = colour if stored is None else stored  # never the unrotated pixels of an EXIF-rotated file


def stored_stats(colour: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A deeper (H, W, 3) BGR image's RGB channel (mean, std) in stored values, its no-data read as images are read
    (inference.io.to_uint8: NaN and -inf at the range's low end, +inf at its high end). The range is not known yet;
    it spans every finite value of the dataset, so the image's own smallest and largest finite values stand for its
    ends (float64: a float32 image's sums would lose precision or, with ±inf as ±3.4e38, overflow)."""
    values = colour.astype(np.float64)
    if colour.dtype.kind == "f":
        finite = values[np.isfinite(values)]
        values = non_finite_to(values, *((float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)))
    mean, std = cv2.meanStdDev(values)
    return mean.ravel()[2::-1], std.ravel()[2::-1]


def _multi_page(path, kind: str, **where) -> list[Finding]:
    """A warning for a TIFF holding more than one page (a stack, a time series), or an animated GIF: OpenCV reads
    the first only."""
    pages = page_count(path) if isinstance(path, Path) else 1
    if pages < 2:
        return []
    noun = pages_noun(path)
    return [warning("multi_page", str(path), f"{kind} holds {pages} {noun} and only the first is read; write one "
                    f"file per {noun[:-1]} (each a pair of its own), or keep only the {noun[:-1]} that belongs", **where)]


def check_pair(sample: Sample, decoder: MaskDecoder, image_range: list[float] | None = None) -> CheckedPair:
    """Decode the image and the mask of `sample` and lint them; image_range: the [low, high] a deeper image is
    viewed through (pair.image), given by the user, else None (chosen later from all the images)."""
    pair = CheckedPair(sample)
    where = dict(split=sample.split, stem=sample.stem)
    image_file = str(sample.image) if isinstance(sample.image, Path) else f"{sample.split}/{sample.stem} (image)"
    mask_file = str(sample.mask) if isinstance(sample.mask, Path) else f"{sample.split}/{sample.stem} (mask)"
    try:
        if isinstance(sample.image, Path):
            pair.data = read_bytes(sample.image)
            raw = decode_image_raw(pair.data, sample.image)
            pair.image = cv2.cvtColor(to_uint8(raw, image_range), cv2.COLOR_BGR2RGB)
            _keep_stored(pair, raw, image_range)
        else:
            pair.image = sample.image
    except DataError as err:
        pair.findings.append(error("unreadable", image_file, err.message.removeprefix(f"{image_file}: "), **where))
    try:
        if isinstance(sample.mask, Path):
            raw = read_source_mask(sample.mask)
        else:
            raw = RawMask(sample.mask, "ids", False)
        pair.ids, findings = decoder.decode(raw, mask_file)
        for finding in findings:
            finding.split, finding.stem = sample.split, sample.stem
        pair.findings.extend(findings)
    except DataError as err:
        pair.findings.append(error("unreadable", mask_file, err.message.removeprefix(f"{mask_file}: "), **where))
    pair.findings += _multi_page(sample.image, "the image", **where) + _multi_page(sample.mask, "the mask", **where)
    if pair.image is not None and pair.ids is not None and pair.image.shape[:2] != pair.ids.shape[:2]:
        (h, w), (mh, mw) = pair.image.shape[:2], pair.ids.shape[:2]
        pair.findings.append(error("size_mismatch", mask_file, f"mask is {mw}x{mh} but its image {image_file} is "
                                   f"{w}x{h}{_size_hint(pair.data, sample.mask, pair.image.shape, pair.ids.shape)}; masks must "
                                   "match their image",
                                   **where))
    return pair
