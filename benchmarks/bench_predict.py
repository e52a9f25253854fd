"""Predict throughput: images/s of `segcli predict` on a folder vs a bare batched forward of the same model.

A: `segcli predict FOLDER --out DIR` as the CLI runs it (segcli.commands.predict.predict_with on the
composed config: list the folder, decode JPEGs in DataLoader workers, batch, forward, write masks and
overlays from background threads), with the model loaded once beforehand: throughput, not start-up. B: the same model's forward (the Predictor's channels-last torch
module) on the same images already in memory, normalised, padded and batched ahead of time.
ratio = A images/s ÷ B images/s: the share of model speed that survives the whole pipeline.
Model: the default Unet/resnet18 (random weights; speed does not depend on them), 16 JPEG frames of
256×320, batch size 4, CPU.

Run alone: `python benchmarks/bench_predict.py [--runs N]`.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/ is not a package

NUM_IMAGES, HEIGHT, WIDTH, BATCH = 16, 256, 320, 4
CLASSES = 7


def _checkpoint(path: Path) -> None:
    import torch

    from segcli.models.factory import build_model

    torch.manual_seed(0)
    kwargs = {"arch": "unet", "encoder": "resnet18", "classes": CLASSES}
    meta = {"classes": [f"c{i}" for i in range(CLASSES)], "palette": [[i * 30, 255 - i * 30, i * 10] for i in range(CLASSES)],
            "ignore_index": 255, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "size_multiple": 32,
            "model": kwargs}
    model = build_model(**kwargs)
    torch.save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}, "hyper_parameters": {"meta": meta}},
               path)


def bench_predict(runs: int) -> dict:
    import cv2
    import torch
    import torch.nn.functional as F
    from run import paired  # imported here, so that run.py may import this module at its top

    from segcli.commands.predict import predict_with
    from segcli.config import compose
    from segcli.data.formats import synthetic
    from segcli.inference.backends import load_predictor
    from segcli.inference.io import read_image

    with tempfile.TemporaryDirectory(prefix="segcli-bench-predict-") as tmp:
        images = Path(tmp, "images")
        images.mkdir()
        for stem, image, _ in synthetic.generate(NUM_IMAGES, seed=0, height=HEIGHT, width=WIDTH):
            cv2.imwrite(str(images / f"{stem}.jpg"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
        ckpt = Path(tmp, "model.ckpt")
        _checkpoint(ckpt)
        cfg = compose("predict", [f"inference.batch_size={BATCH}", "device=cpu"],
                      values={"ckpt": str(ckpt), "inputs": [str(images)], "out": str(Path(tmp, "out"))})

        predictor = load_predictor(ckpt, "cpu", BATCH)
        frames = [read_image(p) for p in sorted(images.glob("*.jpg"))]
        batches = []
        for i in range(0, len(frames), BATCH):
            x = predictor.preprocess(frames[i:i + BATCH])
            batches.append(F.pad(x, (0, (-WIDTH) % 32, 0, (-HEIGHT) % 32)))

        def cli():
            predict_with(cfg, predictor)  # everything `segcli predict` does but loading the model (~0.5 s, once)

        @torch.inference_mode()
        def bare():
            for x in batches:
                predictor.forward(x)

        stdout, sys.stdout = sys.stdout, open("/dev/null", "w")  # the CLI's mask paths are not the benchmark's output
        try:
            a, b, ratio = paired(cli, bare, runs)
        finally:
            sys.stdout.close()
            sys.stdout = stdout
    speed = 1.0 / ratio
    return {"name": f"Predict folder throughput ({NUM_IMAGES} JPEG {HEIGHT}×{WIDTH}, Unet/resnet18, batch {BATCH}, CPU): "
                    f"segcli predict {NUM_IMAGES / a:.1f} images/s vs bare batched forward {NUM_IMAGES / b:.1f} images/s; "
                    "ratio = predict / forward speed",
            "a": a, "b": b, "ratio": speed, "goal": "≥ 0.90", "ok": speed >= 0.90,
            "cmd": "python benchmarks/bench_predict.py (segcli predict FOLDER --out DIR vs Predictor.forward on in-memory batches)"}


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from run import standalone

    standalone(bench_predict)
