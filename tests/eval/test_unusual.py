"""Eval on unusual-but-legal inputs: reports written under odd paths, hand-edited or foreign --compare reports, empty
or all-ignore splits. Each case is one a user met: the error names the file and the fix, or a note says what the
numbers mean."""

import json
import pathlib

import numpy as np

from helpers_eval import IG, run_cli, write_card
from segcli.inference.io import write_png


def _report(crafted, tmp_path, capsys) -> tuple[list, dict, pathlib.Path]:
    root, preds = crafted
    old = tmp_path / "old.json"
    code, _, err = run_cli(["eval", "--predictions", preds, "--data", root, "--json", old], capsys)
    assert code == 0, err
    return ["eval", "--predictions", preds, "--data", root], json.loads(old.read_text()), old


def test_json_under_a_file_is_refused_before_scoring_naming_the_file(crafted, tmp_path, capsys):
    """`--json results/r.json` where `results` is a file: found only when the report was written, after the whole
    evaluation, as 'cannot write it (File exists); check free space and permissions'."""
    root, preds = crafted
    afile = tmp_path / "results"
    afile.write_text("keep me")
    for report in (afile / "r.json", afile / "sub" / "r.json"):
        code, out, err = run_cli(["eval", "--predictions", preds, "--data", root, "--json", report], capsys)
        assert code == 3 and out == "", err
        assert err.strip().splitlines() == [f"segcli: error: --json {report}: {afile} is a file, not a folder; give a "
                                            "file name in a folder, or - for stdout"]
    assert afile.read_text() == "keep me"


def test_out_that_cannot_be_written_names_out_not_the_staging_folder(crafted, tmp_path, capsys, monkeypatch):
    """A read-only --out (or one under a read-only folder): the line named OUT/.report.partial-HOST-PID/report.json,
    a hidden folder the user never asked for; and nothing is left behind."""
    root, preds = crafted
    out_dir = tmp_path / "new" / "reports"
    mkdir = pathlib.Path.mkdir

    def read_only(self, *args, **kwargs):
        if str(self).startswith(str(tmp_path / "new")):
            raise PermissionError(13, "Permission denied", str(self))
        return mkdir(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "mkdir", read_only)
    code, out, err = run_cli(["eval", "--predictions", preds, "--data", root, "--out", out_dir], capsys)
    monkeypatch.undo()
    assert code == 3, err
    assert err.strip().splitlines()[-1] == (f"segcli: error: --out {out_dir}: cannot write the report files there "
                                            "(Permission denied); give a folder you can write to")
    assert not (tmp_path / "new").exists()


def test_compare_with_percentages_is_a_data_error_not_deltas_of_thousands_of_points(crafted, tmp_path, capsys):
    """Other tools (mmsegmentation) write rates in percent: 77.8 for 0.778 gave 'Δ IoU -7700.00' and exit 0."""
    base, rep, old = _report(crafted, tmp_path, capsys)
    rep["mIoU"] = 45.96
    old.write_text(json.dumps(rep))
    code, out, err = run_cli(base + ["--compare", old], capsys)
    assert code == 3 and out == "", err
    assert err.strip().splitlines() == [f"segcli: error: {old}: mIoU is 45.96, not a fraction in [0, 1] (a "
                                        "percentage?); segcli's reports hold rates as fractions: pass a report.json "
                                        "from `segcli eval`, or divide by 100"]


def test_compare_reads_a_report_saved_with_a_byte_order_mark(crafted, tmp_path, capsys):
    """A report opened and saved again in a Windows editor starts with a UTF-8 byte-order mark: it was 'not a
    readable JSON report'."""
    base, rep, old = _report(crafted, tmp_path, capsys)
    old.write_text(json.dumps(rep), encoding="utf-8-sig")
    code, out, err = run_cli(base + ["--compare", old, "--json", "-"], capsys)
    assert code == 0, err
    assert json.loads(out)["compare"]["aggregates"]["mIoU"]["delta"] == 0.0


def test_compare_with_broken_json_says_where_it_breaks(crafted, tmp_path, capsys):
    """A hand-edited report with a stray comma: the line said only '(JSONDecodeError)'."""
    base, rep, old = _report(crafted, tmp_path, capsys)
    text = json.dumps(rep, indent=2).replace('"split"', ',"split"', 1)
    old.write_text(text)
    line = text[: text.index(',"split"')].count("\n") + 1
    code, out, err = run_cli(base + ["--compare", old], capsys)
    assert code == 3 and out == "", err
    assert err.strip().splitlines() == [f"segcli: error: {old}: not a readable JSON report (Expecting property name "
                                        f"enclosed in double quotes at line {line} column 3); fix it there, or pass "
                                        "a report.json from `segcli eval`"]


def test_compare_with_a_report_of_another_split_says_so(crafted, tmp_path, capsys):
    """Deltas against the test split's report were printed as if the model had changed."""
    base, rep, old = _report(crafted, tmp_path, capsys)
    code, _, err = run_cli(base + ["--compare", old], capsys)
    assert code == 0 and "note" not in err, err
    rep.update(split="test", num_images=233)
    old.write_text(json.dumps(rep))
    code, _, err = run_cli(base + ["--compare", old], capsys)
    assert code == 0, err
    assert (f"eval: note: {old} scored split 'test' (233 images), this run split 'val' (3 images); the deltas compare "
            "different images, not only different models") in err


def test_an_empty_split_names_the_fix(crafted, capsys):
    root, preds = crafted
    card = (root / "dataset.yaml").read_text()
    (root / "dataset.yaml").write_text(card.replace("  val:\n", "  test: []\n  val:\n"))
    code, out, err = run_cli(["eval", "--predictions", preds, "--data", root, "--split", "test"], capsys)
    assert code == 3 and out == "", err
    assert err.strip().splitlines() == [f"segcli: error: {root / 'dataset.yaml'}: split 'test' is empty, no image to "
                                        "score; score another split (--split val), or add pairs to it (re-run segcli "
                                        "prepare)"]


def test_a_split_whose_masks_are_all_ignore_says_nothing_was_scored(tmp_path, capsys):
    """Every metric null and exit 0, without a word: a wrong ignore_index looked like a model that scored '—'."""
    root, preds = tmp_path / "data", tmp_path / "preds"
    write_png(root / "images" / "val" / "a.png", np.zeros((3, 5, 3), np.uint8))
    write_png(root / "masks" / "val" / "a.png", np.full((3, 5), IG, np.uint8))
    write_png(preds / "a.png", np.ones((3, 5), np.uint8))
    write_card(root, "all-ignore", ["bg", "fg"], [[0, 0, 0], [255, 255, 255]],
               {"val": [{"image": "images/val/a.png", "mask": "masks/val/a.png"}]})
    code, out, err = run_cli(["eval", "--predictions", preds, "--data", root, "--json", "-"], capsys)
    assert code == 0 and json.loads(out)["mIoU"] is None, err
    assert (f"eval: note: no pixel of split 'val' is labelled: every ground-truth pixel is the ignore index {IG}, so "
            f"every metric is null; check the masks and the ignore_index of {root / 'dataset.yaml'}") in err


def test_compare_with_a_perfect_models_report_is_no_percentage(tmp_path, capsys):
    """A perfect model's fwIoU sums to 1.0000000000000002 for some class counts (float rounding): --compare with its
    own report.json stopped with 'fwIoU is 1.0000000000000002, not a fraction in [0, 1] (a percentage?)'."""
    from helpers_eval import CLASSES, PALETTE

    root = tmp_path / "data"
    counts = [17, 135, 578, 379, 91]  # 1,200 pixels: the weights g / total sum a hair above 1
    gt = np.repeat(np.arange(5, dtype=np.uint8), counts).reshape(30, 40)
    write_png(root / "images" / "val" / "x.png", np.zeros((30, 40, 3), np.uint8))
    write_png(root / "masks" / "val" / "x.png", gt)
    write_png(tmp_path / "preds" / "x.png", gt)
    write_card(root, "perfect", CLASSES, PALETTE, {"val": [{"image": "images/val/x.png", "mask": "masks/val/x.png"}]})
    base, old = ["eval", "--predictions", tmp_path / "preds", "--data", root], tmp_path / "old.json"
    code, _, err = run_cli(base + ["--json", old], capsys)
    assert code == 0, err
    assert json.loads(old.read_text())["fwIoU"] > 1.0  # as segcli's eval writes it
    code, out, err = run_cli(base + ["--compare", old, "--json", "-"], capsys)
    assert code == 0, err
    assert json.loads(out)["compare"]["aggregates"]["mIoU"]["delta"] == 0.0


def test_the_report_names_the_dataset_by_its_absolute_path(crafted, tmp_path, capsys, monkeypatch):
    """`--data data` from the dataset's parent folder: report.json said "data": "data" (where "model" and
    "predictions" are absolute), which names nothing once the report is read from anywhere else."""
    root, preds = crafted
    monkeypatch.chdir(root.parent)
    code, out, err = run_cli(["eval", "--predictions", preds, "--data", root.name, "--json", "-"], capsys)
    assert code == 0, err
    assert json.loads(out)["data"] == str(root.resolve())


def test_a_card_whose_ignore_index_is_a_class_id_is_refused(tmp_path, capsys):
    """A hand-written card keeping 'void' as class 0 and ignore_index 0 (mmsegmentation's habit): that class has no
    ground truth, so any prediction of it scored IoU 0 and pulled mIoU down (73.2 where the real classes gave 97.6),
    without a word. prepare refuses the same setting."""
    root, preds = tmp_path / "data", tmp_path / "preds"
    mask = np.zeros((8, 10), np.uint8)
    mask[:4] = 1
    mask[4:, 5:] = 2
    write_png(root / "images" / "val" / "a.png", np.zeros((8, 10, 3), np.uint8))
    write_png(root / "masks" / "val" / "a.png", mask)
    write_png(preds / "a.png", np.where(mask == 0, 1, mask).astype(np.uint8))
    write_card(root, "void-zero", ["void", "a", "b"], [[0, 0, 0], [255, 0, 0], [0, 255, 0]],
               {"val": [{"image": "images/val/a.png", "mask": "masks/val/a.png"}]})
    card = root / "dataset.yaml"
    card.write_text(card.read_text().replace(f"ignore_index: {IG}", "ignore_index: 0"))
    code, out, err = run_cli(["eval", "--predictions", preds, "--data", root, "--json", "-"], capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 3 and out == "" and len(lines) == 1, err
    assert lines[0] == (f"segcli: error: {card}: ignore_index 0 is also the id of class 'void', which then has no "
                        "ground truth and scores 0 wherever predicted; prepare the masks again with `segcli prepare "
                        "folder --ignore-index` >= 3 or --reduce-zero-label (0 → ignore, k → k-1)")
    code, _, err = run_cli(["prepare", "lint", root], capsys)
    assert code != 0 and "ignore_index 0 is also the id of class 'void'" in err


def test_a_report_that_would_replace_an_input_is_refused_before_scoring(crafted, tmp_path, capsys):
    """`--json data/dataset.yaml`, a mask of the dataset or a prediction PNG: the report replaced it, exit 0 (the
    dataset then no longer loaded). A report beside the predictions, or a new file, is written as before."""
    root, preds = crafted
    mask, pred = root / "masks" / "val" / "c.png", preds / "c.png"
    inputs = {path: path.read_bytes() for path in (root / "dataset.yaml", mask, pred)}
    for target in inputs:
        code, out, err = run_cli(["eval", "--predictions", preds, "--data", root, "--json", target], capsys)
        assert code == 2 and out == "", err
        assert "which the report would replace" in err.strip().splitlines()[-1], err
    assert all(path.read_bytes() == data for path, data in inputs.items())
    code, _, err = run_cli(["eval", "--predictions", preds, "--data", root, "--json", preds / "report.json"], capsys)
    assert code == 0 and json.loads((preds / "report.json").read_text())["mode"] == "predictions", err


def test_a_report_that_would_replace_the_model_is_refused(trained, tmp_path, capsys):
    """`eval --ckpt m.ckpt --json m.ckpt` replaced the checkpoint with the report (exit 0)."""
    import shutil

    ckpt = shutil.copy(trained["ckpt"], tmp_path / "m.ckpt")
    before = pathlib.Path(ckpt).read_bytes()
    code, out, err = run_cli(["eval", "--ckpt", ckpt, "--json", ckpt], capsys)
    assert code == 2 and "the model file evaluated" in err.strip().splitlines()[-1], err
    assert pathlib.Path(ckpt).read_bytes() == before


def test_compare_with_a_report_of_other_masks_of_the_same_classes_and_size_says_so(crafted, tmp_path, capsys):
    """Another dataset with the same class names, split and image count (or masks edited since): the deltas were
    printed as a change of model, with no note. The ground-truth pixel counts, which no model changes, tell."""
    base, rep, old = _report(crafted, tmp_path, capsys)
    code, _, err = run_cli(base + ["--compare", old], capsys)  # the same images and masks: no note
    assert code == 0 and "note" not in err, err
    first = rep["classes"][0]
    first["gt_pixels"] += 7
    old.write_text(json.dumps(rep))
    code, _, err = run_cli(base + ["--compare", old], capsys)
    assert code == 0, err
    assert (f"eval: note: {old} counted other ground-truth pixels ('{first['name']}' {first['gt_pixels']:,} vs "
            f"{first['gt_pixels'] - 7:,}): it scored other images or other masks (another dataset, or masks edited "
            "since), so the deltas do not compare models alone") in err
    rep.update(split="test")  # another split: that note alone
    old.write_text(json.dumps(rep))
    code, _, err = run_cli(base + ["--compare", old], capsys)
    assert code == 0 and err.count("note:") == 1 and "scored split 'test'" in err, err
