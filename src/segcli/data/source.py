"""What a format reader hands to the layout writer: pairs, class table, mask decoder, pairing findings.

Every reader in segcli.data.formats returns a `Source`; segcli.data.layout lints and writes it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from segcli.data.lint import Finding, error
from segcli.data.masks import MaskDecoder


@dataclass
class Sample:
    """One image/mask pair of a native dataset.

    image: a file to copy, or an (H, W, 3) uint8 RGB array to write as PNG.
    mask: a file holding the format's raw mask values, or an (H, W) integer array of them.
    fold: cross-validation fold of a train pair (None without --folds).
    group: the pair's --group key (video, patient, scene; None without --group).
    """

    split: str
    stem: str
    image: Path | np.ndarray
    mask: Path | np.ndarray
    fold: int | None = None
    group: str | None = None


@dataclass
class Source:
    """A native dataset, ready to be linted and written.

    classes: names in id order; None = named class_<id> after the ids found (folder without --classes).
    splits: the splits this source is expected to fill; an empty one is a lint error.
    findings: problems found while pairing files (missing counterparts, duplicate stems, split lists);
        the pairs they concern are not in `samples`.
    inputs: the other files it was read from (split lists, class and colour tables): an --out holding one is refused,
        as one holding an image or a mask is (--overwrite would delete them).
    """

    name: str
    classes: list[str] | None
    palette: list[list[int]]
    ignore_index: int
    samples: Iterable[Sample]
    decoder: MaskDecoder
    splits: list[str]
    findings: list[Finding] = field(default_factory=list)
    inputs: list[Path] = field(default_factory=list)


def pair_by_stem(split: str, images: dict[str, Path], masks: dict[str, Path], no_mask: Callable[[str], str],
                 no_image: Callable[[str], str]) -> tuple[list[Sample], list[Finding]]:
    """Pair one split's images and masks by stem, in the order of `images`.

    An image without a mask and a mask without an image (in sorted stem order) each become an error finding
    whose detail is no_mask(stem) / no_image(stem).
    """
    samples, findings = [], []
    for stem, image in images.items():
        if stem in masks:
            samples.append(Sample(split=split, stem=stem, image=image, mask=masks[stem]))
        else:
            findings.append(error("missing_mask", str(image), no_mask(stem), split=split, stem=stem))
    for stem in sorted(set(masks) - set(images)):
        findings.append(error("missing_image", str(masks[stem]), no_image(stem), split=split, stem=stem))
    return samples, findings

