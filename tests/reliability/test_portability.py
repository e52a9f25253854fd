"""Checkpoints and exported models used elsewhere: renamed, linked, from an older segcli, re-saved by other tools
(torch.compile'd weights, exported files with static shapes or edited metadata). Each either works or is one
error line naming the file and what is wrong, and nothing beside the input is overwritten."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from helpers_reliability import noise, only_error, write_image

pytestmark = pytest.mark.filterwarnings("ignore:.*torch.jit.*deprecated:FutureWarning")


def _resave(src: Path, dst: Path, edit) -> Path:
    import torch

    state = torch.load(src, map_location="cpu", weights_only=True)
    edit(state)
    torch.save(state, dst)
    return dst


@pytest.fixture(scope="module")
def onnx_model(model_ckpt, tmp_path_factory) -> Path:
    """model_ckpt exported to ONNX (dynamic batch, height and width), verified on two noise images."""
    from helpers_cli import run_in_process

    root = tmp_path_factory.mktemp("portable_onnx")
    for i in range(2):
        write_image(root / "verify" / f"{i}.png", noise(40, 56, seed=i))
    ckpt = _resave(model_ckpt, root / "model.ckpt", lambda s: s["hyper_parameters"]["meta"]["model"].update(in_channels=3))
    out = root / "model.onnx"
    assert run_in_process(["export", "--ckpt", ckpt, "--out", out, "--verify-images", root / "verify"]) == 0
    return out


def _onnx_variant(src: Path, dst: Path, meta_edit=None, dims: dict | None = None) -> Path:
    """A copy of `src` with its segcli metadata edited and/or its input dimensions fixed ({index: size})."""
    import onnx

    model = onnx.load(str(src))
    for prop in model.metadata_props:
        if prop.key == "segcli" and meta_edit:
            meta = json.loads(prop.value)
            meta_edit(meta)
            prop.value = json.dumps(meta)
    for index, size in (dims or {}).items():
        dim = model.graph.input[0].type.tensor_type.shape.dim[index]
        dim.ClearField("dim_param")
        dim.dim_value = size
    onnx.save(model, str(dst))
    return dst


# ----------------------------------------------------------------------------- export must not replace its input
def test_a_torchscript_export_of_a_pt_checkpoint_does_not_replace_it(cli, model_ckpt, tmp_path):
    """`export --ckpt model.pt --format torchscript` wrote its default --out, model.pt, over the checkpoint: the
    checkpoint was gone, exit 0."""
    ckpt = Path(shutil.copy(model_ckpt, tmp_path / "model.pt"))
    before = ckpt.read_bytes()
    code, out, err = cli("export", "--ckpt", ckpt, "--format", "torchscript")
    line = only_error(code, err, 2, ckpt)
    assert "the checkpoint itself" in line and "--out" in line and str(tmp_path / "model.torchscript.pt") in line
    assert out == "" and ckpt.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]


def test_an_out_that_links_to_the_checkpoint_is_refused(cli, model_ckpt, tmp_path):
    ckpt = Path(shutil.copy(model_ckpt, tmp_path / "weights.bin"))
    link = tmp_path / "model.pt"
    link.symlink_to(ckpt)
    before = ckpt.read_bytes()
    code, out, err = cli("export", "--ckpt", ckpt, "--format", "torchscript", "--out", link)
    line = only_error(code, err, 2, f"--out {link}")
    assert "the checkpoint itself" in line
    assert out == "" and ckpt.read_bytes() == before and link.is_symlink()


# ----------------------------------------------------------------------------- checkpoints from elsewhere
@pytest.mark.parametrize("key", ["classes", "ignore_index", "mean", "size_multiple", "model"])
@pytest.mark.parametrize("command", ["predict", "export"])
def test_a_checkpoint_without_a_meta_key_names_it(cli, model_ckpt, tmp_path, key, command):
    """A checkpoint of an older segcli (or an edited one) without a metadata key was exit 4 (KeyError), or for
    export an error blaming the hidden staging file of the export."""
    ckpt = _resave(model_ckpt, tmp_path / "old.ckpt", lambda s: s["hyper_parameters"]["meta"].pop(key))
    image = write_image(tmp_path / "in" / "a.png", noise(32, 32))
    args = (["predict", image, "--out", tmp_path / "out"] if command == "predict"
            else ["export", "--out", tmp_path / "out" / "m.onnx", "--verify-images", tmp_path / "in"])
    code, out, err = cli(*args, "--ckpt", ckpt)
    assert f"'{key}' is missing" in only_error(code, err, 3, ckpt)
    assert out == "" and not (tmp_path / "out").exists()


@pytest.mark.parametrize("key", ["palette", "train_crop", "input_scale", "min_size", "image_range", "segcli_version",
                                 "dataset"])
def test_a_checkpoint_without_an_optional_meta_key_still_exports(cli, model_ckpt, tmp_path, key):
    ckpt = _resave(model_ckpt, tmp_path / "old.ckpt", lambda s: s["hyper_parameters"]["meta"].pop(key))
    write_image(tmp_path / "in" / "a.png", noise(40, 56))
    code, out, err = cli("export", "--ckpt", ckpt, "--out", tmp_path / "m.onnx", "--verify-images", tmp_path / "in")
    assert code == 0, err
    assert out.strip() == str((tmp_path / "m.onnx").resolve())
    code, out, err = cli("predict", tmp_path / "in", "--ckpt", ckpt, "--out", tmp_path / "pred")  # masks and overlays
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "pred").rglob("*.png")) == ["a.png", "a.png"]


def test_a_checkpoint_without_model_in_channels_exports(cli, model_ckpt, tmp_path):
    """meta.model without in_channels (smp's default 3) built the model, then export failed with KeyError (exit 4)."""
    ckpt = _resave(model_ckpt, tmp_path / "old.ckpt", lambda s: s["hyper_parameters"]["meta"]["model"].pop("in_channels", None))
    write_image(tmp_path / "in" / "a.png", noise(40, 56))
    code, out, err = cli("export", "--ckpt", ckpt, "--out", tmp_path / "m.onnx", "--verify-images", tmp_path / "in")
    assert code == 0, err


def test_a_checkpoint_naming_no_dataset_asks_for_verify_images(cli, model_ckpt, tmp_path):
    """Was 'the checkpoint's dataset None is not available ...'."""
    ckpt = _resave(model_ckpt, tmp_path / "old.ckpt", lambda s: s["hyper_parameters"]["meta"].pop("dataset"))
    code, out, err = cli("export", "--ckpt", ckpt, "--out", tmp_path / "out" / "m.onnx")
    line = only_error(code, err, 2, ckpt, "--verify-images DIR")
    assert "names no dataset" in line and "None" not in line
    assert not (tmp_path / "out").exists()


def test_weights_of_a_compiled_model_load(cli, model_ckpt, tmp_path):
    """Weights saved through torch.compile's wrapper (model._orig_mod.*) were 'weights do not fit unet/resnet18
    (Error(s) in loading state_dict for Unet:)', exit 3; they are the same tensors."""
    def compiled(state):
        state["state_dict"] = {k.replace("model.", "model._orig_mod.", 1): v for k, v in state["state_dict"].items()}

    ckpt = _resave(model_ckpt, tmp_path / "compiled.ckpt", compiled)
    image = write_image(tmp_path / "in" / "a.png", noise(40, 56))
    code, out, err = cli("predict", image, "--out", tmp_path / "out", "--ckpt", ckpt, "--save", "mask")
    assert code == 0, err
    from segcli.inference.io import read_mask

    code, _, err = cli("predict", image, "--out", tmp_path / "ref", "--ckpt", model_ckpt, "--save", "mask")
    assert code == 0, err
    assert (read_mask(tmp_path / "out" / "a.png") == read_mask(tmp_path / "ref" / "a.png")).all()


def test_weights_that_do_not_fit_name_a_tensor(cli, model_ckpt, tmp_path):
    def drop(state):
        state["state_dict"].pop("model.segmentation_head.0.weight")

    ckpt = _resave(model_ckpt, tmp_path / "cut.ckpt", drop)
    image = write_image(tmp_path / "in" / "a.png", noise(32, 32))
    code, out, err = cli("predict", image, "--out", tmp_path / "out", "--ckpt", ckpt)
    assert "1 missing, e.g. segmentation_head.0.weight" in only_error(code, err, 3, ckpt)


# ----------------------------------------------------------------------------- exported files from elsewhere
@pytest.mark.parametrize("name", ["model.bin", "model.pt", "model"])
def test_a_renamed_onnx_file_still_predicts(cli, onnx_model, tmp_path, name):
    """model.onnx renamed (model.bin) was read as a checkpoint: 'not a readable checkpoint (UnpicklingError); it
    may be truncated', exit 3."""
    renamed = Path(shutil.copy(onnx_model, tmp_path / name))
    image = write_image(tmp_path / "in" / "a.png", noise(37, 50))
    code, out, err = cli("predict", image, "--out", tmp_path / "out", "--model", renamed, "--save", "mask")
    assert code == 0, err
    assert (tmp_path / "out" / "a.png").is_file()


@pytest.mark.parametrize("edit, says", [
    (lambda m: (m.update(classes=m["classes"][:2], palette=m["palette"][:2])), "outputs"),
    (lambda m: (m.update(classes=m["classes"] + ["extra"], palette=m["palette"] + [[1, 2, 3]])), "outputs"),
    (lambda m: m.update(mean=None), "'mean'"),
    (lambda m: m.update(mean=[0.5], std=[0.5]), "input channels"),
    (lambda m: m.update(palette=m["palette"][:1]), "'palette'"),
    (lambda m: m.update(size_multiple=0), "'size_multiple'"),
    (lambda m: m.update(input_scale=0), "'input_scale' is 0"),  # was read as 1.0: masks at a scale never trained
    (lambda m: m.update(input_scale="half"), "'input_scale' is 'half'"),
], ids=["fewer-classes", "more-classes", "null-mean", "one-mean", "short-palette", "size-multiple-0", "input-scale-0",
        "input-scale-text"])
def test_edited_onnx_metadata_is_refused(cli, onnx_model, tmp_path, edit, says):
    """Metadata that does not fit the network gave masks of ids the classes do not have (exit 0), or exit 4
    (TypeError, ZeroDivisionError, onnxruntime's InvalidArgument)."""
    model = _onnx_variant(onnx_model, tmp_path / "edited.onnx", edit)
    image = write_image(tmp_path / "in" / "a.png", noise(32, 32))
    code, out, err = cli("predict", image, "--out", tmp_path / "out", "--model", model)
    assert says in only_error(code, err, 3, model)
    assert out == "" and not (tmp_path / "out").exists()


def test_an_onnx_file_with_a_fixed_batch_predicts_many_images(cli, onnx_model, tmp_path):
    """An input batch fixed at 1 was exit 4 (onnxruntime: 'Got invalid dimensions for input') for batches of 4."""
    model = _onnx_variant(onnx_model, tmp_path / "b1.onnx", dims={0: 1})
    for i in range(5):
        write_image(tmp_path / "in" / f"{i}.png", noise(40, 56, seed=i))
    code, out, err = cli("predict", tmp_path / "in", "--out", tmp_path / "out", "--model", model, "--save", "mask")
    assert code == 0, err
    code, _, err = cli("predict", tmp_path / "in", "--out", tmp_path / "ref", "--model", onnx_model, "--save", "mask")
    from segcli.inference.io import read_mask

    for i in range(5):
        assert (read_mask(tmp_path / "out" / f"{i}.png") == read_mask(tmp_path / "ref" / f"{i}.png")).all()


def test_an_onnx_file_with_a_fixed_size(cli, onnx_model, tmp_path):
    """A 64x64 input: smaller images are padded up to it; larger ones are one error naming sliding windows (was
    exit 4), and with them they predict."""
    model = _onnx_variant(onnx_model, tmp_path / "fixed.onnx", dims={0: 1, 2: 64, 3: 64})
    small = write_image(tmp_path / "small" / "a.png", noise(37, 50))
    code, out, err = cli("predict", small, "--out", tmp_path / "out", "--model", model, "--save", "mask")
    assert code == 0, err
    large = write_image(tmp_path / "large" / "b.png", noise(90, 120))
    code, out, err = cli("predict", large, "--out", tmp_path / "out2", "--model", model)
    assert "inference.mode=slide inference.tile=[64,64]" in only_error(code, err, 3, model)
    code, out, err = cli("predict", large, "--out", tmp_path / "out3", "--model", model, "inference.mode=slide",
                         "inference.tile=[64,64]", "--save", "mask")
    assert code == 0, err


def test_export_beside_a_read_only_checkpoint_names_the_folder(cli, model_ckpt, tmp_path, monkeypatch):
    """The default --out goes beside the checkpoint; in a folder the user cannot write (a shared model store) the
    export ran, then failed naming its hidden staging file ('.random.partial-123.onnx: Permission denied').
    os.access is faked: the tests may run as root, who can write anywhere."""
    import os

    ckpt = Path(shutil.copy(model_ckpt, tmp_path / "model.ckpt"))
    real = os.access
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: False if Path(path) == tmp_path else real(path, mode, **kw))
    code, out, err = cli("export", "--ckpt", ckpt)
    line = only_error(code, err, 3, tmp_path, "--out FILE")
    assert "not writable" in line and "beside the checkpoint" in line
    assert out == "" and sorted(p.name for p in tmp_path.iterdir()) == ["model.ckpt"]
