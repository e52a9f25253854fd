"""The same model on the same data gives the same answer whichever command computes it.

One tiny run (U-Net/resnet18, one epoch, the network at half resolution: data.input_scale=0.5) on a folder
dataset whose sizes are not multiples of 32 and whose val split mixes sizes (two neighbours of one size, then
others), so padding, resizing and batching all take part. Every path is compared with `segcli eval --ckpt`:
the run's own final evaluation, `predict` masks scored model-free, eval with one image per pass, and the
exported ONNX and TorchScript files (per-class IoU and pixel counts, not only the mean).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

VAL_SIZES = [(50, 70), (50, 70), (45, 61), (64, 33)]  # (h, w): none a multiple of 32; the first two batch together
TRAIN = ["experiment=smoke", "trainer.enable_progress_bar=false", "augment.crop_size=[32,32]", "data.input_scale=0.5"]
SLIDE_TTA = ["inference=slide", "inference.tile=[32,32]", "inference.tta=flip", "inference.scales=[0.75,1.0]"]


def segcli(*args) -> int:
    """Run `segcli ARGS` in this process → exit code (results are read from the files the command writes)."""
    from segcli.cli import main

    try:
        main([str(a) for a in args])
    except SystemExit as done:
        return done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    return 0


def scores(report: Path) -> tuple[float, list, list, list]:
    """(mIoU, per-class IoU, gt pixels, predicted pixels) of a report.json."""
    data = json.loads(Path(report).read_text())
    classes = data["classes"]
    return (data["mIoU"], [c["iou"] for c in classes], [c["gt_pixels"] for c in classes],
            [c["pred_pixels"] for c in classes])


@pytest.fixture(scope="module")
def mixed_data(tmp_path_factory) -> Path:
    """A prepared folder dataset from synthetic 50x70 scenes: 8 train pairs, 4 val pairs of the VAL_SIZES."""
    import cv2

    base = tmp_path_factory.mktemp("consistency")
    syn = base / "syn"
    assert segcli("prepare", "synthetic", "--out", syn, "--num-images", "12", "--seed", "0",
                  "synthetic.height=50", "synthetic.width=70") == 0
    pairs = sorted((syn / "images").rglob("*.png"))
    (base / "src" / "images").mkdir(parents=True)
    (base / "src" / "masks").mkdir(parents=True)
    stems = []
    for k, image_path in enumerate(pairs):
        mask_path = syn / "masks" / image_path.relative_to(syn / "images")
        image, mask = cv2.imread(str(image_path)), cv2.imread(str(mask_path), cv2.IMREAD_UNCHANGED)
        if k >= len(pairs) - len(VAL_SIZES):
            h, w = VAL_SIZES[k - (len(pairs) - len(VAL_SIZES))]
            image = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
            mask = cv2.resize(mask, (w, h), interpolation=cv2.INTER_NEAREST)
        cv2.imwrite(str(base / "src" / "images" / f"s{k:02d}.png"), image)
        cv2.imwrite(str(base / "src" / "masks" / f"s{k:02d}.png"), mask)
        stems.append(f"s{k:02d}")
    (base / "train.txt").write_text("\n".join(stems[:-len(VAL_SIZES)]) + "\n")
    (base / "val.txt").write_text("\n".join(stems[-len(VAL_SIZES):]) + "\n")
    classes = ",".join(yaml.safe_load((syn / "dataset.yaml").read_text())["classes"])
    out = base / "data"
    assert segcli("prepare", "folder", "--images", base / "src" / "images", "--masks", base / "src" / "masks",
                  "--out", out, "--classes", classes, "--split-file", f"train={base / 'train.txt'}",
                  "--split-file", f"val={base / 'val.txt'}") == 0
    return out


@pytest.fixture(scope="module")
def run(mixed_data) -> Path:
    out = mixed_data.parent / "run"
    assert segcli("train", f"data.root={mixed_data}", *TRAIN, "--run-dir", out) == 0
    return out


@pytest.fixture(scope="module")
def ckpt_report(run, mixed_data) -> Path:
    report = run.parent / "ckpt.json"
    assert segcli("eval", "--ckpt", run / "checkpoints" / "best.ckpt", "--json", report) == 0
    return report


def test_final_evaluation_equals_eval_of_best_ckpt(run, ckpt_report):
    assert scores(run / "eval" / "report.json") == scores(ckpt_report)


def test_training_validation_equals_eval(run, ckpt_report):
    """metrics.csv's val mIoU of the last (here the best) epoch: float32, one val image per pass."""
    with open(run / "metrics.csv", newline="") as handle:
        logged = [float(r["val/mIoU"]) for r in csv.DictReader(handle) if r.get("val/mIoU")]
    assert logged[-1] == pytest.approx(scores(ckpt_report)[0], abs=1e-6)


@pytest.mark.parametrize("options", [[], SLIDE_TTA], ids=["whole", "slide_tta"])
def test_predict_masks_scored_model_free_equal_eval_ckpt(run, mixed_data, options):
    ckpt, tmp = run / "checkpoints" / "best.ckpt", run.parent / f"predict_{len(options)}"
    assert segcli("eval", "--ckpt", ckpt, *options, "--json", tmp.with_suffix(".ckpt.json")) == 0
    assert segcli("predict", "--ckpt", ckpt, mixed_data / "images" / "val", "--out", tmp, "--save", "mask",
                  *options) == 0
    assert segcli("eval", "--predictions", tmp, "--data", mixed_data, "--json", tmp.with_suffix(".pred.json")) == 0
    assert scores(tmp.with_suffix(".pred.json")) == scores(tmp.with_suffix(".ckpt.json"))


@pytest.mark.parametrize("options", [[], SLIDE_TTA], ids=["whole", "slide_tta"])
def test_batch_size_does_not_change_results(run, options):
    ckpt, tmp = run / "checkpoints" / "best.ckpt", run.parent / f"batch_{len(options)}"
    for size in (1, 4):
        assert segcli("eval", "--ckpt", ckpt, *options, f"inference.batch_size={size}",
                      "--json", tmp.with_suffix(f".{size}.json")) == 0
    one, four = scores(tmp.with_suffix(".1.json")), scores(tmp.with_suffix(".4.json"))
    assert one[2] == four[2]  # the same ground truth
    assert np.allclose(one[1], four[1], atol=1e-4) and abs(one[0] - four[0]) < 1e-4  # at most a near-tie pixel


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_exported_model_evaluates_as_the_checkpoint(run, mixed_data, ckpt_report, fmt):
    if fmt == "onnx":
        pytest.importorskip("onnxruntime")
    exported = run.parent / f"model.{fmt}"
    assert segcli("export", "--ckpt", run / "checkpoints" / "best.ckpt", "--format", fmt, "--out", exported) == 0
    report = run.parent / f"{fmt}.json"
    assert segcli("eval", "--model", exported, "--data", mixed_data, "--json", report) == 0
    miou, iou, gt, pred = scores(report)
    ref = scores(ckpt_report)
    assert gt == ref[2]
    assert abs(miou - ref[0]) < 1e-4 and np.allclose(iou, ref[1], atol=1e-4)  # export verification's float noise
    assert np.abs(np.array(pred) - np.array(ref[3])).sum() <= 2


def test_validation_batches_of_mixed_sizes_score_as_eval(mixed_data):
    """Training validation padded a batch of differently sized images with black to the batch's largest size and
    scored it so (0.0672 logged against eval's 0.0769 here); eval runs each image at its own size."""
    out = mixed_data.parent / "run_val4"
    assert segcli("train", f"data.root={mixed_data}", *TRAIN, "data.val_batch_size=4", "--run-dir", out) == 0
    with open(out / "metrics.csv", newline="") as handle:
        logged = [float(r["val/mIoU"]) for r in csv.DictReader(handle) if r.get("val/mIoU")]
    assert logged[-1] == pytest.approx(scores(out / "eval" / "report.json")[0], abs=1e-4)
