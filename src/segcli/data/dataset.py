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
    """Item i → {"image": (C, H, W) uint8, "mask": (H, W) int64 ids, "index": i}; C = `channels`
    (3 = RGB, 1 = grayscale, other = multispectral as stored, see segcli.inference.io.read_image).

    Images are decoded with OpenCV (BGR → RGB, EXIF orientation applied) and stay uint8 here;
    normalisation happens on the device (segcli.inference.predictor.normalize), so training,
    validation and inference normalise in exactly one place. `indices` picks entries of the split
    (e.g. one cross-validation fold); None = all of them.

    cache=True keeps every decoded (image, mask) pair in memory after its first read, so later epochs
    skip PNG/JPEG decoding (each loader process holds its own copy). Transforms never write into
    their input, so the cached arrays stay as decoded.
    """

    def __init__(self, card: DatasetCard, split: str, transform: Callable | None = None,
                 indices: list[int] | None = None, channels: int = 3, cache: bool = False):
        pairs = card.pairs(split)
        self.indices = list(range(len(pairs))) if indices is None else list(indices)
        self.pairs = [pairs[i] for i in self.indices]
        if not self.pairs:
            raise DataError(f"{card.path}: split '{split}' is empty"
                            f"{'' if indices is None else ' for the selected fold'}")
        self.transform = transform
        self.channels = int(channels)
        self.image_range = card.image_range  # how deeper-than-8-bit images map onto 0..255
        self.num_classes, self.ignore_index = card.num_classes, int(card.ignore_index)
        self.cache: dict[int, tuple[np.ndarray, np.ndarray]] | None = {} if cache else None

    def __len__(self) -> int:
        return len(self.pairs)

    def _read(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        if self.cache is not None and index in self.cache:
            return self.cache[index]
        image_path, mask_path = self.pairs[index]
        image = read_image(image_path, self.channels, self.image_range)
        mask = read_mask(mask_path)
        if image.shape[:2] != mask.shape:
            raise DataError(f"{mask_path}: {mask.shape[1]}x{mask.shape[0]} (width x height), its image {image_path} "
                            f"{image.shape[1]}x{image.shape[0]}; run `segcli prepare lint` on the dataset")
        if int(mask.max(initial=0)) >= self.num_classes:  # e.g. a mask edited after prepare linted it
            values = np.unique(mask[mask >= self.num_classes])
            stray = [int(v) for v in values if v != self.ignore_index]
            if stray:
                raise DataError(f"{mask_path}: class id(s) {', '.join(map(str, stray[:5]))} outside the dataset's "
                                f"{self.num_classes} classes (0-{self.num_classes - 1}, ignore {self.ignore_index}); "
                                "fix the mask, or run `segcli prepare lint` on the dataset")
        if self.cache is not None:
            self.cache[index] = (image, mask)
        return image, mask

    def __getitem__(self, index: int) -> dict:
        image, mask = self._read(index)
        image_t = tv_tensors.Image(torch.from_numpy(image).permute(2, 0, 1))  # channels-last memory: fast uint8 resize
        # Padding and rotation fill the mask with ignore_index, so its dtype must hold that value: an 8-bit mask
        # under a card whose ignore_index is above 255 (a card edited by hand) is widened like a 16-bit one.
        wide = mask.dtype != np.uint8 or self.ignore_index > 255
        mask_t = tv_tensors.Mask(torch.from_numpy(mask.astype(np.int64) if wide else mask))
        if self.transform is not None:
            image_t, mask_t = self.transform(image_t, mask_t)
        return {"image": image_t.as_subclass(torch.Tensor), "mask": mask_t.as_subclass(torch.Tensor).long(),
                "index": index}
