"""The LightningModule: any smp model, a weighted loss (models/losses.py), the optimiser and lr schedule
of models/optim.py, per-class val IoU summed over processes.

Everything needed to use the trained network later is saved in the checkpoint's
hyper-parameters under `meta` (see segcli.runs.model_meta); nothing downstream reads the training config.
"""

from __future__ import annotations

import lightning as L
import torch
import torch.nn.functional as F

from segcli.inference.predictor import forward_scaled, input_scale, min_size, normalize, padding
from segcli.metrics import ConfusionMatrix, compute_metrics
from segcli.models.factory import build_model
from segcli.models.losses import build_loss
from segcli.models.optim import (build_optimizer, build_scheduler, endless_note, fused_clipping, training_progress,
                                 warmup_note, zero_lr_note)


POOLING_ARCHS = ("deeplabv3", "deeplabv3plus", "pan", "upernet")  # pool to 1×1 before a BatchNorm


def crashes_channels_last(model: torch.nn.Module) -> str | None:
    """The first layer torch's CPU kernels cannot train in channels-last memory, or None: the backward pass of a
    1×1 strided convolution over fewer than 16 channels ends the process with SIGSEGV (torch 2.15 CPU, fp32 and
    bf16; e.g. the first block of smp's mobileone_s0 encoder, a 1×1 stride-2 branch on the RGB input)."""
    for name, module in model.named_modules():
        if (isinstance(module, torch.nn.Conv2d) and module.kernel_size == (1, 1) and max(module.stride) > 1
                and module.in_channels < 16):
            return name
    return None


class SegModule(L.LightningModule):
    """meta: segcli.runs.model_meta (its mean/std are refitted here when model.in_channels is not 3);
    loss/optim/sched: the config groups; compile: torch.compile the network (cfg.model.compile)."""

    def __init__(self, meta: dict, loss: dict, optim: dict, sched: dict, encoder_weights: str | None = None,
                 channels_last: bool = True, compile: bool = False):
        super().__init__()
        if len(meta["mean"]) != int(meta["model"].get("in_channels", 3)):
            from segcli.data.card import load_card
            from segcli.data.channels import fit_normalization

            meta = fit_normalization(meta, load_card(meta["dataset"]["root"]))
        self.save_hyperparameters()
        self.meta = meta
        # mean/std as buffers (moved with the module), not saved: made from the lists each step, they were copied to
        # the GPU twice per step, each copy waiting for the device
        self.register_buffer("norm_mean", torch.tensor(meta["mean"], dtype=torch.float32), persistent=False)
        self.register_buffer("norm_std", torch.tensor(meta["std"], dtype=torch.float32), persistent=False)
        self.model = build_model(**meta["model"], encoder_weights=encoder_weights)
        self.loss_fn = build_loss(loss, len(meta["classes"]), int(meta["ignore_index"]), meta["dataset"]["root"])
        layer = crashes_channels_last(self.model) if channels_last else None
        if layer is not None:
            from segcli.console import first_process, info

            if first_process():
                info(f"train: channels_last off: training {layer} (a 1×1 strided convolution over fewer than 16 "
                     "channels) in channels-last memory crashes torch's CPU kernels")
            channels_last = False
        self.channels_last = channels_last
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        # A compiled forward function, not a registered module: checkpoint keys stay those of self.model.
        self._forward = torch.compile(self.model.forward) if compile else self.model.forward
        self.val_cm = ConfusionMatrix(len(meta["classes"]), int(meta["ignore_index"]))
        self.last_val_metrics: dict | None = None
        self._pending_loss: tuple | None = None  # this step's finite-loss check, when it waits for the next step
        self._nonfinite = 0  # steps in a row whose loss was inf/NaN
        self._last_nonfinite: tuple = (float("nan"), 0, 0)  # (loss, step, epoch) of the last such step

    # ------------------------------------------------------------------ forward
    def _net(self, x: torch.Tensor) -> torch.Tensor:
        dtype = next(self.model.parameters()).dtype  # float32; bf16/fp16/fp64 under trainer.precision=*-true
        if x.dtype != dtype:
            x = x.to(dtype)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self._forward(x)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) uint8 (C = in_channels) → (N, K, H, W) float32 logits, any H, W (run at meta's input_scale,
        resized back)."""
        x = normalize(images, self.norm_mean, self.norm_std)
        return forward_scaled(self._net, x, int(self.meta["size_multiple"]), input_scale(self.meta),
                              min_size(self.meta))

    # ------------------------------------------------------------------ training
    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        x = normalize(batch["image"], self.norm_mean, self.norm_std)
        target = batch["mask"]
        pad_h, pad_w = padding(*x.shape[-2:], int(self.meta["size_multiple"]), min_size(self.meta))
        if pad_h or pad_w:  # whole-image training on sizes that are not multiples of the stride (or too small)
            x = F.pad(x, (0, pad_w, 0, pad_h))
            target = F.pad(target, (0, pad_w, 0, pad_h), value=int(self.meta["ignore_index"]))
        known = {"labelled": batch["labelled"]} if "labelled" in batch else {}  # see PadCollate
        self.check_pending_loss()
        loss = self.loss_fn(self._train_logits(x), target, **known)
        finite = torch.isfinite(loss.detach())
        if self._defers_check(loss):
            done = None
            if finite.is_cuda:  # copied to host memory behind the step's forward pass; `done` marks its arrival
                finite = finite.to("cpu", non_blocking=True)
                done = torch.cuda.Event()
                done.record()
            self._pending_loss = (finite, done, loss.detach(), self.global_step, self.current_epoch)
        else:
            self._check_finite(bool(finite), loss.detach(), self.global_step, self.current_epoch)
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=x.shape[0])
        return loss

    NONFINITE_STEPS = 3  # 16-mixed's grad scaler skips a step or two of inf/NaN on its own; more means divergence

    def _defers_check(self, loss: torch.Tensor) -> bool:
        """Whether the finite-loss check of this step waits for the next one: on a GPU, reading the loss at once
        would hold the host until the device has finished the forward pass, and the device would then idle while
        the host queues the backward pass."""
        return loss.is_cuda

    def check_pending_loss(self) -> None:
        """The deferred finite-loss check of the last step (if any): at the next step's start, before validation,
        before last.ckpt is written and at the end of training. Its result has long arrived by then."""
        pending, self._pending_loss = self._pending_loss, None
        if pending is not None:
            finite, done, loss, step, epoch = pending
            if done is not None:
                done.synchronize()
            self._check_finite(bool(finite), loss, step, epoch)
        if self._nonfinite and not self._weights_finite():  # the last step's inf/NaN reached the weights
            loss, step, epoch = self._last_nonfinite
            raise self._diverged(f"the loss was {loss} at step {step} (epoch {epoch + 1}) and the weights now hold "
                                 "NaN or infinite values")

    def check_diverged(self) -> None:
        """Before validation, before a checkpoint is written and at the end of training: check_pending_loss, and
        the weights themselves, which a step of finite loss can also send to inf/NaN (a huge lr). Unchecked, a run
        whose epoch ended so validated a NaN model (a val mIoU, kept as best.ckpt) and failed at the final
        evaluation (exit 3, 'use another model') as if its input were wrong."""
        self.check_pending_loss()
        if not self._weights_finite():
            step = self.global_step
            raise self._diverged(f"the weights hold NaN or infinite values after step {step} (epoch "
                                 f"{self.current_epoch + 1})")

    def _weights_finite(self) -> bool:
        """Whether every weight and buffer is finite: one sum per tensor (inf or NaN anywhere makes it so; a sum of
        finite weights overflows only for values near 1e32), 9 ms for U-Net/resnet18 on a 2-core CPU, where an
        isfinite().all() per tensor took 100 ms, run twice an epoch."""
        sums = [t.sum(dtype=torch.promote_types(t.dtype, torch.float32))
                for t in (*self.parameters(), *self.buffers()) if t.is_floating_point()]
        return not sums or bool(torch.isfinite(torch.stack(sums)).all())

    def _check_finite(self, finite: bool, loss: torch.Tensor, step: int, epoch: int) -> None:
        """Stop a run whose loss has been inf/NaN for NONFINITE_STEPS steps in a row: its weights are lost (every
        later step is NaN too), and training on would only overwrite last.ckpt with them."""
        if finite:
            self._nonfinite = 0
            return
        self._nonfinite += 1
        self._last_nonfinite = (float(loss), step, epoch)
        if self._nonfinite >= self.NONFINITE_STEPS:
            raise self._diverged(f"the loss was {float(loss)} for {self._nonfinite} steps in a row (step {step}, "
                                 f"epoch {epoch + 1})")

    def _diverged(self, what: str):
        """The divergence error: what went inf/NaN (epochs counted from 1, as the progress lines count them), and
        the settings to change, less those already in force (a clip already set, a run already in float32)."""
        from segcli.errors import CheckFailed

        fixes = [f"lower optim.lr (now {self.hparams.optim.get('lr')})"]
        trainer = self._trainer
        if trainer is None or not trainer.gradient_clip_val:
            fixes.append("set trainer.gradient_clip_val (e.g. 1.0)")
        if trainer is None or str(getattr(trainer, "precision", "")) not in ("32-true", "32", "64-true", "64"):
            fixes.append("train at trainer.precision=32-true")
        listed = fixes[0] if len(fixes) == 1 else f"{', '.join(fixes[:-1])}, or {fixes[-1]}"
        return CheckFailed(f"training diverged: {what}; {listed}; the checkpoints written before are kept")

    def on_validation_start(self) -> None:
        self.check_diverged()

    def on_train_end(self) -> None:
        self.check_diverged()

    def _train_logits(self, x: torch.Tensor) -> torch.Tensor:
        try:
            return self._net(x)
        except ValueError as exc:
            # DeepLabV3(+), PAN and UPerNet pool to 1×1 before a BatchNorm, and any encoder shrinks a small enough
            # input to 1×1: a batch of one image gives BatchNorm one value per channel, which it cannot normalise in
            # training.
            if "Expected more than 1 value per channel" not in str(exc):
                raise
            from segcli.errors import ConfigError

            arch, (h, w) = self.meta["model"]["arch"], x.shape[-2:]
            if arch in POOLING_ARCHS:
                why, also = "a BatchNorm layer after its image pooling needs 2 or more images per step", ""
            else:  # (a Unet on 8×8 images, padded to 32×32: resnet18's last stage is 1×1)
                why = f"its encoder shrinks a {h}x{w} input to 1x1 before a BatchNorm, which needs 2 or more values"
                also = ", or train on larger crops (augment.crop_size)"
            raise ConfigError(
                f"model={arch} cannot train on a batch of {x.shape[0]} image: {why}; set data.batch_size to 2 or more "
                f"and give each process 2 or more training images{also}") from exc

    def on_train_epoch_start(self) -> None:
        # The last epoch is validated whatever check_val_every_n_epoch says: otherwise the weights training ends
        # with are never scored (trainer.max_epochs=1 with experiment=camvid's every-other-epoch validation left
        # no best.ckpt at all).
        trainer = self.trainer
        epochs = trainer.max_epochs
        last = epochs is not None and epochs >= 0 and trainer.current_epoch + 1 >= epochs
        if last and trainer.check_val_every_n_epoch not in (None, 1):
            trainer.check_val_every_n_epoch = 1

    def on_train_batch_end(self, outputs, batch: dict, batch_idx: int) -> None:
        # Runs after the callbacks' hooks: when the Timer (trainer.max_time) has just asked to stop between two
        # check_val_every_n_epoch epochs, validate anyway, so best.ckpt can hold the weights training ended with.
        # trainer.max_steps ends training as silently, often mid-epoch, where Lightning validates only on a stop
        # request: one is made (+trainer.max_steps=3 left no best.ckpt and no final evaluation).
        trainer = self.trainer
        max_steps = trainer.max_steps
        if max_steps is not None and max_steps >= 0 and trainer.global_step >= max_steps:
            trainer.should_stop = True
        if trainer.should_stop and trainer.check_val_every_n_epoch not in (None, 1):
            trainer.check_val_every_n_epoch = 1

    # ------------------------------------------------------------------ validation
    def on_validation_epoch_start(self) -> None:
        self.val_cm.reset()
        self._val_nonfinite = torch.zeros((), dtype=torch.long, device=self.device)  # logits that were inf/NaN

    def _scored(self, logits: torch.Tensor, target: torch.Tensor) -> None:
        """Count `logits` into the val confusion matrix; inf/NaN ones are counted apart (on the device: no wait for
        it each batch). NaN logits argmax to class 0, so a model of finite weights whose logits overflow was scored
        as predicting class 0 everywhere, and could be kept as best.ckpt, which eval then refused."""
        self._val_nonfinite += (~torch.isfinite(logits)).sum()
        self.val_cm.update(logits.argmax(1), target)

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        sizes = batch.get("sizes")
        if sizes is None:
            self._scored(self(batch["image"]), batch["mask"])
            return
        # images of several sizes, padded to the largest with black: each is scored at its own size, as eval and
        # predict do (padded, the network saw black borders of varying width and the val mIoU that picks
        # best.ckpt differed from eval's by a point)
        for i, (height, width) in enumerate(sizes):
            self._scored(self(batch["image"][i:i + 1, :, :height, :width]), batch["mask"][i:i + 1, :height, :width])

    def on_validation_epoch_end(self) -> None:
        matrix = self.trainer.strategy.reduce(self.val_cm.matrix.to(self.device), reduce_op="sum")
        nonfinite = int(self.trainer.strategy.reduce(self._val_nonfinite, reduce_op="sum"))  # every process stops
        if nonfinite and not self.trainer.sanity_checking:
            raise self._diverged(f"{nonfinite:,} of the val logits after step {self.global_step} (epoch "
                                 f"{self.current_epoch + 1}) are NaN or infinite, though the weights are finite "
                                 "(a float overflow)")
        metrics = compute_metrics(matrix, self.meta["classes"])
        self.last_val_metrics = metrics
        for key in ("mIoU", "mAcc", "aAcc"):
            self.log(f"val/{key}", float(metrics[key] or 0.0), prog_bar=key == "mIoU", sync_dist=False)

    # ------------------------------------------------------------------ optimisation
    def configure_optimizers(self):
        optimizer = build_optimizer(self, self.hparams.optim, self._fused_clipping())
        total = self._trainer.estimated_stepping_batches if self._trainer else 0
        notes = [zero_lr_note(self.hparams.optim), warmup_note(self.hparams.sched, total),
                 endless_note(self.hparams.sched, total, self._time_budget())]
        if any(notes) and (self._trainer is None or self._trainer.is_global_zero):
            from segcli.console import info

            for note in filter(None, notes):
                info(note)
        scheduler = build_scheduler(optimizer, self.hparams.sched,
                                    lambda step: training_progress(self._trainer, step))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def _time_budget(self) -> bool:
        """Whether the run has a wall-clock budget (trainer.max_time: Lightning's Timer callback)."""
        from lightning.pytorch.callbacks import Timer

        return self._trainer is not None and any(isinstance(c, Timer) and c._duration for c in self._trainer.callbacks)

    def _fused_clipping(self) -> str:
        """Why a fused optimiser step cannot be used in this run ('' when it can): Lightning's mixed-precision plugin
        refuses gradient clipping with an optimiser that can unscale gradients itself, as the fused ones can."""
        trainer = self._trainer
        if trainer is None:
            return ""
        return fused_clipping({"gradient_clip_val": trainer.gradient_clip_val, "precision": str(trainer.precision)})

    def on_train_start(self) -> None:
        # A resumed run's schedulers come back with the lr they computed at the checkpoint, under the budget of that
        # time: one lengthened on --resume (trainer.max_epochs, trainer.max_time) trained its first step at the old
        # schedule's end (poly: 0) before LambdaLR's next step caught up. Recomputed for the step training resumes at
        # (for an unchanged step budget, the very value restored).
        if self.trainer.global_step == 0:
            return
        for config in self.trainer.lr_scheduler_configs:
            scheduler = config.scheduler
            if isinstance(scheduler, torch.optim.lr_scheduler.LambdaLR):
                for group, base, factor in zip(scheduler.optimizer.param_groups, scheduler.base_lrs,
                                               scheduler.lr_lambdas):
                    group["lr"] = base * factor(scheduler.last_epoch)
                scheduler._last_lr = [group["lr"] for group in scheduler.optimizer.param_groups]

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # A weights-only checkpoint (best.ckpt) has no "callbacks" entry, and Lightning skips the callbacks' hooks
        # for it: with ema.decay set, the average it was chosen by goes in here (segcli.training.ema).
        if "callbacks" not in checkpoint and self._trainer is not None:
            from segcli.training.ema import weights_only_state

            average = weights_only_state(self._trainer)
            if average is not None:
                checkpoint["state_dict"] = average
