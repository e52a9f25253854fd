"""Bytes after an image's end (a phone's JPEG trailer, a motion photo's video, metadata appended to a PNG) are not
truncation: decoders stop at the end marker, and prepare reads such pairs. Files that do end early still fail the
lint with the truncation message."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from helpers_data import blocks, random_image, read_lint
from PIL import Image

from segcli.inference.io import jpeg_cut_short

TRAILER = b"MotionPhoto_Data" + bytes(range(256)) * 40  # 10 kB after the end marker, as a phone appends


def _pairs(tmp_path, rng, count=4):
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir(), masks.mkdir()
    for i in range(count):
        ok, jpeg = cv2.imencode(".jpg", random_image(rng, 24, 32))
        (images / f"f{i}.jpg").write_bytes(jpeg.tobytes())
        ok, png = cv2.imencode(".png", blocks(rng, 24, 32, [0, 1]).astype(np.uint8))
        (masks / f"f{i}.png").write_bytes(png.tobytes())
    return images, masks


@pytest.mark.parametrize("where", ["image", "mask"])
def test_a_pair_with_bytes_after_the_end_marker_is_prepared(where, tmp_path, rng, run_cli):
    """Before: the JPEG's end marker had to lie in its last 64 bytes and a PNG's IEND in its last 16, so a photo
    with a trailer was 'truncated JPEG … re-export or re-download it' (exit 1, nothing written)."""
    images, masks = _pairs(tmp_path, rng)
    target = images / "f0.jpg" if where == "image" else masks / "f0.png"
    target.write_bytes(target.read_bytes() + TRAILER)
    out = tmp_path / "out"
    code, _, stderr = run_cli("prepare", "folder", "--images", images, "--masks", masks, "--out", out,
                              "--classes", "a,b", "--val-fraction", "0.25")
    assert code == 0, stderr
    assert "truncated" not in stderr
    assert len(list((out / "images").rglob("*.*"))) == 4


@pytest.mark.parametrize("where", ["image", "mask"])
def test_a_file_cut_before_its_end_marker_is_still_named_truncated(where, tmp_path, rng, run_cli):
    images, masks = _pairs(tmp_path, rng)
    target = images / "f0.jpg" if where == "image" else masks / "f0.png"
    data = target.read_bytes()
    target.write_bytes(data[:len(data) * 2 // 3])
    out = tmp_path / "out"
    code, _, stderr = run_cli("prepare", "folder", "--images", images, "--masks", masks, "--out", out,
                              "--classes", "a,b", "--val-fraction", "0.25")
    assert code == 1, stderr
    findings = read_lint(out / "lint.json")["findings"]
    kind = "truncated JPEG" if where == "image" else "truncated PNG"
    assert [(f["file"], f["detail"].split(" (")[0]) for f in findings] == [(str(target), kind)]


def test_a_jpeg_whose_thumbnail_ends_but_whose_picture_is_cut_is_truncated(tmp_path, rng):
    """An EXIF thumbnail is a JPEG inside the header, with its own end marker: it does not end the picture."""
    thumb = Image.fromarray(random_image(rng, 8, 8))
    photo = Image.fromarray(random_image(rng, 64, 80))
    exif = Image.Exif()
    path = tmp_path / "p.jpg"
    photo.save(path, exif=exif.tobytes())
    import io

    buffer = io.BytesIO()
    thumb.save(buffer, format="JPEG")
    data = path.read_bytes()
    # an APP1 segment holding a whole JPEG (its FF D9 included), right after SOI
    payload = b"Exif\x00\x00" + buffer.getvalue()
    app1 = b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload
    whole = data[:2] + app1 + data[2:]
    assert cv2.imdecode(np.frombuffer(whole, np.uint8), cv2.IMREAD_COLOR).shape == (64, 80, 3)
    assert not jpeg_cut_short(whole) and not jpeg_cut_short(whole + TRAILER)
    assert jpeg_cut_short(whole[:-200]) and jpeg_cut_short(whole[:len(app1) + 40])


def test_progressive_jpegs_are_judged_by_their_last_scan(rng):
    ok, data = cv2.imencode(".jpg", random_image(rng, 48, 64), [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])
    data = data.tobytes()
    assert data.count(b"\xff\xda") > 1  # several scans
    assert not jpeg_cut_short(data) and not jpeg_cut_short(data + TRAILER)
    assert all(jpeg_cut_short(data[:cut]) for cut in range(2, len(data) - 1, 37))
