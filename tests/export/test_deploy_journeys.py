"""A user deploying an exported model without segcli: onnxruntime, cv2 and numpy, guided by the README's export
section and the file's own metadata, must get `segcli predict`'s masks."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from helpers_cli import run_in_process


def _meta(path) -> dict:
    import onnxruntime as ort

    return json.loads(ort.InferenceSession(str(path)).get_modelmeta().custom_metadata_map["segcli"])


def _plain_mask(path, image_file) -> np.ndarray:
    """The README's recipe, nothing of segcli: read, map 16-bit / 257 and round, RGB, normalise, pad with zeros
    after normalising to size_multiple and min_size, run, crop, argmax → (H, W) uint8 ids."""
    import cv2
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    meta = json.loads(session.get_modelmeta().custom_metadata_map["segcli"])
    image = cv2.imread(str(image_file), cv2.IMREAD_UNCHANGED)
    if image.dtype == np.uint16:
        image = np.round(image / 257.0)
    image = image.astype(np.float32)
    image = np.repeat(image[..., None], 3, axis=2) if image.ndim == 2 else image[..., 2::-1]
    x = ((image / 255 - np.float32(meta["mean"])) / np.float32(meta["std"])).transpose(2, 0, 1)
    h, w = x.shape[1:]
    step, low = meta["size_multiple"], meta["min_size"] or 0
    padded = np.zeros((1, 3, max(low, math.ceil(h / step) * step), max(low, math.ceil(w / step) * step)), np.float32)
    padded[0, :, :h, :w] = x
    logits = session.run(None, {session.get_inputs()[0].name: padded})[0]
    return logits[0, :, :h, :w].argmax(0).astype(np.uint8)


def test_plain_onnxruntime_gives_predicts_masks_on_odd_grey_and_16bit_images(onnx_file, tmp_path):
    """Masks of 181x243, grayscale and 16-bit images from 20 lines of cv2 + onnxruntime equal `segcli predict
    --model`'s, pixel for pixel (a 16-bit image read as value / 257 without rounding differed on 116 pixels)."""
    import cv2

    rng = np.random.default_rng(0)
    images = tmp_path / "images"
    images.mkdir()
    colour = rng.integers(0, 256, (181, 243, 3), dtype=np.uint8)
    colour = cv2.GaussianBlur(colour, (9, 9), 3)  # scene-like smooth regions, not only noise
    cv2.imwrite(str(images / "odd.png"), colour)
    cv2.imwrite(str(images / "grey.png"), cv2.cvtColor(colour, cv2.COLOR_BGR2GRAY)[:97, :131])
    deep = colour.astype(np.uint16) * 257 + rng.integers(0, 257, colour.shape).astype(np.uint16)
    cv2.imwrite(str(images / "deep.png"), deep)
    assert run_in_process(["predict", "--model", onnx_file, images, "--out", tmp_path / "pred", "--save", "mask"]) == 0
    for name in ("odd", "grey", "deep"):
        mask = cv2.imread(str(tmp_path / "pred" / f"{name}.png"), cv2.IMREAD_UNCHANGED)
        assert np.array_equal(_plain_mask(onnx_file, images / f"{name}.png"), mask), name


@pytest.mark.parametrize("in_channels, scale", [(3, 0.5), (1, 1.0)])
def test_metadata_input_line_names_every_step_of_the_preprocessing(in_channels, scale, ckpt):
    """The `input` line said only '(x / 255 - mean) / std, H and W multiples of size_multiple': code following it
    differed from `segcli predict` on 5% of the pixels of an input_scale 0.5 model (the resize was unsaid), on 1,199
    of 533,357 of a 1-channel one (the luma's source unsaid), and could not know min_size, where the padding's zeros
    go, or that deeper images are rounded to 8 bits."""
    from segcli.export.metadata import export_meta
    from segcli.inference.backends import read_checkpoint

    meta = read_checkpoint(ckpt)["hyper_parameters"]["meta"]
    meta = {**meta, "model": {**meta["model"], "in_channels": in_channels}, "mean": [0.5] * in_channels,
            "std": [0.2] * in_channels, "input_scale": scale}
    line = export_meta(meta, ckpt, "onnx", False, False, 17)["input"]
    for needed in ("rounded", "at least min_size", "pad bottom/right with 0 after normalising", "crop the output back"):
        assert needed in line
    assert ("input_scale 0.5: the image first resized to max(1, round(H × 0.5)) × max(1, round(W × 0.5)) (round "
            "half to even" in line) == (scale == 0.5)
    assert ("antialiased when shrinking" in line) == (scale == 0.5)
    assert ("COLOR_RGB2GRAY of the 8-bit RGB" in line) == (in_channels == 1)


def test_the_lines_resize_rule_is_predicts():
    """The line said round(H × scale): rounding halves up (C's round, int(x + 0.5)) gave other masks on 88% of the
    pixels of a 65×99 image, and a 1-pixel side became 0. The sizes segcli resizes to round halves to even and are at
    least 1, as the line now says."""
    from segcli.inference.predictor import scaled_size

    assert scaled_size(77, 101, 0.5) == (38, 50)  # 38.5 → 38, 50.5 → 50
    assert scaled_size(79, 99, 0.5) == (40, 50)  # 39.5 → 40, 49.5 → 50
    assert scaled_size(1, 3, 0.5) == (1, 2)  # 0.5 → 0, kept at 1; 1.5 → 2


def test_exported_file_carries_the_input_line(onnx_file):
    """The line reaches the file a user opens, not only the function that builds it."""
    line = _meta(onnx_file)["input"]
    assert line.startswith("float32 NCHW RGB, (x / 255 - mean) / std") and "at least min_size" in line
