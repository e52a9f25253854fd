"""Assigning pairs to splits: from split list files, or a seeded random split; k-fold assignment.

A split list holds one stem per line (`a/b/x`, `a/b/x.jpg` and `./a/b/x` all name the pair whose
image is a/b/x.*); blank lines and `#` comments are skipped.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from segcli.data.lint import Finding, error, warning
from segcli.errors import ConfigError, DataError
from segcli.inference.io import IMAGE_EXTENSIONS


def read_split_list(path: str | Path) -> list[str]:
    """Stems listed in a split file, in order."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"split file {path} not found; check --split-file")
    stems = []
    for line in path.read_text(encoding="utf-8").splitlines():
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        stem = text.split()[0].removeprefix("./")
        if Path(stem).suffix.lower() in IMAGE_EXTENSIONS:
            stem = stem[: -len(Path(stem).suffix)]
        stems.append(stem)
    return stems


def from_lists(stems: list[str], lists: dict[str, list[str]], where: dict[str, str]) -> tuple[dict[str, str], list[Finding]]:
    """stem → split from split lists; findings for unknown, repeated and unlisted stems.

    where: split → its list file (for messages). Returned assignment leaves out the stems with findings
    of their own (those listed twice, or in no list).
    """
    known = set(stems)
    assigned: dict[str, str] = {}
    findings: list[Finding] = []
    overlap: set[str] = set()
    for split, listed in lists.items():
        for stem in listed:
            if stem not in known:
                findings.append(error("split_entry", where[split], f"lists '{stem}', which has no image/mask pair",
                                      split=split, stem=stem))
            elif stem in assigned and assigned[stem] != split:
                overlap.add(stem)
                findings.append(error("split_overlap", where[split], f"'{stem}' is also listed in split "
                                      f"'{assigned[stem]}'; a pair belongs to one split", split=split, stem=stem))
            else:
                assigned[stem] = split
    for stem in overlap:
        assigned.pop(stem, None)
    unlisted = [s for s in stems if s not in assigned and s not in overlap]
    for stem in unlisted:
        findings.append(warning("unassigned", stem, "in no split list; left out", stem=stem))
    return assigned, findings


def random_split(stems: list[str], val_fraction: float, test_fraction: float, seed: int) -> dict[str, str]:
    """stem → train/val/test; a non-zero fraction always gets at least one pair when there are enough."""
    for name, value in (("--val-fraction", val_fraction), ("--test-fraction", test_fraction)):
        if not 0.0 <= value < 1.0:
            raise ConfigError(f"{name} {value} must be in [0, 1)")
    if val_fraction + test_fraction >= 1.0:
        raise ConfigError(f"--val-fraction {val_fraction} + --test-fraction {test_fraction} leave nothing to train on")
    stems = sorted(stems)
    order = np.random.default_rng(seed).permutation(len(stems))
    counts = []
    for fraction in (val_fraction, test_fraction):
        n = int(round(fraction * len(stems)))
        counts.append(max(n, 1) if fraction > 0 and len(stems) > 2 else n)
    assignment = {s: "train" for s in stems}
    for i in order[: counts[0]]:
        assignment[stems[i]] = "val"
    for i in order[counts[0]: counts[0] + counts[1]]:
        assignment[stems[i]] = "test"
    return assignment


def assign_folds(stems: list[str], folds: int, seed: int) -> dict[str, int]:
    """stem → fold 0..folds-1, balanced (sizes differ by at most one), seeded."""
    if folds < 2:
        raise ConfigError(f"--folds {folds}: need at least 2 folds")
    if folds > len(stems):
        raise ConfigError(f"--folds {folds}: only {len(stems)} training pairs")
    stems = sorted(stems)
    order = np.random.default_rng([seed, folds]).permutation(len(stems))
    return {stems[i]: rank % folds for rank, i in enumerate(order)}
