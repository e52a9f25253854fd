"""Sliding-window and flip-TTA eval on real CamVid frames (camvid-mini; skipped when absent).

An FPN trained for one epoch on 128x128 crops of the 24 training frames is evaluated on the 8
full-size 360x480 validation frames: slide mode must tile them with the training crop.
"""

from pathlib import Path

import pytest
import yaml

from helpers_eval import load_json, run_cli

CAMVID_MINI = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "camvid-mini"
if not CAMVID_MINI.is_dir():
    CAMVID_MINI = Path("/work/shared/datasets/camvid-mini")

pytestmark = pytest.mark.skipif(not (CAMVID_MINI / "val").is_dir(), reason="camvid-mini not available")


@pytest.fixture(scope="module")
def camvid_model(tmp_path_factory):
    from segcli.cli import main

    base = tmp_path_factory.mktemp("camvid")
    data, run = base / "data", base / "run"
    for argv in (["prepare", "camvid", "--src", CAMVID_MINI, "--out", data],
                 ["train", f"data.root={data}", "trainer.max_epochs=1", "data.num_workers=0", "augment.crop_size=[128,128]", "model=fpn",
                  "data.batch_size=8", "trainer.limit_train_batches=1", "trainer.limit_val_batches=0", "trainer.enable_progress_bar=false",
                  "trainer.log_every_n_steps=1", "--run-dir", run]):
        with pytest.raises(SystemExit) as exc:
            main([str(a) for a in argv])
        assert exc.value.code in (0, None)
    card = yaml.safe_load((data / "dataset.yaml").read_text())
    card["splits"]["val3"] = card["splits"]["val"][:3]
    (data / "dataset.yaml").write_text(yaml.safe_dump(card, sort_keys=False))
    return data, run / "checkpoints" / "last.ckpt"


@pytest.mark.parametrize("overrides", [["inference=slide", "inference.overlap=0.25"], ["inference.tta=flip"]],
                         ids=["slide", "flip"])
def test_slide_and_flip_tta_give_a_valid_report(camvid_model, tmp_path, capsys, overrides):
    data, ckpt = camvid_model
    code, out, err = run_cli(["eval", "--ckpt", ckpt, "--split", "val3", "--out", tmp_path, *overrides], capsys)
    assert code == 0, err
    rep = load_json(tmp_path / "report.json")
    assert rep["num_images"] == 3 and len(rep["classes"]) == 11 and rep["data"] == str(data.resolve())
    assert 0.0 <= rep["mIoU"] <= 1.0 and 0.0 <= rep["aAcc"] <= 1.0
    assert sum(r["gt_pixels"] for r in rep["classes"]) > 0.8 * 3 * 360 * 480  # Unlabelled is the rest
    if "inference=slide" in overrides:
        assert rep["inference"]["tile"] == [128, 128] and rep["inference"]["overlap"] == 0.25
    else:
        assert rep["inference"]["tta"] == "flip"
    assert "Road" in out
