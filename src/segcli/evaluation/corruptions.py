"""Synthetic corruptions for robustness evaluation, severities 1..5, deterministic per image.

Definitions and severity parameters follow ImageNet-C (Hendrycks & Dietterich, ICLR 2019),
implemented with numpy/OpenCV. Random parts (noise, blur angle, fog pattern) come from a generator
seeded by (seed, image index, corruption, severity), so the same image is corrupted identically in
every run and by every process. Each function maps (H, W, 3) uint8 RGB → (H, W, 3) uint8 RGB; those not in RGB_ONLY
map (H, W, C) uint8 → (H, W, C) uint8 for any C (multispectral models).
"""

from __future__ import annotations

from typing import Callable

import cv2
import numpy as np

from segcli.console import counted
from segcli.errors import ConfigError

Corruption = Callable[[np.ndarray, int, np.random.Generator], np.ndarray]


def _to_uint8(x: np.ndarray) -> np.ndarray:
    """float image in [0, 1] → uint8 (rounded, clipped)."""
    return (np.clip(x, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def gaussian_noise(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Additive N(0, σ) noise, σ = 0.08 … 0.38 of the intensity range."""
    sigma = (0.08, 0.12, 0.18, 0.26, 0.38)[severity - 1]
    return _to_uint8(image / 255.0 + rng.normal(0.0, sigma, image.shape))


def brightness(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """HSV value channel raised by 0.1 … 0.5."""
    shift = (0.1, 0.2, 0.3, 0.4, 0.5)[severity - 1]
    hsv = cv2.cvtColor(image.astype(np.float32) / 255.0, cv2.COLOR_RGB2HSV)
    hsv[..., 2] = np.clip(hsv[..., 2] + shift, 0.0, 1.0)
    return _to_uint8(cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB))


def contrast(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Deviations from the per-channel mean scaled by 0.4 … 0.05."""
    factor = (0.4, 0.3, 0.2, 0.1, 0.05)[severity - 1]
    x = image / 255.0
    means = x.mean(axis=(0, 1), keepdims=True)
    return _to_uint8((x - means) * factor + means)


def motion_kernel(radius: int, sigma: float, angle_deg: float) -> np.ndarray:
    """(2r+1, 2r+1) float32 kernel: a one-sided line of Gaussian weights exp(-i²/2σ²), i = 0..r, at `angle`."""
    size = 2 * radius + 1
    kernel = np.zeros((size, size), np.float32)
    a = np.deg2rad(angle_deg)
    for i in range(radius + 1):
        y = radius + int(round(i * np.sin(a)))
        x = radius + int(round(i * np.cos(a)))
        kernel[y, x] += np.exp(-(i**2) / (2.0 * sigma**2))
    return kernel / kernel.sum()


def motion_blur(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Linear motion blur at a random angle in [-45°, 45°]; (radius, σ) = (10, 3) … (20, 15)."""
    radius, sigma = ((10, 3), (15, 5), (15, 8), (15, 12), (20, 15))[severity - 1]
    kernel = motion_kernel(radius, sigma, float(rng.uniform(-45.0, 45.0)))
    return cv2.filter2D(image, -1, kernel, borderType=cv2.BORDER_REFLECT).reshape(image.shape)  # (H, W, 1) stays so


def jpeg(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """JPEG re-encoding at quality 25 … 7."""
    quality = (25, 18, 15, 10, 7)[severity - 1]
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    return cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def plasma_fractal(size: int, decay: float, rng: np.random.Generator) -> np.ndarray:
    """(size, size) float64 diamond-square fractal in [0, 1]; size a power of two (ImageNet-C's fog pattern)."""
    grid = np.zeros((size, size))
    step, wibble = size, 100.0

    def wibbled_mean(total: np.ndarray) -> np.ndarray:
        return total / 4 + wibble * rng.uniform(-wibble, wibble, total.shape)

    while step >= 2:
        half = step // 2
        corners = grid[0:size:step, 0:size:step]
        squares = corners + np.roll(corners, -1, axis=0)
        squares = squares + np.roll(squares, -1, axis=1)
        grid[half:size:step, half:size:step] = wibbled_mean(squares)
        centres = grid[half:size:step, half:size:step]
        corners = grid[0:size:step, 0:size:step]
        grid[0:size:step, half:size:step] = wibbled_mean(centres + np.roll(centres, 1, axis=0)
                                                         + corners + np.roll(corners, -1, axis=1))
        grid[half:size:step, 0:size:step] = wibbled_mean(centres + np.roll(centres, 1, axis=1)
                                                         + corners + np.roll(corners, -1, axis=0))
        step //= 2
        wibble /= decay
    grid -= grid.min()
    return grid / max(grid.max(), 1e-12)


def fog(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """A plasma-fractal haze of strength 1.5 … 3 added, then the range renormalised."""
    strength, decay = ((1.5, 2.0), (2.0, 2.0), (2.5, 1.7), (2.5, 1.5), (3.0, 1.4))[severity - 1]
    h, w = image.shape[:2]
    size = 1 << max(1, int(np.ceil(np.log2(max(h, w)))))
    x = image / 255.0
    peak = x.max()
    x = x + strength * plasma_fractal(size, decay, rng)[:h, :w, None]
    return _to_uint8(x * peak / (peak + strength))


CORRUPTIONS: dict[str, Corruption] = {"brightness": brightness, "contrast": contrast, "gaussian_noise": gaussian_noise,
                                      "motion_blur": motion_blur, "jpeg": jpeg, "fog": fog}


def _words(names) -> list[str]:
    """'a,b' or a list → its non-empty names (a lone number, from `corruptions=3`, is one name: refused by name)."""
    items = str(names).split(",") if isinstance(names, (str, int, float)) else list(names or [])
    return [str(n).strip() for n in items if str(n).strip()]


def parse_corruptions(names) -> list[str]:
    """'brightness,fog' or a list → validated names (unknown ones fail with suggestions)."""
    from segcli.config import did_you_mean

    out = []
    for name in _words(names):
        if name == "all":
            out.extend(c for c in CORRUPTIONS if c not in out)
            continue
        if name not in CORRUPTIONS:
            raise ConfigError(f"unknown corruption '{name}'{did_you_mean(name, list(CORRUPTIONS))}; "
                              f"choose from {', '.join(CORRUPTIONS)} (or all)")
        if name not in out:
            out.append(name)
    return out


RGB_ONLY = ("brightness", "jpeg")  # HSV and JPEG are defined for 3 colour channels; the others act per channel


def for_channels(names: list[str], channels: int, asked) -> list[str]:
    """The corruptions of `names` for a model reading `channels`-channel images: all of them for RGB; for
    multispectral models those of RGB_ONLY are left out of `all` (with a note) and refused when named."""
    if channels == 3:
        return names
    left_out = [n for n in names if n in RGB_ONLY]
    named = [n for n in left_out if n in _words(asked)]
    if named:
        others = ", ".join(c for c in CORRUPTIONS if c not in RGB_ONLY)
        raise ConfigError(f"corruption '{named[0]}' needs RGB images, and this model reads "
                          f"{counted(channels, 'channel')}; choose from {others}")
    if left_out:
        from segcli.console import info

        info(f"eval: note: {', '.join(left_out)} left out: they need RGB images, this model reads "
             f"{counted(channels, 'channel')}")
    return [n for n in names if n not in RGB_ONLY]


def parse_severities(value) -> list[int]:
    """3, '1,3,5' or [1, 3] → severities, each in 1..5 (3.0 or null, from a Hydra override, are refused as such)."""
    if value is None:  # severity=null
        raise ConfigError("severity=null: give integers 1..5, e.g. --severity 3 or --severity 1,3,5")
    items = str(value).split(",") if isinstance(value, (int, float, str)) else list(value)
    try:
        out = [int(str(v).strip()) for v in items if str(v).strip()]
    except ValueError:
        raise ConfigError(f"--severity {value}: give integers 1..5, e.g. --severity 3 or --severity 1,3,5") from None
    if not out or any(not 1 <= s <= 5 for s in out):
        raise ConfigError(f"--severity {value}: severities are integers 1..5")
    return sorted(set(out))


def corrupter(name: str, severity: int, seed: int = 0) -> Callable[[np.ndarray, int], np.ndarray]:
    """(image, index) → corrupted image, deterministic in (seed, index, name, severity)."""
    fn, salt = CORRUPTIONS[name], list(CORRUPTIONS).index(name)

    def apply(image: np.ndarray, index: int) -> np.ndarray:
        return fn(image, severity, np.random.default_rng([seed, index, salt, severity]))

    return apply
