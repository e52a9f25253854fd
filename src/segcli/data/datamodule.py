"""LightningDataModule reading a dataset card: cropped, augmented training batches; full-size validation."""

from __future__ import annotations

import lightning as L
import torch

from segcli.data.card import DatasetCard, load_card
from segcli.data.dataset import SegDataset
from segcli.data.transforms import train_transform


def _seed_worker(worker_id: int) -> None:
    import random

    import numpy as np

    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


class SegDataModule(L.LightningDataModule):
    def __init__(self, data_cfg: dict, augment_cfg: dict, card: DatasetCard | None = None):
        super().__init__()
        self.data_cfg = data_cfg
        self.augment_cfg = augment_cfg
        self.card = card or load_card(data_cfg["root"])

    def setup(self, stage: str | None = None) -> None:
        card = self.card
        self.train_set = SegDataset(card, self.data_cfg["train_split"], train_transform(self.augment_cfg, card.ignore_index))
        self.val_set = SegDataset(card, self.data_cfg["val_split"])

    def _loader(self, dataset, batch_size: int, shuffle: bool) -> torch.utils.data.DataLoader:
        workers = int(self.data_cfg["num_workers"])
        return torch.utils.data.DataLoader(
            dataset, batch_size=batch_size, shuffle=shuffle, drop_last=shuffle and len(dataset) > batch_size,
            num_workers=workers, persistent_workers=workers > 0, worker_init_fn=_seed_worker, pin_memory=torch.cuda.is_available(),
        )

    def train_dataloader(self):
        return self._loader(self.train_set, int(self.data_cfg["batch_size"]), shuffle=True)

    def val_dataloader(self):
        return self._loader(self.val_set, int(self.data_cfg["val_batch_size"]), shuffle=False)
