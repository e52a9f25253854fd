"""prepare → train → eval → predict → export, on the synthetic dataset and on real camvid-mini frames.

camvid-mini frames are 360x480: 360 is not a multiple of the encoder stride (32), so every stage has
to pad and crop back. Runs are trained once per session (conftest.py) and shared here.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers_cli import Run, assert_ok, describe, load_yaml, read_metrics_csv, run_cli, stdout_lines

RATE_KEYS = ("iou", "acc", "dice")


@pytest.fixture(scope="module", params=["synthetic", "camvid"])
def trained(request) -> Run:
    return request.getfixturevalue(f"{request.param}_run")


@pytest.fixture(scope="module")
def eval_report(trained, tmp_path_factory) -> tuple[dict, object]:
    out = tmp_path_factory.mktemp(f"eval_{trained.name}") / "report.json"
    # One image per forward pass, as training validates (data.val_batch_size=1), so that eval's mIoU can equal the
    # logged one to the last digit: a CPU's convolutions may round a batch of 4 differently (see test_ema).
    proc = assert_ok(run_cli("eval", "--ckpt", trained.best, "--json", out, "inference.batch_size=1", cwd=out.parent))
    assert out.is_file(), describe(proc)
    return json.loads(out.read_text()), proc


@pytest.fixture(scope="module")
def predictions(trained, tmp_path_factory) -> tuple[Path, object]:
    out = tmp_path_factory.mktemp(f"predict_{trained.name}") / "masks"
    val_images = trained.data / "images" / "val"
    proc = assert_ok(run_cli("predict", val_images, "--ckpt", trained.best, "--out", out, "inference.batch_size=1",
                             cwd=out.parent))  # batched as eval_report is, so that their masks match to the pixel
    return out, proc


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory) -> tuple[Path, object]:
    out = tmp_path_factory.mktemp(f"export_{trained.name}") / "model.onnx"
    proc = run_cli("export", "--ckpt", trained.best, "--format", "onnx", "--out", out, "verify_max_images=2",
                   cwd=out.parent)
    return out, proc


def val_pairs(run: Run) -> list[tuple[Path, Path]]:
    return [(run.data / item["image"], run.data / item["mask"]) for item in run.card["splits"]["val"]]


def read_mask(path: Path) -> np.ndarray:
    mask = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert mask is not None and mask.ndim == 2, path
    return mask


def read_rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def numpy_confusion(pairs: list[tuple[np.ndarray, np.ndarray]], num_classes: int, ignore: int) -> np.ndarray:
    """rows = ground truth, cols = prediction; ignore pixels dropped."""
    matrix = np.zeros((num_classes, num_classes), np.int64)
    for pred, target in pairs:
        keep = target != ignore
        t, p = target[keep].astype(np.int64), pred[keep].astype(np.int64)
        matrix += np.bincount(t * num_classes + p, minlength=num_classes**2).reshape(num_classes, num_classes)
    return matrix


def numpy_miou(matrix: np.ndarray) -> float:
    tp = np.diag(matrix).astype(np.float64)
    union = matrix.sum(0) + matrix.sum(1) - tp
    return float(np.mean(tp[union > 0] / union[union > 0]))


# ----------------------------------------------------------------------------- train
def test_train_writes_run_dir(trained):
    run_dir = trained.run_dir
    assert run_dir.is_absolute()
    assert run_dir.is_dir(), describe(trained.proc)
    for rel in ("config.yaml", "checkpoints/best.ckpt", "checkpoints/last.ckpt", "metrics.csv"):
        assert (run_dir / rel).is_file(), rel
    # the default run directory lives under runs/train/ of the working directory
    assert run_dir.parent == (trained.cwd / "runs" / "train").resolve()


def test_train_stdout_is_results_only(trained):
    lines = stdout_lines(trained.proc)
    assert lines[-1] == str(trained.run_dir)
    assert all(Path(line).is_absolute() for line in lines), lines  # no progress bars or tables on stdout
    assert "Epoch" not in trained.proc.stdout


def test_train_saves_resolved_config(trained):
    cfg = load_yaml(trained.run_dir / "config.yaml")
    assert Path(cfg["data"]["root"]).resolve() == trained.data.resolve()
    assert cfg["trainer"]["max_epochs"] == 1
    assert cfg["data"]["num_workers"] == 0
    assert cfg["model"]["arch"] == "unet"


def test_train_logs_validation_metrics(trained):
    rows = read_metrics_csv(trained.run_dir / "metrics.csv")
    values = [float(r["val/mIoU"]) for r in rows if r.get("val/mIoU")]
    assert len(values) == 1  # one epoch, one validation
    assert 0.0 <= values[0] <= 1.0


# ----------------------------------------------------------------------------- eval
def test_eval_report_schema(eval_report, trained):
    report, proc = eval_report
    assert {"mIoU", "mAcc", "aAcc", "split", "num_images", "classes"} <= set(report)
    assert report["split"] == "val"
    card = trained.card
    assert report["num_images"] == len(card["splits"]["val"])
    for key in ("mIoU", "mAcc", "aAcc"):
        assert report[key] is not None and 0.0 <= report[key] <= 1.0, key
    assert [c["id"] for c in report["classes"]] == list(range(len(card["classes"])))
    assert [c["name"] for c in report["classes"]] == card["classes"]
    for row in report["classes"]:
        assert {"id", "name", "iou", "acc", "dice", "gt_pixels", "pred_pixels"} <= set(row)
        for key in RATE_KEYS:
            assert row[key] is None or 0.0 <= row[key] <= 1.0, (row["name"], key, row[key])
        assert isinstance(row["gt_pixels"], int) and row["gt_pixels"] >= 0
        assert isinstance(row["pred_pixels"], int) and row["pred_pixels"] >= 0
        assert (row["acc"] is None) == (row["gt_pixels"] == 0)


def test_eval_pixel_counts(eval_report, trained):
    report, _ = eval_report
    ignore = trained.card["ignore_index"]
    labelled = sum(int((read_mask(mask) != ignore).sum()) for _, mask in val_pairs(trained))
    assert sum(c["gt_pixels"] for c in report["classes"]) == labelled
    assert sum(c["pred_pixels"] for c in report["classes"]) == labelled
    assert [c["gt_pixels"] for c in report["classes"]] == trained.card["stats"]["class_pixels"]["val"]


def test_eval_means_follow_from_classes(eval_report):
    report, _ = eval_report
    ious = [c["iou"] for c in report["classes"] if c["iou"] is not None]
    accs = [c["acc"] for c in report["classes"] if c["acc"] is not None]
    assert report["mIoU"] == pytest.approx(sum(ious) / len(ious), abs=1e-12)
    assert report["mAcc"] == pytest.approx(sum(accs) / len(accs), abs=1e-12)
    tp = sum(c["acc"] * c["gt_pixels"] for c in report["classes"] if c["acc"] is not None)
    assert report["aAcc"] == pytest.approx(tp / sum(c["gt_pixels"] for c in report["classes"]), abs=1e-9)


def test_eval_matches_training_validation(eval_report, trained):
    """eval and training validation share one inference path: same checkpoint, same mIoU."""
    report, _ = eval_report
    rows = read_metrics_csv(trained.run_dir / "metrics.csv")
    best = max(float(r["val/mIoU"]) for r in rows if r.get("val/mIoU"))
    assert report["mIoU"] == pytest.approx(best, abs=1e-6)


def test_eval_json_stdout(synthetic_run, tmp_path):
    proc = assert_ok(run_cli("eval", "--ckpt", synthetic_run.best, "--json", "-", cwd=tmp_path))
    report = json.loads(proc.stdout)  # nothing but the JSON on stdout
    assert report["num_images"] == len(synthetic_run.card["splits"]["val"])
    assert 0.0 <= report["mIoU"] <= 1.0
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- predict
def test_predict_writes_one_mask_per_image(predictions, trained):
    out, proc = predictions
    pairs = val_pairs(trained)
    num_classes = len(trained.card["classes"])
    lines = stdout_lines(proc)
    assert len(lines) == len(pairs)
    assert sorted(Path(line).resolve() for line in lines) == sorted((out / f"{img.stem}.png").resolve()
                                                                   for img, _ in pairs)
    assert sorted(p.name for p in out.glob("*.png")) == sorted(f"{img.stem}.png" for img, _ in pairs)
    for image_path, _ in pairs:
        image = read_rgb(image_path)
        mask = read_mask(out / f"{image_path.stem}.png")
        assert mask.shape == image.shape[:2]
        if trained.name == "camvid":
            assert mask.shape == (360, 480)  # 360 is no multiple of 32: padded, then cropped back
        assert mask.dtype == np.uint8 and mask.max() < num_classes
        overlay = cv2.imread(str(out / "overlays" / f"{image_path.stem}.png"), cv2.IMREAD_UNCHANGED)
        assert overlay is not None and overlay.shape == image.shape


def test_predict_masks_score_like_eval(predictions, eval_report, trained):
    out, _ = predictions
    report, _ = eval_report
    card = trained.card
    matrix = numpy_confusion([(read_mask(out / f"{image.stem}.png"), read_mask(mask)) for image, mask in val_pairs(trained)],
                             len(card["classes"]), card["ignore_index"])
    assert numpy_miou(matrix) == pytest.approx(report["mIoU"], abs=1e-12)
    assert matrix.sum(1).tolist() == [c["gt_pixels"] for c in report["classes"]]
    assert matrix.sum(0).tolist() == [c["pred_pixels"] for c in report["classes"]]


def test_predict_single_odd_size_image(trained, tmp_path):
    source = val_pairs(trained)[0][0]
    odd = tmp_path / "odd_input.jpg"
    assert cv2.imwrite(str(odd), cv2.resize(cv2.imread(str(source)), (131, 97), interpolation=cv2.INTER_AREA))
    out = tmp_path / "out"
    proc = assert_ok(run_cli("predict", odd, "--ckpt", trained.best, "--out", out, cwd=tmp_path))
    mask_path = out / "odd_input.png"
    lines = stdout_lines(proc)
    assert len(lines) == 1 and Path(lines[0]).resolve() == mask_path.resolve()
    mask = read_mask(mask_path)
    assert mask.shape == (97, 131)
    assert mask.max() < len(trained.card["classes"])
    assert cv2.imread(str(out / "overlays" / "odd_input.png")).shape == (97, 131, 3)


# ----------------------------------------------------------------------------- export
def test_export_writes_verified_onnx(exported, trained):
    out, proc = exported
    assert proc.returncode == 0, describe(proc)
    assert out.is_file()
    assert stdout_lines(proc)[-1] == str(out.resolve())
    assert "max |logit diff|" in proc.stderr
    assert not [p.name for p in out.parent.iterdir() if p.name != out.name]  # no staging files left


def test_export_metadata(exported, trained):
    import onnx

    out, proc = exported
    assert proc.returncode == 0, describe(proc)
    props = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert "segcli" in props
    meta = json.loads(props["segcli"])
    card = trained.card
    assert meta["classes"] == card["classes"]
    assert meta["palette"] == card["palette"]
    assert meta["ignore_index"] == card["ignore_index"]
    assert meta["mean"] == pytest.approx(card["stats"]["mean"])
    assert meta["std"] == pytest.approx(card["stats"]["std"])


def test_onnxruntime_matches_torch(exported, trained):
    import onnx
    import onnxruntime as ort
    import torch

    from segcli.inference.backends import load_torch_model

    out, proc = exported
    assert proc.returncode == 0, describe(proc)
    meta = json.loads({p.key: p.value for p in onnx.load(str(out)).metadata_props}["segcli"])
    image = read_rgb(val_pairs(trained)[-1][0])
    x = (image.astype(np.float32) / 255.0 - np.float32(meta["mean"])) / np.float32(meta["std"])
    x = np.ascontiguousarray(x.transpose(2, 0, 1)[None], dtype=np.float32)
    multiple = int(meta["size_multiple"])
    h, w = x.shape[-2:]
    x = np.pad(x, ((0, 0), (0, 0), (0, math.ceil(h / multiple) * multiple - h), (0, math.ceil(w / multiple) * multiple - w)))

    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    (onnx_logits,) = session.run(None, {session.get_inputs()[0].name: x})
    model, _ = load_torch_model(trained.best)
    with torch.no_grad():
        torch_logits = model(torch.from_numpy(x)).numpy()
    assert onnx_logits.shape == torch_logits.shape == (1, len(meta["classes"]), *x.shape[-2:])
    assert np.abs(onnx_logits - torch_logits).max() < 1e-3


def test_export_impossible_tolerance_fails_and_writes_nothing(synthetic_run, tmp_path):
    out = tmp_path / "exports" / "model.onnx"
    proc = run_cli("export", "--ckpt", synthetic_run.best, "--format", "onnx", "--out", out,
                   "verify.max_rel_logit_diff=0", "verify_max_images=1", cwd=tmp_path)  # onnxruntime differs by ~1e-6
    assert proc.returncode == 1, describe(proc)
    assert not out.exists()
    assert not out.parent.exists() or list(out.parent.iterdir()) == []  # no staging file left either
    errors = [line for line in proc.stderr.splitlines() if line.startswith("segcli: error:")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr
    assert proc.stdout.strip() == ""
