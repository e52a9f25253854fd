"""Thousands of classes: eval's C x C confusion matrices, not the images, are what outgrows memory."""

from __future__ import annotations

import numpy as np

from helpers_eval import load_json, run_cli, write_card


def _many_classes(root, preds, n: int) -> None:
    from segcli.inference.io import write_png

    rng = np.random.default_rng(0)
    gt = rng.integers(0, n, (4, 6)).astype(np.uint16)
    write_png(root / "images" / "val" / "a.png", rng.integers(0, 255, (4, 6, 3), dtype=np.uint8))
    write_png(root / "masks" / "val" / "a.png", gt)
    write_png(preds / "a.png", gt)
    palette = [[i % 256, i // 256 % 256, 7] for i in range(n)]
    write_card(root, "many", [f"class {i}" for i in range(n)], palette, {"val": [{"image": "images/val/a.png",
                                                                                 "mask": "masks/val/a.png"}]},
               ignore_index=65535)  # above every class id (255 would be one: a card load_card refuses)


def test_too_many_classes_for_memory_names_the_class_count_not_the_images(tmp_path, capsys, monkeypatch):
    """70,000 classes failed after loading everything with 'out of memory (tried to allocate 36.5 GiB); large
    images: inference=slide ...': the 70,000 x 70,000 confusion matrix was the cause. Here memory is made small."""
    import segcli.data.datamodule as datamodule

    root, preds = tmp_path / "data", tmp_path / "preds"
    _many_classes(root, preds, 5000)
    monkeypatch.setattr(datamodule, "memory_bytes", lambda: 1 << 30)
    code, out, err = run_cli(["eval", "--predictions", preds, "--data", root, "--out", tmp_path / "out"], capsys)
    assert code == 2 and out == ""
    line = err.strip().splitlines()[-1]
    assert line.startswith(f"segcli: error: {root / 'dataset.yaml'}: 5,000 classes: ") and "confusion" in line, err
    assert "inference=slide" not in line and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_thousands_of_classes_are_evaluated(tmp_path, capsys):
    """A large but feasible class count is not refused, and its report files stay a reasonable size."""
    root, preds = tmp_path / "data", tmp_path / "preds"
    _many_classes(root, preds, 3000)
    code, _, err = run_cli(["eval", "--predictions", preds, "--data", root, "--out", tmp_path / "out"], capsys)
    assert code == 0, err
    assert load_json(tmp_path / "out" / "report.json")["aAcc"] == 1.0
    assert (tmp_path / "out" / "confusion.png").stat().st_size < 20 * 2**20
