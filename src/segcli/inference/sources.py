"""What `segcli predict` reads: files, folders, globs, list files and stdin → an ordered list of Items.

Every input becomes an Item(path, rel): `rel` is the output-relative path without suffix, so that
outputs mirror the input tree and their names are deterministic:
- a file given by name            → its stem
- a folder (recursive, images)    → the path relative to the folder
- a glob ("photos/**/*.jpg")      → the path relative to the glob's fixed leading folder
- a list file (--list FILE) or `-` (one path per line on stdin)
                                  → the path relative to the listed files' common folder
Videos (mp4/avi/mov/mkv/m4v) are taken from files, globs, lists and folders (with their images).
Files found by walking a folder or expanding a glob are left out when they lie under `skip_under` (predict's
--out) and that is a sub-folder of the folder walked: re-running `predict DIR --out DIR/preds` must not read the
previous run's masks as new inputs.
"""

from __future__ import annotations

import glob
import os
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

from segcli.errors import ConfigError, DataError

VIDEO_EXTENSIONS = {".mp4", ".avi", ".mov", ".mkv", ".m4v"}


def overlay_suffix(video: Path) -> str:
    """The suffix of a video's overlay video: .mp4 for an .mp4, .mov or .m4v, else .avi (video.overlay_path)."""
    return ".mp4" if video.suffix.lower() in (".mp4", ".mov", ".m4v") else ".avi"
# An image's leading bytes → (its format, the suffix it should have). No video container starts so: MP4/MOV give a
# box size and type ("....ftyp", "....mdat"), AVI "RIFF....AVI ", Matroska 0x1A45DFA3.
IMAGE_MAGIC = ((b"\xff\xd8\xff", "JPEG", ".jpg"), (b"\x89PNG\r\n\x1a\n", "PNG", ".png"), (b"GIF87a", "GIF", ".gif"),
               (b"GIF89a", "GIF", ".gif"), (b"II*\x00", "TIFF", ".tif"), (b"MM\x00*", "TIFF", ".tif"),
               (b"II+\x00", "TIFF", ".tif"), (b"MM\x00+", "TIFF", ".tif"))  # classic TIFF and BigTIFF


def image_format(path: Path) -> tuple[str, str] | None:
    """(format, suffix) of the image `path` holds by its leading bytes, e.g. ("JPEG", ".jpg"); None for anything
    else (a video, another file, one that cannot be read). A BMP is "BM" with zero reserved bytes, a WebP
    "RIFF....WEBP"."""
    try:
        with open(path, "rb") as file:
            head = file.read(16)
    except OSError:
        return None
    for magic, name, suffix in IMAGE_MAGIC:
        if head.startswith(magic):
            return name, suffix
    if head[:2] == b"BM" and head[6:10] == b"\0\0\0\0" and len(head) >= 14:
        return "BMP", ".bmp"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP", ".webp"
    return None


@dataclass(frozen=True)
class Item:
    """One input: an image or a video file, and its output-relative path without suffix; `walked`: the folder
    that was walked (or the glob's fixed leading folder) to find it, None when it was named (a file, a list line)."""

    path: Path
    rel: Path
    walked: Path | None = field(default=None, compare=False)

    @property
    def is_video(self) -> bool:
        return self.path.suffix.lower() in VIDEO_EXTENSIONS


def _is_glob(entry: str) -> bool:
    return any(c in entry for c in "*?[")


def _media(path: Path) -> bool:
    from segcli.inference.io import IMAGE_EXTENSIONS

    suffix = path.suffix.lower()
    return suffix in IMAGE_EXTENSIONS or suffix in VIDEO_EXTENSIONS


def _from_glob(pattern: str) -> list[Item]:
    parts = Path(pattern).parts
    fixed = next((i for i, part in enumerate(parts) if _is_glob(part)), len(parts))
    base = Path(*parts[:fixed]) if fixed else Path(".")
    found = sorted(Path(p) for p in glob.glob(pattern, recursive=True) if _media(Path(p)) and Path(p).is_file())
    if not found:
        raise DataError(f"{pattern}: the glob matches no image or video files; check the pattern (quote it for the shell)")
    return [Item(p, p.relative_to(base).with_suffix(""), walked=base) for p in found]


def _listed(line: str) -> Path:
    """A list's line as a path: as written where a file of that name exists (a name may begin or end with spaces, as
    `find` prints it), else without the spaces around it (an editor's indentation or trailing blanks)."""
    exact = Path(line.rstrip("\r\n")).expanduser()
    return exact if str(exact) != str(exact).strip() and exact.exists() else Path(line.strip()).expanduser()


def _from_list(lines: list[str], where: str) -> list[Item]:
    if any("\x00" in line for line in lines):  # 'embedded null byte' where the first path is opened: exit 4
        text = "\n".join(lines)  # UTF-16: every other byte of ASCII paths is NUL; find -print0: one per path
        utf16 = (text[:2] in ("\udcff\udcfe", "\udcfe\udcff", "\xff\xfe", "\xfe\xff")
                 or text.count("\x00") * 3 >= len(text))
        fix = ("it is UTF-16 text (PowerShell's > and Out-File write it); save the list of paths as UTF-8" if utf16
               else "its paths are separated by NUL bytes (find -print0); give one path per line (find without "
                    "-print0, or pipe through tr '\\0' '\\n')")
        raise DataError(f"{where}: {fix}")
    paths = [_listed(line) for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not paths:
        raise DataError(f"{where}: no paths listed; give one image or video path per line")
    for path in paths:  # a folder or a wildcard would fail later as an unreadable file ("Is a directory")
        if path.is_dir() or (not path.exists() and _is_glob(str(path))):
            what = "a folder" if path.is_dir() else "a wildcard"
            raise DataError(f"{where}: {path} is {what}; a list names one image or video file per line: give "
                            f"{path} as an input instead (segcli predict {shlex.quote(str(path))} …), or list its files")
    absolute = [Path(os.path.abspath(p)) for p in paths]  # abspath also folds "..", so no rel can climb out of --out
    base = Path(os.path.commonpath([str(p.parent) for p in absolute]))
    return [Item(p, a.relative_to(base).with_suffix("")) for p, a in zip(paths, absolute)]


def _check_relative_to_cwd(items: list[Item], list_file: Path) -> None:
    """A list's relative paths are read from the current folder; when one is missing there but lies beside the list
    file (a list written for its own folder), every input would fail 'cannot read': say where they are looked for."""
    for item in items:
        if not item.path.is_absolute() and not item.path.exists() and (list_file.parent / item.path).exists():
            raise DataError(f"{list_file}: its relative paths are read from the current folder ({Path.cwd()}), where "
                            f"{item.path} does not exist; it does beside the list: run segcli from "
                            f"{list_file.parent.resolve()}, or write absolute paths in the list")


def _from_entry(entry: str) -> list[Item]:
    from segcli.inference.io import IMAGE_EXTENSIONS, list_images

    root = Path(entry)
    if root.is_file():
        return [Item(root, Path(root.stem))]
    if root.is_dir():
        found = list_images(root, IMAGE_EXTENSIONS | VIDEO_EXTENSIONS)
        if not found:
            raise DataError(f"{root}: no images or videos found in this folder")
        return [Item(path, path.relative_to(root).with_suffix(""), walked=root) for path in found]
    if _is_glob(entry):
        return _from_glob(entry)
    if root.exists():  # a pipe (`<(curl ...)`), a socket, a device: images are decoded from files
        raise DataError(f"{root}: not a file or folder (a pipe or a device); save the image or video to a file and "
                        "pass its path (`-` reads a list of paths from stdin, not image data)")
    raise DataError(f"{root}: input not found; pass image or video files, folders, globs, --list FILE or - for stdin")


def collect(inputs: list[str], list_file: str | None = None, stdin=None,
            skip_under: str | Path | None = None) -> list[Item]:
    """Inputs in the order given (folders and globs sorted), checked for output-name collisions; files found in
    a folder or glob are left out when they lie under `skip_under`, a sub-folder of it (named files never are)."""
    items: list[Item] = []
    for entry in inputs:
        if entry == "-":
            items.extend(_from_list((stdin or sys.stdin).read().splitlines(), "stdin"))
        else:  # '~/photos' quoted, or from a script: the shell did not expand it
            items.extend(_from_entry(os.path.expanduser(entry) if entry.startswith("~") else entry))
    if list_file == "-":  # `--list -`: the list on stdin, as a bare `-`
        if "-" in inputs:
            raise ConfigError("--list - and the input - both read stdin; give the list once")
        items.extend(_from_list((stdin or sys.stdin).read().splitlines(), "stdin"))
    elif list_file:
        path = Path(list_file)
        from segcli.inference.io import read_lines

        listed = _from_list(read_lines(path, "list of paths"), str(path))
        _check_relative_to_cwd(listed, path)
        items.extend(listed)
    if skip_under is not None:
        items = _outside(items, skip_under)
    from segcli.inference.io import resolver

    real = resolver()
    seen: dict[tuple[Path, bool], Item] = {}
    unique = []
    for item in items:
        rel = os.path.normpath(item.rel)
        if os.path.isabs(rel) or rel == ".." or rel.startswith(".." + os.sep):
            raise ConfigError(f"{item.path}: its output name {rel} would leave --out; name the files without '..' "
                              "after a wildcard, or give their folder")
        # an image writes REL.png (and overlays/REL.png), a video overlays/REL.<ext> (and REL/NNNNNN.png): a video
        # and an image of one name (clip.mp4 and its thumbnail clip.jpg) do not meet, nor clip.mp4 and clip.avi
        # (overlays/clip.mp4, overlays/clip.avi); predict's output check compares the files themselves, frame
        # masks included
        first = seen.setdefault((item.rel, overlay_suffix(item.path) if item.is_video else ""), item)
        if first is item:
            unique.append(item)
        elif real(first.path) != real(item.path):  # the same file named twice (./a.png, /abs/a.png) is predicted once
            written = (f"overlays/{item.rel}{overlay_suffix(item.path)}" if item.is_video else f"{item.rel}.png")
            raise ConfigError(f"{item.path} and {first.path} would both write {written}; "
                              "predict them into separate --out folders")
    return unique


def _outside(items: list[Item], folder: str | Path) -> list[Item]:
    """`items` less those found under `folder` while walking a folder that holds it (symlinks resolved); a
    one-line note when any are left out."""
    from segcli.console import info
    from segcli.inference.io import resolver, within

    real = resolver()
    top = os.path.realpath(folder)
    walked = {item.walked: os.path.realpath(item.walked) for item in items if item.walked is not None}
    under = [item for item in items if item.walked is not None and walked[item.walked] != top
             and within(top, walked[item.walked]) and within(real(item.path), top)]
    if under and len(under) == len(items):
        raise DataError(f"{under[0].path}: every input found lies under --out {folder} (earlier outputs); point "
                        "predict at the images, or give an --out folder that holds none of them")
    if under:
        info(f"predict: left out {len(under)} file(s) found under --out {folder} (earlier outputs), "
             f"e.g. {under[0].path}")
    skipped = set(map(id, under))
    return [item for item in items if id(item) not in skipped]


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """'I/N' → (I, N) with 0 ≤ I < N; None → None."""
    if text in (None, ""):
        return None
    index, sep, count = str(text).partition("/")
    try:
        i, n = int(index), int(count)
    except ValueError:
        i = n = -1
    if not sep or n < 1 or not 0 <= i < n:
        raise ConfigError(f"--shard {text!r}: write I/N with 0 <= I < N, e.g. --shard 0/4 for the first of 4 jobs")
    return i, n


def shard(items: list[Item], spec: tuple[int, int] | None) -> list[Item]:
    """Every N-th item starting at I (the inputs' order is deterministic, so shards partition them)."""
    if spec is None:
        return items
    i, n = spec
    return items[i::n]
