"""predict outputs: exact sizes for odd inputs, masks = the shared predictor's, areas, JSON lines, prob, uncertainty."""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
import pytest
from predict_helpers import CLASSES, scene, write_images


def _odd_inputs(folder: Path) -> dict[str, tuple[int, int]]:
    """Inputs of awkward kinds → the (H, W) their masks must have."""
    from PIL import Image

    folder.mkdir()
    rgb = scene(97, 131, 1)
    cv2.imwrite(str(folder / "rgb.jpg"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(folder / "gray.png"), rgb[..., 0])
    cv2.imwrite(str(folder / "rgba.png"), np.dstack([rgb, np.full(rgb.shape[:2], 128, np.uint8)]))
    cv2.imwrite(str(folder / "deep.png"), rgb.astype(np.uint16) * 257)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to display
    Image.fromarray(rgb).save(folder / "rotated.jpg", exif=exif.tobytes())
    return {"rgb": (97, 131), "gray": (97, 131), "rgba": (97, 131), "deep": (97, 131), "rotated": (131, 97)}


def test_odd_sizes_and_kinds_round_trip_exactly(ckpt, cli, tmp_path):
    from segcli.inference.backends import load_predictor
    from segcli.inference.io import read_image

    expected = _odd_inputs(tmp_path / "in")
    code, out, err = cli("predict", tmp_path / "in", "--ckpt", ckpt, "--out", tmp_path / "out", "workers=0")
    assert code == 0, err
    assert sorted(Path(line).name for line in out.split()) == sorted(f"{stem}.png" for stem in expected)
    predictor = load_predictor(ckpt, "cpu")
    for stem, shape in expected.items():
        mask = cv2.imread(str(tmp_path / "out" / f"{stem}.png"), cv2.IMREAD_UNCHANGED)
        assert mask.shape == shape and mask.dtype == np.uint8, stem
        source = next((tmp_path / "in").glob(f"{stem}.*"))
        assert np.array_equal(mask, predictor.predict([read_image(source)])[0]), stem  # the one inference path
        assert cv2.imread(str(tmp_path / "out" / "overlays" / f"{stem}.png")).shape == (*shape, 3)


def test_hidden_files_in_an_input_folder_are_not_inputs(ckpt, cli, tmp_path):
    """A folder copied from a Mac (._x.jpg resource forks beside each image) or used in Jupyter
    (.ipynb_checkpoints/): those are not images; they were 'unreadable' (exit 3) or predicted twice."""
    write_images(tmp_path / "in", 2, 40, 56)
    for image in sorted((tmp_path / "in").glob("*.png")):
        (tmp_path / "in" / f"._{image.name}").write_bytes(b"\x00\x05\x16\x07AppleDouble")
    write_images(tmp_path / "in" / ".ipynb_checkpoints", 1, 40, 56)
    code, out, err = cli("predict", tmp_path / "in", "--ckpt", ckpt, "--out", tmp_path / "out", "--save", "mask")
    assert code == 0, err
    assert sorted(Path(line).name for line in out.split()) == sorted(p.name for p in (tmp_path / "in").glob("[!.]*.png"))
    assert not (tmp_path / "out" / ".ipynb_checkpoints").exists()


def test_areas_csv_and_jsonl_fractions_sum_to_one(ckpt, cli, tmp_path):
    write_images(tmp_path / "in", 3, 50, 70)
    write_images(tmp_path / "in" / "sub", 2, 33, 45)
    code, out, err = cli("predict", tmp_path / "in", "--ckpt", ckpt, "--out", tmp_path / "out", "--save", "mask,areas",
                         "--jsonl")
    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert len(lines) == 5
    for line in lines:
        assert set(line["fractions"]) == set(CLASSES)
        assert sum(line["fractions"].values()) == pytest.approx(1.0)
        mask = cv2.imread(line["outputs"]["mask"], cv2.IMREAD_UNCHANGED)
        assert list(line["pixels"].values()) == np.bincount(mask.ravel(), minlength=len(CLASSES)).tolist()
        assert Path(line["input"]).is_file()
    assert (tmp_path / "out" / "sub" / "img_000.png").is_file()  # the output tree mirrors the input tree
    assert not (tmp_path / "out" / "overlays").exists()
    sums, rows = defaultdict(float), defaultdict(int)
    with open(tmp_path / "out" / "areas.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            sums[row["input"]] += float(row["fraction"])
            rows[row["input"]] += 1
    assert len(sums) == 5 and set(rows.values()) == {len(CLASSES)}
    assert all(s == pytest.approx(1.0, abs=1e-5) for s in sums.values())


def test_prob_and_uncertainty(ckpt, cli, tmp_path):
    write_images(tmp_path / "in", 4, 40, 52)
    code, out, err = cli("predict", tmp_path / "in", "--ckpt", ckpt, "--out", tmp_path / "out",
                         "--save", "mask,prob,uncertainty", "workers=0")
    assert code == 0, err
    for i in range(4):
        stored = np.load(tmp_path / "out" / "probs" / f"img_{i:03d}.npz")
        prob = stored["prob"]
        assert prob.dtype == np.uint8 and prob.shape == (len(CLASSES), 40, 52)
        assert list(stored["classes"]) == CLASSES
        assert np.all(np.abs(prob.astype(int).sum(0) - 255) <= len(CLASSES))  # quantised probabilities sum to ~1
        mask = cv2.imread(str(tmp_path / "out" / f"img_{i:03d}.png"), cv2.IMREAD_UNCHANGED)
        top = np.take_along_axis(prob, mask[None].astype(np.int64), 0)[0]
        assert np.all(top.astype(int) >= prob.max(0).astype(int) - 1)  # the mask is the argmax, up to quantisation
        entropy = cv2.imread(str(tmp_path / "out" / "uncertainty" / f"img_{i:03d}.png"), cv2.IMREAD_UNCHANGED)
        assert entropy.shape == (40, 52) and entropy.dtype == np.uint8
    with open(tmp_path / "out" / "uncertainty.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["rank"]) for r in rows] == [1, 2, 3, 4]
    scores = [float(r["score"]) for r in rows]
    assert scores == sorted(scores, reverse=True)  # least certain first: the review queue
    assert all(0.0 <= s <= 1.0 for s in scores)


def test_palette_png_keeps_ids(ckpt, cli, tmp_path):
    from PIL import Image

    write_images(tmp_path / "in", 2, 40, 52)
    assert cli("predict", tmp_path / "in", "--ckpt", ckpt, "--out", tmp_path / "plain", "--save", "mask")[0] == 0
    assert cli("predict", tmp_path / "in", "--ckpt", ckpt, "--out", tmp_path / "pal", "--save", "mask",
               "--palette-png")[0] == 0
    for i in range(2):
        with Image.open(tmp_path / "pal" / f"img_{i:03d}.png") as indexed:
            assert indexed.mode == "P"
            assert indexed.getpalette()[:6] == [0, 0, 0, 128, 64, 128]
            ids = np.asarray(indexed)
        assert np.array_equal(ids, cv2.imread(str(tmp_path / "plain" / f"img_{i:03d}.png"), cv2.IMREAD_UNCHANGED))


def test_legend_and_alpha(ckpt, cli, tmp_path):
    write_images(tmp_path / "in", 1, 120, 160)
    assert cli("predict", tmp_path / "in", "--ckpt", ckpt, "--out", tmp_path / "a", "--alpha", "0")[0] == 0
    assert cli("predict", tmp_path / "in", "--ckpt", ckpt, "--out", tmp_path / "b", "--alpha", "0", "--legend")[0] == 0
    image = scene(120, 160, 0)
    plain = cv2.cvtColor(cv2.imread(str(tmp_path / "a" / "overlays" / "img_000.png")), cv2.COLOR_BGR2RGB)
    assert np.abs(plain.astype(int) - image).max() <= 1  # alpha 0: the image itself
    legend = cv2.cvtColor(cv2.imread(str(tmp_path / "b" / "overlays" / "img_000.png")), cv2.COLOR_BGR2RGB)
    assert not np.array_equal(legend, plain)


def test_bad_options_are_usage_errors(ckpt, cli, tmp_path):
    write_images(tmp_path / "in", 1)
    for args, words in ((["--save", "mask,colour"], "colour"), (["--save", "masks"], "did you mean mask?"),
                        (["--shard", "4/4"], "I/N"),
                        (["--on-error", "maybe"], "--on-error maybe: choose skip or fail"),
                        (["--smooth", "1.5"], "--smooth"), (["--smooth", "1"], "below 1"),
                        (["smooth=abc"], "--smooth='abc'"), (["alpha=x"], "--alpha='x'"),  # were exit 4
                        (["--alpha", "1.5"], "overlay opacity"),
                        (["inference.batch_size=0"], "inference.batch_size=0"),  # was taken as 1
                        (["inference.batch_size=2.5"], "whole number"), (["workers=-1"], "workers=-1"),
                        (["--save", "overlay", "overlay=false"], "leaves nothing to write")):  # wrote masks
        code, out, err = cli("predict", tmp_path / "in", "--ckpt", ckpt, "--out", tmp_path / "out", *args)
        assert code == 2 and words in err and out == "", (args, err)


def test_a_multi_page_tiff_is_named(ckpt, cli, tmp_path):
    """OpenCV reads a TIFF stack as its first page: the other pages were left out without a word."""
    folder = tmp_path / "in"
    folder.mkdir()
    pages = [scene(40, 60, seed) for seed in range(3)]
    ok = cv2.imwritemulti(str(folder / "stack.tif"), [cv2.cvtColor(p, cv2.COLOR_RGB2BGR) for p in pages])
    assert ok and cv2.imcount(str(folder / "stack.tif")) == 3
    cv2.imwrite(str(folder / "single.tif"), pages[0])
    code, out, err = cli("predict", folder, "--ckpt", ckpt, "--out", tmp_path / "out")
    assert code == 0 and len(out.split()) == 2, err
    assert f"predict: note: {folder / 'stack.tif'} holds 3 pages; only the first is predicted;" in err
    assert "single.tif" not in err


def test_skip_existing_keeps_the_uncertainty_scores(ckpt, cli, tmp_path):
    """A run resumed with --skip-existing re-read a finished image's score from its 8-bit entropy map while the
    first run had scored the unrounded entropy: uncertainty.csv and --jsonl differed in the 5th-6th decimal
    (0.524454 then 0.524459), enough to reorder near-ties of the review queue."""
    write_images(tmp_path / "in", 4, 40, 52)
    args = ("predict", tmp_path / "in", "--ckpt", ckpt, "--save", "mask,uncertainty", "--jsonl", "workers=0")
    code, fresh, err = cli(*args, "--out", tmp_path / "fresh")
    assert code == 0, err
    code, _, err = cli(*args, "--out", tmp_path / "resumed")
    assert code == 0, err
    (tmp_path / "resumed" / "img_002.png").unlink()  # a run killed before its last image
    code, resumed, err = cli(*args, "--out", tmp_path / "resumed", "--skip-existing")
    assert code == 0, err

    def scores(stdout: str) -> dict:
        return {Path(row["input"]).name: (row["uncertainty"], row.get("skipped", False))
                for row in map(json.loads, stdout.splitlines())}

    before, after = scores(fresh), scores(resumed)
    assert sum(skipped for _, skipped in after.values()) == 3
    assert {k: v for k, (v, _) in after.items()} == {k: v for k, (v, _) in before.items()}
    assert ((tmp_path / "resumed" / "uncertainty.csv").read_text().replace("resumed", "fresh")
            == (tmp_path / "fresh" / "uncertainty.csv").read_text())
    for name, (score, _) in before.items():  # the score is the written map's mean
        stored = cv2.imread(str(tmp_path / "fresh" / "uncertainty" / name.replace(".jpg", ".png")), cv2.IMREAD_UNCHANGED)
        assert score == pytest.approx(stored.mean() / 255.0, abs=1e-12)


def test_an_animated_gif_is_named_with_how_to_predict_every_frame(ckpt, cli, tmp_path):
    """An animated GIF is read as its first frame, like a TIFF stack: the note says so and points to a video."""
    folder = tmp_path / "in"
    folder.mkdir()
    frames = [cv2.cvtColor(scene(40, 60, seed), cv2.COLOR_RGB2BGR) for seed in range(4)]
    assert cv2.imwritemulti(str(folder / "clip.gif"), frames) and cv2.imcount(str(folder / "clip.gif")) == 4
    cv2.imwrite(str(folder / "still.gif"), frames[0])
    code, out, err = cli("predict", folder, "--ckpt", ckpt, "--out", tmp_path / "out")
    assert code == 0 and len(out.split()) == 2, err
    assert (f"predict: note: {folder / 'clip.gif'} holds 4 frames; only the first is predicted; convert it to a "
            "video (e.g. mp4) to predict every frame") in err
    assert "still.gif" not in err


def test_two_inputs_whose_outputs_are_one_file_are_refused(ckpt, cli, tmp_path):
    """x.png's overlay and overlays/x.png's mask are both OUT/overlays/x.png, and with --frame-masks a video clip.mp4
    and an image clip/000000.png both write OUT/clip/000000.png: one overwrote the other without a word, while stdout
    and areas.csv named the file for both."""
    import shutil

    write_images(tmp_path / "in", 1)
    write_images(tmp_path / "in" / "overlays", 1, 32, 48)
    (tmp_path / "in" / "overlays" / "img_000.png").rename(tmp_path / "in" / "overlays" / "img_000.jpg")
    code, out, err = cli("predict", tmp_path / "in", "--ckpt", ckpt, "--out", tmp_path / "out")
    assert code == 2 and "would both write" in err and str(tmp_path / "out" / "overlays" / "img_000.png") in err, err
    assert not (tmp_path / "out").exists()
    code, out, err = cli("predict", tmp_path / "in", "--ckpt", ckpt, "--out", tmp_path / "out", "--save", "mask")
    assert code == 0, err  # masks alone do not meet
    shutil.rmtree(tmp_path / "in")
    (tmp_path / "in").mkdir()
    writer = cv2.VideoWriter(str(tmp_path / "in" / "clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 5.0, (48, 32))
    for _ in range(2):
        writer.write(np.zeros((32, 48, 3), np.uint8))
    writer.release()
    write_images(tmp_path / "in" / "clip", 1)
    (tmp_path / "in" / "clip" / "img_000.png").rename(tmp_path / "in" / "clip" / "000000.png")
    code, out, err = cli("predict", tmp_path / "in", "--ckpt", ckpt, "--out", tmp_path / "v", "--frame-masks")
    assert code == 2 and f"would both write {tmp_path / 'v' / 'clip' / '000000.png'}" in err, err
    assert not (tmp_path / "v").exists()
    code, out, err = cli("predict", tmp_path / "in", "--ckpt", ckpt, "--out", tmp_path / "v", "--save", "mask,overlay")
    assert code == 0, err  # without frame masks the video writes overlays/clip.avi only
    (tmp_path / "in" / "clip").rename(tmp_path / "in" / "uncertainty")  # an image uncertainty/000000.png …
    (tmp_path / "in" / "uncertainty" / "clip").mkdir()
    (tmp_path / "in" / "uncertainty" / "000000.png").rename(tmp_path / "in" / "uncertainty" / "clip" / "000000.png")
    code, out, err = cli("predict", tmp_path / "in", "--ckpt", ckpt, "--out", tmp_path / "u", "--frame-masks",
                         "--save", "mask,uncertainty")  # … whose mask is the video's frame 0 entropy map
    assert code == 2 and f"would both write {tmp_path / 'u' / 'uncertainty' / 'clip' / '000000.png'}" in err, err


def test_dotted_names_keep_every_dot(ckpt, cli, tmp_path):
    """frame.0001.png and frame.0002.png (an image sequence) were both to be written as OUT/frame.png and refused,
    and 2023.01.05.jpg was written as 2023.01.png: the outputs' suffix replaced the name's last dotted part, so eval
    --predictions (which looks for <stem>.png) could not find them either."""
    folder = tmp_path / "in"
    write_images(folder, 2)
    (folder / "img_000.png").rename(folder / "frame.0001.png")
    (folder / "img_001.png").rename(folder / "frame.0002.png")
    cv2.imwrite(str(folder / "2023.01.05.jpg"), scene(48, 64, 5)[..., ::-1])
    out = tmp_path / "out"
    code, stdout, err = cli("predict", folder, "--ckpt", ckpt, "--out", out, "--save", "mask,overlay,prob,uncertainty")
    assert code == 0, err
    names = ["2023.01.05", "frame.0001", "frame.0002"]
    assert stdout.split() == [str(out / f"{name}.png") for name in names]
    for kind, suffix in (("", ".png"), ("overlays", ".png"), ("probs", ".npz"), ("uncertainty", ".png")):
        assert sorted(p.name for p in (out / kind).glob(f"*{suffix}")) == [name + suffix for name in names], kind
    code, stdout, err = cli("predict", folder, "--ckpt", ckpt, "--out", out, "--save", "mask,overlay,prob,uncertainty",
                            "--skip-existing")
    assert code == 0 and "0 predicted, 3 skipped" in err, err


def test_a_video_and_an_image_of_one_name_are_both_predicted(ckpt, cli, tmp_path):
    """clip.avi and its thumbnail clip.png in one folder write clip.png + overlays/clip.png and overlays/clip.avi +
    clip/NNNNNN.png: nothing in common, yet the pair was refused (exit 2) as 'would both write clip.png'."""
    folder = tmp_path / "in"
    write_images(folder, 1)
    (folder / "img_000.png").rename(folder / "clip.png")
    writer = cv2.VideoWriter(str(folder / "clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 5.0, (48, 32))
    for _ in range(2):
        writer.write(np.zeros((32, 48, 3), np.uint8))
    writer.release()
    out = tmp_path / "out"
    code, stdout, err = cli("predict", folder, "--ckpt", ckpt, "--out", out, "--frame-masks", "--save", "mask,overlay,areas")
    assert code == 0, err
    assert stdout.split() == [str(out / "clip.png"), str(out / "overlays" / "clip.avi")]
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.*")) == [
        "areas.csv", "clip.png", "clip/000000.png", "clip/000001.png", "overlays/clip.avi", "overlays/clip.png"]
    with open(out / "areas.csv") as handle:
        inputs = {row["input"] for row in csv.DictReader(handle)}
    assert inputs == {str(folder / "clip.png"), f"{folder / 'clip.avi'}#000000", f"{folder / 'clip.avi'}#000001"}
    (folder / "clip.png").rename(folder / "clip.mp4")  # two videos of one name still meet (their frame masks)
    writer = cv2.VideoWriter(str(folder / "clip.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 5.0, (48, 32))
    writer.write(np.zeros((32, 48, 3), np.uint8))
    writer.release()
    code, stdout, err = cli("predict", folder, "--ckpt", ckpt, "--out", tmp_path / "two", "--frame-masks")
    assert code == 2 and "would both write their frame masks into" in err, err


def test_palette_png_beyond_256_classes_names_the_option(tmp_path):
    """A 300-class model with --palette-png: the error named the config key (palette_png), not the option typed."""
    from segcli.errors import ConfigError
    from segcli.inference.outputs import Outputs

    with pytest.raises(ConfigError, match=r"^--palette-png: an indexed PNG holds at most 256 classes, the model has "
                                          r"300; drop --palette-png"):
        Outputs(tmp_path, ("mask",), [f"c{i}" for i in range(300)], [[i % 256, 0, 0] for i in range(300)], 65535,
                palette_png=True)
