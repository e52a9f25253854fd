"""Grayscale and multispectral models train end to end; eval/predict of them use the same normalisation."""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import torch
from helpers_cli import argmax_agreement
from helpers_surface import QUICK, segcli


def _meta(run):
    return torch.load(run / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=False)["hyper_parameters"]["meta"]


def _last_val_miou(run) -> str:
    import csv

    rows = [r for r in csv.DictReader((run / "metrics.csv").open()) if r.get("val/mIoU")]
    return rows[-1]["val/mIoU"]


def test_grayscale_trains_evaluates_and_predicts(tiny_data, tmp_path):
    run = tmp_path / "gray"
    proc = segcli("train", f"data.root={tiny_data}", *QUICK, "model.in_channels=1", "--run-dir", run)
    assert proc.returncode == 0, proc.stderr[-2000:]
    meta = _meta(run)
    assert len(meta["mean"]) == len(meta["std"]) == 1 and 0 < meta["std"][0] < 1
    out = tmp_path / "eval"
    proc = segcli("eval", "--ckpt", run / "checkpoints" / "best.ckpt", "--data", tiny_data, "--out", out)
    assert proc.returncode == 0, proc.stderr[-2000:]

    report = json.loads((out / "report.json").read_text())
    miou = report.get("mIoU", report.get("summary", {}).get("mIoU"))
    assert miou is not None and abs(float(miou) - float(_last_val_miou(run))) < 1e-4 * max(1, abs(float(miou)))
    proc = segcli("predict", tiny_data / "images" / "val", "--ckpt", run / "checkpoints" / "best.ckpt", "--out",
                  tmp_path / "pred")
    assert proc.returncode == 0, proc.stderr[-2000:]
    masks = sorted((tmp_path / "pred").glob("*.png"))
    assert masks and cv2.imread(str(masks[0]), cv2.IMREAD_UNCHANGED).ndim == 2


def test_four_channel_png_dataset_trains_and_evaluates(tiny_data, tmp_path):
    root = tmp_path / "ms"
    shutil.copytree(tiny_data, root)
    for path in root.glob("images/*/*.png"):  # R, G, B + a 4th band (here: an inverted green as stand-in for NIR)
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        cv2.imwrite(str(path), np.dstack([bgr, 255 - bgr[..., 1]]))
    run = tmp_path / "run"
    proc = segcli("train", f"data.root={root}", *QUICK, "model.in_channels=4", "augment.saturation=0.2",
                  "--run-dir", run)
    assert proc.returncode == 2 and "augment.saturation needs 1 or 3 image channels" in proc.stderr
    # the default preset's brightness and contrast jitter every band alike (they stopped the run: exit 2)
    proc = segcli("train", f"data.root={root}", *QUICK, "model.in_channels=4", "--run-dir", run)
    assert proc.returncode == 0, proc.stderr[-2000:]
    meta = _meta(run)
    assert len(meta["mean"]) == 4
    assert abs(meta["mean"][3] - (1 - meta["mean"][1])) < 0.02  # the 4th band is measured, not assumed
    proc = segcli("eval", "--ckpt", run / "checkpoints" / "best.ckpt", "--data", root, "--out", tmp_path / "eval",
                  "--corruptions", "all", "--severity", "1")
    assert proc.returncode == 0, proc.stderr[-2000:]
    scored = json.loads((tmp_path / "eval" / "report.json").read_text())["corruptions"]
    assert [c["corruption"] for c in scored] == ["contrast", "gaussian_noise", "motion_blur", "fog"]
    assert "brightness, jpeg left out: they need RGB images, this model reads 4 channels" in proc.stderr
    proc = segcli("eval", "--ckpt", run / "checkpoints" / "best.ckpt", "--data", root, "--corruptions", "fog,jpeg")
    assert proc.returncode == 2 and "corruption 'jpeg' needs RGB images" in proc.stderr
    _predict_and_export_four_channels(root, run, tmp_path)
    proc = segcli("train", f"data.root={tiny_data}", *QUICK, "model.in_channels=4", "--run-dir", tmp_path / "rgb")
    assert proc.returncode == 3 and "3 channel(s), but the model takes 4" in proc.stderr


def _predict_and_export_four_channels(root, run, tmp_path):
    """predict reads the model's 4 channels (masks, overlays of the first three), export verifies on them and
    the ONNX model predicts the same masks; a video (3 colours) is refused by name."""
    ckpt, images = run / "checkpoints" / "best.ckpt", root / "images" / "val"
    proc = segcli("predict", images, "--ckpt", ckpt, "--out", tmp_path / "pred", "--save", "mask,overlay")
    assert proc.returncode == 0, proc.stderr[-2000:]
    masks = sorted((tmp_path / "pred").glob("*.png"))
    assert len(masks) == len(list(images.glob("*.png")))
    overlay = cv2.imread(str(tmp_path / "pred" / "overlays" / masks[0].name), cv2.IMREAD_UNCHANGED)
    assert overlay.shape == (*cv2.imread(str(masks[0]), cv2.IMREAD_UNCHANGED).shape, 3)
    proc = segcli("export", "--ckpt", ckpt, "--out", tmp_path / "ms.onnx")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert argmax_agreement(proc.stderr) >= 99.99
    proc = segcli("predict", images, "--ckpt", tmp_path / "ms.onnx", "--out", tmp_path / "pred_onnx")
    assert proc.returncode == 0, proc.stderr[-2000:]
    for mask in masks:
        assert (cv2.imread(str(mask), cv2.IMREAD_UNCHANGED) == cv2.imread(str(tmp_path / "pred_onnx" / mask.name),
                                                                          cv2.IMREAD_UNCHANGED)).all()
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5.0, (64, 48))
    for _ in range(3):
        writer.write(np.zeros((48, 64, 3), np.uint8))
    writer.release()
    proc = segcli("predict", video, "--ckpt", ckpt, "--out", tmp_path / "pred_video")
    assert proc.returncode == 3 and "clip.avi: video frames have 3 colour channels, but the model takes 4" in proc.stderr
