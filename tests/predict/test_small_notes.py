"""Small things a user reads on stdout and stderr: a video codec OpenCV swapped silently, inputs counted as earlier
outputs, input paths on stdout for --save areas, '1 images', a severity override with no note, and --overwrite's help.
Each was a line that said something else than what happened, or nothing."""

from __future__ import annotations

import re
import shutil

import cv2
import numpy as np
from predict_helpers import scene, write_images

NOTE = "holds files of kinds this run did not write"


def _write_video(path, frames: int = 2, height: int = 48, width: int = 64) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (width, height))
    assert writer.isOpened(), path
    for i in range(frames):
        writer.write(cv2.cvtColor(scene(height, width, i), cv2.COLOR_RGB2BGR))
    writer.release()


def test_a_codec_an_mp4_does_not_take_is_named_with_the_one_written(ckpt, cli, tmp_path):
    """video.codec=XVID for .mp4 overlays: OpenCV wrote mp4v, and its line saying so was kept off stderr with
    FFmpeg's. One segcli note (for all the run's mp4 overlays) names the FourCC written and how to ask for it."""
    for name in ("a.mp4", "b.mp4"):
        _write_video(tmp_path / name)
    code, out, err = cli("predict", tmp_path / "a.mp4", tmp_path / "b.mp4", "--ckpt", ckpt, "--out", tmp_path / "out",
                         "video.codec=XVID")
    assert code == 0, err
    notes = [line for line in err.splitlines() if "FourCC" in line]
    assert notes == [f"predict: note: OpenCV writes mp4 videos (video.codec=XVID) with the FourCC mp4v, as an mp4 file "
                     f"does not take XVID: {tmp_path / 'out' / 'overlays' / 'a.mp4'} is mp4v; set video.codec=mp4v "
                     "(the default for mp4) to ask for what is written"], err
    assert out.splitlines() == [str(tmp_path / "out" / "overlays" / f"{n}.mp4") for n in "ab"]
    code, out, err = cli("predict", tmp_path / "a.mp4", "--ckpt", ckpt, "--out", tmp_path / "out2", "video.codec=mp4v")
    assert code == 0 and "FourCC" not in err, err


def test_the_codec_note_stays_when_library_lines_are_shown(ckpt, cli, tmp_path, monkeypatch):
    """SEGCLI_DEBUG=1 shows OpenCV's own lines: its fallback line is shown, and segcli's note is still given."""
    monkeypatch.setenv("SEGCLI_DEBUG", "1")
    _write_video(tmp_path / "a.mp4")
    code, _, err = cli("predict", tmp_path / "a.mp4", "--ckpt", ckpt, "--out", tmp_path / "out", "video.codec=XVID")
    assert code == 0, err
    assert "fallback to use tag" in err and "predict: note: OpenCV writes mp4 videos (video.codec=XVID) with the " \
        "FourCC mp4v" in err, err


def test_inputs_in_out_are_not_counted_as_earlier_masks(ckpt, cli, tmp_path):
    """`predict imgs/ --out imgs/ --save areas`: a note said imgs held 'mask (2), left by an earlier run': the
    inputs themselves. A real earlier output there is still noted."""
    folder = tmp_path / "imgs"
    write_images(folder, 2)
    code, out, err = cli("predict", folder, "--ckpt", ckpt, "--out", folder, "--save", "areas")
    assert code == 0, err
    assert NOTE not in err and "mask (" not in err, err
    (folder / "probs").mkdir()
    np.savez(folder / "probs" / "img_000.npz", prob=np.zeros((4, 2, 2), np.uint8))
    code, out, err = cli("predict", folder, "--ckpt", ckpt, "--out", folder, "--save", "areas")
    assert code == 0, err
    assert NOTE in err and "for 1 of the 2 input(s) predicted now: prob (1)," in err and "mask (" not in err, err


def test_areas_alone_prints_the_table_not_the_inputs(ckpt, cli, tmp_path):
    """--save areas alone printed each input's own path on stdout, as if it were a result; --save mask prints the
    masks written. Now stdout is the path of areas.csv, once it is written (its shard's name with --shard)."""
    paths = write_images(tmp_path / "in", 2)
    code, out, err = cli("predict", tmp_path / "in", "--ckpt", ckpt, "--out", tmp_path / "out", "--save", "areas")
    assert code == 0, err
    assert out.splitlines() == [str(tmp_path / "out" / "areas.csv")]
    assert not any(str(path) in out for path in paths)
    code, out, err = cli("predict", tmp_path / "in", "--ckpt", ckpt, "--out", tmp_path / "out", "--save", "areas",
                         "--shard", "1/2")
    assert code == 0 and out.splitlines() == [str(tmp_path / "out" / "areas.shard-1-of-2.csv")], err
    code, out, err = cli("predict", tmp_path / "in", "--ckpt", ckpt, "--out", tmp_path / "out", "--save", "mask,areas")
    assert code == 0 and out.splitlines() == [str(tmp_path / "out" / f"{p.stem}.png") for p in paths], err


def test_counts_of_one_are_singular(ckpt, cli, tmp_path):
    """'verifying on 1 images', '0 failed of 1 inputs', '1 inputs already done'."""
    write_images(tmp_path / "in", 1)
    code, out, err = cli("export", "--ckpt", ckpt, "--verify-images", tmp_path / "in", "--out", tmp_path / "m.onnx")
    assert code == 0, err
    assert "export: verifying on 1 image from " in err, err
    for args in ((), ("--skip-existing",)):
        code, out, err = cli("predict", tmp_path / "in", "--ckpt", ckpt, "--out", tmp_path / "out", "--save", "mask",
                             *args)
        assert code == 0, err
        assert re.search(r"failed of 1 input in ", err), err
    assert "predict: 1 input already done in " in err, err
    assert not re.search(r"\b1 (images|inputs|frames)\b", err), err


def test_a_severity_override_without_corruptions_gets_the_note_of_severity(synthetic_data, cli, tmp_path):
    """--severity 5 without --corruptions was noted as ignored; severity=5 (the config key) was silently ignored."""
    preds = tmp_path / "preds"
    preds.mkdir()
    for mask in (synthetic_data / "masks" / "val").glob("*.png"):
        shutil.copy(mask, preds / mask.name)
    rest = ("applies to --corruptions, and none is given: it is ignored; add --corruptions LIST (or all) to evaluate "
            "under corruptions")
    for given, named in ((["--severity", "5"], "--severity 5"), (["severity=5"], "severity=5"),
                         (["severity=[1,5]"], "severity=[1,5]")):
        code, out, err = cli("eval", "--predictions", preds, "--data", synthetic_data, *given)
        assert code == 0, err
        assert [line for line in err.splitlines() if "severity" in line] == [f"eval: note: {named} {rest}"], err
    code, out, err = cli("eval", "--predictions", preds, "--data", synthetic_data)
    assert code == 0 and "severity" not in err, err


def test_prepare_overwrite_help_says_any_content_is_replaced(cli):
    """--help said --overwrite replaces OUT 'if it already holds a dataset'; it replaces any non-empty folder."""
    code, out, err = cli("prepare", "synthetic", "--help")
    assert code == 0, err
    text = " ".join(out.replace("│", " ").split())
    assert "if it already holds a dataset" not in text
    assert ("--overwrite Replace OUT even when it is not empty, whatever it holds (a dataset or not): its old contents "
            "are deleted once the new dataset is in place.") in text, text


def test_an_overlap_near_one_is_noted_with_its_cost(ckpt, cli, tmp_path):
    """inference.overlap=0.99 stepped 64-px windows by 1 px, with no word: a run that seemed to hang (about 4,096
    windows per pixel). A note names the step and the cost against 0.5; 0.9 and below say nothing."""
    write_images(tmp_path / "in", 1, 64, 64)  # one window: the test stays fast
    code, _, err = cli("predict", tmp_path / "in", "--ckpt", ckpt, "--out", tmp_path / "out", "inference=slide",
                       "inference.tile=[64,64]", "inference.overlap=0.99")
    assert code == 0, err
    notes = [line for line in err.splitlines() if "inference.overlap" in line]
    assert notes == ["predict: note: inference.overlap=0.99 steps the 64x64 windows by 1x1 px: in an image larger "
                     "than a window, each pixel is in about 4,096 windows, 1,024x the work of overlap 0.5 (0.5-0.75 "
                     "is usual)"], err
    code, _, err = cli("predict", tmp_path / "in", "--ckpt", ckpt, "--out", tmp_path / "out2", "inference=slide",
                       "inference.tile=[64,64]", "inference.overlap=0.9")
    assert code == 0 and "inference.overlap" not in err, err
