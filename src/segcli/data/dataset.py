"""A torch Dataset over one split of a prepared dataset (its card)."""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torchvision import tv_tensors

from segcli.data.card import DatasetCard
from segcli.errors import DataError
from segcli.inference.io import read_image, read_mask


class SegDataset(torch.utils.data.Dataset):
    """Item i → {"image": (3, H, W) uint8, "mask": (H, W) int64 ids, "index": i}.

    Images stay uint8 here; normalisation happens on the device (segcli.inference.predictor.normalize),
    so training, validation and inference normalise in exactly one place.
    """

    def __init__(self, card: DatasetCard, split: str, transform: Callable | None = None):
        self.pairs = card.pairs(split)
        if not self.pairs:
            raise DataError(f"{card.root / 'dataset.yaml'}: split '{split}' is empty")
        self.transform = transform

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict:
        image_path, mask_path = self.pairs[index]
        image = read_image(image_path)
        mask = read_mask(mask_path)
        if image.shape[:2] != mask.shape:
            raise DataError(f"{mask_path}: size {mask.shape[::-1]} differs from its image {image_path}; re-run segcli prepare")
        image_t = tv_tensors.Image(torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1))
        mask_t = tv_tensors.Mask(torch.from_numpy(mask.astype(np.int64)))
        if self.transform is not None:
            image_t, mask_t = self.transform(image_t, mask_t)
        return {"image": image_t.as_subclass(torch.Tensor), "mask": mask_t.as_subclass(torch.Tensor), "index": index}
