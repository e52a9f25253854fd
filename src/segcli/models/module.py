"""The LightningModule: any smp model, a weighted loss, AdamW + poly/cosine, per-class val IoU.

Everything needed to use the trained network later is saved in the checkpoint's
hyper-parameters under `meta` (see segcli.runs.model_meta); nothing downstream reads the training config.
"""

from __future__ import annotations

import math
import time

import lightning as L
import torch
import torch.nn.functional as F

from segcli.inference.predictor import forward_scaled, input_scale, normalize
from segcli.metrics import ConfusionMatrix, compute_metrics
from segcli.models.factory import WeightedLoss, build_model, resolve_class_weights


class SegModule(L.LightningModule):
    def __init__(self, meta: dict, loss: dict, optim: dict, sched: dict, encoder_weights: str | None = None,
                 channels_last: bool = True):
        super().__init__()
        self.save_hyperparameters()
        self.meta = meta
        self.model = build_model(**meta["model"], encoder_weights=encoder_weights)
        weights = resolve_class_weights(loss.get("class_weights"), len(meta["classes"]), meta["dataset"]["root"])
        self.loss_fn = WeightedLoss(dict(loss["terms"]), int(meta["ignore_index"]), class_weights=weights)
        self.channels_last = channels_last
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.val_cm = ConfusionMatrix(len(meta["classes"]), int(meta["ignore_index"]))
        self.last_val_metrics: dict | None = None
        self._fit_start = time.monotonic()

    # ------------------------------------------------------------------ forward
    def _net(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.model(x)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) uint8 → (N, K, H, W) float32 logits, any H, W (run at meta's input_scale, resized back)."""
        x = normalize(images, self.meta["mean"], self.meta["std"])
        return forward_scaled(self._net, x, int(self.meta["size_multiple"]), input_scale(self.meta))

    # ------------------------------------------------------------------ training
    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        x = normalize(batch["image"], self.meta["mean"], self.meta["std"])
        target = batch["mask"]
        multiple = int(self.meta["size_multiple"])
        pad_h, pad_w = (-x.shape[-2]) % multiple, (-x.shape[-1]) % multiple
        if pad_h or pad_w:  # whole-image training on sizes that are not multiples of the stride
            x = F.pad(x, (0, pad_w, 0, pad_h))
            target = F.pad(target, (0, pad_w, 0, pad_h), value=int(self.meta["ignore_index"]))
        loss = self.loss_fn(self._net(x), target)
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=x.shape[0])
        return loss

    # ------------------------------------------------------------------ validation
    def on_validation_epoch_start(self) -> None:
        self.val_cm.reset()

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        logits = self(batch["image"])
        self.val_cm.update(logits.argmax(1), batch["mask"])

    def on_validation_epoch_end(self) -> None:
        matrix = self.trainer.strategy.reduce(self.val_cm.matrix.to(self.device), reduce_op="sum")
        metrics = compute_metrics(matrix, self.meta["classes"])
        self.last_val_metrics = metrics
        for key in ("mIoU", "mAcc", "aAcc"):
            self.log(f"val/{key}", float(metrics[key] or 0.0), prog_bar=key == "mIoU", sync_dist=False)

    # ------------------------------------------------------------------ optimisation
    def configure_optimizers(self):
        optim = self.hparams.optim
        if optim["name"] != "adamw":
            from segcli.errors import ConfigError

            raise ConfigError(f"unknown optim.name '{optim['name']}'; choose from adamw")
        optimizer = torch.optim.AdamW(self.parameters(), lr=float(optim["lr"]), weight_decay=float(optim["weight_decay"]),
                                      betas=tuple(optim.get("betas", (0.9, 0.999))))
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, self._lr_factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_fit_start(self) -> None:
        self._fit_start = time.monotonic()

    def _progress(self, step: int) -> float:
        """Fraction of training done: by steps when the step budget is finite, else by wall-clock (max_time)."""
        total = self.trainer.estimated_stepping_batches
        if math.isfinite(total) and total > 0:
            return min(step / total, 1.0)
        from lightning.pytorch.callbacks import Timer

        timer = next((c for c in self.trainer.callbacks if isinstance(c, Timer)), None)
        budget = timer._duration if timer is not None else None
        return min((time.monotonic() - self._fit_start) / budget, 1.0) if budget else 0.0

    def _lr_factor(self, step: int) -> float:
        sched = self.hparams.sched
        warmup = int(sched.get("warmup_steps", 0))
        if step < warmup:
            return (step + 1) / warmup
        if self._trainer is None:
            return 1.0
        t = self._progress(step)
        floor = float(sched.get("min_lr_ratio", 0.0))
        if sched["name"] == "poly":
            decay = (1.0 - t) ** float(sched.get("power", 0.9))
        elif sched["name"] == "cosine":
            decay = 0.5 * (1.0 + math.cos(math.pi * t))
        else:
            from segcli.errors import ConfigError

            raise ConfigError(f"unknown sched.name '{sched['name']}'; choose from poly, cosine")
        return floor + (1.0 - floor) * decay
