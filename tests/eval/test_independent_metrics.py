"""`segcli eval --predictions` checked against an independent implementation of the README's definitions.

A dataset made with `segcli prepare folder` from masks written here (three images of different sizes, ignore pixels
holding junk predictions, a class only predicted, a class only in one image's ground truth and never predicted, a class
in neither), scored by eval, and every reported figure recomputed with numpy (boundary IoU with the authors'
`mask_to_boundary`: OpenCV erosions of the zero-padded mask) and, for IoU, with torchmetrics' MulticlassJaccardIndex.
"""

from __future__ import annotations

import csv
import io
import json
import math
import shutil

import cv2
import numpy as np
import pytest

from helpers_eval import load_json, run_cli

IG = 255
NAMES = ["background", "road, main", 'sign "stop"', "Straße ü", "only_one", "ghost"]
SIZES = {"t": (16, 16), "a": (20, 30), "b": (17, 23), "c": (40, 10)}  # t: train only
VAL = ["a", "b", "c"]


@pytest.fixture(scope="module")
def scored(tmp_path_factory) -> dict:
    """Prepared dataset, predictions, the arrays behind them and eval's report files (`--out`) and stdout."""
    base = tmp_path_factory.mktemp("independent")
    src, preds = base / "src", base / "preds"
    for folder in (src / "images", src / "masks", preds):
        folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    truth = {}
    for key, (h, w) in SIZES.items():
        gt = rng.choice([0, 1, 2], size=(h, w), p=[0.5, 0.3, 0.2]).astype(np.uint8)
        if key == "a":
            gt[2:6, 3:9] = 4  # class 4: in one image's ground truth only, never predicted
        gt[rng.random((h, w)) < 0.1] = IG
        pred = gt.copy()
        flip = rng.random((h, w)) < 0.3
        pred[flip] = rng.choice([0, 1, 2, 3], size=int(flip.sum()))  # class 3: predicted, in no ground truth
        pred[pred == 4] = 0
        pred[gt == IG] = rng.choice([0, 200, 255], size=int((gt == IG).sum()))  # any value where ignored
        cv2.imwrite(str(src / "images" / f"{key}.png"), rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
        cv2.imwrite(str(src / "masks" / f"{key}.png"), gt)
        if key in VAL:
            cv2.imwrite(str(preds / f"{key}.png"), pred)
        truth[key] = (gt, pred)
    (src / "classes.txt").write_text("\n".join(NAMES) + "\n", encoding="utf-8")
    (src / "train.txt").write_text("t\n")
    (src / "val.txt").write_text("\n".join(VAL) + "\n")
    capture = _Capture()
    code, _, err = capture.cli(["prepare", "folder", "--images", src / "images", "--masks", src / "masks",
                                "--out", base / "data", "--classes", src / "classes.txt",
                                "--split-file", f"train={src / 'train.txt'}", "--split-file", f"val={src / 'val.txt'}"])
    assert code == 0, err
    code, out, err = capture.cli(["eval", "--predictions", preds, "--data", base / "data", "--split", "val",
                                  "--out", base / "report"])
    assert code == 0, err
    return {"base": base, "data": base / "data", "preds": preds, "truth": truth, "report": base / "report",
            "stdout": out}


class _Capture:
    """run_cli's capsys for a module-scoped fixture: the streams captured by hand."""

    def cli(self, args):
        import contextlib

        from segcli.cli import main

        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main([str(a) for a in args])
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        return code, out.getvalue(), err.getvalue()


def mask_to_boundary(mask: np.ndarray, d: int) -> np.ndarray:
    """Cheng et al.'s reference: the mask minus its erosion (d 3x3 erosions of the mask padded by one zero pixel)."""
    h, w = mask.shape
    padded = cv2.copyMakeBorder(mask.astype(np.uint8), 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
    eroded = cv2.erode(padded, np.ones((3, 3), np.uint8), iterations=d)[1:h + 1, 1:w + 1]
    return (mask.astype(np.uint8) - eroded).astype(bool)


def independent(pairs, c: int, ratio: float = 0.02) -> dict:
    """The README's Metrics section, written out again: {"matrix", aggregates, "classes", "per_image"}."""
    matrix, support, boundary, per_image = np.zeros((c, c), np.int64), np.zeros(c, np.int64), np.zeros((c, 2)), []
    for gt, pred in pairs:
        valid = gt != IG
        m = np.bincount(gt[valid].astype(np.int64) * c + pred[valid], minlength=c * c).reshape(c, c)
        matrix += m
        support += m.sum(1) > 0
        tp, union = np.diag(m), m.sum(0) + m.sum(1) - np.diag(m)
        ious = [tp[k] / union[k] if union[k] else None for k in range(c)]
        defined = [v for v in ious if v is not None]
        per_image.append([float(np.mean(defined)) if defined else None] + ious)
        d = max(1, round(ratio * math.hypot(*gt.shape)))
        for k in range(c):
            g, p = mask_to_boundary(gt == k, d) & valid, mask_to_boundary((pred == k) & valid, d) & valid
            boundary[k] += [(g & p).sum(), (g | p).sum()]
    tp, gt_px, pred_px = np.diag(matrix).astype(float), matrix.sum(1).astype(float), matrix.sum(0).astype(float)
    fp, fn = pred_px - tp, gt_px - tp

    def rate(num, den):
        return [float(n / d) if d > 0 else None for n, d in zip(num, den)]

    def mean(values):
        values = [v for v in values if v is not None]
        return float(np.mean(values)) if values else None

    iou, acc, dice, prec = rate(tp, tp + fp + fn), rate(tp, gt_px), rate(2 * tp, 2 * tp + fp + fn), rate(tp, pred_px)
    biou = rate(boundary[:, 0], boundary[:, 1])
    total = gt_px.sum()
    return {"matrix": matrix, "mIoU": mean(iou), "mAcc": mean(acc), "mDice": mean(dice), "mBIoU": mean(biou),
            "aAcc": tp.sum() / total, "fwIoU": sum(g / total * v for g, v in zip(gt_px, iou) if v is not None),
            "classes": [{"id": k, "iou": iou[k], "biou": biou[k], "acc": acc[k], "precision": prec[k], "dice": dice[k],
                         "gt_pixels": int(gt_px[k]), "pred_pixels": int(pred_px[k]), "images": int(support[k])}
                        for k in range(c)],
            "per_image": per_image}


def same(a, b, tol=1e-12) -> bool:
    return (a is None and b is None) or (a is not None and b is not None and abs(a - b) <= tol)


def test_every_figure_matches_an_independent_computation(scored):
    """mIoU, mBIoU, mAcc, mDice, aAcc, fwIoU and each class's rates and counts, exactly; the nulls where the README
    says (a class in neither map: everything null and out of every mean; predicted only: IoU 0, Acc null)."""
    report = load_json(scored["report"] / "report.json")
    mine = independent([scored["truth"][k] for k in VAL], len(NAMES))
    for key in ("mIoU", "mBIoU", "mAcc", "mDice", "aAcc", "fwIoU"):
        assert same(report[key], mine[key]), key
    assert [r["name"] for r in report["classes"]] == NAMES and report["num_images"] == 3
    for row, want in zip(report["classes"], mine["classes"]):
        for key, value in want.items():
            assert same(row[key], value), (row["name"], key, row[key], value)
    ghost, straße, only = report["classes"][5], report["classes"][3], report["classes"][4]
    assert all(ghost[k] is None for k in ("iou", "biou", "acc", "precision", "dice"))
    assert straße["iou"] == 0.0 and straße["acc"] is None and straße["precision"] == 0.0
    assert only["iou"] == 0.0 and only["precision"] is None and only["images"] == 1


def test_iou_agrees_with_torchmetrics(scored):
    """MulticlassJaccardIndex(ignore_index=255): the same per-class IoU (its 0 for the class in neither map is the
    report's null) and, average='macro', the same mIoU."""
    torch = pytest.importorskip("torch")
    classification = pytest.importorskip("torchmetrics.classification")
    c = len(NAMES)
    per_class = classification.MulticlassJaccardIndex(num_classes=c, ignore_index=IG, average="none")
    macro = classification.MulticlassJaccardIndex(num_classes=c, ignore_index=IG, average="macro")
    for key in VAL:
        gt, pred = scored["truth"][key]
        p, t = torch.from_numpy(np.where(gt == IG, 0, pred).astype(np.int64)), torch.from_numpy(gt.astype(np.int64))
        per_class.update(p, t)
        macro.update(p, t)
    report = load_json(scored["report"] / "report.json")
    for value, row in zip(per_class.compute().tolist(), report["classes"]):
        assert abs(value - (row["iou"] if row["iou"] is not None else 0.0)) < 1e-6, row["name"]
    assert abs(float(macro.compute()) - report["mIoU"]) < 1e-6


def test_csv_files_table_and_markdown_agree_with_the_json(scored):
    """per_class.csv (names with a comma, quotes and umlauts), confusion.csv, per_image.csv, the table on stdout
    and report.md say what report.json says, rounded as documented, in id order."""
    report, out = load_json(scored["report"] / "report.json"), scored["report"]
    mine = independent([scored["truth"][k] for k in VAL], len(NAMES))
    rows = list(csv.DictReader(io.StringIO((out / "per_class.csv").read_text(encoding="utf-8"))))
    assert [r["name"] for r in rows] == NAMES
    for row, r in zip(report["classes"], rows):
        for key in ("iou", "biou", "acc", "precision", "dice"):
            assert r[key] == ("" if row[key] is None else f"{row[key]:.6f}"), (row["name"], key)
        assert [r[k] for k in ("id", "gt_pixels", "pred_pixels", "images")] == \
            [str(row[k]) for k in ("id", "gt_pixels", "pred_pixels", "images")]
    confusion = list(csv.reader(io.StringIO((out / "confusion.csv").read_text(encoding="utf-8"))))
    assert confusion[0][1:] == NAMES and [r[0] for r in confusion[1:]] == NAMES
    assert np.array_equal(np.array([[int(v) for v in r[1:]] for r in confusion[1:]]), mine["matrix"])
    per_image = list(csv.reader(io.StringIO((out / "per_image.csv").read_text(encoding="utf-8"))))
    assert per_image[0] == ["image", "mIoU"] + NAMES and [r[0] for r in per_image[1:]] == VAL
    for r, want in zip(per_image[1:], mine["per_image"]):
        assert [float(v) if v else None for v in r[1:]] == [None if v is None else float(f"{v:.6f}") for v in want]

    def shown(v):
        return "—" if v is None else f"{100 * v:.2f}"

    for key in ("mIoU", "mBIoU", "mAcc", "mDice", "aAcc", "fwIoU"):
        assert f"{key} {shown(report[key])}" in scored["stdout"]
    markdown = (out / "report.md").read_text(encoding="utf-8")
    for row in report["classes"]:
        cells = [shown(row[k]) for k in ("iou", "biou", "acc", "precision", "dice")]
        counts = [f"{row[k]:,}" for k in ("gt_pixels", "pred_pixels", "images")]
        line = next(line for line in scored["stdout"].splitlines() if line.split("│")[1:2] == [f" {row['id']:>2} "])
        assert [cell.strip() for cell in line.split("│")[1:-1]] == [str(row["id"]), row["name"]] + cells + counts
        assert "| " + " | ".join([row["name"]] + cells + counts) + " |" in markdown


def test_gate_passes_at_its_threshold_and_fails_just_above(scored, capsys):
    """'below its threshold' fails: mIoU equal to the threshold (as a fraction, or as a percentage) passes with
    exit 0; a threshold a little above fails with exit 1 naming both values; a null class fails even at 0."""
    report = load_json(scored["report"] / "report.json")
    args = ["eval", "--predictions", scored["preds"], "--data", scored["data"], "--split", "val"]
    miou = report["mIoU"]
    for spec in (f"mIoU={miou!r}", f"mIoU={100 * miou!r}%", "class:road, main=0", "class:Straße ü:precision=0"):
        code, _, err = run_cli(args + ["--fail-under", spec], capsys)
        assert code == 0, (spec, err)
    above = math.ceil(miou * 1e4 + 0.5) / 100  # a percentage with two decimals, above mIoU
    for spec, shown in ((f"mIoU={miou + 1e-6!r}", f"mIoU {100 * miou:.4f}% < {100 * (miou + 1e-6):.4f}%"),
                        (f"mIoU={above:.2f}%", f"mIoU {100 * miou:.2f}"), ("class:ghost=0", "class:ghost IoU null"),
                        ("class:Straße ü:acc=0", "Acc null")):
        code, _, err = run_cli(args + ["--fail-under", spec], capsys)
        line = err.strip().splitlines()[-1]
        assert code == 1 and line.startswith("segcli: error: eval gate failed: ") and shown in line, (spec, line)
    code, _, err = run_cli(args + ["--fail-under", "class:nosuch=0.5"], capsys)
    assert code == 2 and "unknown class 'nosuch'" in err


@pytest.mark.parametrize("kind", ["uint16", "rgb", "indexed", "capital_suffix"])
def test_prediction_files_in_other_forms_score_the_same(scored, tmp_path, capsys, kind):
    """The same ids as 16-bit PNGs, as the card's palette colours, as an indexed PNG, or as a.PNG (a PNG named in
    capitals, as Windows tools write them; was 'prediction missing for a.png' beside it): the same report."""
    from PIL import Image

    from segcli.data.card import load_card

    palette = np.array(load_card(scored["data"]).palette, np.uint8)
    folder = tmp_path / kind
    folder.mkdir()
    for key in VAL:
        gt, pred = scored["truth"][key]
        ids = np.where(pred < len(NAMES), pred, 0).astype(np.uint8)  # junk at ignored pixels: any class will do
        if kind == "uint16":
            cv2.imwrite(str(folder / f"{key}.png"), pred.astype(np.uint16))
        elif kind == "rgb":
            cv2.imwrite(str(folder / f"{key}.png"), palette[ids][..., ::-1])
        elif kind == "indexed":
            image = Image.fromarray(ids, "P")
            image.putpalette(palette.ravel().tolist())
            image.save(folder / f"{key}.png")
        else:
            shutil.copy(scored["preds"] / f"{key}.png", folder / f"{key}.PNG")
    code, out, err = run_cli(["eval", "--predictions", folder, "--data", scored["data"], "--split", "val",
                              "--json", "-"], capsys)
    assert code == 0, err
    got, want = json.loads(out), load_json(scored["report"] / "report.json")
    assert [got[k] for k in ("mIoU", "mBIoU", "classes")] == [want[k] for k in ("mIoU", "mBIoU", "classes")]


def test_prediction_missing_of_another_size_or_out_of_range_is_exit_3(scored, tmp_path, capsys):
    """One line naming the prediction file: missing, a row taller than the ground truth, an id past the classes."""
    args = ["eval", "--data", scored["data"], "--split", "val", "--predictions"]
    for name, change, said in (("missing", lambda p, a: p.unlink(), "prediction missing for b.png"),
                               ("size", lambda p, a: cv2.imwrite(str(p), np.pad(a, ((0, 1), (0, 0)))),
                                "prediction is 23x18 but the ground truth"),
                               ("range", lambda p, a: cv2.imwrite(str(p), np.full_like(a, 6)), "outside 0..5")):
        folder = tmp_path / name
        shutil.copytree(scored["preds"], folder)
        change(folder / "b.png", scored["truth"]["b"][1])
        code, _, err = run_cli(args + [folder], capsys)
        line = err.strip().splitlines()[-1]
        assert code == 3 and line.startswith(f"segcli: error: {folder / 'b.png'}: ") and said in line, (name, line)
        assert "Traceback" not in err
