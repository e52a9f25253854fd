"""Eval with a model: checkpoint, exported ONNX, inference options and corruptions, on a tiny trained model.

Acceptance: model-free eval of the masks `segcli predict` wrote equals checkpoint eval on the same split.
"""

import pytest

from helpers_eval import load_json, run_cli

SOURCE_KEYS = ("mode", "model", "predictions", "inference")


def without_source(report: dict) -> dict:
    return {k: v for k, v in report.items() if k not in SOURCE_KEYS}


@pytest.fixture(scope="module")
def ckpt_report(trained, tmp_path_factory):
    out = tmp_path_factory.mktemp("ckpt_eval")
    from segcli.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["eval", "--ckpt", str(trained["ckpt"]), "--out", str(out)])
    assert exc.value.code == 0
    return load_json(out / "report.json")


def test_checkpoint_report(ckpt_report, trained):
    rep = ckpt_report
    assert rep["mode"] == "ckpt" and rep["num_images"] == 2 and rep["split"] == "val"
    assert rep["inference"]["mode"] == "whole" and rep["data"] == str(trained["data"].resolve())
    assert len(rep["classes"]) == 7 and 0.0 <= rep["mIoU"] <= 1.0
    assert sum(r["images"] for r in rep["classes"]) >= 2


@pytest.mark.parametrize("palette", [[], ["--palette-png"]])  # indexed PNGs hold the ids as their indices
def test_predict_then_model_free_equals_checkpoint_eval(ckpt_report, trained, tmp_path, capsys, palette):
    preds = tmp_path / "preds"
    code, _, err = run_cli(["predict", "--ckpt", trained["ckpt"], trained["data"] / "images" / "val", "--out", preds,
                            "overlay=false", *palette], capsys)
    assert code == 0, err
    code, _, err = run_cli(["eval", "--predictions", preds, "--data", trained["data"], "--out", tmp_path / "mf"], capsys)
    assert code == 0, err
    model_free = load_json(tmp_path / "mf" / "report.json")
    assert model_free["mode"] == "predictions"
    assert without_source(model_free) == without_source(ckpt_report)  # exactly, every number


def test_predict_and_eval_share_the_inference_options(trained, tmp_path, capsys):
    opts = ["inference=slide", "inference.tta=flip"]
    code, _, err = run_cli(["predict", "--ckpt", trained["ckpt"], trained["data"] / "images" / "val", "--out",
                            tmp_path / "p", "overlay=false", *opts], capsys)
    assert code == 0, err
    run_cli(["eval", "--predictions", tmp_path / "p", "--data", trained["data"], "--json", tmp_path / "mf.json"], capsys)
    code, _, err = run_cli(["eval", "--ckpt", trained["ckpt"], "--json", tmp_path / "ck.json", *opts], capsys)
    assert code == 0, err
    assert without_source(load_json(tmp_path / "mf.json")) == without_source(load_json(tmp_path / "ck.json"))


def test_onnx_model(trained, ckpt_report, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    onnx = tmp_path / "model.onnx"
    code, _, err = run_cli(["export", "--ckpt", trained["ckpt"], "--format", "onnx", "--out", onnx], capsys)
    assert code == 0, err
    code, _, err = run_cli(["eval", "--model", onnx, "--json", tmp_path / "r.json"], capsys)
    assert code == 0, err
    rep = load_json(tmp_path / "r.json")
    assert rep["mode"] == "model" and rep["model"].endswith("model.onnx")
    assert [r["name"] for r in rep["classes"]] == [r["name"] for r in ckpt_report["classes"]]
    assert rep["mIoU"] == pytest.approx(ckpt_report["mIoU"], abs=0.01)


@pytest.mark.parametrize("overrides", [["inference=slide"], ["inference.tta=flip"],
                                       ["inference=slide", "inference.blend=constant", "inference.scales=[0.75,1.0]"]])
def test_inference_options_give_a_valid_report(trained, tmp_path, capsys, overrides):
    code, _, err = run_cli(["eval", "--ckpt", trained["ckpt"], "--json", tmp_path / "r.json", *overrides], capsys)
    assert code == 0, err
    rep = load_json(tmp_path / "r.json")
    opts = rep["inference"]
    if "inference=slide" in overrides:
        assert opts["mode"] == "slide" and opts["tile"] == [32, 32]  # the training crop
    assert 0.0 <= rep["mIoU"] <= 1.0 and len(rep["classes"]) == 7


def test_corruptions_report_drop_from_clean(trained, ckpt_report, tmp_path, capsys):
    code, out, err = run_cli(["eval", "--ckpt", trained["ckpt"], "--corruptions", "brightness,jpeg", "--severity", "1,5",
                              "--out", tmp_path / "o", "boundary.enabled=false"], capsys)
    assert code == 0, err
    rep = load_json(tmp_path / "o" / "report.json")
    assert "mBIoU" not in rep and rep["mIoU"] == pytest.approx(ckpt_report["mIoU"])
    rows = rep["corruptions"]
    assert [(r["corruption"], r["severity"]) for r in rows] == [("brightness", 1), ("brightness", 5), ("jpeg", 1), ("jpeg", 5)]
    for r in rows:
        assert 0.0 <= r["mIoU"] <= 1.0
        assert r["drop"] == pytest.approx(rep["mIoU"] - r["mIoU"])
        assert r["relative_drop"] == pytest.approx(r["drop"] / rep["mIoU"])
    assert "robustness" in out and "| corruption | severity |" in (tmp_path / "o" / "report.md").read_text()
    # deterministic: the same run gives the same numbers
    code, _, _ = run_cli(["eval", "--ckpt", trained["ckpt"], "--corruptions", "jpeg", "--severity", "5",
                          "--json", tmp_path / "again.json", "boundary.enabled=false"], capsys)
    assert load_json(tmp_path / "again.json")["corruptions"][0] == rows[3]


def test_model_dataset_mismatch_and_missing_files(trained, crafted, tmp_path, capsys):
    root, _ = crafted
    code, _, err = run_cli(["eval", "--ckpt", trained["ckpt"], "--data", root], capsys)
    assert code == 2 and "differ from the model's" in err
    code, _, err = run_cli(["eval", "--ckpt", tmp_path / "nope.ckpt"], capsys)
    assert code == 3 and "nope.ckpt" in err
    code, _, err = run_cli(["eval", "--ckpt", trained["ckpt"], "--model", tmp_path / "m.onnx"], capsys)
    assert code == 2 and "exactly one of" in err
