"""report.md: a class name holding '|' or a line break stays one cell of the per-class table."""

from __future__ import annotations

from segcli.reports import markdown


def _row(i: int, name: str) -> dict:
    return {"id": i, "name": name, "iou": 0.5, "acc": 0.6, "dice": 0.7, "gt_pixels": 10, "pred_pixels": 12}


def test_class_names_with_a_bar_or_a_newline_keep_the_table_columns():
    report = {"mIoU": 0.5, "num_images": 2, "split": "val",
              "classes": [_row(0, "car"), _row(1, "truck|bus"), _row(2, "two\nlines")]}
    table = [line for line in markdown(report).splitlines() if line.startswith("|")]
    head, rule, *rows = table
    cells = head.count(" | ") + 1
    assert len(rows) == 3 and all(row.replace("\\|", "").count(" | ") + 1 == cells for row in rows)
    assert rows[1].startswith("| truck\\|bus |") and rows[2].startswith("| two lines |")


def _rendered(renderable) -> str:
    import io

    from rich.console import Console

    console = Console(file=io.StringIO(), width=200)
    console.print(renderable)
    return console.file.getvalue()


def test_class_names_with_square_brackets_are_shown_as_written_not_read_as_markup():
    # rich reads '[car]' in a plain string as a style tag (dropped) and '[/]' as a closing tag (MarkupError: exit 4)
    import numpy as np

    from segcli.evaluation.compare import deltas
    from segcli.metrics import compute_metrics
    from segcli.reports import compare_table, metrics_table

    names = ["vehicle [car]", "sign [/]", "road"]
    metrics = compute_metrics(np.array([[5, 1, 0], [1, 5, 0], [0, 0, 3]]), names)
    text = _rendered(metrics_table(metrics, title="data [v2] / val"))
    assert all(name in text for name in names) and "data [v2] / val" in text
    text = _rendered(compare_table(deltas(metrics, metrics, "old [run]/report.json")))
    assert all(name in text for name in names) and "old [run]/report.json" in text


def test_a_comparison_with_no_summary_metric_measured_in_both_says_so():
    """Every aggregate undefined in one report (an earlier split without labelled pixels): report.md ended
    'Compared with `old.json`: ' with nothing after it."""
    import numpy as np

    from segcli.evaluation.compare import deltas
    from segcli.metrics import compute_metrics

    names = ["car", "road"]
    measured = compute_metrics(np.array([[5, 1], [1, 5]]), names)
    empty = compute_metrics(np.zeros((2, 2), dtype=np.int64), names)
    report = {**measured, "num_images": 1, "split": "val", "compare": deltas(empty, measured, "old.json")}
    assert markdown(report).rstrip().endswith("Compared with `old.json`: no summary metric is measured in both reports")
    report["compare"] = deltas(measured, measured, "old.json")
    assert markdown(report).rstrip().endswith("Compared with `old.json`: mIoU +0.00, mAcc +0.00, mDice +0.00, "
                                              "aAcc +0.00, fwIoU +0.00")


def test_a_robustness_row_without_a_relative_drop_is_a_dash_not_dash_percent():
    """A split whose clean mIoU is undefined (every pixel ignored) has no relative drop: report.md wrote '—%'."""
    report = {"mIoU": None, "num_images": 1, "split": "val", "classes": [_row(0, "car")],
              "corruptions": [{"corruption": "fog", "severity": 3, "mIoU": None, "drop": None, "relative_drop": None},
                              {"corruption": "jpeg", "severity": 3, "mIoU": 0.4, "drop": 0.1, "relative_drop": 0.2}]}
    rows = [line for line in markdown(report).splitlines() if line.startswith(("| fog", "| jpeg"))]
    assert rows == ["| fog | 3 | — | — | — |", "| jpeg | 3 | 40.00 | 10.00 | 20.0% |"]
