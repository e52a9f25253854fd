"""Read and lint one image/mask pair: every finding is collected, nothing is raised."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from segcli.data.lint import Finding, error
from segcli.data.masks import MaskDecoder, RawMask, decode_image_raw, read_bytes, read_source_mask
from segcli.data.source import Sample
from segcli.errors import DataError
from segcli.inference.io import depth_problem, to_uint8


@dataclass
class CheckedPair:
    """image: (H, W, 3) uint8 RGB (None if unreadable); data: the image file's bytes (None for arrays);
    ids: (H, W) uint8/uint16 class ids (None if unusable)."""

    sample: Sample
    image: np.ndarray | None = None
    data: bytes | None = None
    ids: np.ndarray | None = None
    findings: list[Finding] = field(default_factory=list)


def _size_hint(data: bytes | None, mask_shape: tuple[int, ...]) -> str:
    """Say so when the mask matches the image's stored pixels but not its EXIF-rotated view."""
    if data is None:
        return ""
    stored = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE | cv2.IMREAD_IGNORE_ORIENTATION)
    if stored is not None and stored.shape[:2] == mask_shape[:2]:
        return " (the image carries an EXIF rotation; its mask matches the unrotated pixels: rotate the mask too)"
    return ""


def check_pair(sample: Sample, decoder: MaskDecoder) -> CheckedPair:
    """Decode the image and the mask of `sample` and lint them."""
    pair = CheckedPair(sample)
    where = dict(split=sample.split, stem=sample.stem)
    image_file = str(sample.image) if isinstance(sample.image, Path) else f"{sample.split}/{sample.stem} (image)"
    mask_file = str(sample.mask) if isinstance(sample.mask, Path) else f"{sample.split}/{sample.stem} (mask)"
    try:
        if isinstance(sample.image, Path):
            pair.data = read_bytes(sample.image)
            raw = decode_image_raw(pair.data, sample.image)
            problem = depth_problem(raw)
            if problem:
                pair.findings.append(Finding(problem[0], "image_depth", image_file, problem[1], **where))
            pair.image = cv2.cvtColor(to_uint8(raw), cv2.COLOR_BGR2RGB)
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
    if pair.image is not None and pair.ids is not None and pair.image.shape[:2] != pair.ids.shape[:2]:
        (h, w), (mh, mw) = pair.image.shape[:2], pair.ids.shape[:2]
        pair.findings.append(error("size_mismatch", mask_file, f"mask is {mw}x{mh} but its image {image_file} is "
                                   f"{w}x{h}{_size_hint(pair.data, pair.ids.shape)}; masks must match their image",
                                   **where))
    return pair
