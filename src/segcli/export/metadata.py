"""The self-description stored in every exported model, so that it can be used with nothing else.

It is the checkpoint's `meta` (classes, palette, ignore_index, mean, std, size_multiple, model,
dataset; see segcli.runs.model_meta) plus what the exported file itself is:

    channel_order      "RGB"; "gray" (a 1-channel model: the luma of RGB); "RGB, then band 4 as stored" (a 4-band
                       model; "bands 4-C" for more): the input channels, after (x / 255 - mean) / std
    input              one line: from an image file to the input tensor (8-bit values, normalisation, padding,
                       input_scale's resize) and from the output back to a mask of the image's size
    output             "logits": (N, classes, H, W) float; "ids": (N, H, W) uint8 class ids, int32 above 256 classes (--argmax)
    dtype              "float32" | "float16" (--half): the input and logits type
    format             "onnx" | "torchscript"; opset (ONNX only)
    segcli_version     the segcli that exported it (trained_with_segcli: the one that trained it)
    checkpoint_sha256  sha256 of the exported checkpoint file
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from segcli import __version__


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def channel_order(channels: int) -> str:
    """What the input's channels are, as segcli reads images for a model of `channels` input channels
    (segcli.inference.io.read_image): RGB; the luma of RGB for one; R, G, B and the further bands as the file
    stores them for more (a multispectral model); the bands as stored for two."""
    if channels == 1:
        return "gray"
    if channels < 3:
        return f"{channels} bands as stored"
    if channels == 3:
        return "RGB"
    return "RGB, then band 4 as stored" if channels == 4 else f"RGB, then bands 4-{channels} as stored"


def input_description(meta: dict, dtype: str, order: str) -> str:
    """The `input` line: every step from an image file to the input tensor and from the output back to a mask, as
    segcli's predictor takes them. Without the rounding to 8 bits, the luma's source, where the padding's zeros go and
    how input_scale resizes, a user's own code differed from `segcli predict` on 116 to 29,934 of 533,357 pixels."""
    deeper = (f"mapped from image_range {meta['image_range']} onto 0..255, clipped" if meta.get("image_range")
              else "16-bit / 257, floating point in 0..1 × 255")
    shown = "EXIF orientation applied" + (", alpha dropped" if order in ("RGB", "gray") else "")
    line = (f"{dtype} NCHW {order}, (x / 255 - mean) / std; x: the 8-bit values of the image as shown ({shown}; "
            f"deeper images: {deeper}, rounded to whole values)")
    if order == "gray":
        line += ", of a colour image its luma: OpenCV's COLOR_RGB2GRAY of the 8-bit RGB"
    line += ("; H and W multiples of size_multiple and at least min_size: pad bottom/right with 0 after normalising, "
             "crop the output back")
    scale = meta.get("input_scale")
    if scale is not None and float(scale) != 1.0:
        line += (f"; input_scale {float(scale):g}: the image first resized to max(1, round(H × {float(scale):g})) × "
                 f"max(1, round(W × {float(scale):g})) (round half to even, as Python's round: 38.5 → 38, "
                 "39.5 → 40; bilinear, align_corners false, antialiased when shrinking: torch's "
                 "interpolate(antialias=True)), the logits resized back to H × W (bilinear) before the argmax")
    return line


def export_meta(meta: dict, checkpoint: str | Path, fmt: str, argmax: bool, half: bool, opset: int | None = None) -> dict:
    """The checkpoint's `meta` extended with what an exported file needs to describe itself. A checkpoint of an
    older segcli lacks keys that later ones always write (input_scale, min_size, image_range): they get the values
    segcli reads it with, so that the file holds every key its README section lists."""
    from segcli.inference.predictor import input_scale, min_size

    dtype = "float16" if half else "float32"
    order = channel_order(int(meta["model"]["in_channels"]))
    out = {"image_range": None, **meta, "input_scale": input_scale(meta), "min_size": min_size(meta)}
    out.update({
        "segcli_version": __version__,
        "trained_with_segcli": meta.get("segcli_version"),
        "checkpoint_sha256": sha256_file(checkpoint),
        "format": fmt,
        "channel_order": order,
        "dtype": dtype,
        "input": input_description(meta, dtype, order),
        "output": "ids" if argmax else "logits",
    })
    if opset is not None:
        out["opset"] = int(opset)
    return out
