"""Lint a source dataset and write it into the canonical layout, atomically, with its card and statistics.

    DIR/images/<split>/<stem>.<ext>   images (copied byte for byte; re-encoded only when --max-size shrinks them)
    DIR/masks/<split>/<stem>.png      class ids (8-bit, 16-bit when there are > 255 ids)
    DIR/dataset.yaml                  the card (see segcli.data.card)
    DIR/lint.json                     every lint finding (see segcli.data.lint)
    DIR/class_frequencies.png         bar chart of class frequencies per split
    DIR/class_presence.json           the class ids present in each mask, by its path (rare-class sampling)

Everything is written into a temporary sibling directory that replaces DIR only when the lint
passed: a lint failure, any other error or Ctrl-C leaves DIR as it was. A failed lint still leaves
its report: DIR/lint.json when DIR holds no dataset (DIR is created for it), else DIR.lint.json
beside it, so that an existing dataset is never touched.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from collections import deque
from concurrent.futures import ThreadPoolExecutor
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import cv2
import numpy as np

from segcli.data.card import CARD_NAME, DatasetCard, dump_card
from segcli.data.chart import class_frequency_chart
from segcli.data.depth import DepthRange, scale_stats
from segcli.data.check import CheckedPair, check_pair, stored_stats
from segcli.data.lint import LintReport, error, warning
from segcli.data.source import Source
from segcli.data.stats import SplitStats, card_stats
from segcli.errors import ConfigError, DataError, WriteError, stops_held
from segcli.inference.io import (JPEG_MAGIC, atomic_write_bytes, decode_stored, not_writable, png_colour_type, resolver,
                                 staging_path, unwritable, within, write_png, writing)

LINT_NAME = "lint.json"
CHART_NAME = "class_frequencies.png"
PRESENCE_NAME = "class_presence.json"


@dataclass
class Prepared:
    """What `write_dataset` did: card is None when the lint failed; lint_path is where the report went, unless
    `unsaved` says why it could not be written (a full disk: the lint's failure is still the result)."""

    card: DatasetCard | None
    report: LintReport
    lint_path: Path
    unsaved: WriteError | None = None


def check_out_dir(out: Path, overwrite: bool) -> None:
    """A non-empty DIR is replaced only with --overwrite (a DIR holding just a failed run's lint.json is empty)."""
    if out.exists() and not out.is_dir():  # exit 3, as a file in the way of every other command's --out (was 2)
        raise DataError(f"{out} is a file, not a folder; move it away, or give another --out")
    if out.exists() and any(p.name != LINT_NAME for p in out.iterdir()) and not overwrite:
        raise ConfigError(f"{out} already exists and is not empty; choose another --out or pass --overwrite")


def _outside_out(out: Path, source: Source) -> Source:
    """`source` checked against `out`, which prepare replaces. A source file inside it is refused: with --overwrite,
    putting the prepared dataset in place would delete the original images and masks (`--images d/images --masks
    d/masks --out d`). The files of a dataset a previous prepare wrote there are not source, though, and are left
    out: an --out inside a folder the source lists (--out ADEChallengeData2016/images/training/out) made a re-run
    with --overwrite read that output's images and chart as images without masks, and fail."""
    if not isinstance(source.samples, (list, tuple)):  # generated on the fly (synthetic): arrays, no source files
        return source
    real, top = resolver(), os.path.realpath(out)

    def inside(path) -> bool:
        return isinstance(path, (str, Path)) and within(real(path), top)

    for path in source.inputs:  # a split list, a class or colour table: never a previous output's file
        if inside(path):
            raise ConfigError(f"{path}: a file prepare reads, inside --out {out}, which prepare replaces; give an "
                              "--out folder that holds none of its inputs")
    kept = [s for s in source.samples if not (inside(s.image) or inside(s.mask))]
    if (out / CARD_NAME).is_file() and (kept or not source.samples):  # a previous output beside the source
        findings = [f for f in source.findings if f.stem is None or not inside(f.file)]
        if len(kept) == len(source.samples) and len(findings) == len(source.findings):
            return source
        return dataclasses.replace(source, samples=kept, findings=findings)
    for sample in source.samples:
        for path in (sample.image, sample.mask):
            if inside(path):
                raise ConfigError(f"{path}: a source file inside --out {out}, which prepare replaces; "
                                  "give an --out folder outside the source folders")
    return source


def check_split_name(split: str) -> None:
    """A split's name is a folder of the layout (images/<split>/): one plain name, so nothing lands outside DIR."""
    if not split or split.startswith(".") or any(c in split for c in "/\\\0"):
        raise ConfigError(f"split name '{split}': it becomes the folder images/{split}/, so it must be one folder name "
                          "(no '/' or '\\', not starting with '.'); name it e.g. train, val or test "
                          "(--split NAME=NATIVE, --split-file NAME=FILE)")


def write_dataset(out: str | Path, source: Source, overwrite: bool = False, strict: bool = False,
                  keep_going: bool = False, max_size: int | None = None, workers: int = 0,
                  progress: Callable[[int], None] | None = None, image_range: list[float] | None = None) -> Prepared:
    """Lint every pair of `source`, write the good ones, and put the result at `out` if the lint passed.

    image_range: [low, high] for images deeper than 8 bits (segcli.data.depth); None: chosen from the data."""
    out = Path(out).resolve()
    check_out_dir(out, overwrite)
    source = _outside_out(out, source)
    for split in source.splits:
        check_split_name(split)
    locked = not_writable(out.parent)
    if locked is not None:  # named the hidden staging folder (.NAME.partial-…) it could not make
        raise DataError(f"--out {out}: {locked} {unwritable(locked)}; give --out in a folder you can write to")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = staging_path(out.parent, f".{out.name}")
    shutil.rmtree(staging, ignore_errors=True)
    report = LintReport(source.name, findings=list(source.findings), strict=strict, keep_going=keep_going)
    try:
        with writing(out):  # a full disk names --out, not the hidden staging folder (or no file at all)
            card = _process(staging, source, report, max_size, workers, progress, image_range)
            if report.passed:
                atomic_write_bytes(staging / LINT_NAME, report.to_json().encode("utf-8"))
                _swap_into_place(staging, out, overwrite)
                card.root = out
                # the report a failed run beside an existing dataset wrote (below) is stale now
                try:
                    (out.parent / f"{out.name}.{LINT_NAME}").unlink(missing_ok=True)
                except OSError as err:
                    if err.errno != errno.ENAMETOOLONG:  # a name too long to have such a report beside it: none there
                        raise
                return Prepared(card, report, out / LINT_NAME)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    lint_path = out.parent / f"{out.name}.{LINT_NAME}" if (out / CARD_NAME).exists() else out / LINT_NAME
    try:
        atomic_write_bytes(lint_path, report.to_json().encode("utf-8"))
    except WriteError as err:  # a full disk must not hide that the data failed the lint (exit 3 for exit 1)
        return Prepared(None, report, lint_path, unsaved=err)
    return Prepared(None, report, lint_path)


def _checked(source: Source, workers: int, image_range: list[float] | None = None) -> Iterator[CheckedPair]:
    """check_pair over the samples, in order, on a few threads (OpenCV and NumPy release the GIL).

    At most 2 × workers pairs are in flight, so decoded images never pile up in memory.
    """
    workers = workers or min(4, os.cpu_count() or 1)
    if workers <= 1:
        yield from (check_pair(s, source.decoder, image_range) for s in source.samples)
        return
    with ThreadPoolExecutor(workers) as pool:
        pending: deque = deque()
        for sample in source.samples:
            pending.append(pool.submit(check_pair, sample, source.decoder, image_range))
            if len(pending) >= 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def lint_source(source: Source, strict: bool = False, workers: int = 0,
                progress: Callable[[int], None] | None = None, card: DatasetCard | None = None) -> LintReport:
    """Lint every pair of `source` and its splits without writing anything; `card`: the prepared dataset's own card,
    whose class counts are compared with the masks' (a stale_card warning where they differ)."""
    report = LintReport(source.name, findings=list(source.findings), strict=strict)
    found = _process(None, source, report, None, workers, progress)
    if card is not None and not report.errors and (stale := _stale_counts(card, found)):
        report.findings.append(warning("stale_card", str(card.path), stale))
    return report


def _stale_counts(card: DatasetCard, found: DatasetCard) -> str | None:
    """How the card's per-split class pixel counts differ from those of its masks now (masks edited after prepare
    wrote the card: its class_weights, which loss.class_weights=auto reads, predate them), or None when they
    agree."""
    for split, now in (found.stats.get("splits") or {}).items():
        before = ((card.stats.get("splits") or {}).get(split) or {}).get("class_pixels")
        if before is None or list(before) == list(now["class_pixels"]):
            continue
        changed = [i for i, (a, b) in enumerate(zip(before, now["class_pixels"])) if a != b]
        shown = ", ".join(f"'{card.classes[i]}' {before[i]:,} → {now['class_pixels'][i]:,}" for i in changed[:3])
        return (f"the masks of split '{split}' hold other class pixel counts than the card records ({shown} px"
                f"{', …' if len(changed) > 3 else ''}): they changed after prepare wrote the card, whose statistics "
                "and class_weights (loss.class_weights=auto) predate them; prepare the edited dataset again into a "
                "new --out")
    return None


def _process(root: Path | None, source: Source, report: LintReport, max_size: int | None, workers: int,
             progress: Callable[[int], None] | None, given_range: list[float] | None = None) -> DatasetCard:
    """Lint each pair and (root given) write the ones that pass into root; then the split-level lint and the card."""
    ignore = source.ignore_index
    splits: dict[str, list[dict]] = {}
    stats: dict[str, SplitStats] = {}
    presence: dict[str, list[int]] = {}  # mask file (as the card names it) → the class ids in it
    seen: set[tuple[str, str]] = set()
    owner: dict[str, str] = {}  # source image → the split that has it
    listed: dict[str, int] = {}  # pairs per split, usable or not
    depth = DepthRange()
    deep_stats: list[tuple[str, np.ndarray, np.ndarray, int]] = []  # scaled once the image_range is known
    failing = any(report.fails(f) for f in report.findings)  # once true (without --keep-going), only lint
    for pair in _checked(source, workers, given_range):
        sample = pair.sample
        report.pairs += 1
        if root is not None and sample.split not in listed:
            check_split_name(sample.split)
        listed[sample.split] = listed.get(sample.split, 0) + 1
        if (sample.split, sample.stem) in seen:
            pair.findings.append(error("duplicate_stem", str(sample.image), f"a second pair with stem '{sample.stem}' in "
                                       f"split '{sample.split}'", split=sample.split, stem=sample.stem))
        seen.add((sample.split, sample.stem))
        if isinstance(sample.image, Path):
            first = owner.setdefault(str(sample.image), sample.split)
            if first != sample.split:
                pair.findings.append(error("split_overlap", str(sample.image), f"also in split '{first}'; a pair belongs "
                                           "to one split: choose splits that do not overlap (VOC's trainval is train + "
                                           "val)", split=sample.split, stem=sample.stem))
        report.findings.extend(pair.findings)
        if any(report.fails(f) for f in pair.findings):
            failing = True
            report.dropped.append({"split": sample.split, "stem": sample.stem,
                                   "kinds": sorted({f.kind for f in pair.findings if report.fails(f)})})
            continue
        source_image = _resizable(pair, max_size)
        image, ids = _downscale(source_image, pair.ids, max_size)
        if root is not None and (report.keep_going or not failing):
            entry = _write_pair(root, pair, image, ids, resized=ids is not pair.ids,
                                as_stored=source_image is not pair.image)
        else:
            entry = {"image": "", "mask": ""}
        if sample.fold is not None:
            entry["fold"] = int(sample.fold)
        if sample.group is not None:
            entry["group"] = str(sample.group)
        splits.setdefault(sample.split, []).append(entry)
        counts = np.bincount(ids.ravel())
        depth.add(pair.image if pair.stored is None else pair.stored,
                  str(sample.image) if isinstance(sample.image, Path) else f"{sample.split}/{sample.stem}")
        shrunk = source_image is not pair.image  # kept as stored and shrunk: its view shrunk alike (was full-size)
        if pair.deep_stats is None:  # from the 8-bit view of what is written
            mean, std = cv2.meanStdDev(_shrink(pair.image, max_size) if shrunk else image)
            stats.setdefault(sample.split, SplitStats()).add(counts, ignore, mean.ravel()[:3] / 255.0,
                                                             std.ravel()[:3] / 255.0)
        else:
            stats.setdefault(sample.split, SplitStats()).add(counts, ignore)
            deep = _shrunk_stats(image, pair.deep_stats) if shrunk else pair.deep_stats
            deep_stats.append((sample.split, *deep, int(ids.size)))
        presence[entry["mask"]] = [int(v) for v in np.flatnonzero(counts) if v != ignore]
        if progress:
            progress(report.pairs)
    left_out: dict[tuple[str, str], set[str]] = {}  # pairs the source left out (no mask, no image, two files,
    for finding in source.findings:                   # two split lists); a list's line naming no pair drops none
        if (finding.stem is not None and report.fails(finding) and (finding.split, finding.stem) not in seen
                and finding.kind != "split_entry"):
            left_out.setdefault((finding.split, finding.stem), set()).add(finding.kind)
    report.dropped.extend({"split": split, "stem": stem, "kinds": sorted(kinds)}
                          for (split, stem), kinds in sorted(left_out.items(), key=lambda item: (str(item[0][0]),
                                                                                                 item[0][1])))
    if not report.keep_going:
        report.dropped.clear()  # nothing is "dropped" when nothing gets written
    image_range = depth.value_range() if given_range is None or not depth.deep else [float(v) for v in given_range]
    for split, mean, std, pixels in deep_stats:
        stats[split].add_channels(*scale_stats(mean, std, image_range), pixels)
    if mixed := depth.mixed(image_range):
        report.findings.append(warning("image_depth", source.name, mixed))
    if given_range is None and (fill := depth.no_data()):
        report.findings.append(warning("no_data_value", source.name, fill))
    classes = source.classes
    if classes is None:  # class table from the ids found (folder without --classes)
        top = max((s.max_id(ignore) for s in stats.values()), default=-1)
        if ignore <= top:
            from segcli.data.formats.folder import ZERO_LABEL_HINT

            zero = ZERO_LABEL_HINT if ignore == 0 else ""
            above = (f"pick a value above {top}, or name the classes with --classes" if top < 65535 else
                     "no ignore value lies above 65535: map the values to class ids with --remap (e.g. --remap "
                     "65535=1), or name the classes with --classes")
            raise ConfigError(f"--ignore-index {ignore} is also a class id in the masks (ids 0-{top} found); "
                              f"{above}{zero}")
        classes = [f"class_{i}" for i in range(top + 1)] or ["class_0"]
    hint = _sparse_ids_hint(stats, len(classes)) if source.classes is None else ""
    palette = source.palette if len(source.palette) >= len(classes) else _default_palette(len(classes))
    _split_findings(report, source.splits, listed, splits, stats, classes, hint)
    # one class among the pairs that passed; when others failed (and are not dropped: no --keep-going), their errors
    # say what is wrong, and the other classes may be in them (0/255 masks whose foreground was refused)
    failed = not report.keep_going and any(f.stem is not None and report.fails(f) for f in report.findings)
    labelled = sorted({int(v) for s in stats.values() for v in np.flatnonzero(s.counts)
                       if v < len(classes) and v != ignore})
    if len(classes) < 2 and report.pairs and not failed:
        report.findings.append(error("single_class", source.name, f"one class ({classes[0]}): every pixel is "
                                     "labelled the same (or ignored), so any model scores 100%; label at least two "
                                     "classes (e.g. background and object), or name them with --classes"))
    elif len(labelled) == 1 and report.pairs and not failed:  # the masks hold one of the classes named
        report.findings.append(error("single_class", source.name, f"every labelled pixel is class "
                                     f"'{classes[labelled[0]]}' (of {len(classes)} classes named), so any model "
                                     "scores 100%; label the other classes in the masks too, or check that --remap or "
                                     "--palette maps their values"))
    card = DatasetCard(root=root, name=source.name, classes=list(classes),
                       palette=[list(map(int, c)) for c in palette[: len(classes)]], ignore_index=int(ignore),
                       splits=splits, stats=card_stats(stats, len(classes)), image_range=image_range)
    if root is not None and report.passed:
        atomic_write_bytes(root / CARD_NAME, dump_card(card).encode("utf-8"))
        atomic_write_bytes(root / PRESENCE_NAME, json.dumps({"masks": presence}, separators=(",", ":")).encode("utf-8"))
        split_pixels = {name: s["class_pixels"] for name, s in card.stats["splits"].items()}
        if split_pixels:
            write_png(root / CHART_NAME, class_frequency_chart(card.classes, split_pixels))
    return card


def _sparse_ids_hint(stats: dict[str, SplitStats], num_classes: int) -> str:
    """For a class table read off the ids found (folder without --classes): when the masks use a few ids with gaps
    (0, 10, 20), the --remap that numbers them 0..K-1; the ids in between would be classes that never occur, each
    scored (0 IoU as soon as a model predicts it) and trained against. '' when the ids are contiguous."""
    used = sorted({i for s in stats.values() for i, n in enumerate(s.to_dict(num_classes)["class_pixels"]) if n})
    if used and used[0] == 1 and used[-1] == len(used):  # 1..N, never 0: Oxford-IIIT Pet's trimaps, ADE20K's ids
        return ("; no mask uses id 0: if the classes are 1..N, --reduce-zero-label numbers them 0..N-1 (and reads a 0, "
                "where there is one, as not labelled)")
    if not used or len(used) == num_classes or 2 * len(used) > num_classes:
        return ""
    moves = [f"--remap {v}={i}" for i, v in enumerate(used) if v != i]
    shown = " ".join(moves[:8]) + (" …" if len(moves) > 8 else "")
    ids = ", ".join(map(str, used[:12])) + (" …" if len(used) > 12 else "")
    return f"; the masks use only ids {ids}: {shown} numbers them as {len(used)} classes (with --classes to name them)"


def _split_findings(report: LintReport, expected: list[str], listed: dict[str, int], splits: dict[str, list],
                    stats: dict[str, SplitStats], classes: list[str], hint: str = "") -> None:
    """Split-level lint: empty splits (train included), classes with zero pixels in a split (`hint`: a fix added
    to those findings' text).

    A split is empty when no pair is assigned to it, or, with --keep-going, when every pair was dropped.
    """
    for split in dict.fromkeys([*expected, "train", *listed]):
        if not listed.get(split):
            why = "" if split != "train" or "train" in expected else (
                " (every dataset needs a train split: name the one to train on: --split train for a native format, "
                "or --split train=NATIVE, e.g. --split train=trainval for VOC; --split-file train=FILE for a folder)")
            report.findings.append(error("empty_split", split, f"split '{split}' has no pair{why}", split=split))
        elif report.keep_going and not splits.get(split):
            report.findings.append(error("empty_split", split, f"split '{split}': all {listed[split]} pair(s) "
                                         "have errors and would be dropped", split=split))
    for split, split_stats in stats.items():
        pixels = split_stats.to_dict(len(classes))["class_pixels"]
        if not any(pixels):
            fix = ("check the masks' values against the classes (--remap, --ignore-index, --reduce-zero-label)"
                   if split == "train" else "leave it out (Cityscapes' public test labels are all 'unlabeled')")
            report.findings.append(error("empty_split", split, f"split '{split}': every pixel of its "
                                         f"{split_stats.images} pair(s) is ignored, so there is nothing to train on or "
                                         f"score; {fix}", split=split))
            continue
        missing = [f"{i} {classes[i]}" for i, n in enumerate(pixels) if n == 0]
        if missing:
            shown = ", ".join(missing[:12]) + (f" and {len(missing) - 12} more" if len(missing) > 12 else "")
            report.findings.append(warning("class_missing", split, f"{len(missing)} class(es) with zero pixels in "
                                           f"split '{split}': {shown}{hint}", split=split))


def _downscale(image: np.ndarray, ids: np.ndarray, max_size: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Shrink so that the longer side is at most `max_size`: area-averaged image, nearest-neighbour mask sampled at
    the output pixels' centres, as the averaged image is centred (INTER_NEAREST takes each output pixel's top-left
    source pixel: the mask lay up to half a pixel down and right of its image, 0.45 px at a factor of 10)."""
    shrunk = _shrink(image, max_size)
    if shrunk is image:
        return image, ids
    size = shrunk.shape[1::-1]  # (W, H)
    return shrunk, cv2.resize(ids, size, interpolation=cv2.INTER_NEAREST_EXACT)  # never an id absent from the source


def _shrink(image: np.ndarray, max_size: int | None) -> np.ndarray:
    """`image` area-averaged so that its longer side is at most `max_size` (itself when it is no larger)."""
    h, w = image.shape[:2]
    if not max_size or max(h, w) <= max_size:
        return image
    scale = max_size / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    if image.ndim == 3 and image.shape[2] > 4:  # OpenCV resizes at most 4 channels of some depths (8-bit, int16)
        return np.dstack([cv2.resize(image[..., i:i + 4], size, interpolation=cv2.INTER_AREA)
                          for i in range(0, image.shape[2], 4)])
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def _shrunk_stats(stored: np.ndarray, full: tuple) -> tuple:
    """The stored-value (mean, std) of a deeper image shrunk as stored, from its BGR view (a grey one as three equal
    channels; of 3 or more bands, the first three, as decoding gives them); `full`, the full-size image's, for 2
    bands."""
    if stored.ndim == 3 and stored.shape[2] < 3:
        return full
    view = np.dstack([stored] * 3) if stored.ndim == 2 else np.ascontiguousarray(stored[..., :3])
    return stored_stats(view)


def _resizable(pair: CheckedPair, max_size: int | None) -> np.ndarray:
    """What --max-size shrinks and writes: the RGB image, or the image as stored (file order, every channel, its
    depth) when it is deeper than 8 bits, has other than 3 channels (a multispectral file of 2 or 4+ bands) or one (a
    grey file, which would otherwise be written back as RGB at three times the size), so nothing is lost or added."""
    h, w = pair.image.shape[:2]
    if not max_size or max(h, w) <= max_size:
        return pair.image
    stored = pair.stored
    if stored is None and pair.data is not None and (_may_hold_bands(pair.data) or _grey(pair.image)):
        stored = decode_stored(np.frombuffer(pair.data, np.uint8), cv2.cvtColor(pair.image, cv2.COLOR_RGB2BGR))
    if stored is not None and stored.ndim == 3 and png_colour_type(pair.data) == 4:  # grey + alpha, which OpenCV
        stored = np.ascontiguousarray(stored[..., 0])  # gives as BGRA: the grey it shows, alpha not being read
    keep = (stored is not None and stored.shape[:2] == (h, w)
            and (stored.dtype != np.uint8 or stored.ndim == 2 or stored.shape[2] != 3))
    return stored if keep else pair.image


def _grey(image: np.ndarray) -> bool:
    """An (H, W, 3) image whose three channels are equal (what a grey file decodes to in colour)."""
    return image.ndim == 3 and np.array_equal(image[..., 0], image[..., 1]) and np.array_equal(image[..., 1],
                                                                                             image[..., 2])


def _may_hold_bands(data: bytes) -> bool:
    """Whether an 8-bit file may hold more than 3 channels: not a JPEG, nor a PNG without alpha (IHDR colour type)."""
    colour_type = png_colour_type(data)
    return not data.startswith(JPEG_MAGIC) and colour_type in (None, 6)


def _write_pair(root: Path, pair: CheckedPair, image: np.ndarray, ids: np.ndarray, resized: bool,
                as_stored: bool = False) -> dict:
    """image: the RGB image, or (as_stored) an array already in the file's channel order (see _resizable)."""
    sample = pair.sample
    ext = sample.image.suffix.lower() if isinstance(sample.image, Path) else ".png"
    image_rel = f"images/{sample.split}/{sample.stem}{ext}"
    mask_rel = f"masks/{sample.split}/{sample.stem}.png"
    target = root / image_rel
    target.parent.mkdir(parents=True, exist_ok=True)
    if pair.data is not None and not resized:
        target.write_bytes(pair.data)
    else:
        pixels = image if as_stored else cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
        if pixels.ndim == 3 and pixels.shape[2] not in (1, 3, 4):  # OpenCV encodes 1, 3 or 4: a TIFF of every band
            image_rel = image_rel[: -len(ext)] + (ext if ext in (".tif", ".tiff") else ".tif")
            _write_bands(root / image_rel, pixels)
            write_png(root / mask_rel, ids)
            return {"image": image_rel, "mask": mask_rel}
        params = [cv2.IMWRITE_JPEG_QUALITY, 95] if ext in (".jpg", ".jpeg") else []
        ok, encoded = cv2.imencode(ext, pixels, params)
        if not ok:  # e.g. floating point into a PNG: a TIFF keeps it
            fallback = ".png" if pixels.dtype in (np.uint8, np.uint16) else ".tiff"
            ok, encoded = cv2.imencode(fallback, pixels)
            image_rel = image_rel[: -len(ext)] + fallback
            target = root / image_rel
        target.write_bytes(encoded.tobytes())
    write_png(root / mask_rel, ids)
    return {"image": image_rel, "mask": mask_rel}


def _write_bands(path: Path, pixels: np.ndarray) -> None:
    """An (H, W, C) array of 2 or 5+ bands in OpenCV's order (of 3 or more, the first three as B, G, R: what decoding
    gave) as a Deflate-compressed, pixel-interleaved TIFF of the bands in stored order."""
    import io

    import tifffile

    bands = np.concatenate([pixels[..., 2::-1], pixels[..., 3:]], axis=2) if pixels.shape[2] >= 3 else pixels
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, bands, photometric="minisblack", planarconfig="contig", compression="zlib")
    path.write_bytes(buffer.getvalue())


def _default_palette(num_classes: int) -> list[list[int]]:
    from segcli.data.formats.folder import default_palette

    return default_palette(num_classes)


def _swap_into_place(staging: Path, out: Path, overwrite: bool = False) -> None:
    """Replace `out` by `staging`; an old `out` is removed only after the new one is in place. Without `overwrite`,
    an `out` that another process filled while this one ran (two prepares into one --out: both passed
    check_out_dir while it was empty, and the first to finish was deleted unasked, both exiting 0) is refused."""
    old = None
    with stops_held():  # never between the two renames
        if not overwrite and out.is_dir() and any(p.name != LINT_NAME for p in out.iterdir()):
            raise ConfigError(f"--out {out} was filled by another process while this prepare ran; this run's dataset "
                              "is not put in place: choose another --out, or pass --overwrite to replace it")
        if out.exists():
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            os.replace(out, old)
        os.replace(staging, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
