"""GPU figures (only on a machine with CUDA): bf16 train images/s, predict images/s at 1024×2048, GPU utilisation.

- Train: a bare bf16-autocast training loop of Unet/resnet18 (batch 8, 512×1024, channels-last) on
  in-memory tensors, images/s, with the mean GPU utilisation sampled during it.
- Predict: the shared Predictor (inference.amp=bf16, whole image) on 1024×2048 frames already in
  memory vs the bare bf16 forward of the same model on the same batches: images/s of both and their ratio.
Without CUDA it writes nothing and says so. `make bench` copies the last written section
(benchmarks/gpu.md, with its date) into BENCHMARKS.md.

Run alone (on a GPU machine): `python benchmarks/bench_gpu.py [--out benchmarks/gpu.md]`.
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import subprocess
import threading
import time
from pathlib import Path

GPU_MD = Path(__file__).resolve().parent / "gpu.md"


class Utilisation:
    """Samples `nvidia-smi --query-gpu=utilization.gpu` every 0.2 s while active; mean() in percent."""

    def __init__(self):
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self):
        while not self._stop.is_set():
            try:
                out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"],
                                     capture_output=True, text=True, timeout=5).stdout.split()
                self.samples.append(float(out[0]))
            except (OSError, ValueError, IndexError, subprocess.TimeoutExpired):
                return
            self._stop.wait(0.2)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def mean(self) -> float | None:
        return statistics.mean(self.samples) if self.samples else None


def _train(steps: int) -> tuple[float, float | None]:
    import torch
    import torch.nn.functional as F

    from segcli.models.factory import build_model

    model = build_model(arch="unet", encoder="resnet18", classes=19).cuda().to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randn(8, 3, 512, 1024, device="cuda").contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 19, (8, 512, 1024), device="cuda")

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(5):
        step()
    torch.cuda.synchronize()
    with Utilisation() as util:
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        torch.cuda.synchronize()
        elapsed = time.perf_counter() - t0
    return steps * 8 / elapsed, util.mean()


def _predict(frames: int) -> tuple[float, float, float | None]:
    import numpy as np
    import torch

    from segcli.inference.options import InferenceOptions
    from segcli.inference.predictor import Predictor
    from segcli.models.factory import build_model

    model = build_model(arch="unet", encoder="resnet18", classes=19).cuda().eval().to(memory_format=torch.channels_last)
    meta = {"classes": [str(i) for i in range(19)], "palette": [[i, i, i] for i in range(19)], "ignore_index": 255,
            "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "size_multiple": 32}
    forward = lambda x: model(x.contiguous(memory_format=torch.channels_last))  # noqa: E731
    predictor = Predictor(forward, meta, "cuda", batch_size=2, options=InferenceOptions(amp="bf16"))
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (1024, 2048, 3), dtype=np.uint8) for _ in range(4)]
    batches = [predictor.preprocess(images[i:i + 2]) for i in range(0, 4, 2)]

    @torch.inference_mode()
    def bare():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            for x in batches:
                forward(x).argmax(1).cpu()

    def full():
        for i in range(0, len(images), 2):
            predictor.predict(images[i:i + 2])

    bare(), full()
    torch.cuda.synchronize()
    rounds = max(1, frames // len(images))
    with Utilisation() as util:
        t0 = time.perf_counter()
        for _ in range(rounds):
            full()
        torch.cuda.synchronize()
        a = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(rounds):
        bare()
    torch.cuda.synchronize()
    b = time.perf_counter() - t0
    n = rounds * len(images)
    return n / a, n / b, util.mean()


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default=str(GPU_MD))
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--frames", type=int, default=64)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("bench_gpu: no CUDA device here; nothing measured, nothing written")
        return
    train_ips, train_util = _train(args.steps)
    pred_ips, bare_ips, pred_util = _predict(args.frames)
    pct = lambda u: "n/a" if u is None else f"{u:.0f}%"  # noqa: E731
    lines = [f"Last run: {datetime.date.today()} on {torch.cuda.get_device_name(0)} (torch {torch.__version__}), "
             "`python benchmarks/bench_gpu.py`.", "",
             "| figure | value | GPU utilisation |", "|---|---|---|",
             f"| bf16 train, Unet/resnet18, batch 8, 512×1024 | {train_ips:.1f} images/s | {pct(train_util)} |",
             f"| predict (Predictor, amp=bf16), 1024×2048 | {pred_ips:.1f} images/s; bare bf16 forward "
             f"{bare_ips:.1f} images/s; ratio {pred_ips / bare_ips:.2f} | {pct(pred_util)} |"]
    Path(args.out).write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
