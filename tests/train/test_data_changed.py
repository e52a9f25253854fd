"""A dataset prepared again (`segcli prepare --overwrite`) while a run trains on it: the run went on with the new
images and the old normalisation, exit 0, its checkpoints naming data that was no longer there."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from helpers_train import TINY

from segcli.errors import DataError


def _prepare(data, seed: int, *extra) -> None:
    proc = subprocess.run([sys.executable, "-m", "segcli", "prepare", "synthetic", "--out", str(data), "--num-images",
                           "10", "--seed", str(seed), "synthetic.height=90", "synthetic.width=120", *extra],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_a_dataset_prepared_again_under_a_run_stops_it_with_exit_3(tmp_path):
    data, run = tmp_path / "syn", tmp_path / "run"
    _prepare(data, 0)
    proc = subprocess.Popen([sys.executable, "-m", "segcli", "train", f"data.root={data}", *TINY,
                             "trainer.max_epochs=200", "final_eval=false", "--run-dir", str(run)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while not (run / "checkpoints" / "last.ckpt").exists():  # training, past its first epoch
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1][-2000:]
            time.sleep(0.1)
        _prepare(data, 1, "--overwrite")  # other images under the same names: another mean and std
        _, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 3, err[-2000:]
    lines = [line for line in err.splitlines() if line.startswith("segcli: error: ")]
    assert len(lines) == 1 and "the dataset changed while this run trained on it (mean " in lines[0], err[-2000:]
    assert "Traceback" not in err
    assert (run / "checkpoints" / "last.ckpt").exists()  # kept, as after any stop


def test_a_card_rewritten_as_it_was_lets_the_run_go_on(tmp_path):
    """A card file touched or written again with the same classes, statistics and splits is no reason to stop."""
    import os
    from types import SimpleNamespace

    from omegaconf import OmegaConf

    from segcli.data.card import load_card
    from segcli.training.callbacks import DataWatch
    from segcli.training.resume import meta_now

    data = tmp_path / "syn"
    _prepare(data, 0)
    data_cfg = OmegaConf.create({"train_split": "train", "val_split": "val", "fold": None})
    card = data / "dataset.yaml"
    module = SimpleNamespace(meta=meta_now({"mean": [0.0] * 3, "std": [1.0] * 3}, load_card(data), data_cfg))
    watch = DataWatch(card, data_cfg)
    text = card.read_text()
    card.write_text(text)
    os.utime(card, (time.time() + 10, time.time() + 10))
    watch._check(module)  # no error
    _prepare(data, 1, "--overwrite")
    with pytest.raises(DataError, match="the dataset changed while this run trained on it"):
        watch._check(module)
