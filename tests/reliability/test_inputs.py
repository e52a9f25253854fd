"""Bad inputs: missing and empty folders, corrupt and truncated files, mismatched sizes, label values out
of range, binary 0/255 masks, and image encodings that must just work (RGBA, 16-bit, grayscale)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from helpers_cli import run_cli
from helpers_reliability import (assert_clean, error_line, files_under, folder_pairs, ids, noise, only_error,
                                 write_image)


# ----------------------------------------------------------------------------- missing / empty inputs
@pytest.mark.parametrize("which", ["images", "masks"])
@pytest.mark.parametrize("state", ["missing", "empty"])
def test_prepare_folder_without_inputs(cli, tmp_path, which, state):
    images, masks = folder_pairs(tmp_path / "src", {"a": ids()})
    bad = tmp_path / "src" / f"other_{which}"
    if state == "empty":
        bad.mkdir()
    paths = {"images": images, "masks": masks, which: bad}
    code, out, err = cli("prepare", "folder", "--images", paths["images"], "--masks", paths["masks"],
                         "--out", tmp_path / "out" / "ds", "--classes", "a,b")
    only_error(code, err, 3, bad)
    assert out == ""
    assert not (tmp_path / "out").exists()


def test_train_on_empty_dataset_dir(cli, tmp_path, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.chdir(tmp_path)
    code, _, err = cli("train", f"data.root={empty}", "--run-dir", tmp_path / "run")
    only_error(code, err, 3, empty / "dataset.yaml")
    assert not (tmp_path / "run").exists() and not (tmp_path / "runs").exists()


def test_train_failing_on_a_damaged_image_leaves_no_run_dir(dataset_copy, tmp_path):
    """A training image truncated after prepare fails inside fit (exit 3, naming it); the run directory the
    command made held only config.yaml and hparams.yaml, and is removed, with the runs/train/ it made. A folder
    the user made stays. (Subprocesses: Lightning's log handler keeps the stderr of the test that imported it.)"""
    victim = sorted((dataset_copy / "images" / "train").iterdir())[0]
    victim.write_bytes(victim.read_bytes()[:100])
    args = ["train", f"data.root={dataset_copy}", "trainer.max_epochs=1"]
    for extra in (["--run-dir", tmp_path / "run"], []):
        proc = run_cli(*args, *extra, cwd=tmp_path)
        error_line(proc.returncode, proc.stderr, 3, victim)
        assert not (tmp_path / "run").exists() and not (tmp_path / "runs").exists()
    (tmp_path / "mine").mkdir()
    proc = run_cli(*args, "--run-dir", tmp_path / "mine", cwd=tmp_path)
    error_line(proc.returncode, proc.stderr, 3, victim)
    assert (tmp_path / "mine").is_dir()


@pytest.mark.parametrize("split", ["val", "train"])
def test_train_with_an_emptied_split_names_the_setting_that_fixes_it(dataset_copy, tmp_path, split):
    """A card whose split lists no pairs (edited by hand, or every pair removed): exit 3 naming the split and the
    data.*_split setting (it said 'is empty for the selected fold' without a fold or a fix); no run dir left."""
    import yaml

    card = dataset_copy / "dataset.yaml"
    raw = yaml.safe_load(card.read_text())
    raw["splits"][split] = []
    card.write_text(yaml.safe_dump(raw, sort_keys=False))
    proc = run_cli("train", f"data.root={dataset_copy}", "trainer.max_epochs=1", "--run-dir", tmp_path / "run",
                   cwd=tmp_path)
    line = error_line(proc.returncode, proc.stderr, 3, card)
    assert f"split '{split}' (data.{split}_split) has no pairs" in line
    assert ("data.val_split=null" if split == "val" else "data.train_split=NAME") in line
    assert not (tmp_path / "run").exists()


def test_eval_on_empty_dataset_dir(cli, model_ckpt, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = cli("eval", "--ckpt", model_ckpt, "--data", empty, "--out", tmp_path / "report")
    only_error(code, err, 3, empty / "dataset.yaml")
    assert not (tmp_path / "report").exists()


@pytest.mark.parametrize("state", ["missing", "empty"])
def test_predict_without_inputs(cli, model_ckpt, tmp_path, state):
    folder = tmp_path / "in"
    if state == "empty":
        folder.mkdir()
    code, out, err = cli("predict", folder, "--ckpt", model_ckpt, "--out", tmp_path / "out")
    only_error(code, err, 3, folder)
    assert out == "" and not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- corrupt / truncated files
def _truncate(path: Path) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _garbage(path: Path) -> Path:
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)  # PNG magic, then nonsense
    return path


@pytest.mark.parametrize("damage", [_truncate, _garbage], ids=["truncated", "corrupt"])
@pytest.mark.parametrize("which", ["images", "masks"])
def test_prepare_lints_damaged_files(cli, tmp_path, which, damage):
    images, masks = folder_pairs(tmp_path / "src", {f"p{i}": ids(seed=i) for i in range(4)})
    bad = damage((images if which == "images" else masks) / "p1.png")
    out = tmp_path / "ds"
    code, stdout, err = cli("prepare", "folder", "--images", images, "--masks", masks, "--out", out,
                            "--classes", "a,b", "--val-fraction", "0.25")
    line = error_line(code, err, 1, bad)
    assert ("truncated" in line or "not a readable" in line) and str(out / "lint.json") in line
    assert stdout.strip() == str(out.resolve() / "lint.json")
    assert [p.name for p in files_under(out)] == ["lint.json"]  # the report only: no half-written dataset
    assert_clean(tmp_path)


@pytest.mark.parametrize("damage", [_truncate, _garbage], ids=["truncated", "corrupt"])
@pytest.mark.parametrize("which", ["image", "mask"])
def test_eval_on_damaged_files(cli, model_ckpt, dataset_copy, tmp_path, which, damage):
    from segcli.data.card import load_card

    image, mask = load_card(dataset_copy).pairs("val")[0]
    bad = damage(image if which == "image" else mask)
    code, out, err = cli("eval", "--ckpt", model_ckpt, "--data", dataset_copy, "--out", tmp_path / "report")
    only_error(code, err, 3, bad)
    assert out == "" and not (tmp_path / "report").exists()


@pytest.mark.parametrize("damage", [_truncate, _garbage], ids=["truncated", "corrupt"])
def test_predict_damaged_image_is_reported_and_the_rest_predicted(cli, model_ckpt, tmp_path, damage):
    folder = tmp_path / "in"
    for i in range(3):
        write_image(folder / f"img{i}.png", noise(40, 56, seed=i))
    bad = damage(folder / "img1.png")
    code, out, err = cli("predict", folder, "--ckpt", model_ckpt, "--out", tmp_path / "out", "--save", "mask")
    line = error_line(code, err, 3, bad)
    assert "1 of 3 inputs" in line
    assert sorted(p.name for p in files_under(tmp_path / "out")) == ["img0.png", "img2.png"]
    assert len(out.split()) == 2
    assert_clean(tmp_path / "out")


# ----------------------------------------------------------------------------- sizes and values
def test_prepare_size_mismatch(cli, tmp_path):
    masks = {f"p{i}": ids(seed=i) for i in range(4)}
    images, mask_dir = folder_pairs(tmp_path / "src", masks, images={"p2": noise(30, 32)})
    out = tmp_path / "ds"
    code, _, err = cli("prepare", "folder", "--images", images, "--masks", mask_dir, "--out", out, "--classes", "a,b")
    line = error_line(code, err, 1, mask_dir / "p2.png")
    assert "32x32" in line and "32x30" in line
    assert [p.name for p in files_under(out)] == ["lint.json"]


def test_eval_size_mismatch(cli, model_ckpt, dataset_copy, tmp_path):
    from segcli.data.card import load_card

    image, mask = load_card(dataset_copy).pairs("val")[0]
    write_image(mask, np.zeros((20, 20), np.uint8))
    code, _, err = cli("eval", "--ckpt", model_ckpt, "--data", dataset_copy, "--out", tmp_path / "report")
    only_error(code, err, 3, mask, image)
    assert not (tmp_path / "report").exists()


def test_prepare_label_out_of_range(cli, tmp_path):
    masks = {f"p{i}": ids(seed=i) for i in range(4)}
    masks["p3"][0, 0] = 7
    images, mask_dir = folder_pairs(tmp_path / "src", masks)
    out = tmp_path / "ds"
    code, _, err = cli("prepare", "folder", "--images", images, "--masks", mask_dir, "--out", out, "--classes", "a,b")
    line = error_line(code, err, 1, mask_dir / "p3.png")
    assert "7 are neither class ids" in line and "0..1" in line
    assert [p.name for p in files_under(out)] == ["lint.json"]


def test_train_label_out_of_range(dataset_copy, tmp_path):
    """A training mask given a value outside the classes after prepare linted it: "internal error: IndexError:
    Target 9 is out of bounds" (exit 4) from the loss; now a data error naming the mask and the value."""
    from segcli.data.card import load_card
    from segcli.inference.io import read_mask

    card = load_card(dataset_copy)
    mask = card.pairs("train")[0][1]
    bad = read_mask(mask).copy()
    bad[:4, :4] = card.num_classes + 3
    write_image(mask, bad)
    proc = run_cli("train", f"data.root={dataset_copy}", "trainer.max_epochs=1", "--run-dir", tmp_path / "run",
                   cwd=tmp_path)
    line = error_line(proc.returncode, proc.stderr, 3, mask)
    assert str(card.num_classes + 3) in line
    assert not (tmp_path / "run").exists()


def test_eval_label_out_of_range(cli, model_ckpt, dataset_copy, tmp_path):
    from segcli.data.card import load_card

    card = load_card(dataset_copy)
    image, mask = card.pairs("val")[0]
    from segcli.inference.io import read_mask

    bad = read_mask(mask).copy()
    bad[0, 0] = card.num_classes + 3  # neither a class id nor the ignore index
    write_image(mask, bad)
    code, _, err = cli("eval", "--ckpt", model_ckpt, "--data", dataset_copy, "--out", tmp_path / "report")
    line = only_error(code, err, 3, mask)
    assert str(card.num_classes + 3) in line
    assert not (tmp_path / "report").exists()


def test_binary_masks_need_a_decision(cli, tmp_path):
    """0/255 masks: prepare refuses to guess (255 = ignore would drop the foreground); --remap 255=1 works."""
    masks = {f"p{i}": (ids(seed=i) * 255).astype(np.uint8) for i in range(4)}
    images, mask_dir = folder_pairs(tmp_path / "src", masks)
    out = tmp_path / "ds"
    code, _, err = cli("prepare", "folder", "--images", images, "--masks", mask_dir, "--out", out,
                       "--classes", "background,object", "--val-fraction", "0.25")
    line = error_line(code, err, 1, mask_dir)
    assert "only 0 and 255" in line and "--remap 255=1" in line
    code, out_text, err = cli("prepare", "folder", "--images", images, "--masks", mask_dir, "--out", out,
                              "--classes", "background,object", "--val-fraction", "0.25", "--remap", "255=1")
    assert code == 0, err
    from segcli.inference.io import read_mask

    written = [read_mask(p) for p in files_under(out / "masks")]
    assert len(written) == 4 and all(set(np.unique(m)) == {0, 1} for m in written)
    assert_clean(tmp_path)


# ----------------------------------------------------------------------------- encodings that must work
ENCODINGS = {
    "rgba": lambda: noise(40, 56, 4, seed=1),
    "16bit": lambda: noise(40, 56, 3, seed=2, dtype=np.uint16),
    "grey": lambda: noise(40, 56, 1, seed=3),
    "grey16": lambda: noise(40, 56, 1, seed=4, dtype=np.uint16),
}


def test_predict_rgba_16bit_and_grey_images(cli, model_ckpt, tmp_path):
    from segcli.inference.io import read_image, read_mask

    folder = tmp_path / "in"
    for name, make in ENCODINGS.items():
        write_image(folder / f"{name}.png", make())
    code, out, err = cli("predict", folder, "--ckpt", model_ckpt, "--out", tmp_path / "out")
    assert code == 0, err
    assert len(out.split()) == len(ENCODINGS)
    for name in ENCODINGS:
        mask = read_mask(tmp_path / "out" / f"{name}.png")
        assert mask.shape == (40, 56)
        assert read_image(tmp_path / "out" / "overlays" / f"{name}.png").shape == (40, 56, 3)
    assert_clean(tmp_path / "out")


def test_prepare_and_train_read_rgba_16bit_and_grey_images(cli, tmp_path):
    """prepare keeps the files as they are, and the dataset reads them as (H, W, 3) uint8 RGB."""
    from segcli.data.card import load_card
    from segcli.inference.io import read_image

    masks = {name: ids(40, 56, seed=i) for i, name in enumerate(ENCODINGS)}
    images, mask_dir = folder_pairs(tmp_path / "src", masks, images={k: make() for k, make in ENCODINGS.items()})
    out = tmp_path / "ds"
    code, _, err = cli("prepare", "folder", "--images", images, "--masks", mask_dir, "--out", out,
                       "--classes", "a,b", "--val-fraction", "0.25")
    assert code == 0, err
    card = load_card(out)
    pairs = card.pairs("train") + card.pairs("val")
    assert len(pairs) == len(ENCODINGS)
    for image, _ in pairs:
        array = read_image(image)
        assert array.shape == (40, 56, 3) and array.dtype == np.uint8
    mean = card.stats["mean"]
    assert len(mean) == 3 and all(0 <= v <= 1 for v in mean)


def test_predict_reads_a_floating_point_image_in_0_to_1_like_its_8_bit_twin(cli, model_ckpt, tmp_path):
    """A float32 TIFF with values in 0..1 (how numpy/scikit-image pipelines save images) is the 8-bit image
    divided by 255: a model trained on 8-bit images predicts the same mask for both (it was clipped to black)."""
    import cv2

    from segcli.inference.io import read_mask

    rgb = noise(40, 56, 3, seed=3)
    folder = tmp_path / "in"
    write_image(folder / "eight.png", rgb)
    assert cv2.imwrite(str(folder / "float.tif"), (rgb / np.float32(255)).astype(np.float32))
    code, out, err = cli("predict", folder, "--ckpt", model_ckpt, "--out", tmp_path / "out")
    assert code == 0, err
    assert np.array_equal(read_mask(tmp_path / "out" / "float.png"), read_mask(tmp_path / "out" / "eight.png"))


def test_folders_behind_symlinks_are_walked_once_and_loops_end(cli, model_ckpt, tmp_path):
    """A sub-folder that is a symlink (images kept on another disk) is predicted like a real one; a link back up
    the tree does not loop."""
    elsewhere = tmp_path / "elsewhere"
    for name in ("b", "c"):
        write_image(elsewhere / f"{name}.png", noise(40, 56, 3, seed=len(name)))
    folder = tmp_path / "in"
    write_image(folder / "sub" / "a.png", noise(40, 56, 3, seed=1))
    (folder / "linked").symlink_to(elsewhere, target_is_directory=True)
    (folder / "sub" / "loop").symlink_to(folder, target_is_directory=True)
    code, out, err = cli("predict", folder, "--ckpt", model_ckpt, "--out", tmp_path / "out")
    assert code == 0, err
    assert sorted(Path(line).name for line in out.split()) == ["a.png", "b.png", "c.png"]
    assert (tmp_path / "out" / "linked" / "b.png").is_file() and (tmp_path / "out" / "sub" / "a.png").is_file()


def test_a_symbolic_link_to_nothing_is_named_as_one(cli, model_ckpt, tmp_path):
    """An image that is a link in a loop, or a mask that is a link to a removed file: prepare said "no image with
    stem 'x4'" / "no mask with stem 'x4'" while `ls` showed both, and predict left such an input out without a word
    (exit 0). Now the link is read and named, with the fix."""
    images, masks = folder_pairs(tmp_path / "d", {f"x{i}": ids(seed=i) for i in range(5)})
    (images / "x4.png").unlink()
    (images / "x4.png").symlink_to("x4.png")  # a loop
    (masks / "x3.png").unlink()
    (masks / "x3.png").symlink_to("gone.png")
    code, out, err = cli("prepare", "folder", "--images", images, "--masks", masks, "--classes", "a,b",
                         "--out", tmp_path / "out")
    assert code == 1 and "a symbolic link" in err, err
    assert not (tmp_path / "out" / "dataset.yaml").exists()
    findings = {f["file"]: (f["kind"], f["detail"]) for f in json.loads((tmp_path / "out" / "lint.json").read_text())[
        "findings"]}
    assert findings == {
        str(images / "x4.png"): ("unreadable", "a symbolic link in a loop (it leads back to itself); point it at the "
                                               "file, or remove it"),
        str(masks / "x3.png"): ("unreadable", "a symbolic link to gone.png, which does not exist; point it at the "
                                              "file, or remove it")}
    folder = tmp_path / "in"
    write_image(folder / "a.png", noise(32, 32, 3, seed=1))
    (folder / "b.png").symlink_to("nowhere.png")
    code, out, err = cli("predict", folder, "--ckpt", model_ckpt, "--out", tmp_path / "pred")
    assert code == 3 and "b.png: a symbolic link to nowhere.png, which does not exist" in err, err
    assert [Path(line).name for line in out.split()] == ["a.png"]


def test_a_folder_that_cannot_be_listed_is_named_not_skipped(cli, model_ckpt, tmp_path, monkeypatch):
    """A sub-folder without read permission (another user's, a mount gone stale) was skipped without a word:
    prepare made a dataset of the other pairs (exit 0), predict predicted the rest (exit 0). It stops at once, exit 3,
    naming the folder. (Simulated, as root reads any folder: listing `locked` fails as chmod 000 makes it.)"""
    import errno
    import os

    listing = os.scandir

    def scandir(path="."):
        if os.path.basename(os.fspath(path)) == "locked":
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fspath(path))
        return listing(path)

    images, masks = folder_pairs(tmp_path / "d", {f"x{i}": ids(seed=i) for i in range(4)})
    for folder, kind in ((images, "image"), (masks, "mask")):
        (folder / "locked").mkdir()
        write_image(folder / "locked" / "y.png", ids(seed=9) if kind == "mask" else noise(32, 32, 3, seed=9))
    monkeypatch.setattr(os, "scandir", scandir)
    code, _, err = cli("prepare", "folder", "--images", images, "--masks", masks, "--classes", "a,b",
                       "--out", tmp_path / "out")
    assert code == 3 and f"{images / 'locked'}: cannot list this folder (Permission denied)" in err, err
    assert not (tmp_path / "out" / "dataset.yaml").exists()
    code, out, err = cli("predict", images, "--ckpt", model_ckpt, "--out", tmp_path / "pred")
    assert code == 3 and f"{images / 'locked'}: cannot list this folder" in err and out == "", err
