"""SegDataset items through the training transforms: the mask's fill (padding, rotation) is the card's ignore_index."""

from __future__ import annotations

import pytest
import torch
import yaml
from helpers_data import blocks, prepared_folder, write_grey

from segcli.config import conf_dir
from segcli.data.card import load_card
from segcli.data.dataset import SegDataset
from segcli.data.transforms import train_transform
from segcli.errors import DataError


def test_an_8_bit_mask_is_padded_with_an_ignore_index_above_255(tmp_path, rng, run_cli):
    """A card whose ignore_index was changed by hand to 1000 over 8-bit masks (lint passes): crops larger than the
    images are padded with 1000 in the mask, never a wrapped-around byte or a crash."""
    out = prepared_folder(tmp_path, rng, run_cli, 4, 20, 30, block=5, val_fraction=0.25)
    card_path = out / "dataset.yaml"
    card_path.write_text(card_path.read_text().replace("ignore_index: 255", "ignore_index: 1000"))
    card = load_card(out)
    assert card.ignore_index == 1000
    augment = {**yaml.safe_load((conf_dir() / "augment" / "strong.yaml").read_text()), "crop_size": [48, 64]}
    dataset = SegDataset(card, "train", train_transform(augment, card.ignore_index))
    for seed in range(4):
        torch.manual_seed(seed)
        item = dataset[seed % len(dataset)]
        assert item["mask"].shape == (48, 64) and item["mask"].dtype == torch.int64
        values = set(item["mask"].unique().tolist())
        assert 1000 in values and values <= {0, 1, 2, 1000}
        # the padding (more than half of the crop: the image is 20×30 at most 2× scale) is ignore, not a class
        assert int((item["mask"] == 1000).sum()) >= 48 * 64 - 40 * 60


def test_a_mask_resized_after_prepare_is_named_with_both_sizes_as_width_by_height(tmp_path, rng, run_cli):
    """The error printed the mask's size as a tuple '(30, 20)' (width, height, unlabelled) and not the image's."""
    out = prepared_folder(tmp_path, rng, run_cli, 4, 20, 30, block=5, val_fraction=0.25)
    card = load_card(out)
    image, mask = card.pairs("train")[0]
    write_grey(mask, blocks(rng, 24, 30, [0, 1], block=6).astype("uint8"))
    with pytest.raises(DataError) as err:
        SegDataset(card, "train")[0]
    assert err.value.message == (f"{mask}: 30x24 (width x height), its image {image} 30x20; run `segcli prepare "
                                 "lint` on the dataset")
