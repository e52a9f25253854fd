"""Image decoding in DataLoader worker processes, so the model never waits on disk.

Each worker has one torch and one OpenCV thread; the main process keeps every core for the
forward pass. Images arrive in input order; an unreadable one arrives as its error message.
"""

from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np

from segcli.errors import DataError
from segcli.inference.io import read_image


class DecodeDataset:
    """Map-style dataset: index → (index, (H, W, 3) uint8 RGB image or None, error message or None)."""

    def __init__(self, paths: Sequence):
        self.paths = list(paths)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        try:
            return index, read_image(self.paths[index]), None
        except DataError as err:
            return index, None, err.message


def _init_worker(_: int) -> None:
    import cv2

    cv2.setNumThreads(1)


def decode(paths: Sequence, workers: int = 2, prefetch: int = 4) -> Iterator[tuple[int, np.ndarray | None, str | None]]:
    """(index, image, error) for each path, in order; decoded by `workers` processes (0: in this one)."""
    dataset = DecodeDataset(paths)
    if workers <= 0 or len(dataset) <= 1:
        for index in range(len(dataset)):
            yield dataset[index]
        return
    from torch.utils.data import DataLoader

    loader = DataLoader(dataset, batch_size=None, shuffle=False, num_workers=min(workers, len(dataset)),
                        prefetch_factor=prefetch, worker_init_fn=_init_worker)
    for index, image, error in loader:  # images come back as tensors in shared memory
        yield int(index), (image.numpy() if image is not None else None), error
