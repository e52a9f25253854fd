"""What the readers of the published layouts (camvid, voc, cityscapes, ade20k) share: files by stem, and where
--src should point when it is one level off.
"""

from __future__ import annotations

import shlex
from itertools import islice
from pathlib import Path
from typing import Callable

from segcli.data.lint import Finding, error
from segcli.errors import DataError
from segcli.inference.io import list_images

LAYOUTS = {"camvid": "a CamVid", "voc": "a PASCAL VOC", "cityscapes": "a Cityscapes (or KITTI semantics)",
           "ade20k": "an ADE20K"}  # by format


def index(folder: Path, suffix: str = "") -> tuple[dict[str, Path], dict[str, list[Path]]]:
    """Image files under `folder` (recursive; any image extension, in any case: x.PNG as x.png) by relative stem
    less `suffix` (files whose stem does not end in it are left out), and the stems held by more than one file."""
    found: dict[str, list[Path]] = {}
    for path in list_images(folder) if folder.is_dir() else []:
        stem = path.relative_to(folder).with_suffix("").as_posix()
        if suffix:
            if not stem.endswith(suffix) or stem.endswith("/" + suffix) or stem == suffix:
                continue
            stem = stem[: -len(suffix)]
        found.setdefault(stem, []).append(path)
    return ({stem: paths[0] for stem, paths in found.items() if len(paths) == 1},
            {stem: paths for stem, paths in found.items() if len(paths) > 1})


def by_stem(folder: Path, split: str, findings: list[Finding], suffix: str = "") -> dict[str, Path]:
    """index(): stems held by two files (x.jpg and x.png) are duplicate_stem errors and left out."""
    files, duplicates = index(folder, suffix)
    for stem, paths in sorted(duplicates.items()):
        findings.append(duplicate(split, stem, paths))
    return {stem: files[stem] for stem in sorted(files)}


def duplicate(split: str, stem: str, paths: list[Path]) -> Finding:
    return error("duplicate_stem", str(paths[1]), f"stem '{stem}' is held by {', '.join(p.name for p in paths)}; "
                 "keep one file per stem", split=split, stem=stem)


def nearby(src: Path, is_root: Callable[[Path], bool]) -> Path | None:
    """A folder near `src` that `is_root` accepts: one of its 3 nearest parents (--src pointed inside the dataset),
    or a folder up to 3 levels below it (--src pointed at the folder the download was extracted into, as in
    Downloads/VOCtrainval_11-May-2012/VOCdevkit/VOC2012), the shallowest first."""
    src = src.absolute()
    return next((p for p in list(src.parents)[:3] if _accepts(is_root, p)), None) or below(src, is_root)


def below(src: Path, accepts: Callable[[Path], bool], depth: int = 3, budget: int = 2000) -> Path | None:
    """The first folder under `src` (not `src` itself), breadth-first to `depth` levels, that `accepts` takes;
    hidden folders are skipped and at most `budget` folders looked at, so a home folder costs milliseconds."""
    level = [src]
    for _ in range(depth):
        found: list[Path] = []
        for folder in level:
            try:
                found += sorted(p for p in islice(folder.iterdir(), budget) if not p.name.startswith(".") and p.is_dir())
            except OSError:
                continue
            if len(found) >= budget:
                break
        found = found[:budget]
        match = next((p for p in found if _accepts(accepts, p)), None)
        if match is not None:
            return match
        budget -= len(found)
        if budget <= 0:
            return None
        level = found
    return None


def _accepts(is_root: Callable[[Path], bool], path: Path) -> bool:
    try:
        return is_root(path)
    except OSError:
        return False


def point_at(src: Path, is_root: Callable[[Path], bool], what: str) -> str:
    """The fix part of a "not a <format> folder" error: where --src should point, or which command reads it."""
    if src.is_file():  # the downloaded archive itself
        return f"it is a file, not a folder: extract it, then point --src at {what}"
    found = nearby(src, is_root)
    if found is not None:
        return f"point --src at {found}"
    if not src.exists():
        return f"it does not exist; check the path, which should be {what}"
    return other_layout(src) or f"point --src at {what}"


def other_layout(src: Path) -> str | None:
    """'it is a <other> folder: run ...' when `src` holds another layout segcli reads (prepare voc pointed at a
    Cityscapes folder, or at a dataset prepare already wrote); None otherwise."""
    import importlib

    quoted = shlex.quote(str(src))
    if (src / "dataset.yaml").is_file():
        return (f"it is a dataset prepare already wrote: train on it with data.root={quoted}, or check it with "
                f"`segcli prepare lint {quoted}`")
    for fmt, name in LAYOUTS.items():
        is_root = importlib.import_module(f"segcli.data.formats.{fmt}")._is_root
        found = src.absolute() if _accepts(is_root, src) else nearby(src, is_root)
        if found is not None:
            where = "is" if found == src.absolute() else "is inside" if found in src.absolute().parents else "holds"
            return (f"it {where} {name} folder: run "
                    f"`segcli prepare {fmt} --src {shlex.quote(str(found))} --out DIR`")
    if (src / "images").is_dir() and (src / "masks").is_dir():
        return (f"it holds images/ and masks/: run `segcli prepare folder --images {shlex.quote(str(src / 'images'))} "
                f"--masks {shlex.quote(str(src / 'masks'))} --out DIR`")
    return None


def unlabelled_split(split: str, images: dict, masks: dict, image_dir: Path, mask_dir: Path, masks_named: str,
                     others: list[str], restore: str) -> None:
    """A split none of whose images has a mask (its mask folder missing or empty: half a download) is one line
    naming the folder and the fix, not one missing_mask finding per image that --keep-going cannot help (the
    split would be left empty)."""
    leave_out = (f", or leave '{split}' out: {' '.join(f'--split {s}' for s in others)}"
                 if others and split != "train" else "")  # without train there is nothing to train on
    if not images and not masks:  # was the lint's "split 'val' has no pair", naming no folder
        raise DataError(f"{image_dir}: holds no images, and {mask_dir} no {masks_named}, so split '{split}' would be "
                        f"empty; restore both (a partial download or extraction?){leave_out}")
    if not images or masks:
        return
    state = "not found" if not mask_dir.is_dir() else f"holds no {masks_named}"
    raise DataError(f"{mask_dir}: {state}, so none of the {len(images)} image(s) in {image_dir} has a mask; "
                    f"{restore}{leave_out}")
