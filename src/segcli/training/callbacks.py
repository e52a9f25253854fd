"""Callbacks of `segcli train`: learning rate and throughput on the progress bar and in metrics.csv,
RNG state in every checkpoint (so a resumed run draws the same random numbers), early stopping, Ctrl-C, a dataset
prepared again under the run."""

from __future__ import annotations

import contextlib
import random
import signal
import threading
import time
from pathlib import Path

import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping, RichProgressBar, Timer

from segcli.training.checkpoints import MONITOR


class SpeedAndLR(Callback):
    """Logs per optimiser step `train/lr` (first parameter group: the lr the batch's optimiser step uses, read before
    the scheduler moves it on) and `train/images_per_s` (images of the batch over the wall time since the previous
    batch ended, data loading included; after a validation within the epoch, since the batch started); per epoch
    `train/epoch_images_per_s` (all training images of the epoch over the sum of those times: validation excluded).
    Under DDP both count every process's images: this process's figure times the process count (DDP steps in
    lockstep, one batch per process). No collective call: one made from a callback can deadlock when the rank-0
    progress bar reduces metrics at another point than the other ranks."""

    def __init__(self):
        self._last = None  # time the previous batch ended (or the epoch started); None after a validation
        self._epoch_time = 0.0
        self._epoch_images = 0
        self._step_time, self._step_images = 0.0, 0  # of the micro-batches of an optimiser step so far
        self._lr = None  # the lr this batch's optimiser step uses (read at the batch's start)
        self._step = None  # trainer.global_step at the batch's start: it moves on when the batch ends a step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        # at the batch's end the scheduler has already stepped: the lr read then is the next step's (the row of
        # step 0 showed the second step's lr, a warm-up's first value and the peak never appeared)
        self._lr = float(trainer.optimizers[0].param_groups[0]["lr"]) if trainer.optimizers else None
        self._step = trainer.global_step
        if self._last is None:  # the first batch after a validation within the epoch (val_check_interval < 1): it
            self._last = time.perf_counter()  # went untimed and uncounted, and its row repeated the step before's

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._last = time.perf_counter()
        self._epoch_time, self._epoch_images = 0.0, 0
        self._step_time, self._step_images = 0.0, 0

    def on_validation_start(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self._last = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        now = time.perf_counter()
        images = int(batch["image"].shape[0])
        elapsed = max(now - self._last, 1e-9)  # _last: set at the latest by this batch's start
        self._last = now
        self._epoch_time += elapsed
        self._epoch_images += images
        self._step_time += elapsed
        self._step_images += images
        if trainer.global_step == self._step:  # accumulating gradients: Lightning logs the step at its last batch
            return
        rate = self._step_images * trainer.world_size / self._step_time  # all the step's micro-batches
        self._step_time, self._step_images = 0.0, 0
        pl_module.log("train/images_per_s", _host(rate), on_step=True, on_epoch=False, prog_bar=True)
        if self._lr is not None:
            pl_module.log("train/lr", _host(self._lr), on_step=True, on_epoch=False, prog_bar=True)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._last = None
        if self._epoch_images and self._epoch_time > 0:
            pl_module.log("train/epoch_images_per_s", _host(self._epoch_images * trainer.world_size / self._epoch_time),
                          on_step=False, on_epoch=True)


class ProgressBar(RichProgressBar):
    """Lightning's rich progress bar, with the learning rate in scientific notation (its '.3f' showed 1e-4 as 0.000
    and most of a decaying schedule as 0.000) and images/s to a tenth, as the plain epoch lines show them."""

    FORMATS = {"train/lr": ".1e", "train/images_per_s": ".1f"}

    def get_metrics(self, trainer, pl_module) -> dict:
        items = super().get_metrics(trainer, pl_module)
        for key, form in self.FORMATS.items():
            if isinstance(items.get(key), (int, float)):
                items[key] = format(items[key], form)
        return items


class EpochLines(Callback):
    """The progress bar's place where stderr is no terminal (a CI log, `2> train.err`): one plain line per training
    epoch, "train: epoch 3/30 (0:01:12): loss 0.5231, lr 1.8e-03, 24.9 images/s, val mIoU 41.20 (best 43.05)". The
    rich bar drew there a whole frame per epoch, wrapped over about 8 lines. val mIoU is shown for the epochs that
    validated; the first process alone writes."""

    def __init__(self):
        self._start = time.monotonic()
        self._validated = False
        self._best = None  # the highest val mIoU seen (best.ckpt's score is set after this callback at an epoch end)

    def on_fit_start(self, trainer, pl_module) -> None:
        self._start = time.monotonic()

    def on_validation_end(self, trainer, pl_module) -> None:
        value = trainer.callback_metrics.get(MONITOR)
        if trainer.sanity_checking or value is None:
            return
        self._validated = True
        self._best = max(float(value), self._best if self._best is not None else float(value))

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        from segcli.console import info

        validated, self._validated = self._validated, False
        metrics = trainer.callback_metrics  # read by every process: a metric logged with sync_dist reduces here
        if not trainer.is_global_zero:
            return
        timer = next((c for c in trainer.callbacks if isinstance(c, Timer)), None)
        # the Timer's training time, which trainer.max_time counts, over all sessions of a resumed run (this
        # session's alone disagreed with Lightning's 'Time limit reached. Elapsed time is …' line)
        seconds = int(timer.time_elapsed("train") if timer is not None else time.monotonic() - self._start)
        epochs = f"/{trainer.max_epochs}" if trainer.max_epochs is not None and trainer.max_epochs > 0 else ""
        parts = [f"{name} {format(float(metrics[key]), form)}" for name, key, form in (
            ("loss", "train/loss_epoch", ".4f"), ("lr", "train/lr", ".1e")) if metrics.get(key) is not None]
        if metrics.get("train/epoch_images_per_s") is not None:
            parts.append(f"{float(metrics['train/epoch_images_per_s']):.1f} images/s")
        if validated:
            saved = [float(c.best_model_score) for c in trainer.checkpoint_callbacks
                     if getattr(c, "best_model_score", None) is not None]  # a resumed run's earlier best
            best = max([self._best, *saved])
            parts.append(f"val mIoU {100 * float(metrics[MONITOR]):.2f} (best {100 * best:.2f})")
        info(f"train: epoch {trainer.current_epoch + 1}{epochs} ({seconds // 3600}:{seconds // 60 % 60:02d}:"
             f"{seconds % 60:02d}): {', '.join(parts) or 'done'}")


def _host(value: float) -> torch.Tensor:
    """A host tensor for self.log: a Python number is copied to the module's device, and on CUDA that blocking copy
    waits for every queued kernel (twice per step here: the device idled while the host queued the next step)."""
    return torch.tensor(float(value), dtype=torch.float32)


class RngState(Callback):
    """Saves the python, numpy, torch (and CUDA) RNG states in each checkpoint and restores them on resume.

    Lightning restores weights, optimiser, scheduler, loops and callbacks but not the random generators;
    without them a resumed run would shuffle and augment differently from an uninterrupted one. Stored as
    plain ints and tensors, so checkpoints still load with torch.load(weights_only=True)."""

    def state_dict(self) -> dict:
        kind, keys, pos, has_gauss, gauss = np.random.get_state()
        state = {"python": random.getstate(), "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(gauss)],
                 "torch": torch.get_rng_state()}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state: dict) -> None:
        if not state:
            return
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
        kind, keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
        torch.set_rng_state(state["torch"])
        if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(state["cuda"])


class CtrlC(Callback):
    """Makes Ctrl-C (SIGINT) during fit stop the run every time. Python's own handler raises KeyboardInterrupt
    wherever the main thread happens to be; when that is inside a __del__ method or a weakref callback (an
    iterator or generator being collected), Python prints "Exception ignored" and training goes on to the end.
    Inside `installed()` the handler also notes the signal: the next training or validation batch raises it
    again, and `noted` lets the caller exit as interrupted whatever became of the first exception."""

    def __init__(self):
        self.noted = False

    @contextlib.contextmanager
    def installed(self):
        if threading.current_thread() is not threading.main_thread() \
                or signal.getsignal(signal.SIGINT) is signal.SIG_IGN:  # signals reach the main thread only; a
            yield self  # Ctrl-C set to be ignored (a job started with `&` from a script) stays ignored: training was
            return  # stopped by the Ctrl-C it had been started to ignore, its final evaluation not
        previous = signal.signal(signal.SIGINT, self._handler)
        try:
            yield self
        finally:
            signal.signal(signal.SIGINT, previous)

    def _handler(self, signum, frame) -> None:
        self.noted = True
        raise KeyboardInterrupt

    def _again(self) -> None:
        if self.noted:
            raise KeyboardInterrupt

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._again()

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        self._again()


class DataWatch(Callback):
    """Stops a run whose dataset is prepared again under it (`segcli prepare --overwrite` swaps a new folder in):
    the run went on, training on the new images with the old card's normalisation, scored the new val images at
    its end and exited 0, while its checkpoints named the old data (and its own --resume then refused them). At each
    epoch's and each validation's start, and before the final evaluation, the card file is looked at (one stat);
    where it changed, what the run depends on is compared as --resume compares it (a card rewritten with the same
    classes, statistics and splits lets the run go on). A DataError (exit 3) otherwise."""

    def __init__(self, card_file: str | Path, data_cfg):
        self._file = Path(card_file)
        self._data = data_cfg
        self._seen = _file_identity(self._file)

    def _check(self, pl_module) -> None:
        now = _file_identity(self._file)
        if now == self._seen:
            return
        from segcli.data.card import load_card
        from segcli.errors import DataError, SegcliError
        from segcli.training.resume import data_changes, meta_now

        try:
            card = load_card(self._file)
        except SegcliError:  # between the two renames of a swap, or being written: look again once
            time.sleep(1.0)
            try:
                card = load_card(self._file)
            except SegcliError as err:
                raise DataError(f"{self._file}: the dataset this run trains on is no longer readable ({err.message}); "
                                "restore it and `segcli train --resume` the run") from None
        changes = data_changes(pl_module.meta, meta_now(pl_module.meta, card, self._data))
        if changes:
            raise DataError(f"{self._file}: the dataset changed while this run trained on it ({'; '.join(changes)}; "
                            "prepared again?): the run stops rather than go on with data its checkpoints do not "
                            "describe; start a new run on it, or restore the data as it was and `segcli train "
                            "--resume` the run")
        self._seen = now

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._check(pl_module)

    def on_validation_start(self, trainer, pl_module) -> None:
        self._check(pl_module)

    def on_train_end(self, trainer, pl_module) -> None:
        self._check(pl_module)


def _file_identity(path: Path) -> tuple | None:
    """(device, inode, size, modification time) of a file, None where it is missing: a new file in its place or a
    rewrite changes it."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns


def early_stopping(cfg: dict) -> EarlyStopping | None:
    """Stop when val/mIoU has not risen by more than `min_delta` for `patience` validations (None: off). The values
    are checked with the other settings (segcli.checks) before training starts."""
    patience = cfg.get("patience")
    if patience is None:
        return None
    return StaysStopped(monitor=MONITOR, mode="max", patience=int(patience),
                        min_delta=float(cfg.get("min_delta") or 0.0), check_finite=True, verbose=False)


class StaysStopped(EarlyStopping):
    """Lightning's EarlyStopping, which also stops a resumed run it had stopped: its state in last.ckpt says so, but
    Lightning does not save trainer.should_stop, so each --resume of an early-stopped run (one killed in its final
    evaluation, say) trained one more epoch and could replace best.ckpt."""

    def _generate_state_key(self, **kwargs) -> str:
        return f"EarlyStopping{kwargs!r}"  # the key last.ckpt files hold its state under (Lightning's class name)

    def on_train_start(self, trainer, pl_module) -> None:  # after the checkpoint's state is restored, before epoch 1
        if self.stopped_epoch > 0 or self.wait_count >= self.patience > 0:
            trainer.should_stop = True
