"""data.cache: decoded images and masks kept in memory after their first read."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml
from helpers_data import prepared_folder

from segcli.config import conf_dir
from segcli.data.card import load_card
from segcli.errors import ConfigError


@pytest.fixture
def prepared(tmp_path, rng, run_cli):
    """A prepared folder dataset of 10 pairs of 40×48 images."""
    return load_card(prepared_folder(tmp_path, rng, run_cli, 10, 40, 48, block=8, val_fraction=0.2))


def _counting_reads(monkeypatch) -> list:
    import segcli.data.dataset as dataset

    calls = []
    real = dataset.read_image
    monkeypatch.setattr(dataset, "read_image", lambda path, *args: calls.append(path) or real(path, *args))
    return calls


def test_cached_dataset_decodes_each_file_once_and_gives_the_same_items(prepared, monkeypatch):
    from segcli.data.dataset import SegDataset

    calls = _counting_reads(monkeypatch)
    cached, plain = SegDataset(prepared, "train", cache=True), SegDataset(prepared, "train", cache=False)
    for _ in range(3):
        for i in range(len(cached)):
            a, b = cached[i], plain[i]
            assert torch.equal(a["image"], b["image"]) and torch.equal(a["mask"], b["mask"])
    assert len(calls) == len(cached) + 3 * len(plain)  # the cached set read each file once, the plain one every time


def test_augmentation_never_alters_the_cached_arrays(prepared):
    """Every preset's transforms (crops, jitter, noise, fog, JPEG) work on copies: the cache keeps the decoded pixels."""
    from segcli.data.dataset import SegDataset
    from segcli.data.transforms import train_transform
    from segcli.inference.io import read_image, read_mask

    for name in ("none", "light", "strong", "robust"):
        augment = {**yaml.safe_load((conf_dir() / "augment" / f"{name}.yaml").read_text()), "crop_size": [32, 32]}
        dataset = SegDataset(prepared, "train", train_transform(augment, prepared.ignore_index), cache=True)
        batches = [torch.utils.data.default_collate([dataset[i] for i in range(len(dataset))]) for _ in range(3)]
        for batch in batches:  # what a training step does to a batch in place must not reach the cache either
            batch["image"].zero_(), batch["mask"].zero_()
        for i, (image_path, mask_path) in enumerate(dataset.pairs):
            image, mask = dataset.cache[i]
            assert np.array_equal(image, read_image(image_path)), (name, image_path)
            assert np.array_equal(mask, read_mask(mask_path)), (name, mask_path)


def test_cache_decision(prepared, monkeypatch):
    import segcli.data.datamodule as datamodule

    decide = datamodule.cache_decision
    count = len(prepared.splits["train"])
    decoded = prepared.stats["splits"]["train"]["pixels"] * (3 + 2)
    monkeypatch.setattr(datamodule, "memory_bytes", lambda: 8 * decoded)  # exactly one copy fits
    assert decide("auto", prepared, "train", count, 3, workers=0)
    assert decide("auto", prepared, "train", count, 3, workers=1)
    assert not decide("auto", prepared, "train", count, 3, workers=2)  # one copy per loader process
    assert decide("auto", prepared, "train", count // 2, 3, workers=2)  # a fold of half the split
    assert not decide("auto", prepared, "train", count, 4, workers=0)  # 4 channels need more
    assert decide(True, prepared, "train", count, 3, workers=8) and decide("true", prepared, "train", count, 3, 8)
    assert not decide(False, prepared, "train", count, 3, workers=0)
    stats = prepared.stats.pop("splits")  # a split without statistics: its first image stands for all
    assert decide("auto", prepared, "train", count, 3, workers=1)
    assert not decide("auto", prepared, "train", count, 3, workers=2)
    prepared.stats["splits"] = stats
    monkeypatch.setattr(datamodule, "memory_bytes", lambda: 0)  # the OS does not say: auto does not cache
    assert not decide("auto", prepared, "train", count, 3, workers=0)
    with pytest.raises(ConfigError, match=r"data.cache='sometimes': give auto, true or false"):
        decide("sometimes", prepared, "train", count, 3, workers=0)


def test_datamodule_caches_train_and_val_on_auto(prepared):
    from segcli.data.datamodule import SegDataModule

    data = {"root": str(prepared.root), "train_split": "train", "val_split": "val", "batch_size": 2,
            "val_batch_size": 1, "num_workers": 0}
    module = SegDataModule({**data, "cache": "auto"}, {"crop_size": [16, 16]}, card=prepared)
    module.setup()
    assert module.train_set.cache is not None and module.val_set.cache is not None
    next(iter(module.train_dataloader()))
    assert len(module.train_set.cache) == 2  # filled as items are read
    module = SegDataModule({**data, "cache": False}, {"crop_size": [16, 16]}, card=prepared)
    module.setup()
    assert module.train_set.cache is None and module.val_set.cache is None


def test_cache_auto_stays_within_a_control_group_memory_limit(prepared, monkeypatch, tmp_path):
    """A container or a Slurm job (--mem) limits memory below the machine's: auto sized the cache from the machine's
    physical memory, so a job on a large node cached far more than its limit allows and was killed for memory."""
    import segcli.data.datamodule as datamodule

    count = len(prepared.splits["train"])
    decoded = prepared.stats["splits"]["train"]["pixels"] * (3 + 2)
    v2, v1 = tmp_path / "memory.max", tmp_path / "memory.limit_in_bytes"
    monkeypatch.setattr(datamodule, "CGROUP_LIMITS", (str(v2), str(v1)))
    v2.write_text("max\n")  # no limit
    v1.write_text("9223372036854771712\n")  # cgroup v1's "no limit"
    assert datamodule.cache_decision("auto", prepared, "train", count, 3, workers=0)
    v2.write_text(f"{4 * decoded}\n")  # the split fits in the limit, but not in an eighth of it
    assert datamodule.memory_bytes() == 4 * decoded
    assert not datamodule.cache_decision("auto", prepared, "train", count, 3, workers=0)
    v2.unlink()
    v1.write_text(f"{4 * decoded}\n")
    assert not datamodule.cache_decision("auto", prepared, "train", count, 3, workers=0)
