"""An odd-sized .avi clip's overlay video (written by OpenCV's own MJPEG writer, which keeps odd sizes) keeps the
clip's frame rate: that writer stores whole frames per second, so 29.97 became 30 and 12.5 became 12 (the overlay
drifting against its source), and below 0.5 it opened no file and FFmpeg's writer cut the size to even."""

from __future__ import annotations

import cv2
import pytest
from predict_helpers import scene

from segcli.inference.video import exact_avi_rate

WIDTH, HEIGHT = 71, 53


def _clip(path, fps: float, frames: int = 3) -> None:
    writer = cv2.VideoWriter(str(path), cv2.CAP_OPENCV_MJPEG, cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (WIDTH, HEIGHT))
    assert writer.isOpened()
    for i in range(frames):
        writer.write(cv2.cvtColor(scene(HEIGHT, WIDTH, i), cv2.COLOR_RGB2BGR))
    writer.release()
    exact_avi_rate(path, fps)  # what a camera or an editor writes: a fractional rate


def _read(path) -> tuple[float, tuple[int, int], int]:
    capture = cv2.VideoCapture(str(path))
    assert capture.isOpened(), path
    fps, size = capture.get(cv2.CAP_PROP_FPS), (int(capture.get(3)), int(capture.get(4)))
    frames = 0
    while capture.grab():
        frames += 1
    capture.release()
    return fps, size, frames


@pytest.mark.parametrize("fps", [30000 / 1001, 12.5, 7.5, 0.4])
def test_an_odd_sized_avi_overlay_keeps_the_clips_frame_rate_and_size(fps, ckpt, cli, tmp_path):
    clip = tmp_path / "clip.avi"
    _clip(clip, fps)
    assert _read(clip) == (pytest.approx(fps, rel=1e-6), (WIDTH, HEIGHT), 3)
    code, _, err = cli("predict", clip, "--ckpt", ckpt, "--out", tmp_path / "out")
    assert code == 0, err
    assert _read(tmp_path / "out" / "overlays" / "clip.avi") == (pytest.approx(fps, rel=1e-6), (WIDTH, HEIGHT), 3)
    assert "even sizes" not in err


def test_the_rate_is_left_alone_in_a_file_that_is_no_avi(tmp_path):
    path = tmp_path / "x.avi"
    path.write_bytes(b"not a video at all" * 10)
    exact_avi_rate(path, 29.97)
    assert path.read_bytes() == b"not a video at all" * 10
