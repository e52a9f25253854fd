"""Acceptance: model-free eval of crafted predictions, every number checked against a hand computation.

The crafted split (conftest.CRAFTED, classes sky road car sign tree, 2x4 images) has ignore pixels,
an absent class (tree), a class only predicted (sign, also predicted on ignore pixels where it must
not count), a class present in only some images (car, image seq1/b), and a prediction of 255 on an
ignore pixel (allowed: ignored pixels count nowhere).

Pairs (ground truth, prediction) over non-ignored pixels:
  seq1/a: (0,0) (0,1) (1,1) (1,1) | (0,0) (1,1) (1,3)           7 pixels
  seq1/b: (2,2) (2,0) (0,0) (0,0) | (1,1) (1,2)                 6 pixels
  c:      (0,0) x3                 | (1,1) x4                    7 pixels
Confusion matrix (rows ground truth):
  sky  [7, 1, 0, 0, 0]   GT 8   PRED 8   TP 7  → FP 1 FN 1
  road [0, 8, 1, 1, 0]   GT 10  PRED 9   TP 8  → FP 1 FN 2
  car  [1, 0, 1, 0, 0]   GT 2   PRED 2   TP 1  → FP 1 FN 1
  sign [0, 0, 0, 0, 0]   GT 0   PRED 1   TP 0  → FP 1 FN 0
  tree [0, 0, 0, 0, 0]   GT 0   PRED 0   absent
"""

from fractions import Fraction as F

import cv2
import numpy as np
import pytest

from helpers_eval import CLASSES, load_json, run_cli

EXPECTED_MATRIX = [[7, 1, 0, 0, 0], [0, 8, 1, 1, 0], [1, 0, 1, 0, 0], [0, 0, 0, 0, 0], [0, 0, 0, 0, 0]]
IOU = [F(7, 9), F(8, 11), F(1, 3), F(0), None]
ACC = [F(7, 8), F(8, 10), F(1, 2), None, None]
PREC = [F(7, 8), F(8, 9), F(1, 2), F(0), None]
DICE = [F(14, 16), F(16, 19), F(2, 4), F(0), None]
GT_PX, PRED_PX, IMAGES = [8, 10, 2, 0, 0], [8, 9, 2, 1, 0], [3, 3, 1, 0, 0]
MIOU = (F(7, 9) + F(8, 11) + F(1, 3) + 0) / 4
MACC = (F(7, 8) + F(8, 10) + F(1, 2)) / 3
MDICE = (F(7, 8) + F(16, 19) + F(1, 2) + 0) / 4
AACC = F(16, 20)
FWIOU = F(8, 20) * F(7, 9) + F(10, 20) * F(8, 11) + F(2, 20) * F(1, 3)
# per image: IoU = TP / (GT + PRED - TP) of that image alone; None where the class is in neither map.
PER_IMAGE = {
    "seq1/a": [F(2, 3), F(3, 5), None, F(0), None],  # sky 2/(3+2-2); road 3/(4+4-3); sign predicted once
    "seq1/b": [F(2, 3), F(1, 2), F(1, 3), None, None],  # sign only predicted on ignore pixels → absent
    "c": [F(1), F(1), None, None, None],
}


def near(x):
    return None if x is None else pytest.approx(float(x), abs=1e-12)


def image_mean(values):
    vals = [v for v in values if v is not None]
    return sum(vals) / len(vals)


@pytest.fixture()
def report(crafted, tmp_path, capsys):
    root, preds = crafted
    # dilation_ratio=1: the boundary band covers whole images, so boundary IoU must equal IoU.
    code, out, err = run_cli(["eval", "--predictions", preds, "--data", root, "--out", tmp_path / "out", "--worst", "1",
                              "boundary.dilation_ratio=1.0"], capsys)
    assert code == 0, err
    return load_json(tmp_path / "out" / "report.json"), out, tmp_path / "out"


def test_every_number_matches_the_hand_computation(report):
    rep, _, _ = report
    assert rep["num_images"] == 3 and rep["split"] == "val" and rep["mode"] == "predictions"
    assert rep["mIoU"] == near(MIOU) and rep["mAcc"] == near(MACC) and rep["mDice"] == near(MDICE)
    assert rep["aAcc"] == near(AACC) and rep["fwIoU"] == near(FWIOU)
    assert rep["mBIoU"] == near(MIOU)
    for c, row in enumerate(rep["classes"]):
        assert row["id"] == c and row["name"] == CLASSES[c]
        assert row["iou"] == near(IOU[c]) and row["acc"] == near(ACC[c])
        assert row["precision"] == near(PREC[c]) and row["dice"] == near(DICE[c])
        assert row["biou"] == near(IOU[c])
        assert (row["gt_pixels"], row["pred_pixels"], row["images"]) == (GT_PX[c], PRED_PX[c], IMAGES[c])


def test_absent_and_predicted_only_classes(report):
    rep, out, _ = report
    tree, sign = rep["classes"][4], rep["classes"][3]
    assert all(tree[k] is None for k in ("iou", "biou", "acc", "precision", "dice"))  # absent: null everywhere
    assert sign["iou"] == 0.0 and sign["acc"] is None  # predicted only: IoU 0 counts, Acc has no denominator
    assert "—" in out and "tree" in out


def test_csv_files(report):
    _, _, out = report
    confusion = [line.split(",") for line in (out / "confusion.csv").read_text().splitlines()]
    assert confusion[0] == ["gt \\ pred"] + CLASSES
    assert [[int(v) for v in row[1:]] for row in confusion[1:]] == EXPECTED_MATRIX
    per_class = [line.split(",") for line in (out / "per_class.csv").read_text().splitlines()]
    assert per_class[0] == ["id", "name", "iou", "biou", "acc", "precision", "dice", "gt_pixels", "pred_pixels", "images"]
    assert per_class[5][2:7] == ["", "", "", "", ""] and per_class[4][4] == ""  # tree all empty, sign acc empty
    assert float(per_class[2][2]) == pytest.approx(8 / 11, abs=1e-6)
    per_image = [line.split(",") for line in (out / "per_image.csv").read_text().splitlines()]
    assert per_image[0] == ["image", "mIoU"] + CLASSES
    rows = {r[0]: r[1:] for r in per_image[1:]}
    assert list(rows) == ["seq1/a", "seq1/b", "c"]
    for key, expected in PER_IMAGE.items():
        assert float(rows[key][0]) == pytest.approx(float(image_mean(expected)), abs=1e-6)
        for cell, value in zip(rows[key][1:], expected):
            assert cell == "" if value is None else float(cell) == pytest.approx(float(value), abs=1e-6)


def test_markdown_png_and_worst(report):
    import cv2

    rep, out, files = report
    md = (files / "report.md").read_text()
    assert "| class | IoU | BIoU | Acc | Prec | Dice | gt px | pred px | images |" in md
    assert "| road | 72.73 |" in md and "| tree | — |" in md
    png = cv2.imread(str(files / "confusion.png"))
    assert png is not None and png.shape[0] > 100 and png.shape[1] > 100
    # worst image: seq1/a (mIoU (2/3 + 3/5 + 0) / 3 = 19/45) below seq1/b (1/2) and c (1)
    assert rep["worst"] == [{"image": "seq1/a", "mIoU": pytest.approx(19 / 45), "file": "worst/01_seq1__a.png"}]
    panel = cv2.imread(str(files / "worst" / "01_seq1__a.png"))
    assert panel is not None and panel.shape[1] >= 4 * 4
    assert "worst: seq1/a" in out


def test_json_to_stdout_is_only_json(crafted, capsys):
    import json

    root, preds = crafted
    code, out, _ = run_cli(["eval", "--predictions", preds, "--data", root, "--json", "-"], capsys)
    assert code == 0
    rep = json.loads(out)
    assert rep["mIoU"] == near(MIOU) and rep["boundary"] == {"dilation_ratio": 0.02}


def test_json_into_a_pipe_or_through_a_link_writes_there_and_keeps_it(crafted, tmp_path, capsys):
    """--json into a FIFO (as `--json >(jq ...)` or /dev/stdout give) and through a symbolic link: the temp file +
    rename put a plain file in the pipe's place (as root it replaced /dev/stdout) and the link's."""
    import json
    import os
    import stat

    root, preds = crafted
    fifo = tmp_path / "report.fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        code, _, err = run_cli(["eval", "--predictions", preds, "--data", root, "--json", fifo], capsys)
        assert code == 0, err
        assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
        assert json.loads(os.read(reader, 1 << 20))["mIoU"] == near(MIOU)
    finally:
        os.close(reader)
    (tmp_path / "kept").mkdir()
    link = tmp_path / "link.json"
    link.symlink_to(tmp_path / "kept" / "report.json")
    code, _, err = run_cli(["eval", "--predictions", preds, "--data", root, "--json", link], capsys)
    assert code == 0, err
    assert link.is_symlink() and load_json(tmp_path / "kept" / "report.json")["mIoU"] == near(MIOU)


def test_gate_exit_codes(crafted, capsys):
    root, preds = crafted
    base = ["eval", "--predictions", preds, "--data", root]
    # mIoU = 0.4596..., road IoU = 0.7272...
    code, _, err = run_cli(base + ["--fail-under", "mIoU=0.45", "--fail-under", "class:road=0.72"], capsys)
    assert code == 0, err
    code, _, err = run_cli(base + ["--fail-under", "mIoU=0.50", "--fail-under", "class:road=0.72",
                                   "--fail-under", "class:car:acc=0.6"], capsys)
    assert code == 1
    assert err.strip().splitlines()[-1] == ("segcli: error: eval gate failed: mIoU 45.96% < 50.00%; "
                                            "class:car Acc 50.00% < 60.00%")
    code, _, err = run_cli(base + ["--fail-under", "class:sign:acc=0.1"], capsys)  # null never passes
    assert code == 1 and "class:sign Acc null" in err
    code, _, err = run_cli(base + ["--fail-under", "class:tree=0.1"], capsys)
    assert code == 1 and "class:tree IoU null" in err


def test_gate_usage_errors(crafted, capsys):
    root, preds = crafted
    base = ["eval", "--predictions", preds, "--data", root]
    code, _, err = run_cli(base + ["--fail-under", "mIOU=0.4"], capsys)  # case-insensitive unique match is fine
    assert code == 0, err
    for spec, hint in (("miou0.5", "expected METRIC=VALUE"), ("mIU=0.5", "did you mean mIoU"),
                       ("class:rod=0.9", "did you mean road"), ("class:road:recal=0.9", "did you mean"),
                       ("mIoU=60", "write mIoU=0.6 or mIoU=60%"), ("mIoU=160%", "fractions in [0, 1]"),
                       ("mIoU=-0.1", "fractions in [0, 1]"), ("mIoU=abc", "not a number"),
                       ("Road=0.9", "'road' is a class; write class:Road=0.9"),
                       ("road:acc=0.9", "write class:road:acc=0.9"), ("foo=0.5", "or class:NAME=V")):
        code, _, err = run_cli(base + ["--fail-under", spec], capsys)
        assert code == 2 and hint in err and len(err.strip().splitlines()) == 1, (spec, err)


def test_compare_prints_deltas(crafted, tmp_path, capsys):
    import json

    root, preds = crafted
    old = tmp_path / "old.json"
    run_cli(["eval", "--predictions", preds, "--data", root, "--json", old], capsys)
    rep = json.loads(old.read_text())
    rep["mIoU"] -= 0.1
    rep["classes"][1]["iou"] = 0.5
    old.write_text(json.dumps(rep))
    code, out, err = run_cli(["eval", "--predictions", preds, "--data", root, "--compare", old, "--out", tmp_path / "o"], capsys)
    assert code == 0, err
    cmp = load_json(tmp_path / "o" / "report.json")["compare"]
    assert cmp["aggregates"]["mIoU"]["delta"] == pytest.approx(0.1)
    road = next(r for r in cmp["classes"] if r["name"] == "road")
    assert road["delta_iou"] == pytest.approx(8 / 11 - 0.5) and road["old_iou"] == 0.5
    assert "+22.73" in out  # (8/11 - 1/2) in points
    assert "Δ IoU" in (tmp_path / "o" / "report.md").read_text()
    assert "scores other classes" not in err and "written by segcli" not in err
    from segcli import __version__

    assert load_json(tmp_path / "o" / "report.json")["segcli_version"] == __version__
    rep["segcli_version"] = "0.0.9"  # a report of another version: a metric's definition may have changed since
    old.write_text(json.dumps(rep))
    code, out, err = run_cli(["eval", "--predictions", preds, "--data", root, "--compare", old], capsys)
    assert code == 0 and f"{old} was written by segcli 0.0.9, this is segcli {__version__}; a metric" in err, err
    del rep["segcli_version"]
    rep["classes"][1]["name"] = "street"  # a report of another dataset: the means average other classes
    old.write_text(json.dumps(rep))
    code, out, err = run_cli(["eval", "--predictions", preds, "--data", root, "--compare", old], capsys)
    assert code == 0 and "scores other classes" in err and "in one only: road, street" in err, err
    old.write_text("{not json")
    code, _, err = run_cli(["eval", "--predictions", preds, "--data", root, "--compare", old], capsys)
    assert code == 3 and "old.json" in err


@pytest.mark.parametrize("edit, text", [
    (lambda rep: rep["classes"][1].update(iou="0.5"), 'classes[1].iou is "0.5", not a number or null'),
    (lambda rep: rep.update(mIoU=[0.5]), "mIoU is [0.5], not a number or null"),
    (lambda rep: rep["classes"][0].update(name=7), "no classes list with a name per class"),
])
def test_compare_with_a_malformed_report_is_a_data_error_naming_the_field(crafted, tmp_path, capsys, edit, text):
    """A hand-edited report, or another tool's JSON: was exit 4 (float('0.5'), sorting int and str names)."""
    import json

    root, preds = crafted
    old = tmp_path / "old.json"
    run_cli(["eval", "--predictions", preds, "--data", root, "--json", old], capsys)
    rep = json.loads(old.read_text())
    edit(rep)
    old.write_text(json.dumps(rep))
    code, out, err = run_cli(["eval", "--predictions", preds, "--data", root, "--compare", old], capsys)
    assert code == 3 and out == "", err
    assert err.strip().splitlines() == [f"segcli: error: {old}: not a segcli eval report ({text}); pass a report.json "
                                        "from `segcli eval`"], err


def test_prediction_errors_name_the_file(crafted, capsys):
    from segcli.inference.io import write_png

    root, preds = crafted
    base = ["eval", "--predictions", preds, "--data", root]
    (preds / "c.png").unlink()
    code, _, err = run_cli(base, capsys)
    assert code == 3 and "c.png" in err and "missing" in err
    write_png(preds / "c.png", np.zeros((3, 4), np.uint8))
    code, _, err = run_cli(base, capsys)
    assert code == 3 and "c.png" in err and "4x3" in err and "4x2" in err
    (preds / "c.png").write_bytes(cv2.imencode(".tiff", np.zeros((2, 4), np.float32))[1].tobytes())
    code, _, err = run_cli(base, capsys)
    assert code == 3 and "c.png: prediction dtype float32 is not 8- or 16-bit" in err  # was "mask dtype"
    write_png(preds / "c.png", np.full((2, 4), 9, np.uint8))  # class id 9 at non-ignored pixels
    code, _, err = run_cli(base, capsys)
    assert code == 3 and "c.png" in err and "[9]" in err


def test_ground_truth_out_of_range_is_a_data_error(crafted, capsys):
    from segcli.inference.io import write_png

    root, preds = crafted
    write_png(root / "masks" / "val" / "seq1" / "b.png", np.array([[2, 2, 0, 0], [1, 7, IG, IG]], np.uint8))
    code, _, err = run_cli(["eval", "--predictions", preds, "--data", root], capsys)
    assert code == 3 and "b.png" in err and "[7]" in err and len(err.strip().splitlines()) == 1


def test_mode_usage_errors(crafted, tmp_path, capsys):
    root, preds = crafted
    for args, hint in ((["eval"], "exactly one of"), (["eval", "--predictions", preds], "needs --data"),
                       (["eval", "--predictions", preds, "--data", root, "--corruptions", "fog"], "needs a model"),
                       (["eval", "--predictions", preds, "--data", root, "--worst", "2"], "--out"),
                       (["eval", "--predictions", preds, "--data", root, "worst=abc"], "--worst='abc'"),  # was exit 4
                       (["eval", "--predictions", preds, "--data", root, "--worst", "-1"], "images >= 0"),
                       # its fix named data.val_split=..., a key eval refuses
                       (["eval", "--predictions", preds, "--data", root, "--split", "tset"],
                        "no split 'tset'; available: val; name one of them (--split NAME), or re-run"),
                       (["eval", "--predictions", preds, "--data", root, "inference.batch_size=0"], "batch_size=0"),
                       # exit 4 before (int('abc'), numpy's seed bounds); a negative band was taken as its minimum
                       (["eval", "--predictions", preds, "--data", root, "seed=abc"], "seed='abc': give a whole"),
                       (["eval", "--predictions", preds, "--data", root, "boundary.dilation_ratio=-1"],
                        "boundary.dilation_ratio=-1: give a fraction of the image diagonal")):
        code, _, err = run_cli(args, capsys)
        assert code == 2 and hint in err, (args, err)


IG = 255


def test_colour_predictions_in_the_cards_palette(crafted, tmp_path, capsys):
    """Predictions another tool stored in colour (the dataset's palette) score exactly as the same ids; a colour
    the palette lacks is a data error naming the file and the colour."""
    from helpers_eval import CRAFTED, IG, PALETTE

    from segcli.inference.io import write_png

    root, _ = crafted
    ids_dir, colour_dir = tmp_path / "ids", tmp_path / "colour"
    for key, (_, pred) in CRAFTED.items():
        pred = np.array(pred, np.uint8)
        pred[pred == IG] = 0
        write_png(ids_dir / f"{key}.png", pred)
        write_png(colour_dir / f"{key}.png", np.array(PALETTE, np.uint8)[pred])  # RGB, as write_png takes it
    reports = [_mious_and_classes(preds, root, capsys) for preds in (ids_dir, colour_dir)]
    assert reports[0] == reports[1]
    stray = np.array(PALETTE, np.uint8)[np.zeros((2, 4), np.uint8)]
    stray[1, 2] = (1, 2, 3)
    write_png(colour_dir / "c.png", stray)
    code, _, err = run_cli(["eval", "--predictions", colour_dir, "--data", root], capsys)
    assert code == 3 and "c.png: a colour prediction with colours that are not in the dataset's palette" in err
    assert "(1, 2, 3)" in err


def _mious_and_classes(preds, root, capsys) -> tuple:
    """(mIoU, per-class rows) of `eval --predictions PREDS --json -`."""
    import json

    code, out, err = run_cli(["eval", "--predictions", preds, "--data", root, "--json", "-"], capsys)
    assert code == 0, err
    rep = json.loads(out)
    return rep["mIoU"], rep["classes"]


def test_colour_predictions_showing_only_grey_classes(crafted, tmp_path, capsys):
    """A colour prediction that holds only grey palette colours (r = g = b, e.g. CamVid's sky (128, 128, 128) or a
    building (70, 70, 70)) was read as one channel of ids: 'pred contains class ids [70] outside 0..4', exit 3."""
    from helpers_eval import CRAFTED, IG, write_card

    from segcli.data.card import load_card
    from segcli.inference.io import write_png

    root, _ = crafted
    palette = [[70, 130, 180], [128, 64, 128], [70, 70, 70], [220, 220, 0], [1, 1, 1]]  # car grey; tree (1, 1, 1)
    write_card(root, "crafted", CLASSES, palette, load_card(root).splits)
    ids_dir, colour_dir = tmp_path / "ids", tmp_path / "colour"
    for key, (gt, pred) in CRAFTED.items():
        pred = np.array(pred, np.uint8)
        pred[pred == IG] = 0
        if key == "seq1/b":
            pred[:] = 2  # all car: a grey image in colour
        if key == "c":
            pred[:] = 1  # ids 0..4 that are also palette greys, e.g. (1, 1, 1): stored ids win
        write_png(ids_dir / f"{key}.png", pred)
        colour = np.array(palette, np.uint8)[pred] if key != "c" else np.repeat(pred[..., None], 3, axis=2)
        write_png(colour_dir / f"{key}.png", colour)
    reports = [_mious_and_classes(preds, root, capsys) for preds in (ids_dir, colour_dir)]
    assert reports[0] == reports[1]
    assert reports[1][1][2]["pred_pixels"] == 6  # the all-car image: its 6 pixels not ignored (seq1/b: 2x4, 2 ignored)


def test_out_that_is_a_file_or_json_that_is_a_folder_is_refused_before_scoring(crafted, tmp_path, capsys):
    """Found only when the reports were written, the whole evaluation was thrown away, and the line named the
    hidden staging folder ('OUT/.report.partial-PID/report.json: ... check free space and permissions')."""
    root, preds = crafted
    base = ["eval", "--predictions", preds, "--data", root]
    afile = tmp_path / "afile"
    afile.write_text("keep me")
    for args, line in (
            (["--out", afile], f"segcli: error: --out {afile}: {afile} is a file, not a folder; give a folder for the "
                               "report files"),
            (["--out", afile / "sub"], f"segcli: error: --out {afile / 'sub'}: {afile} is a file, not a folder; give a "
                                       "folder for the report files"),
            (["--json", tmp_path], f"segcli: error: --json {tmp_path}: a folder, not a file; give a file name (e.g. "
                                   f"{tmp_path / 'report.json'}) or - for stdout")):
        code, out, err = run_cli(base + args, capsys)
        assert code == 3 and out == "" and err.strip().splitlines() == [line], err
    assert afile.read_text() == "keep me"


@pytest.mark.parametrize("json_at, out_at", [("r", "r"), ("r", "r/sub")])
def test_json_at_the_path_of_out_or_above_it_is_refused_before_scoring(crafted, tmp_path, capsys, json_at, out_at):
    """`--json R --out R` (R not there yet) wrote R as the JSON file, then failed to make the folder R: exit 3 after
    the whole evaluation, naming the hidden staging folder, and no report files."""
    root, preds = crafted
    report, out_dir = tmp_path / json_at, tmp_path / out_at
    code, out, err = run_cli(["eval", "--predictions", preds, "--data", root, "--json", report, "--out", out_dir], capsys)
    assert code == 2 and out == "" and err.strip().splitlines() == [
        f"segcli: error: --json {report}: the path of --out {out_dir} or a folder above it; give --json a file name of "
        f"its own (--out already writes {out_dir / 'report.json'})"], err
    assert not report.exists()
    code, _, err = run_cli(["eval", "--predictions", preds, "--data", root, "--json", out_dir / "report.json", "--out",
                            out_dir], capsys)  # the JSON inside --out is fine
    assert code == 0 and load_json(out_dir / "report.json")["num_images"] == 3, err


def test_a_rerun_into_the_same_out_leaves_no_stale_worst_panels(crafted, tmp_path, capsys):
    """worst/ of an earlier run (another K, or no --worst now) stayed beside a report that does not list it."""
    root, preds = crafted
    out = tmp_path / "out"
    base = ["eval", "--predictions", preds, "--data", root, "--out", out]
    assert run_cli(base + ["--worst", "3"], capsys)[0] == 0
    assert len(list((out / "worst").iterdir())) == 3
    (out / "worst" / "notes.txt").write_text("mine")  # not a panel: kept
    assert run_cli(base + ["--worst", "1"], capsys)[0] == 0
    listed = [w["file"] for w in load_json(out / "report.json")["worst"]]
    assert sorted(p.name for p in (out / "worst").iterdir()) == sorted([listed[0][len("worst/"):], "notes.txt"])
    (out / "worst" / "notes.txt").unlink()
    assert run_cli(base, capsys)[0] == 0
    assert not (out / "worst").exists() and "worst" not in load_json(out / "report.json")


def test_compare_with_nan_reads_it_as_null_and_writes_valid_json(crafted, tmp_path, capsys):
    """NaN in the earlier report (numpy-based tools write it for absent classes) went into the compare section:
    report.json held NaN, which is not JSON (jq, json.loads(parse_constant=...) and browsers refuse it)."""
    import json

    root, preds = crafted
    old = tmp_path / "old.json"
    run_cli(["eval", "--predictions", preds, "--data", root, "--json", old], capsys)
    old.write_text(old.read_text().replace('"mIoU": 0.', '"mIoU": NaN, "was": 0.', 1))
    code, _, err = run_cli(["eval", "--predictions", preds, "--data", root, "--compare", old, "--out", tmp_path / "o"],
                           capsys)
    assert code == 0, err

    def strict(name):
        raise ValueError(f"{name} is not JSON")

    report = json.loads((tmp_path / "o" / "report.json").read_text(), parse_constant=strict)
    assert report["compare"]["aggregates"]["mIoU"] == {"old": None, "new": near(MIOU), "delta": None}
    old.write_text(old.read_text().replace("NaN", "-Infinity"))
    code, _, err = run_cli(["eval", "--predictions", preds, "--data", root, "--compare", old], capsys)
    assert code == 3 and "mIoU is -Infinity, not a number or null" in err, err


def test_gate_class_names_with_a_colon_and_the_prefix_in_any_case(tmp_path, capsys):
    """'class:x:acc=V' with a class named 'x:acc' (and none named 'x') was refused as unknown class 'x';
    'Class:road=V' was an unknown metric although metric names match in any case."""
    from helpers_eval import write_card
    from segcli.inference.io import write_png

    root, preds = tmp_path / "data", tmp_path / "preds"
    gt = np.array([[0, 0, 1, 1]], np.uint8)
    write_png(root / "images" / "val" / "a.png", np.zeros((1, 4, 3), np.uint8))
    write_png(root / "masks" / "val" / "a.png", gt)
    write_png(preds / "a.png", np.array([[0, 1, 1, 1]], np.uint8))  # x:acc IoU 1/2, road IoU 2/3
    write_card(root, "colon", ["x:acc", "road"], [[0, 0, 0], [1, 1, 1]], {"val": [{"image": "images/val/a.png",
                                                                                   "mask": "masks/val/a.png"}]})
    base = ["eval", "--predictions", preds, "--data", root]
    code, _, err = run_cli(base + ["--fail-under", "class:x:acc=0.6", "--fail-under", "Class:Road=0.7",
                                   "--fail-under", "CLASS:x:acc:acc=0.4"], capsys)
    assert code == 1 and err.strip().splitlines()[-1] == (
        "segcli: error: eval gate failed: class:x:acc IoU 50.00% < 60.00%; class:road IoU 66.67% < 70.00%"), err


def test_gate_on_boundary_iou_with_boundary_off_is_a_usage_error(crafted, capsys):
    """With boundary.enabled=false a BIoU threshold could only fail ('null (not measurable)', exit 1) after the whole
    evaluation, whatever the model: a contradiction in the command, exit 2 before scoring."""
    root, preds = crafted
    base = ["eval", "--predictions", preds, "--data", root, "boundary.enabled=false"]
    for spec in ("mBIoU=0.1", "class:road:biou=0.1"):
        code, out, err = run_cli(base + ["--fail-under", "mIoU=0.1", "--fail-under", spec], capsys)
        assert code == 2 and out == "" and err.strip().splitlines() == [
            f"segcli: error: --fail-under {spec}: boundary IoU is not measured with boundary.enabled=false; drop that "
            "override, or gate on another metric"], err
    assert run_cli(base + ["--fail-under", "mIoU=0.1"], capsys)[0] == 0


def test_a_split_combined_by_hand_finds_predictions_by_their_path_under_masks(tmp_path, capsys):
    """A `trainval` split added to the card by hand holds masks/train/... and masks/val/...: the key fell back to the
    bare stem, so `predict DATA/images --out DIR`'s DIR/train/s1/0001.png was 'missing', and with DIR/0001.png
    both images would have been scored against that one file."""
    from helpers_eval import write_card
    from segcli.inference.io import write_png

    root, preds = tmp_path / "data", tmp_path / "preds"
    splits = {"train": [], "val": []}
    for split, value in (("train", 1), ("val", 2)):
        write_png(root / "images" / split / "s1" / "0001.png", np.zeros((4, 4, 3), np.uint8))
        write_png(root / "masks" / split / "s1" / "0001.png", np.full((4, 4), value, np.uint8))
        write_png(preds / split / "s1" / "0001.png", np.full((4, 4), value, np.uint8))
        splits[split].append({"image": f"images/{split}/s1/0001.png", "mask": f"masks/{split}/s1/0001.png"})
    write_card(root, "tv", ["a", "b", "c"], [[0, 0, 0], [1, 1, 1], [2, 2, 2]],
               {**splits, "trainval": splits["train"] + splits["val"]})
    code, _, err = run_cli(["eval", "--predictions", preds, "--data", root, "--split", "trainval", "--out",
                            tmp_path / "out"], capsys)
    assert code == 0, err
    assert load_json(tmp_path / "out" / "report.json")["mIoU"] == 1.0
    rows = (tmp_path / "out" / "per_image.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["train/s1/0001", "val/s1/0001"]


def test_worst_panels_show_ignore_apart_from_a_black_class():
    """Ignore pixels were drawn black in the ground truth and the error map: so is VOC's background (class 0), and
    a dark image's correct pixels in the error map."""
    from segcli.evaluation.figures import worst_panel

    h, w = 24, 32
    target = np.zeros((h, w), np.uint8)
    target[:, w // 2:] = 255  # right half unlabelled, left half class 0 (black in the palette)
    image = np.zeros((h, w, 3), np.uint8)  # a black image: correct pixels are black in the error map too
    panel = worst_panel(image, target, np.zeros_like(target), [[0, 0, 0], [200, 0, 0]], 255, ["background", "x"],
                        [1.0, None], "t")
    from helpers_eval import panel_boxes

    boxes = panel_boxes(panel)
    for k in (1, 3):  # the ground-truth panel and the error map
        top, bottom, left, right = boxes[k]
        middle = (left + right) // 2
        labelled, unlabelled = panel[top:bottom, left:middle], panel[top:bottom, middle:right]
        assert (labelled == 0).all()
        assert unlabelled.min() > 100 and len(np.unique(unlabelled)) == 2  # the two greys of the checks


@pytest.mark.parametrize("gt, pred, specs, above, failure", [
    # aAcc = bg's Acc = 143/1000 exactly; 14.3 / 100 is 0.14300000000000002, so "14.3%" failed where "0.143" passed
    ([0] * 1000, [0] * 143 + [1] * 857, ["aAcc=14.3%", "class:bg:acc=14.3%", "aAcc=0.143"], "aAcc=14.3001%",
     "aAcc 14.3000% < 14.3001%"),
    # IoU 1287/1300 = 0.99 and 87/100 = 0.87: their mean, 0.93, is 0.9299999999999999 in floats
    ([0] * 1300 + [1] * 87, [0] * 1287 + [1] * 100, ["mIoU=0.93", "mIoU=93%"], "mIoU=0.93001", "mIoU 93.000% < 93.001%"),
])
def test_gate_passes_a_value_exactly_at_its_threshold(tmp_path, capsys, gt, pred, specs, above, failure):
    """A value equal to its threshold meets it: the gate failed with 'aAcc 14.30% < 14.30%' (exit 1). A value a
    thousandth of a point below still fails, shown with the digits that tell the two apart (not '93.00% < 93.00%')."""
    from helpers_eval import write_card
    from segcli.inference.io import write_png

    root, preds = tmp_path / "data", tmp_path / "preds"
    write_png(root / "images" / "val" / "a.png", np.zeros((1, len(gt), 3), np.uint8))
    write_png(root / "masks" / "val" / "a.png", np.array([gt], np.uint8))
    write_png(preds / "a.png", np.array([pred], np.uint8))
    write_card(root, "edge", ["bg", "fg"], [[0, 0, 0], [1, 1, 1]], {"val": [{"image": "images/val/a.png",
                                                                             "mask": "masks/val/a.png"}]})
    base = ["eval", "--predictions", preds, "--data", root]
    for spec in specs:
        code, _, err = run_cli(base + ["--fail-under", spec], capsys)
        assert code == 0, (spec, err)
    code, _, err = run_cli(base + ["--fail-under", above], capsys)
    assert code == 1 and err.strip().splitlines()[-1] == f"segcli: error: eval gate failed: {failure}", err
