"""Rendering metric dicts (from segcli.metrics.compute_metrics) as tables, JSON, CSV and Markdown.

Rates are fractions in [0, 1] in JSON and CSV (empty CSV cell = null), percentages in tables and
Markdown ("—" = null).
"""

from __future__ import annotations

import csv
import io

from segcli.console import counted
from segcli.metrics import format_value

AGGREGATES = ("mIoU", "mBIoU", "mAcc", "mDice", "aAcc", "fwIoU")
CLASS_FIELDS = ("id", "name", "iou", "biou", "acc", "precision", "dice", "gt_pixels", "pred_pixels", "images")
_HEAD = {"iou": "IoU", "biou": "BIoU", "acc": "Acc", "precision": "Prec", "dice": "Dice", "gt_pixels": "gt px",
         "pred_pixels": "pred px", "images": "images"}


def _columns(metrics: dict) -> list[str]:
    """The per-class fields these metrics carry (boundary IoU and image support only when measured)."""
    first = metrics["classes"][0] if metrics["classes"] else {}
    return [k for k in CLASS_FIELDS[2:] if k in first or k in ("iou", "acc", "dice", "gt_pixels", "pred_pixels")]


def _cell(row: dict, key: str) -> str:
    value = row.get(key)
    if key in ("gt_pixels", "pred_pixels", "images"):
        return "—" if value is None else f"{value:,}"
    return format_value(value)


def plain(text):
    """User text (a class name, a dataset name, a path) as a rich Text: a plain string in a Table is read as console
    markup, so 'vehicle [car]' lost its '[car]' and 'sign [/]' stopped the command with a MarkupError. Characters
    stdout's encoding lacks are escaped here (console.writable), before the table is laid out: escaped as it was
    written, 'straße' took 4 more columns than its cell, and the rows no longer lined up."""
    from rich.text import Text

    from segcli.console import writable

    return Text(writable(str(text)))


def metrics_table(metrics: dict, title: str = ""):
    """A rich Table: one row per class (rates in %, pixel and image counts), aggregates in the caption."""
    from rich.table import Table

    table = Table(title=plain(title) if title else None, caption=plain(summary_line(metrics)), show_lines=False)
    table.add_column("id", justify="right")
    table.add_column("class", justify="left")
    columns = _columns(metrics)
    for key in columns:
        table.add_column(_HEAD[key], justify="right")
    for row in metrics["classes"]:
        table.add_row(str(row["id"]), *map(plain, (row["name"], *(_cell(row, k) for k in columns))))
    return table


def summary_line(metrics: dict) -> str:
    """'mIoU 63.21  mBIoU 40.02  mAcc …' over the aggregates present."""
    return "  ".join(f"{k} {format_value(metrics.get(k))}" for k in AGGREGATES if k in metrics)


def report_dict(metrics: dict, split: str, num_images: int, extra: dict | None = None) -> dict:
    """The eval report schema: aggregates (mIoU, mAcc, aAcc, mDice, fwIoU[, mBIoU]), split, num_images,
    classes[{id, name, iou, acc, dice, precision, gt_pixels, pred_pixels[, biou, images]}], then `extra`."""
    report = {"mIoU": metrics["mIoU"], "mAcc": metrics["mAcc"], "aAcc": metrics["aAcc"], "mDice": metrics.get("mDice"),
              "fwIoU": metrics.get("fwIoU")}
    if "mBIoU" in metrics:
        report["mBIoU"] = metrics["mBIoU"]
    report.update({"split": split, "num_images": int(num_images),
                   "classes": [{k: row.get(k) for k in CLASS_FIELDS if k in row} for row in metrics["classes"]]})
    if extra:
        report.update(extra)
    return report


def _csv(rows: list[list]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerows([["" if v is None else (f"{v:.6f}" if isinstance(v, float) else v) for v in row] for row in rows])
    return buffer.getvalue()


def per_class_csv(metrics: dict) -> str:
    """One row per class: id, name, rates as fractions (empty = null), pixel counts, image support."""
    fields = ["id", "name"] + _columns(metrics)
    return _csv([fields] + [[row.get(k) for k in fields] for row in metrics["classes"]])


def per_image_csv(scores, class_names: list[str]) -> str:
    """One row per image: image (relative stem), mIoU over its defined classes, IoU per class (empty = absent)."""
    rows = [["image", "mIoU"] + list(class_names)]
    rows += [[s.key, s.miou] + list(s.iou) for s in scores]
    return _csv(rows)


def confusion_csv(matrix, class_names: list[str]) -> str:
    """Raw pixel counts: header 'gt \\ pred' + class names, then one row per ground-truth class."""
    m = matrix.tolist() if hasattr(matrix, "tolist") else matrix
    return _csv([["gt \\ pred"] + list(class_names)] + [[name] + list(map(int, row)) for name, row in zip(class_names, m)])


def markdown(report: dict, title: str = "") -> str:
    """A Markdown report for PR comments: aggregates, per-class table, and robustness/compare sections when present."""
    lines = [f"### {title}" if title else "### segcli eval", ""]
    lines.append(" · ".join(f"**{k}** {format_value(report[k])}" for k in AGGREGATES if k in report)
                 + f" · {counted(report['num_images'], 'image')} ({report['split']})")
    lines.append("")
    columns = _columns(report)
    deltas = {r["name"]: r for r in (report.get("compare") or {}).get("classes", [])}
    head = ["class"] + [_HEAD[k] for k in columns] + (["Δ IoU"] if deltas else [])
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in report["classes"]:
        cells = [_md_text(row["name"])] + [_cell(row, k) for k in columns]
        if deltas:
            cells.append(_signed(deltas.get(row["name"], {}).get("delta_iou")))
        lines.append("| " + " | ".join(cells) + " |")
    if report.get("corruptions"):
        lines += ["", "| corruption | severity | mIoU | drop (points) | drop (relative) |", "|---|---|---|---|---|"]
        for r in report["corruptions"]:
            lines.append(f"| {r['corruption']} | {r['severity']} | {format_value(r['mIoU'])} | "
                         f"{format_value(r['drop'])} | {_percent(r['relative_drop'])} |")
    if report.get("compare"):
        agg = report["compare"]["aggregates"]
        measured = ", ".join(f"{k} {_signed(v['delta'])}" for k, v in agg.items() if v["delta"] is not None)
        lines += ["", "Compared with `" + str(report["compare"]["against"]) + "`: "
                  + (measured or "no summary metric is measured in both reports")]
    return "\n".join(lines) + "\n"


def _percent(value) -> str:
    """A relative drop as 'N.N%', or the dash format_value gives a missing one (no '—%')."""
    text = format_value(value, 1)
    return text if text == "—" else f"{text}%"


def _md_text(text: str) -> str:
    """A class name as one Markdown table cell: '|' escaped (it would split the cell), line breaks as spaces."""
    return " ".join(str(text).split("\n")).replace("|", "\\|")


def _signed(v: float | None) -> str:
    """A difference of rates in percentage points with its sign ("+1.25"), "—" for None."""
    return "—" if v is None else f"{100.0 * v:+.2f}"


def corruption_table(rows: list[dict], clean_miou: float | None):
    """A rich Table of mIoU under each corruption and its drop from clean (points and relative)."""
    from rich.table import Table

    table = Table(title=plain(f"robustness (clean mIoU {format_value(clean_miou)})"))
    for name in ("corruption", "severity", "mIoU", "drop (pts)", "drop (rel %)"):
        table.add_column(name, justify="left" if name == "corruption" else "right")
    for r in rows:
        table.add_row(*map(plain, (r["corruption"], str(r["severity"]), format_value(r["mIoU"]),
                                   format_value(r["drop"]), format_value(r["relative_drop"], 1))))
    return table


def compare_table(result: dict):
    """A rich Table of per-class IoU/BIoU then → now and the difference in points, aggregates in the caption."""
    from rich.table import Table

    agg = "  ".join(f"{k} {format_value(v['old'])} → {format_value(v['new'])} ({_signed(v['delta'])})"
                    for k, v in result["aggregates"].items())
    table = Table(title=plain(f"compared with {result['against']}"), caption=plain(agg))
    for name in ("class", "IoU then", "IoU now", "Δ IoU", "BIoU then", "BIoU now", "Δ BIoU"):
        table.add_column(plain(name), justify="left" if name == "class" else "right")
    for r in result["classes"]:
        table.add_row(*map(plain, (r["name"], format_value(r["old_iou"]), format_value(r["iou"]),
                                   _signed(r["delta_iou"]), format_value(r["old_biou"]), format_value(r["biou"]),
                                   _signed(r["delta_biou"]))))
    return table
