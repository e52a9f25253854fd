"""segcli eval: score a model (checkpoint or exported) or a folder of predictions on a prepared split.

    sources (model through the shared predictor | PNG predictions) → EvalAccumulator (confusion
    matrix, boundary counts, per-image IoU, worst K) → metrics → reports (stdout, --out DIR files)
    → gate (--fail-under: exit 1)

Python users can call `run(cfg)` with the composed `eval` config, or `score(items, ...)` directly.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from segcli.console import counted, first_process, info
from segcli.errors import CheckFailed, ConfigError, DataError, SegcliError


def score(items: Iterable, num_classes: int, ignore_index: int, boundary_ratio: float | None = 0.02, worst: int = 0,
          keep_images: bool = True, progress: str = ""):
    """Accumulate `Item`s (segcli.evaluation.sources) → EvalAccumulator reduced over all processes.

    Label values outside the class range are a DataError naming the mask (or prediction) file."""
    from segcli.evaluation import distributed
    from segcli.evaluation.accumulate import EvalAccumulator
    from segcli.metrics import LabelRangeError

    acc = EvalAccumulator(num_classes, ignore_index, boundary_ratio, worst, keep_images)
    failure = None
    try:
        for item in _progress(items, progress):
            try:
                acc.add(item.index, item.key, item.pred, item.target)
            except LabelRangeError as err:
                raise DataError(f"{item.mask_path}: ground truth {err.message}") from None
            except ValueError as err:
                if item.pred_path is None:
                    raise
                raise DataError(f"{item.pred_path}: {err}; predictions must hold class ids 0..{num_classes - 1} "
                                f"(any value where the ground truth is ignored){_binary_hint(item.pred, num_classes)}"
                                ) from None
    except SegcliError as err:  # under torchrun the other processes must hear of it before the sums below
        failure = err
    distributed.fail_together(failure)
    acc.reduce()
    return acc


def _binary_hint(pred, num_classes: int) -> str:
    """'; a 0/255 mask: …' when a two-class prediction holds just 0 and 255, as binary tools save them."""
    import numpy as np

    values = set(np.unique(np.asarray(pred)).tolist())
    if num_classes == 2 and values <= {0, 255}:
        return "; it is a 0/255 mask: save 0 and 1 instead (mask // 255)"
    return ""


def _progress(items: Iterable, label: str):
    """Yield `items`, counting them on stderr every 25 (silent when label is empty)."""
    n = 0
    for n, item in enumerate(items, 1):
        if label and n % 25 == 0:
            info(f"eval: {label}: {n} images")
        yield item


def _mode(cfg) -> str:
    given = [name for name in ("ckpt", "model", "predictions") if cfg.get(name)]
    if len(given) != 1:
        what = "none" if not given else " and ".join(f"--{g}" for g in given)
        raise ConfigError(f"eval needs exactly one of --ckpt CKPT, --model FILE (.onnx or TorchScript .pt) or --predictions DIR (got {what})")
    if given[0] == "predictions" and not cfg.data:
        raise ConfigError("--predictions DIR needs --data DIR: the prepared dataset holding the ground truth")
    return given[0]


def _load_model(cfg, device: str):
    """(the predictor, the report's "model": the resolved path; a list of them for an ensemble of several)"""
    from segcli.inference.backends import load_predictor
    from segcli.inference.model_files import model_paths
    from segcli.inference.predictor import ensemble

    paths = model_paths(cfg.ckpt or cfg.model)
    members = [load_predictor(path, device, cfg.inference.batch_size) for path in paths]
    resolved = [str(Path(path).resolve()) for path in paths]
    predictor = ensemble(members).configure(cfg.inference)
    if note := predictor.options.cost_note():
        info(f"eval: note: {note}")
    return predictor, resolved[0] if len(resolved) == 1 else resolved


def _open(cfg, mode: str, device: str):
    """(predictor or None, dataset card, report fields naming the source) for the chosen mode."""
    from segcli.data.card import load_card

    if mode == "predictions":
        if not Path(cfg.predictions).is_dir():
            raise DataError(f"{cfg.predictions}: --predictions folder not found")
        return None, load_card(cfg.data), {"predictions": str(Path(cfg.predictions).resolve())}
    predictor, model_path = _load_model(cfg, device)
    root = cfg.data or predictor.meta.get("dataset", {}).get("root")
    if not root:
        raise ConfigError(f"{predictor.source}: the model names no dataset; pass --data DIR")
    if not cfg.data and not (Path(str(root)).is_file() or (Path(str(root)) / "dataset.yaml").is_file()):
        raise DataError(f"{predictor.source}: the dataset it was trained on, {root}, has no dataset.yaml now "
                        "(moved or deleted?); give its new place: --data DIR")
    card = load_card(root)
    if list(predictor.classes) != list(card.classes):
        raise ConfigError(f"{card.path}: its classes {card.classes} differ from the model's "
                          f"{predictor.classes}; evaluate on the dataset the model was trained for")
    if card.image_range != predictor.image_range and first_process():
        shown = [f"[{r[0]:g}, {r[1]:g}]" if r else "none (16-bit as value / 257)"
                 for r in (predictor.image_range, card.image_range)]
        info(f"eval: note: images deeper than 8 bits are read through the model's image_range {shown[0]} (from its "
             f"training data), not {card.path}'s {shown[1]}; they may look darker or brighter to "
             "the model than its training images did")
    return predictor, card, {"model": model_path, "inference": predictor.options.describe()}


CONFUSION_COPIES = 8  # (C, C) int64 matrices eval holds at its peak: the split's, an image's, the metrics' and report
# files' copies (measured: 4.1 GB resident for 8,000 classes, whose matrix is 0.5 GB)


def _check_class_count(card) -> None:
    """Before any inference: eval's (C, C) confusion matrices fit in memory. With tens of thousands of classes they,
    not the images, are what runs out (70,000 classes: 36.5 GiB per matrix), and the out-of-memory message that came
    after loading everything pointed at the images."""
    c = card.num_classes
    need = CONFUSION_COPIES * c * c * 8
    if need <= 1 << 30:  # any machine has that; spares the import below
        return
    from segcli.data.datamodule import memory_bytes

    available = memory_bytes()
    if available and need > available:
        raise ConfigError(f"{card.path}: {c:,} classes: eval's {c:,} x {c:,} confusion matrices need "
                          f"about {need / 2**30:.1f} GiB of memory, more than the {available / 2**30:.1f} GiB here; "
                          f"evaluate on a machine with more memory, or merge classes (at most about "
                          f"{int((available / (CONFUSION_COPIES * 8)) ** 0.5):,} fit here)")


def _check_outputs(cfg) -> None:
    """Before any inference: --out is a folder (or will be made under one), --json FILE is no folder; found only
    when the reports are written, either would throw the whole evaluation away."""
    from segcli.inference.io import file_in_the_way, not_writable, unwritable

    if cfg.json is not None and not str(cfg.json).strip():  # `--json "$REPORT"` unset: no report, and exit 0
        raise ConfigError("--json '': names no file (an unset variable?); give a file name for the report, or - to "
                          "print it on stdout")
    if cfg.out:
        folder = file_in_the_way(cfg.out)
        if folder is not None:
            raise DataError(f"--out {Path(cfg.out)}: {folder} is a file, not a folder; give a folder for the report files")
        folder = not_writable(cfg.out)
        if folder is not None:
            raise DataError(f"--out {Path(cfg.out)}: {folder} {unwritable(folder)}; give a folder you can "
                            "write to")
    if cfg.json and cfg.json != "-" and Path(cfg.json).is_dir():
        raise DataError(f"--json {cfg.json}: a folder, not a file; give a file name (e.g. {Path(cfg.json) / 'report.json'}) "
                        "or - for stdout")
    folder = file_in_the_way(Path(cfg.json).parent) if cfg.json and cfg.json != "-" else None
    if folder is not None:  # was found only after scoring, as 'cannot write it (File exists)'
        raise DataError(f"--json {cfg.json}: {folder} is a file, not a folder; give a file name in a folder, "
                        "or - for stdout")
    folder = not_writable(Path(cfg.json).parent) if cfg.json and cfg.json != "-" else None
    if folder is not None:
        raise DataError(f"--json {cfg.json}: {folder} {unwritable(folder)}; give a file name in a folder "
                        "you can write to, or - for stdout")
    if cfg.out and cfg.json and cfg.json != "-":  # the file written first would leave no folder for --out
        out, report = Path(cfg.out).resolve(), Path(cfg.json).resolve()
        if report == out or report in out.parents:
            raise ConfigError(f"--json {cfg.json}: the path of --out {cfg.out} or a folder above it; give --json a file "
                              f"name of its own (--out already writes {Path(cfg.out) / 'report.json'})")


def _check_report_not_an_input(cfg, card) -> None:
    """--json must not replace what eval reads: a model file, the card or another file of the dataset, a file of the
    --predictions folder other than a report (each was overwritten, exit 0: `--json m.ckpt` left no checkpoint)."""
    if not cfg.json or cfg.json == "-":
        return
    from segcli.inference.io import within
    from segcli.inference.model_files import model_paths

    target = os.path.realpath(cfg.json)
    fix = "give the report a file name of its own, e.g. --json report.json"
    for model in model_paths(cfg.ckpt or cfg.model):
        if target == os.path.realpath(model):
            raise ConfigError(f"--json {cfg.json}: the model file evaluated, which the report would replace; {fix}")
    root = os.path.realpath(card.root)
    if target == os.path.realpath(card.path) or (within(target, root) and os.path.lexists(target)):
        raise ConfigError(f"--json {cfg.json}: a file of the dataset {card.location}, which the report would replace; "
                          f"{fix} outside the dataset folder")
    if cfg.predictions and within(target, os.path.realpath(cfg.predictions)) and os.path.lexists(target) \
            and not target.lower().endswith(".json"):
        raise ConfigError(f"--json {cfg.json}: a file of the --predictions folder, which the report would replace; "
                          f"{fix}")


def run(cfg) -> dict:
    """Evaluate as configured; returns the report dict (also written/printed). Raises CheckFailed on a failed gate."""
    from segcli.checks import number, seed

    mode = _mode(cfg)  # the checks that need no model come before torch is loaded (seconds)
    number("--worst", cfg.worst or 0, 0, integer=True, what="a number of images >= 0")
    worst = int(cfg.worst or 0)
    number("inference.batch_size", cfg.inference.batch_size, 1, integer=True)
    seed("seed", cfg.seed)
    number("boundary.dilation_ratio", cfg.boundary.dilation_ratio, 0, 1, low_open=True,
           what="a fraction of the image diagonal, > 0 and <= 1 (e.g. 0.02)")
    if worst and not cfg.out:
        raise ConfigError("--worst K writes figures; pass --out DIR too")
    if mode != "predictions":
        from segcli.inference.model_files import check_model_there, model_paths

        for path in model_paths(cfg.ckpt or cfg.model):
            check_model_there(path)  # a missing file or a folder given as a model
    from segcli.evaluation import distributed
    from segcli import __version__
    from segcli.evaluation.compare import (class_mismatch, deltas, ground_truth_mismatch, load_report, split_mismatch,
                                         version_mismatch)
    from segcli.evaluation.corruptions import CORRUPTIONS, for_channels, parse_corruptions, parse_severities
    from segcli.evaluation.gate import failures, parse_gate
    from segcli.evaluation.output import held_out
    from segcli.evaluation.sources import model_items, palette_colours, prediction_items, split_pairs
    from segcli.reports import report_dict

    corruptions = parse_corruptions(cfg.corruptions)
    if not corruptions and cfg.corruptions not in (None, "", []):  # --corruptions "," evaluated none, silently
        given = cfg.corruptions if isinstance(cfg.corruptions, str) else ",".join(str(v) for v in cfg.corruptions)
        raise ConfigError(f"--corruptions '{given}': names no corruption; give one or more of "
                          f"{', '.join(CORRUPTIONS)}, or all")
    severities = parse_severities(cfg.severity)
    if not corruptions and first_process():
        _note_unused_severity(cfg.severity)
    if corruptions and mode == "predictions":
        raise ConfigError("--corruptions needs a model (--ckpt or --model): fixed predictions cannot see corrupted images")
    _check_outputs(cfg)
    old = load_report(cfg.compare) if cfg.compare else None
    ratio = float(cfg.boundary.dilation_ratio) if cfg.boundary.enabled else None
    device = distributed.setup(cfg.device)
    with held_out(cfg.out):  # a second eval into this --out stops here, before any inference
        predictor, card, source = _open(cfg, mode, device)
        _check_class_count(card)
        _check_report_not_an_input(cfg, card)
        if predictor is not None:
            corruptions = for_channels(corruptions, predictor.read_channels, cfg.corruptions)
        thresholds = parse_gate(cfg.fail_under, card.classes)
        unmeasured = (next((t.spec for t in thresholds if t.metric in ("mBIoU", "biou")), None) if ratio is None
                      else None)
        if unmeasured:  # else the gate could only fail, on every model: "null (not measurable)"
            raise ConfigError(f"--fail-under {unmeasured}: boundary IoU is not measured with boundary.enabled=false; "
                              "drop that override, or gate on another metric")
        pairs = split_pairs(card, cfg.split)
        shard = distributed.shard(pairs)
        if distributed.active():
            info(f"eval: process {distributed.rank()} of {distributed.world_size()} scores {len(shard)} of "
                 f"{counted(len(pairs), 'image')}")

        items = (prediction_items(Path(cfg.predictions), cfg.split, shard, palette_colours(card)) if predictor is None
                 else model_items(predictor, shard))
        acc = score(items, card.num_classes, card.ignore_index, ratio, worst, progress=cfg.split)
        metrics = acc.metrics(card.classes)
        if not int(acc.cm.matrix.sum()) and distributed.is_main():  # else only "—" everywhere, and exit 0
            info(f"eval: note: no pixel of split '{cfg.split}' is labelled: every ground-truth pixel is the ignore "
                 f"index {card.ignore_index}, so every metric is null; check the masks and the ignore_index of "
                 f"{card.path}")

        robustness = []
        for name in corruptions:
            for severity in severities:
                robustness.append(_corrupted(predictor, shard, card, name, severity, int(cfg.seed), metrics["mIoU"]))

        extra = {"mode": mode, **source, "data": str(Path(card.location).resolve()),  # absolute, as "model" is
                 "boundary": {"dilation_ratio": ratio} if ratio else None, "segcli_version": __version__}
        if robustness:
            extra["corruptions"] = robustness
        if worst:
            from segcli.evaluation.output import worst_entries

            extra["worst"] = worst_entries(acc)
        if old is not None:
            extra["compare"] = deltas(old, metrics, str(cfg.compare))
            for mismatch in (class_mismatch(old, metrics, str(cfg.compare)),
                             split_mismatch(old, str(cfg.split), len(pairs), str(cfg.compare)),
                             ground_truth_mismatch(old, {**metrics, "split": str(cfg.split), "num_images": len(pairs)},
                                                   str(cfg.compare)),
                             version_mismatch(old, __version__, str(cfg.compare))):
                if mismatch and distributed.is_main():
                    info(f"eval: note: {mismatch}")
        shortfalls = failures(thresholds, metrics)
        if thresholds:
            extra["gate"] = {"thresholds": [t.spec for t in thresholds], "passed": not shortfalls,
                             "failures": shortfalls}
        report = report_dict(metrics, cfg.split, len(pairs), extra)
        try:
            if distributed.is_main():
                from segcli.evaluation.output import emit

                emit(cfg, report, acc, card)
        finally:  # every collective is done: the other ranks wait here for rank 0's report
            distributed.finish()
        if shortfalls:
            raise CheckFailed("eval gate failed: " + "; ".join(shortfalls))
        return report


def _note_unused_severity(value) -> None:
    """A severity given without corruptions does nothing: say so, rather than evaluate nothing corrupted silently.
    Given: --severity (a string: '5', '1,3,5'), or an override (severity=5, severity=[1,3,5]) or config that differs
    from conf/eval.yaml's default (severity=3 given as an override cannot be told from the default, nor needs to be)."""
    from omegaconf import ListConfig

    if isinstance(value, str):
        named = f"--severity {value}"
    elif value == _default_severity():
        return
    elif isinstance(value, (list, tuple, ListConfig)):
        named = f"severity=[{','.join(str(v) for v in value)}]"
    else:
        named = f"severity={value}"
    info(f"eval: note: {named} applies to --corruptions, and none is given: it is ignored; add --corruptions LIST (or "
         "all) to evaluate under corruptions")


def _default_severity():
    """severity in conf/eval.yaml (3)."""
    import yaml

    from segcli.config import conf_dir

    return (yaml.safe_load((conf_dir() / "eval.yaml").read_text(encoding="utf-8")) or {}).get("severity")


def _corrupted(predictor, shard, card, name: str, severity: int, seed: int, clean: float | None) -> dict:
    """mIoU of the model on the corrupted split, and its drop from clean (points and relative)."""
    from segcli.evaluation.corruptions import corrupter
    from segcli.evaluation.sources import model_items
    from segcli.metrics import format_value

    items = model_items(predictor, shard, corrupter(name, severity, seed))
    acc = score(items, card.num_classes, card.ignore_index, None, 0, keep_images=False, progress=f"{name}@{severity}")
    miou = acc.metrics(card.classes)["mIoU"]
    drop = None if miou is None or clean is None else clean - miou
    info(f"eval: {name} severity {severity}: mIoU {format_value(miou)}")
    return {"corruption": name, "severity": severity, "mIoU": miou, "drop": drop,
            "relative_drop": drop / clean if drop is not None and clean else None}
