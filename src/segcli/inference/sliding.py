"""Sliding-window inference: overlapping tiles, each run whole, blended back into one logit map.

Windows of size `tile` step by `stride` and the last one in each direction is shifted back to end
at the border (mmsegmentation's `slide_inference`), so every pixel is covered and no window is
padded beyond the image except when the image itself is smaller than the tile. Overlapping logits
are averaged with constant weights or with a Gaussian that trusts window centres more than their
borders (nnU-Net's `compute_gaussian`, sigma = tile / 8).

`slide_logits` keeps the whole (N, K, H, W) score map; `slide_bands` yields it band by band, each band as soon as
no later window touches its rows, from a buffer one window tall: a caller that needs only class ids (the argmax)
holds K × tile × W scores instead of K × H × W (1.9 GB at 12 MP and 40 classes).
"""

from __future__ import annotations

import math
from typing import Callable, Iterator

import torch

Run = Callable[[torch.Tensor], torch.Tensor]


def window_starts(size: int, tile: int, stride: int) -> list[int]:
    """Start offsets of the windows along one axis of length `size` (a single 0 when size <= tile)."""
    if size <= tile:
        return [0]
    count = math.ceil((size - tile) / stride) + 1
    return sorted({min(i * stride, size - tile) for i in range(count)})


def blend_weights(h: int, w: int, blend: str, device=None) -> torch.Tensor:
    """(h, w) float32 window weights: all ones (constant), or a Gaussian with max 1 and no zeros."""
    if blend == "constant":
        return torch.ones(h, w, device=device)

    def axis(n: int) -> torch.Tensor:
        x = torch.arange(n, dtype=torch.float32, device=device) - (n - 1) / 2.0
        return torch.exp(-0.5 * (x / max(n / 8.0, 1e-6)) ** 2)

    g = axis(h)[:, None] * axis(w)[None, :]
    g = g / g.max()
    return g.clamp_min(float(g[g > 0].min()) if (g > 0).any() else 1.0)


def slide_logits(run: Run, x: torch.Tensor, tile: tuple[int, int], stride: tuple[int, int], blend: str = "gaussian",
                 windows_per_batch: int = 4) -> torch.Tensor:
    """(N, C, H, W) float32 input → (N, K, H, W) float32 logits blended over sliding windows.

    `run` maps (B, C, h, w) → (B, K, h, w) logits for a window (e.g. forward_padded over the model);
    up to `windows_per_batch` windows of all N images go through it at once.
    """
    total = None  # filled band by band (slide_bands): the same sums, so the same values as blending into one map
    for top, band in slide_bands(run, x, tile, stride, blend, windows_per_batch):
        if total is None:
            total = torch.empty((*band.shape[:2], *x.shape[-2:]), dtype=torch.float32, device=band.device)
        total[:, :, top: top + band.shape[2]] = band
    return total


def slide_bands(run: Run, x: torch.Tensor, tile: tuple[int, int], stride: tuple[int, int], blend: str = "gaussian",
                windows_per_batch: int = 4) -> Iterator[tuple[int, torch.Tensor]]:
    """(N, C, H, W) float32 input → (top, (N, K, rows, W) float32 blended logits of rows top..top+rows-1), bands
    top to bottom covering every row once; their concatenation equals slide_logits(...) bit for bit (the same
    products, added to zeros in the same window order, divided by the same weight sums).

    Windows go in rows (window_starts); once the last window starting at row y has been added, the rows before the
    next row of windows are final. Only the rows still open are held: a buffer of at most one window's height
    (two for a moment, while it moves down). A band is the caller's to keep or drop.
    """
    n, _, h, w = x.shape
    th, tw = min(tile[0], h), min(tile[1], w)
    boxes = _boxes(h, w, th, tw, stride)
    weight = blend_weights(th, tw, blend, x.device)
    top = 0  # first row of the buffer (rows above it were handed out)
    buf = weight_sum = None  # (N, K, th, W) scores and (th, W) weights of rows top..top+th-1
    for chunk, out in _chunks(run, x, boxes, th, tw, windows_per_batch):
        if buf is None:
            buf = torch.zeros((n, out.shape[1], th, w), dtype=torch.float32, device=out.device)
            weight_sum = torch.zeros((th, w), dtype=torch.float32, device=out.device)
            weight = weight.to(out.device)
        for j, (y, xx) in enumerate(chunk):
            if y > top:  # a new row of windows: rows top..y-1 have all their windows
                yield top, buf[:, :, : y - top].div_(weight_sum[: y - top])
                buf, weight_sum = _shift(buf, y - top), _shift(weight_sum, y - top)
                top = y
            buf[..., y - top: y - top + th, xx: xx + tw] += out[j * n: (j + 1) * n] * weight
            weight_sum[y - top: y - top + th, xx: xx + tw] += weight
    yield top, buf[:, :, : h - top].div_(weight_sum[: h - top])  # the last row of windows ends at row h


def _boxes(h: int, w: int, th: int, tw: int, stride: tuple[int, int]) -> list[tuple[int, int]]:
    """(top, left) of every window, row by row (top ascending), left to right within a row."""
    return [(y, xx) for y in window_starts(h, th, stride[0]) for xx in window_starts(w, tw, stride[1])]


def _chunks(run: Run, x: torch.Tensor, boxes: list[tuple[int, int]], th: int, tw: int, windows_per_batch: int
            ) -> Iterator[tuple[list[tuple[int, int]], torch.Tensor]]:
    """(windows, their float32 logits (len(windows) * N, K, th, tw), window-major) for up to windows_per_batch
    windows of all N images at a time."""
    step = max(1, int(windows_per_batch))
    for i in range(0, len(boxes), step):
        chunk = boxes[i: i + step]
        crops = torch.cat([x[..., y: y + th, xx: xx + tw] for y, xx in chunk])  # (len(chunk) * N, C, th, tw)
        yield chunk, run(crops).float()


def _shift(buf: torch.Tensor, rows: int) -> torch.Tensor:
    """A zeroed buffer like `buf` (rows on dim -2) holding buf's rows from `rows` on at its top: the window moved
    down by `rows`."""
    moved = torch.zeros_like(buf)
    moved[..., : buf.shape[-2] - rows, :] = buf[..., rows:, :]
    return moved
