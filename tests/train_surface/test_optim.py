"""Optimisers, no-decay parameter groups, lr schedules, gradient clipping and accumulation."""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch
from torch import nn

from segcli.errors import ConfigError
from segcli.models.optim import build_optimizer, build_scheduler, lr_factor, param_groups


def _net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 4, 1, bias=False), nn.GroupNorm(2, 4),
                         nn.Conv2d(4, 2, 1))


def test_norm_layers_and_biases_get_no_weight_decay():
    net = _net()
    decay, no_decay = param_groups(net, 1e-4)
    names = {id(p): n for n, p in net.named_parameters()}
    assert sorted(names[id(p)] for p in decay["params"]) == ["0.weight", "2.weight", "4.weight"]
    assert sorted(names[id(p)] for p in no_decay["params"]) == ["0.bias", "1.bias", "1.weight", "3.bias", "3.weight",
                                                                "4.bias"]
    assert (decay["weight_decay"], no_decay["weight_decay"]) == (1e-4, 0.0)
    (single,) = param_groups(net, 1e-4, no_decay_norm_bias=False)
    assert len(single["params"]) == 9


def test_optimizers():
    adamw = build_optimizer(_net(), {"name": "adamw", "lr": 1e-3, "weight_decay": 0.01})
    assert isinstance(adamw, torch.optim.AdamW) and [g["weight_decay"] for g in adamw.param_groups] == [0.01, 0.0]
    sgd = build_optimizer(_net(), {"name": "sgd", "lr": 0.01, "weight_decay": 1e-4, "momentum": 0.9, "nesterov": True})
    assert isinstance(sgd, torch.optim.SGD) and sgd.defaults["nesterov"] and sgd.defaults["momentum"] == 0.9
    with pytest.raises(ConfigError, match="choose from adamw, sgd"):
        build_optimizer(_net(), {"name": "adam", "lr": 1e-3})


def test_schedule_shapes():
    poly = {"name": "poly", "power": 1.0}
    assert lr_factor(poly, 0, 0.0) == 1.0 and lr_factor(poly, 50, 0.5) == 0.5
    cosine = {"name": "cosine", "min_lr_ratio": 0.1}
    assert math.isclose(lr_factor(cosine, 50, 0.5), 0.55) and math.isclose(lr_factor(cosine, 99, 1.0), 0.1)
    warm = {"name": "cosine", "warmup_steps": 10}
    assert lr_factor(warm, 0, 0.0) == 0.1 and lr_factor(warm, 4, 0.04) == 0.5
    frac = {"name": "poly", "warmup_fraction": 0.2, "power": 1.0}
    # after the warm-up (a fifth of training) the decay runs over the other four fifths: at 0.3, an eighth of it
    assert math.isclose(lr_factor(frac, 10, 0.1), 0.5) and math.isclose(lr_factor(frac, 30, 0.3), 0.875)
    one = {"name": "onecycle", "pct_start": 0.25, "div_factor": 25.0, "final_div_factor": 1e4}
    assert math.isclose(lr_factor(one, 0, 0.0), 1 / 25) and math.isclose(lr_factor(one, 25, 0.25), 1.0)
    assert math.isclose(lr_factor(one, 100, 1.0), 1 / 25 / 1e4)
    assert lr_factor({"name": "constant"}, 5, 0.7) == 1.0
    with pytest.raises(ConfigError, match="choose from poly, cosine, onecycle, constant"):
        lr_factor({"name": "cosin"}, 0, 0.0)


def test_onecycle_matches_torch_onecycle_lr():
    params = [nn.Parameter(torch.zeros(1))]
    total = 40
    ours = build_scheduler(torch.optim.SGD(params, lr=0.1), {"name": "onecycle", "pct_start": 0.3},
                           lambda step: step / total)
    theirs_opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1, momentum=0.9)
    theirs = torch.optim.lr_scheduler.OneCycleLR(theirs_opt, max_lr=0.1, total_steps=total + 1, pct_start=0.3,
                                                 anneal_strategy="cos", cycle_momentum=False,
                                                 three_phase=False)
    for _ in range(total):  # same start, peak and end; in between within a step's offset of the phase boundary
        a, b = ours.get_last_lr()[0], theirs.get_last_lr()[0]
        assert abs(a - b) < 0.012, (a, b)
        ours.optimizer.step(), ours.step(), theirs_opt.step(), theirs.step()


def test_progress_is_read_once_per_step_for_all_parameter_groups():
    """Under DDP progress broadcasts the first process's clock: once per scheduler step, not once per group."""
    steps = []

    def progress(step):
        steps.append(step)
        return step / 10

    optimizer = build_optimizer(_net(), {"name": "adamw", "lr": 1e-3, "weight_decay": 0.01})  # two groups
    scheduler = build_scheduler(optimizer, {"name": "poly", "power": 1.0}, progress)
    for _ in range(3):
        optimizer.step(), scheduler.step()
    assert steps == [0, 1, 2, 3]
    assert scheduler.get_last_lr() == pytest.approx([7e-4, 7e-4])


def _fit(tmp_path, **trainer_args) -> L.LightningModule:
    """Fit a tiny regression with lr 0.1 SGD on 4 batches; returns the module (steps taken, start weights)."""

    class Tiny(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.layer = nn.Linear(2, 1)
            self.start = [p.detach().clone() for p in self.layer.parameters()]
            self.steps = 0

        def training_step(self, batch, batch_idx):
            x, y = batch
            return ((self.layer(x) - y) ** 2).mean() * 1000

        def on_before_optimizer_step(self, optimizer):
            self.steps += 1

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    torch.manual_seed(0)
    data = torch.utils.data.TensorDataset(torch.randn(8, 2), torch.randn(8, 1))
    module = Tiny()
    L.Trainer(accelerator="cpu", max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
              enable_model_summary=False, default_root_dir=str(tmp_path), **trainer_args).fit(
        module, torch.utils.data.DataLoader(data, batch_size=2))
    return module


def test_accumulation_steps_the_optimizer_every_n_batches(tmp_path):
    assert _fit(tmp_path).steps == 4
    assert _fit(tmp_path, accumulate_grad_batches=2).steps == 2


def test_gradient_clipping_bounds_the_update(tmp_path):
    free, clipped = _fit(tmp_path), _fit(tmp_path, gradient_clip_val=0.01)
    move = lambda m: float(torch.cat([(p - s).flatten() for p, s in zip(m.layer.parameters(), m.start)]).norm())  # noqa: E731
    assert move(clipped) <= 4 * 0.1 * 0.01 + 1e-6 < move(free)  # 4 SGD steps of lr 0.1 on gradients of norm <= 0.01


@pytest.mark.parametrize("steps_done, seconds, expected", [
    (100, 10.0, 0.1),     # 100 of 45,000 steps, 10 s of a 100 s budget: the clock runs out first
    (40_500, 10.0, 0.9),  # the step budget runs out first
    (0, 250.0, 1.0),      # past the budget: clamped
])
def test_progress_follows_whichever_budget_runs_out_first(steps_done, seconds, expected):
    """max_epochs=1000 with trainer.max_time: a finite but unreachable step budget must not freeze the schedule."""
    from types import SimpleNamespace

    from lightning.pytorch.callbacks import Timer

    from segcli.models.optim import training_progress

    timer = Timer(duration="00:00:01:40")
    timer.start_time = lambda stage="train": 0.0
    timer.time_elapsed = lambda stage="train": seconds
    trainer = SimpleNamespace(estimated_stepping_batches=45_000, callbacks=[timer])
    assert training_progress(trainer, steps_done) == pytest.approx(expected)
    no_clock = SimpleNamespace(estimated_stepping_batches=45_000, callbacks=[])
    assert training_progress(no_clock, steps_done) == pytest.approx(steps_done / 45_000)


@pytest.mark.parametrize("name, extra", [("adamw", {}), ("sgd", {"momentum": 0.9, "nesterov": True})])
def test_fused_step_where_torch_has_one(name, extra):
    """optim.fused=auto takes torch's fused step on the CPU (one kernel over every parameter, several times faster
    than the default per-tensor loop); it updates the weights as the unfused step does. (No norm layer here: the
    bias before one has a gradient of rounding noise alone, which Adam scales up to lr-sized steps either way.)"""
    cfg = {"name": name, "lr": 1e-2, "weight_decay": 1e-4, **extra}
    torch.manual_seed(0)
    nets = [nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 2, 1)) for _ in range(2)]
    nets[1].load_state_dict(nets[0].state_dict())
    fused, plain = build_optimizer(nets[0], cfg), build_optimizer(nets[1], {**cfg, "fused": False})
    assert fused.defaults["fused"] is True and not plain.defaults.get("fused")
    x = torch.randn(2, 3, 8, 8)
    for net, optimizer in zip(nets, (fused, plain)):
        for _ in range(3):
            optimizer.zero_grad()
            net(x).square().mean().backward()
            optimizer.step()
    for a, b in zip(nets[0].parameters(), nets[1].parameters()):
        assert torch.allclose(a, b, atol=1e-6)


def test_fused_step_gives_way_to_clipping_under_mixed_precision():
    """Lightning refuses gradient clipping under mixed precision with an optimiser that can unscale gradients
    itself (the fused ones): auto then builds the unfused step, and optim.fused=true says why it cannot."""
    why = "trainer.gradient_clip_val with trainer.precision=bf16-mixed needs an unfused step"
    assert not build_optimizer(_net(), {"name": "adamw", "lr": 1e-3}, why).defaults.get("fused")
    with pytest.raises(ConfigError, match="optim.fused=true: trainer.gradient_clip_val .* set optim.fused=auto or false"):
        build_optimizer(_net(), {"name": "adamw", "lr": 1e-3, "fused": True}, why)


def test_fused_true_with_clipping_under_mixed_precision_is_refused_from_the_trainer_arguments():
    """optim.fused=true with clipping under bf16-mixed was refused only inside fit, after the run directory had been
    announced: check_fused tells it from the config's Trainer arguments alone, before anything is made."""
    from segcli.models.optim import check_fused, fused_clipping

    clipped = {"gradient_clip_val": 1.0, "precision": "bf16-mixed"}
    with pytest.raises(ConfigError, match="optim.fused=true: trainer.gradient_clip_val with trainer.precision="
                                          "bf16-mixed needs an unfused step; set optim.fused=auto or false"):
        check_fused({"name": "adamw", "fused": True}, clipped)
    for fused in ("auto", False):
        check_fused({"fused": fused}, clipped)
    for fine in ({"gradient_clip_val": 1.0, "precision": "32-true"}, {"gradient_clip_val": 0, "precision": "16-mixed"},
                 {"gradient_clip_val": None, "precision": "bf16-mixed"}, {}):
        assert fused_clipping(fine) == ""
        check_fused({"fused": True}, fine)


def test_fused_true_with_clipping_under_bf16_is_refused_before_the_run_directory(tiny_data, tmp_path):
    from helpers_surface import segcli

    proc = segcli("train", f"data.root={tiny_data}", "trainer.max_epochs=1", "trainer.precision=bf16-mixed",
                  "trainer.gradient_clip_val=1.0", "optim.fused=true", "--run-dir", tmp_path / "run")
    assert proc.returncode == 2 and not (tmp_path / "run").exists()
    lines = proc.stderr.strip().splitlines()
    assert lines[-1] == ("segcli: error: optim.fused=true: trainer.gradient_clip_val with "
                         "trainer.precision=bf16-mixed needs an unfused step; set optim.fused=auto or false")
    # a CPU without native bfloat16 (AVX2 only) first gets the note that bf16 is emulated there; nothing else
    assert all(line.startswith("train: note: trainer.precision=bf16-mixed on a CPU without native bfloat16")
               for line in lines[:-1]), lines


@pytest.mark.parametrize("precision", ["bf16-mixed", "32-true"])
def test_clipped_training_runs_at_each_precision(tiny_data, tmp_path, precision):
    """`trainer.gradient_clip_val` with bf16-mixed failed in Lightning's precision plugin once the fused step was
    the default ("does not allow for gradient clipping ... Are you using a 'fused' optimizer?")."""
    from helpers_surface import segcli

    proc = segcli("train", f"data.root={tiny_data}", "trainer.max_epochs=1", f"trainer.precision={precision}",
                  "trainer.gradient_clip_val=0.5", "final_eval=false", "--run-dir", tmp_path / "run")
    assert proc.returncode == 0, proc.stderr[-600:]
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()


@pytest.mark.parametrize("sched", [{"name": "poly", "warmup_steps": 2}, {"name": "poly", "warmup_steps": 10},
                                   {"name": "cosine", "warmup_steps": 10, "min_lr_ratio": 0.1},
                                   {"name": "poly", "warmup_fraction": 0.1},
                                   {"name": "cosine", "warmup_fraction": 0.5}])
def test_a_warmup_reaches_the_peak_and_the_decay_follows_without_a_drop(sched):
    """The decay counted from the start of training, so the lr dropped at the warm-up's end from the peak to the
    decay already due, and a warmup_fraction's ramp stopped short of the peak. Over 100 steps: the lr rises to the
    peak, then falls by at most 5% a step, to the floor at the end."""
    factors = [lr_factor(sched, step, step / 100) for step in range(100)]
    top = factors.index(max(factors))
    assert factors[top] == pytest.approx(1.0)
    assert all(a <= b for a, b in zip(factors[:top], factors[1:top + 1]))  # the ramp rises
    assert all(0 <= a - b <= 0.05 for a, b in zip(factors[top:], factors[top + 1:]))  # the decay falls, no drop
    assert lr_factor(sched, 100, 1.0) == pytest.approx(sched.get("min_lr_ratio", 0.0))


def test_the_short_warmups_of_the_report():
    """poly with 2 warm-up steps of 4 went 0.5, 1.0, 0.54, 0.29; cosine with warmup_fraction=0.5 went 0.001, 0.5,
    0.5, 0.15 (peaking at half the lr)."""
    assert [round(lr_factor({"name": "poly", "warmup_steps": 2}, s, s / 4), 3) for s in range(4)] == [
        0.5, 1.0, 1.0, 0.536]
    assert [round(lr_factor({"name": "cosine", "warmup_fraction": 0.5}, s, s / 4), 3) for s in range(4)] == [
        0.001, 0.5, 1.0, 0.5]


def test_a_warmup_as_long_as_training_is_noted():
    """sched.warmup_steps at or above the run's optimiser steps: the lr never reaches its peak nor decays (it was
    silent); below them, with a wall-clock budget only (infinite steps) or with onecycle, nothing is said."""
    from segcli.models.optim import warmup_note

    note = warmup_note({"name": "poly", "warmup_steps": 100}, 2)
    assert note is not None and "sched.warmup_steps=100" in note and "2 optimiser steps" in note and "2%" in note
    for steps in (100, 101):  # the last step is at the peak (factor 1.0): it was said never to reach it at 100
        note = warmup_note({"name": "poly", "warmup_steps": 100}, steps)
        assert note is not None and "reaches optim.lr at the last step only" in note and "never reaches" not in note
        assert lr_factor({"name": "poly", "warmup_steps": 100}, steps - 1, (steps - 1) / steps) == 1.0
    assert warmup_note({"name": "poly", "warmup_steps": 100}, 102) is None  # step 101 decays
    assert warmup_note({"name": "cosine", "warmup_steps": 100}, float("inf")) is None
    assert warmup_note({"name": "onecycle", "warmup_steps": 100}, 2) is None
    assert warmup_note({"name": "poly"}, 2) is None


def test_a_decaying_schedule_without_any_budget_gets_a_note():
    """trainer.max_epochs=-1 sched=cosine without max_steps or max_time trained at the peak lr for good, silently."""
    from segcli.models.optim import endless_note

    note = endless_note({"name": "cosine"}, float("inf"), time_budget=False)
    assert note.startswith("train: note: sched.name=cosine decays over the run's budget, and this run has none")
    assert endless_note({"name": "poly"}, float("inf"), time_budget=True) is None  # trainer.max_time
    assert endless_note({"name": "onecycle"}, 120, time_budget=False) is None  # epochs or steps
    assert endless_note({"name": "constant"}, float("inf"), time_budget=False) is None
