"""Datasets with extreme class distributions: a class named but in no image, more class names than fit a file name."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


def _folder_pairs(root: Path, masks: list[np.ndarray]) -> tuple[Path, Path]:
    """images/ and masks/ of one PNG pair per mask ((H, W) uint8 ids); the image is the mask in colour."""
    import cv2

    images, labels = root / "images", root / "masks"
    images.mkdir(parents=True)
    labels.mkdir(parents=True)
    for i, mask in enumerate(masks):
        grey = (mask.astype(np.int64) * 37 % 256).astype(np.uint8)
        cv2.imwrite(str(images / f"x{i}.png"), np.repeat(grey[..., None], 3, 2))
        cv2.imwrite(str(labels / f"x{i}.png"), mask)
    return images, labels


def _prepare(tmp_path: Path, masks: list[np.ndarray], classes: str, capsys) -> tuple[int, str, Path]:
    from helpers_train import segcli

    images, labels = _folder_pairs(tmp_path / "raw", masks)
    out = tmp_path / "ds"
    code, _, err = segcli(["prepare", "folder", "--images", images, "--masks", labels, "--classes", classes,
                           "--val-fraction", "0.25", "--seed", "0", "--out", out], capsys)
    return code, err, out


def _square(value: int, size: int = 16) -> np.ndarray:
    mask = np.zeros((size, size), np.uint8)
    mask[4:10, 4:10] = value
    return mask


def test_auto_class_weights_train_the_focal_term_of_a_class_absent_from_train(tmp_path, capsys):
    """A class named but in no image has weight 0 on the card; with loss=focal loss.class_weights=auto that 0 left
    its one-vs-rest term out, so its logit was never trained (25 epochs on such a dataset: eval predicted the absent
    class on 1,013 of 2,048 val pixels, against 69 unweighted)."""
    import torch

    from segcli.data.card import load_card
    from segcli.models.losses import build_loss

    code, err, root = _prepare(tmp_path, [_square(1) for _ in range(4)], "bg,fg,never", capsys)
    assert code == 0, err
    assert load_card(root).stats["class_weights"][2] == 0.0  # the card keeps its documented 0 for an absent class
    for power in (1.0, 0.5):
        loss = build_loss({"terms": {"focal": 1.0}, "class_weights": "auto", "class_weight_power": power,
                           "params": {"focal": {"gamma": 2.0}}}, 3, 255, str(root))
        logits = torch.zeros(1, 3, 8, 8, requires_grad=True)
        target = torch.zeros(1, 8, 8, dtype=torch.long)
        target[0, 2:4, 2:4] = 1
        value = loss(logits, target)
        value.backward()
        assert torch.isfinite(value)
        # the absent class's logit is pushed down at every pixel, as the unweighted focal loss pushes it
        assert (logits.grad[0, 2] > 0).all(), logits.grad[0, 2]


def test_auto_class_weights_weigh_a_class_absent_from_train_1_at_any_power(tmp_path, capsys):
    """The classes with train pixels keep the card's weights raised to the power; the absent one weighs 1 (the median
    class's weight), not 0 (0 ** 0.5)."""
    from segcli.data.card import load_card
    from segcli.models.losses import resolve_class_weights

    code, err, root = _prepare(tmp_path, [_square(1) for _ in range(4)], "bg,fg,never", capsys)
    assert code == 0, err
    card = load_card(root).stats["class_weights"]
    for power in (1.0, 0.5):
        weights = resolve_class_weights("auto", 3, str(root), power)
        assert weights[:2] == pytest.approx([w ** power for w in card[:2]]) and weights[2] == 1.0


def test_prepare_takes_150_class_names_given_inline(tmp_path, capsys):
    """--classes bg,c1,…,c149 (853 characters) was tried as a file name first: 'File name too long', exit 3."""
    from segcli.data.card import load_card

    names = ["bg", *(f"c{i}" for i in range(1, 150))]
    masks = [_square(c) for c in (1, 40, 80, 149)]
    code, err, root = _prepare(tmp_path, masks, ",".join(names), capsys)
    assert code == 0, err
    assert load_card(root).classes == names


def test_train_names_the_classes_without_a_train_pixel(tmp_path, capsys):
    """A class named on the card but in no train mask cannot be learnt; only prepare's lint said so (class_missing),
    which a run started later did not repeat. train's first lines name it; a card whose classes all occur: no note."""
    from helpers_train import segcli, tiny

    code, err, root = _prepare(tmp_path, [_square(1) for _ in range(4)], "bg,fg,never", capsys)
    assert code == 0, err
    code, _, err = segcli(["train", *tiny(root, "trainer.max_epochs=1", "final_eval=false"), "--run-dir",
                           tmp_path / "run"], capsys)
    assert code == 0, err
    assert ("train: note: 1 class(es) have no pixel in the train split 'train' (never): the model cannot learn them; "
            "label some of their pixels, or prepare the dataset without them") in err
    code, err, every = _prepare(tmp_path / "b", [_square(1 + i % 2) for i in range(8)], "bg,fg,more", capsys)
    assert code == 0, err
    code, _, err = segcli(["train", *tiny(every, "trainer.max_epochs=1", "final_eval=false"), "--run-dir",
                           tmp_path / "run2"], capsys)
    assert code == 0 and "no pixel in the train split" not in err, err
