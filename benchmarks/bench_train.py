"""Train throughput: images/s of `segcli train` vs a bare PyTorch training loop, same model and data.

A: `segcli train` as the CLI runs it (segcli.commands.train.run on the composed config: Lightning
Trainer, the data module with its defaults — data.num_workers=auto, no loader processes on a machine
of at most 2 cores, and data.cache=auto, which keeps the decoded PNGs in memory after their first read,
so the measured epochs do not decode —, progress bar, CSV logging, last.ckpt every epoch), with
validation and the end-of-training evaluation switched off. B: a bare loop over the same images held
in memory as one uint8 tensor: normalise, forward, loss, backward, AdamW step — same model
(Unet/resnet18, random init, channels-last), batch, resolution, loss (cross-entropy), fp32, and the same
optimiser step as segcli takes (torch's fused AdamW, optim.fused=auto). C: B with torch's default AdamW
step (what a plain loop gets without asking), reported beside the ratio.
Epochs of 160 images (20 steps): A writes last.ckpt (weights + AdamW state, 172 MB, fsynced) at each
epoch end, as every `segcli train` does; that is ~5% of an epoch of 8 steps, ~2% of one of 20.
Per-epoch time = (time of a 3-epoch run − time of a 1-epoch run) / 2 for both, so one-time start-up
(model construction, worker start) cancels out and what remains is the training loop itself.
ratio = A images/s ÷ B images/s; the line also gives A ÷ C.

Run alone: `python benchmarks/bench_train.py [--runs N]`.
"""

from __future__ import annotations

import contextlib
import io
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/ is not a package

NUM_IMAGES, HEIGHT, WIDTH, BATCH = 160, 128, 160, 8
SHORT, LONG = 1, 3


def _prepare(root: Path) -> None:
    subprocess.run([sys.executable, "-m", "segcli", "prepare", "synthetic", "--out", str(root),
                    f"synthetic.num_images={NUM_IMAGES * 5 // 4}", f"synthetic.height={HEIGHT}",
                    f"synthetic.width={WIDTH}"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def bench_train(runs: int) -> dict:
    import numpy as np
    import torch
    import torch.nn.functional as F

    from segcli.commands import train
    from segcli.config import compose
    from segcli.data.card import load_card
    from segcli.inference.io import read_image, read_mask
    from segcli.inference.predictor import normalize
    from segcli.models.factory import build_model

    with tempfile.TemporaryDirectory(prefix="segcli-bench-train-") as tmp:
        root = Path(tmp, "data")
        _prepare(root)
        card = load_card(root)
        pairs = card.pairs("train")
        num_images = len(pairs)
        images = torch.from_numpy(np.stack([read_image(i) for i, _ in pairs])).permute(0, 3, 1, 2).contiguous()
        masks = torch.from_numpy(np.stack([read_mask(m) for _, m in pairs]).astype(np.int64))
        classes, ignore = card.num_classes, card.ignore_index
        mean, std = card.stats["mean"], card.stats["std"]
        overrides = [f"data.root={root}", "model=unet", "model.encoder=resnet18", "loss=ce", "augment=none",
                     f"data.batch_size={BATCH}", "trainer.limit_val_batches=0", "trainer.num_sanity_val_steps=0",
                     "final_eval=false", "seed=0"]

        def cli(epochs: int) -> None:
            cfg = compose("train", overrides + [f"trainer.max_epochs={epochs}"],
                          values={"run_dir": str(Path(tempfile.mkdtemp(dir=tmp), "run"))})
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                train.run(cfg)

        def bare(epochs: int, fused: bool = True) -> None:
            torch.manual_seed(0)
            model = build_model(arch="unet", encoder="resnet18", classes=classes).to(memory_format=torch.channels_last)
            optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4, **({"fused": True} if fused else {}))
            model.train()
            for _ in range(epochs):
                order = torch.randperm(num_images)
                for i in range(0, num_images, BATCH):
                    idx = order[i:i + BATCH]
                    x = normalize(images[idx], mean, std).contiguous(memory_format=torch.channels_last)
                    loss = F.cross_entropy(model(x), masks[idx], ignore_index=ignore)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()

        def timed(fn, epochs: int) -> float:
            t0 = time.perf_counter()
            fn(epochs)
            return time.perf_counter() - t0

        plain = lambda epochs: bare(epochs, fused=False)  # noqa: E731
        cli(SHORT), bare(SHORT), plain(SHORT)  # warm-up: imports, first-call allocations
        per_a, per_b, per_c, ratios, ratios_c = [], [], [], [], []
        for _ in range(runs):
            a1, b1, c1 = timed(cli, SHORT), timed(bare, SHORT), timed(plain, SHORT)
            a3, b3, c3 = timed(cli, LONG), timed(bare, LONG), timed(plain, LONG)
            a, b, c = ((t3 - t1) / (LONG - SHORT) for t1, t3 in ((a1, a3), (b1, b3), (c1, c3)))
            per_a.append(a), per_b.append(b), per_c.append(c), ratios.append(b / a), ratios_c.append(c / a)
    a, b, c = statistics.median(per_a), statistics.median(per_b), statistics.median(per_c)
    ratio = statistics.median(ratios)
    return {"name": f"Train throughput ({num_images} PNG {HEIGHT}×{WIDTH}, Unet/resnet18, batch {BATCH}, CE, fp32, CPU): "
                    f"segcli train {num_images / a:.1f} images/s vs bare PyTorch loop {num_images / b:.1f} images/s "
                    "with the same fused AdamW step (per-epoch time, start-up excluded); ratio = train / bare speed. "
                    f"Against a bare loop with torch's default AdamW step ({num_images / c:.1f} images/s): "
                    f"{statistics.median(ratios_c):.2f}",
            "a": a, "b": b, "ratio": ratio, "goal": "≥ 0.95", "ok": ratio >= 0.95,
            "cmd": "python benchmarks/bench_train.py (segcli train, 3 epochs − 1 epoch, vs the same bare loop)"}


if __name__ == "__main__":
    from run import standalone

    standalone(bench_train)
