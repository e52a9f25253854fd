"""`segcli train --from SOURCE`: a new run from a saved config (a run directory's config.yaml, or a file of
`segcli train --cfg`), changed by key=value overrides."""

from __future__ import annotations

import csv

import pytest
import yaml
from helpers_cli import assert_error, run_cli

TINY = ["experiment=smoke", "loss=ce", "optim=sgd", "optim.lr=0.05", "trainer.max_epochs=1", "seed=3"]


def _rows(run_dir) -> list[tuple[str, str]]:
    with open(run_dir / "metrics.csv", newline="") as handle:
        return [(row.get("val/mIoU", ""), row.get("train/loss_epoch", "")) for row in csv.DictReader(handle)
                if row.get("val/mIoU") or row.get("train/loss_epoch")]


def _config(path) -> dict:
    config = yaml.safe_load(path.read_text())
    config.pop("run_dir")
    return config


def test_a_run_started_from_another_runs_config_repeats_it(synthetic_data, tmp_path):
    first = tmp_path / "first"
    proc = run_cli("train", f"data.root={synthetic_data}", *TINY, "--run-dir", first, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    proc = run_cli("train", "--from", first, "--run-dir", tmp_path / "again", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == str(tmp_path / "again")
    assert _config(tmp_path / "again" / "config.yaml") == _config(first / "config.yaml")
    assert _rows(tmp_path / "again") == _rows(first) and _rows(first)  # seeded: the same losses and val mIoU


def test_a_cfg_file_keeps_its_group_choices_and_takes_key_overrides(synthetic_data, tmp_path):
    """Fed back as an experiment file, `--cfg` output merged into the default options: loss=ce came back as
    {ce: 1, dice: 1} and optim=sgd kept adamw's betas. --from takes the file as it is."""
    proc = run_cli("train", "--cfg", f"data.root={synthetic_data}", *TINY, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    (tmp_path / "saved.yaml").write_text(proc.stdout)
    proc = run_cli("train", "--from", tmp_path / "saved.yaml", "--cfg", "model.arch=fpn", "+trainer.limit_train_batches=2",
                   cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    config = yaml.safe_load(proc.stdout)
    assert config["loss"]["terms"] == {"ce": 1.0} and "betas" not in config["optim"]
    assert config["optim"]["name"] == "sgd" and config["optim"]["momentum"] == 0.9
    assert config["model"]["arch"] == "fpn" and config["trainer"]["limit_train_batches"] == 2
    assert config["run_dir"] is None  # a new run: runs/train/<timestamp> unless --run-dir


def test_a_saved_config_without_keys_added_since_gets_their_defaults(synthetic_data, tmp_path):
    proc = run_cli("train", "--cfg", f"data.root={synthetic_data}", *TINY, cwd=tmp_path)
    full = yaml.safe_load(proc.stdout)
    older = yaml.safe_load(proc.stdout)
    for group, key in (("data", "repeat"), ("augment", "fog"), ("trainer", "precision"), ("optim", "momentum")):
        del older[group][key]
    del older["ema"]
    (tmp_path / "older.yaml").write_text(yaml.safe_dump(older))
    proc = run_cli("train", "--from", tmp_path / "older.yaml", "--cfg", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    filled = yaml.safe_load(proc.stdout)
    del full["optim"]["momentum"]  # sgd's own key: not every optimiser has it, so segcli's default (0.9) applies
    assert filled == full


@pytest.mark.parametrize("args, code, message", [
    (["model=fpn"], 2, "model=fpn: --from starts from {cfg}, whose groups are composed in already; set their keys "
                       "instead (e.g. model.arch=fpn"),
    (["optim.lrr=0.1"], 2, "optim.lrr=0.1: {cfg} has no key optim.lrr (did you mean optim.lr"),
    (["seed=1,2"], 2, "seed=1,2: --from starts one run and keeps every key; give key=value"),
    (["-m", "seed=1,2"], 2, "--from starts one new run from a saved config; drop --resume, -m and --config-dir"),
])
def test_overrides_a_saved_config_cannot_take_are_refused(synthetic_run, tmp_path, args, code, message):
    proc = run_cli("train", "--from", synthetic_run.run_dir, *args, "--run-dir", tmp_path / "new", cwd=tmp_path)
    line = assert_error(proc, code)
    assert line.startswith("segcli: error: " + message.format(cfg=synthetic_run.run_dir / "config.yaml")), line
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("text, message", [
    (None, "not found; --from needs a saved config"),
    ("data: [", "not readable as YAML"),
    ("seed: 1\n", "not a `segcli train` config (no data and model settings)"),
    ("data: {root: x}\nmodel: {arch: unet}\nbogus: 1\n", "sets bogus, which `segcli train` reads nowhere"),
])
def test_a_file_that_is_no_saved_config_is_named(tmp_path, text, message):
    path = tmp_path / "saved.yaml"
    if text is not None:
        path.write_text(text)
    proc = run_cli("train", "--from", path, cwd=tmp_path)
    assert assert_error(proc, 3).startswith(f"segcli: error: {path}: {message}")
