"""Assigning pairs to splits: from split list files, or a seeded random split; k-fold assignment.

Groups (`--group REGEX`): pairs whose stems give the same key — the pattern's first capture group, or its
whole match — are frames of one video, slices of one patient, tiles of one scene; a random split and the
folds keep each group whole, so no group leaks across train and val (nearly identical frames on both sides
make val overstate what a model does on new footage).

A split list holds one stem per line (`a/b/x`, `a/b/x.jpg` and `./a/b/x` all name the pair whose
image is a/b/x.*); blank lines and `#` comments are skipped.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import numpy as np

from segcli.data.lint import Finding, error, warning
from segcli.errors import ConfigError, DataError
from segcli.inference.io import IMAGE_EXTENSIONS, read_lines


def read_split_list(path: str | Path) -> list[str]:
    """Stems listed in a split file, in order: one per line, spaces inside a name kept ('IMG 0001'); a `#` at the
    start of a line or after a space starts a comment; of an "image mask" pair of paths (VOC's augmented lists:
    '/JPEGImages/x.jpg /SegmentationClassAug/x.png') the image's."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"split file {path} not found; check --split-file")
    stems = []
    for line in read_lines(path, "split file"):
        text = re.split(r"(?:^|\s)#", line, maxsplit=1)[0].strip()
        if not text:
            continue
        first = text.split()[0]
        stem = (first if Path(first).suffix.lower() in IMAGE_EXTENSIONS else text).removeprefix("./")
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
                first = assigned[stem]
                if stem not in overlap:  # left out of both splits: a finding in each, so --keep-going drops both
                    findings.append(error("split_overlap", where[first], f"'{stem}' is also listed in split '{split}'; "
                                          "a pair belongs to one split", split=first, stem=stem))
                overlap.add(stem)
                findings.append(error("split_overlap", where[split], f"'{stem}' is also listed in split "
                                      f"'{first}'; a pair belongs to one split", split=split, stem=stem))
            else:
                assigned[stem] = split
    for stem in overlap:
        assigned.pop(stem, None)
    unlisted = [s for s in stems if s not in assigned and s not in overlap]
    for stem in unlisted:
        findings.append(warning("unassigned", stem, "in no split list; left out", stem=stem))
    return assigned, findings


def group_keys(stems: list[str], pattern: str) -> dict[str, str]:
    """stem → its group key: the first capture group of `pattern` searched in the stem (the first that took part in
    the match: '^(seq[A-Z])_|^(other)' gives 'other' for other1), or the whole match when it has none."""
    try:
        regex = re.compile(pattern)
    except re.error as err:
        raise ConfigError(f"--group '{pattern}' is not a regular expression ({err})") from None
    keys, unmatched = {}, []
    for stem in stems:
        match = regex.search(stem)
        key = None if match is None else (next(filter(None, match.groups()), None) if regex.groups else match.group(0))
        if not key:
            unmatched.append(stem)
        else:
            keys[stem] = key
    if unmatched:
        raise ConfigError(f"--group '{pattern}' gives no group for {len(unmatched)} of {len(stems)} pair(s), e.g. "
                          f"'{unmatched[0]}'; make it match every stem (e.g. '^[^_]+' for <video>_<frame> names)")
    return keys


def group_leaks(assigned: dict[str, str], groups: dict[str, str]) -> list[Finding]:
    """A warning for each group whose pairs the split lists put in more than one split."""
    splits_of: dict[str, set[str]] = {}
    for stem, split in assigned.items():
        splits_of.setdefault(groups[stem], set()).add(split)
    return [warning("group_leak", key, f"group '{key}' has pairs in splits {', '.join(sorted(splits))}; "
                    "its near-duplicates make the held-out score optimistic")
            for key, splits in sorted(splits_of.items()) if len(splits) > 1]


def random_split(stems: list[str], val_fraction: float, test_fraction: float, seed: int,
                 groups: dict[str, str] | None = None) -> dict[str, str]:
    """stem → train/val/test; a non-zero fraction always gets at least one pair, and train too (too few pairs for
    that: a ConfigError, as for too few groups).

    With `groups` (stem → key), whole groups are assigned: the held-out counts come as close to the
    fractions as the group sizes allow."""
    for name, value in (("--val-fraction", val_fraction), ("--test-fraction", test_fraction)):
        if not 0.0 <= value < 1.0:
            raise ConfigError(f"{name} {value} must be in [0, 1); give the share of the pairs to hold out, e.g. 0.2")
    if val_fraction + test_fraction >= 1.0:
        raise ConfigError(f"--val-fraction {val_fraction} + --test-fraction {test_fraction} leave nothing to train on")
    stems = sorted(stems)
    if groups is not None:
        return _grouped_split(stems, (val_fraction, test_fraction), seed, groups)
    order = _shuffled(stems, seed)
    fractions = (val_fraction, test_fraction)
    held_out = sum(f > 0 for f in fractions)
    if 0 < len(stems) <= held_out:  # a pair for each held-out split and one to train on
        given = [name for name, f in (("--val-fraction", val_fraction), ("--test-fraction", test_fraction)) if f > 0]
        raise ConfigError(f"{' and '.join(given)}: {len(stems)} pair(s) cannot fill train and {held_out} held-out "
                          f"split(s); add pairs, or give {' '.join(f'{name} 0' for name in given)} to train on "
                          "every pair")
    counts = [max(round(f * len(stems)), 1) if f > 0 else 0 for f in fractions]
    while sum(counts) >= len(stems) > 0:  # rounding left train empty: shrink the larger held-out split
        counts[counts.index(max(counts))] -= 1
    assignment = {s: "train" for s in stems}
    for stem in order[: counts[0]]:
        assignment[stem] = "val"
    for stem in order[counts[0]: counts[0] + counts[1]]:
        assignment[stem] = "test"
    return assignment


def _shuffled(keys: list[str], seed) -> list[str]:
    """`keys` in a seeded random order."""
    return [keys[i] for i in np.random.default_rng(seed).permutation(len(keys))]


def _grouped_split(stems: list[str], fractions: tuple[float, float], seed: int, groups: dict[str, str]) -> dict[str, str]:
    size = Counter(groups[s] for s in stems)
    keys = sorted(size)
    order = _shuffled(keys, seed)
    needed = 1 + sum(f > 0 for f in fractions)
    if len(keys) < needed:
        given = [name for name, f in zip(("--val-fraction", "--test-fraction"), fractions) if f > 0]
        raise ConfigError(f"--group: {len(keys)} group(s) cannot fill train and {needed - 1} held-out split(s); use a "
                          f"finer --group, or give {' '.join(f'{name} 0' for name in given)} to train on every group")
    split_of: dict[str, str] = {}
    for i, (split, fraction) in enumerate(zip(("val", "test"), fractions)):
        if fraction <= 0:
            continue
        keep = 1 + sum(f > 0 for f in fractions[i + 1:])  # groups left for train and the splits still to fill
        spare = [k for k in order if k not in split_of]
        chosen = _closest_groups(spare, size, fraction * len(stems))
        if chosen is None or len(spare) - len(chosen) < keep:
            chosen = _greedy_groups(spare, size, fraction * len(stems), len(spare) - keep)
        split_of.update((key, split) for key in chosen)
    return {s: split_of.get(groups[s], "train") for s in stems}


def _greedy_groups(spare: list[str], size: Counter, target: float, most: int) -> list[str]:
    """At most `most` (≥ 1) of the `spare` groups, in their (seeded) order, that fit under `target`, then the one
    that lands closest if that helps; one group at least."""
    chosen, taken = [], 0
    for key in spare:
        if taken + size[key] <= target and len(chosen) < most:
            chosen.append(key)
            taken += size[key]
    rest = [k for k in spare if k not in chosen]
    if rest and len(chosen) < most:
        best = min(rest, key=lambda k: abs(taken + size[k] - target))
        if taken == 0 or abs(taken + size[best] - target) < abs(taken - target):
            chosen.append(best)
    return chosen


def _closest_groups(spare: list[str], size: Counter, target: float, budget: int = 20_000_000) -> list[str] | None:
    """The groups among `spare` whose pairs add up closest to `target` (ties: the smaller total), at least one
    group: an exact subset-sum over the totals up to 2 × target (a bit set per group). Of the subsets with that
    total, the one whose groups come earliest in `spare`'s seeded order, so that the seed still chooses. None when
    the search would exceed `budget` bits (thousands of groups): small groups get close greedily anyway."""
    cap = int(2 * target) + 1
    if cap * (len(spare) + 1) > budget:
        return None
    mask = (1 << (cap + 1)) - 1
    reach = [1]  # bit t of reach[i]: some subset of the first i groups adds up to t
    for key in spare:
        reach.append((reach[-1] | (reach[-1] << size[key])) & mask)
    totals = [t for t in range(1, cap + 1) if reach[-1] >> t & 1]
    if not totals:
        return None
    total = min(totals, key=lambda t: (abs(t - target), t))
    chosen = []
    for i in range(len(spare), 0, -1):  # leave out the later groups whenever the earlier ones reach the total
        if not reach[i - 1] >> total & 1:
            chosen.append(spare[i - 1])
            total -= size[spare[i - 1]]
    return chosen[::-1]


def assign_folds(stems: list[str], folds: int, seed: int, groups: dict[str, str] | None = None) -> dict[str, int]:
    """stem → fold 0..folds-1, balanced (sizes differ by at most one), seeded.

    With `groups`, whole groups go to folds, largest first, each to the fold with the fewest pairs so far."""
    if folds < 2:
        raise ConfigError(f"--folds {folds}: need at least 2 folds")
    if groups is not None:
        size = Counter(groups[s] for s in stems)
        if folds > len(size):
            raise ConfigError(f"--folds {folds}: only {len(size)} group(s) of training pairs; use fewer folds or a finer --group")
        order = _shuffled(sorted(size), [seed, folds])
        fill, fold_of = [0] * folds, {}
        for key in sorted(order, key=lambda k: -size[k]):  # stable: ties keep the seeded order
            fold = fill.index(min(fill))
            fold_of[key] = fold
            fill[fold] += size[key]
        return {s: fold_of[groups[s]] for s in sorted(stems)}
    if folds > len(stems):
        fix = f"use at most {len(stems)} folds" if len(stems) >= 2 else "add training pairs, or leave out --folds"
        raise ConfigError(f"--folds {folds}: only {len(stems)} training pair(s); {fix}")
    return {stem: rank % folds for rank, stem in enumerate(_shuffled(sorted(stems), [seed, folds]))}


DEFAULT_VAL_FRACTION = 0.2  # of a random split, and of the val drawn from a train/ folder when there is no val/ one
SPLIT_FOLDERS = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
                 "dev": "val", "test": "test", "testing": "test"}  # folder name (any case) → split


def split_of_folder(name: str) -> str | None:
    """The split a folder's name gives (SPLIT_FOLDERS, any case, also with a release year as COCO's `train2017/`,
    `val2017/` or `val_2014/`), or None."""
    match = re.fullmatch(r"(.+?)[_-]?(?:19|20)\d\d", name.lower())
    return SPLIT_FOLDERS.get(name.lower()) or (match and SPLIT_FOLDERS.get(match.group(1))) or None


def split_folders(stems: list[str]) -> dict[str, tuple[str, str]] | None:
    """stem → (the split its split folder names, that folder): `train/x` → ('train', 'train/'), `Validation/y` →
    ('val', 'Validation/'), when the pairs sit in split folders: a train folder and a val or test one, at the top of
    the stems or below folders that every stem shares (`data/train/x`, as an archive often unpacks); stems outside
    them are left out. None when they do not."""
    import os
    from itertools import takewhile

    shared = "".join(f"{folder}/" for folder in takewhile(lambda folder: folder.lower() not in SPLIT_FOLDERS,
                                                           os.path.commonprefix([s.split("/")[:-1] for s in stems])))
    of = {}
    for stem in stems:
        top, sep, _ = stem[len(shared):].partition("/")
        if sep and (split := split_of_folder(top)):
            of[stem] = (split, f"{shared}{top}/")
    found = {split for split, _ in of.values()}
    return of if "train" in found and found & {"val", "test"} else None


def folder_splits(stems: list[str], folders: dict[str, tuple[str, str]], seed: int, findings: list[Finding],
                   groups: dict[str, str] | None) -> tuple[dict[str, str], list[str]]:
    """The split folders as the splits (a val drawn at random from train/ when there is no val folder); a note on
    stderr says so."""
    from segcli.console import info

    assigned = {stem: split for stem, (split, _) in folders.items()}
    names: dict[str, set[str]] = {}
    for split, folder in folders.values():
        names.setdefault(split, set()).add(folder)
    every = ", ".join(sorted(folder for split_folders in names.values() for folder in split_folders))
    for stem in stems:
        if stem not in assigned:
            findings.append(warning("unassigned", stem, f"in none of the split folders ({every}); left out", stem=stem))
    drawn = ""
    if "val" not in names:
        train = [s for s, split in assigned.items() if split == "train"]
        if len(train) < 2 or (groups is not None and len({groups[s] for s in train}) < 2):
            raise ConfigError(f"the pairs sit in split folders ({every}) "
                              f"without a val folder, and {'/'.join(sorted(names['train']))} has too few "
                              f"{'groups' if groups is not None else 'pairs'} to draw a val split from; add a val/ "
                              f"folder{', use a finer --group' if groups is not None else ''}, or split all pairs at "
                              "random with --val-fraction F")
        drawn_val = random_split(train, DEFAULT_VAL_FRACTION, 0.0, seed,
                                 None if groups is None else {s: groups[s] for s in train})
        assigned.update({s: split for s, split in drawn_val.items() if split == "val"})
        drawn = (f" (no val folder: val is {DEFAULT_VAL_FRACTION:g} of {'/'.join(sorted(names['train']))} drawn at "
                 f"random, --seed {seed}{', whole --group groups' if groups is not None else ''})")
    if groups is not None:
        findings.extend(group_leaks(assigned, groups))
    expected = [split for split in ("train", "val", "test") if split in names or split == "val"]
    counts = ", ".join(f"{split} {sum(1 for v in assigned.values() if v == split)}"
                       + (f" ({', '.join(sorted(names[split]))})" if split in names else "") for split in expected)
    info(f"prepare: note: the pairs sit in split folders, which are the splits: {counts}{drawn}; for a random split "
         "of all pairs instead give --val-fraction F (and --test-fraction F)")
    return assigned, expected
