"""`--compare OLD.json`: per-class and aggregate differences between an earlier report and this one.

Classes are matched by name; a class only in one report, or a value null in either, has a null delta.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from segcli.console import counted
from segcli.errors import DataError

AGGREGATES = ("mIoU", "mAcc", "mDice", "aAcc", "fwIoU", "mBIoU")
CLASS_RATES = ("iou", "biou", "acc", "precision", "dice")


def load_report(path: str | Path) -> dict:
    """Read a report.json written by `segcli eval` (DataError naming the file otherwise)."""
    path = Path(path)
    if path.is_dir():  # an earlier `eval --out DIR`: was 'not a readable JSON report (IsADirectoryError)'
        inside = path / "report.json"
        fix = f"pass {inside}" if inside.is_file() else "pass the report.json that `segcli eval --out DIR` wrote"
        raise DataError(f"{path}: a folder, not a report to compare with; {fix}")
    try:
        # NaN (how mmsegmentation and numpy-based tools write an absent class's rate) is read as null: a NaN kept
        # would make this report's `compare` section, and so report.json, invalid JSON
        # utf-8-sig: a report saved again by a Windows editor starts with a byte-order mark, which json refuses
        report = json.loads(path.read_text(encoding="utf-8-sig"),
                            parse_constant=lambda c: None if c == "NaN" else float(c))
    except FileNotFoundError:
        raise DataError(f"{path}: report to compare with not found; pass a report.json from `segcli eval --out DIR`") from None
    except json.JSONDecodeError as err:  # a hand-edited report: say where it breaks
        raise DataError(f"{path}: not a readable JSON report ({err.msg} at line {err.lineno} column {err.colno}); "
                        "fix it there, or pass a report.json from `segcli eval`") from None
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: not a readable JSON report ({type(err).__name__}); pass a report.json from `segcli eval`") from None
    if not isinstance(report, dict) or not isinstance(report.get("classes"), list) or \
            not all(isinstance(r, dict) and isinstance(r.get("name"), str) for r in report["classes"]):
        raise DataError(f"{path}: not a segcli eval report (no classes list with a name per class); pass a report.json "
                        "from `segcli eval`")
    for where, value in _fields(report):
        if not _rate(value):
            raise DataError(f"{path}: not a segcli eval report ({where} is {_shown(value)}, not a number or null); "
                            "pass a report.json from `segcli eval`")
        # a percentage (77.8 for 0.778) gave deltas of -7,700 points; a hair past 1 is float rounding (a perfect
        # model's fwIoU, a sum of weights g / total, is 1.0000000000000002 for some class counts)
        if value is not None and not -1e-9 <= value <= 1.0 + 1e-9:
            raise DataError(f"{path}: {where} is {_shown(value)}, not a fraction in [0, 1] (a percentage?); segcli's "
                            "reports hold rates as fractions: pass a report.json from `segcli eval`, or divide by 100")
    return report


def _fields(report: dict):
    """(where, value) of every number --compare reads: the aggregates and each class's rates."""
    for key in AGGREGATES:
        if key in report:
            yield key, report[key]
    for i, row in enumerate(report["classes"]):
        for rate in CLASS_RATES:
            yield f"classes[{i}].{rate}", row.get(rate)


def _rate(value) -> bool:
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value))


def _shown(value) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _delta(new, old):
    return None if new is None or old is None else float(new) - float(old)


def deltas(old: dict, new: dict, source: str = "") -> dict:
    """{"against": source, "aggregates": {name: {"old", "new", "delta"}}, "classes": [{"name", "old_iou", "iou", "delta_iou", ...}]}."""
    aggregates = {k: {"old": old.get(k), "new": new.get(k), "delta": _delta(new.get(k), old.get(k))}
                  for k in AGGREGATES if k in new or k in old}
    old_rows = {r["name"]: r for r in old["classes"]}
    new_names = [r["name"] for r in new["classes"]]
    rows = []
    for row in new["classes"] + [r for r in old["classes"] if r["name"] not in new_names]:
        before = old_rows.get(row["name"], {}) if row["name"] in new_names else row
        after = row if row["name"] in new_names else {}
        entry = {"name": row["name"]}
        for rate in CLASS_RATES:
            entry[f"old_{rate}"] = before.get(rate)
            entry[rate] = after.get(rate)
            entry[f"delta_{rate}"] = _delta(after.get(rate), before.get(rate))
        rows.append(entry)
    return {"against": source, "aggregates": aggregates, "classes": rows}


def class_mismatch(old: dict, new: dict, source: str = "") -> str | None:
    """A note when the two reports score other classes (another dataset, or another order), else None."""
    before, now = [r["name"] for r in old["classes"]], [r["name"] for r in new["classes"]]
    if before == now:
        return None
    only = sorted(set(before) ^ set(now))
    listed = f"; in one only: {', '.join(only[:6])}{' …' if len(only) > 6 else ''}" if only else ", in another order"
    return (f"{source} scores other classes ({len(before)} vs {len(now)}{listed}); classes are matched by name, "
            "and the means average different classes")


def split_mismatch(old: dict, split: str, num_images: int, source: str = "") -> str | None:
    """A note when the earlier report scored another split or another number of images (its deltas then mix a
    change of model with a change of images), else None. Reports without these fields are taken as matching."""
    before_split, before_n = old.get("split"), old.get("num_images")
    if (before_split is None or before_split == split) and (not isinstance(before_n, int) or before_n == num_images):
        return None
    shown = f"split '{before_split}'" if before_split is not None else "its split"
    count = f" ({counted(before_n, 'image')})" if isinstance(before_n, int) else ""
    return (f"{source} scored {shown}{count}, this run split '{split}' ({counted(num_images, 'image')}); the deltas "
            "compare different images, not only different models")


def ground_truth_mismatch(old: dict, new: dict, source: str = "") -> str | None:
    """A note when the reports, of the same classes and number of images, count other ground-truth pixels per class:
    the ground truth does not depend on the model, so the earlier report scored other images or other masks (another
    dataset with the same classes and split size, or masks edited since). None otherwise, and where a report lacks
    the counts."""
    before = {r["name"]: r.get("gt_pixels") for r in old["classes"]}
    now = {r["name"]: r.get("gt_pixels") for r in new["classes"]}
    if (list(before) != list(now) or old.get("num_images") != new.get("num_images")
            or old.get("split", new.get("split")) != new.get("split")):
        return None  # class_mismatch or split_mismatch says so already
    differ = [(name, before[name], count) for name, count in now.items()
              if isinstance(before[name], int) and isinstance(count, int) and before[name] != count]
    if not differ:
        return None
    shown = ", ".join(f"'{name}' {a:,} vs {b:,}" for name, a, b in differ[:3]) + (" …" if len(differ) > 3 else "")
    return (f"{source} counted other ground-truth pixels ({shown}): it scored other images or other masks (another "
            "dataset, or masks edited since), so the deltas do not compare models alone")


def version_mismatch(old: dict, version: str, source: str = "") -> str | None:
    """A note when the earlier report was written by another segcli version (a metric whose definition changed
    between them moves with no change of model), else None. Reports before 2026-12-08 record no version."""
    before = old.get("segcli_version")
    if not isinstance(before, str) or before == version:
        return None
    return (f"{source} was written by segcli {before}, this is segcli {version}; a metric whose definition changed "
            "between them moves with no change of model")
