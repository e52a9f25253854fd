"""Latency and throughput of torch eager vs an exported model, timed alternately in one process.

Both sides run the same (N, C, H, W) normalised input through their backend forward (the one the
Predictor uses); runs alternate A, B, A, B, ... so that a noisy, shared machine slows both alike.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Callable

import torch


@dataclass
class Timing:
    name: str
    latency_s: float  # median seconds per forward of one batch
    batch: int

    @property
    def images_per_s(self) -> float:
        return self.batch / self.latency_s


def benchmark_input(predictor, image, size: tuple[int, int] | None, batch: int = 1) -> torch.Tensor:
    """What the Predictor feeds a backend for `image` ((H, W, 3) uint8 RGB): resized by the model's input_scale, or
    to `size` ([H, W]) when given: (batch, C, H', W') normalised float32, zero-padded bottom/right to the size
    multiple (and the model's min_size)."""
    import cv2
    import torch.nn.functional as F

    from segcli.inference.predictor import input_scale, min_size, padding, resize

    if size:
        image = cv2.resize(image, (int(size[1]), int(size[0])), interpolation=cv2.INTER_AREA)
    x = predictor.preprocess([image])
    if not size:  # a model at data.input_scale=0.5 sees a quarter of the image's pixels
        x = resize(x, input_scale(predictor.meta))
    pad_h, pad_w = padding(*x.shape[-2:], int(predictor.meta["size_multiple"]), min_size(predictor.meta))
    x = F.pad(x, (0, pad_w, 0, pad_h))
    return x.repeat(batch, 1, 1, 1)


def _timed(forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, device: torch.device) -> float:
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    forward(x)
    sync()
    return time.perf_counter() - start


@torch.inference_mode()
def paired(forwards: dict[str, Callable[[torch.Tensor], torch.Tensor]], x: torch.Tensor, runs: int,
           warmup: int = 2) -> tuple[list[Timing], list[float]]:
    """Time each forward on `x` `runs` times, alternating → (a Timing per forward, per-round ratios
    second/first). `warmup` untimed rounds come first (allocators, onnxruntime's first-run set-up)."""
    names = list(forwards)
    for _ in range(warmup):
        for name in names:
            forwards[name](x)
    times: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(max(1, runs)):
        for name in names:
            times[name].append(_timed(forwards[name], x, x.device))
    ratios = [b / a for a, b in zip(times[names[0]], times[names[-1]])]
    return [Timing(name, statistics.median(times[name]), x.shape[0]) for name in names], ratios


def benchmark_table(rows: list[tuple[str, list[Timing], list[float]]], size: tuple[int, int], batch: int):
    """A rich Table: backend, device, latency, images/s and the exported/torch latency ratio."""
    from rich.table import Table

    table = Table(title=f"latency at {size[0]}×{size[1]}, batch {batch} (median of alternating runs)")
    for column in ("device", "backend", "latency ms", "images/s", "÷ torch eager"):
        table.add_column(column, justify="left" if column in ("device", "backend") else "right")
    for device, timings, ratios in rows:
        for i, t in enumerate(timings):
            ratio = f"{statistics.median(ratios):.2f}" if i else "1.00"
            table.add_row(device, t.name, f"{t.latency_s * 1000:.1f}", f"{t.images_per_s:.2f}", ratio)
    return table
