"""Config values a user plausibly types, refused as one line (exit 2) before a run directory exists, or composed as
they read: the smoke experiment with another model preset, model.in_channels, encoder_depth without matching decoder
widths, optim/sched choices checked before fit, trainer.gradient_clip_algorithm."""

from __future__ import annotations

import pytest
from helpers_surface import QUICK, segcli

from segcli.errors import ConfigError


def _refused(tiny_data, tmp_path, *overrides: str) -> str:
    """Run `segcli train` with the overrides; assert exit 2, one error line, no traceback and no run directory; its
    stderr."""
    run = tmp_path / "run"
    proc = segcli("train", f"data.root={tiny_data}", *QUICK, *overrides, "--run-dir", run)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and proc.stderr.count("error:") == 1, proc.stderr[-2000:]
    assert "run directory" not in proc.stderr and not run.exists(), proc.stderr[-2000:]
    return proc.stderr


@pytest.mark.parametrize("model, encoder", [("dpt", "tu-vit_small_patch16_224"), ("segformer", "mit_b0")])
def test_smoke_experiment_keeps_the_model_presets_encoder(model, encoder):
    from segcli.config import compose

    cfg = compose("train", ["experiment=smoke", f"model={model}"])  # was resnet18: dpt then refused it
    assert cfg.model.arch == model and cfg.model.encoder == encoder and cfg.model.encoder_weights is None
    assert compose("train", ["experiment=smoke"]).model.encoder == "resnet18"  # the default preset's


@pytest.mark.parametrize("value", ["rgb", "0", "-3", "2.5"])
def test_in_channels_that_is_no_channel_count_is_a_usage_error(tiny_data, tmp_path, value):
    err = _refused(tiny_data, tmp_path, f"model.in_channels={value}")
    assert f"model.in_channels={value!r}" in err or f"model.in_channels={value}" in err
    assert "whole number >= 1" in err


@pytest.mark.parametrize("arch, overrides, fix", [
    ("unet", ["+model.kwargs.encoder_depth=3"], "+model.kwargs.decoder_channels=[64,32,16] for encoder_depth=3"),
    ("unet_slim", ["+model.kwargs.encoder_depth=4"], "model.kwargs.decoder_channels=[64,32,16,16] for encoder_depth=4"),
])
def test_encoder_depth_refusal_names_the_decoder_channels_to_give(tiny_data, tmp_path, arch, overrides, fix):
    err = _refused(tiny_data, tmp_path, f"model={arch}", *overrides)
    assert fix in err and "change model.kwargs.encoder_depth" not in err
    if arch == "unet":  # the suggested widths build
        from segcli.models.factory import build_model

        build_model("unet", "resnet18", classes=3, kwargs={"encoder_depth": 3, "decoder_channels": [64, 32, 16]})


@pytest.mark.parametrize("overrides, message", [
    (["optim=sgd", "optim.momentum=0"], "optim.nesterov=true needs optim.momentum > 0; set optim.nesterov=false"),
    (["sched.name=linear"], "unknown sched.name 'linear'"),
    (["optim.name=adam"], "unknown optim.name 'adam' (did you mean adamw?)"),
])
def test_optim_and_sched_choices_are_refused_before_the_run_directory(tiny_data, tmp_path, overrides, message):
    assert message in _refused(tiny_data, tmp_path, *overrides)


def test_unknown_gradient_clip_algorithm_is_refused_before_the_run_directory(tiny_data, tmp_path):
    from segcli.checks import CLIP_ALGORITHMS, choice

    with pytest.raises(ConfigError, match="did you mean norm"):
        choice("trainer.gradient_clip_algorithm", "nrm", CLIP_ALGORITHMS)
    choice("trainer.gradient_clip_algorithm", "Value", CLIP_ALGORITHMS)
    err = _refused(tiny_data, tmp_path, "trainer.gradient_clip_val=0.5", "+trainer.gradient_clip_algorithm=nrm")
    assert "trainer.gradient_clip_algorithm 'nrm'" in err


@pytest.mark.parametrize("swept", ["model.in_channels=3,rgb", "optim.name=adamw,adam",
                                   "+trainer.gradient_clip_algorithm=norm,nrm"])
def test_a_sweep_refuses_these_values_before_its_first_job(tiny_data, tmp_path, swept):
    """Checked only when a job built its model or optimiser, they let a sweep train its first job before the second
    failed; a sweep checks every job's values first."""
    proc = segcli("train", "-m", f"data.root={tiny_data}", *QUICK, swept, "--run-dir", tmp_path / "sweep")
    assert proc.returncode == 2 and proc.stderr.count("segcli: error:") == 1, proc.stderr[-2000:]
    assert swept.split("=")[0].lstrip("+") in proc.stderr and "sweep job 0 (1 of 2)" not in proc.stderr
    assert not any((tmp_path / "sweep").glob("0-*")), proc.stderr[-2000:]
