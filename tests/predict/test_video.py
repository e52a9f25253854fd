"""predict on videos: a playable overlay video, per-frame masks, EMA smoothing of class probabilities."""

from __future__ import annotations

import csv
import json

import cv2
import numpy as np
import pytest
from predict_helpers import scene

FRAMES, HEIGHT, WIDTH = 10, 64, 96


def _write_video(path, fourcc: str) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 10.0, (WIDTH, HEIGHT))
    assert writer.isOpened()
    for i in range(FRAMES):
        writer.write(cv2.cvtColor(scene(HEIGHT, WIDTH, i % 2), cv2.COLOR_RGB2BGR))  # flickers between two scenes
    writer.release()


def _count_frames(path) -> int:
    capture = cv2.VideoCapture(str(path))
    assert capture.isOpened(), path
    count = 0
    while capture.read()[0]:
        count += 1
    capture.release()
    return count


def _read_frames(path) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            return frames
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))


def test_video_gives_playable_overlay_video_and_frame_masks(ckpt, cli, tmp_path):
    for suffix, fourcc in ((".mp4", "mp4v"), (".avi", "MJPG")):
        clip = tmp_path / f"clip{suffix}"
        _write_video(clip, fourcc)
        code, out, err = cli("predict", clip, "--ckpt", ckpt, "--out", tmp_path / "out", "--frame-masks",
                             "--save", "mask,overlay,areas")
        assert code == 0, err
        video = tmp_path / "out" / "overlays" / f"clip{suffix}"
        assert out.split() == [str(video)]
        assert _count_frames(video) == FRAMES
        capture = cv2.VideoCapture(str(video))
        assert (capture.get(cv2.CAP_PROP_FRAME_WIDTH), capture.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (WIDTH, HEIGHT)
        masks = sorted((tmp_path / "out" / "clip").glob("*.png"))
        assert [m.name for m in masks] == [f"{i:06d}.png" for i in range(FRAMES)]
        assert cv2.imread(str(masks[0]), cv2.IMREAD_UNCHANGED).shape == (HEIGHT, WIDTH)
    assert not list((tmp_path / "out" / "overlays").glob(".*"))  # no temp files left


def test_smooth_is_an_ema_of_probabilities(ckpt, cli, tmp_path):
    import torch

    from segcli.inference.backends import load_predictor

    clip = tmp_path / "clip.avi"
    _write_video(clip, "MJPG")
    code, out, err = cli("predict", clip, "--ckpt", ckpt, "--out", tmp_path / "out", "--frame-masks", "--smooth", "0.7",
                         "--jsonl", "--save", "mask,overlay,areas")
    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert [line["input"] for line in lines] == [f"{clip}#{i:06d}" for i in range(FRAMES)]
    predictor = load_predictor(ckpt, "cpu")
    previous = None
    changed_smooth = changed_raw = 0
    last_smooth = last_raw = None
    for i, frame in enumerate(_read_frames(clip)):
        probs = torch.softmax(predictor.logits([frame]), 1)[0]
        raw = probs.argmax(0).numpy()
        previous = probs if previous is None else 0.7 * previous + 0.3 * probs
        expected = previous.argmax(0).numpy()
        mask = cv2.imread(str(tmp_path / "out" / "clip" / f"{i:06d}.png"), cv2.IMREAD_UNCHANGED)
        assert np.array_equal(mask, expected), i
        if last_smooth is not None:
            changed_smooth += int((mask != last_smooth).sum())
            changed_raw += int((raw != last_raw).sum())
        last_smooth, last_raw = mask, raw
    assert changed_smooth < changed_raw  # less flicker


def test_outputs_a_video_does_not_give_are_named(ckpt, cli, tmp_path):
    """--save prob,uncertainty and masks without --frame-masks gave nothing for a video, without a word."""
    clip = tmp_path / "clip.avi"
    _write_video(clip, "MJPG")
    code, out, err = cli("predict", clip, "--ckpt", ckpt, "--out", tmp_path / "out", "--save", "mask,prob,uncertainty")
    assert code == 0, err
    assert "videos give an overlay video; add --frame-masks for a mask PNG per frame" in err
    assert "--save prob applies to images only, not to videos" in err
    assert "video frames get their uncertainty score in uncertainty.csv; add --frame-masks for an entropy map" in err
    assert not (tmp_path / "out" / "clip").exists()  # what the note says: no frame masks
    code, out, err = cli("predict", clip, "--ckpt", ckpt, "--out", tmp_path / "out2", "--frame-masks")
    assert code == 0 and "note" not in err, err


def test_video_options_on_still_images_are_named(ckpt, cli, tmp_path):
    """--smooth 0.6 (and --frame-masks) on still images changed nothing, without a word: the masks were those of a
    run without it."""
    image = tmp_path / "still.png"
    assert cv2.imwrite(str(image), scene(HEIGHT, WIDTH, 0))
    code, out, err = cli("predict", image, "--ckpt", ckpt, "--out", tmp_path / "out", "--smooth", "0.6",
                         "--frame-masks")
    assert code == 0 and out.split() == [str(tmp_path / "out" / "still.png")], err
    assert ("predict: note: --smooth and --frame-masks apply to videos only, and no video is among the inputs: "
            "they are ignored") in err
    code, out, err = cli("predict", image, "--ckpt", ckpt, "--out", tmp_path / "out2", "--smooth", "0.6")
    assert code == 0 and "--smooth applies to videos only" in err, err
    code, out, err = cli("predict", image, "--ckpt", ckpt, "--out", tmp_path / "out3")
    assert code == 0 and "note" not in err, err


def test_videos_in_an_input_folder_are_predicted(ckpt, cli, tmp_path):
    """A folder of clips (and images): its videos were skipped without a word ('no images found' when it held only
    videos); they are inputs like named ones, mirrored under overlays/ by their relative path."""
    (tmp_path / "in" / "day2").mkdir(parents=True)
    _write_video(tmp_path / "in" / "day2" / "clip.mp4", "mp4v")
    cv2.imwrite(str(tmp_path / "in" / "still.png"), cv2.cvtColor(scene(HEIGHT, WIDTH, 0), cv2.COLOR_RGB2BGR))
    code, out, err = cli("predict", tmp_path / "in", "--ckpt", ckpt, "--out", tmp_path / "out", "--save", "overlay")
    assert code == 0, err
    video = tmp_path / "out" / "overlays" / "day2" / "clip.mp4"
    assert str(video) in out.split() and _count_frames(video) == FRAMES
    assert f"1 image and 1 video ({FRAMES} frames) predicted" in err and "of 2 inputs" in err
    (tmp_path / "in" / "still.png").unlink()
    code, out, err = cli("predict", tmp_path / "in", "--ckpt", ckpt, "--out", tmp_path / "out2", "--save", "overlay")
    assert code == 0 and (tmp_path / "out2" / "overlays" / "day2" / "clip.mp4").is_file(), err


def test_skip_existing_keeps_a_videos_rows_and_writes_frame_masks_asked_for_later(ckpt, cli, tmp_path):
    """A finished video was skipped without a record: a re-run with --skip-existing rewrote areas.csv without its
    frames, and one adding --frame-masks never wrote them. Now a video is skipped only when its outputs and counts
    are all there (its rows read back from the frame masks), else predicted again."""
    clip = tmp_path / "clip.mp4"
    _write_video(clip, "mp4v")
    args = ["predict", clip, "--ckpt", ckpt, "--out", tmp_path / "out", "--save", "overlay,areas"]
    assert cli(*args)[0] == 0
    first = (tmp_path / "out" / "areas.csv").read_text()
    assert len(first.splitlines()) == 1 + FRAMES * 4
    code, out, err = cli(*args, "--skip-existing")  # no frame masks to count from: predicted again
    assert code == 0, err
    assert (tmp_path / "out" / "areas.csv").read_text() == first
    code, out, err = cli(*args, "--skip-existing", "--frame-masks")  # frame masks asked for now: written
    assert code == 0, err
    assert len(list((tmp_path / "out" / "clip").glob("*.png"))) == FRAMES
    code, out, err = cli(*args, "--skip-existing", "--frame-masks", "--jsonl")  # all there: skipped, rows kept
    assert code == 0, err
    assert "0 predicted, 1 skipped" in err
    assert (tmp_path / "out" / "areas.csv").read_text() == first
    rows = [json.loads(line) for line in out.splitlines()]
    assert len(rows) == FRAMES and all(row["skipped"] and sum(row["pixels"].values()) == HEIGHT * WIDTH for row in rows)


def test_uncertainty_of_a_video_ranks_its_frames_and_survives_skip_existing(ckpt, cli, tmp_path):
    """--save uncertainty on a video wrote uncertainty.csv with its header only: frames got no score, while areas.csv
    has their rows. Now every frame is scored ('clip.mp4#NNNNNN', as in areas.csv), with an entropy map per frame
    under --frame-masks, and a resumed run reads the scores back from those maps."""
    clip = tmp_path / "clip.mp4"
    _write_video(clip, "mp4v")
    out = tmp_path / "out"
    code, stdout, err = cli("predict", clip, "--ckpt", ckpt, "--out", out, "--save", "uncertainty,areas")
    assert code == 0, err
    rows = list(csv.DictReader((out / "uncertainty.csv").open()))
    assert sorted(row["input"] for row in rows) == [f"{clip}#{i:06d}" for i in range(FRAMES)]
    assert [int(row["rank"]) for row in rows] == list(range(1, FRAMES + 1)) and all(row["map"] == "" for row in rows)
    scores = [float(row["score"]) for row in rows]
    assert scores == sorted(scores, reverse=True) and all(0 < s < 1 for s in scores)
    assert "add --frame-masks for an entropy map per frame" in err

    args = ["predict", clip, "--ckpt", ckpt, "--out", tmp_path / "maps", "--save", "uncertainty", "--frame-masks"]
    code, stdout, err = cli(*args, "--jsonl")
    assert code == 0 and "note" not in err, err
    lines = [json.loads(line) for line in stdout.splitlines()]
    maps = sorted((tmp_path / "maps" / "uncertainty" / "clip").glob("*.png"))
    assert [m.name for m in maps] == [f"{i:06d}.png" for i in range(FRAMES)]
    assert [line["outputs"]["uncertainty"] for line in lines] == [str(m) for m in maps]
    assert {line["input"]: line["uncertainty"] for line in lines} == pytest.approx(
        {row["input"]: float(row["score"]) for row in rows}, abs=1e-6)  # the same scores with or without the maps
    first = (tmp_path / "maps" / "uncertainty.csv").read_text()
    code, stdout, err = cli(*args, "--skip-existing")
    assert code == 0 and "0 predicted, 1 skipped" in err, err
    assert (tmp_path / "maps" / "uncertainty.csv").read_text() == first


def test_a_video_codec_that_is_no_fourcc_or_cannot_be_written_is_a_usage_error(ckpt, cli, tmp_path):
    """video.codec=abc was a TypeError (exit 4); a FourCC OpenCV cannot write counted the video as an unreadable
    input (exit 3, "could not be read")."""
    clip = tmp_path / "clip.mp4"
    _write_video(clip, "mp4v")
    for codec in ("abc", "12345"):
        code, out, err = cli("predict", clip, "--ckpt", ckpt, "--out", tmp_path / "out", f"video.codec={codec}")
        assert code == 2 and f"video.codec={codec}: a FourCC is 4 characters" in err, err
        assert "Traceback" not in err and not (tmp_path / "out").exists()
    code, out, err = cli("predict", clip, "--ckpt", ckpt, "--out", tmp_path / "out", "video.codec=H264")
    assert code == 2 and "OpenCV cannot write this video (video.codec=H264)" in err, err
    assert "could not be read" not in err and not (tmp_path / "out").exists()


def test_odd_sized_and_truncated_videos_are_named(ckpt, cli, tmp_path):
    """OpenCV's FFmpeg writer takes even sizes: a 101×77 clip's overlay video came out 100×76 without a word; a video
    cut short (its header announcing 20 frames, 10 readable) was predicted in part without a word."""
    rng = np.random.default_rng(0)
    odd = tmp_path / "odd.avi"  # a bare MJPEG stream: FFmpeg reads it at any size
    odd.write_bytes(b"".join(cv2.imencode(".jpg", rng.integers(0, 255, (77, 101, 3), dtype=np.uint8))[1].tobytes()
                             for _ in range(3)))
    code, out, err = cli("predict", odd, "--ckpt", ckpt, "--out", tmp_path / "out", "--frame-masks")
    assert code == 0, err
    assert "odd.avi is 101×77" not in err  # an .avi overlay keeps odd sizes (OpenCV's own MJPEG writer)
    overlay = cv2.VideoCapture(str(tmp_path / "out" / "overlays" / "odd.avi"))
    assert (int(overlay.get(cv2.CAP_PROP_FRAME_COUNT)), int(overlay.get(cv2.CAP_PROP_FRAME_WIDTH)),
            int(overlay.get(cv2.CAP_PROP_FRAME_HEIGHT))) == (3, 101, 77)
    overlay.release()
    assert cv2.imread(str(tmp_path / "out" / "odd" / "000000.png"), cv2.IMREAD_UNCHANGED).shape == (77, 101)
    whole = tmp_path / "whole.avi"
    writer = cv2.VideoWriter(str(whole), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (WIDTH, HEIGHT))
    for i in range(20):
        writer.write(scene(HEIGHT, WIDTH, i))
    writer.release()
    data = whole.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: len(data) // 2])
    code, out, err = cli("predict", whole, cut, "--ckpt", ckpt, "--out", tmp_path / "out2", "--save", "overlay,areas")
    assert code == 0, err
    assert "cut.avi: read " in err and "of the 20 frames its header announces" in err
    assert "whole.avi: read" not in err and "even sizes" not in err


def test_empty_and_frameless_videos_are_named(ckpt, cli, tmp_path):
    """A 0-byte mp4 and one a writer closed before its first frame were both 'corrupt or unsupported codec'."""
    empty, frameless = tmp_path / "empty.mp4", tmp_path / "frameless.mp4"
    empty.touch()
    cv2.VideoWriter(str(frameless), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (WIDTH, HEIGHT)).release()
    for clip, words in ((empty, "the file is empty (0 bytes)"), (frameless, "OpenCV cannot open this video (no frames, damaged")):
        code, out, err = cli("predict", clip, "--ckpt", ckpt, "--out", tmp_path / "out")
        assert code == 3 and f"{clip}: {words}" in err, err
        assert "Traceback" not in err and not (tmp_path / "out").exists()
