"""Trainer presets, checks that turn unrunnable settings into one-line ConfigErrors, torch.compile."""

from __future__ import annotations

import pytest
import torch

from segcli.config import compose, to_container
from segcli.errors import ConfigError
from segcli.models.trainer_args import check, for_this_machine, lightning_config_errors, started_as_one_of_several


@pytest.mark.parametrize("preset", ["cpu", "gpu", "ddp"])
def test_presets_compose_with_the_same_keys(preset):
    cpu = to_container(compose("train", ["trainer=cpu"]).trainer)
    trainer = to_container(compose("train", [f"trainer={preset}"]).trainer)
    assert set(trainer) == set(cpu)
    if preset == "ddp":
        assert trainer["strategy"] == "ddp" and trainer["sync_batchnorm"] is True


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
@pytest.mark.parametrize("preset", ["gpu", "ddp"])
def test_gpu_preset_without_a_gpu_is_a_config_error(preset):
    trainer = to_container(compose("train", [f"trainer={preset}"]).trainer)
    with pytest.raises(ConfigError, match="no CUDA GPU is visible.*trainer=cpu"):
        check(trainer)


def test_sync_batchnorm_is_switched_off_on_the_cpu(capsys):
    """torch's SyncBatchNorm only runs on CUDA: `trainer=ddp trainer.accelerator=cpu` must not fail in the first
    forward pass ("SyncBatchNorm layers only work with GPU modules")."""
    ddp = to_container(compose("train", ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2"]).trainer)
    assert ddp["sync_batchnorm"] is True
    adjusted = for_this_machine(ddp)
    assert adjusted["sync_batchnorm"] is False and ddp["sync_batchnorm"] is True  # a copy
    assert "sync_batchnorm is off on the CPU" in capsys.readouterr().err
    fixed = {**ddp, "sync_batchnorm": False, "precision": "32-true"}  # (the preset's auto: chosen per machine)
    assert for_this_machine(fixed) == fixed


@pytest.mark.parametrize("flags, noted", [({"avx2", "fma"}, True), ({"avx512f", "avx512_bf16"}, False),
                                          ({"amx_bf16"}, False), (set(), False)])
def test_bf16_on_a_cpu_without_native_bfloat16_is_noted(monkeypatch, capsys, flags, noted):
    """An explicit bf16-mixed: 1.8x faster on a CPU with AVX-512 BF16/AMX; a CPU without native bfloat16
    emulates it, so a note says 32-true is faster (no note where the flags cannot be read: macOS, ARM)."""
    from segcli.models import trainer_args

    monkeypatch.setattr(trainer_args, "cpu_flags", lambda: flags)
    for precision in ("bf16-mixed", "32-true"):
        assert for_this_machine({"accelerator": "cpu", "precision": precision})["precision"] == precision
        err = capsys.readouterr().err
        assert ("without native bfloat16" in err and "32-true" in err) == (noted and precision == "bf16-mixed"), err


@pytest.mark.parametrize("flags, chosen", [({"avx2", "fma"}, "32-true"), ({"avx512f", "avx512_bf16"}, "bf16-mixed"),
                                           ({"amx_bf16"}, "bf16-mixed"), (set(), "32-true")])
def test_auto_precision_on_the_cpu_trains_in_bf16_only_where_the_cpu_has_it(monkeypatch, capsys, flags, chosen):
    """experiment=camvid asks for trainer.precision=auto: bf16 autocast was 14x slower per step than float32 on an
    AVX2 CPU (emulated bfloat16) and 1.8x faster on one with AVX-512 BF16."""
    from segcli.models import trainer_args

    monkeypatch.setattr(trainer_args, "cpu_flags", lambda: flags)
    adjusted = for_this_machine({"accelerator": "cpu", "precision": "auto", "devices": 1})
    assert adjusted == {"accelerator": "cpu", "precision": chosen, "devices": 1}
    assert f"trainer.precision=auto → {chosen}" in capsys.readouterr().err


def test_the_ddp_preset_on_a_cpu_without_bfloat16_trains_in_float32(monkeypatch, capsys):
    """The README's `trainer=ddp trainer.accelerator=cpu trainer.devices=2` trained in emulated bf16 (the preset said
    bf16-mixed): 3x slower per epoch there, with the note that bf16 is emulated."""
    from segcli.models import trainer_args

    monkeypatch.setattr(trainer_args, "cpu_flags", lambda: {"avx2", "fma"})
    cfg = compose("train", ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2"])
    adjusted = for_this_machine({k: v for k, v in to_container(cfg.trainer).items() if v is not None})
    assert cfg.trainer.precision == "auto" and adjusted["precision"] == "32-true"
    assert "is emulated, over" not in capsys.readouterr().err  # the note on bf16-mixed there


@pytest.mark.parametrize("bf16, chosen", [(True, "bf16-mixed"), (False, "16-mixed")])
def test_auto_precision_on_a_gpu(monkeypatch, bf16, chosen):
    """The gpu preset asks for auto: bf16-mixed on Ampere and newer, 16-mixed (loss scaling) on a V100 or T4,
    where an explicit bf16-mixed is a ConfigError."""
    from segcli.models import trainer_args

    monkeypatch.setattr(trainer_args, "_gpu_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    for accelerator in ("gpu", "auto"):
        assert for_this_machine({"accelerator": accelerator, "precision": "auto"})["precision"] == chosen
    assert to_container(compose("train", ["trainer=gpu"]).trainer)["precision"] == "auto"
    assert to_container(compose("train", ["experiment=camvid"]).trainer)["precision"] == "auto"


def test_auto_precision_is_recorded_in_the_run_config(tiny_data, tmp_path):
    """config.yaml keeps the precision the run trained in (a resume goes on in it), not 'auto'."""
    from helpers_surface import QUICK, segcli

    from segcli.models.trainer_args import auto_precision

    run = tmp_path / "run"
    proc = segcli("train", f"data.root={tiny_data}", *QUICK, "trainer.precision=auto", "--run-dir", run)
    assert proc.returncode == 0, proc.stderr[-2000:]
    chosen = auto_precision(True, "cpu")[0]
    assert f"trainer.precision=auto → {chosen}" in proc.stderr
    assert f"precision: {chosen}\n" in (run / "config.yaml").read_text()


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    from segcli.models.trainer_args import cpu_flags

    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: X\nflags\t\t: fpu sse2 avx2 amx_bf16\n\nprocessor\t: 1\n")
    assert cpu_flags(str(info)) == {"fpu", "sse2", "avx2", "amx_bf16"}
    assert cpu_flags(str(tmp_path / "absent")) == set()


def test_precision_and_accelerator_are_checked():
    check({"accelerator": "cpu", "precision": "bf16-mixed"})
    check({"accelerator": "cpu", "precision": "auto"})
    with pytest.raises(ConfigError, match="choose from auto, 32-true, 16-mixed, bf16-mixed"):
        check({"accelerator": "cpu", "precision": "bf16"[:3] + "x"})
    with pytest.raises(ConfigError, match="choose from cpu, gpu"):
        check({"accelerator": "tpux"})


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU's device forms")
@pytest.mark.parametrize("devices", [-1, [0, 1], "0,", "-1"])
def test_gpu_device_forms_on_the_cpu_are_a_config_error(devices):
    """Lightning's CPU accelerator takes only a number of processes: -1 or GPU indices were exit 4 (a TypeError
    from Lightning, after the run directory was made)."""
    for accelerator in ("cpu", "auto"):
        with pytest.raises(ConfigError, match=r"trainer.devices=.*: on the CPU give the number of processes"):
            check({"accelerator": accelerator, "devices": devices})
    for fine in (1, 2, "2", "auto"):
        check({"accelerator": "cpu", "devices": fine})


def test_precision_and_accelerator_names_reach_lightning_as_it_spells_them(monkeypatch, capsys):
    """check() takes any case (BF16-Mixed, CPU) but Lightning only lower case: it refused them after the run
    directory was made. 16-mixed on the CPU trained in bf16-mixed (Lightning's silent switch) while config.yaml
    said 16-mixed; Lightning's old names (16, bf16) are made its current ones."""
    from segcli.models import trainer_args

    monkeypatch.setattr(trainer_args, "cpu_flags", lambda: {"avx512_bf16"})
    for given, trained in (("BF16-Mixed", "bf16-mixed"), ("32", "32-true"), (16, "bf16-mixed"),
                           ("16-mixed", "bf16-mixed"), ("bf16", "bf16-mixed"), ("64-True", "64-true")):
        check({"accelerator": "CPU", "precision": given})
        adjusted = for_this_machine({"accelerator": "CPU", "precision": given})
        assert adjusted == {"accelerator": "cpu", "precision": trained}, given
    assert "trainer.precision=16-mixed on the CPU trains in bf16-mixed" in capsys.readouterr().err
    monkeypatch.setattr(trainer_args, "_gpu_count", lambda: 1)
    assert for_this_machine({"accelerator": "gpu", "precision": "16-mixed"})["precision"] == "16-mixed"


def test_cpu_precision_16_mixed_is_recorded_as_what_trained(tiny_data, tmp_path):
    from helpers_surface import QUICK, segcli

    run = tmp_path / "run"
    proc = segcli("train", f"data.root={tiny_data}", *QUICK, "trainer.precision=16-mixed", "trainer.accelerator=CPU",
                  "final_eval=false", "--run-dir", run)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "precision: bf16-mixed\n" in (run / "config.yaml").read_text()
    assert "AMP with fp16 is not supported on CPU" not in proc.stderr  # Lightning's warning, with its file path


def test_lightning_errors_become_one_line():
    import lightning as L

    with pytest.raises(ConfigError) as err, lightning_config_errors():
        L.Trainer(accelerator="cpu", precision="bogus", logger=False)
    assert "\n" not in str(err.value)


def _two_class_module(lr: float = 1e-3, **kwargs):
    """A SegModule of FPN/resnet18 for two classes, with AdamW at `lr` (its log() a no-op where a test sets it)."""
    from segcli.models.module import SegModule

    meta = {"classes": ["a", "b"], "ignore_index": 255, "mean": [0.5] * 3, "std": [0.25] * 3, "size_multiple": 32,
            "model": {"arch": "fpn", "encoder": "resnet18", "in_channels": 3, "classes": 2, "kwargs": {}},
            "dataset": {"root": None}}
    return SegModule(meta, {"terms": {"ce": 1.0}}, {"name": "adamw", "lr": lr}, {"name": "poly"}, **kwargs)


@pytest.mark.slow  # torch.compile on CPU: about 3 minutes here
def test_compiled_module_step():
    module = _two_class_module(compile=True)
    assert not any("_orig_mod" in k for k in module.state_dict())  # checkpoint keys unchanged
    batch = {"image": torch.randint(0, 255, (2, 3, 32, 32), dtype=torch.uint8), "mask": torch.randint(0, 2, (2, 32, 32))}
    module.log = lambda *a, **k: None
    loss = module.training_step(batch, 0)
    loss.backward()
    assert torch.isfinite(loss)


@pytest.mark.parametrize("precision", ["bf16-true", "64-true"])
def test_true_precisions_train_and_evaluate(tiny_data, tmp_path, precision):
    """*-true precisions cast the weights; the uint8 images, normalised in float32, must follow them (they failed
    with "Input type (torch.FloatTensor) and weight type (CPUBFloat16Type) should be the same")."""
    import json

    from helpers_surface import QUICK, segcli

    run = tmp_path / "run"
    proc = segcli("train", f"data.root={tiny_data}", *QUICK, f"trainer.precision={precision}", "--run-dir", run)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((run / "eval" / "report.json").read_text())  # the final eval of best.ckpt, at float32
    assert 0.0 <= report["mIoU"] <= 1.0


def test_several_nodes_need_a_multi_node_launch(monkeypatch):
    """trainer.num_nodes=2 started by hand without MASTER_ADDR waited for ever for machines that could not find it."""
    for key in ("MASTER_ADDR", "SLURM_JOB_ID", "LSB_JOBID", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE"):
        monkeypatch.delenv(key, raising=False)
    base = {"accelerator": "cpu", "devices": 2, "strategy": "ddp", "precision": "32-true"}
    with pytest.raises(ConfigError, match="num_nodes=2.*MASTER_ADDR.*NODE_RANK"):
        check({**base, "num_nodes": 2})
    check({**base, "num_nodes": 1})
    monkeypatch.setenv("MASTER_ADDR", "10.0.0.1")  # what torchrun --nnodes, or the user on each machine, sets
    check({**base, "num_nodes": 2})
    with pytest.raises(ConfigError, match="integer >= 1"):
        check({**base, "num_nodes": 0})


@pytest.mark.parametrize("strategy", ["ddp_spawn", "ddp_fork", "ddp_notebook_find_unused_parameters_true"])
def test_strategies_that_train_in_child_processes_are_refused(strategy):
    """With ddp_spawn the command printed "no validation ran" next to a final evaluation of best.ckpt: the
    trained state stays in the spawned processes."""
    base = {"accelerator": "cpu", "devices": 2, "precision": "32-true", "num_nodes": 1}
    with pytest.raises(ConfigError, match=f"strategy={strategy}.*trainer.strategy=ddp"):
        check({**base, "strategy": strategy})
    check({**base, "strategy": "ddp_find_unused_parameters_true"})


def test_which_launches_need_a_run_dir(monkeypatch):
    """Processes that each run the whole command cannot agree on a new run directory's name (segcli train then
    needs --run-dir); a single command that Lightning's DDP launcher splits into processes can."""
    for key in ("RANK", "LOCAL_RANK", "SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "MASTER_ADDR"):
        monkeypatch.delenv(key, raising=False)
    assert not started_as_one_of_several(1)
    assert started_as_one_of_several(2)  # each machine of a multi-node run starts its own command
    monkeypatch.setenv("MASTER_ADDR", "10.0.0.1")  # alone, e.g. left in the shell: still one process
    monkeypatch.setenv("SLURM_NTASKS", "1")  # an sbatch job of one task
    assert not started_as_one_of_several(1)
    for key, value in (("SLURM_NTASKS", "4"), ("OMPI_COMM_WORLD_SIZE", "2"), ("RANK", "0")):
        monkeypatch.setenv(key, value)
        assert started_as_one_of_several(1), key


def test_a_diverged_run_stops_with_a_check_failure():
    """optim.lr=1e6 trained on with NaN weights to the end, overwriting last.ckpt each epoch, and reported a
    'best' mIoU from before; now three non-finite losses in a row stop it (exit 1) with what to change."""
    from segcli.errors import CheckFailed

    module = _two_class_module()
    module.log = lambda *a, **k: None
    batch = {"image": torch.randint(0, 255, (2, 3, 32, 32), dtype=torch.uint8), "mask": torch.randint(0, 2, (2, 32, 32))}
    losses = iter([float("nan"), float("nan"), 1.0, float("inf"), float("nan"), float("nan")])
    module.loss_fn.forward = lambda logits, target: logits.sum() * 0 + next(losses)
    for _ in range(5):  # two non-finite, a finite one resets the count, then two more
        module.training_step(batch, 0)
    with pytest.raises(CheckFailed, match="training diverged: the loss was nan for 3 steps.*lower optim.lr"):
        module.training_step(batch, 0)


def test_one_nonfinite_step_that_reached_the_weights_stops_the_run_before_validation():
    """optim.lr=1e8 on a 4-step epoch: the loss went 2.0, 3e17, nan, nan and the epoch ended before the third
    non-finite step, so validation scored the NaN model (val mIoU 5.32, kept as best.ckpt) and the final
    evaluation failed with exit 3 as if its input were wrong. Once a non-finite loss has reached the weights, the
    next check (the next step, validation, last.ckpt, the end of training) stops the run as diverged (exit 1)."""
    from segcli.errors import CheckFailed

    module = _two_class_module()
    module.log = lambda *a, **k: None
    batch = {"image": torch.randint(0, 255, (2, 3, 32, 32), dtype=torch.uint8), "mask": torch.randint(0, 2, (2, 32, 32))}
    losses = iter([float("nan"), 1.0])
    module.loss_fn.forward = lambda logits, target: logits.sum() * 0 + next(losses)
    module.training_step(batch, 0)  # a NaN loss, weights still finite (an fp16 grad scaler skips such a step)
    module.check_pending_loss()
    with torch.no_grad():
        next(module.parameters()).fill_(float("nan"))  # what the optimiser step makes of NaN gradients
    with pytest.raises(CheckFailed, match=r"training diverged: the loss was nan at step 0 \(epoch 1\) and the "
                                          r"weights now hold NaN or infinite values; lower optim.lr"):
        module.on_validation_start()


def test_weights_sent_to_nan_by_a_finite_loss_stop_the_run_naming_only_the_changes_not_in_force():
    """optim.lr=1e8: a finite loss (2.3e17) sent the weights to NaN; validation scored them (val mIoU 5.37, best.ckpt)
    and the run ended with exit 3, 'use another model'. And the advice named trainer.gradient_clip_val=1.0 and
    precision=32-true to a run that had them both."""
    from types import SimpleNamespace

    from segcli.errors import CheckFailed

    module = _two_class_module(lr=1e8)
    module.check_diverged()  # finite weights: nothing to say
    with torch.no_grad():
        next(module.parameters()).fill_(float("inf"))
    with pytest.raises(CheckFailed) as caught:
        module.check_diverged()
    assert str(caught.value) == (
        "training diverged: the weights hold NaN or infinite values after step 0 (epoch 1); lower optim.lr (now "
        "100000000.0), set trainer.gradient_clip_val (e.g. 1.0), or train at trainer.precision=32-true; the "
        "checkpoints written before are kept")
    module._trainer = SimpleNamespace(gradient_clip_val=1.0, precision="32-true", global_step=5, current_epoch=1)
    with pytest.raises(CheckFailed, match=r"after step \d+ \(epoch \d+\); lower optim.lr \(now 100000000.0\); the "):
        module.check_diverged()


def test_a_deferred_loss_check_still_stops_a_diverged_run():
    """On a GPU the finite-loss check of a step reads its result at the start of the next one (read at once it
    stalled the device each step); the count of non-finite steps and the message (naming the step the loss came
    from) are unchanged, one step later."""
    from segcli.errors import CheckFailed

    module = _two_class_module()
    module.log = lambda *a, **k: None
    module._defers_check = lambda loss: True
    batch = {"image": torch.randint(0, 255, (2, 3, 32, 32), dtype=torch.uint8), "mask": torch.randint(0, 2, (2, 32, 32))}
    losses = iter([float("nan"), float("nan"), 1.0, float("inf"), float("nan"), float("nan"), 1.0])
    module.loss_fn.forward = lambda logits, target: logits.sum() * 0 + next(losses)
    for _ in range(6):  # the sixth step's NaN (the third in a row) is not read yet
        module.training_step(batch, 0)
    with pytest.raises(CheckFailed, match=r"the loss was nan for 3 steps in a row \(step 0, epoch 1\)"):
        module.check_pending_loss()  # what validation, last.ckpt and the end of training call first
    module.check_pending_loss()  # read once only

    module._pending_loss, module._nonfinite = (torch.tensor(False), None, torch.tensor(float("inf")), 7, 1), 2
    with pytest.raises(CheckFailed, match=r"the loss was inf for 3 steps in a row \(step 7, epoch 2\)"):
        module.training_step(batch, 0)  # or the next step, before its forward pass


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_training_step_on_a_gpu_never_waits_for_the_device():
    """Each host read of a device value (a .item(), a bool(), a copy of a Python list to the GPU, a size the
    device must report) holds the host until the GPU has drained its queue. camvid_gpu's step (ce_dice with class
    weights, bf16 autocast, channels-last) has none; CUDA's sync debug mode turns one into an error."""
    from segcli.data.datamodule import PadCollate
    from segcli.models.module import SegModule

    meta = {"classes": [str(i) for i in range(5)], "ignore_index": 255, "mean": [0.5] * 3, "std": [0.25] * 3,
            "size_multiple": 32, "dataset": {"root": None},
            "model": {"arch": "unet", "encoder": "resnet18", "in_channels": 3, "classes": 5, "kwargs": {}}}
    module = SegModule(meta, {"terms": {"ce": 1.0, "dice": 1.0}, "class_weights": [1.0, 2.0, 0.5, 1.0, 3.0]},
                       {"name": "adamw", "lr": 1e-3}, {"name": "poly"}).cuda()
    module.log = lambda *a, **k: None
    optimizer = torch.optim.AdamW(module.parameters(), lr=1e-3)
    samples = [{"image": torch.randint(0, 255, (3, 64, 96), dtype=torch.uint8),
                "mask": torch.randint(0, 5, (64, 96))} for _ in range(4)]
    samples[0]["mask"][:10] = 255
    batch = {k: v.pin_memory().cuda(non_blocking=True) if isinstance(v, torch.Tensor) else v
             for k, v in PadCollate(255)(samples).items()}

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = module.training_step(batch, 0)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()  # first-call set-up (cuDNN, allocator) may synchronise
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(3):
            step()
    finally:
        torch.cuda.set_sync_debug_mode(0)
    module.check_pending_loss()
    assert module._nonfinite == 0  # the deferred checks ran and found the losses finite
