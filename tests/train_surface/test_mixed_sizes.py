"""Whole-image training (augment=none) on images of different sizes: batches are padded, masks with ignore_index.
It failed with "internal error: RuntimeError: stack expects each tensor to be equal size" (exit 4)."""

from __future__ import annotations

import numpy as np
import torch
from helpers_surface import segcli

from segcli.data.datamodule import PadCollate


def test_pad_collate():
    a = {"image": torch.full((3, 2, 3), 7, dtype=torch.uint8), "mask": torch.ones(2, 3, dtype=torch.long), "index": 0}
    b = {"image": torch.full((3, 4, 2), 9, dtype=torch.uint8), "mask": torch.zeros(4, 2, dtype=torch.long), "index": 5}
    batch = PadCollate(255)([a, b])
    assert batch["image"].shape == (2, 3, 4, 3) and batch["mask"].shape == (2, 4, 3)
    assert batch["index"].tolist() == [0, 5]
    assert (batch["image"][0, :, :2, :3] == 7).all() and (batch["image"][0, :, 2:] == 0).all()
    assert (batch["mask"][0, :2, :3] == 1).all() and (batch["mask"][0, 2:] == 255).all()
    assert (batch["mask"][1, :, :2] == 0).all() and (batch["mask"][1, :, 2] == 255).all()
    same = PadCollate(255)([a, {**a, "index": 1}])
    assert torch.equal(same["image"][1], a["image"])


def test_whole_image_training_on_mixed_sizes(tmp_path):
    import cv2

    rng = np.random.default_rng(0)
    for k in range(8):
        h, w = (64, 80) if k % 2 else (72, 96)
        mask = np.zeros((h, w), np.uint8)
        mask[:, w // 2:] = 1
        (tmp_path / "i").mkdir(exist_ok=True)
        (tmp_path / "m").mkdir(exist_ok=True)
        cv2.imwrite(str(tmp_path / "i" / f"im{k}.png"), rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
        cv2.imwrite(str(tmp_path / "m" / f"im{k}.png"), mask)
    proc = segcli("prepare", "folder", "--images", tmp_path / "i", "--masks", tmp_path / "m", "--out", tmp_path / "ds",
                  "--val-fraction", "0.25")
    assert proc.returncode == 0, proc.stderr[-2000:]
    run = tmp_path / "run"
    proc = segcli("train", f"data.root={tmp_path / 'ds'}", "augment=none", "trainer.max_epochs=1", "data.batch_size=4",
                  "data.val_batch_size=2", "trainer.enable_progress_bar=false", "--run-dir", run)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (run / "checkpoints" / "best.ckpt").is_file() and (run / "eval" / "report.json").is_file()
