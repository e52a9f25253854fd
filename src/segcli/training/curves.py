"""The training-curve figure RUN_DIR/curves.png, drawn from metrics.csv with OpenCV (no matplotlib).

Left panel: train loss per logged step (thin) and per epoch (thick, at the epoch's last step).
Right panel: val mIoU (%) per epoch, best marked.
"""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np

from segcli.inference.io import write_png

PANEL = (360, 520)  # (H, W) of one panel in pixels
MARGIN = (30, 62, 40, 16)  # top, left, bottom, right
STEP_COLOUR, EPOCH_COLOUR, VAL_COLOUR = (150, 180, 230), (31, 90, 180), (200, 70, 40)  # RGB


def read_series(metrics_csv: Path) -> dict[str, list[tuple[float, float]]]:
    """{'loss_step': [(step, loss)], 'loss_epoch': [(step, loss)], 'miou': [(epochs trained, mIoU %)]} from
    metrics.csv. A validation at an epoch's end is at epoch + 1; one within it (trainer.val_check_interval) at the
    fraction of the epoch's steps done, where the epoch's steps are known (all of one epoch's validations were put at
    epoch + 1, one above another, and read as a fall and rise between epochs)."""
    out = {"loss_step": [], "loss_epoch": [], "miou": []}
    validations, ends = [], {}  # (epoch, step, mIoU %); epoch → the step of its train/loss_epoch row (its last)
    with open(metrics_csv, newline="") as handle:
        for row in csv.DictReader(handle):
            def value(key):
                text = row.get(key) or ""
                return float(text) if text not in ("", "nan") else None

            step, epoch = value("step"), value("epoch")
            if value("train/loss_step") is not None and step is not None:
                out["loss_step"].append((step, value("train/loss_step")))
            if value("train/loss_epoch") is not None and step is not None:
                out["loss_epoch"].append((step, value("train/loss_epoch")))
                if epoch is not None:
                    ends[epoch] = step
            if value("val/mIoU") is not None and epoch is not None:
                validations.append((epoch, step, 100.0 * value("val/mIoU")))
    for epoch, step, miou in validations:
        end, start = ends.get(epoch), ends.get(epoch - 1, -1.0 if epoch == 0 else None)
        within = None not in (step, end, start) and start < step < end
        out["miou"].append((epoch + (step - start) / (end - start) if within else epoch + 1, miou))
    return out


def _panel(title: str, xlabel: str, series: list[tuple[list[tuple[float, float]], tuple, int]], mark_max: bool = False):
    """One (H, W, 3) uint8 RGB plot of (points, colour, thickness) series on shared axes."""
    h, w = PANEL
    top, left, bottom, right = MARGIN
    img = np.full((h, w, 3), 255, np.uint8)
    points = [p for s, _, _ in series for p in s]
    font = cv2.FONT_HERSHEY_SIMPLEX
    cv2.putText(img, title, (left, 20), font, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.rectangle(img, (left, top), (w - right, h - bottom), (0, 0, 0), 1)
    cv2.putText(img, xlabel, (w // 2 - 20, h - 8), font, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    if not points:
        cv2.putText(img, "no data", (w // 2 - 30, h // 2), font, 0.5, (120, 120, 120), 1, cv2.LINE_AA)
        return img
    xs, ys = np.array([p[0] for p in points], float), np.array([p[1] for p in points], float)
    x0, x1 = float(xs.min()), float(xs.max()) if xs.max() > xs.min() else float(xs.min()) + 1.0
    y0, y1 = float(ys.min()), float(ys.max())
    pad = (y1 - y0) * 0.05 or max(abs(y1) * 0.05, 1e-3)
    y0, y1 = y0 - pad, y1 + pad

    def to_px(x: float, y: float) -> tuple[int, int]:
        px = left + (x - x0) / (x1 - x0) * (w - left - right)
        py = (h - bottom) - (y - y0) / (y1 - y0) * (h - top - bottom)
        return int(round(px)), int(round(py))

    for frac in (0.0, 0.5, 1.0):  # y ticks
        y = y0 + frac * (y1 - y0)
        _, py = to_px(x0, y)
        cv2.line(img, (left - 4, py), (left, py), (0, 0, 0), 1)
        cv2.putText(img, f"{y:.3g}", (4, py + 4), font, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    for x in (x0, x1):  # x ticks
        px, _ = to_px(x, y0)
        cv2.putText(img, f"{x:.0f}", (px - 8, h - bottom + 14), font, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    for pts, colour, thickness in series:
        if not pts:
            continue
        poly = np.array([to_px(x, y) for x, y in pts], np.int32)
        if len(poly) > 1:
            cv2.polylines(img, [poly], False, colour, thickness, cv2.LINE_AA)
        for p in poly if len(poly) <= 60 else poly[-1:]:
            cv2.circle(img, tuple(int(v) for v in p), thickness + 1, colour, -1, cv2.LINE_AA)
        if mark_max:
            x, y = max(pts, key=lambda p: p[1])
            cv2.putText(img, f"best {y:.2f} @ {x:.3g}", (left + 8, top + 16), font, 0.45, colour, 1, cv2.LINE_AA)
    return img


def curves_image(series: dict) -> np.ndarray:
    """(H, 2W, 3) uint8 RGB: the loss panel beside the val mIoU panel."""
    loss = _panel("train loss (thin: per step, thick: per epoch)", "step",
                  [(series["loss_step"], STEP_COLOUR, 1), (series["loss_epoch"], EPOCH_COLOUR, 2)])
    miou = _panel("val mIoU (%)", "epoch", [(series["miou"], VAL_COLOUR, 2)], mark_max=True)
    return np.concatenate([loss, miou], axis=1)


def write_curves(run_dir: Path) -> Path | None:
    """RUN_DIR/curves.png from RUN_DIR/metrics.csv (atomically); None when there is no metrics.csv."""
    metrics = Path(run_dir) / "metrics.csv"
    if not metrics.is_file():
        return None
    out = Path(run_dir) / "curves.png"
    write_png(out, curves_image(read_series(metrics)))
    return out
