"""Image decoding ahead of the model, so the forward pass never waits on disk.

Decoding runs in a small pool of threads: OpenCV's imdecode/cvtColor release the GIL, so threads
decode in parallel with the forward pass. Threads rather than forked DataLoader processes: a
process forked from one whose OpenCV thread pool has already run can deadlock inside OpenCV
(seen here when predict ran after other OpenCV work in the same process). Images arrive in input
order; an unreadable one arrives as its error message.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator, Sequence

import numpy as np

from segcli.errors import DataError
from segcli.inference.io import read_image


def _read(path, channels: int = 3, value_range=None) -> tuple[np.ndarray | None, str | None]:
    try:
        return read_image(path, channels, value_range), None
    except DataError as err:
        return None, err.message


def decode(paths: Sequence, workers: int = 2, prefetch: int = 4,
           channels: int = 3, value_range=None) -> Iterator[tuple[int, np.ndarray | None, str | None]]:
    """(index, (H, W, C) uint8 image or None, error message or None) for each path, in order; C = `channels`
    (3: RGB; another count: the channels as stored, see segcli.inference.io.read_image); value_range: how deeper
    images map onto 0..255 (the model's image_range).

    `workers` threads decode up to `workers * prefetch` images ahead (0: decode in the calling thread).
    """
    paths = list(paths)
    if workers <= 0 or len(paths) <= 1:
        for index, path in enumerate(paths):
            yield (index, *_read(path, channels, value_range))
        return
    ahead = max(1, workers * prefetch)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="segcli-decode") as pool:
        pending: deque = deque()
        next_index = 0
        while next_index < len(paths) or pending:
            while next_index < len(paths) and len(pending) < ahead:
                pending.append((next_index, pool.submit(_read, paths[next_index], channels, value_range)))
                next_index += 1
            index, future = pending.popleft()
            yield (index, *future.result())
