"""Label-safe training transforms (torchvision.transforms.v2): geometry hits image and mask alike.

Input/output: image (3, H, W) uint8 tv_tensors.Image, mask (H, W) tv_tensors.Mask of ids.
Masks are only ever resized with nearest-neighbour and padded with the ignore index.
"""

from __future__ import annotations

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2


class RandomScale(torch.nn.Module):
    """Rescale image and mask by a factor drawn uniformly from `scale` (bilinear / nearest)."""

    def __init__(self, scale: tuple[float, float]):
        super().__init__()
        self.low, self.high = float(scale[0]), float(scale[1])

    def forward(self, image, mask):
        if self.low == self.high == 1.0:
            return image, mask
        factor = float(torch.empty(1).uniform_(self.low, self.high))
        h, w = image.shape[-2:]
        size = [max(1, round(h * factor)), max(1, round(w * factor))]
        image = v2.functional.resize(image, size, interpolation=v2.InterpolationMode.BILINEAR, antialias=True)
        mask = v2.functional.resize(mask, size, interpolation=v2.InterpolationMode.NEAREST_EXACT)
        return image, mask


def train_transform(augment: dict, ignore_index: int):
    """(image, mask) → (image, mask) callable for the training split."""
    steps = [RandomScale(tuple(augment.get("scale") or (1.0, 1.0)))]
    crop = augment.get("crop_size")
    if crop:
        fill = {tv_tensors.Image: 0, tv_tensors.Mask: ignore_index}
        steps.append(v2.RandomCrop(tuple(int(c) for c in crop), pad_if_needed=True, fill=fill))
    if float(augment.get("hflip", 0.0)) > 0:
        steps.append(v2.RandomHorizontalFlip(float(augment["hflip"])))
    return v2.Compose(steps)
