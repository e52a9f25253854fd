"""EXIF orientation read alike on every path: a 4-channel image (model.in_channels=4) is turned as its colour
decode is (lint measures pairs that way), and a JPEG or WebP mask's orientation is warned of as a PNG mask's is."""

from __future__ import annotations

import io

import numpy as np
import pytest
from helpers_data import blocks, random_image, read_lint, write_image
from PIL import Image

from segcli.inference.io import exif_orientation, read_image


def _exif(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


@pytest.mark.parametrize("fmt", ["PNG", "WEBP"])
def test_a_four_channel_image_is_turned_by_its_exif_orientation_as_its_colour_decode_is(fmt, tmp_path, rng):
    """Read with 4 channels, an RGBA PNG or WebP with an EXIF orientation came back as stored, the 3-channel read
    as shown: training with model.in_channels=4 paired such images with masks drawn on the shown image turned
    the wrong way (square images silently), or failed on a size prepare's lint had passed."""
    stored = np.dstack([random_image(rng, 12, 20), rng.integers(0, 256, (12, 20), dtype=np.uint8)])
    for orientation in range(1, 9):
        path = tmp_path / f"o{orientation}.{fmt.lower()}"
        buffer = io.BytesIO()
        Image.fromarray(stored, "RGBA").save(buffer, fmt, exif=_exif(orientation), **({"lossless": True}
                                                                                     if fmt == "WEBP" else {}))
        path.write_bytes(buffer.getvalue())
        assert exif_orientation(path.read_bytes()) == orientation
        shown = read_image(path, 3)
        four = read_image(path, 4)
        assert four.shape == (*shown.shape[:2], 4), orientation
        assert np.array_equal(four[..., :3], shown), orientation
        with Image.open(path) as img:  # PIL's own reading of the tag turns the 4th channel alike
            from PIL import ImageOps

            assert np.array_equal(four[..., 3], np.asarray(ImageOps.exif_transpose(img))[..., 3]), orientation


def test_files_without_an_orientation_read_as_one(tmp_path, rng):
    path = write_image(tmp_path / "plain.jpg", random_image(rng, 8, 8))
    assert exif_orientation(path.read_bytes()) == 1
    assert exif_orientation(b"II*\x00" + bytes(20)) == 1 and exif_orientation(b"") == 1


@pytest.mark.parametrize("suffix", [".jpg", ".webp"])
def test_a_jpeg_or_webp_mask_with_an_exif_orientation_is_warned_of(suffix, tmp_path, rng, run_cli):
    """A JPEG mask (read through --mask-threshold) or a WebP one keeping its photo's EXIF orientation is read as
    stored while its image is turned: only PNG masks got the mask_orientation warning, the rest passed silently
    (square images: no size mismatch), misaligned."""
    (tmp_path / "masks").mkdir()
    for i in range(3):
        write_image(tmp_path / "images" / f"p{i}.png", random_image(rng, 16, 16))
        ids = blocks(rng, 16, 16, [0, 255], block=4).astype(np.uint8)
        extra = {"quality": 95} if suffix == ".jpg" else {"lossless": True}
        Image.fromarray(ids, "L").save(tmp_path / "masks" / f"p{i}{suffix}", exif=_exif(6 if i == 0 else 1), **extra)
    args = ["prepare", "folder", "--images", tmp_path / "images", "--masks", tmp_path / "masks", "--classes", "a,b",
            "--val-fraction", "0.34"]
    args += ["--mask-threshold", "128"] if suffix == ".jpg" else ["--remap", "255=1"]
    code, _, stderr = run_cli(*args, "--out", tmp_path / "out")
    assert code == 0, stderr
    found = [f for f in read_lint(tmp_path / "out" / "lint.json")["findings"] if f["kind"] == "mask_orientation"]
    assert [f["file"].rsplit("/", 1)[-1] for f in found] == [f"p0{suffix}"]
    assert "EXIF orientation 6" in found[0]["detail"]
    assert run_cli(*args, "--out", tmp_path / "strict", "--strict")[0] == 1
