"""Data pipeline throughput: samples/s of one DataLoader worker vs plain cv2 decoding of the same files.

One worker = one process with one torch and one OpenCV thread (what a DataLoader worker gets). The
training pipeline (SegDataset + the default `augment=light` preset: decode, BGR→RGB, random scale,
class-aware 192×192 crop, flip, colour jitter) is timed against `cv2.imread` of each image and its
mask, over 24 CamVid-sized (360×480) JPEG frames with PNG masks. ratio = pipeline samples/s ÷
decode samples/s: the share of bare decoding speed that survives augmentation.

Run alone: `python benchmarks/bench_data.py [--runs N]`.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/ is not a package

NUM_IMAGES, HEIGHT, WIDTH = 24, 360, 480
PRESET = "light"


def bench_data(runs: int) -> dict:
    import cv2
    import torch
    import yaml
    from run import paired  # imported here, so that run.py may import this module at its top

    from segcli.config import conf_dir
    from segcli.data.dataset import SegDataset
    from segcli.data.formats import folder, synthetic
    from segcli.data.layout import write_dataset
    from segcli.data.transforms import train_transform

    threads = torch.get_num_threads(), cv2.getNumThreads()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    try:
        with tempfile.TemporaryDirectory(prefix="segcli-bench-data-") as tmp:
            images, masks = Path(tmp, "images"), Path(tmp, "masks")
            images.mkdir()
            masks.mkdir()
            for stem, image, mask in synthetic.generate(NUM_IMAGES, seed=0, height=HEIGHT, width=WIDTH):
                cv2.imwrite(str(images / f"{stem}.jpg"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
                            [cv2.IMWRITE_JPEG_QUALITY, 95])
                cv2.imwrite(str(masks / f"{stem}.png"), mask)
            source = folder.collect(images, masks, name="bench", classes=",".join(synthetic.CLASSES),
                                    ignore_index=synthetic.IGNORE_INDEX, val_fraction=0.0)
            card = write_dataset(Path(tmp, "data"), source, workers=1).card
            augment = yaml.safe_load((conf_dir() / "augment" / f"{PRESET}.yaml").read_text())
            dataset = SegDataset(card, "train", train_transform(augment, card.ignore_index))
            pairs = [(str(i), str(m)) for i, m in card.pairs("train")]
            torch.manual_seed(0)

            def pipeline():
                for i in range(len(dataset)):
                    dataset[i]

            def decode():
                for image, mask in pairs:
                    cv2.imread(image, cv2.IMREAD_COLOR)
                    cv2.imread(mask, cv2.IMREAD_UNCHANGED)

            a, b, ratio = paired(pipeline, decode, runs)
    finally:
        torch.set_num_threads(threads[0])
        cv2.setNumThreads(threads[1])
    speed = 1.0 / ratio
    n = len(pairs)
    return {"name": f"Data pipeline per worker (augment={PRESET}, {n} JPEG frames {HEIGHT}×{WIDTH} + PNG masks): "
                    f"{n / a:.0f} samples/s vs cv2 decode {n / b:.0f} samples/s; ratio = pipeline / decode speed",
            "a": a, "b": b, "ratio": speed, "ok": None,
            "goal": "none set; one worker must outpace training (≈ 9 samples/s for Unet/resnet18, 192², batch 8, 2 CPU cores)",
            "cmd": "python benchmarks/bench_data.py (SegDataset+train_transform vs cv2.imread, 1 thread each)"}


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from run import standalone

    standalone(bench_data)
