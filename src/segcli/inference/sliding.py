"""Sliding-window inference: overlapping tiles, each run whole, blended back into one logit map.

Windows of size `tile` step by `stride` and the last one in each direction is shifted back to end
at the border (mmsegmentation's `slide_inference`), so every pixel is covered and no window is
padded beyond the image except when the image itself is smaller than the tile. Overlapping logits
are averaged with constant weights or with a Gaussian that trusts window centres more than their
borders (nnU-Net's `compute_gaussian`, sigma = tile / 8).

`slide_logits` keeps the whole (N, K, H, W) score map; `slide_bands` yields it band by band, each band as soon as
no later window touches its rows, from a buffer one window tall: a caller that needs only class ids (the argmax)
holds K × tile × W scores instead of K × H × W (1.9 GB at 12 MP and 40 classes). `resized_ids` turns such bands of a
model run at another size (input_scale != 1) into class ids at the input's size, band by band, equal bit for bit to
the argmax of the whole map resized by F.interpolate(bilinear).
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Callable, Iterable, Iterator

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


# Rows × width × classes × images of resized scores made at a time by resized_ids (32 MB of float32; the map rows
# resized along W first are that many times the shrinking factor where the output is smaller than the map).
RESIZED_CHUNK = 1 << 23
# How far the resized scores made in plain float32 can be from the kernel's, in units of 2**-24 × the largest |logit|
# they are made of: at most 6 roundings each (2 products and a sum per axis) against the kernel's 4, so about 10;
# twice that, to be safe.
SLACK = 32 * 2.0 ** -24
# … plus this much in absolute terms: rounding in float32's subnormal range (below 2**-126) is absolute,
# 2**-149 a step.
TINY = 2.0 ** -144


def resized_ids(bands: Iterable[tuple[int, torch.Tensor]], size: tuple[int, int], out_size: tuple[int, int],
                arithmetic: str) -> Iterator[tuple[int, torch.Tensor]]:
    """Bands (top, (N, K, rows, w) float32) of an h×w logit map, top to bottom (slide_bands) → (top, (N, rows, W)
    int64 class ids) of that map resized bilinearly to `out_size` H×W, each band as soon as the map rows it reads
    have come; equal to F.interpolate(map, size=(H, W), mode="bilinear", align_corners=False).argmax(1) on a
    contiguous (N, K, h, w) map, bit for bit, where its kernel is the generic CPU one (H + W > 128, not 3 channels
    on one thread) and `arithmetic` is its rounding (bilinear_arithmetic).

    Output row r reads map rows floor(src) and floor(src) + 1 (src = (r + 0.5) * h / H - 0.5, at least 0), so the
    last row(s) of a band are kept for the next one. The scores are made in plain float32 (within SLACK × the largest
    |logit| of the kernel's), and only pixels whose two best classes are that close are redone in the kernel's
    exact arithmetic (_exact_scores); at most RESIZED_CHUNK scores are made at a time.
    """
    (h, w), (big_h, big_w) = size, out_size
    y0, y1, ly0, ly1 = _linear(h, big_h, arithmetic)
    xs = _linear(w, big_w, arithmetic)
    held, held_top = None, 0  # map rows held_top.. not yet used up (copied: a band is a view of slide_bands' buffer)
    row = 0  # the next output row
    for top, band in bands:
        held = band.clone() if held is None else torch.cat([held, band], 2)
        end = top + band.shape[2]  # map rows up to end - 1 have come
        ready = int(torch.searchsorted(y1, end)) if end < h else big_h  # output rows whose map rows have all come
        step = max(1, RESIZED_CHUNK // max(1, band.shape[0] * band.shape[1] * big_w))
        device = band.device
        while row < ready:
            stop = min(ready, row + step)
            first, last = int(y0[row]), int(y1[stop - 1])
            rows = held[:, :, first - held_top: last - held_top + 1]  # the map rows these output rows read
            ry = (y0[row:stop] - first, y1[row:stop] - first, ly0[row:stop], ly1[row:stop])
            ry = tuple(t.to(device) for t in ry)
            across = torch.nn.functional.interpolate(rows, size=(rows.shape[2], big_w), mode="bilinear",
                                                     align_corners=False)  # along W first, as the kernel nests them
            scores = across[:, :, ry[0]] * ry[2][:, None] + across[:, :, ry[1]] * ry[3][:, None]
            del across
            best, ids = scores.max(1)
            second = scores.scatter_(1, ids.unsqueeze(1), -math.inf).amax(1)  # the best class's score left out
            del scores
            close = best - second <= 2 * SLACK * float(rows.abs().max()) + TINY  # two classes within twice the slack
            del best, second
            if bool(close.any()):
                n, r, c = close.nonzero(as_tuple=True)
                exact = _exact_scores(rows, n, r, c, ry, tuple(t.to(device) for t in xs), arithmetic)
                ids[n, r, c] = exact.argmax(1)
            yield row, ids
            row = stop
        # the first map row a later output row reads; at most `end`: shrinking more than 2× it may lie in a later band
        keep = min(int(y0[row]), end) if row < big_h else end
        held, held_top = held[:, :, keep - held_top:].clone(), keep


def _exact_scores(rows: torch.Tensor, n: torch.Tensor, r: torch.Tensor, c: torch.Tensor, ry: tuple, xs: tuple,
                  arithmetic: str) -> torch.Tensor:
    """(P, K) float32 resized scores of the output pixels (n, r, c) (r relative to `rows`' output rows), as the kernel
    computes them: along W, t = a * l0 + b * l1 for the two map rows read, then along H, t0 * l0 + t1 * l1.
    rows: (N, K, m, w) map rows; ry: (i0, i1, l0, l1) per output row (i relative to rows); xs: the same per column."""
    i0, i1, hl0, hl1 = (t[r] for t in ry)
    j0, j1, wl0, wl1 = (t[c] for t in xs)
    pick = lambda i, j: rows[n, :, i, j]  # noqa: E731  (P, K)
    top = _lerp(pick(i0, j0), wl0[:, None], pick(i0, j1), wl1[:, None], arithmetic)
    bottom = _lerp(pick(i1, j0), wl0[:, None], pick(i1, j1), wl1[:, None], arithmetic)
    return _lerp(top, hl0[:, None], bottom, hl1[:, None], arithmetic)


def _linear(size: int, out_size: int, arithmetic: str) -> tuple[torch.Tensor, ...]:
    """(i0, i1, l0, l1) per output index of one axis, as aten's compute_source_index_and_lambda makes them in
    float32: scale = float(size) / out_size, src = scale * (i + 0.5) - 0.5 (one rounding where `arithmetic` is
    "fused") clamped at 0, i0 = min(floor(src), size - 1), i1 = i0 + 1 unless at the edge, l1 = src - i0 clamped to
    [0, 1], l0 = 1 - l1; the identity when the sizes are equal."""
    if size == out_size:
        index = torch.arange(out_size)
        return index, index, torch.ones(out_size), torch.zeros(out_size)
    scale = torch.tensor(float(size), dtype=torch.float32) / float(out_size)
    dst = torch.arange(out_size, dtype=torch.float32) + 0.5
    minus_half = torch.full_like(dst, -0.5)
    src = (_fma(scale.expand_as(dst), dst, minus_half) if arithmetic == "fused" else scale * dst - 0.5).clamp_min(0)
    i0 = src.floor().long().clamp_max(size - 1)
    l1 = (src - i0.float()).clamp(0, 1)
    return i0, i0 + (i0 < size - 1).long(), 1 - l1, l1


def _lerp(a: torch.Tensor, l0: torch.Tensor, b: torch.Tensor, l1: torch.Tensor, arithmetic: str) -> torch.Tensor:
    """a * l0 + b * l1 in float32: b * l1 rounded, then a * l0 added to it with one rounding ("fused", as the
    kernel compiled with FMA computes it), or each product and the sum rounded ("plain")."""
    if arithmetic == "fused":
        return _fma(a, l0, b * l1)
    return a * l0 + b * l1


def _fma(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """float32 a * b + c rounded once: the product is exact in float64, the sum is rounded to odd there (TwoSum's
    exact error nudges an inexact sum's last bit to 1), which rounding to float32 then makes correct."""
    product = a.double() * b.double()
    c = c.double()
    total = product + c
    back = total - product
    error = (product - (total - back)) + (c - back)
    bits = total.view(torch.int64)
    nudge = (error != 0) & ((bits & 1) == 0)
    bits = torch.where(nudge, bits + torch.where((error > 0) == (total > 0), 1, -1), bits)
    return bits.view(torch.float64).float()


@lru_cache(maxsize=None)
def bilinear_arithmetic(device: str) -> str | None:
    """How F.interpolate(bilinear, align_corners=False) rounds on `device` ("cpu", "cuda:0"): "fused" (a kernel
    compiled with FMA: AVX2/AVX-512 CPUs), "plain" (each product and sum rounded: the default CPU kernel), or None
    when _exact_scores matches neither on a few probes (then callers resize the whole map). Probed once per device."""
    generator = torch.Generator().manual_seed(0)
    probes = [((2, 5, 37, 53), (74, 106)), ((1, 2, 150, 170), (100, 113)), ((1, 4, 61, 29), (92, 44))]
    for arithmetic in ("fused", "plain"):
        for shape, (big_h, big_w) in probes:
            x = (torch.randn(shape, generator=generator) * 8).to(device)
            whole = torch.nn.functional.interpolate(x, size=(big_h, big_w), mode="bilinear", align_corners=False)
            ry, xs = (tuple(t.to(device) for t in _linear(size, out, arithmetic))
                      for size, out in ((shape[2], big_h), (shape[3], big_w)))
            n, r, c = (t.flatten().to(device) for t in torch.meshgrid(
                torch.arange(shape[0]), torch.arange(big_h), torch.arange(big_w), indexing="ij"))
            exact = _exact_scores(x, n, r, c, ry, xs, arithmetic)
            if not torch.equal(exact.view(torch.int32), whole.permute(0, 2, 3, 1).reshape(-1, shape[1])
                               .view(torch.int32)):
                break
        else:
            return arithmetic
    return None
