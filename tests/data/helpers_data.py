"""Fixture builders: tiny datasets written in each format's real on-disk conventions, and a CLI runner."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from segcli.data.formats.folder import default_palette


def write_image(path: Path, rgb: np.ndarray, quality: int = 95) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if path.suffix in (".jpg", ".jpeg") else []
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params)
    return path


def write_grey(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), array)
    return path


def write_palette_png(path: Path, indices: np.ndarray, palette: list[list[int]]) -> Path:
    """A palette-mode ('P') PNG, as VOC stores its masks."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(indices.astype(np.uint8), mode="P")
    flat = [v for rgb in palette for v in rgb]
    image.putpalette(flat + [0] * (768 - len(flat)))
    image.save(path)
    return path


def random_image(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def blocks(rng: np.random.Generator, h: int, w: int, values: list[int], block: int = 8) -> np.ndarray:
    """(h, w) mask of random `values` in block×block squares."""
    grid = rng.choice(values, size=(-(-h // block), -(-w // block)))
    return np.kron(grid, np.ones((block, block), grid.dtype))[:h, :w]


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def voc_src(tmp_path, rng):
    """VOCdevkit/VOC2012 with 3 train + 2 val pairs: JPEG images, palette PNG masks with 255 object borders."""
    root = tmp_path / "VOCdevkit" / "VOC2012"
    palette = default_palette(256)
    palette[255] = [224, 224, 192]
    truth = {}
    lists = {"train": ["2007_000032", "2007_000033", "2008_000001"], "val": ["2009_000002", "2010_000003"]}
    for split, stems in lists.items():
        for stem in stems:
            ids = np.zeros((40, 56), np.uint8)
            cls = 1 + len(truth) * 4 % 20
            ids[8:30, 10:40] = cls
            ids[12:20, 44:52] = 15  # person
            border = cv2.dilate((ids > 0).astype(np.uint8), np.ones((3, 3), np.uint8)) != cv2.erode(
                (ids > 0).astype(np.uint8), np.ones((3, 3), np.uint8))
            ids[border] = 255
            write_image(root / "JPEGImages" / f"{stem}.jpg", random_image(rng, 40, 56))
            write_palette_png(root / "SegmentationClass" / f"{stem}.png", ids, palette)
            truth[stem] = ids
    seg = root / "ImageSets" / "Segmentation"
    seg.mkdir(parents=True)
    for split, stems in lists.items():
        (seg / f"{split}.txt").write_text("\n".join(stems) + "\n")
    (seg / "trainval.txt").write_text("\n".join(lists["train"] + lists["val"]) + "\n")
    return tmp_path / "VOCdevkit", truth


@pytest.fixture
def cityscapes_src(tmp_path, rng):
    """leftImg8bit/ + gtFine/ for two cities; labelIds use every id 0..33."""
    root = tmp_path / "cityscapes"
    truth = {}
    for split, cities in {"train": ["aachen", "bochum"], "val": ["frankfurt"]}.items():
        for city in cities:
            for frame in range(2):
                name = f"{city}_{frame:06d}_000019"
                label_ids = blocks(rng, 32, 64, list(range(34)), block=4).astype(np.uint8)
                write_image(root / "leftImg8bit" / split / city / f"{name}_leftImg8bit.png", random_image(rng, 32, 64))
                write_grey(root / "gtFine" / split / city / f"{name}_gtFine_labelIds.png", label_ids)
                write_grey(root / "gtFine" / split / city / f"{name}_gtFine_instanceIds.png", label_ids)  # ignored
                truth[f"{city}/{name}"] = label_ids
    return root, truth


@pytest.fixture
def ade_src(tmp_path, rng):
    """ADEChallengeData2016 with images/ and annotations/ in training/ and validation/ (values 0..150)."""
    root = tmp_path / "ADEChallengeData2016"
    truth = {}
    for folder, count in (("training", 3), ("validation", 2)):
        for i in range(count):
            stem = f"ADE_{'train' if folder == 'training' else 'val'}_{i + 1:08d}"
            raw = blocks(rng, 24, 32, [0, 1, 2, 3, 150, 12, 75], block=4).astype(np.uint8)
            write_image(root / "images" / folder / f"{stem}.jpg", random_image(rng, 24, 32))
            write_grey(root / "annotations" / folder / f"{stem}.png", raw)
            truth[stem] = raw
    return root, truth


@pytest.fixture
def camvid_src(tmp_path, rng):
    """The SegNet layout: train/ trainannot/ val/ valannot/ with ids 0..11 (11 = Unlabelled)."""
    root = tmp_path / "CamVid"
    truth = {}
    for split, count in (("train", 3), ("val", 2)):
        for i in range(count):
            stem = f"0001TP_{split}_{i:03d}"
            ids = blocks(rng, 24, 32, list(range(12)), block=4).astype(np.uint8)
            write_image(root / split / f"{stem}.png", random_image(rng, 24, 32))
            write_grey(root / f"{split}annot" / f"{stem}.png", ids)
            truth[stem] = ids
    return root, truth


@pytest.fixture
def run_cli(capsys):
    """run_cli('prepare', 'folder', ...) → (exit code, stdout, stderr), in-process."""
    from segcli.cli import main

    def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        with pytest.raises(SystemExit) as exit_info:
            main([str(a) for a in args])
        out, err = capsys.readouterr()
        return int(exit_info.value.code or 0), out, err

    return run


def prepared_folder(tmp_path: Path, rng: np.random.Generator, run_cli, count: int, h: int, w: int, block: int,
                    val_fraction: float) -> Path:
    """`segcli prepare folder` of `count` random h×w images with block masks of classes a, b, c (ids 0-2), split
    at random with `val_fraction`: the prepared dataset's folder (tmp_path/out)."""
    for i in range(count):
        write_image(tmp_path / "images" / f"i{i:02d}.png", random_image(rng, h, w))
        write_grey(tmp_path / "masks" / f"i{i:02d}.png", blocks(rng, h, w, [0, 1, 2], block=block).astype(np.uint8))
    out = tmp_path / "out"
    code, _, _ = run_cli("prepare", "folder", "--images", tmp_path / "images", "--masks", tmp_path / "masks",
                         "--out", out, "--classes", "a,b,c", "--val-fraction", str(val_fraction))
    assert code == 0
    return out


def read_lint(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def kinds(report: dict, severity: str | None = None) -> set[str]:
    return {f["kind"] for f in report["findings"] if severity is None or f["severity"] == severity}
