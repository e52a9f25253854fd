"""segcli export: both formats, self-description, verification failures, predict --model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers_cli import argmax_agreement, run_in_process

from segcli.errors import ConfigError
from segcli.export.metadata import sha256_file
from segcli.inference.backends import TORCHSCRIPT_META, load_predictor
from segcli.inference.io import list_images, read_mask

pytestmark = pytest.mark.filterwarnings("ignore:.*torch.jit.*deprecated:FutureWarning")  # tests call torch.jit directly
KINDS = ["onnx", "torchscript", "onnx-argmax", "torchscript-argmax"]
META_KEYS = {"classes", "palette", "ignore_index", "mean", "std", "channel_order", "size_multiple", "segcli_version",
             "checkpoint_sha256", "output", "dtype", "format", "model"}


def _stored_meta(path) -> dict:
    """The segcli JSON read straight from the file, without segcli's loaders."""
    if path.suffix == ".onnx":
        import onnx

        return json.loads({p.key: p.value for p in onnx.load(str(path)).metadata_props}["segcli"])
    extra = {TORCHSCRIPT_META: ""}
    torch.jit.load(str(path), _extra_files=extra)
    return json.loads(extra[TORCHSCRIPT_META])


@pytest.mark.parametrize("kind", KINDS)
def test_metadata_round_trip(kind, exported, ckpt):
    from segcli import __version__
    from segcli.inference.backends import read_checkpoint

    meta = _stored_meta(exported[kind])
    trained = read_checkpoint(ckpt)["hyper_parameters"]["meta"]
    assert META_KEYS <= set(meta)
    for key in ("classes", "palette", "ignore_index", "mean", "std", "size_multiple", "model"):
        assert meta[key] == trained[key], key
    assert meta["channel_order"] == "RGB" and meta["dtype"] == "float32" and meta["segcli_version"] == __version__
    assert meta["checkpoint_sha256"] == sha256_file(ckpt)
    assert meta["format"] == kind.split("-")[0]
    assert meta["output"] == ("ids" if kind.endswith("argmax") else "logits")
    assert load_predictor(exported[kind], "cpu").meta == meta  # what the backends read is what was stored


def test_a_checkpoint_of_an_older_segcli_exports_every_documented_key(ckpt, tmp_path):
    """A checkpoint from before input_scale, min_size and image_range were stored (segcli of 2026-11-24) exported
    without them: code that reads the metadata as the README shows (meta['input_scale']) failed on the file. They now
    hold the values segcli reads such a checkpoint with."""
    from segcli.inference.backends import read_checkpoint

    old = read_checkpoint(ckpt)
    for key in ("input_scale", "min_size", "image_range"):
        old["hyper_parameters"]["meta"].pop(key, None)
    torch.save(old, tmp_path / "old.ckpt")
    out = tmp_path / "old.onnx"
    assert run_in_process(["export", "--ckpt", tmp_path / "old.ckpt", "--out", out]) == 0
    meta = _stored_meta(out)
    assert (meta["input_scale"], meta["min_size"], meta["image_range"]) == (1.0, 0, None)


@pytest.mark.parametrize("channels, order", [(3, "RGB"), (1, "gray"), (4, "RGB, then band 4 as stored"),
                                             (6, "RGB, then bands 4-6 as stored"), (2, "2 bands as stored")])
def test_metadata_names_the_input_channels(channels, order, ckpt):
    """A grayscale or multispectral model's export said channel_order "RGB" and input "float32 NCHW RGB, ..." (the
    ONNX input takes 1 or 4 channels): a consumer reading the metadata fed it the wrong image."""
    from segcli.export.metadata import export_meta
    from segcli.inference.backends import read_checkpoint

    meta = read_checkpoint(ckpt)["hyper_parameters"]["meta"]
    meta = {**meta, "model": {**meta["model"], "in_channels": channels}, "mean": [0.5] * channels,
            "std": [0.2] * channels}
    described = export_meta(meta, ckpt, "onnx", False, False, 17)
    assert described["channel_order"] == order and described["input"].startswith(f"float32 NCHW {order}, (x / 255")


def test_onnx_axes_are_dynamic(onnx_file, onnx_ids_file):
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape == ["batch", 3, "height", "width"]
    assert session.get_outputs()[0].shape[0] == "batch" and session.get_outputs()[0].shape[2:] == ["height", "width"]
    assert json.loads(session.get_modelmeta().custom_metadata_map["segcli"])["opset"] == 17
    ids = ort.InferenceSession(str(onnx_ids_file), providers=["CPUExecutionProvider"]).get_outputs()[0]
    assert ids.name == "ids" and ids.type == "tensor(uint8)" and ids.shape == ["batch", "height", "width"]


@pytest.mark.parametrize("kind", KINDS)
def test_any_batch_and_size(kind, exported):
    """Sizes and batches other than the export's example input (64 × 96, batch 1)."""
    predictor = load_predictor(exported[kind], "cpu")
    classes = len(predictor.classes)
    for shape in [(2, 3, 96, 128), (3, 3, 32, 160)]:
        out = predictor.forward(torch.zeros(shape))
        if predictor.outputs_ids:
            assert out.dtype == torch.uint8 and tuple(out.shape) == (shape[0], *shape[2:])
        else:
            assert out.dtype == torch.float32 and tuple(out.shape) == (shape[0], classes, *shape[2:])


@pytest.mark.parametrize("kind", ["onnx-argmax", "torchscript-argmax"])
def test_argmax_export_returns_ids(kind, exported, dataset):
    predictor = load_predictor(exported[kind], "cpu")
    image = np.zeros((72, 100, 3), np.uint8)
    ids = predictor.ids([image, image])
    assert ids.dtype == np.uint8 and ids.shape == (2, 72, 100) and ids.max() < len(predictor.classes)
    with pytest.raises(ConfigError, match="class ids"):
        predictor.logits([image])


@pytest.mark.parametrize("override", ["inference.tta=flip", "inference.scales=[0.75,1.0]", "inference=slide"])
def test_an_ids_model_refuses_inference_that_combines_logits(override, exported, dataset, tmp_path, cli):
    """They were ignored without a word: predict and eval ran one plain pass."""
    code, out, err = cli("predict", dataset / "images" / "val", "--model", exported["onnx-argmax"], "--out",
                         tmp_path / "pred", override)
    assert code == 2 and "exported with --argmax" in err and "combines logits" in err and not out
    assert f"segcli: error: {exported['onnx-argmax']}: this model returns class ids" in err  # which model: named
    assert not (tmp_path / "pred").exists()
    code, _, err = cli("eval", "--model", exported["onnx-argmax"], "--data", dataset, override)
    assert code == 2 and "combines logits" in err


def test_verify_images_naming_a_folder_without_images_says_what_it_lacks(ckpt, tmp_path, cli):
    """The fix was 'pass --verify-images DIR', which the user had just done."""
    (tmp_path / "v" / ".hidden").mkdir(parents=True)
    (tmp_path / "v" / "notes.txt").write_text("x")
    (tmp_path / "v" / ".hidden" / "a.png").write_bytes(b"")
    code, out, err = cli("export", "--ckpt", ckpt, "--out", tmp_path / "m.onnx", "--verify-images", tmp_path / "v")
    assert code == 3 and not out and not (tmp_path / "m.onnx").exists()
    assert f"segcli: error: --verify-images {tmp_path / 'v'}: holds no image files (" in err
    assert "hidden files and folders are skipped); give a folder with a few real images" in err


@pytest.mark.parametrize("kind", KINDS)
def test_predict_model_matches_ckpt(kind, exported, ckpt, dataset, tmp_path, cli):
    images = dataset / "images" / "val"
    code, out, err = cli("predict", "--ckpt", ckpt, images, "--out", tmp_path / "ckpt")
    assert code == 0, err
    code, out, err = cli("predict", "--model", exported[kind], images, "--out", tmp_path / "model")
    assert code == 0, err
    same = total = 0
    for image in list_images(images):
        a = read_mask(tmp_path / "ckpt" / f"{image.stem}.png")
        b = read_mask(tmp_path / "model" / f"{image.stem}.png")
        assert a.shape == b.shape == (72, 100)
        same, total = same + int((a == b).sum()), total + a.size
    assert total and same / total >= 0.9999


def test_failing_tolerance_exits_1_and_writes_nothing(ckpt, tmp_path, cli):
    out = tmp_path / "model.onnx"
    # a tolerance no float32 ONNX export meets (onnxruntime's logits differ from torch's by ~1e-6)
    code, stdout, err = cli("export", "--ckpt", ckpt, "--out", out, "verify.max_rel_logit_diff=0")
    assert code == 1
    assert "disagrees with the checkpoint" in err and "logit diff" in err and "not written" in err
    assert stdout == "" and not out.exists()
    assert list(tmp_path.iterdir()) == []  # no staging file left behind either


def _untrained_ckpt(dataset, path, arch: str, encoder: str, kwargs: dict | None = None):
    """A seeded, untrained segcli checkpoint of arch/encoder for `dataset`'s classes (no training needed to export)."""
    from segcli.data.card import load_card
    from segcli.models.factory import build_model, size_multiple
    from segcli.runs import model_meta

    torch.manual_seed(0)
    card = load_card(dataset)
    build = {"arch": arch, "encoder": encoder, "classes": card.num_classes, "in_channels": 3, "kwargs": kwargs or {}}
    model = build_model(**build)
    meta = model_meta(card, build, size_multiple(model), "val", train_crop=[64, 64])
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    torch.save({"state_dict": state, "hyper_parameters": {"meta": meta}}, path)
    return path


def _onnx_opset(path) -> int:
    import onnx

    return next(o.version for o in onnx.load(str(path)).opset_import if o.domain in ("", "ai.onnx"))


def test_an_export_that_runs_only_at_its_example_size(dataset, tmp_path, cli):
    """MobileViT's unfold is traced with the example's sizes as constants: the file ran only on 64x96 inputs and
    verification on the 72x100 images was exit 4, 'internal error' (an onnxruntime Reshape, a TorchScript shape).
    ONNX now goes to torch.export, which keeps the sizes symbolic; TorchScript has no such way: exit 1."""
    ckpt = _untrained_ckpt(dataset, tmp_path / "mobilevit.ckpt", "unet", "tu-mobilevit_xxs")
    code, stdout, err = cli("export", "--ckpt", ckpt, "--format", "torchscript", "--out", tmp_path / "m.pt")
    line = err.strip().splitlines()[-1]  # after export's progress lines
    assert code == 1 and line.startswith(f"segcli: error: {tmp_path / 'm.pt'}: the exported model fails on a 72x100 "
                                         "image (RuntimeError: shape"), err
    assert "try --format onnx" in line and "Traceback" not in err
    assert stdout == "" and sorted(p.name for p in tmp_path.iterdir()) == ["mobilevit.ckpt"]

    out = tmp_path / "m.onnx"
    code, stdout, err = cli("export", "--ckpt", ckpt, "--out", out)
    assert code == 0 and stdout.strip() == str(out.resolve()), err
    assert "runs only at its example input's size (it fails on a 72x100 image); exporting with torch.export" in err
    assert "ONNXRuntimeError" not in err and _stored_meta(out)["opset"] == _onnx_opset(out) == 18
    code, stdout, err = cli("predict", "--model", out, dataset / "images" / "val", "--out", tmp_path / "pred")
    assert code == 0 and len(stdout.split()) == 2, err  # the 72x100 val images, padded to 96x128


def test_verification_runs_a_size_other_than_the_example_even_on_images_of_that_size(dataset, tmp_path, cli):
    """A dataset of 64x96 images (or any that pad to 64x96) was verified only at the export's example size: the
    MobileViT TorchScript file that holds that size passed (argmax agreement 100%, exit 0) and was written, and then
    predict failed on every other size with an internal error (exit 4); the ONNX file likewise, as the fallback to
    torch.export never triggered."""
    small = tmp_path / "syn64"
    assert cli("prepare", "synthetic", "--out", small, "--num-images", 4, "synthetic.height=64",
               "synthetic.width=96")[0] == 0
    ckpt = _untrained_ckpt(small, tmp_path / "mobilevit.ckpt", "unet", "tu-mobilevit_xxs")
    out = tmp_path / "m.pt"
    code, stdout, err = cli("export", "--ckpt", ckpt, "--format", "torchscript", "--out", out)
    assert code == 1 and not stdout and not out.exists(), err
    assert "the exported model fails on a 96x128 image" in err and "the file was not written" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mobilevit.ckpt", "syn64"]

    out = tmp_path / "m.onnx"
    code, stdout, err = cli("export", "--ckpt", ckpt, "--out", out)
    assert code == 0 and "exporting with torch.export" in err, err
    exported, reference = load_predictor(out, "cpu"), load_predictor(ckpt, "cpu")
    for height, width in ((64, 96), (72, 100), (150, 80)):  # the example's size, the other dataset's, portrait
        image = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
        assert (exported.ids([image]) == reference.ids([image])).mean() >= 0.9999


@pytest.mark.parametrize("arch", ["pspnet", "upernet"])
def test_pyramid_pooling_exports_to_onnx(arch, dataset, tmp_path, cli):
    """Their pooling to 2x2, 3x3 and 6x6 bins was 'cannot export …: ONNX export of operator adaptive_avg_pool2d,
    input size not accessible' (exit 2) with dynamic height and width; now it verifies on the 72x100 images."""
    ckpt = _untrained_ckpt(dataset, tmp_path / f"{arch}.ckpt", arch, "resnet18")
    out = tmp_path / "m.onnx"
    code, stdout, err = cli("export", "--ckpt", ckpt, "--out", out)
    assert code == 0 and "torch.export" not in err and _onnx_opset(out) == 17, err
    assert argmax_agreement(err) >= 99.99


def test_exportable_pooling_equals_adaptive_average_pooling():
    from segcli.export.onnx import AdaptiveAvgPoolAnySize

    for bins in (1, 2, 3, 6, (2, 5)):
        for height, width in ((7, 9), (12, 12), (3, 40), (45, 61)):
            x = torch.randn(2, 4, height, width)
            torch.testing.assert_close(AdaptiveAvgPoolAnySize(bins)(x), torch.nn.AdaptiveAvgPool2d(bins)(x))


def test_a_model_neither_exporter_writes_is_one_line_naming_the_cause(dataset, tmp_path):
    """When torch.export failed too, stderr got ~250 lines of tracebacks torch logs (fake_tensor.py) and the error
    line quoted torch's how-to-debug banner in terminal colours ('Failed to export the model with torch.export.
    \\x1b[96mThis is step 1/3\\x1b[0m of exporting the model to ONNX. Next steps:') instead of what failed. A PAN
    checkpoint without its min_size (an earlier segcli's) fails in both: its 64x96 example pools to nothing."""
    import subprocess
    import sys

    ckpt = _untrained_ckpt(dataset, tmp_path / "pan.ckpt", "pan", "resnet18")
    proc = subprocess.run([sys.executable, "-m", "segcli", "export", "--ckpt", str(ckpt), "--out",
                           str(tmp_path / "m.onnx")], capture_output=True, text=True, timeout=300)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and proc.stdout == "", proc.stderr[-2000:]
    assert len(lines) <= 4 and "Traceback" not in proc.stderr and "\x1b[" not in proc.stderr, proc.stderr[-2000:]
    assert lines[-1].startswith("segcli: error: cannot export pan/resnet18 to ONNX (torch.export, opset 18): Given "
                                "input size: (1x1x1). Calculated output size: (1x0x0). Output size is too small;")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pan.ckpt"]


@pytest.mark.slow
def test_a_vit_exports_to_onnx_through_torch_export(dataset, tmp_path, cli):
    """DPT's ViT resamples its position embeddings with antialiased bicubic interpolation, which torch's
    TorchScript-based exporter cannot write ('aten::_upsample_bicubic2d_aa', exit 2): torch.export writes it."""
    ckpt = _untrained_ckpt(dataset, tmp_path / "dpt.ckpt", "dpt", "tu-vit_tiny_patch16_224",
                           kwargs={"dynamic_img_size": True})
    out = tmp_path / "m.onnx"
    code, stdout, err = cli("export", "--ckpt", ckpt, "--out", out)
    assert code == 0 and "_upsample_bicubic2d_aa" in err and "exporting with torch.export at opset 18" in err, err
    assert _stored_meta(out)["opset"] == _onnx_opset(out) == 18
    code, stdout, err = cli("export", "--ckpt", ckpt, "--out", tmp_path / "m16.onnx", "--opset", "16")
    assert code == 2 and "try --opset 17 or --format torchscript" in err


def test_onnx_without_segcli_metadata_exits_3(onnx_file, dataset, tmp_path, cli):
    import onnx

    proto = onnx.load(str(onnx_file))
    del proto.metadata_props[:]
    plain = tmp_path / "plain.onnx"
    onnx.save(proto, str(plain))
    code, out, err = cli("predict", "--model", plain, dataset / "images" / "val", "--out", tmp_path / "pred")
    assert code == 3
    assert "no segcli metadata" in err and "segcli export" in err and len(err.strip().splitlines()) == 1


def test_torchscript_without_segcli_metadata_exits_3(dataset, tmp_path, cli):
    plain = tmp_path / "plain.pt"
    torch.jit.save(torch.jit.trace(torch.nn.Conv2d(3, 2, 1), torch.zeros(1, 3, 8, 8)), str(plain))
    code, out, err = cli("predict", "--model", plain, dataset / "images" / "val", "--out", tmp_path / "pred")
    assert code == 3 and "no segcli metadata" in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only refusal")
def test_half_without_gpu_exits_2(ckpt, tmp_path, cli):
    code, out, err = cli("export", "--ckpt", ckpt, "--out", tmp_path / "m.onnx", "--half")
    assert code == 2
    assert err.startswith("segcli: error: --half") and "CUDA" in err and len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args, message", [
    (["--format", "tflite"], "choose from onnx, torchscript"),
    (["--format", "onnx", "--out", "model.pt"], "must end in .onnx"),
    (["--format", "torchscript", "--out", "model.onnx"], "must not end in .onnx"),
    # settings that failed verification whatever the model, ran with no effect, or crashed (benchmark.size)
    (["--opset", "25"], "--opset=25: give an ONNX opset from 7 to"),
    (["--format", "torchscript", "--opset", "17"], "--opset=17: an ONNX opset, but --format is torchscript"),
    (["--format", "torchscript", "--opset", "11"],  # was exported and written, the opset silently unused
     "--opset=11: an ONNX opset, but --format is torchscript, which has none; drop --opset, or export with "
     "--format onnx"),
    (["verify_max_images=0"], "verify_max_images=0: give a whole number >= 1"),
    (["verify.min_miou=2"], "verify.min_miou=2: give a fraction from 0 to 1"),
    (["verify.max_rel_logit_diff=-1"], "verify.max_rel_logit_diff=-1: give a number >= 0"),
    (["onnxruntime.intra_op_threads=-2"], "onnxruntime.intra_op_threads=-2"),
    (["onnxruntime.graph_optimization=x"], "onnxruntime.graph_optimization=x: choose from "),  # was after the export
    (["--benchmark", "benchmark.runs=0"], "benchmark.runs=0: give a whole number >= 1"),
    (["--benchmark", "benchmark.size=[0,5]"], "benchmark.size=[0, 5]: give [height, width] in whole pixels"),
])
def test_bad_options_exit_2(args, message, ckpt, tmp_path, cli, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = cli("export", "--ckpt", ckpt, *args)
    assert code == 2 and message in err
    assert not list(tmp_path.iterdir()) and not out  # nothing written, nothing on stdout


def test_an_opset_the_model_cannot_use_is_one_line_and_no_graph_on_stdout(ckpt, tmp_path):
    """torch's exporter prints the whole graph to stdout (from C++) when it fails: stdout carries results."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "segcli", "export", "--ckpt", str(ckpt), "--opset", "7", "--out",
                           str(tmp_path / "m.onnx")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and proc.stdout == "", proc.stdout[:500]
    assert proc.stderr.strip().splitlines()[-1].startswith("segcli: error: cannot export") and "opset 7" in proc.stderr
    assert "Please feel free" not in proc.stderr and not list(tmp_path.iterdir())


def test_missing_dataset_then_verify_images_and_benchmark(ckpt, dataset, tmp_path, cli):
    """A checkpoint whose dataset moved asks for --verify-images; with it, export verifies and benchmarks."""
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    state["hyper_parameters"]["meta"]["dataset"]["root"] = str(tmp_path / "gone")
    moved = tmp_path / "moved.ckpt"
    torch.save(state, moved)
    out = tmp_path / "out" / "model.pt"
    code, stdout, err = cli("export", "--ckpt", moved, "--format", "torchscript", "--out", out)
    assert code == 2 and "--verify-images" in err and not out.exists()

    images = dataset / "images" / "val"
    code, stdout, err = cli("export", "--ckpt", moved, "--format", "torchscript", "--out", out, "--verify-images", images,
                            "--benchmark", "benchmark.runs=1", "benchmark.size=[40,60]")
    assert code == 0, err
    assert f"from {images}" in err and argmax_agreement(err) >= 99.99
    lines = stdout.strip().splitlines()
    assert lines[-1] == str(out.resolve())  # the path stays the last stdout line
    table = "\n".join(lines[:-1])
    assert "64×64" in table and "torch eager" in table and "torchscript" in table and "images/s" in table


def test_a_dataset_without_its_val_split_or_images_asks_for_verify_images(ckpt, dataset, tmp_path, cli):
    """A checkpoint whose dataset lost the split it validated on was told to set data.val_split or --split, which
    export does not take; one whose val image was deleted, to 'check the path and permissions'. Both now name
    --verify-images, the way out, and write nothing."""
    import shutil

    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    state["hyper_parameters"]["meta"]["dataset"]["val_split"] = "holdout"
    renamed = tmp_path / "renamed.ckpt"
    torch.save(state, renamed)
    out = tmp_path / "out" / "model.onnx"
    code, stdout, err = cli("export", "--ckpt", renamed, "--out", out)
    line = err.strip().splitlines()[-1]
    assert code == 2 and "no split 'holdout'" in line and "--verify-images DIR" in line, err
    assert "data.val_split" not in line and stdout == "" and not (tmp_path / "out").exists()

    copy = tmp_path / "copy"
    shutil.copytree(dataset, copy)
    first = sorted((copy / "images" / "val").iterdir())[0]
    first.unlink()
    state["hyper_parameters"]["meta"]["dataset"].update(root=str(copy), val_split="val")
    moved = tmp_path / "moved.ckpt"
    torch.save(state, moved)
    code, stdout, err = cli("export", "--ckpt", moved, "--out", out)
    line = err.strip().splitlines()[-1]
    assert code == 3 and line.startswith(f"segcli: error: {first}: not found") and "--verify-images DIR" in line, err
    assert stdout == "" and not (tmp_path / "out").exists()


@pytest.mark.parametrize("kind, name", [("onnx", "ONNX"), ("torchscript", "TorchScript")])
def test_an_exported_model_as_ckpt_is_named_as_such(kind, name, exported, tmp_path, cli):
    """Re-exporting an exported file was 'not a readable checkpoint (UnpicklingError); it may be truncated' (ONNX),
    or that after torch.load's warning about a TorchScript archive on stderr."""
    code, out, err = cli("export", "--ckpt", exported[kind], "--out", tmp_path / "again.onnx")
    assert code == 3 and not out and not list(tmp_path.iterdir())
    assert err.strip() == (f"segcli: error: {exported[kind]}: an exported {name} model, not a checkpoint; export "
                           "from the .ckpt it came from (RUN_DIR/checkpoints/best.ckpt)")


def test_an_out_that_is_a_folder_exits_2_before_exporting(ckpt, tmp_path, cli):
    """--out DIR (a folder) exported and verified the model, then failed on renaming the hidden staging file
    ('.DIR.partial-123: Is a directory', exit 3)."""
    (tmp_path / "models").mkdir()
    code, out, err = cli("export", "--ckpt", ckpt, "--format", "torchscript", "--out", tmp_path / "models")
    assert code == 2 and not out
    assert err.strip() == (f"segcli: error: --out {tmp_path / 'models'}: a folder, but the exported model is one "
                           f"file; give a file path such as {tmp_path / 'models' / 'model.pt'}")
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["models"]


def test_an_out_under_a_file_is_named_as_such(ckpt, tmp_path, cli):
    """--out m.ckpt/m.onnx (a file where a folder should be) said 'm.ckpt: File exists; check the path, permissions
    and free space'."""
    (tmp_path / "m.ckpt").write_bytes(b"x")
    code, out, err = cli("export", "--ckpt", ckpt, "--out", tmp_path / "m.ckpt" / "sub" / "m.onnx")
    assert code == 3 and not out
    assert err.strip() == (f"segcli: error: --out {tmp_path / 'm.ckpt' / 'sub' / 'm.onnx'}: {tmp_path / 'm.ckpt'} is "
                           "a file, not a folder; give a path in a folder")
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["m.ckpt"]


def test_a_failed_export_leaves_no_folders_it_made(ckpt, tmp_path, cli):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "broken.png").write_bytes(b"")
    out = tmp_path / "new" / "deeper" / "model.onnx"
    code, stdout, err = cli("export", "--ckpt", ckpt, "--out", out, "--verify-images", tmp_path / "images")
    assert code == 3 and "broken.png" in err and not stdout
    assert not (tmp_path / "new").exists()


def test_argmax_of_a_model_at_input_scale_is_refused_before_exporting(ckpt, tmp_path, cli):
    """A model run at data.input_scale=0.5 has its logits resized back to the image before the argmax; an --argmax
    export can only resize ids (nearest), so it was exported, disagreed on every boundary and failed verification
    (exit 1, 'argmax agreement 0.94 < 0.9999') — the CamVid recipe's models could never be exported with --argmax."""
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    state["hyper_parameters"]["meta"]["input_scale"] = 0.5
    scaled = tmp_path / "scaled.ckpt"
    torch.save(state, scaled)
    out = tmp_path / "models" / "ids.onnx"
    code, stdout, err = cli("export", "--ckpt", scaled, "--argmax", "--out", out)
    assert code == 2 and not stdout
    assert "--argmax" in err and "input_scale 0.5" in err and "export without --argmax" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scaled.ckpt"]
    code, stdout, err = cli("export", "--ckpt", scaled, "--out", out, "--benchmark", "benchmark.runs=1")
    assert code == 0, err  # logits of the same model export and verify
    assert out.is_file()
    # the benchmark times what the network sees: the 72x100 image at half size, 36x50, padded to 64x64 (it timed
    # the full 72x100 padded to 96x128 before, four times the pixels the model is given)
    assert "latency at 64×64, batch 1" in stdout, stdout


def test_a_read_only_out_is_not_replaced_and_an_existing_one_is_said_to_be(ckpt, tmp_path, cli):
    """A write-protected model at --out was replaced silently (the rename needs only the folder's permission), and an
    ordinary one without a word."""
    out = tmp_path / "deployed.onnx"
    out.write_bytes(b"the model in service")
    out.chmod(0o444)
    code, stdout, err = cli("export", "--ckpt", ckpt, "--out", out)
    assert code == 2 and stdout == "" and out.read_bytes() == b"the model in service"
    assert err.strip().splitlines() == [f"segcli: error: --out {out}: a read-only file, which the export would replace; "
                                        f"make it writable (chmod u+w {out}) or give another --out"]
    out.chmod(0o644)
    code, stdout, err = cli("export", "--ckpt", ckpt, "--out", out)
    assert code == 0 and stdout.strip().splitlines()[-1] == str(out), err
    assert f"→ {out} (replacing the file there)" in err and out.read_bytes() != b"the model in service"


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_out_naming_a_folder_says_to_give_a_file_in_it(fmt, ckpt, tmp_path, cli):
    """`--out runs/x/` (a folder) with ONNX was told "an ONNX file must end in .onnx"; TorchScript got the folder
    message with a file path to give."""
    (tmp_path / "outdir").mkdir()
    code, out, err = cli("export", "--ckpt", ckpt, "--format", fmt, "--out", tmp_path / "outdir")
    suffix = {"onnx": ".onnx", "torchscript": ".pt"}[fmt]
    assert code == 2 and out == "", err
    wanted = tmp_path / "outdir" / f"model{suffix}"
    assert f"a folder, but the exported model is one file; give a file path such as {wanted}" in err
    assert list((tmp_path / "outdir").iterdir()) == []
