"""segcli prepare synthetic | camvid | folder: canonical layout, dataset card, statistics, atomic failure."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers_cli import SYNTHETIC_PREPARE, assert_error, assert_lint_failed, assert_ok, describe, load_yaml, run_cli, stdout_lines

SYNTHETIC_CLASSES = ["background", "road", "building", "vegetation", "vehicle", "pole", "sign"]
CAMVID_CLASSES = ["Sky", "Building", "Pole", "Road", "Pavement", "Tree", "SignSymbol", "Fence", "Car", "Pedestrian",
                  "Bicyclist"]


def read_mask(path: Path) -> np.ndarray:
    mask = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert mask is not None and mask.ndim == 2, path
    return mask


def read_rgb(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert image is not None, path
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    """Relative path → (bytes, mtime) of every file under root."""
    return {p.relative_to(root).as_posix(): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}


def hidden_leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith(".")) if parent.exists() else []


def check_card_structure(root: Path, card: dict) -> None:
    """Invariants of every dataset card, checked against the files it points to."""
    classes = card["classes"]
    assert len(card["palette"]) == len(classes)
    for colour in card["palette"]:
        assert len(colour) == 3 and all(isinstance(c, int) and 0 <= c <= 255 for c in colour)
    assert isinstance(card["ignore_index"], int)
    assert set(card["splits"]) >= {"train"}
    for split, items in card["splits"].items():
        assert items, split
        for item in items:
            assert set(item) == {"image", "mask"}
            assert not Path(item["image"]).is_absolute() and not Path(item["mask"]).is_absolute()
            assert (root / item["image"]).is_file(), item["image"]
            assert (root / item["mask"]).is_file(), item["mask"]
    stats = card["stats"]
    for key in ("mean", "std"):
        assert len(stats[key]) == 3
        assert all(isinstance(v, float) and 0.0 < v < 1.0 for v in stats[key]), stats[key]
    assert set(stats["class_pixels"]) == set(card["splits"])
    for split, items in card["splits"].items():
        counts = np.zeros(len(classes), np.int64)
        for item in items:
            mask = read_mask(root / item["mask"])
            values = np.unique(mask)
            assert set(values.tolist()) <= set(range(len(classes))) | {card["ignore_index"]}, values
            valid = mask[mask != card["ignore_index"]]
            counts += np.bincount(valid.ravel(), minlength=len(classes))[: len(classes)]
        assert stats["class_pixels"][split] == counts.tolist(), split
        assert sum(stats["class_pixels"][split]) == int(counts.sum())


def check_mean_std(root: Path, card: dict) -> None:
    pixels = np.concatenate([read_rgb(root / item["image"]).reshape(-1, 3).astype(np.float64) / 255.0
                             for item in card["splits"]["train"]])
    np.testing.assert_allclose(card["stats"]["mean"], pixels.mean(0), atol=2e-6)
    np.testing.assert_allclose(card["stats"]["std"], pixels.std(0), atol=2e-6)


# ----------------------------------------------------------------------------- synthetic
def test_synthetic_card(synthetic_data):
    card = load_yaml(synthetic_data / "dataset.yaml")
    assert card["classes"] == SYNTHETIC_CLASSES
    assert card["ignore_index"] == 255
    assert [len(card["splits"]["train"]), len(card["splits"]["val"])] == [10, 2]
    check_card_structure(synthetic_data, card)
    check_mean_std(synthetic_data, card)
    for item in card["splits"]["train"] + card["splits"]["val"]:
        assert read_rgb(synthetic_data / item["image"]).shape == (90, 120, 3)
        assert read_mask(synthetic_data / item["mask"]).shape == (90, 120)
    train_stems = {Path(i["image"]).stem for i in card["splits"]["train"]}
    val_stems = {Path(i["image"]).stem for i in card["splits"]["val"]}
    assert not train_stems & val_stems
    ignored = sum(int((read_mask(synthetic_data / i["mask"]) == 255).sum()) for i in card["splits"]["train"])
    assert ignored > 0  # vehicle outlines are ignore bands: ignore handling is really exercised


def test_synthetic_is_deterministic(synthetic_data, tmp_path):
    again = tmp_path / "again"
    proc = assert_ok(run_cli("prepare", "synthetic", *SYNTHETIC_PREPARE, "--out", again, cwd=tmp_path))
    assert stdout_lines(proc) == [str(again.resolve() / "dataset.yaml")]
    assert (again / "dataset.yaml").read_bytes() == (synthetic_data / "dataset.yaml").read_bytes()
    first = {k: v[0] for k, v in snapshot(synthetic_data).items()}
    second = {k: v[0] for k, v in snapshot(again).items()}
    assert first.keys() == second.keys()
    masks = [k for k in first if k.startswith("masks/")]
    assert len(masks) == 12
    for key in first:
        assert first[key] == second[key], key


def test_synthetic_seed_changes_data(synthetic_data, tmp_path):
    other = tmp_path / "other"
    assert_ok(run_cli("prepare", "synthetic", "--num-images", "12", "--seed", "1", "synthetic.height=90",
                      "synthetic.width=120", "--out", other, cwd=tmp_path))
    card = load_yaml(other / "dataset.yaml")
    assert card["stats"] != load_yaml(synthetic_data / "dataset.yaml")["stats"]
    first_mask = card["splits"]["train"][0]["mask"]
    assert (other / first_mask).read_bytes() != (synthetic_data / first_mask).read_bytes()


def test_existing_dataset_needs_overwrite(tmp_path):
    out = tmp_path / "ds"
    assert_ok(run_cli("prepare", "synthetic", "--num-images", "4", "synthetic.height=64", "synthetic.width=64",
                      "--out", out, cwd=tmp_path))
    before = snapshot(out)

    line = assert_error(run_cli("prepare", "synthetic", "--num-images", "5", "synthetic.height=64",
                                "synthetic.width=64", "--out", out, cwd=tmp_path), 2)
    assert "--overwrite" in line
    assert snapshot(out) == before  # untouched: same files, bytes and mtimes
    assert hidden_leftovers(tmp_path) == []

    proc = assert_ok(run_cli("prepare", "synthetic", "--num-images", "5", "synthetic.height=64",
                             "synthetic.width=64", "--out", out, "--overwrite", cwd=tmp_path))
    assert stdout_lines(proc) == [str(out.resolve() / "dataset.yaml")]
    card = load_yaml(out / "dataset.yaml")
    assert [len(card["splits"]["train"]), len(card["splits"]["val"])] == [4, 1]
    assert len(list((out / "masks").rglob("*.png"))) == 5  # old files are gone, not merged
    check_card_structure(out, card)
    assert hidden_leftovers(tmp_path) == []


def test_overwrite_replaces_unrelated_content(tmp_path):
    out = tmp_path / "ds"
    out.mkdir()
    (out / "stale.txt").write_text("old")
    assert_error(run_cli("prepare", "synthetic", "--num-images", "3", "--out", out, cwd=tmp_path), 2)
    assert (out / "stale.txt").read_text() == "old"
    assert_ok(run_cli("prepare", "synthetic", "--num-images", "3", "synthetic.height=48", "synthetic.width=64",
                      "--out", out, "--overwrite", cwd=tmp_path))
    assert not (out / "stale.txt").exists()
    assert (out / "dataset.yaml").is_file()


@pytest.mark.parametrize("out_name", [".", "images"])
def test_overwrite_never_replaces_the_source_folders(tmp_path, out_name):
    """`--images d/images --masks d/masks --out d --overwrite` would delete the originals when the new dataset is
    put in place: refused before anything is written."""
    src = tmp_path / "d"
    (src / "images").mkdir(parents=True)
    (src / "masks").mkdir()
    for i in range(4):
        mask = np.zeros((32, 40), np.uint8)
        mask[i * 4:, :20] = 1
        assert cv2.imwrite(str(src / "images" / f"x{i}.png"), np.full((32, 40, 3), 60 * i, np.uint8))
        assert cv2.imwrite(str(src / "masks" / f"x{i}.png"), mask)
    before = snapshot(src)
    out = (src / out_name).resolve()
    line = assert_error(run_cli("prepare", "folder", "--images", src / "images", "--masks", src / "masks",
                                "--classes", "bg,fg", "--out", out, "--overwrite", cwd=tmp_path), 2)
    assert "outside the source folders" in line
    assert snapshot(src) == before  # every original still there, untouched
    assert hidden_leftovers(tmp_path) == [] and hidden_leftovers(src) == []


def test_empty_existing_dir_is_fine(tmp_path):
    out = tmp_path / "empty"
    out.mkdir()
    assert_ok(run_cli("prepare", "synthetic", "--num-images", "2", "synthetic.height=48", "synthetic.width=64",
                      "--out", out, cwd=tmp_path))
    card = load_yaml(out / "dataset.yaml")
    assert [len(card["splits"]["train"]), len(card["splits"]["val"])] == [1, 1]


def test_too_few_images_is_a_usage_error(tmp_path):
    assert_error(run_cli("prepare", "synthetic", "--num-images", "1", "--out", tmp_path / "ds", cwd=tmp_path), 2)
    assert not (tmp_path / "ds").exists()


# ----------------------------------------------------------------------------- camvid
def test_camvid_card(camvid_data, camvid_src):
    card = load_yaml(camvid_data / "dataset.yaml")
    assert card["classes"] == CAMVID_CLASSES
    assert card["ignore_index"] == 255
    assert {s: len(v) for s, v in card["splits"].items()} == {"train": 24, "val": 8}
    check_card_structure(camvid_data, card)
    check_mean_std(camvid_data, card)


def test_camvid_class_pixels_match_source_annotations(camvid_data, camvid_src):
    card = load_yaml(camvid_data / "dataset.yaml")
    for split in ("train", "val"):
        counts = np.zeros(12, np.int64)
        sources = sorted((camvid_src / f"{split}annot").glob("*.png"))
        assert len(sources) == len(card["splits"][split])
        for path in sources:
            counts += np.bincount(read_mask(path).ravel(), minlength=12)[:12]
        assert card["stats"]["class_pixels"][split] == counts[:11].tolist(), split  # Unlabelled (11) excluded


def test_camvid_masks_map_unlabelled_to_ignore(camvid_data, camvid_src):
    card = load_yaml(camvid_data / "dataset.yaml")
    seen_unlabelled = False
    for split in ("train", "val"):
        for item in card["splits"][split]:
            stem = Path(item["mask"]).stem
            source = read_mask(camvid_src / f"{split}annot" / f"{stem}.png")
            written = read_mask(camvid_data / item["mask"])
            assert written.shape == source.shape == (360, 480)
            expected = np.where(source == 11, 255, source)
            np.testing.assert_array_equal(written, expected)
            assert 11 not in written
            seen_unlabelled |= bool((source == 11).any())
            image = camvid_data / item["image"]
            assert image.read_bytes() == (camvid_src / split / image.name).read_bytes()  # copied byte for byte
    assert seen_unlabelled


# ----------------------------------------------------------------------------- folder
FOLDER_RELS = ["x0", "a/x1", "a/b/x2", "c/x3", "x4", "a/x5", "c/d/x6", "x7"]


def make_folder(root: Path, rels=FOLDER_RELS) -> tuple[Path, Path]:
    """images/ + masks/ with nested folders, png and jpg images of varying sizes, ids 0..2 and some 255."""
    images, masks = root / "images", root / "masks"
    rng = np.random.default_rng(0)
    for i, rel in enumerate(rels):
        h, w = 40 + 2 * i, 56 - i
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        mask = rng.integers(0, 3, (h, w), dtype=np.uint8)
        mask[:3, :5] = 255
        for path, array in ((images / f"{rel}{'.jpg' if i % 2 else '.png'}", image), (masks / f"{rel}.png", mask)):
            path.parent.mkdir(parents=True, exist_ok=True)
            assert cv2.imwrite(str(path), array)
    return images, masks


def image_of(images: Path, rel: str) -> Path:
    return next(p for p in (images / f"{rel}.png", images / f"{rel}.jpg") if p.exists())


def rel_of(card_path: str) -> str:
    """'images/train/a/b/x2.jpg' → 'a/b/x2'."""
    return Path(*Path(card_path).parts[2:]).with_suffix("").as_posix()


@pytest.fixture()
def folder_src(tmp_path) -> tuple[Path, Path]:
    return make_folder(tmp_path / "src")


def test_folder_default_classes(folder_src, tmp_path):
    images, masks = folder_src
    out = tmp_path / "out" / "ds"
    proc = assert_ok(run_cli("prepare", "folder", "--images", images, "--masks", masks, "--out", out, cwd=tmp_path))
    assert stdout_lines(proc) == [str(out.resolve() / "dataset.yaml")]
    card = load_yaml(out / "dataset.yaml")
    assert card["classes"] == ["class_0", "class_1", "class_2"]
    assert card["ignore_index"] == 255
    check_card_structure(out, card)
    check_mean_std(out, card)
    items = card["splits"]["train"] + card["splits"]["val"]
    assert sorted(rel_of(i["image"]) for i in items) == sorted(FOLDER_RELS)
    for item in items:
        rel = rel_of(item["image"])
        assert rel_of(item["mask"]) == rel
        source = image_of(images, rel)
        assert Path(item["image"]).suffix == source.suffix  # jpg stays jpg
        assert (out / item["image"]).read_bytes() == source.read_bytes()
        np.testing.assert_array_equal(read_mask(out / item["mask"]), read_mask(masks / f"{rel}.png"))
    assert len(card["splits"]["val"]) == 2  # default val fraction 0.2 of 8, rounded
    assert hidden_leftovers(out.parent) == []


def test_folder_suffix_hint_counts_every_name():
    """Past 2000 unpaired names the suffix is chosen on a sample, but the hint's count is over every name: 2,500
    images whose masks are <stem>_mask pair in 2500 cases, not 2000."""
    from segcli.data.formats.pairing import suffix_hint

    stems = [f"seq{i % 7}/frame{i:05d}" for i in range(2500)]
    hint = suffix_hint(set(stems), {f"{s}_mask" for s in stems})
    assert "in 2500 case(s)" in hint and "--mask-suffix _mask" in hint


def test_folder_suffix_hint_leaves_out_names_that_share_a_start_by_chance():
    """Video frames in one folder (0016E5_00450, 0016E5_00901, …): two names of a sequence paired by chance, and the
    hint said 'pass --image-suffix _00450 --mask-suffix _00901'. A cut must pair a quarter of the names to be named."""
    from segcli.data.formats.pairing import suffix_hint

    stems = {f"{seq}_{frame:05d}" for k, seq in enumerate(("0001TP", "0006R0", "0016E5"))
             for frame in range(100 + 37 * k, 3000, 450)}
    assert len(stems) == 21 and suffix_hint(stems, stems) == ""
    assert "--mask-suffix _mask" in suffix_hint(stems, {f"{s}_mask" for s in list(stems)[: len(stems) // 4]})


def test_folder_mask_and_image_suffixes(folder_src, tmp_path):
    """Masks named <image stem>_mask: the failed pairing suggests --mask-suffix, which pairs them. Images and masks
    in one folder (x_sat.jpg beside x_mask.png): a usage error naming both suffixes, which then pair them."""
    images, masks = folder_src
    for mask in sorted(masks.rglob("*.png")):
        mask.rename(mask.with_name(f"{mask.stem}_mask.png"))
    line = assert_lint_failed(run_cli("prepare", "folder", "--images", images, "--masks", masks, "--out",
                                      tmp_path / "failed", cwd=tmp_path))
    assert "--mask-suffix _mask" in line and not (tmp_path / "failed" / "dataset.yaml").exists()
    out = tmp_path / "suffixed"
    assert_ok(run_cli("prepare", "folder", "--images", images, "--masks", masks, "--out", out, "--mask-suffix", "_mask",
                      cwd=tmp_path))
    card = load_yaml(out / "dataset.yaml")
    items = card["splits"]["train"] + card["splits"]["val"]
    assert sorted(rel_of(i["mask"]) for i in items) == sorted(FOLDER_RELS)
    for item in items:
        source = masks / f"{rel_of(item['mask'])}_mask.png"
        np.testing.assert_array_equal(read_mask(out / item["mask"]), read_mask(source))

    shared = tmp_path / "shared"
    for i, rel in enumerate(["a", "b", "c", "d", "e"]):
        shared.mkdir(exist_ok=True)
        assert cv2.imwrite(str(shared / f"{rel}_sat.jpg"), np.full((32, 40, 3), 40 * i, np.uint8))
        assert cv2.imwrite(str(shared / f"{rel}_mask.png"), np.full((32, 40), i % 3, np.uint8))
    line = assert_error(run_cli("prepare", "folder", "--images", shared, "--masks", shared, "--out", tmp_path / "one",
                                cwd=tmp_path), 2)
    assert "same folder" in line and "--image-suffix _sat --mask-suffix _mask" in line
    assert not (tmp_path / "one").exists()
    assert_ok(run_cli("prepare", "folder", "--images", shared, "--masks", shared, "--out", tmp_path / "one",
                      "--image-suffix", "_sat", "--mask-suffix", "_mask", cwd=tmp_path))
    card = load_yaml(tmp_path / "one" / "dataset.yaml")
    assert sorted(rel_of(i["image"]) for s in card["splits"].values() for i in s) == ["a", "b", "c", "d", "e"]
    lists = {"train": "a_sat.jpg\nb_sat.jpg\nc\n", "val": "d_mask.png\ne\n"}  # file names as listed by users
    args = []
    for split, text in lists.items():
        (tmp_path / f"{split}.txt").write_text(text)
        args += ["--split-file", f"{split}={tmp_path / f'{split}.txt'}"]
    assert_ok(run_cli("prepare", "folder", "--images", shared, "--masks", shared, "--out", tmp_path / "listed",
                      "--image-suffix", "_sat", "--mask-suffix", "_mask", *args, cwd=tmp_path))
    card = load_yaml(tmp_path / "listed" / "dataset.yaml")
    assert {s: sorted(rel_of(i["image"]) for i in e) for s, e in card["splits"].items()} == {
        "train": ["a", "b", "c"], "val": ["d", "e"]}


def test_folder_hidden_files_are_not_pairs(folder_src, tmp_path):
    """macOS ._x resource forks and Jupyter's .ipynb_checkpoints/ beside the data: not images or masks (each was a
    lint error: unreadable, or an image without a mask)."""
    images, masks = folder_src
    for folder in (images, masks):
        (folder / "._x0.png").write_bytes(b"\x00\x05\x16\x07AppleDouble")
        (folder / ".ipynb_checkpoints").mkdir()
        (folder / ".ipynb_checkpoints" / "x0.png").write_bytes((masks / "x0.png").read_bytes())
    out = tmp_path / "out"
    assert_ok(run_cli("prepare", "folder", "--images", images, "--masks", masks, "--out", out, cwd=tmp_path))
    card = load_yaml(out / "dataset.yaml")
    assert sorted(rel_of(i["image"]) for s in card["splits"].values() for i in s) == sorted(FOLDER_RELS)


def test_folder_named_classes(folder_src, tmp_path):
    images, masks = folder_src
    out = tmp_path / "ds"
    assert_ok(run_cli("prepare", "folder", "--images", images, "--masks", masks, "--out", out, "--classes", "a,b,c",
                      cwd=tmp_path))
    card = load_yaml(out / "dataset.yaml")
    assert card["classes"] == ["a", "b", "c"]
    assert len(card["palette"]) == 3 and len({tuple(c) for c in card["palette"]}) == 3


def test_folder_classes_from_file(folder_src, tmp_path):
    images, masks = folder_src
    names = tmp_path / "names.txt"
    names.write_text("sky\nroad\n\ncar\n")
    out = tmp_path / "ds"
    assert_ok(run_cli("prepare", "folder", "--images", images, "--masks", masks, "--out", out, "--classes", names,
                      cwd=tmp_path))
    assert load_yaml(out / "dataset.yaml")["classes"] == ["sky", "road", "car"]


@pytest.mark.parametrize("fraction,seed,num_val", [("0.25", "1", 2), ("0.5", "1", 4), ("0", "0", 0)])
def test_folder_val_fraction(folder_src, tmp_path, fraction, seed, num_val):
    images, masks = folder_src
    out = tmp_path / "ds"
    assert_ok(run_cli("prepare", "folder", "--images", images, "--masks", masks, "--out", out,
                      "--val-fraction", fraction, "--seed", seed, cwd=tmp_path))
    card = load_yaml(out / "dataset.yaml")
    assert len(card["splits"]["train"]) == len(FOLDER_RELS) - num_val
    assert len(card["splits"].get("val", [])) == num_val
    check_card_structure(out, card)


def test_folder_split_is_seeded(folder_src, tmp_path):
    images, masks = folder_src
    vals = []
    for name in ("one", "two"):
        out = tmp_path / name
        assert_ok(run_cli("prepare", "folder", "--images", images, "--masks", masks, "--out", out,
                          "--val-fraction", "0.25", "--seed", "1", cwd=tmp_path))
        vals.append(sorted(rel_of(i["image"]) for i in load_yaml(out / "dataset.yaml")["splits"]["val"]))
    assert vals[0] == vals[1]


def _assert_nothing_written(out: Path) -> None:
    """Lint errors leave only the report, OUT/lint.json: no dataset, no partial folders next to OUT."""
    assert not out.exists() or sorted(p.name for p in out.iterdir()) == ["lint.json"], sorted(p.name for p in out.iterdir())
    parent = out.parent
    assert not parent.exists() or [p.name for p in parent.iterdir()] in ([], [out.name]), "leftovers next to --out"


def test_folder_image_without_mask(folder_src, tmp_path):
    images, masks = folder_src
    (masks / "a" / "b" / "x2.png").unlink()
    out = tmp_path / "outs" / "ds"
    line = assert_lint_failed(run_cli("prepare", "folder", "--images", images, "--masks", masks, "--out", out,
                                cwd=tmp_path))
    assert str(image_of(images, "a/b/x2")) in line
    _assert_nothing_written(out)


def test_folder_mask_value_outside_classes(folder_src, tmp_path):
    images, masks = folder_src
    bad = masks / "c" / "d" / "x6.png"
    mask = read_mask(bad)
    mask[5, 5] = 7
    cv2.imwrite(str(bad), mask)
    out = tmp_path / "outs" / "ds"
    line = assert_lint_failed(run_cli("prepare", "folder", "--images", images, "--masks", masks, "--out", out,
                                "--classes", "a,b,c", cwd=tmp_path))
    assert str(bad) in line
    assert "7" in line.replace(str(bad), "")
    _assert_nothing_written(out)


def test_folder_without_classes_counts_every_id(folder_src, tmp_path):
    """Without --classes, a mask value 7 simply means there are 8 classes."""
    images, masks = folder_src
    bad = masks / "x4.png"
    mask = read_mask(bad)
    mask[5, 5] = 7
    cv2.imwrite(str(bad), mask)
    out = tmp_path / "ds"
    assert_ok(run_cli("prepare", "folder", "--images", images, "--masks", masks, "--out", out, cwd=tmp_path))
    card = load_yaml(out / "dataset.yaml")
    assert card["classes"] == [f"class_{i}" for i in range(8)]
    check_card_structure(out, card)


def test_folder_size_mismatch(folder_src, tmp_path):
    images, masks = folder_src
    bad = masks / "a" / "x1.png"
    cv2.imwrite(str(bad), np.zeros((10, 12), np.uint8))
    out = tmp_path / "outs" / "ds"
    line = assert_lint_failed(run_cli("prepare", "folder", "--images", images, "--masks", masks, "--out", out,
                                cwd=tmp_path))
    assert "x1" in line
    _assert_nothing_written(out)


def test_folder_failure_keeps_existing_dataset(folder_src, tmp_path):
    """A failing --overwrite run leaves the previous dataset exactly as it was."""
    images, masks = folder_src
    out = tmp_path / "outs" / "ds"
    assert_ok(run_cli("prepare", "folder", "--images", images, "--masks", masks, "--out", out, cwd=tmp_path))
    before = snapshot(out)
    bad = masks / "x7.png"
    mask = read_mask(bad)
    mask[0, 0] = 9
    cv2.imwrite(str(bad), mask)
    proc = run_cli("prepare", "folder", "--images", images, "--masks", masks, "--out", out, "--classes", "a,b,c",
                   "--overwrite", cwd=tmp_path)
    assert_lint_failed(proc)
    assert snapshot(out) == before
    # the lint report of the failed run goes beside the untouched dataset
    assert sorted(p.name for p in out.parent.iterdir()) == ["ds", "ds.lint.json"], describe(proc)


def test_folder_missing_images_dir(tmp_path):
    line = assert_error(run_cli("prepare", "folder", "--images", tmp_path / "nope", "--masks", tmp_path,
                                "--out", tmp_path / "ds", cwd=tmp_path), 3)
    assert "nope" in line
    assert not (tmp_path / "ds").exists()
