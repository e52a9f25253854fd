"""Shared fixtures for eval tests: an in-process CLI runner, a crafted dataset with predictions,
and (once per session) a tiny trained checkpoint on synthetic data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from segcli.data.card import CARD_NAME, DatasetCard, dump_card
from segcli.inference.io import write_png

IG = 255
CLASSES = ["sky", "road", "car", "sign", "tree"]
PALETTE = [[70, 130, 180], [128, 64, 128], [0, 0, 142], [220, 220, 0], [107, 142, 35]]
# key → (ground truth, prediction); 2x4 images. See test_crafted.py for the hand computation.
CRAFTED = {
    "seq1/a": ([[0, 0, 1, 1], [0, IG, 1, 1]],
               [[0, 1, 1, 1], [0, 0, 1, 3]]),
    "seq1/b": ([[2, 2, 0, 0], [1, 1, IG, IG]],
               [[2, 0, 0, 0], [1, 2, 3, 0]]),
    "c": ([[0, 0, 0, IG], [1, 1, 1, 1]],
          [[0, 0, 0, IG], [1, 1, 1, 1]]),
}


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    """Run `segcli ARGS` in this process → (exit code, stdout, stderr)."""
    from segcli.cli import main

    capsys.readouterr()
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    out, err = capsys.readouterr()
    return code, out, err


def write_card(root: Path, name: str, classes, palette, splits: dict, ignore_index: int = IG) -> None:
    card = DatasetCard(root=root, name=name, classes=list(classes), palette=palette, ignore_index=ignore_index,
                       splits=splits)
    (root / CARD_NAME).write_text(dump_card(card), encoding="utf-8")


@pytest.fixture()
def crafted(tmp_path) -> tuple[Path, Path]:
    """(dataset dir, predictions dir) for CRAFTED, split 'val', with nested relative stems."""
    root, preds = tmp_path / "data", tmp_path / "preds"
    rng = np.random.default_rng(0)
    pairs = []
    for key, (gt, pred) in CRAFTED.items():
        gt, pred = np.array(gt, np.uint8), np.array(pred, np.uint8)
        write_png(root / "images" / "val" / f"{key}.png", rng.integers(0, 255, (*gt.shape, 3), dtype=np.uint8))
        write_png(root / "masks" / "val" / f"{key}.png", gt)
        write_png(preds / f"{key}.png", pred)
        pairs.append({"image": f"images/val/{key}.png", "mask": f"masks/val/{key}.png"})
    write_card(root, "crafted", CLASSES, PALETTE, {"val": pairs})
    return root, preds


@pytest.fixture(scope="session")
def trained(tmp_path_factory) -> dict:
    """A 1-epoch UNet/resnet18 on 8+4 synthetic 60x80 scenes (crop 32x32): paths of data and checkpoint."""
    from segcli.cli import main

    base = tmp_path_factory.mktemp("trained")
    data, run = base / "syn", base / "run"
    for argv in (["prepare", "synthetic", "--out", data, "--num-images", "12", "synthetic.height=60", "synthetic.width=80"],
                 ["train", f"data.root={data}", "trainer.max_epochs=1", "data.num_workers=0", "augment.crop_size=[32,32]",
                  "data.batch_size=4", "trainer.enable_progress_bar=false", "trainer.log_every_n_steps=1", "--run-dir", run]):
        with pytest.raises(SystemExit) as exc:
            main([str(a) for a in argv])
        assert exc.value.code in (0, None)
    ckpt = run / "checkpoints" / "best.ckpt"
    assert ckpt.is_file()
    return {"data": data, "ckpt": ckpt, "run": run}


def load_json(path: Path) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def _runs(flags) -> list[tuple[int, int]]:
    """[start, end) of each run of True in a 1-D sequence."""
    runs, start = [], None
    for i, on in enumerate(list(flags) + [False]):
        if on and start is None:
            start = i
        elif not on and start is not None:
            runs.append((start, i))
            start = None
    return runs


def panel_boxes(panel: np.ndarray) -> list[tuple[int, int, int, int]]:
    """(top, bottom, left, right) of the four pictures of a `--worst` panel, left to right, found on its white canvas:
    the pictures' rows are the longest run of rows with ink (text lines are a few pixels high, apart), and in them
    the four widest runs of inked columns."""
    top, bottom = max(_runs((panel != 255).any(axis=(1, 2))), key=lambda r: r[1] - r[0])
    columns = sorted(_runs((panel[top:bottom] != 255).any(axis=(0, 2))), key=lambda r: r[1] - r[0])[-4:]
    return [(top, bottom, left, right) for left, right in sorted(columns)]
