"""eval --ckpt whose dataset moved away names the checkpoint and the option that fixes it; data.root=DIR given to
eval (whose dataset is the option --data) says so, not 'did you mean data?'; a corruption's mIoU on a split with no
labelled pixel reads '—', as in the tables."""

from __future__ import annotations

import shutil

import cv2
import numpy as np
from helpers_eval import run_cli

from segcli.inference.io import write_png


def test_a_checkpoint_whose_dataset_moved_names_the_fix(trained, tmp_path, capsys):
    """Before: '<old root>/dataset.yaml: no dataset card; give the folder `segcli prepare` wrote …', the advice for a
    path the user typed, not one the checkpoint holds."""
    data = tmp_path / "data"
    shutil.copytree(trained["data"], data)
    run = tmp_path / "run"
    code, _, err = run_cli(["train", f"data.root={data}", "trainer.max_epochs=1", "data.num_workers=0",
                            "augment.crop_size=[32,32]", "data.batch_size=4", "trainer.enable_progress_bar=false",
                            "final_eval=false", "--run-dir", run], capsys)
    assert code == 0, err
    data.rename(tmp_path / "moved")
    ckpt = run / "checkpoints" / "best.ckpt"
    code, out, err = run_cli(["eval", "--ckpt", ckpt], capsys)
    assert code == 3 and out == "" and err.strip().splitlines() == [
        f"segcli: error: {ckpt}: the dataset it was trained on, {data}, has no dataset.yaml now (moved or deleted?); "
        "give its new place: --data DIR"], err
    code, _, err = run_cli(["eval", "--ckpt", ckpt, "--data", tmp_path / "moved"], capsys)
    assert code == 0, err


def test_data_root_given_to_eval_names_the_option(trained, capsys):
    """Before: "unknown config key 'data.root' … (did you mean data?)", and data=DIR was then refused in turn."""
    code, _, err = run_cli(["eval", "--ckpt", trained["ckpt"], f"data.root={trained['data']}"], capsys)
    assert code == 2 and err.strip().splitlines() == [
        f"segcli: error: data.root={trained['data']}: 'segcli eval' has no data.* settings: its data is a path, given "
        "as the option --data"], err


def test_a_corruptions_mIoU_on_an_unlabelled_split_reads_as_a_dash(trained, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(trained["data"], data)
    card = data / "dataset.yaml"
    text = card.read_text()
    val = text[text.index("\n  val:"):].splitlines()[2]  # the first val entry: its mask made all ignore
    mask = data / val.split("mask: ")[1].rstrip("}").strip()
    write_png(mask, np.full(cv2.imread(str(mask), cv2.IMREAD_GRAYSCALE).shape, 255, np.uint8))
    card.write_text(text.replace("\n  val:", "\n  blank:\n" + val + "\n  val:", 1))
    code, _, err = run_cli(["eval", "--ckpt", trained["ckpt"], "--data", data, "--split", "blank",
                            "--corruptions", "fog", "--severity", "3"], capsys)
    assert code == 0, err
    assert "eval: fog severity 3: mIoU —" in err and "mIoU None" not in err
