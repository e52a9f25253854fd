"""Rare-class sampling, cross-validation folds in the data module, and loss.class_weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers_data import blocks, random_image, write_grey, write_image

from segcli.data.card import load_card
from segcli.data.sampler import class_presence, repeat_factors
from segcli.inference.io import read_mask
from segcli.errors import ConfigError


def test_repeat_factors():
    presence = [[0]] * 18 + [[0, 1]] * 2  # class 1 in 10 % of the images
    weights = repeat_factors(presence, 2, threshold=0.4)
    assert np.allclose(weights[:18], 1.0) and np.allclose(weights[18:], 2.0)  # sqrt(0.4 / 0.1)
    assert np.allclose(repeat_factors(presence, 2, threshold=0.05), 1.0)  # nothing is rare below the threshold


@pytest.fixture
def folded(tmp_path, rng, run_cli):
    """A prepared folder dataset: 12 pairs, class 2 only in 2 of them, 3 folds."""
    for i in range(12):
        values = [0, 1, 2] if i in (4, 9) else [0, 1]
        write_image(tmp_path / "images" / f"i{i:02d}.png", random_image(rng, 16, 16))
        write_grey(tmp_path / "masks" / f"i{i:02d}.png", blocks(rng, 16, 16, values, block=4).astype(np.uint8))
    out = tmp_path / "out"
    code, _, _ = run_cli("prepare", "folder", "--images", tmp_path / "images", "--masks", tmp_path / "masks",
                         "--out", out, "--classes", "a,b,rare", "--val-fraction", "0.25", "--folds", "3")
    assert code == 0
    return load_card(out)


def test_presence_file_matches_the_masks(folded):
    stored = class_presence(folded, "train")
    (folded.root / "class_presence.json").unlink()
    assert class_presence(folded, "train") == stored


def test_datamodule_folds_and_rare_sampling(folded):
    from segcli.data.datamodule import SegDataModule

    augment = {"crop_size": [8, 8], "scale": [1.0, 1.0], "hflip": 0.5}
    data = {"root": str(folded.root), "train_split": "train", "val_split": "val", "batch_size": 2,
            "val_batch_size": 1, "num_workers": 0, "fold": 1, "rare_class_sampling": True, "rare_class_threshold": 0.5}
    module = SegDataModule(data, augment, card=folded)
    module.setup()
    folds = [e["fold"] for e in folded.splits["train"]]
    assert len(module.val_set) == folds.count(1) and len(module.train_set) == len(folds) - folds.count(1)
    assert not set(module.val_set.pairs) & set(module.train_set.pairs)
    batch = next(iter(module.train_dataloader()))
    assert batch["image"].shape == (2, 3, 8, 8) and batch["mask"].dtype == torch.int64
    assert module.sampler is not None and len(list(module.sampler)) == len(module.train_set)
    with pytest.raises(ConfigError, match=r"^data.fold=7: split 'train' has folds 0, 1, 2; choose one of them, or set "
                                          r"data.fold=null to train on every fold$"):
        SegDataModule({**data, "fold": 7}, augment, card=folded).setup()


@pytest.mark.parametrize("rare", [False, True])
def test_data_repeat_passes_over_the_train_split_several_times_per_epoch(folded, rare):
    from segcli.data.datamodule import SegDataModule

    augment = {"crop_size": [8, 8], "scale": [1.0, 1.0], "hflip": 0.5}
    data = {"root": str(folded.root), "train_split": "train", "val_split": "val",
            "val_batch_size": 1, "num_workers": 0, "rare_class_sampling": rare, "repeat": 3, "batch_size": 3}
    module = SegDataModule(data, augment, card=folded)
    module.setup()
    images = len(folded.splits["train"])
    seen = [int(i) for batch in module.train_dataloader() for i in batch["index"]]
    assert len(seen) == 3 * images and len(module.train_dataloader()) == images  # one epoch: three passes
    if not rare:
        assert sorted(seen) == sorted(list(range(images)) * 3)  # each image exactly three times
        assert seen[:images] != list(range(images))  # in one shuffled order, not pass after pass in order
    else:  # the rare images drawn more often, each image at least its rounded-down expected count
        counts = np.bincount(seen, minlength=images)
        assert counts.sum() == 3 * images and counts.min() >= 1 and set(seen) <= set(range(images)), counts
    assert len(module.val_set) == len(folded.splits["val"])  # validation is not repeated


def test_a_fold_the_card_lacks_fails_before_the_run_directory(folded, tmp_path, run_cli):
    """data.fold on a card without folds failed inside fit (after the run directory was made); abc was exit 4."""
    args = ["train", "trainer.max_epochs=1", "data.num_workers=0", "trainer.enable_progress_bar=false",
            "augment.crop_size=[8,8]", "--run-dir", tmp_path / "run"]
    unfolded = tmp_path / "plain"
    code, _, _ = run_cli("prepare", "folder", "--images", folded.root / "images" / "train", "--masks",
                         folded.root / "masks" / "train", "--out", unfolded, "--classes", "a,b,rare")
    assert code == 0
    for root, fold, text in [(unfolded, "0", "has no fold assignment"), (folded.root, "7", "data.fold=7"),
                             (folded.root, "abc", "data.fold='abc': give the index of a fold")]:
        code, _, err = run_cli(*args, f"data.root={root}", f"data.fold={fold}")
        assert code == 2 and text in err and "run directory" not in err, err
        assert not (tmp_path / "run").exists()


def test_class_weights_auto_list_and_errors(folded):
    from segcli.models.losses import WeightedLoss, resolve_class_weights

    auto = resolve_class_weights("auto", 3, str(folded.root))
    assert auto == folded.stats["class_weights"] and auto[2] > auto[0]  # the rare class weighs most
    soft = resolve_class_weights("auto", 3, str(folded.root), power=0.5)
    assert soft == pytest.approx([w ** 0.5 for w in auto])  # loss.class_weight_power=0.5: square roots
    with pytest.raises(ConfigError, match="class_weight_power"):
        resolve_class_weights("auto", 3, str(folded.root), power="strong")
    assert resolve_class_weights(None, 3, None) is None
    assert resolve_class_weights([1, 2, 3], 3, None) == [1.0, 2.0, 3.0]
    for bad in ([1, 2], "often", [-1, 1, 1]):
        with pytest.raises(ConfigError, match="class_weights"):
            resolve_class_weights(bad, 3, str(folded.root))
    loss = WeightedLoss({"ce": 1.0}, 255, class_weights=[0.0, 0.0, 1.0])
    logits = torch.zeros(1, 3, 2, 2)
    target = torch.tensor([[[0, 0], [1, 2]]])
    assert torch.isclose(loss(logits, target), torch.tensor(np.log(3.0), dtype=torch.float32))  # only class 2 counts


@pytest.mark.parametrize("cores, setting, expected", [(2, "auto", 0), (1, "auto", 0), (4, "auto", 2), (16, "auto", 8),
                                                      (2, 3, 3), (2, "0", 0)])
def test_loader_workers(monkeypatch, cores, setting, expected):
    """auto keeps worker processes off machines with <= 2 cores, where they slow training down."""
    import os

    from segcli.data.datamodule import loader_workers

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    assert loader_workers(setting) == expected


@pytest.mark.parametrize("setting", ["many", -1])
def test_loader_workers_rejects_nonsense(setting):
    from segcli.data.datamodule import loader_workers

    with pytest.raises(ConfigError, match="data.num_workers"):
        loader_workers(setting)


def test_presence_follows_a_card_edited_by_hand(folded):
    """Entries moved between splits by hand (sizes unchanged): the stored presence, a list per split, was trusted
    because its length still matched, so the sampler oversampled an image without the rare class."""
    import yaml

    from segcli.data.sampler import rare_class_sampler

    card = yaml.safe_load(folded.path.read_text())
    train, val = card["splits"]["train"], card["splits"]["val"]
    rare = next(i for i, ids in enumerate(class_presence(folded, "train")) if 2 in ids)
    train[rare], val[0] = val[0], train[rare]
    folded.path.write_text(yaml.safe_dump(card, sort_keys=False))
    edited = load_card(folded.root)
    truth = [[int(v) for v in np.unique(read_mask(mask)) if v != edited.ignore_index]
             for _, mask in edited.pairs("train")]
    assert class_presence(edited, "train") == truth
    weights = rare_class_sampler(edited, "train", list(range(len(truth))), 0.5).weights.tolist()
    assert [w > 1 for w in weights] == [2 in ids for ids in truth]


def test_repeat_factor_sampling_draws_each_image_its_expected_count_rounded():
    """torch's WeightedRandomSampler draws with replacement: with no rare class (every weight 1) an epoch left about
    a third of the images out (15 of 24 seen). Each image is now drawn floor(e) or ceil(e) times, e its expected
    count, and the remainders make up the epoch's length."""
    from segcli.data.sampler import RepeatFactorSampler

    torch.manual_seed(0)
    plain = RepeatFactorSampler(np.ones(24), 24)
    epochs = [list(plain) for _ in range(3)]
    assert all(sorted(e) == list(range(24)) for e in epochs) and epochs[0] != epochs[1] != epochs[2]
    weights = np.array([1.0] * 18 + [2.0, 3.1623])
    sampler = RepeatFactorSampler(weights, 40)
    expected = 40 * weights / weights.sum()
    total = np.zeros(20)
    for _ in range(400):
        counts = np.bincount(list(sampler), minlength=20)
        assert counts.sum() == len(sampler) == 40
        assert ((counts == np.floor(expected)) | (counts == np.ceil(expected))).all(), (counts, expected)
        total += counts
    assert np.allclose(total / 400, expected, atol=0.08)  # the rare images 2x and 3.16x the common ones
    assert list(RepeatFactorSampler(weights, 0)) == []


def test_presence_of_a_mask_edited_after_prepare_is_read_from_the_mask(folded):
    """class_presence.json was trusted after a hand edit of a mask: a class painted into every image kept the repeat
    factor of its one image (3.16), with no word from lint or train."""
    import os

    from segcli.data.sampler import rare_class_sampler

    pairs = folded.pairs("train")
    before = class_presence(folded, "train")
    stored = (folded.root / "class_presence.json").stat().st_mtime_ns
    for _, mask in pairs:
        ids = read_mask(mask).copy()
        ids[:4, :4] = 2  # the rare class in every training image now
        write_grey(mask, ids.astype(np.uint8))
        os.utime(mask, ns=(stored + 10**9, stored + 10**9))
    after = class_presence(folded, "train")
    assert after != before and all(2 in ids for ids in after)
    assert rare_class_sampler(folded, "train", list(range(len(pairs))), 0.5).weights.tolist() == [1.0] * len(pairs)
