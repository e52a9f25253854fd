"""A PNG cut short (an interrupted download or copy) among predict's inputs: segcli's one warning line named it, and
libpng's own lines ("libpng error: PNG input buffer is incomplete", twice, naming no file) stood beside it on stderr.
libpng writes them to file descriptor 2 itself, so they are looked for with capfd."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from helpers_cli import run_in_process
from predict_helpers import write_images

from segcli.inference.io import png_cut_short


def test_predict_names_a_cut_short_png_in_one_line_of_its_own(ckpt, tmp_path, capfd):
    good, cut = write_images(tmp_path / "in", 2)
    noise = np.random.default_rng(0).integers(0, 256, (64, 80, 3), dtype=np.uint8)
    data = cv2.imencode(".png", noise)[1].tobytes()
    cut.write_bytes(data[:len(data) * 9 // 10])  # libpng's lines came for cuts in the last part of the data
    capfd.readouterr()
    code = run_in_process(["predict", tmp_path / "in", "--ckpt", ckpt, "--out", tmp_path / "out"])
    err = capfd.readouterr().err
    assert code == 3, err
    assert "libpng" not in err, err
    assert [line for line in err.splitlines() if str(cut) in line and "warning" in line] == [
        f"segcli: warning: {cut}: not a readable image (corrupt, truncated or unsupported format); replace or remove "
        "it"]
    assert (tmp_path / "out" / f"{good.stem}.png").is_file() and not (tmp_path / "out" / f"{cut.stem}.png").exists()


@pytest.mark.parametrize("keep", [8, 20, 33, 100, -13, -12, -1])
def test_png_cut_anywhere_before_the_end_of_iend(keep):
    ok, encoded = cv2.imencode(".png", np.arange(64 * 48 * 3, dtype=np.uint8).reshape(64, 48, 3))
    data = encoded.tobytes()
    assert not png_cut_short(data)
    assert png_cut_short(data[:keep])
    assert cv2.imdecode(np.frombuffer(data[:keep], np.uint8), cv2.IMREAD_COLOR) is None  # what libpng makes of it


def test_what_follows_iend_and_other_formats_are_left_to_the_decoder():
    ok, encoded = cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))
    assert not png_cut_short(encoded.tobytes() + b"trailing bytes after IEND")
    ok, jpeg = cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))
    assert not png_cut_short(jpeg.tobytes()[:10]) and not png_cut_short(b"") and not png_cut_short(b"\x89PN")
