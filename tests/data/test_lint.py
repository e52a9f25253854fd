"""A crafted bad dataset yields every lint finding, exit 1 and nothing written; --keep-going and --strict."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers_data import blocks, kinds, random_image, read_lint, write_grey, write_image
from PIL import Image

from segcli.data.lint import KINDS

GOOD = ["good_0", "good_1", "good_2", "good_3"]
BAD = {  # stem → the finding its pair must produce
    "trunc_img": "unreadable", "trunc_mask": "unreadable", "size": "size_mismatch", "exif": "size_mismatch",
    "range": "out_of_range", "binary": "binary_mask", "lossy": "lossy_mask", "rgb": "rgb_mask",
}
WARNED = {"grey3": "rgb_mask", "stack": "multi_page"}  # stem → the warning its pair must produce (the pair is kept)


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 40])


@pytest.fixture
def bad_folder(tmp_path, rng):
    """images/ + masks/ + split lists holding one instance of every problem the lint knows."""
    images, masks = tmp_path / "images", tmp_path / "masks"
    ids = lambda: blocks(rng, 20, 30, [0, 1, 2], block=5).astype(np.uint8)  # noqa: E731
    for stem in GOOD:
        write_image(images / f"{stem}.png", random_image(rng, 20, 30))
        write_grey(masks / f"{stem}.png", ids())
    write_image(images / "trunc_img.jpg", random_image(rng, 20, 30))
    _truncate(images / "trunc_img.jpg")
    write_grey(masks / "trunc_img.png", ids())
    write_image(images / "trunc_mask.png", random_image(rng, 20, 30))
    write_grey(masks / "trunc_mask.png", ids())
    _truncate(masks / "trunc_mask.png")
    write_image(images / "size.png", random_image(rng, 20, 30))
    write_grey(masks / "size.png", ids()[:, :28])
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° on display: the image is 30x20 once oriented, its mask 20x30
    Image.fromarray(random_image(rng, 20, 30)).save(images / "exif.jpg", exif=exif.tobytes())
    write_grey(masks / "exif.png", ids())
    write_image(images / "range.png", random_image(rng, 20, 30))
    write_grey(masks / "range.png", np.where(ids() == 2, 7, ids()).astype(np.uint8))
    write_image(images / "binary.png", random_image(rng, 20, 30))
    write_grey(masks / "binary.png", (ids() > 0).astype(np.uint8) * 255)
    write_image(images / "lossy.png", random_image(rng, 20, 30))
    write_grey(masks / "lossy.jpg", ids())
    write_image(images / "rgb.png", random_image(rng, 20, 30))
    write_image(masks / "rgb.png", np.stack([ids() * 60, ids() * 20, ids()], -1).astype(np.uint8))
    pages = [random_image(rng, 20, 30) for _ in range(3)]  # a 3-page TIFF stack: only the first page is read
    assert cv2.imwritemulti(str(images / "stack.tif"), pages)
    write_grey(masks / "stack.png", ids())
    write_image(images / "grey3.png", random_image(rng, 20, 30))  # a warning only: 3 identical channels
    write_image(masks / "grey3.png", np.repeat(ids()[..., None], 3, -1))
    write_image(images / "nomask.png", random_image(rng, 20, 30))  # missing_mask
    write_grey(masks / "noimage.png", ids())  # missing_image
    write_image(images / "dup.png", random_image(rng, 20, 30))  # duplicate_stem: dup.png and dup.jpg
    write_image(images / "dup.jpg", random_image(rng, 20, 30))
    write_grey(masks / "dup.png", ids())
    write_image(images / "unlisted.png", random_image(rng, 20, 30))  # unassigned (warning)
    write_grey(masks / "unlisted.png", ids())
    lists = tmp_path / "lists"
    lists.mkdir()
    listed = GOOD[:3] + list(BAD) + list(WARNED) + ["ghost"]  # ghost: split_entry
    (lists / "train.txt").write_text("\n".join(listed) + "\n")
    (lists / "val.txt").write_text("good_3\ngood_0\n")  # good_0 in two splits: split_overlap
    (lists / "test.txt").write_text("# nothing\n")  # empty_split
    return tmp_path


def _args(root: Path, out: Path, *extra: str, test_list: bool = True) -> list:
    args = ["prepare", "folder", "--images", root / "images", "--masks", root / "masks", "--out", out,
            "--classes", "a,b,c,d", "--split-file", f"train={root / 'lists/train.txt'}",
            "--split-file", f"val={root / 'lists/val.txt'}"]
    if test_list:
        args += ["--split-file", f"test={root / 'lists/test.txt'}"]
    return args + list(extra)


def test_every_finding_exit_1_and_nothing_written(bad_folder, run_cli):
    out = bad_folder / "out"
    code, stdout, stderr = run_cli(*_args(bad_folder, out))
    assert code == 1
    assert stdout.strip() == str(out / "lint.json")
    assert sorted(p.name for p in out.iterdir()) == ["lint.json"]  # nothing of the canonical layout
    assert not list(bad_folder.glob(".out.partial-*"))
    report = read_lint(out / "lint.json")
    assert not report["passed"] and report["errors"] > 0
    expected_errors = {"unreadable", "size_mismatch", "out_of_range", "binary_mask", "lossy_mask", "rgb_mask",
                       "missing_mask", "missing_image", "duplicate_stem", "split_entry", "split_overlap", "empty_split"}
    assert expected_errors <= kinds(report, "error")
    assert {"rgb_mask", "unassigned", "class_missing"} <= kinds(report, "warning")
    assert kinds(report) <= set(KINDS) and set(KINDS) - kinds(report) == {"unknown_colour", "group_leak", "image_depth",
                                                                       "single_class", "mask_alpha",
                                                                       "mask_orientation", "no_data_value",
                                                                       "stale_card"}  # alone
    by_stem = {}
    for f in report["findings"]:
        by_stem.setdefault(f["stem"], set()).add(f["kind"])
    for stem, kind in {**BAD, **WARNED}.items():
        assert kind in by_stem[stem], (stem, by_stem.get(stem))
    assert all(set(f) == {"severity", "kind", "file", "detail", "split", "stem"} for f in report["findings"])
    exif = next(f for f in report["findings"] if f["stem"] == "exif")
    assert "EXIF" in exif["detail"]
    missing = next(f for f in report["findings"] if f["kind"] == "class_missing" and f["split"] == "train")
    assert "3 d" in missing["detail"]
    assert "lint:" in stderr and "error" in stderr and "binary_mask" in stderr  # the summary table
    assert "segcli: error: lint:" in stderr and "--keep-going" in stderr


def test_keep_going_still_fails_on_split_level_errors(bad_folder, run_cli):
    out = bad_folder / "out"
    code, _, _ = run_cli(*_args(bad_folder, out, "--keep-going"))
    assert code == 1 and not (out / "dataset.yaml").exists()
    assert "empty_split" in kinds(read_lint(out / "lint.json"), "error")


def test_keep_going_drops_bad_pairs_and_says_so(bad_folder, run_cli):
    out = bad_folder / "out"
    code, stdout, stderr = run_cli(*_args(bad_folder, out, "--keep-going", test_list=False))
    assert code == 0 and stdout.strip() == str(out / "dataset.yaml")
    report = read_lint(out / "lint.json")
    left_out = {"nomask", "noimage", "dup", "good_0"}  # by the source: no mask, no image, two images, two lists
    assert report["passed"] and {d["stem"] for d in report["dropped"]} == set(BAD) | left_out
    assert "dropped 13 pair(s)" in stderr  # good_0 from both lists that name it
    import yaml

    card = yaml.safe_load((out / "dataset.yaml").read_text())
    assert sorted(Path(e["image"]).stem for e in card["splits"]["train"]) == ["good_1", "good_2", "grey3", "stack"]
    assert [Path(e["image"]).stem for e in card["splits"]["val"]] == ["good_3"]


def test_strict_makes_warnings_fail(bad_folder, run_cli):
    out = bad_folder / "out"
    code, _, stderr = run_cli(*_args(bad_folder, out, "--keep-going", "--strict", test_list=False))
    assert code == 1 and not (out / "dataset.yaml").exists()  # class_missing is split-level: cannot be dropped
    assert "--strict" in stderr


def test_binary_masks_pass_once_declared(tmp_path, rng, run_cli):
    for i in range(3):
        write_image(tmp_path / "images" / f"b{i}.png", random_image(rng, 16, 16))
        write_grey(tmp_path / "masks" / f"b{i}.png", blocks(rng, 16, 16, [0, 255], block=4).astype(np.uint8))
    base = ["prepare", "folder", "--images", tmp_path / "images", "--masks", tmp_path / "masks", "--val-fraction", "0"]
    assert run_cli(*base, "--out", tmp_path / "o1")[0] == 1
    assert run_cli(*base, "--out", tmp_path / "o3", "--keep-going")[0] == 1  # every pair dropped: train is empty
    assert "all 3 pair(s)" in next(f["detail"] for f in read_lint(tmp_path / "o3" / "lint.json")["findings"]
                                   if f["kind"] == "empty_split")
    assert run_cli(*base, "--out", tmp_path / "o2", "--remap", "255=1")[0] == 0
    import yaml

    card = yaml.safe_load((tmp_path / "o2" / "dataset.yaml").read_text())
    assert card["classes"] == ["class_0", "class_1"] and card["stats"]["splits"]["train"]["class_pixels"][1] > 0


def test_failed_rerun_leaves_an_existing_dataset_untouched(bad_folder, camvid_src, run_cli):
    out = bad_folder / "out"
    assert run_cli("prepare", "camvid", "--src", camvid_src[0], "--out", out)[0] == 0
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    code, stdout, _ = run_cli(*_args(bad_folder, out, "--overwrite"))
    assert code == 1 and stdout.strip() == str(bad_folder / "out.lint.json")
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert not read_lint(bad_folder / "out.lint.json")["passed"]
    # a later run that passes removes that report: it stayed, saying "passed": false of the dataset now there
    assert run_cli("prepare", "camvid", "--src", camvid_src[0], "--out", out, "--overwrite")[0] == 0
    assert not (bad_folder / "out.lint.json").exists() and read_lint(out / "lint.json")["passed"]


def test_prepare_lint_on_a_damaged_dataset(camvid_src, tmp_path, run_cli):
    out = tmp_path / "camvid"
    assert run_cli("prepare", "camvid", "--src", camvid_src[0], "--out", out)[0] == 0
    card = __import__("yaml").safe_load((out / "dataset.yaml").read_text())
    write_grey(out / card["splits"]["train"][0]["mask"], np.full((24, 32), 42, np.uint8))
    (out / card["splits"]["val"][0]["image"]).unlink()
    code, stdout, stderr = run_cli("prepare", "lint", out)
    report = json.loads((out / "lint.json").read_text())
    assert code == 1 and stdout.strip() == str(out / "lint.json")
    assert {"out_of_range", "missing_image"} <= kinds(report, "error")
    first = next(f for f in report["findings"] if f["severity"] == "error")
    assert f"; first: {first['file']}: {first['detail']};" in stderr  # as prepare's own lint failure says


def test_split_level_errors_do_not_suggest_keep_going(tmp_path, rng, run_cli):
    """--keep-going drops bad pairs; it cannot fill an empty split, so the error must not offer it."""
    for stem in ("a", "b"):
        write_image(tmp_path / "images" / f"{stem}.png", random_image(rng, 8, 8))
        write_grey(tmp_path / "masks" / f"{stem}.png", np.array([[0, 1], [2, 0]], np.uint8).repeat(4, 0).repeat(4, 1))
    (tmp_path / "val.txt").write_text("a\n")
    code, _, stderr = run_cli("prepare", "folder", "--images", tmp_path / "images", "--masks", tmp_path / "masks",
                              "--out", tmp_path / "o", "--split-file", f"val={tmp_path / 'val.txt'}")
    assert code == 1 and "split 'train' has no pair" in stderr and "--keep-going" not in stderr


@pytest.mark.parametrize("edit, text", [
    (lambda card: card["splits"]["train"][0].pop("mask"), "entry 1 of split 'train'"),
    (lambda card: card["splits"]["train"].__setitem__(0, "images/train/x.png"), "entry 1 of split 'train'"),
    (lambda card: card["splits"].__setitem__("val", None), "split 'val' must be a list"),
    (lambda card: card.__setitem__("classes", "abc"), "classes must be a list of names"),
    # two classes of one name: --compare, --fail-under class:NAME and predict's JSON confused them
    (lambda card: card["classes"].__setitem__(2, card["classes"][1]), "is given to ids 1 and 2; give each class"),
    # palettes written by hand: each was exit 4 ('#': int() of a character; a 2-number entry where colours are drawn)
    (lambda card: card["palette"].__setitem__(1, "128 64 128"), "palette entry 2 ('128 64 128') is not a colour"),
    (lambda card: card["palette"].__setitem__(1, [128, 64]), "palette entry 2 ([128, 64]) is not a colour"),
    (lambda card: card["palette"].__setitem__(1, [300, 64, 128]), "palette entry 2 ([300, 64, 128]) is not a colour"),
])
def test_prepare_lint_on_a_hand_edited_card_is_one_line(camvid_src, tmp_path, run_cli, edit, text):
    """A card edited by hand into a wrong shape: one line naming the card (was exit 4: KeyError, TypeError)."""
    import yaml

    out = tmp_path / "camvid"
    assert run_cli("prepare", "camvid", "--src", camvid_src[0], "--out", out)[0] == 0
    card = yaml.safe_load((out / "dataset.yaml").read_text())
    edit(card)
    (out / "dataset.yaml").write_text(yaml.safe_dump(card))
    code, _, stderr = run_cli("prepare", "lint", out)
    assert code == 3 and f"segcli: error: {out / 'dataset.yaml'}: " in stderr and text in stderr, stderr
    assert "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1


def test_a_hand_written_palette_of_hex_colours_or_whole_floats_reads_as_its_colours(camvid_src, tmp_path, run_cli):
    import yaml

    from segcli.data.card import load_card

    out = tmp_path / "camvid"
    assert run_cli("prepare", "camvid", "--src", camvid_src[0], "--out", out)[0] == 0
    card = yaml.safe_load((out / "dataset.yaml").read_text())
    colours = card["palette"]
    card["palette"] = ["#{:02x}{:02X}{:02x}".format(*c) for c in colours[:-1]] + [[float(v) for v in colours[-1]]]
    (out / "dataset.yaml").write_text(yaml.safe_dump(card))
    assert run_cli("prepare", "lint", out)[0] == 0
    assert load_card(out).palette == colours


def test_a_card_saved_in_another_encoding_says_to_save_it_as_utf8(tmp_path, run_cli):
    """A card saved as UTF-16 or cp1252 by an editor: 'invalid dataset card (UnicodeDecodeError …); re-run segcli
    prepare', which would throw the hand edits away."""
    (tmp_path / "dataset.yaml").write_bytes("classes: [Stra\u00dfe, b]\n".encode("cp1252"))
    code, _, stderr = run_cli("prepare", "lint", tmp_path)
    assert code == 3 and stderr.strip() == (f"segcli: error: {tmp_path / 'dataset.yaml'}: not UTF-8 text (byte 0xdf at "
                                            "offset 14); save the dataset card as UTF-8"), stderr


def test_a_card_that_is_not_yaml_is_reported_on_one_line(tmp_path, run_cli):
    (tmp_path / "dataset.yaml").write_text("classes: [a, b\n")
    code, _, stderr = run_cli("prepare", "lint", tmp_path)
    assert code == 3 and "invalid dataset card" in stderr and len(stderr.strip().splitlines()) == 1, stderr


@pytest.mark.parametrize("extra, code, text", [
    (["--val-fraction", "1.5"], 2, "--val-fraction 1.5"), (["--remap", "x=1"], 2, "--remap"),
    (["--classes", "a,b", "--ignore-index", "1"], 2, "also the id of class 'b'"),
    # exit 4 before (IndexError, ValueError), or a card whose ignore index is also a class
    (["--ignore-index", "-5"], 2, "--ignore-index=-5: give a mask value from 0 to 65535"),
    (["--ignore-index", "70000"], 2, "--ignore-index=70000"),
    (["--ignore-index", "1"], 2, "--ignore-index 1 is also a class id in the masks (ids 0-2 found)"),
    (["--folds", "0"], 2, "--folds=0: give a number of folds >= 2"), (["workers=abc"], 2, "workers='abc'"),
    (["--seed", "-1"], 2, "--seed=-1: give a whole number from 0 to 4294967295"),
    # a remap target outside the classes or the mask values: was an out_of_range lint error naming the raw value
    # (255 "is neither a class id nor the ignore index 255"), or 70000 wrapped round to class 4464
    (["--classes", "a,b,c", "--remap", "2=5"], 2, "--remap 2=5: 5 is neither a class id 0..2 nor the ignore index"),
    (["--remap", "2=-1"], 2, "--remap 2=-1: both sides must be mask values from 0 to 65535"),
    (["--remap", "2=70000"], 2, "--remap 2=70000: both sides must be mask values from 0 to 65535"),
    # 0 = 'not labelled', 1..N the classes: both hints named each other and never the fix
    (["--ignore-index", "0"], 2, "(ids 0-2 found); pick a value above 2, or name the classes with --classes; if 0 "
                                 "marks unlabelled pixels and the classes are 1..N, pass --reduce-zero-label instead"),
    (["--ignore-index", "0", "--classes", "a,b"], 2, "is also the id of class 'a'; pick a value >= 2; if 0 marks "
                                                     "unlabelled pixels and the classes are 1..N, pass --reduce-zero-label"),
    (["--ignore-index", "0", "--reduce-zero-label"], 2, "--reduce-zero-label makes 0 'not labelled'"),
])
def test_bad_options_exit_2(tmp_path, rng, run_cli, extra, code, text):
    for stem in ("a", "b", "c"):
        write_image(tmp_path / "images" / f"{stem}.png", random_image(rng, 8, 8))
        write_grey(tmp_path / "masks" / f"{stem}.png", np.array([[0, 1], [2, 0]], np.uint8).repeat(4, 0).repeat(4, 1))
    args = ["prepare", "folder", "--images", tmp_path / "images", "--masks", tmp_path / "masks", "--out", tmp_path / "o"]
    got, _, stderr = run_cli(*args, *extra)
    assert got == code and text in stderr, stderr
    assert not (tmp_path / "o").exists() and not list(tmp_path.glob(".o.partial-*"))


@pytest.mark.parametrize("extra, text", [(["synthetic.height=0"], "synthetic.height=0: give pixels"),
                                         (["synthetic.width=abc"], "synthetic.width='abc'"),
                                         (["--num-images", "1"], "--num-images=1: give at least 2")])
def test_bad_synthetic_settings_exit_2(tmp_path, run_cli, extra, text):
    code, _, stderr = run_cli("prepare", "synthetic", "--out", tmp_path / "o", "--num-images", "4", *extra)
    assert code == 2 and text in stderr and not (tmp_path / "o").exists()


def test_unreadable_source_directory_exit_3(tmp_path, run_cli):
    code, _, stderr = run_cli("prepare", "folder", "--images", tmp_path / "nope", "--masks", tmp_path / "nope",
                              "--out", tmp_path / "o")
    assert code == 3 and "images folder not found" in stderr
    assert run_cli("prepare", "voc", "--src", tmp_path, "--out", tmp_path / "o")[0] == 3
    assert run_cli("prepare", "lint", tmp_path / "nothing")[0] == 3


def test_every_lint_kind_is_documented():
    table = (Path(__file__).resolve().parents[2] / "data" / "README.md").read_text()
    undocumented = [kind for kind in KINDS if f"`{kind}`" not in table]
    assert not undocumented


def _depth_folder(root: Path, rng, images: dict[str, np.ndarray]) -> list:
    """images/STEM.EXT (written as given, any depth) + one-block masks; → prepare folder args (no split lists)."""
    import cv2

    for name, array in images.items():
        (root / "images").mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(root / "images" / name), array)
        write_grey(root / "masks" / f"{Path(name).stem}.png", blocks(rng, *array.shape[:2], [0, 1], block=5).astype(np.uint8))
    return ["prepare", "folder", "--images", root / "images", "--masks", root / "masks", "--classes", "a,b",
            "--val-fraction", "0.5"]


def _card(root: Path) -> dict:
    import yaml

    return yaml.safe_load((root / "dataset.yaml").read_text())


def test_deep_images_are_read_through_the_cards_image_range(tmp_path, rng, run_cli):
    """Images stored deeper than 8 bits fill 0..255 when read: 12-bit values in a 16-bit PNG map from [0, 4095]
    (value / 257 kept 16 grey levels), floating point in 0..1 from [0, 1], in 0..2 from [0, largest], in 0-255 as
    they are (the one-channel float TIFF that OpenCV refuses to decode as colour is read), signed values from their
    [min, max]."""
    from segcli.inference.io import read_image

    twelve = rng.integers(0, 4096, (20, 30)).astype(np.uint16)
    twelve[0, 0] = 4095
    unit = rng.random((20, 30)).astype(np.float32)
    signed = rng.integers(-1000, 2001, (20, 30)).astype(np.int16)
    signed[0, :2] = [-1000, 2000]
    bright = unit * np.float32(1.25)
    bright[0, 0] = 1.25
    cases = {"a": ({"x.png": twelve, "y.png": twelve // 2}, [0.0, 4095.0], "x.png", (twelve * (255 / 4095)).round()),
             "b": ({"u.tiff": unit, "v.tiff": unit / 2}, [0.0, 1.0], "u.tiff", (unit * 255).round()),
             "c": ({"v.tiff": unit * 255, "w.tiff": unit * 100}, [0.0, 255.0], "v.tiff", np.floor(unit * 255 + 0.5)),
             "d": ({"s.tiff": signed, "t.tiff": signed // 2}, [-1000.0, 2000.0], "s.tiff",
                   ((signed + 1000) * (255 / 3000)).round()),
             # reflectance a little above 1 (a bright cloud): was [0, 255], reading the images all but black
             "f": ({"r.tiff": bright, "s.tiff": unit}, [0.0, 1.25], "r.tiff", (bright * (255 / 1.25)).round())}
    for name, (images, expected, probe, read_as) in cases.items():
        code, _, stderr = run_cli(*_depth_folder(tmp_path / name, rng, images), "--out", tmp_path / f"{name}_out")
        assert code == 0 and "image_depth" not in stderr, stderr
        assert f"values {expected[0]:g}..{expected[1]:g} mapped onto 0..255" in stderr, stderr
        card = _card(tmp_path / f"{name}_out")
        assert card["image_range"] == expected, name
        read = read_image(tmp_path / name / "images" / probe, value_range=card["image_range"])
        assert read.shape == (20, 30, 3) and np.abs(read[..., 0].astype(int) - read_as).max() <= 1, name
        assert 0.05 < card["stats"]["mean"][0] < 0.95, name  # in the units the images are read in
    code, _, _ = run_cli(*_depth_folder(tmp_path / "e", rng, {"p.png": twelve.astype(np.uint8), "q.png": twelve}),
                         "--out", tmp_path / "e_out")
    found = [f for f in read_lint(tmp_path / "e_out" / "lint.json")["findings"] if f["kind"] == "image_depth"]
    assert code == 0 and len(found) == 1 and found[0]["severity"] == "warning"
    assert "p.png" in found[0]["detail"] and "q.png" in found[0]["detail"] and "uint16" in found[0]["detail"]
    # 16-bit levels 0..4095 beside floats 0..1: one range [0, 4095] read the floats all but black, without a word
    code, _, _ = run_cli(*_depth_folder(tmp_path / "g", rng, {"q.png": twelve, "u.tiff": unit}), "--out", tmp_path / "g_out")
    found = [f for f in read_lint(tmp_path / "g_out" / "lint.json")["findings"] if f["kind"] == "image_depth"]
    assert code == 0 and len(found) == 1 and found[0]["severity"] == "warning", found
    assert found[0]["detail"].startswith("1 uint16 image(s) (e.g. ") and "q.png) beside 1 float32 one(s)" in \
        found[0]["detail"] and "u.tiff" in found[0]["detail"] and "4095.0]" in found[0]["detail"], found
    # a given image_range is the one named (the data's [0, 4095] was, while the card read through [0, 1])
    code, _, _ = run_cli(*_depth_folder(tmp_path / "g", rng, {}), "image_range=[0,1]", "--out", tmp_path / "h_out")
    found = [f for f in read_lint(tmp_path / "h_out" / "lint.json")["findings"] if f["kind"] == "image_depth"]
    assert code == 0 and len(found) == 1 and "one image_range [0.0, 1.0]" in found[0]["detail"], found


def test_a_given_image_range_is_the_window_images_are_read_through(tmp_path, rng, run_cli):
    """prepare image_range=[low,high] (a CT window) replaces the range chosen from the data: values outside clip,
    and the card's stats are those of the windowed images; for 8-bit images it is not used, and a note says so."""
    from segcli.inference.io import read_image, to_uint8

    ct = rng.integers(-1024, 3001, (20, 30)).astype(np.int16)
    ct[:10] = rng.integers(-100, 200, (10, 30))
    args = _depth_folder(tmp_path / "a", rng, {"s.tiff": ct, "t.tiff": ct})
    code, _, stderr = run_cli(*args, "image_range=[-160,240]", "--out", tmp_path / "out")
    card = _card(tmp_path / "out")
    assert code == 0 and card["image_range"] == [-160.0, 240.0], stderr
    read = read_image(tmp_path / "a" / "images" / "s.tiff", value_range=card["image_range"])[..., 0]
    expected = np.clip((ct.astype(float) + 160) * 255 / 400, 0, 255)
    assert np.abs(read - expected).max() <= 1 and (read == 0).any() and (read == 255).any()
    assert abs(card["stats"]["mean"][0] - to_uint8(ct, [-160, 240]).mean() / 255) < 1e-3
    for bad in ("[240,-160]", "abc", "[1,2,3]"):
        code, _, stderr = run_cli(*args, f"image_range={bad}", "--out", tmp_path / "bad")
        assert code == 2 and "give" in stderr and not (tmp_path / "bad").exists()
    image = rng.integers(0, 256, (20, 30, 3)).astype(np.uint8)
    args = _depth_folder(tmp_path / "b", rng, {"p.png": image, "q.png": image})
    code, _, stderr = run_cli(*args, "image_range=[0,1000]", "--out", tmp_path / "out8")
    assert code == 0 and "every image is 8-bit, so image_range is not used" in stderr
    assert "image_range" not in _card(tmp_path / "out8")


def test_max_size_keeps_the_depth_and_channels_of_what_it_shrinks(tmp_path, rng, run_cli):
    """--max-size re-encodes shrunk images at the depth and channel count they are stored with: a 12-bit PNG
    stays 16-bit (and its card keeps image_range [0, 4095]), a 4-channel PNG keeps its 4th band, and an 8-bit grey
    PNG or JPEG stays one channel (it was written back as RGB, three times the size), while an RGB file of grey
    pixels stays RGB."""
    import cv2

    twelve = rng.integers(0, 4096, (80, 120)).astype(np.uint16)
    twelve[0, 0] = 4095
    four = rng.integers(0, 256, (80, 120, 4)).astype(np.uint8)
    grey = rng.integers(0, 256, (80, 120)).astype(np.uint8)
    args = _depth_folder(tmp_path / "a", rng, {"x.png": twelve, "y.png": twelve, "m.png": four, "n.png": four,
                                               "g.png": grey, "j.jpg": grey, "c.png": np.dstack([grey] * 3)})
    from PIL import Image

    Image.fromarray(np.dstack([grey, np.full_like(grey, 255)]), "LA").save(tmp_path / "a" / "images" / "la.png")
    write_grey(tmp_path / "a" / "masks" / "la.png", blocks(rng, 80, 120, [0, 1], block=5).astype(np.uint8))
    code, _, stderr = run_cli(*args, "--max-size", "60", "--out", tmp_path / "out")
    assert code == 0, stderr
    written = {p.name: cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in (tmp_path / "out" / "images").rglob("*.png")}
    assert written["la.png"].shape == (40, 60)  # grey + alpha: the grey (OpenCV decodes it as BGRA: was RGBA)
    assert written["x.png"].dtype == np.uint16 and written["x.png"].shape == (40, 60)
    assert 2048 <= written["x.png"].max() <= 4095
    assert written["m.png"].shape == (40, 60, 4) and written["m.png"].dtype == np.uint8
    assert abs(float(written["m.png"][..., 3].mean()) - float(four[..., 3].mean())) < 10
    assert written["g.png"].shape == (40, 60) and written["c.png"].shape == (40, 60, 3)
    jpeg = next((tmp_path / "out" / "images").rglob("j.jpg"))
    assert cv2.imread(str(jpeg), cv2.IMREAD_UNCHANGED).shape == (40, 60)
    assert _card(tmp_path / "out")["image_range"] == [0.0, 4095.0]

def test_a_dataset_of_one_class_fails_prepare_and_train(tmp_path, rng, run_cli):
    """Masks that all hold one value (an annotation export that lost its labels) would give a one-class card on
    which any model scores 100%: prepare stops on it (nothing written), also when --classes names more classes
    than the masks hold; train refuses such a card (exit 3)."""
    import yaml

    image = rng.integers(0, 256, (20, 30, 3)).astype(np.uint8)
    for stem in ("a", "b", "c", "d"):
        write_image(tmp_path / "images" / f"{stem}.png", image)
        write_grey(tmp_path / "masks" / f"{stem}.png", np.zeros((20, 30), np.uint8))
    args = ["prepare", "folder", "--images", tmp_path / "images", "--masks", tmp_path / "masks", "--val-fraction", "0.5"]
    code, _, stderr = run_cli(*args, "--out", tmp_path / "out")
    assert code == 1 and "single_class" in stderr and "one class (class_0)" in stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["lint.json"]
    code, _, stderr = run_cli(*args, "--classes", "background,object", "--out", tmp_path / "named")
    assert code == 1 and "single_class" in stderr and "'background' (of 2 classes named)" in stderr
    for stem in ("a", "b", "c", "d"):  # a card of two classes, cut to one by hand below
        write_grey(tmp_path / "masks" / f"{stem}.png", np.pad(np.ones((10, 30), np.uint8), ((10, 0), (0, 0))))
    code, _, _ = run_cli(*args, "--classes", "background,object", "--out", tmp_path / "two")
    assert code == 0
    card = yaml.safe_load((tmp_path / "two" / "dataset.yaml").read_text())
    card["classes"], card["palette"] = card["classes"][:1], card["palette"][:1]
    (tmp_path / "two" / "dataset.yaml").write_text(yaml.safe_dump(card))
    code, _, stderr = run_cli("train", f"data.root={tmp_path / 'two'}", "--run-dir", tmp_path / "run")
    assert code == 3 and "one class (background)" in stderr and not (tmp_path / "run").exists()


def test_an_animated_gif_image_is_a_multi_page_warning_in_frames(tmp_path, rng, run_cli):
    """An animated GIF is read as its first frame (like a TIFF stack): a multi_page warning that says frames; the
    pair is kept, and a one-frame GIF gives no warning."""
    frames = [random_image(rng, 16, 16) for _ in range(3)]
    (tmp_path / "images").mkdir()
    assert cv2.imwritemulti(str(tmp_path / "images" / "anim.gif"), frames)
    assert cv2.imwrite(str(tmp_path / "images" / "still.gif"), frames[0])
    for stem in ("anim", "still"):
        write_grey(tmp_path / "masks" / f"{stem}.png", blocks(rng, 16, 16, [0, 1], block=4).astype(np.uint8))
    out = tmp_path / "out"
    code, _, _ = run_cli("prepare", "folder", "--images", tmp_path / "images", "--masks", tmp_path / "masks",
                         "--val-fraction", "0", "--out", out)
    assert code == 0
    warned = [f for f in read_lint(out / "lint.json")["findings"] if f["kind"] == "multi_page"]
    assert [Path(f["file"]).name for f in warned] == ["anim.gif"]
    assert "holds 3 frames and only the first is read" in warned[0]["detail"]


@pytest.mark.parametrize("classes", [None, "a,b,c", "names.csv"])
def test_reduce_zero_label_makes_0_ignore_and_shifts_the_classes_down(tmp_path, rng, run_cli, classes):
    """Masks with 0 = not labelled, 1..3 = three classes and 255 = a border (ADE20K's convention). A one-column
    CSV of names (pandas' to_csv) numbers its classes in line order, as 'a,b,c' does: it was refused as a file that
    names mask values."""
    import yaml

    if classes == "names.csv":
        (tmp_path / classes).write_text("name\na\nb\nc\n")
        classes = str(tmp_path / classes)

    raw = {}
    for i in range(4):
        raw[i] = blocks(rng, 16, 16, [0, 1, 2, 3, 255], block=4).astype(np.uint8)
        write_image(tmp_path / "images" / f"x{i}.png", random_image(rng, 16, 16))
        write_grey(tmp_path / "masks" / f"x{i}.png", raw[i])
    out = tmp_path / "out"
    args = ["--classes", classes] if classes else []
    code, _, err = run_cli("prepare", "folder", "--images", tmp_path / "images", "--masks", tmp_path / "masks",
                           "--val-fraction", "0", "--reduce-zero-label", "--out", out, *args)
    assert code == 0, err
    card = yaml.safe_load((out / "dataset.yaml").read_text())
    assert card["classes"] == (["a", "b", "c"] if classes else ["class_0", "class_1", "class_2"])
    assert card["ignore_index"] == 255
    for entry in card["splits"]["train"]:
        stem = Path(entry["mask"]).stem
        expected = np.where((raw[int(stem[1:])] == 0) | (raw[int(stem[1:])] == 255), 255,
                            raw[int(stem[1:])].astype(np.int64) - 1)
        assert np.array_equal(cv2.imread(str(out / entry["mask"]), cv2.IMREAD_UNCHANGED), expected)


@pytest.mark.parametrize("naming", ["palette", "csv", "json"])
def test_reduce_zero_label_is_refused_where_the_classes_name_mask_values(tmp_path, rng, run_cli, naming):
    """`--reduce-zero-label` with a palette or a CSV of values and names shifted the ids under the file's names:
    cat's pixels were stored as 'background', dog's as 'cat', and 'dog' stayed empty (exit 0). Exit 2 with the way
    those files say 'not labelled'; nothing is written."""
    for i in range(3):
        write_image(tmp_path / "images" / f"x{i}.png", random_image(rng, 16, 16))
        ids = blocks(rng, 16, 16, [0, 1, 2], block=4).astype(np.uint8)
        if naming == "palette":
            colours = np.array([(0, 0, 0), (255, 0, 0), (0, 255, 0)], np.uint8)
            write_image(tmp_path / "masks" / f"x{i}.png", colours[ids])
        else:
            write_grey(tmp_path / "masks" / f"x{i}.png", ids)
    files = {"palette": ("palette.txt", "background 0 0 0\ncat 255 0 0\ndog 0 255 0\n"),
             "csv": ("_classes.csv", "Pixel Value, Class\n0, background\n1, cat\n2, dog\n"),
             "json": ("dataset.json", '{"labels": {"background": 0, "cat": 1, "dog": 2}}')}
    name, text = files[naming]
    (tmp_path / name).write_text(text)
    option = "--palette" if naming == "palette" else "--classes"
    code, _, err = run_cli("prepare", "folder", "--images", tmp_path / "images", "--masks", tmp_path / "masks",
                           "--val-fraction", "0", "--reduce-zero-label", option, tmp_path / name,
                           "--out", tmp_path / "o")
    assert code == 2 and "leave out --reduce-zero-label" in err.strip().splitlines()[-1], err
    assert not (tmp_path / "o" / "dataset.yaml").exists()


def test_sparse_ids_get_the_remap_that_numbers_them(tmp_path, rng, run_cli):
    """Masks using ids 0, 10, 20 (no --classes) made 21 classes, 18 never present, with only 'zero pixels' warnings;
    the warning now gives the --remap that makes them 3 classes, and following it gives a card without gaps."""
    import yaml

    for i in range(3):
        write_image(tmp_path / "images" / f"x{i}.png", random_image(rng, 16, 16))
        write_grey(tmp_path / "masks" / f"x{i}.png", blocks(rng, 16, 16, [0, 10, 20], block=4).astype(np.uint8))
    base = ["prepare", "folder", "--images", tmp_path / "images", "--masks", tmp_path / "masks", "--val-fraction", "0"]
    assert run_cli(*base, "--out", tmp_path / "o1")[0] == 0
    missing = [f for f in read_lint(tmp_path / "o1" / "lint.json")["findings"] if f["kind"] == "class_missing"]
    assert missing and "the masks use only ids 0, 10, 20: --remap 10=1 --remap 20=2 numbers them as 3 classes" \
        in missing[0]["detail"]
    assert run_cli(*base, "--out", tmp_path / "o2", "--remap", "10=1", "--remap", "20=2")[0] == 0
    assert yaml.safe_load((tmp_path / "o2" / "dataset.yaml").read_text())["classes"] == ["class_0", "class_1", "class_2"]
    assert not [f for f in read_lint(tmp_path / "o2" / "lint.json")["findings"] if f["kind"] == "class_missing"]


def test_keep_going_lists_the_pairs_the_source_left_out(tmp_path, rng, run_cli):
    """An image without a mask, a mask without an image and a stem held by two images were forgiven by --keep-going
    and left out, but not listed under 'dropped' nor counted in its stderr line, as the pairs dropped by the lint
    of their files are."""
    images, masks = tmp_path / "images", tmp_path / "masks"
    for stem in ["a", "b", "c", "d", "twice"]:
        write_image(images / f"{stem}.png", random_image(rng, 16, 16))
        write_grey(masks / f"{stem}.png", blocks(rng, 16, 16, [0, 1], block=4).astype(np.uint8))
    write_image(images / "twice.jpg", random_image(rng, 16, 16))
    write_image(images / "no_mask.png", random_image(rng, 16, 16))
    write_grey(masks / "no_image.png", blocks(rng, 16, 16, [0, 1], block=4).astype(np.uint8))
    out = tmp_path / "out"
    code, _, stderr = run_cli("prepare", "folder", "--images", images, "--masks", masks, "--out", out,
                              "--classes", "a,b", "--val-fraction", "0.25", "--keep-going")
    assert code == 0, stderr
    dropped = {d["stem"]: d["kinds"] for d in read_lint(out / "lint.json")["dropped"]}
    assert set(dropped) == {"twice", "no_mask", "no_image"}, dropped
    assert all(kinds for kinds in dropped.values())
    assert "dropped 3 pair(s)" in stderr


@pytest.mark.parametrize("layout", ["colour", "grey+alpha"])
def test_transparent_mask_pixels_are_a_warning(layout, tmp_path, rng, run_cli):
    """A mask with an alpha channel: its transparent pixels (an editor's unpainted background) silently took the class
    of their colour (black = 'background' in the palette) or value. Alpha is still not read, but the lint says so."""
    (tmp_path / "masks").mkdir()
    for i in range(3):
        write_image(tmp_path / "images" / f"p{i}.png", random_image(rng, 16, 16))
        ids = blocks(rng, 16, 16, [0, 1], block=4).astype(np.uint8)
        alpha = np.where(ids == 0, 0, 255).astype(np.uint8)  # the background left unpainted
        stored = (Image.fromarray(np.dstack([ids * 200, ids * 100, ids * 50, alpha]), "RGBA") if layout == "colour"
                  else Image.fromarray(np.dstack([ids, alpha]), "LA"))
        stored.save(tmp_path / "masks" / f"p{i}.png")
    (tmp_path / "palette.txt").write_text("background 0 0 0\nthing 200 100 50\n")
    args = ["prepare", "folder", "--images", tmp_path / "images", "--masks", tmp_path / "masks",
            "--val-fraction", "0.34"] + (["--palette", tmp_path / "palette.txt"] if layout == "colour" else
                                         ["--classes", "background,thing"])
    code, _, stderr = run_cli(*args, "--out", tmp_path / "out")
    assert code == 0, stderr
    findings = [f for f in read_lint(tmp_path / "out" / "lint.json")["findings"] if f["kind"] == "mask_alpha"]
    assert len(findings) == 3 and all(f["severity"] == "warning" for f in findings)
    assert "transparent pixel(s) (alpha 0)" in findings[0]["detail"]
    assert run_cli(*args, "--out", tmp_path / "strict", "--strict")[0] == 1


def test_a_mask_with_an_exif_orientation_is_a_warning(tmp_path, rng, run_cli):
    """A square mask carrying EXIF orientation 3 (turned 180°) beside its image: masks are read as stored, so it
    was used upside down without a word (sizes agree, so no size_mismatch)."""
    (tmp_path / "masks").mkdir()
    for i in range(3):
        write_image(tmp_path / "images" / f"p{i}.png", random_image(rng, 16, 16))
        ids = blocks(rng, 16, 16, [0, 1], block=4).astype(np.uint8)
        exif = Image.Exif()
        exif[0x0112] = 3 if i == 0 else 1
        Image.fromarray(ids, "L").save(tmp_path / "masks" / f"p{i}.png", exif=exif.tobytes())
    code, _, stderr = run_cli("prepare", "folder", "--images", tmp_path / "images", "--masks", tmp_path / "masks",
                              "--out", tmp_path / "out", "--classes", "a,b", "--val-fraction", "0.34")
    assert code == 0, stderr
    found = [f for f in read_lint(tmp_path / "out" / "lint.json")["findings"] if f["kind"] == "mask_orientation"]
    assert [(Path(f["file"]).name, f["severity"]) for f in found] == [("p0.png", "warning")]
    assert "EXIF orientation 3 (turned 180°)" in found[0]["detail"]


def test_pairs_refused_for_their_values_do_not_make_the_rest_a_one_class_dataset(tmp_path, rng, run_cli):
    """0/255 binary masks (refused: binary_mask) beside masks of background only: the class table came from the
    pairs that passed, so a second error said 'one class … name them with --classes', which fixes nothing."""
    image = rng.integers(0, 256, (20, 30, 3)).astype(np.uint8)
    for stem in ("a", "b", "c", "d"):
        mask = np.zeros((20, 30), np.uint8)
        if stem in ("a", "b"):
            mask[5:10, 5:10] = 255
        write_image(tmp_path / "images" / f"{stem}.png", image)
        write_grey(tmp_path / "masks" / f"{stem}.png", mask)
    args = ["prepare", "folder", "--images", tmp_path / "images", "--masks", tmp_path / "masks", "--val-fraction", "0.5"]
    code, _, stderr = run_cli(*args, "--out", tmp_path / "out")
    assert code == 1 and "binary_mask" in stderr and "--remap 255=1" in stderr
    assert "single_class" not in stderr
    code, _, stderr = run_cli(*args, "--remap", "255=1", "--out", tmp_path / "fixed")
    assert code == 0, stderr


def test_sixteen_bit_ids_up_to_65535_get_advice_that_can_be_followed(tmp_path, rng, run_cli):
    """Ids up to 65535 with the default ignore index 255 among them: the advice was 'pick a value above 65535',
    which no ignore index can be."""
    for stem in ("a", "b", "c"):
        write_image(tmp_path / "images" / f"{stem}.png", random_image(rng, 8, 8))
        write_grey(tmp_path / "masks" / f"{stem}.png", np.array([[0, 1], [65535, 0]], np.uint16).repeat(4, 0).repeat(4, 1))
    code, _, stderr = run_cli("prepare", "folder", "--images", tmp_path / "images", "--masks", tmp_path / "masks",
                              "--out", tmp_path / "o")
    assert code == 2 and "(ids 0-65535 found); no ignore value lies above 65535" in stderr, stderr
    assert "--remap 65535=" in stderr and "pick a value above" not in stderr


@pytest.mark.parametrize("kind", ["grey", "grey16", "rgb16"])
def test_max_size_card_stats_are_those_of_the_shrunk_files(kind, tmp_path, rng, run_cli):
    """data/README: the card's stats come from the pairs actually written. An image --max-size kept as stored (a grey
    or deeper file) had them from its full-size pixels: a 1-pixel checkerboard, grey after the shrink, had std 0.5
    on the card (train normalises with it) against 0 in the files."""
    import cv2
    import yaml

    board = (np.indices((64, 64)).sum(0) % 2).astype(np.uint16)
    image = {"grey": (board * 255).astype(np.uint8), "grey16": board * 65535,
             "rgb16": np.dstack([board * 65535, board * 30000, board * 1000])}[kind]
    args = _depth_folder(tmp_path / "a", rng, {f"{i}.png": image for i in "abcd"})
    code, _, stderr = run_cli(*args, "--val-fraction", "0", "--max-size", "32", "--out", tmp_path / "out")
    assert code == 0, stderr
    card = yaml.safe_load((tmp_path / "out" / "dataset.yaml").read_text())
    files = [cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in sorted((tmp_path / "out" / "images").rglob("*.png"))]
    assert files and all(f.shape[:2] == (32, 32) and f.dtype == image.dtype for f in files)
    low, high = card.get("image_range", [0, 255])
    values = (np.stack(files).astype(np.float64) - low) / (high - low)
    stats = card["stats"]  # the train split's, which train normalises with
    if values.ndim == 4:  # BGR files, RGB stats
        values = values[..., ::-1]
        expected_mean, expected_std = values.mean(axis=(0, 1, 2)), values.std(axis=(0, 1, 2))
    else:
        expected_mean, expected_std = [values.mean()] * 3, [values.std()] * 3
    assert stats["mean"] == pytest.approx(expected_mean, abs=1e-3), stats
    assert stats["std"] == pytest.approx(np.maximum(expected_std, 1 / 255), abs=1e-3), stats


def test_lint_of_a_prepared_dataset_whose_masks_were_edited_says_its_card_is_stale(tmp_path, rng, run_cli):
    """Masks edited after prepare (a class painted into every image): `prepare lint` passed with no finding, while the
    card's class counts and class_weights (loss.class_weights=auto) still described the old masks."""
    images = {f"i{i}.png": random_image(rng, 20, 30) for i in range(6)}
    code, _, _ = run_cli(*_depth_folder(tmp_path / "src", rng, images), "--out", tmp_path / "out")
    assert code == 0
    code, _, err = run_cli("prepare", "lint", tmp_path / "out")
    assert code == 0 and "stale_card" not in err and not [
        f for f in read_lint(tmp_path / "out" / "lint.json")["findings"] if f["kind"] == "stale_card"], err
    card = _card(tmp_path / "out")
    mask = tmp_path / "out" / card["splits"]["train"][0]["mask"]
    ids = cv2.imread(str(mask), cv2.IMREAD_UNCHANGED)
    painted = int((ids == 0).sum())  # class 'a' pixels that become 'b'
    ids[:] = 1
    write_grey(mask, ids)
    code, _, err = run_cli("prepare", "lint", tmp_path / "out")
    found = [f for f in read_lint(tmp_path / "out" / "lint.json")["findings"] if f["kind"] == "stale_card"]
    a, b = card["stats"]["splits"]["train"]["class_pixels"]
    assert code == 0 and len(found) == 1 and found[0]["severity"] == "warning" and painted, found
    assert found[0]["detail"] == (
        f"the masks of split 'train' hold other class pixel counts than the card records ('a' {a:,} → "
        f"{a - painted:,}, 'b' {b:,} → {b + painted:,} px): they changed after prepare wrote the card, whose "
        "statistics and class_weights (loss.class_weights=auto) predate them; prepare the edited dataset again into a "
        "new --out")
