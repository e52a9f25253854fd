"""Shared fixtures for the export tests: one tiny trained checkpoint and its exports, built once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers_cli import run_in_process


@pytest.fixture(scope="session")
def dataset(tmp_path_factory) -> Path:
    """A prepared synthetic dataset: 10 scenes of 72 × 100 (not multiples of 32: padding is exercised)."""
    root = tmp_path_factory.mktemp("export") / "syn"
    assert run_in_process(["prepare", "synthetic", "--out", root, "--num-images", 10,
                    "synthetic.height=72", "synthetic.width=100"]) == 0
    return root


@pytest.fixture(scope="session")
def ckpt(dataset, tmp_path_factory) -> Path:
    """A Unet/resnet18 checkpoint trained for one epoch on `dataset`."""
    run = tmp_path_factory.mktemp("export") / "run"
    assert run_in_process(["train", f"data.root={dataset}", "trainer.max_epochs=1", "data.num_workers=0", "data.batch_size=4",
                    "augment.crop_size=[64,64]", "trainer.enable_progress_bar=false", "trainer.log_every_n_steps=1", "--run-dir", run]) == 0
    path = run / "checkpoints" / "best.ckpt"
    assert path.is_file()
    return path


def _export(ckpt: Path, out: Path, *args) -> Path:
    assert run_in_process(["export", "--ckpt", ckpt, "--out", out, *args]) == 0
    assert out.is_file()
    return out


@pytest.fixture(scope="session")
def onnx_file(ckpt, tmp_path_factory) -> Path:
    return _export(ckpt, tmp_path_factory.mktemp("onnx") / "model.onnx", "--format", "onnx")


@pytest.fixture(scope="session")
def torchscript_file(ckpt, tmp_path_factory) -> Path:
    return _export(ckpt, tmp_path_factory.mktemp("ts") / "model.pt", "--format", "torchscript")


@pytest.fixture(scope="session")
def onnx_ids_file(ckpt, tmp_path_factory) -> Path:
    return _export(ckpt, tmp_path_factory.mktemp("onnx-ids") / "ids.onnx", "--format", "onnx", "--argmax")


@pytest.fixture(scope="session")
def torchscript_ids_file(ckpt, tmp_path_factory) -> Path:
    return _export(ckpt, tmp_path_factory.mktemp("ts-ids") / "ids.pt", "--format", "torchscript", "--argmax")


@pytest.fixture(scope="session")
def exported(onnx_file, torchscript_file, onnx_ids_file, torchscript_ids_file) -> dict[str, Path]:
    """Every kind of export of `ckpt`: {"onnx", "torchscript", "onnx-argmax", "torchscript-argmax"} → file."""
    return {"onnx": onnx_file, "torchscript": torchscript_file, "onnx-argmax": onnx_ids_file,
            "torchscript-argmax": torchscript_ids_file}
