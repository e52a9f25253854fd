"""What the readers of the published layouts (camvid, voc, cityscapes, ade20k) share: files by stem, and where
--src should point when it is one level off.
"""

from __future__ import annotations

from itertools import islice
from pathlib import Path
from typing import Callable

from segcli.data.lint import Finding, error
from segcli.inference.io import list_images


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
    or one of its sub-folders (--src pointed at the folder the download was extracted into)."""
    src = src.absolute()
    candidates = list(src.parents)[:3]
    if src.is_dir():
        try:
            candidates += sorted(p for p in islice(src.iterdir(), 5000) if not p.name.startswith(".") and p.is_dir())
        except OSError:
            pass
    return next((p for p in candidates if _accepts(is_root, p)), None)


def _accepts(is_root: Callable[[Path], bool], path: Path) -> bool:
    try:
        return is_root(path)
    except OSError:
        return False


def point_at(src: Path, is_root: Callable[[Path], bool], what: str) -> str:
    """The fix part of a "not a <format> folder" error: where --src should point."""
    if src.is_file():  # the downloaded archive itself
        return f"it is a file, not a folder: extract it, then point --src at {what}"
    found = nearby(src, is_root)
    if found is not None:
        return f"point --src at {found}"
    return f"point --src at {what}"
