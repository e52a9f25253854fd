"""A 4-band TIFF dataset trained by a 3-channel model: the bands left out are named, with the setting that uses them."""

from __future__ import annotations

import cv2
import numpy as np
from helpers_surface import QUICK, segcli


def _prepared(tmp_path, name: str, suffix: str, write, seed: int = 0):
    """Six 32×32 images (each written by write(path, rng)) with two-class masks, prepared: (folder, prepare's run)."""
    rng = np.random.default_rng(seed)
    images, masks = tmp_path / f"images{name}", tmp_path / f"masks{name}"
    images.mkdir()
    masks.mkdir()
    for i in range(6):
        ids = np.zeros((32, 32), np.uint8)
        ids[:, 16:] = 1
        write(images / f"x{i}{suffix}", rng)
        assert cv2.imwrite(str(masks / f"x{i}.png"), ids)
    out = tmp_path / f"data{name}"
    proc = segcli("prepare", "folder", "--images", images, "--masks", masks, "--out", out, "--val-fraction", "0.34")
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out, proc


def _dataset(tmp_path, suffix: str, cmyk: bool = False):
    """Six 32×32 4-channel images (TIFF: R, G, B, NIR; PNG: RGBA; cmyk: CMYK TIFFs written by PIL) with two-class
    masks, prepared."""
    from PIL import Image

    def write(path, rng):
        if cmyk:
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).convert("CMYK").save(path)
        else:
            assert cv2.imwrite(str(path), rng.integers(0, 256, (32, 32, 4), dtype=np.uint8))

    out, proc = _prepared(tmp_path, suffix + ("-cmyk" if cmyk else ""), suffix, write)
    assert "WARN" not in proc.stderr  # OpenCV's libtiff warnings, one per read of such a TIFF, are kept quiet
    return out


def test_a_four_band_tiff_trained_as_rgb_names_the_setting_for_all_bands(tmp_path):
    tiffs = _dataset(tmp_path, ".tif")
    proc = segcli("train", f"data.root={tiffs}", *QUICK, "final_eval=false", "--run-dir", tmp_path / "rgb")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "has 4 bands and the model reads the first 3 as RGB (model.in_channels=3); set model.in_channels=4 " \
           "to train on all of them" in proc.stderr
    assert "TIFF_Warning" not in proc.stderr
    pngs = _dataset(tmp_path, ".png")  # RGBA: the alpha channel is rightly dropped, no note
    proc = segcli("train", f"data.root={pngs}", *QUICK, "final_eval=false", "--run-dir", tmp_path / "rgba")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "bands" not in proc.stderr


def test_a_cmyk_tiff_dataset_gets_no_note_about_bands_left_out(tmp_path):
    """A CMYK TIFF stores 4 samples, but its colour decode converts them to RGB: the note said the model 'reads the
    first 3 as RGB' and advised model.in_channels=4, which feeds the model converted colours and a constant band."""
    from segcli.inference.io import is_cmyk_tiff

    out = _dataset(tmp_path, ".tif", cmyk=True)
    prepared = sorted(out.rglob("*.tif"))
    assert len(prepared) == 6 and all(is_cmyk_tiff(path) for path in prepared)  # prepare keeps them as they are
    proc = segcli("train", f"data.root={out}", *QUICK, "final_eval=false", "--run-dir", tmp_path / "run")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "bands" not in proc.stderr and "in_channels=4" not in proc.stderr


def _two_band_tiffs(tmp_path, alpha: bool = False):
    """Six 32×32 2-band TIFFs (a band, and a second band or alpha) with two-class masks, prepared."""
    import tifffile

    extra = {"extrasamples": ["unassalpha"]} if alpha else {"planarconfig": "contig"}

    def write(path, rng):
        tifffile.imwrite(path, rng.integers(0, 256, (32, 32, 2), dtype=np.uint8), photometric="minisblack", **extra)

    return _prepared(tmp_path, "-la" if alpha else "-b2", ".tif", write, seed=1)[0]


def test_bands_a_grey_or_rgb_model_leaves_out_are_named_for_two_bands_and_for_a_grey_model(tmp_path):
    """A 2-band TIFF (e.g. two radar polarisations) trained with the default 3 channels lost its second band without
    a word (read as grey); so did a 1-channel model's 4th band of a 4-band TIFF. A grey + alpha TIFF gets no note."""
    two = _two_band_tiffs(tmp_path)
    proc = segcli("train", f"data.root={two}", *QUICK, "final_eval=false", "--run-dir", tmp_path / "two")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "has 2 bands and the model reads its first band as grey (model.in_channels=3); set model.in_channels=2 " \
           "to train on all of them" in proc.stderr
    four = _dataset(tmp_path, ".tif")
    proc = segcli("train", f"data.root={four}", *QUICK, "final_eval=false", "model.in_channels=1",
                  "--run-dir", tmp_path / "grey")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "has 4 bands and the model reads the first 3 as grey (their luma) (model.in_channels=1); set " \
           "model.in_channels=4" in proc.stderr
    alpha = _two_band_tiffs(tmp_path, alpha=True)
    proc = segcli("train", f"data.root={alpha}", *QUICK, "final_eval=false", "--run-dir", tmp_path / "alpha")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "bands and the model reads" not in proc.stderr
