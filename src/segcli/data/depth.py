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
        self.example: dict[str, str] = {}  # dtype name → the first such image's name (in the order first seen)
        self.pixels = 0  # deeper images' values (finite ones)
        # each end of the range: the pixels holding exactly that value, the nearest other value, and an image holding
        # it (a no-data value such as -9999 or 65535 sits far from the rest and stretches the range: no_data())
        self.ends = {"low": [0, math.inf, ""], "high": [0, -math.inf, ""]}

    def add(self, array: np.ndarray, name: str = "") -> None:
        self.example.setdefault(array.dtype.name, name)
        if array.dtype == np.uint8:
            self.shallow += 1
            return
        self.deep[array.dtype.name] = self.deep.get(array.dtype.name, 0) + 1
        values = array[np.isfinite(array)] if array.dtype.kind == "f" else array
        if values.size:
            self.pixels += values.size
            self._end("low", values, float(values.min()), name)
            self._end("high", values, float(values.max()), name)

    def _end(self, end: str, values: np.ndarray, extreme: float, name: str) -> None:
        """Fold one image's smallest (end 'low') or largest value into that end of the range. The image's pixels at
        that value count as a fill when they are 0.5% of its pixels or more. Only an image that reaches the end so far
        is looked at again (its pixels at that value, and the nearest other value)."""
        low = end == "low"
        pick = min if low else max
        tracked, current = self.ends[end], self.low if low else self.high
        if pick(extreme, current) != extreme:  # inside the range so far: no pass over its pixels
            tracked[1] = pick(tracked[1], extreme)
            return
        pixels = int(np.count_nonzero(values == extreme))
        pixels = pixels if pixels >= 0.005 * values.size else 0  # a few pixels: no fill
        inside = values[values > extreme] if low else values[values < extreme]
        if inside.size:
            nearest = float(inside.min()) if low else float(inside.max())
        else:
            nearest = math.inf if low else -math.inf
        if extreme == current:
            if pixels and not tracked[0]:
                tracked[2] = name  # the first image it fills
            tracked[0] += pixels
            tracked[1] = pick(tracked[1], nearest)
        else:  # a new end: the old one is now an inside value
            self.ends[end] = [pixels, pick(nearest, current), name]
            setattr(self, end, extreme)

    def no_data(self) -> str | None:
        """What to say when an end of the dataset's values is one value held by many pixels (0.5% or more) without
        which the chosen range would be less than half as wide: a no-data fill (-9999, 65535) that leaves the data
        few grey levels; None otherwise."""
        chosen = self.value_range()
        if chosen is None or self.low > self.high:
            return None
        (low_pixels, above, low_name), (high_pixels, below, high_name) = self.ends["low"], self.ends["high"]
        inner_low = above if low_pixels >= 0.005 * self.pixels and math.isfinite(above) else self.low
        inner_high = below if high_pixels >= 0.005 * self.pixels and math.isfinite(below) else self.high
        if inner_low > inner_high:  # two values only
            return None
        without = self._rule(inner_low, inner_high)
        if 2 * (without[1] - without[0]) > chosen[1] - chosen[0]:
            return None
        fills = [(value, pixels, name) for value, pixels, name, moved in
                 ((self.low, low_pixels, low_name, inner_low != self.low and without[0] != chosen[0]),
                  (self.high, high_pixels, high_name, inner_high != self.high and without[1] != chosen[1])) if moved]
        levels = 255 * (inner_high - inner_low) / (chosen[1] - chosen[0])
        levels = f"about {round(levels)} grey levels" if levels >= 1.5 else "less than two grey levels"
        said = "; ".join(f"{value:g} fills {100 * pixels / self.pixels:.1f}% of the pixels (e.g. {name})"
                         for value, pixels, name in fills)
        return (f"{said}, apart from the other values ({inner_low:g}..{inner_high:g}): a no-data value? It stretches "
                f"image_range to [{chosen[0]:g}, {chosen[1]:g}], which leaves the data {levels}; "
                f"prepare again with image_range=[{without[0]:g},{without[1]:g}] (no-data then reads as 0 or 255)")

    def value_range(self) -> list[float] | None:
        """[low, high] for the card, or None when every image is 8-bit."""
        if not self.deep:
            return None
        return self._rule(*((0.0, 0.0) if self.low > self.high else (self.low, self.high)))

    def _rule(self, low: float, high: float) -> list[float]:
        """The range for deeper images whose values span low..high (the module's table)."""
        if set(self.deep) == {"uint16"}:
            return [0.0, float(2 ** max(8, int(high).bit_length()) - 1)]
        if low >= 0 and high <= 1:
            return [0.0, 1.0]
        if low >= 0 and high <= 2:  # not 8-bit levels: [0, 255] would leave these images all but black
            return [0.0, high]
        if low >= 0 and high <= 255:
            return [0.0, 255.0]
        return [low, high if high > low else low + 1]

    def mixed(self, value_range: list[float] | None = None) -> str | None:
        """What to say when 8-bit images sit beside deeper ones (they read differently), or integer images beside
        floating-point ones (one range maps both: 16-bit values 0..4000 beside floats 0..3.3 left the floats black),
        else None. value_range: the range the images are read through (a given one), else the data's."""
        value_range = value_range or self.value_range()
        floats = {d: n for d, n in self.deep.items() if np.dtype(d).kind == "f"}
        ints = {d: n for d, n in self.deep.items() if d not in floats}
        if not self.shallow and floats and ints:
            return (f"{sum(ints.values())} {'/'.join(sorted(ints))} image(s) (e.g. {self._first(ints)}) beside "
                    f"{sum(floats.values())} {'/'.join(sorted(floats))} one(s) (e.g. {self._first(floats)}): both are "
                    f"mapped from one image_range {value_range}, so integer levels and floating-point values are "
                    "read at one scale; convert them to one depth")
        if not (self.shallow and self.deep):
            return None
        return (f"{self.shallow} 8-bit image(s) (e.g. {self.example['uint8']}) beside {sum(self.deep.values())} "
                f"{'/'.join(sorted(self.deep))} one(s) (e.g. {self._first(self.deep)}): the 8-bit ones are read as they are, "
                f"the others mapped from image_range {value_range}; convert them to one depth")

    def _first(self, dtypes) -> str:
        """The first image read of any of `dtypes` (dtype names)."""
        return next(name for dtype, name in self.example.items() if dtype in dtypes)


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
