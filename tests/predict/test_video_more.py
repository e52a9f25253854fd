"""predict on videos as users record them: odd sizes, grayscale, upper-case suffixes, clips recorded again."""

from __future__ import annotations

import json

import cv2
import pytest
from predict_helpers import scene


def _write_video(path, frames: int, width: int = 96, height: int = 64, fps: float = 10.0, color: bool = True,
                 api: int = cv2.CAP_ANY, fourcc: str = "MJPG") -> None:
    writer = cv2.VideoWriter(str(path), api, cv2.VideoWriter_fourcc(*fourcc), fps, (width, height), color)
    assert writer.isOpened()
    for i in range(frames):
        frame = cv2.cvtColor(scene(height, width, i), cv2.COLOR_RGB2BGR)
        writer.write(frame if color else cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY))
    writer.release()


def _video_info(path) -> tuple[int, float, tuple[int, int]]:
    """(frames read, fps, (width, height)) of a video read back with OpenCV."""
    capture = cv2.VideoCapture(str(path))
    assert capture.isOpened(), path
    fps, size = capture.get(cv2.CAP_PROP_FPS), (int(capture.get(3)), int(capture.get(4)))
    count = 0
    while capture.read()[0]:
        count += 1
    capture.release()
    return count, fps, size


def test_rerun_of_a_shorter_clip_leaves_no_stale_frame_masks(ckpt, cli, tmp_path):
    """A clip trimmed (or recorded again) under the same name and predicted into the same --out: the masks and entropy
    maps of the frames it no longer has went, and --skip-existing then takes it as finished (it predicted it again on
    every run, and the folder held 6 masks for a 3-frame video)."""
    clip, out = tmp_path / "clip.avi", tmp_path / "out"
    args = ("--ckpt", ckpt, "--out", out, "--frame-masks", "--save", "mask,overlay,areas,uncertainty", "--jsonl")
    _write_video(clip, 6)
    assert cli("predict", clip, *args)[0] == 0
    _write_video(clip, 3)
    code, _, err = cli("predict", clip, *args)
    assert code == 0, err
    names = [f"{i:06d}.png" for i in range(3)]
    assert sorted(p.name for p in (out / "clip").iterdir()) == names
    assert sorted(p.name for p in (out / "uncertainty" / "clip").iterdir()) == names
    code, out_lines, err = cli("predict", clip, *args, "--skip-existing")
    assert code == 0, err
    lines = [json.loads(line) for line in out_lines.splitlines()]
    assert [line["input"] for line in lines] == [f"{clip}#{i:06d}" for i in range(3)]
    assert all(line["skipped"] for line in lines)


@pytest.mark.parametrize("width, height", [(17, 23), (481, 361)])
def test_odd_sized_video_keeps_its_size_in_masks_and_in_an_avi_overlay(ckpt, cli, tmp_path, width, height):
    clip = tmp_path / "odd.avi"
    _write_video(clip, 2, width, height, api=cv2.CAP_OPENCV_MJPEG)  # OpenCV's own MJPEG writer keeps odd sizes
    assert _video_info(clip) == (2, 10.0, (width, height))
    code, _, err = cli("predict", clip, "--ckpt", ckpt, "--out", tmp_path / "out", "--frame-masks")
    assert code == 0, err
    assert f"is {width}×{height}" not in err
    assert _video_info(tmp_path / "out" / "overlays" / "odd.avi") == (2, 10.0, (width, height))
    masks = sorted((tmp_path / "out" / "odd").glob("*.png"))
    assert [cv2.imread(str(m), cv2.IMREAD_UNCHANGED).shape for m in masks] == [(height, width)] * 2


def test_grayscale_one_frame_and_upper_case_suffix_videos(ckpt, cli, tmp_path):
    (tmp_path / "in").mkdir()
    _write_video(tmp_path / "in" / "gray.avi", 3, color=False)
    _write_video(tmp_path / "in" / "ONE.MP4", 1, fps=0.5, fourcc="mp4v")
    _write_video(tmp_path / "in" / "fast.mp4", 2, fps=120.0, fourcc="mp4v")
    code, out, err = cli("predict", tmp_path / "in", "--ckpt", ckpt, "--out", tmp_path / "out", "--frame-masks",
                         "--save", "mask,overlay,areas")
    assert code == 0, err
    overlays = tmp_path / "out" / "overlays"
    assert sorted(out.split()) == sorted(str(overlays / name) for name in ("gray.avi", "ONE.mp4", "fast.mp4"))
    assert _video_info(overlays / "gray.avi") == (3, 10.0, (96, 64))
    assert _video_info(overlays / "ONE.mp4") == (1, 0.5, (96, 64))
    assert _video_info(overlays / "fast.mp4") == (2, 120.0, (96, 64))
    rows = (tmp_path / "out" / "areas.csv").read_text().splitlines()[1:]
    assert len({row.split(",")[0] for row in rows}) == 6  # a row set per frame
    assert "3 videos (6 frames) predicted" in err
    code, _, err = cli("predict", tmp_path / "in" / "ONE.MP4", "--ckpt", ckpt, "--out", tmp_path / "one")
    assert code == 0 and "0 images and 1 video (1 frame) predicted" in err, err  # was '(1 frames)'
