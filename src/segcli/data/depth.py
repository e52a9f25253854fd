"""The card's image_range: how images stored deeper than 8 bits a channel are read.

Every stage feeds the network 8 bits a channel. An image stored deeper (16-bit, 32-bit, floating point)
is mapped linearly from the dataset's image_range [low, high] onto 0..255, so that the values the
dataset uses fill the 8 bits: a 12-bit microscope image keeps 256 grey levels instead of the 16 that
value / 257 leaves. prepare chooses the range from the deeper images it reads (8-bit images are read as
they are, whatever the range):

    unsigned 16-bit               [0, 2**bits - 1], bits of the largest value (at least 8): 12-bit → [0, 4095]
    other depths, values in 0..1  [0, 1]
    values in 0..2                [0, largest] (reflectance a little above 1: bright clouds, specular glints)
    values in 0..255              [0, 255]
    anything else                 [smallest, largest] (signed values, e.g. CT numbers)

Checkpoints and exported models carry the range (meta["image_range"]), so predict reads new images alike.
"""

from __future__ import annotations

import math

import numpy as np


class DepthRange:
    """The range over the images of a dataset, added one decoded image at a time."""

    def __init__(self) -> None:
        self.shallow = 0  # 8-bit images
        self.deep: dict[str, int] = {}  # images per deeper dtype
        self.low, self.high = math.inf, -math.inf
        self.example: dict[bool, str] = {}  # deep? → the first such image's name

    def add(self, array: np.ndarray, name: str = "") -> None:
        self.example.setdefault(array.dtype != np.uint8, name)
        if array.dtype == np.uint8:
            self.shallow += 1
            return
        self.deep[array.dtype.name] = self.deep.get(array.dtype.name, 0) + 1
        values = array[np.isfinite(array)] if array.dtype.kind == "f" else array
        if values.size:
            self.low, self.high = min(self.low, float(values.min())), max(self.high, float(values.max()))

    def value_range(self) -> list[float] | None:
        """[low, high] for the card, or None when every image is 8-bit."""
        if not self.deep:
            return None
        low, high = (0.0, 0.0) if self.low > self.high else (self.low, self.high)
        if set(self.deep) == {"uint16"}:
            return [0.0, float(2 ** max(8, int(high).bit_length()) - 1)]
        if low >= 0 and high <= 1:
            return [0.0, 1.0]
        if low >= 0 and high <= 2:  # not 8-bit levels: [0, 255] would leave these images all but black
            return [0.0, high]
        if low >= 0 and high <= 255:
            return [0.0, 255.0]
        return [low, high if high > low else low + 1]

    def mixed(self) -> str | None:
        """What to say when 8-bit images sit beside deeper ones (they read differently), else None."""
        if not (self.shallow and self.deep):
            return None
        return (f"{self.shallow} 8-bit image(s) (e.g. {self.example[False]}) beside {sum(self.deep.values())} "
                f"{'/'.join(sorted(self.deep))} one(s) (e.g. {self.example[True]}): the 8-bit ones are read as they are, "
                f"the others mapped from image_range {self.value_range()}; convert them to one depth")


def scale_stats(mean: np.ndarray, std: np.ndarray, value_range: list[float] | None) -> tuple[np.ndarray, np.ndarray]:
    """A deeper image's channel mean/std (in its stored values) in the [0, 1] units of the card's stats."""
    low, high = value_range if value_range else (0.0, 255.0)
    return (mean - low) / (high - low), std / (high - low)


def check_range(value, where: str) -> list[float] | None:
    """A dataset card's image_range as [low, high] floats (None when absent); anything else is a ValueError
    naming `where`."""
    if value is None:
        return None
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{where}={value!r}: give [low, high]") from None
    if not (math.isfinite(low) and math.isfinite(high) and high > low):
        raise ValueError(f"{where}=[{low:g}, {high:g}]: give finite values with low < high")
    return [low, high]
