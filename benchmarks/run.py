"""`make bench`: side-by-side ratios, each with the command that reproduces it, written to BENCHMARKS.md.

Every figure is measured A, B, A, B, ... in one process run and reported as the median of the
per-pair ratios, so that a machine that drifts (shared, noisy) affects both sides alike.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path


def paired(a, b, runs: int) -> tuple[float, float, float]:
    """Median time of a, of b, and median of the pairwise ratios a/b (callables, run alternately)."""
    a(), b()  # warm-up
    ta, tb = [], []
    for _ in range(runs):
        t0 = time.perf_counter(); a(); ta.append(time.perf_counter() - t0)
        t0 = time.perf_counter(); b(); tb.append(time.perf_counter() - t0)
    return statistics.median(ta), statistics.median(tb), statistics.median(x / y for x, y in zip(ta, tb))


def bench_startup(runs: int) -> dict:
    segcli = [sys.executable, "-m", "segcli", "--help"]
    typer = [sys.executable, "-c", "import typer"]
    run = lambda cmd: (lambda: subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True))
    a, b, ratio = paired(run(segcli), run(typer), runs)
    return {"name": "CLI start-up: `segcli --help` vs `python -c 'import typer'`", "a": a, "b": b, "ratio": ratio,
            "goal": "≤ 1.5", "ok": ratio <= 1.5, "cmd": "python -m segcli --help  vs  python -c 'import typer'"}


def bench_metrics(runs: int) -> dict:
    import numpy as np
    import torch

    from segcli.metrics import ConfusionMatrix

    rng = np.random.default_rng(0)
    classes = 12
    target = rng.integers(0, classes, (8, 360, 480)).astype(np.uint8)
    target[rng.random(target.shape) < 0.1] = 255
    pred = rng.integers(0, classes, target.shape).astype(np.uint8)
    tp, tt = torch.from_numpy(pred), torch.from_numpy(target)
    cm = ConfusionMatrix(classes, 255)

    def numpy_ref():
        keep = target != 255
        np.bincount(classes * target[keep].astype(np.int64) + pred[keep], minlength=classes * classes)

    a, b, ratio = paired(lambda: cm.update(tp, tt), numpy_ref, runs)
    speed = 1.0 / ratio
    return {"name": "Metric accumulation (8×360×480, 12 classes): np.bincount time / segcli time", "a": a, "b": b,
            "ratio": speed, "goal": "≥ 1.0", "ok": speed >= 1.0, "cmd": "segcli.metrics.ConfusionMatrix.update vs np.bincount"}


def standalone(bench) -> None:
    """`python benchmarks/bench_X.py [--runs N]`: run one benchmark function and print its figure."""
    parser = argparse.ArgumentParser(description=sys.modules[bench.__module__].__doc__)
    parser.add_argument("--runs", type=int, default=15)
    r = bench(parser.parse_args().runs)
    verdict = "no goal" if r["ok"] is None else "ok" if r["ok"] else "NOT met"
    print(f"{r['name']}\n  A {r['a'] * 1000:.1f} ms, B {r['b'] * 1000:.1f} ms per pass; ratio {r['ratio']:.2f} "
          f"(goal {r['goal']}: {verdict})")


def _cpu() -> str:
    """The CPU's model name and the vector instructions torch uses on it (figures differ widely between an AVX2 and
    an AVX-512 CPU), and whether it computes in bfloat16 natively (what trainer.precision=auto decides on)."""
    import torch

    from segcli.models.trainer_args import NATIVE_BF16, cpu_flags, cpuinfo

    native = "native bfloat16" if cpu_flags() & NATIVE_BF16 else "no native bfloat16"
    return ", ".join(part for part in (cpuinfo("model name") or platform.processor(),
                                       torch.backends.cpu.get_cpu_capability(), native) if part)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="BENCHMARKS.md")
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_data import bench_data
    from bench_export import bench_export
    from bench_gpu import GPU_MD
    from bench_predict import bench_predict
    from bench_train import bench_train

    results = [bench_startup(args.runs), bench_metrics(args.runs), bench_data(args.runs), bench_export(args.runs),
               bench_predict(max(5, args.runs // 3)), bench_train(max(3, args.runs // 5))]
    lines = ["# Benchmarks", "", f"Machine: {platform.machine()}, {os.cpu_count()} CPUs ({_cpu()}), "
             f"{platform.platform()}, Python {platform.python_version()}. Date: {datetime.date.today()}. "
             "Produced by `make bench`.", "",
             "Medians of alternating runs; ratio = median of the per-pair ratios.", "",
             "| figure | A median | B median | ratio | goal | reproduce |", "|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['name']} | {r['a'] * 1000:.1f} ms | {r['b'] * 1000:.1f} ms | {r['ratio']:.2f} "
                     f"{'' if r['ok'] is None else '✓' if r['ok'] else '✗'} | {r['goal']} | `{r['cmd']}` |")
    lines += ["", "## GPU", ""]
    if GPU_MD.is_file():  # written by benchmarks/bench_gpu.py on a machine with CUDA
        lines.append(GPU_MD.read_text(encoding="utf-8").strip())
    else:
        lines.append("Not run yet. The one GPU session so far (2026-12-04, 15 minutes of an H200) went to the CamVid "
                     "recipe and loader probes that README's walk-through reports (482 images/s at 288×384, batch 16, "
                     "bf16; SM utilisation median 59%). On a GPU machine, `python benchmarks/bench_gpu.py` measures bf16 "
                     "train images/s, predict images/s at 1024×2048 and GPU utilisation into benchmarks/gpu.md, which "
                     "this section then shows with its date.")
    text = "\n".join(lines) + "\n"
    Path(args.out).write_text(text, encoding="utf-8")
    sys.stdout.write(text)


if __name__ == "__main__":
    main()
