"""Artifacts an older segcli wrote, met by this one: checkpoints whose meta lacks later keys, reports without the
later metrics, dataset cards without the later statistics. Each works as it did, or is one error line naming the
fix. Each artifact is built here in the old form (the keys the old version lacked removed from one written now)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from helpers_reliability import noise, only_error, write_image


def _early_run(model_ckpt: Path, folder: Path, crop) -> Path:
    """An early segcli's run: RUN/config.yaml with augment.crop_size, RUN/checkpoints/best.ckpt whose meta has no
    train_crop (meta recorded it from 2026-11-24 on). Returns the checkpoint."""
    import torch

    state = torch.load(model_ckpt, map_location="cpu", weights_only=True)
    state["hyper_parameters"]["meta"].pop("train_crop")
    ckpt = folder / "checkpoints" / "best.ckpt"
    ckpt.parent.mkdir(parents=True)
    torch.save(state, ckpt)
    (folder / "config.yaml").write_text(yaml.safe_dump({"augment": {"crop_size": crop}}), encoding="utf-8")
    return ckpt


def _masks(folder: Path) -> dict[str, list]:
    from segcli.inference.io import read_mask

    return {p.name: read_mask(p).tolist() for p in sorted(folder.glob("*.png"))}


def test_predict_slide_on_an_early_checkpoint_tiles_by_its_runs_crop(cli, model_ckpt, tmp_path):
    """A checkpoint from before meta recorded train_crop: eval --ckpt took the tile from the run's config.yaml, predict
    refused (exit 2, 'this model records no training crop'). Both now tile by it: the same masks as a checkpoint that
    records the crop."""
    old = _early_run(model_ckpt, tmp_path / "run", [32, 64])  # not the checkpoint's own crop: H and W told apart
    write_image(tmp_path / "in" / "a.png", noise(40, 72))
    code, _, err = cli("predict", tmp_path / "in", "--ckpt", old, "--out", tmp_path / "old", "--save", "mask",
                       "inference=slide")
    assert code == 0, err
    code, _, err = cli("predict", tmp_path / "in", "--ckpt", model_ckpt, "--out", tmp_path / "new", "--save", "mask",
                       "inference=slide", "inference.tile=[32,64]")
    assert code == 0, err
    assert _masks(tmp_path / "old") == _masks(tmp_path / "new") != {}


@pytest.mark.parametrize("config", ["none", "no_crop", "broken"])
def test_predict_slide_on_an_early_checkpoint_without_its_runs_crop_asks_for_a_tile(cli, model_ckpt, tmp_path, config):
    """No config.yaml beside checkpoints/, one with augment.crop_size null, or one that is not YAML: the usual
    one-line usage error asking for inference.tile, nothing written."""
    old = _early_run(model_ckpt, tmp_path / "run", None)
    if config == "none":
        (tmp_path / "run" / "config.yaml").unlink()
    elif config == "broken":
        (tmp_path / "run" / "config.yaml").write_text("augment: [crop_size: {", encoding="utf-8")
    write_image(tmp_path / "in" / "a.png", noise(40, 72))
    code, out, err = cli("predict", tmp_path / "in", "--ckpt", old, "--out", tmp_path / "out", "inference=slide")
    assert "inference.tile=" in only_error(code, err, 2)
    assert out == "" and not (tmp_path / "out").exists()


def test_compare_with_an_early_report_without_boundary_metrics(cli, model_ckpt, tiny_data, tmp_path):
    """A report of segcli before mBIoU (no mBIoU, boundary, inference, mode keys): --compare gives the other
    aggregates' deltas (0 for the same model on the same data) and a null mBIoU delta, not an error."""
    code, out, err = cli("eval", "--ckpt", model_ckpt, "--data", tiny_data, "--json", "-")
    assert code == 0, err
    report = json.loads(out)
    for key in ("mBIoU", "boundary", "inference", "mode"):
        report.pop(key, None)
    for row in report["classes"]:
        row.pop("biou", None)
    old = tmp_path / "old.json"
    old.write_text(json.dumps(report), encoding="utf-8")
    code, out, err = cli("eval", "--ckpt", model_ckpt, "--data", tiny_data, "--json", "-", "--compare", old)
    assert code == 0, err
    aggregates = json.loads(out)["compare"]["aggregates"]
    assert aggregates["mIoU"]["delta"] == 0.0 and aggregates["mIoU"]["old"] == report["mIoU"]
    assert aggregates["mBIoU"]["old"] is None and aggregates["mBIoU"]["delta"] is None


def test_an_early_card_without_per_split_statistics_lints_and_evaluates(cli, model_ckpt, dataset_copy):
    """The first cards held stats.mean, std and class_pixels only (no stats.splits, no class_weights): lint passes
    and eval scores the same mIoU as on the card written now."""
    code, out, err = cli("eval", "--ckpt", model_ckpt, "--data", dataset_copy, "--json", "-")
    assert code == 0, err
    now = json.loads(out)["mIoU"]
    card = dataset_copy / "dataset.yaml"
    raw = yaml.safe_load(card.read_text(encoding="utf-8"))
    raw["stats"] = {key: raw["stats"][key] for key in ("mean", "std", "class_pixels")}
    card.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    code, out, err = cli("prepare", "lint", dataset_copy)
    assert code == 0, err
    code, out, err = cli("eval", "--ckpt", model_ckpt, "--data", dataset_copy, "--json", "-")
    assert code == 0, err
    assert json.loads(out)["mIoU"] == now
