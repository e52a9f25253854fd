"""Every smp architecture builds, runs forward and one training step; encoder weights: named offline, local files."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from segcli.errors import ConfigError, DataError
from segcli.models.factory import build_model, min_input_size, size_multiple
from segcli.models.losses import WeightedLoss
from segcli.models.optim import build_optimizer

# arch → (encoder, extra kwargs, input side): resnet18 where the arch takes it; DPT needs a timm ViT
# (random init, offline; dynamic_img_size lifts its fixed 224x224); PAN pools to 1/128 so needs 128 px.
ARCHS = {
    "unet": ("resnet18", {}, 64), "unetplusplus": ("resnet18", {}, 64), "fpn": ("resnet18", {}, 64),
    "pspnet": ("resnet18", {}, 64), "deeplabv3": ("resnet18", {}, 64), "deeplabv3plus": ("resnet18", {}, 64),
    "linknet": ("resnet18", {}, 64), "manet": ("resnet18", {}, 64), "pan": ("resnet18", {}, 128),
    "upernet": ("resnet18", {}, 64), "segformer": ("resnet18", {}, 64),
    "dpt": ("tu-vit_tiny_patch16_224", {"dynamic_img_size": True}, 64),
}


def test_every_smp_architecture_is_covered():
    import segmentation_models_pytorch as smp

    assert set(ARCHS) == set(smp.MODEL_ARCHITECTURES_MAPPING)


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_forward_and_one_training_step(arch):
    torch.manual_seed(0)
    encoder, kwargs, side = ARCHS[arch]
    model = build_model(arch, encoder, classes=3, in_channels=3, kwargs=kwargs)
    assert side % size_multiple(model) == 0
    x = torch.randn(2, 3, side, side)
    target = torch.randint(0, 3, (2, side, side))
    target[:, :4] = 255
    loss_fn = WeightedLoss({"ce": 1.0, "dice": 1.0}, 255)
    optimizer = build_optimizer(model, {"name": "adamw", "lr": 1e-3, "weight_decay": 1e-4})
    before = [p.detach().clone() for p in model.parameters()]
    model.train()
    loss = loss_fn(model(x), target)
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    model.eval()
    with torch.no_grad():
        assert model(x[:1]).shape == (1, 3, side, side)


@pytest.mark.parametrize("encoder", ["tu-vit_tiny_patch16_224", "tu-vit_small_patch8_224"])
def test_dpt_size_multiple_is_its_coarsest_scale(encoder):
    """DPT reassembles the patch grid at 1/4 … 1/32 of the input: sides must be multiples of 32 whatever the patch.
    A patch-8 ViT was given 16 (twice its stride), so segcli's size probe tried 48×64, failed there and refused the
    encoder (exit 2), which smp runs at 32×32, 64×96, …"""
    model = build_model("dpt", encoder, classes=2, kwargs={"dynamic_img_size": True}).eval()
    assert size_multiple(model) == 32
    with torch.no_grad():
        assert model(torch.randn(1, 3, 96, 64)).shape[-2:] == (96, 64)
        assert model(torch.randn(1, 3, 32, 32)).shape[-2:] == (32, 32)
    assert min_input_size(model, {"arch": "dpt", "encoder": encoder}) == 32


@pytest.mark.parametrize("encoder", ["mit_b0", "densenet121", "xception"])
def test_local_weights_load_into_encoders_with_their_own_load_state_dict(tmp_path, capsys, encoder):
    """smp's mit_b*, densenet* and xception encoders replace load_state_dict with one that takes no `strict`: a
    weights file of the encoder's own state dict was exit 4 (TypeError: unexpected keyword argument 'strict')."""
    source = build_model("unet", encoder, classes=2)
    path = tmp_path / f"{encoder}.pth"
    torch.save(source.encoder.state_dict(), path)
    model = build_model("unet", encoder, classes=2, encoder_weights=str(path))
    assert all(torch.equal(a, b) for a, b in zip(model.encoder.state_dict().values(),
                                                 source.encoder.state_dict().values()))
    own = len(source.encoder.state_dict())
    assert f"{own} tensors loaded, 0 missing, 0 unused" in capsys.readouterr().err


def test_unknown_arch_and_encoder_list_choices():
    with pytest.raises(ConfigError, match="choose from .*deeplabv3plus"):
        build_model("deeplab", "resnet18", classes=2)
    with pytest.raises(ConfigError, match="resnet18"):
        build_model("unet", "resnet19", classes=2)


def test_smp_and_timm_refusals_are_one_line_with_a_fix():
    """smp's refusals had no fix part ("DeeplabV3Plus support output stride 8 or 16, got 32."), a timm name that does
    not exist (tu-mobilenet_v3_small) and timm's bare asserts (output_stride=7) were internal errors (exit 4)."""
    with pytest.raises(ConfigError, match=r"^cannot build deeplabv3plus/resnet18: DeeplabV3Plus support output stride "
                                          r"8 or 16, got 32; change model.kwargs.encoder_output_stride=32 "):
        build_model("deeplabv3plus", "resnet18", classes=2, kwargs={"encoder_output_stride": 32})
    with pytest.raises(ConfigError, match=r"got 7; change model.kwargs.encoder_depth=7 .*or choose another "):
        build_model("unet", "resnet18", classes=2, kwargs={"encoder_depth": 7})
    with pytest.raises(ConfigError, match=r"Available options are: \['imagenet'.*; set model.encoder_weights to one"):
        build_model("unet", "resnet18", classes=2, encoder_weights="imagenet21k")
    for kwargs in ({}, {"dynamic_img_size": True}):  # conf/model/dpt.yaml's kwargs used to be refused first
        with pytest.raises(ConfigError, match=r"^model.arch=dpt takes timm encoders only \(model.encoder=tu-<name>, "
                                              r"e.g. tu-vit_small_patch16_224\); got model.encoder=resnet18$"):
            build_model("dpt", "resnet18", classes=2, kwargs=kwargs)
    with pytest.raises(ConfigError, match=r"timm refused it \(assert output_stride in \(8, 16, 32\)\); change "
                                          r"model.kwargs.output_stride=7"):
        build_model("unet", "tu-resnet18", classes=2, kwargs={"output_stride": 7})
    with pytest.raises(ConfigError, match=r"^unknown model.encoder 'tu-mobilenet_v3_small': timm has no model "
                                          r"'mobilenet_v3_small' \(did you mean tu-mobilenetv3_small_100"):
        build_model("unet", "tu-mobilenet_v3_small", classes=2)
    build_model("unet", "tu-resnet18.a1_in1k", classes=2)  # a timm name with a pretrained tag is a model


def test_named_weights_offline_say_how_to_pass_a_file(monkeypatch):
    import segmentation_models_pytorch.encoders as encoders

    def offline(*args, **kwargs):
        raise OSError("Temporary failure in name resolution")

    monkeypatch.setattr(encoders, "load_state_dict_from_url", offline, raising=False)
    monkeypatch.setattr(encoders, "hf_hub_download", offline, raising=False)
    with pytest.raises(ConfigError) as err:
        build_model("unet", "resnet18", classes=2, encoder_weights="imagenet")
    message = str(err.value)
    assert "\n" not in message and "model.encoder_weights=/path/to/resnet18.pth" in message


def _no_network(monkeypatch, tmp_path) -> list:
    """Every socket connection fails (as offline), and the Hugging Face cache is an empty folder; returns the list of
    the addresses tried."""
    import socket

    from huggingface_hub import constants

    tried = []

    def unreachable(address, *args, **kwargs):
        tried.append(address)
        raise OSError(101, "Network is unreachable")

    monkeypatch.setattr(socket, "create_connection", unreachable)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    return tried


def test_named_weights_offline_fail_at_once(monkeypatch, tmp_path):
    """Offline, model.encoder_weights=imagenet waited ~40 s through the download client's retries (and printed
    "Retrying in 8s" lines) before its one-line error: one connection attempt now decides, and the error says why."""
    import time

    tried = _no_network(monkeypatch, tmp_path)
    start = time.monotonic()
    with pytest.raises(ConfigError) as err:
        build_model("unet", "resnet18", classes=2, encoder_weights="imagenet")
    assert time.monotonic() - start < 5
    assert len(tried) == 1
    message = str(err.value)
    assert "huggingface.co unreachable" in message and "model.encoder_weights=/path/to/resnet18.pth" in message


def test_a_name_lookup_that_never_answers_counts_as_offline(monkeypatch, tmp_path):
    """The Hub check's connection had a timeout, its name lookup none: a resolver that never answers (a firewalled
    CI runner) held `encoder_weights=imagenet` for as long as the system's resolver waits."""
    import socket
    import threading

    from segcli.models import factory

    _no_network(monkeypatch, tmp_path)
    release = threading.Event()

    def never_answers(*args, **kwargs):
        release.wait(60)
        raise socket.gaierror("Temporary failure in name resolution")  # what the lookup says once it gives up

    monkeypatch.setattr(socket, "create_connection", never_answers)
    monkeypatch.setattr(factory, "HUB_TIMEOUT_S", 0.2)
    try:
        assert factory.hub_unreachable() == "huggingface.co unreachable: no answer within 0.2 s (name lookup)"
        with pytest.raises(ConfigError, match="no answer within 0.2 s.*model.encoder_weights=/path/to/resnet18.pth"):
            build_model("unet", "resnet18", classes=2, encoder_weights="imagenet")
    finally:
        release.set()


def test_named_weights_downloaded_before_still_load_offline(monkeypatch, tmp_path):
    import json

    import segmentation_models_pytorch as smp
    from safetensors.torch import save_file

    _no_network(monkeypatch, tmp_path)
    settings = smp.encoders.encoders["resnet18"]["pretrained_settings"]["imagenet"]
    snapshot = (tmp_path / "hub" / f"models--{settings['repo_id'].replace('/', '--')}" / "snapshots"
                / settings["revision"])
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text(json.dumps({}))
    source = build_model("unet", "resnet18", classes=2).encoder.state_dict()
    save_file({k: v.contiguous() for k, v in source.items()}, str(snapshot / "model.safetensors"))
    model = build_model("unet", "resnet18", classes=2, encoder_weights="imagenet")
    assert torch.equal(model.encoder.conv1.weight, source["conv1.weight"])


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_local_weights_load_with_a_report(tmp_path, capsys, suffix):
    source = build_model("fpn", "resnet18", classes=2)
    state = {f"encoder.{k}": v for k, v in source.encoder.state_dict().items() if not k.startswith("layer4")}
    state["unrelated.weight"] = torch.zeros(3)
    path = tmp_path / f"enc{suffix}"
    if suffix == ".pth":
        torch.save(state, path)
    else:
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    model = build_model("fpn", "resnet18", classes=2, encoder_weights=str(path))
    assert torch.equal(model.encoder.conv1.weight, source.encoder.conv1.weight)
    assert not torch.equal(model.encoder.layer4[0].conv1.weight, source.encoder.layer4[0].conv1.weight)
    own = len(source.encoder.state_dict())
    loaded = len(state) - 1
    report = capsys.readouterr().err
    assert f"{loaded} tensors loaded, {own - loaded} missing, 1 unused" in report


def test_a_segcli_checkpoint_gives_its_encoder(tmp_path, capsys):
    """Fine-tuning from an earlier run: its best.ckpt as model.encoder_weights ("model.encoder.…" keys) was 'none of
    its tensors match'; its encoder now loads, the decoder and head start afresh (another class count is fine)."""
    source = build_model("unet", "resnet18", classes=5)
    path = tmp_path / "best.ckpt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in source.state_dict().items()},
                "hyper_parameters": {"meta": {"classes": list("abcde")}}}, path)
    model = build_model("fpn", "resnet18", classes=3, encoder_weights=str(path))
    assert all(torch.equal(a, b) for a, b in zip(model.encoder.state_dict().values(),
                                                 source.encoder.state_dict().values()))
    own = len(source.encoder.state_dict())
    assert f"{own} tensors loaded, 0 missing, {len(source.state_dict()) - own} unused" in capsys.readouterr().err


@pytest.mark.parametrize("prefix, wrap", [("", None), ("module.", None), ("", "model"), ("", "state_dict")])
def test_timm_weights_load_into_a_timm_encoder(tmp_path, capsys, prefix, wrap):
    """A timm model's own state dict (what timm and the Hugging Face hub save: "conv1.weight", or "module.…" from a
    DDP run, or inside a training checkpoint's {"model": …}) for a tu-<name> encoder, whose keys start "model.":
    was 'none of its tensors match'."""
    import timm

    source = timm.create_model("resnet18", pretrained=False)
    path = tmp_path / "resnet18.pth"
    state = {prefix + k: v for k, v in source.state_dict().items()}
    torch.save({wrap: state, "epoch": 90} if wrap else state, path)
    model = build_model("unet", "tu-resnet18", classes=3, encoder_weights=str(path))
    assert torch.equal(model.encoder.model.conv1.weight, source.conv1.weight)
    assert torch.equal(model.encoder.model.layer4[1].bn2.running_var, source.layer4[1].bn2.running_var)
    own = len(model.encoder.state_dict())
    assert f"{own} tensors loaded, 0 missing, 2 unused" in capsys.readouterr().err  # the classifier: fc.weight/bias


@pytest.mark.parametrize("channels", [1, 4])
def test_rgb_weights_for_another_channel_count_adapt_the_first_convolution(tmp_path, capsys, channels):
    """RGB weights for a grayscale or 4-band model: the first convolution was left random ('1 missing'); it is
    adapted as smp adapts its named weights (summed for one channel, RGB repeated and scaled by 3/C for more)."""
    source = build_model("unet", "resnet18", classes=2)
    path = tmp_path / "rgb.pth"
    torch.save(source.encoder.state_dict(), path)
    model = build_model("unet", "resnet18", classes=2, in_channels=channels, encoder_weights=str(path))
    rgb = source.encoder.conv1.weight
    expected = rgb.sum(1, keepdim=True) if channels == 1 else torch.cat([rgb, rgb[:, :1]], 1) * 0.75
    assert torch.allclose(model.encoder.conv1.weight, expected)
    assert torch.equal(model.encoder.layer1[0].conv1.weight, source.encoder.layer1[0].conv1.weight)
    err = capsys.readouterr().err
    assert "0 missing" in err and f"adapted from 3 to {channels} input channel" in err


def test_a_weights_path_that_is_missing_or_a_folder_says_so(tmp_path):
    """A path without a weights suffix that does not exist (a typo in a folder name, a file still downloading) was
    taken for a named set: smp's "Wrong pretrained weights `/data/w/resnet18` ... options are ['imagenet', ...]"
    (exit 2); a folder was 'file not found'."""
    for given in (tmp_path / "gone" / "resnet18", tmp_path / "best.ckpt", "~/no-such-weights"):
        with pytest.raises(DataError, match="encoder weights file not found; check model.encoder_weights"):
            build_model("unet", "resnet18", classes=2, encoder_weights=str(given))
    with pytest.raises(DataError, match="is a folder, not an encoder weights file"):
        build_model("unet", "resnet18", classes=2, encoder_weights=str(tmp_path))
    from segcli.models.factory import local_weights

    assert local_weights("imagenet") is None and local_weights(None) is None
    assert local_weights("w.pth") == Path("w.pth")
    assert local_weights("best.ckpt") == Path("best.ckpt")  # was taken for a named set: "Wrong pretrained weights"


def test_local_weights_of_another_encoder_fail(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"foo.weight": torch.zeros(2)}, path)
    with pytest.raises(DataError, match="none of its 1 tensors match"):
        build_model("unet", "resnet18", classes=2, encoder_weights=str(path))


def test_local_weights_of_another_encoder_of_the_family_fail(tmp_path, capsys):
    """resnet50's weights given to resnet18 loaded the tensors whose shapes happened to agree (97 of 120: BatchNorms,
    the stem) with only counts on stderr, a mix of two networks; a few tensors of another shape (a 4-channel input
    convolution) still load, and say which."""
    path = tmp_path / "resnet50.pth"
    torch.save(build_model("unet", "resnet50", classes=2).encoder.state_dict(), path)
    with pytest.raises(DataError, match=r"23 of its tensors have another shape than encoder 'ResNetEncoder' has under "
                                        r"the same name \(e.g. layer1.0.conv1.weight: \[64, 64, 1, 1\] in the file, "
                                        r"\[64, 64, 3, 3\] here\).*set model.encoder to the one"):
        build_model("unet", "resnet18", classes=2, encoder_weights=str(path))
    path = tmp_path / "four_channels.pth"
    torch.save(build_model("unet", "resnet18", classes=2, in_channels=4).encoder.state_dict(), path)
    build_model("unet", "resnet18", classes=2, encoder_weights=str(path))
    assert "119 tensors loaded, 1 missing (1 of another shape, e.g. conv1.weight)" in capsys.readouterr().err


@pytest.mark.parametrize("arch", ["deeplabv3", "deeplabv3plus", "pan", "upernet"])
def test_a_batch_of_one_image_is_a_usage_error_for_image_pooling_archs(arch):
    """These pool to 1x1 before a BatchNorm: `data.batch_size=1` ended in "internal error: ValueError: Expected
    more than 1 value per channel when training" (exit 4)."""
    from segcli.models.module import SegModule

    encoder, kwargs, side = ARCHS[arch]
    meta = {"classes": ["a", "b"], "ignore_index": 255, "mean": [0.5] * 3, "std": [0.25] * 3, "size_multiple": 32,
            "model": {"arch": arch, "encoder": encoder, "in_channels": 3, "classes": 2, "kwargs": kwargs},
            "dataset": {"root": None}}
    module = SegModule(meta, {"terms": {"ce": 1.0}}, {"name": "adamw", "lr": 1e-3}, {"name": "poly"})
    module.log = lambda *a, **k: None
    image = torch.randint(0, 255, (2, 3, side, side), dtype=torch.uint8)
    mask = torch.randint(0, 2, (2, side, side))
    with pytest.raises(ConfigError, match=f"model={arch} cannot train on a batch of 1 image.*data.batch_size to 2"):
        module.training_step({"image": image[:1], "mask": mask[:1]}, 0)
    assert torch.isfinite(module.training_step({"image": image, "mask": mask}, 0))


def test_a_batch_of_one_image_shrunk_to_1x1_names_the_size_not_image_pooling():
    """A Unet on 8x8 images (padded to 32x32) with data.batch_size=1: resnet18's last stage is 1x1, and the error
    blamed "a BatchNorm layer after its image pooling", which a Unet does not have."""
    from segcli.models.module import SegModule

    meta = {"classes": ["a", "b"], "ignore_index": 255, "mean": [0.5] * 3, "std": [0.25] * 3, "size_multiple": 32,
            "model": {"arch": "unet", "encoder": "resnet18", "in_channels": 3, "classes": 2, "kwargs": {}},
            "dataset": {"root": None}}
    module = SegModule(meta, {"terms": {"ce": 1.0}}, {"name": "adamw", "lr": 1e-3}, {"name": "poly"})
    module.log = lambda *a, **k: None
    image, mask = torch.randint(0, 255, (1, 3, 8, 8), dtype=torch.uint8), torch.randint(0, 2, (1, 8, 8))
    with pytest.raises(ConfigError) as refused:
        module.training_step({"image": image, "mask": mask}, 0)
    message = str(refused.value)
    assert "shrinks a 32x32 input to 1x1" in message and "image pooling" not in message
    assert "data.batch_size to 2" in message and "augment.crop_size" in message


def test_batch_of_one_from_the_command_line(tiny_data, tmp_path):
    from helpers_surface import QUICK, segcli

    run = tmp_path / "run"
    proc = segcli("train", f"data.root={tiny_data}", *QUICK, "model=deeplabv3", "data.batch_size=1", "--run-dir", run)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1].startswith("segcli: error: model=deeplabv3 cannot train on a batch")
    assert "Traceback" not in proc.stderr
    assert not run.exists()


def test_channels_last_is_off_where_torch_crashes_training_it():
    """A 1x1 stride-2 convolution over < 16 channels in channels-last memory kills the process (SIGSEGV) in its
    backward pass on this torch's CPU kernels: `segcli train model.encoder=mobileone_s0` died with exit 139."""
    import subprocess
    import sys

    from segcli.models.module import crashes_channels_last

    assert crashes_channels_last(build_model("unet", "mobileone_s0", classes=3)) == "encoder.stage0.rbr_scale.conv"
    assert crashes_channels_last(build_model("unet", "resnet18", classes=3)) is None
    step = """
import torch
from segcli.models.module import SegModule
meta = {"classes": ["a", "b", "c"], "ignore_index": 255, "mean": [0.5] * 3, "std": [0.25] * 3, "size_multiple": 32,
        "model": {"arch": "unet", "encoder": "mobileone_s0", "in_channels": 3, "classes": 3, "kwargs": {}},
        "dataset": {"root": None}}
module = SegModule(meta, {"terms": {"ce": 1.0}}, {"name": "adamw", "lr": 1e-3}, {"name": "poly"}, channels_last=True)
assert module.channels_last is False
module.log = lambda *a, **k: None
batch = {"image": torch.randint(0, 255, (2, 3, 128, 128), dtype=torch.uint8), "mask": torch.randint(0, 3, (2, 128, 128))}
module.training_step(batch, 0).backward()
print("trained")
"""
    proc = subprocess.run([sys.executable, "-c", step], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "trained" in proc.stdout, (proc.returncode, proc.stderr[-2000:])


@pytest.mark.filterwarnings("ignore:The usage of psp_use_batchnorm is deprecated")
def test_model_kwargs_must_be_arguments_of_the_architecture():
    """smp's own encoders drop keyword arguments the architecture does not take: a misspelt key trained the
    default model without a word."""
    with pytest.raises(ConfigError, match="decoder_atention_type is not an argument of smp's Unet.*did you mean "
                                          "decoder_attention_type"):
        build_model("unet", "resnet18", classes=3, kwargs={"decoder_atention_type": "scse"})
    with pytest.raises(ConfigError, match="model.kwargs.in_channels: set model.in_channels"):
        build_model("unet", "resnet18", classes=3, kwargs={"in_channels": 1})
    model = build_model("unet", "resnet18", classes=3, kwargs={"decoder_attention_type": "scse"})
    assert "SCSE" in type(model.decoder.blocks[0].attention1.attention).__name__
    build_model("pspnet", "resnet18", classes=3, kwargs={"psp_use_batchnorm": True})  # a deprecated spelling smp takes
    with pytest.raises(ConfigError, match="unexpected keyword argument 'bogus'"):  # timm encoders check their own
        build_model("unet", "tu-resnet10t", classes=3, kwargs={"bogus": 1})
    # `experiment=camvid model.arch=fpn`: unet_slim's decoder widths stay; the line says how to drop them
    with pytest.raises(ConfigError, match=r"decoder_channels is not an argument of smp's FPN.*remove it with "
                                          r"~model\.kwargs\.decoder_channels"):
        build_model("fpn", "resnet18", classes=3, kwargs={"decoder_channels": [128, 64, 32, 16, 16]})


def test_a_checkpoint_with_kwargs_smp_ignored_still_loads(tmp_path):
    """Checkpoints record model.kwargs; one trained before the check, with a key smp dropped, must still load."""
    from segcli.inference.backends import load_torch_model

    kwargs = {"arch": "unet", "encoder": "resnet18", "classes": 2, "in_channels": 3, "kwargs": {"bogus": 1}}
    model = build_model(**kwargs, check_kwargs=False)
    meta = {"classes": ["a", "b"], "ignore_index": 255, "mean": [0.5] * 3, "std": [0.25] * 3, "size_multiple": 32,
            "model": kwargs}
    torch.save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
                "hyper_parameters": {"meta": meta}}, tmp_path / "old.ckpt")
    loaded, _ = load_torch_model(tmp_path / "old.ckpt")
    assert type(loaded).__name__ == "Unet"


def test_weights_of_a_deeper_encoder_get_a_note(tmp_path, capsys):
    """resnet34's weights for model.encoder=resnet18 load without a word beyond '96 unused': the user trains on a
    quarter of the weights they meant to give. The layers resnet18 lacks are now named in a note."""
    path, err = _load_weights_of("resnet34", "resnet18", tmp_path, capsys)
    assert "120 tensors loaded, 0 missing, 96 unused" in err
    assert "note: 96 of its tensors belong to layers this encoder lacks (e.g. layer1.2.conv1.weight)" in err
    # no note either with encoder_depth=3, which leaves out the stages the file still holds (not a deeper encoder)
    timm = tmp_path / "tu-resnet18.pth"
    torch.save(build_model("unet", "tu-resnet18", classes=2).encoder.state_dict(), timm)
    build_model("unet", "tu-resnet18", classes=2, encoder_weights=str(timm),
                kwargs={"encoder_depth": 3, "decoder_channels": [64, 32, 16]})
    err = capsys.readouterr().err
    assert "0 missing" in err and "note:" not in err, err
    build_model("pspnet", "resnet18", classes=2, encoder_weights=str(path))  # depth 3, smp keeps every stage
    assert "note: 96 of its tensors belong to layers this encoder lacks" in capsys.readouterr().err


def test_weights_of_a_shallower_encoder_get_a_note(tmp_path, capsys):
    """resnet18's weights (a segcli run's best.ckpt) for model.encoder=resnet34: 96 of its 216 tensors kept their
    random start with only '96 missing' to say so, where the reverse had a note."""
    _, err = _load_weights_of("resnet18", "resnet34", tmp_path, capsys)
    assert "120 tensors loaded, 96 missing, 0 unused" in err
    assert "note: 96 of this encoder's tensors belong to layers the file lacks (e.g. layer1.2.conv1.weight)" in err


def _load_weights_of(source: str, into: str, tmp_path, capsys) -> tuple[Path, str]:
    """`source`'s encoder weights saved to a file and loaded into a U-Net on `into`: (the file, what the load said
    on stderr). Loaded into the encoder they are for, they get no note."""
    path = tmp_path / f"{source}.pth"
    torch.save(build_model("unet", source, classes=2).encoder.state_dict(), path)
    build_model("unet", into, classes=2, encoder_weights=str(path))
    err = capsys.readouterr().err
    build_model("unet", source, classes=2, encoder_weights=str(path))
    assert "note:" not in capsys.readouterr().err
    return path, err


def test_a_run_folder_as_encoder_weights_names_its_checkpoint(tmp_path):
    """model.encoder_weights=RUN_DIR was told to give 'a .pth or .safetensors file in it', which a run holds none of."""
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    torch.save({"state_dict": {}}, run / "checkpoints" / "best.ckpt")
    with pytest.raises(DataError, match=rf"give model.encoder_weights={re.escape(str(run))}/checkpoints/best.ckpt"):
        build_model("unet", "resnet18", classes=2, encoder_weights=str(run))


def test_a_preset_kwarg_the_encoder_refuses_names_the_override_that_removes_it():
    """`segcli train model=dpt model.encoder=tu-regnetx_002`: the preset's dynamic_img_size (a ViT's argument) is
    refused by the RegNet, and the line said 'change model.kwargs.dynamic_img_size=True', which the user never set.
    It names `~model.kwargs.dynamic_img_size`, and with that override DPT builds on the RegNet (`model.kwargs={}`
    keeps the key: Hydra merges)."""
    from segcli.config import compose, to_container
    from segcli.models.factory import model_kwargs

    with pytest.raises(ConfigError) as err:
        build_model("dpt", "tu-regnetx_002", classes=2, kwargs={"dynamic_img_size": True})
    assert "this encoder takes no dynamic_img_size: remove it with ~model.kwargs.dynamic_img_size" in str(err.value)
    assert "\n" not in str(err.value)
    cfg = compose("train", ["model=dpt", "model.encoder=tu-regnetx_002", "~model.kwargs.dynamic_img_size"])
    model = build_model(**model_kwargs(to_container(cfg.model), 2))
    assert type(model).__name__ == "DPT"
