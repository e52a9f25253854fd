"""Images stored deeper than 8 bits (a 12-bit camera in 16-bit PNGs) train, predict and export through the
card's image_range: the model sees what an 8-bit copy of the same images would give it."""

from __future__ import annotations

import json

import cv2
import numpy as np
import yaml
from helpers_cli import argmax_agreement
from helpers_surface import QUICK, segcli


def _folder_dataset(tiny_data, raw, out, convert) -> dict:
    """prepare folder over tiny_data's images (converted) and masks → the new card."""
    card = yaml.safe_load((tiny_data / "dataset.yaml").read_text())
    for split, entries in card["splits"].items():
        for entry in entries:
            for kind in ("image", "mask"):
                target = raw / kind / split / (tiny_data / entry[kind]).name
                target.parent.mkdir(parents=True, exist_ok=True)
                array = cv2.imread(str(tiny_data / entry[kind]), cv2.IMREAD_UNCHANGED)
                assert cv2.imwrite(str(target), convert(array) if kind == "image" else array)
    proc = segcli("prepare", "folder", "--images", raw / "image", "--masks", raw / "mask", "--out", out,
                  "--classes", ",".join(card["classes"]), "--ignore-index", card["ignore_index"],
                  "--val-fraction", "0.25")
    assert proc.returncode == 0, proc.stderr[-2000:]
    return yaml.safe_load((out / "dataset.yaml").read_text())


def twelve_bit(image: np.ndarray) -> np.ndarray:
    """8-bit v → the 12-bit value that reads back as v through image_range [0, 4095]."""
    return np.round(image.astype(np.float64) * 4095 / 255).astype(np.uint16)


def test_twelve_bit_images_train_predict_and_export_like_their_8_bit_copy(tiny_data, tmp_path):
    deep = _folder_dataset(tiny_data, tmp_path / "raw12", tmp_path / "d12", twelve_bit)
    plain = _folder_dataset(tiny_data, tmp_path / "raw8", tmp_path / "d8", lambda a: a)
    assert deep["image_range"] == [0.0, 4095.0] and "image_range" not in plain
    assert np.allclose(deep["stats"]["mean"], plain["stats"]["mean"], atol=1e-3)
    assert np.allclose(deep["stats"]["std"], plain["stats"]["std"], atol=1e-3)

    run = tmp_path / "run"
    proc = segcli("train", f"data.root={tmp_path / 'd12'}", *QUICK, "--run-dir", run)
    assert proc.returncode == 0, proc.stderr[-2000:]
    ckpt = run / "checkpoints" / "best.ckpt"
    masks = {}
    for name, images in (("12", tmp_path / "raw12" / "image"), ("8", tmp_path / "raw8" / "image")):
        proc = segcli("predict", images, "--ckpt", ckpt, "--out", tmp_path / f"pred{name}")
        assert proc.returncode == 0, proc.stderr[-2000:]
        masks[name] = {p.relative_to(tmp_path / f"pred{name}"): cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
                       for p in sorted((tmp_path / f"pred{name}").rglob("*.png")) if "overlays" not in p.parts}
    assert masks["12"].keys() == masks["8"].keys() and len(masks["12"]) == 12
    assert all(np.array_equal(masks["12"][k], masks["8"][k]) for k in masks["12"])

    proc = segcli("eval", "--ckpt", ckpt, "--data", tmp_path / "d8", "--out", tmp_path / "eval8")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "read through the model's image_range [0, 4095] (from its training data), not" in proc.stderr
    assert "'s none (16-bit as value / 257)" in proc.stderr

    proc = segcli("export", "--ckpt", ckpt, "--out", tmp_path / "m.onnx")
    assert proc.returncode == 0 and argmax_agreement(proc.stderr) >= 99.99, proc.stderr[-2000:]
    import onnx

    meta = json.loads({p.key: p.value for p in onnx.load(str(tmp_path / "m.onnx")).metadata_props}["segcli"])
    assert meta["image_range"] == [0.0, 4095.0] and "image_range [0.0, 4095.0]" in meta["input"]
    proc = segcli("predict", tmp_path / "raw12" / "image", "--ckpt", tmp_path / "m.onnx", "--out", tmp_path / "onnx")
    assert proc.returncode == 0, proc.stderr[-2000:]
    # onnxruntime's float arithmetic is not torch's: a pixel whose two best logits nearly tie (a model trained for
    # one epoch has such pixels) may flip (1 of 36,864 on an AVX2 CPU). Reading the 12-bit images without the
    # image_range would change most pixels; export's own verification asks for 99.99% agreement.
    same = sum(int((cv2.imread(str(tmp_path / "onnx" / k), cv2.IMREAD_UNCHANGED) == masks["12"][k]).sum())
               for k in masks["12"])
    assert same >= 0.9999 * sum(mask.size for mask in masks["12"].values())
