"""Optimiser and learning-rate schedule from the `optim` and `sched` config groups.

Optimisers: adamw, sgd (momentum, nesterov). With optim.no_decay_norm_bias, the parameters of
normalisation layers and every bias get weight_decay 0 (a second parameter group). optim.fused=auto uses
torch's fused kernels (one kernel over all parameters: AdamW's step 3.5× and SGD's 4.8× faster than torch's
default on a 2-core CPU for U-Net/resnet18) wherever torch has them for the parameters' device.

Schedules, stepped every optimiser step as a factor of the peak lr (torch LambdaLR): poly, cosine,
onecycle (the lr shape of torch's OneCycleLR: cosine rise from peak/div_factor to the peak over
pct_start of training, cosine fall to peak/(div_factor*final_div_factor); momentum is not cycled),
constant; a linear warm-up (sched.warmup_steps optimiser steps, or sched.warmup_fraction of training)
precedes poly/cosine/constant. "Training done" is measured in optimiser steps when the step budget is
finite, else by wall clock against trainer.max_time (see `training_progress`).
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from segcli.checks import OPTIMIZERS, SCHEDULES, choice
from segcli.errors import ConfigError, first_line

NORM_LAYERS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm, nn.LocalResponseNorm,
               *((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ()))


def param_groups(module: nn.Module, weight_decay: float, no_decay_norm_bias: bool = True) -> list[dict]:
    """Trainable parameters as optimiser groups: [decayed], or [decayed, no-decay (norm layers and biases)]."""
    if not no_decay_norm_bias:
        return [{"params": [p for p in module.parameters() if p.requires_grad], "weight_decay": weight_decay}]
    decay, no_decay, seen = [], [], set()
    for owner in module.modules():
        for name, param in owner.named_parameters(recurse=False):
            if not param.requires_grad or id(param) in seen:
                continue
            seen.add(id(param))
            (no_decay if isinstance(owner, NORM_LAYERS) or name.endswith("bias") else decay).append(param)
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def fused_clipping(trainer: dict) -> str:
    """Why a fused optimiser step cannot be used with these lightning.Trainer arguments ('' when it can): Lightning's
    mixed-precision plugin refuses gradient clipping with an optimiser that can unscale gradients itself, as the
    fused ones can. `trainer`: the arguments with precision made concrete (trainer_args.for_this_machine)."""
    clip, precision = trainer.get("gradient_clip_val"), str(trainer.get("precision", "32-true"))
    if not clip or float(clip) == 0 or "mixed" not in precision:
        return ""
    return f"trainer.gradient_clip_val with trainer.precision={precision} needs an unfused step"


def check_fused(optim: dict, trainer: dict) -> None:
    """optim.fused=true with Trainer arguments that rule the fused step out: a ConfigError before the run directory
    is made (build_optimizer would refuse it only inside fit)."""
    why = fused_clipping(trainer)
    if why and str(optim.get("fused", "auto")).lower() == "true":
        raise ConfigError(f"optim.fused=true: {why}; set optim.fused=auto or false")


def build_optimizer(module: nn.Module, optim: dict, fused_clipping: str = "") -> torch.optim.Optimizer:
    """`optim` group (its values checked by segcli.checks) → torch optimiser over module's trainable parameters.
    `fused_clipping`: why a fused step must not be used here ('' when it may: see segcli.models.module), which
    optim.fused=auto respects and true refuses."""
    name = str(optim.get("name", "adamw")).lower()
    choice("optim.name", name, OPTIMIZERS)
    fused = str(optim.get("fused", "auto")).lower()  # auto, true or false
    if fused == "true" and fused_clipping:
        raise ConfigError(f"optim.fused=true: {fused_clipping}; set optim.fused=auto or false")
    lr, decay = float(optim["lr"]), float(optim.get("weight_decay") or 0.0)  # null: none, as check_values reads it
    groups = param_groups(module, decay, bool(optim.get("no_decay_norm_bias", True)))
    if name == "adamw":
        betas = tuple(optim.get("betas") or (0.9, 0.999))  # null: AdamW's default
        kwargs = dict(lr=lr, weight_decay=decay, betas=betas)
        make = torch.optim.AdamW
    else:
        momentum, nesterov = float(optim.get("momentum", 0.9)), bool(optim.get("nesterov", False))
        if nesterov and momentum <= 0:
            raise ConfigError("optim.nesterov=true needs optim.momentum > 0; set optim.nesterov=false for plain SGD")
        kwargs = dict(lr=lr, weight_decay=decay, momentum=momentum, nesterov=nesterov)
        make = torch.optim.SGD
    if fused == "true" or (fused == "auto" and not fused_clipping):
        try:
            return make(groups, fused=True, **kwargs)
        except (RuntimeError, ValueError) as err:  # parameters on a device (or of a dtype) without fused kernels
            if fused == "true":
                raise ConfigError(f"optim.fused=true: {first_line(err)}; set optim.fused=auto or false") from None
    return make(groups, **kwargs)


def lr_factor(sched: dict, step: int, progress: float) -> float:
    """Factor of the peak lr at optimiser step `step`, `progress` (0..1) of training done. After a warm-up the decay
    runs from the peak over the rest of training: it counted from the start of training, so the lr fell at the
    warm-up's end from the peak to the decay already due (poly with 2 warm-up steps of 4: 1.0 → 0.54), and a
    warmup_fraction's ramp stopped short of the peak (cosine, warmup_fraction=0.5: 0.5)."""
    name = str(sched.get("name", "poly")).lower()
    choice("sched.name", name, SCHEDULES)
    t = min(max(progress, 0.0), 1.0)
    if name == "onecycle":
        pct = float(sched.get("pct_start", 0.3))
        start = 1.0 / float(sched.get("div_factor", 25.0))
        end = start / float(sched.get("final_div_factor", 1e4))
        if t < pct:
            return start + (1.0 - start) * 0.5 * (1.0 - math.cos(math.pi * t / pct))
        return end + (1.0 - end) * 0.5 * (1.0 + math.cos(math.pi * (t - pct) / max(1.0 - pct, 1e-12)))
    warmup_steps = int(sched.get("warmup_steps", 0) or 0)
    warmup_fraction = float(sched.get("warmup_fraction", 0.0) or 0.0)
    warmed = 0.0  # the fraction of training the warm-up took
    if warmup_steps > 0:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        warmed = t * warmup_steps / step  # training done per step so far (steps, or wall clock), times the warm-up
    elif warmup_fraction > 0:
        if t < warmup_fraction:
            return max(t / warmup_fraction, 1e-3)
        warmed = warmup_fraction
    t = min(max((t - warmed) / (1.0 - warmed), 0.0), 1.0) if warmed < 1.0 else 1.0
    floor = float(sched.get("min_lr_ratio") or 0.0)  # null: decay to 0, as check_values reads it
    if name == "poly":
        decay = (1.0 - t) ** float(sched.get("power", 0.9))
    elif name == "cosine":
        decay = 0.5 * (1.0 + math.cos(math.pi * t))
    else:
        decay = 1.0
    return floor + (1.0 - floor) * decay


def training_progress(trainer, step: int) -> float:
    """Fraction of training done, by whichever budget runs out first: optimiser steps (when finite) or wall
    clock (the Timer's training time over trainer.max_time — restored on --resume, so a resumed run continues
    its schedule). Before the Timer starts (the first step's lr, computed when the scheduler is made) no training
    time has passed: the time since the module was made counted the trainer's and the data's set-up, which the
    Timer leaves out, so the first step of a 40-s budget trained at 92% of the peak lr, or a warm-up's at 27%.
    0.0 when neither budget is known."""
    if trainer is None:
        return 0.0
    done = 0.0
    total = trainer.estimated_stepping_batches
    if math.isfinite(total) and total > 0:
        done = step / total
    from lightning.pytorch.callbacks import Timer

    timer = next((c for c in trainer.callbacks if isinstance(c, Timer)), None)
    budget = timer._duration if timer is not None else None
    if budget:
        done = max(done, rank_zeros(trainer, timer.time_elapsed("train")) / budget)
    return min(done, 1.0)


def rank_zeros(trainer, value: float) -> float:
    """The first process's `value` on every process of a distributed run (all call this at the same step: the lr
    scheduler's). Each process's clock differs: an lr from its own let the replicas drift apart under
    trainer.max_time (DDP averages the gradients; each process stepped them with its own lr), so validation scored
    each process's images with another model than best.ckpt's."""
    import torch
    import torch.distributed as dist

    if getattr(trainer, "world_size", 1) <= 1 or not (dist.is_available() and dist.is_initialized()):
        return value
    tensor = torch.tensor([float(value)], dtype=torch.float64, device=trainer.strategy.root_device)
    dist.broadcast(tensor, src=0)
    return float(tensor.item())


def endless_note(sched: dict, total_steps: float, time_budget: bool) -> str | None:
    """A note when a decaying schedule has no end to decay towards: no finite step budget (trainer.max_epochs=-1
    without max_steps) and no trainer.max_time, so training progress stays 0 and the lr at its start value for good.
    None otherwise."""
    name = str(sched.get("name", "poly")).lower()
    if name == "constant" or math.isfinite(total_steps) or time_budget:
        return None
    return (f"train: note: sched.name={name} decays over the run's budget, and this run has none (no "
            "trainer.max_epochs, max_steps or max_time): the lr stays at its start value; set trainer.max_time (or "
            "max_epochs), or use sched=constant")


def zero_lr_note(optim: dict) -> str | None:
    """A note when optim.lr is 0 (allowed, as torch allows it): no step changes a weight, so the run trains nothing
    and its checkpoints hold the initial weights. None otherwise."""
    if float(optim.get("lr", 1.0)) != 0.0:
        return None
    return ("train: note: optim.lr=0: no optimiser step changes a weight, so this run trains nothing (its checkpoints "
            "hold the initial weights); give a positive optim.lr, e.g. 1e-3")


def warmup_note(sched: dict, total_steps: float) -> str | None:
    """A note when sched.warmup_steps leaves the run's optimiser steps (`total_steps`, finite when the run is bounded
    by epochs or steps) nothing to decay over: at or above the steps less one, poly/cosine never decay, and above the
    steps the lr never reaches optim.lr. None otherwise."""
    warmup = int(sched.get("warmup_steps", 0) or 0)
    if warmup <= 0 or not math.isfinite(total_steps) or total_steps <= 0 or warmup < total_steps - 1 \
            or str(sched.get("name", "poly")).lower() == "onecycle":
        return None
    steps = int(total_steps)
    peak = (f"never reaches optim.lr (it ends at {steps / warmup:.0%} of it)" if warmup > steps
            else "reaches optim.lr at the last step only")
    return (f"train: note: sched.warmup_steps={warmup} leaves none of the {steps} optimiser steps this run takes to "
            f"decay over: the lr {peak}; lower sched.warmup_steps or use sched.warmup_fraction")


def build_scheduler(optimizer: torch.optim.Optimizer, sched: dict,
                    progress: Callable[[int], float]) -> torch.optim.lr_scheduler.LambdaLR:
    """LambdaLR stepping `lr_factor`; progress(step) → fraction of training done."""
    lr_factor(sched, 0, 0.0)  # an unknown sched.name fails here, with the choices
    read = {}  # LambdaLR asks once per parameter group: progress (a clock; a broadcast under DDP) is read once a step

    def factor(step: int) -> float:  # a plain function: LambdaLR's state_dict then stores no reference to it
        if step not in read:
            read.clear()
            read[step] = progress(step)
        return lr_factor(sched, step, read[step])

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
