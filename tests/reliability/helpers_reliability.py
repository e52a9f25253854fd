"""Shared fixtures for the bad-input and fault matrix: a tiny prepared dataset, an untrained checkpoint
that names it, image writers, and the assertions every case makes.

Every case checks the same three things: the exact exit code, one `segcli: error: ...` line on stderr
naming the culprit (no traceback), and nothing half-written left behind (no temp files, no staging
directories, no empty run or output directories).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from helpers_cli import run_in_process

SYNTHETIC = ["--num-images", "6", "--seed", "0", "synthetic.height=48", "synthetic.width=64"]
TEMP_MARKERS = (".tmp", ".partial-", ".old-")  # atomic writes, prepare's staging dir, prepare's swapped-out dir


def error_line(code: int, err: str, expected: int, *culprits) -> str:
    """Exit `expected`, exactly one `segcli: error:` line (the last stderr line) naming every culprit, no traceback.

    Lines before it are allowed only when they are per-item reports (`segcli: warning: ...`) or a summary."""
    assert code == expected, f"exit {code}, expected {expected}\n{err[-3000:]}"
    assert "Traceback" not in err, err[-3000:]
    lines = err.strip().splitlines()
    assert lines, "no message on stderr"
    errors = [line for line in lines if line.startswith("segcli: error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], err[-3000:]
    for culprit in culprits:
        assert str(culprit) in errors[0], f"{culprit!s} not named in: {errors[0]}"
    return errors[0]


def only_error(code: int, err: str, expected: int, *culprits) -> str:
    """Like error_line, and the error is the only line on stderr."""
    line = error_line(code, err, expected, *culprits)
    assert len(err.strip().splitlines()) == 1, err[-3000:]
    return line


def leftovers(*roots: Path) -> list[str]:
    """Temp files, staging directories and empty directories under `roots` (which may not exist)."""
    found = []
    for root in map(Path, roots):
        if not root.exists():
            continue
        for dirpath, dirnames, filenames in os.walk(os.fsencode(root)):
            for name in dirnames + filenames:
                text = os.fsdecode(name)
                if any(marker in text for marker in TEMP_MARKERS):
                    found.append(os.fsdecode(os.path.join(dirpath, name)))
            if not dirnames and not filenames and dirpath != os.fsencode(root):
                found.append(os.fsdecode(dirpath) + "/ (empty)")
    return found


def assert_clean(*roots: Path) -> None:
    left = leftovers(*roots)
    assert not left, f"half-written leftovers: {left}"


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in Path(root).rglob("*") if p.is_file())


def write_image(path: Path, array: np.ndarray) -> Path:
    """Write an array with cv2 (BGR order as given): (H, W) grey, (H, W, 3), (H, W, 4); uint8 or uint16."""
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    ok, data = cv2.imencode(path.suffix or ".png", array)
    assert ok
    Path(path).write_bytes(data.tobytes())
    return path


def noise(h: int, w: int, channels: int = 3, seed: int = 0, dtype=np.uint8) -> np.ndarray:
    top = 65536 if dtype == np.uint16 else 256
    shape = (h, w) if channels == 1 else (h, w, channels)
    return np.random.default_rng(seed).integers(0, top, shape, dtype=dtype)


def folder_pairs(root: Path, masks: dict[str, np.ndarray], images: dict[str, np.ndarray] | None = None) -> tuple[Path, Path]:
    """root/images/<stem>.png and root/masks/<stem>.png; images default to noise of the mask's size."""
    images = images or {}
    for i, (stem, mask) in enumerate(masks.items()):
        write_image(root / "images" / f"{stem}.png", images.get(stem, noise(*mask.shape[:2], seed=i)))
        write_image(root / "masks" / f"{stem}.png", mask)
    return root / "images", root / "masks"


def ids(h: int = 32, w: int = 32, top: int = 2, seed: int = 0) -> np.ndarray:
    """(H, W) uint8 class ids 0..top-1, every id present."""
    mask = np.random.default_rng(seed).integers(0, top, (h, w), dtype=np.uint8)
    mask.ravel()[:top] = np.arange(top)
    return mask


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """A prepared synthetic dataset: 6 scenes of 48x64 (5 train, 1 val)."""
    out = tmp_path_factory.mktemp("reliability_data") / "syn"
    assert run_in_process(["prepare", "synthetic", "--out", out, *SYNTHETIC]) == 0
    return out


@pytest.fixture(scope="session")
def model_ckpt(tiny_data, tmp_path_factory) -> Path:
    """An untrained (seeded) U-Net/resnet18 saved as a segcli checkpoint for `tiny_data`'s classes.

    Its meta names tiny_data as its dataset, so `eval --ckpt` works without --data."""
    import torch

    from segcli.data.card import load_card
    from segcli.models.factory import build_model
    from segcli.runs import model_meta

    torch.manual_seed(0)
    card = load_card(tiny_data)
    kwargs = {"arch": "unet", "encoder": "resnet18", "classes": card.num_classes}
    model = build_model(**kwargs)
    meta = model_meta(card, kwargs, 32, "val", train_crop=[32, 32])
    path = tmp_path_factory.mktemp("reliability_model") / "random.ckpt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
                "hyper_parameters": {"meta": meta}}, path)
    return path


@pytest.fixture
def dataset_copy(tiny_data, tmp_path) -> Path:
    """A private copy of tiny_data that a test may damage."""
    import shutil

    return Path(shutil.copytree(tiny_data, tmp_path / "data"))


def write_inputs(folder: Path, count: int = 3) -> Path:
    """`count` noise PNGs of 32x40 in `folder`: img0.png, img1.png, …"""
    for i in range(count):
        write_image(folder / f"img{i}.png", noise(32, 40, seed=i))
    return folder


def output_commands(tmp_path: Path, ckpt: Path, data: Path, out: Path) -> dict[str, list]:
    """The arguments of each command that writes under `out`, on small inputs."""
    images = write_inputs(tmp_path / "in")
    return {
        "predict": ["predict", images, "--ckpt", ckpt, "--out", out],
        "eval": ["eval", "--ckpt", ckpt, "--out", out],
        "export": ["export", "--ckpt", ckpt, "--out", out / "m.onnx"],
        "prepare": ["prepare", "synthetic", "--num-images", "2", "synthetic.height=32", "synthetic.width=32", "--out", out],
        "train": ["train", f"data.root={data}", "trainer.max_epochs=1", "--run-dir", out],
    }
