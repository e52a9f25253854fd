"""Rendering metric dicts (from segcli.metrics.compute_metrics) as rich tables and JSON reports."""

from __future__ import annotations

import json

from segcli.metrics import format_value


def metrics_table(metrics: dict, title: str = ""):
    """A rich Table: one row per class (IoU, Acc, Dice in %, pixel counts), aggregates in the caption."""
    from rich.table import Table

    table = Table(title=title or None, caption=_summary(metrics), show_lines=False)
    for name, justify in (("id", "right"), ("class", "left"), ("IoU", "right"), ("Acc", "right"), ("Dice", "right"),
                          ("gt px", "right"), ("pred px", "right")):
        table.add_column(name, justify=justify)
    for row in metrics["classes"]:
        table.add_row(str(row["id"]), row["name"], format_value(row["iou"]), format_value(row["acc"]),
                      format_value(row["dice"]), f"{row['gt_pixels']:,}", f"{row['pred_pixels']:,}")
    return table


def _summary(metrics: dict) -> str:
    return "  ".join(f"{k} {format_value(metrics.get(k))}" for k in ("mIoU", "mAcc", "aAcc") if k in metrics)


def report_json(metrics: dict, split: str, num_images: int, extra: dict | None = None) -> str:
    """The eval report schema: mIoU, mAcc, aAcc, split, num_images, classes[...] with values in [0, 1] or null."""
    report = {"mIoU": metrics["mIoU"], "mAcc": metrics["mAcc"], "aAcc": metrics["aAcc"], "mDice": metrics.get("mDice"),
              "fwIoU": metrics.get("fwIoU"), "split": split, "num_images": int(num_images),
              "classes": [{k: row.get(k) for k in ("id", "name", "iou", "acc", "dice", "precision", "gt_pixels", "pred_pixels")}
                          for row in metrics["classes"]]}
    if extra:
        report.update(extra)
    return json.dumps(report, indent=2) + "\n"
