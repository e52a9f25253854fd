"""segcli prepare: native dataset → lint → canonical layout + dataset card; `prepare lint DIR` lints only.

stdout: the path of DIR/dataset.yaml, or of the lint report when the lint failed (exit 1).
stderr: progress and the lint summary.
"""

from __future__ import annotations

from pathlib import Path

from segcli.console import info, result
from segcli.errors import CheckFailed, ConfigError, WriteError

FORMATS = ("synthetic", "camvid", "folder", "voc", "cityscapes", "ade20k")


def _check_values(cfg) -> None:
    """The numeric settings, before any source is read: one line naming the option instead of exit 4."""
    from segcli.checks import number, seed

    seed("--seed", cfg.seed)
    number("workers", cfg.workers, 0, integer=True, what="a whole number of threads >= 0 (0: up to 4)")
    number("--max-size", cfg.max_size, 32, integer=True, optional=True, what="the longest side in pixels (>= 32)")
    number("--ignore-index", cfg.get("ignore_index"), 0, 65535, integer=True, optional=True,
           what="a mask value from 0 to 65535 that no class uses")
    number("--folds", cfg.get("folds"), 2, integer=True, optional=True, what="a number of folds >= 2 (or leave it out)")
    if cfg.get("image_range") is not None:
        from segcli.data.depth import check_range

        try:
            check_range(cfg.image_range, "image_range")
        except ValueError as err:
            raise ConfigError(f"{err}, e.g. image_range=[-160,240] (a CT window)") from None
    if cfg.format == "synthetic":
        number("--num-images", cfg.synthetic.num_images, 2, integer=True, what="at least 2 (train and val)")
        for side in ("height", "width"):
            number(f"synthetic.{side}", cfg.synthetic[side], 32, integer=True, what="pixels, a whole number >= 32")


def _splits(cfg) -> tuple[list[str] | None, dict[str, str]]:
    """--split values: the native splits to read, and {native: name} for those given as NAME=NATIVE (the card
    calls native split NATIVE `NAME`, e.g. train=train_aug)."""
    if not cfg.splits:
        return None, {}
    natives, names = [], {}
    for item in (str(s) for s in cfg.splits):
        name, _, native = item.rpartition("=")
        name, native = name.strip(), native.strip()
        if not native or ("=" in item and not name):
            raise ConfigError(f"--split '{item}': give a native split (e.g. val) or NAME=NATIVE (e.g. train=train_aug)")
        if native in natives:
            raise ConfigError(f"--split: native split '{native}' is given twice")
        natives.append(native)
        names[native] = name or native
    repeated = sorted({n for n in names.values() if list(names.values()).count(n) > 1})
    if repeated:
        raise ConfigError(f"--split: two native splits would both be called '{repeated[0]}'; give each its own NAME")
    return natives, {native: name for native, name in names.items() if name != native}


def _renamed(source, names: dict[str, str]):
    """`source` with its native splits called as --split NAME=NATIVE says."""
    import dataclasses

    if not names:
        return source

    def rename(split: str) -> str:
        return names.get(split, split)

    return dataclasses.replace(
        source, splits=[rename(s) for s in source.splits],
        samples=[dataclasses.replace(s, split=rename(s.split)) for s in source.samples],
        findings=[dataclasses.replace(f, split=rename(f.split)) if f.split else f for f in source.findings])


def _synthetic(cfg):
    from segcli.data.formats import synthetic
    from segcli.data.masks import MaskDecoder
    from segcli.data.source import Sample, Source

    n = int(cfg.synthetic.num_images)  # >= 2: _check_values
    num_val = max(1, n // 5)

    def scenes():
        for i, (stem, image, mask) in enumerate(synthetic.generate(n, cfg.seed, cfg.synthetic.height, cfg.synthetic.width)):
            yield Sample("val" if i >= n - num_val else "train", stem, image, mask)

    return Source(name="synthetic", classes=synthetic.CLASSES, palette=synthetic.PALETTE,
                  ignore_index=synthetic.IGNORE_INDEX, samples=scenes(),
                  decoder=MaskDecoder(len(synthetic.CLASSES), synthetic.IGNORE_INDEX), splits=["train", "val"])


# settings that only `prepare folder` reads (a native format's classes, ignore index and splits are its own), and how
# a user gives each; `val_fraction` is also read by cityscapes (KITTI's held-out val)
FOLDER_ONLY = {"images": "--images", "masks": "--masks", "image_suffix": "--image-suffix",
               "mask_suffix": "--mask-suffix", "classes": "--classes", "palette": "--palette",
               "ignore_index": "--ignore-index", "remap": "--remap",
               "reduce_zero_label": "--reduce-zero-label", "mask_threshold": "--mask-threshold",
               "split_files": "--split-file", "val_fraction": "--val-fraction", "test_fraction": "--test-fraction",
               "folds": "--folds", "group": "--group"}


def _check_unused(cfg) -> None:
    """A setting of `prepare folder` given to a format that does not read it (`prepare camvid ... folds=5`,
    `group=...`, `ignore_index=0`), or --split given to folder or synthetic, was silently left out of the card: a usage
    error naming it instead."""
    unused = [key for key in FOLDER_ONLY if cfg.format != "folder"
              and not (key == "val_fraction" and cfg.format == "cityscapes")]
    if cfg.format in ("folder", "synthetic"):
        unused.append("splits")  # --split: the native formats' own splits
    for key in unused:
        value = cfg.get(key)
        if value is not None and value is not False:
            flag = FOLDER_ONLY.get(key, "--split")
            reader = "prepare camvid|voc|cityscapes|ade20k" if key not in FOLDER_ONLY else \
                "prepare folder|cityscapes" if key == "val_fraction" else "prepare folder"
            raise ConfigError(f"{key}={value} ({flag}) is read only by `segcli {reader}`, not by `segcli prepare "
                              f"{cfg.format}`; leave it out, or convert the data with `segcli {reader}`")


def _needs_src(cfg, what: str) -> Path:
    if not cfg.src:
        raise ConfigError(f"{cfg.format} needs --src DIR ({what})")
    return Path(cfg.src)


def _source(cfg):
    """The Source that cfg.format names (readers imported lazily)."""
    fmt = cfg.format
    if fmt == "synthetic":
        return _synthetic(cfg)
    if fmt == "folder":
        from segcli.data.formats import folder

        if not cfg.images or not cfg.masks:
            raise ConfigError("folder needs --images DIR and --masks DIR")
        return folder.collect(cfg.images, cfg.masks, name=Path(cfg.out).name, classes=cfg.classes, palette=cfg.palette,
                              ignore_index=cfg.ignore_index, remap=cfg.remap, split_files=cfg.split_files,
                              val_fraction=cfg.val_fraction, test_fraction=cfg.test_fraction, seed=cfg.seed,
                              folds=cfg.folds, group=cfg.group, image_suffix=cfg.get("image_suffix"),
                              mask_suffix=cfg.get("mask_suffix"), reduce_zero_label=bool(cfg.get("reduce_zero_label")),
                              mask_threshold=cfg.get("mask_threshold"))
    where = {"camvid": "the SegNet-layout CamVid folder", "voc": "VOCdevkit/VOC2012 or a folder holding it",
             "cityscapes": "the folder holding leftImg8bit/ and gtFine/, or KITTI's data_semantics/",
             "ade20k": "ADEChallengeData2016/"}
    if fmt in where:
        import importlib

        module = importlib.import_module(f"segcli.data.formats.{fmt}")
        natives, names = _splits(cfg)
        held_out = {"val_fraction": cfg.val_fraction, "seed": cfg.seed} if fmt == "cityscapes" else {}  # KITTI's val
        return _renamed(module.collect(_needs_src(cfg, where[fmt]), natives, **held_out), names)
    from segcli.config import did_you_mean

    raise ConfigError(f"unknown dataset format '{fmt}'{did_you_mean(str(fmt), list(FORMATS))}; choose from {', '.join(FORMATS)}")


def _progress(count: int) -> None:
    if count % 200 == 0:
        info(f"prepare: {count} pairs checked")


def _fail(report, lint_path: Path, unsaved=None) -> None:
    """The lint failed: exit 1 naming the first finding and where they all are. unsaved: the WriteError that kept
    lint.json from being written (a full disk): the table on stderr is then all there is, and the exit stays 1."""
    if unsaved is None:
        result(str(lint_path))
    where = f"every finding is in {lint_path}" if unsaved is None else _unsaved(lint_path, unsaved)
    droppable = any(report.fails(f) and f.stem is not None for f in report.findings)  # split-level ones are not
    hint = "; --keep-going drops the bad pairs" if droppable and not report.keep_going else ""
    # findings about a pair that was read (not a lone file or a split list's line): when every pair has one,
    # --keep-going would drop them all (JPEG masks throughout) and still fail on the empty splits
    bad = {(f.split, f.stem) for f in report.findings if report.fails(f) and f.split is not None and f.stem is not None
           and f.kind not in ("missing_mask", "missing_image", "split_entry", "unassigned")}
    if hint and not report.pairs:  # no image found its mask (or none was read): nothing to keep
        hint = ""
    elif hint and len(bad) >= report.pairs:
        hint = f"; every one of the {report.pairs} pair(s) has an error, so --keep-going would keep none"
    raise CheckFailed(f"{report.headline()}{_first(report)}; nothing written, {where}{hint}")


def _unsaved(lint_path: Path, err: WriteError) -> str:
    """Where the findings of a failed lint are when its lint.json could not be written (a full disk)."""
    return f"the table above counts the findings ({lint_path}: cannot write it ({err.reason}))"


def _first(report) -> str:
    """'; first: <file>: <detail>' of the first failing finding ('' when none fails)."""
    failing = [f for f in report.findings if report.fails(f)]
    if report.keep_going:  # the dropped pairs' own findings did not fail the run: what still blocks it (an empty split)
        failing = [f for f in failing if f.stem is None] or failing
    first = failing[0] if failing else None
    return f"; first: {first.file}: {first.detail}" if first else ""


def run(cfg):
    """Prepare (or, for format 'lint', only lint) the dataset that cfg names; returns the card or the report."""
    if cfg.format == "lint":
        return lint(cfg)
    from segcli.data.layout import write_dataset

    if not cfg.out:
        raise ConfigError("no output directory; pass --out DIR")
    _check_values(cfg)
    _check_unused(cfg)
    source = _source(cfg)
    prepared = write_dataset(cfg.out, source, overwrite=bool(cfg.overwrite), strict=bool(cfg.strict),
                             keep_going=bool(cfg.keep_going), max_size=cfg.max_size, workers=int(cfg.workers),
                             progress=_progress, image_range=cfg.get("image_range"))
    report = prepared.report
    report.print_summary(headline=prepared.card is not None)
    if prepared.card is None:
        _fail(report, prepared.lint_path, prepared.unsaved)
    card = prepared.card
    if report.dropped:
        info(f"prepare: --keep-going dropped {len(report.dropped)} pair(s) with "
             f"{'findings' if report.strict else 'errors'}; they are listed under 'dropped' in {prepared.lint_path}")
    sizes = ", ".join(f"{split} {len(items)}" for split, items in card.splits.items())
    if cfg.get("image_range") is not None and not card.image_range:
        info("prepare: note: every image is 8-bit, so image_range is not used (nor recorded in the card)")
    if card.image_range:
        low, high = card.image_range
        info(f"prepare: images deeper than 8 bits are read with values {low:g}..{high:g} mapped onto 0..255 "
             "(image_range in the card)")
    info(f"prepare: {card.name}: {card.num_classes} classes, {sizes} → {card.root}")
    result(str(card.root / "dataset.yaml"))
    return card


def lint(cfg):
    """Lint an existing prepared dataset; writes DIR/lint.json, exit 1 when it fails."""
    from segcli.data.card import load_card
    from segcli.data.formats import canonical
    from segcli.data.layout import LINT_NAME, lint_source
    from segcli.inference.io import atomic_write_bytes

    if not cfg.src:
        raise ConfigError("lint needs the dataset directory: segcli prepare lint DIR")
    card = load_card(cfg.src)
    report = lint_source(canonical.collect(cfg.src, card), strict=bool(cfg.strict), workers=int(cfg.workers),
                         progress=_progress, card=card)
    path = Path(cfg.src).resolve()
    path = (path.parent if path.is_file() else path) / LINT_NAME
    try:
        atomic_write_bytes(path, report.to_json().encode("utf-8"))
    except WriteError as err:
        if report.passed:
            raise
        report.print_summary(headline=False)  # a failed lint stays the result (exit 1), said with the write's failure
        raise CheckFailed(f"{report.headline()}{_first(report)}; {_unsaved(path, err)}") from None
    report.print_summary(headline=report.passed)
    result(str(path))
    if not report.passed:
        raise CheckFailed(f"{report.headline()}{_first(report)}; every finding is in {path}")
    return report
