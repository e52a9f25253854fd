"""Bad configuration and bad model files: unknown keys and groups (with suggestions), wrong or truncated
checkpoints, a checkpoint for other classes, ONNX files without segcli's metadata, and pickles that would
run code when loaded (they must be refused, the code never run)."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers_reliability import assert_clean, noise, only_error, write_image


# ----------------------------------------------------------------------------- configuration
@pytest.mark.parametrize("override, culprit, suggestion", [
    ("trainer.max_epoch=1", "trainer.max_epoch", "trainer.max_epochs"),
    ("modle.arch=unet", "modle.arch", "model.arch"),
    ("loss=dicee", "dicee", "dice"),
    ("model=unett", "unett", "unet"),
    ("augment=strnog", "strnog", "strong"),
])
def test_unknown_train_config_suggests(cli, tiny_data, tmp_path, monkeypatch, override, culprit, suggestion):
    monkeypatch.chdir(tmp_path)
    code, out, err = cli("train", f"data.root={tiny_data}", override, "--run-dir", tmp_path / "run")
    line = only_error(code, err, 2, culprit)
    assert f"did you mean {suggestion}" in line
    assert out == "" and not (tmp_path / "run").exists() and not (tmp_path / "runs").exists()


@pytest.mark.parametrize("command, override, suggestion", [
    ("predict", "inference.mod=slide", "inference.mode"),
    ("eval", "boundary.dilation_ration=0.1", "boundary.dilation_ratio"),
    ("export", "verify.atoll=0.1", None),
])
def test_unknown_key_in_other_commands(cli, model_ckpt, tmp_path, command, override, suggestion):
    args = {"predict": ["predict", tmp_path, "--out", tmp_path / "out"], "eval": ["eval"],
            "export": ["export", "--out", tmp_path / "m.onnx"]}[command]
    code, _, err = cli(*args, "--ckpt", model_ckpt, override)
    line = only_error(code, err, 2, override.split("=")[0])
    if suggestion:
        assert f"did you mean {suggestion}" in line
    assert not (tmp_path / "out").exists() and not (tmp_path / "m.onnx").exists()


# ----------------------------------------------------------------------------- wrong model files
def _png_as_ckpt(tmp_path: Path, good: Path) -> Path:
    return write_image(tmp_path / "model.png", noise(8, 8)).rename(tmp_path / "image.ckpt")


def _truncated_ckpt(tmp_path: Path, good: Path) -> Path:
    path = tmp_path / "truncated.ckpt"
    path.write_bytes(good.read_bytes()[: good.stat().st_size // 3])
    return path


def _empty_ckpt(tmp_path: Path, good: Path) -> Path:
    path = tmp_path / "empty.ckpt"
    path.write_bytes(b"")
    return path


def _foreign_ckpt(tmp_path: Path, good: Path) -> Path:
    """A valid torch file that is not a segcli checkpoint (a bare state dict)."""
    import torch

    path = tmp_path / "foreign.pth"
    torch.save({"weight": torch.zeros(3)}, path)
    return path


BAD_MODELS = [_png_as_ckpt, _truncated_ckpt, _empty_ckpt, _foreign_ckpt]


@pytest.mark.parametrize("make", BAD_MODELS, ids=lambda f: f.__name__.strip("_"))
@pytest.mark.parametrize("command", ["predict", "eval", "export"])
def test_bad_checkpoint(cli, model_ckpt, tmp_path, make, command):
    bad = make(tmp_path, model_ckpt)
    image = write_image(tmp_path / "in" / "a.png", noise(32, 32))
    out = tmp_path / "out"
    args = {"predict": ["predict", image, "--out", out], "eval": ["eval", "--out", out],
            "export": ["export", "--out", out / "m.onnx"]}[command]
    code, stdout, err = cli(*args, "--ckpt", bad)
    only_error(code, err, 3, bad)
    assert stdout == "" and not out.exists()


@pytest.mark.parametrize("kind", ["fewer classes", "renamed classes"])
def test_eval_checkpoint_for_other_classes(cli, model_ckpt, dataset_copy, tmp_path, kind):
    """A dataset whose class table differs from the model's: a usage error naming both class lists."""
    import yaml

    card_path = dataset_copy / "dataset.yaml"
    card = yaml.safe_load(card_path.read_text())
    if kind == "fewer classes":
        card["classes"], card["palette"] = card["classes"][:-1], card["palette"][:-1]
    else:
        card["classes"][0] = "not_" + card["classes"][0]
    card_path.write_text(yaml.safe_dump(card, sort_keys=False))
    code, _, err = cli("eval", "--ckpt", model_ckpt, "--data", dataset_copy, "--out", tmp_path / "report")
    line = only_error(code, err, 2, card_path)
    assert "differ from the model's" in line
    assert not (tmp_path / "report").exists()


@pytest.fixture(scope="module")
def bare_onnx(tmp_path_factory) -> Path:
    """A valid ONNX segmentation-shaped model (1x1 conv, 3 → 4 channels) without segcli metadata."""
    import torch

    path = tmp_path_factory.mktemp("bare_onnx") / "bare.onnx"
    net = torch.nn.Conv2d(3, 4, 1).eval()
    torch.onnx.export(net, (torch.zeros(1, 3, 32, 32),), str(path), input_names=["input"], output_names=["logits"],
                      opset_version=17, dynamo=False)
    return path


@pytest.mark.parametrize("command", ["predict", "eval"])
def test_onnx_without_segcli_metadata(cli, bare_onnx, tiny_data, tmp_path, command):
    image = write_image(tmp_path / "in" / "a.png", noise(32, 32))
    out = tmp_path / "out"
    args = ["predict", image, "--out", out] if command == "predict" else ["eval", "--data", tiny_data, "--out", out]
    code, stdout, err = cli(*args, "--model", bare_onnx)
    line = only_error(code, err, 3, bare_onnx)
    assert "metadata" in line and "segcli export" in line
    assert stdout == "" and not out.exists()


# ----------------------------------------------------------------------------- pickled code
class _Payload:
    """Unpickling this runs exec(): it creates the marker file. A safe loader never calls it."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",)


def test_checkpoint_with_pickled_code_is_refused(cli, model_ckpt, tmp_path):
    import torch

    marker = tmp_path / "MARKER"
    ckpt = torch.load(model_ckpt, map_location="cpu", weights_only=True)
    ckpt["hyper_parameters"]["payload"] = _Payload(marker)
    evil = tmp_path / "evil.ckpt"
    torch.save(ckpt, evil)
    image = write_image(tmp_path / "in" / "a.png", noise(32, 32))
    for args in (["predict", image, "--out", tmp_path / "out"], ["eval"], ["export", "--out", tmp_path / "m.onnx"]):
        code, _, err = cli(*args, "--ckpt", evil)
        line = only_error(code, err, 3, evil)
        assert "refused" in line
        assert not marker.exists(), "loading the checkpoint ran its pickled code"
    assert not (tmp_path / "out").exists() and not (tmp_path / "m.onnx").exists()


def test_encoder_weights_with_pickled_code_are_refused(cli, tiny_data, tmp_path, monkeypatch):
    import torch

    marker = tmp_path / "MARKER"
    weights = tmp_path / "resnet18.pth"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7), "payload": _Payload(marker)}, weights)
    monkeypatch.chdir(tmp_path)
    code, _, err = cli("train", f"data.root={tiny_data}", "model.encoder=resnet18", f"model.encoder_weights={weights}",
                       "trainer.max_epochs=1", "data.num_workers=0")
    assert "refused" in only_error(code, err, 3, weights)
    assert not marker.exists(), "loading the encoder weights ran their pickled code"
    assert not (tmp_path / "runs").exists()
    assert_clean(tmp_path)


def test_resume_from_a_checkpoint_with_pickled_code_is_refused(cli, model_ckpt, tiny_data, tmp_path):
    """`train --resume` reads last.ckpt with weights_only=True before Lightning touches it."""
    import torch

    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    code, config, _ = cli("train", f"data.root={tiny_data}", "trainer.max_epochs=2", "data.num_workers=0", "--cfg")
    assert code == 0
    (run_dir / "config.yaml").write_text(config)
    marker = tmp_path / "MARKER"
    ckpt = torch.load(model_ckpt, map_location="cpu", weights_only=True)
    ckpt["payload"] = _Payload(marker)
    last = run_dir / "checkpoints" / "last.ckpt"
    torch.save(ckpt, last)
    code, _, err = cli("train", "--resume", run_dir)
    assert "refused" in only_error(code, err, 3, last)
    assert not marker.exists(), "resuming ran the checkpoint's pickled code"
    assert sorted(p.name for p in run_dir.iterdir()) == ["checkpoints", "config.yaml"]


@pytest.mark.parametrize("command", ["predict", "eval"])
def test_a_checkpoint_whose_logits_are_nan_is_named_not_read_as_class_0(cli, model_ckpt, tmp_path, command):
    """A checkpoint holding NaN weights (a run that diverged) gave NaN logits, whose argmax is class 0: predict wrote
    all-class-0 masks and eval scored them, exit 0. It is an error naming the file (exit 3), with nothing written."""
    import torch

    ckpt = torch.load(model_ckpt, map_location="cpu", weights_only=True)
    head = next(k for k in ckpt["state_dict"] if k.endswith("segmentation_head.0.bias"))
    ckpt["state_dict"][head][0] = float("nan")
    bad = tmp_path / "diverged.ckpt"
    torch.save(ckpt, bad)
    image = write_image(tmp_path / "in" / "a.png", noise(32, 32))
    out = tmp_path / "out"
    args = {"predict": ["predict", image, "--out", out], "eval": ["eval", "--out", out]}[command]
    code, stdout, err = cli(*args, "--ckpt", bad)
    line = only_error(code, err, 3, bad)
    assert "its logits are NaN or infinite" in line and "weights hold NaN" in line
    assert stdout == "" and not out.exists()
