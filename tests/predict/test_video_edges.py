"""predict on videos at their edges: FFmpeg's and OpenCV's lines on stderr, odd sizes, images with a video's suffix."""

from __future__ import annotations

import os
import random
import subprocess
import sys

import cv2
import numpy as np
from predict_helpers import scene, subprocess_cli

HEIGHT, WIDTH = 64, 96


def _write_video(path, frames: int = 3, width: int = WIDTH, height: int = HEIGHT, fourcc: str = "mp4v",
                 api: int = cv2.CAP_ANY) -> None:
    writer = cv2.VideoWriter(str(path), api, cv2.VideoWriter_fourcc(*fourcc), 10.0, (width, height))
    assert writer.isOpened(), (path, fourcc)
    for i in range(frames):
        writer.write(cv2.cvtColor(scene(height, width, i), cv2.COLOR_RGB2BGR))
    writer.release()


def _video_info(path) -> tuple[int, tuple[int, int]]:
    """(frames read, (width, height)) of a video read back with OpenCV."""
    capture = cv2.VideoCapture(str(path))
    assert capture.isOpened(), path
    size = (int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    count = 0
    while capture.grab():
        count += 1
    capture.release()
    return count, size


def test_ffmpeg_and_opencv_lines_stay_off_stderr(ckpt, tmp_path, monkeypatch):
    """A truncated mp4 put FFmpeg's '[mov,mp4,m4a,... @ 0x55..] moov atom not found' beside segcli's own line about it,
    a damaged one a screen of '[mpeg4 @ ...] ac-tex damaged', and video.codec=XVID for an .mp4 OpenCV's 'OpenCV: FFMPEG:
    tag ... is not supported ... fallback to use tag'. Now stderr holds segcli's lines only; SEGCLI_DEBUG=1 lets the
    libraries' lines through, and no OPENCV_* setting is left in the environment."""
    whole = tmp_path / "whole.mp4"
    _write_video(whole, frames=10)
    data = whole.read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[:40])
    damaged = bytearray(data)
    rng = random.Random(1)
    for _ in range(300):
        damaged[rng.randrange(2000, len(damaged) - 3000)] = rng.randrange(256)
    (tmp_path / "damaged.mp4").write_bytes(bytes(damaged))
    args = ["predict", "cut.mp4", "damaged.mp4", "--ckpt", ckpt, "--out", "out", "video.codec=XVID"]
    proc = subprocess_cli(*args, cwd=tmp_path)
    assert proc.returncode == 3, proc.stderr
    lines = proc.stderr.splitlines()
    assert any("cut.mp4: OpenCV cannot open this video" in line for line in lines), proc.stderr
    assert (tmp_path / "out" / "overlays" / "damaged.mp4").is_file()
    assert lines and all(line.startswith(("segcli: ", "predict: ")) for line in lines), proc.stderr

    proc = subprocess.run([sys.executable, "-m", "segcli", *map(str, args[:-3]), "--out", "out2"], cwd=tmp_path,
                          env={**os.environ, "SEGCLI_DEBUG": "1"}, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 3 and "moov atom not found" in proc.stderr, proc.stderr

    from segcli.inference import video

    monkeypatch.setattr(video, "_ffmpeg_level_given", False)  # as in a process's first video open
    monkeypatch.delenv("OPENCV_FFMPEG_LOGLEVEL", raising=False)
    monkeypatch.delenv("SEGCLI_DEBUG", raising=False)
    before = dict(os.environ)
    with video.quiet():
        assert os.environ.get("OPENCV_FFMPEG_LOGLEVEL") == video.FFMPEG_QUIET  # what OpenCV reads at this open
        assert cv2.VideoCapture(str(tmp_path / "cut.mp4")).isOpened() is False
    assert dict(os.environ) == before  # nothing leaks into the processes segcli starts


def test_odd_sized_avi_overlay_keeps_its_size(ckpt, cli, tmp_path):
    """A 321×241 clip's overlay video came out 320×240 (OpenCV's FFmpeg writer takes even sizes only). An .avi overlay
    (MJPG) now keeps every row and column, written by OpenCV's own MJPEG writer; an .mp4 one still loses them, with the
    note; an even-sized .avi is written by FFmpeg as before."""
    width, height = 321, 241
    odd = tmp_path / "odd.avi"
    _write_video(odd, 2, width, height, fourcc="MJPG", api=cv2.CAP_OPENCV_MJPEG)  # OpenCV's MJPEG keeps odd sizes
    assert _video_info(odd) == (2, (width, height))
    (tmp_path / "oddmp4.mp4").write_bytes(odd.read_bytes())  # read by its content: an .mp4 overlay
    _write_video(tmp_path / "even.avi", 2, fourcc="MJPG")
    code, out, err = cli("predict", odd, tmp_path / "oddmp4.mp4", tmp_path / "even.avi", "--ckpt", ckpt,
                         "--out", tmp_path / "out", "--frame-masks")
    assert code == 0, err
    overlays = tmp_path / "out" / "overlays"
    assert _video_info(overlays / "odd.avi") == (2, (width, height))
    assert _video_info(overlays / "oddmp4.mp4") == (2, (width - 1, height - 1))
    assert _video_info(overlays / "even.avi") == (2, (WIDTH, HEIGHT))
    assert b"Lavf" in (overlays / "even.avi").read_bytes()  # FFmpeg's writer, as before, for even sizes
    assert f"odd.avi is {width}×{height}" not in err
    assert (f"oddmp4.mp4 is {width}×{height}; OpenCV writes mp4 videos (video.codec=mp4v) at even sizes, so its "
            f"overlay video is {width - 1}×{height - 1}") in err
    for name in ("odd", "oddmp4"):
        masks = sorted((tmp_path / "out" / name).glob("*.png"))
        assert [cv2.imread(str(m), cv2.IMREAD_UNCHANGED).shape for m in masks] == [(height, width)] * 2


def test_an_image_with_a_video_suffix_is_refused_and_real_videos_are_not(ckpt, cli, tmp_path):
    """A JPEG saved as photo.mp4 was predicted as a 1-frame video (an overlay 'video', exit 0). Now it is a bad input
    (exit 3) named with what it is and the fix, skipped and counted with --on-error skip; videos OpenCV writes in every
    container, a 1-frame one and a bare MJPEG stream (JPEGs one after another) are predicted as before."""
    folder = tmp_path / "in"
    folder.mkdir()
    image = cv2.cvtColor(scene(HEIGHT, WIDTH, 0), cv2.COLOR_RGB2BGR)
    assert cv2.imwrite(str(tmp_path / "photo.jpg"), image) and cv2.imwrite(str(tmp_path / "shot.png"), image)
    (folder / "photo.mp4").write_bytes((tmp_path / "photo.jpg").read_bytes())
    (folder / "shot.mov").write_bytes((tmp_path / "shot.png").read_bytes())
    videos = []
    for suffix, fourcc in ((".mp4", "mp4v"), (".mp4", "XVID"), (".avi", "MJPG"), (".avi", "XVID"), (".avi", "FFV1"),
                           (".mkv", "FFV1"), (".mkv", "MJPG"), (".mov", "mp4v"), (".m4v", "mp4v")):
        videos.append(folder / f"{fourcc}_{suffix[1:]}{suffix}")
        _write_video(videos[-1], 2, fourcc=fourcc)
    videos.append(folder / "single.mp4")
    _write_video(videos[-1], 1)
    videos.append(folder / "stream.avi")
    rng = np.random.default_rng(0)
    videos[-1].write_bytes(b"".join(cv2.imencode(".jpg", rng.integers(0, 255, (HEIGHT, WIDTH, 3), dtype=np.uint8))[1]
                                    .tobytes() for _ in range(3)))
    code, out, err = cli("predict", folder, "--ckpt", ckpt, "--out", tmp_path / "out", "--save", "overlay")
    assert code == 3, err
    assert f"{folder / 'photo.mp4'}: this is a JPEG image, not a video; rename it to photo.jpg" in err
    assert f"{folder / 'shot.mov'}: this is a PNG image, not a video; rename it to shot.png" in err
    assert f"2 failed of {len(videos) + 2} inputs" in err
    overlays = tmp_path / "out" / "overlays"
    assert sorted(out.split()) == sorted(str(overlays / (v.stem + (".avi" if v.suffix in (".avi", ".mkv") else ".mp4")))
                                         for v in videos)
    assert not (overlays / "photo.mp4").exists() and not (overlays / "shot.mp4").exists()

    code, out, err = cli("predict", folder / "photo.mp4", videos[0], "--ckpt", ckpt, "--out", tmp_path / "out2",
                         "--on-error", "fail")
    assert code == 3 and "photo.mp4: this is a JPEG image, not a video" in err and "on_error=fail: stopped" in err, err

    from segcli.inference.sources import image_format

    assert [image_format(v) for v in videos[:-1]] == [None] * (len(videos) - 1)  # no video is taken for an image


def test_a_video_and_its_conversion_of_one_name_are_predicted_side_by_side(ckpt, tmp_path):
    """clip.mp4 beside clip.avi was refused ('would both write the outputs named clip (overlay video, frame
    masks)'), though their overlays are overlays/clip.mp4 and overlays/clip.avi; only their frame masks meet."""
    folder = tmp_path / "clips"
    folder.mkdir()
    _write_video(folder / "clip.mp4", frames=2)
    _write_video(folder / "clip.avi", frames=3, fourcc="MJPG")
    proc = subprocess_cli("predict", folder, "--ckpt", ckpt, "--out", "out", "--save", "overlay,areas", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert [_video_info(tmp_path / "out" / "overlays" / name)[0] for name in ("clip.mp4", "clip.avi")] == [2, 3]
    proc = subprocess_cli("predict", folder, "--ckpt", ckpt, "--out", "out2", "--frame-masks", cwd=tmp_path)
    assert proc.returncode == 2 and not (tmp_path / "out2").exists(), proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        f"segcli: error: {folder / 'clip.mp4'} and {folder / 'clip.avi'} would both write their frame masks into "
        f"out2/clip; predict them into separate --out folders")


def test_a_listed_video_that_is_gone_is_named_as_a_missing_file(ckpt, tmp_path):
    """It was 'OpenCV cannot open this video (no frames, damaged, or an unsupported codec); … re-encode it'."""
    _write_video(tmp_path / "a.mp4", frames=2)
    (tmp_path / "list.txt").write_text("a.mp4\nmissing.mp4\n")
    proc = subprocess_cli("predict", "--list", "list.txt", "--ckpt", ckpt, "--out", "out", cwd=tmp_path)
    assert proc.returncode == 3, proc.stderr
    assert "segcli: warning: missing.mp4: cannot read file (No such file or directory); check the path and " \
           "permissions" in proc.stderr.splitlines(), proc.stderr


def test_the_note_on_an_earlier_runs_rows_counts_a_video_once(ckpt, tmp_path):
    """'held the rows of 3 input(s)': it counted the frames of one earlier video (rows clip.mp4#NNNNNN)."""
    _write_video(tmp_path / "a.mp4", frames=3)
    _write_video(tmp_path / "b.mp4", frames=2)
    assert subprocess_cli("predict", "a.mp4", "--ckpt", ckpt, "--out", "out", "--save", "areas",
                          cwd=tmp_path).returncode == 0
    proc = subprocess_cli("predict", "b.mp4", "--ckpt", ckpt, "--out", "out", "--save", "areas", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "held the rows of 1 input(s) of an earlier run" in proc.stderr, proc.stderr
