"""Checkpoints that survive a kill: written to a temp file beside the target, then renamed.

Lightning's own writer goes through an fsspec transaction whose temp file lives in the system temp
directory; when that is another filesystem than the run directory, the final move is a copy into the
old file, and a SIGKILL during it leaves a truncated last.ckpt. Here a checkpoint is written in full
next to its target, flushed to disk and `os.replace`d over it: the previous file stays valid until
the new one is complete. A Ctrl-C or SIGTERM during the write is held until the file is in place (torch's zip
writer interrupted half-way raises a RuntimeError that would hide the interrupt).
"""

from __future__ import annotations

import contextlib
import shutil
import time
from pathlib import Path

import torch
from lightning.pytorch.callbacks import Checkpoint, ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO

from segcli.console import info
from segcli.errors import stops_held
from segcli.inference.io import atomic_write, remove_stale_temps

BEST = "best"  # checkpoints/best.ckpt: highest val/mIoU
LAST = "last"  # checkpoints/last.ckpt: where --resume continues from
MONITOR = "val/mIoU"


class AtomicCheckpointIO(TorchCheckpointIO):
    """TorchCheckpointIO whose save is segcli.inference.io.atomic_write: temp file + fsync + os.replace in the
    same directory."""

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        if "://" in str(path):  # a remote URL: Lightning's own transaction
            return super().save_checkpoint(checkpoint, path, storage_options)
        remove_stale_temps(Path(path))  # a killed run's half-written checkpoint beside it
        with stops_held():
            atomic_write(path, lambda handle: torch.save(checkpoint, handle), fsync=True)


class EpochEndHold:
    """Stops (Ctrl-C, SIGTERM, SIGHUP) held from an epoch-end best.ckpt write until that epoch's last.ckpt is
    written and Lightning has logged the epoch's train rows to metrics.csv (the next epoch's start, or the end of
    training): a stop between the writes left a best.ckpt of an epoch that last.ckpt and metrics.csv do not record
    (in the first epoch, a best.ckpt and no last.ckpt to resume from). Nothing long runs in between (the epoch-end
    hooks of the other callbacks, the schedulers' epoch step, the logging). One process only: under DDP the
    processes coordinate their stops otherwise."""

    def __init__(self):
        self._stack: contextlib.ExitStack | None = None

    def hold(self) -> None:
        if self._stack is None:
            stack = contextlib.ExitStack()
            stack.enter_context(stops_held())
            self._stack = stack

    def release(self) -> None:
        """End the hold: a stop that came in the meantime is raised here."""
        stack, self._stack = self._stack, None
        if stack is not None:
            stack.close()

    def drop(self) -> None:
        """End the hold while an error is on its way out already: that error, not a held stop, is the run's."""
        try:
            self.release()
        except BaseException:  # noqa: BLE001 - a held Ctrl-C/SIGTERM: the run is ending anyway
            pass


class BestCheckpoint(ModelCheckpoint):
    """ModelCheckpoint whose state survives a run directory that was moved or copied: Lightning drops the saved best
    score when the saved `dirpath` differs from this one, and the resumed run would then replace best.ckpt at its
    next validation, however low. Saved paths in the old checkpoints/ folder are taken as this folder's.
    `hold`: the EpochEndHold that last.ckpt's callback ends, entered here at an epoch's end (one process)."""

    def __init__(self, *args, hold: EpochEndHold | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.hold = hold

    def _generate_state_key(self, **kwargs) -> str:
        return f"ModelCheckpoint{kwargs!r}"  # the key last.ckpt files hold its state under (Lightning's class name)

    def load_state_dict(self, state_dict: dict) -> None:
        old = state_dict.get("dirpath")
        if old is not None and self.dirpath is not None and old != self.dirpath:
            def moved(path):
                return str(Path(self.dirpath) / Path(path).name) if path and Path(path).parent == Path(old) else path

            state_dict = {**state_dict, "dirpath": self.dirpath,
                          "best_k_models": {moved(k): v for k, v in (state_dict.get("best_k_models") or {}).items()}}
            for key in ("best_model_path", "kth_best_model_path", "last_model_path"):
                if key in state_dict:
                    state_dict[key] = moved(state_dict[key])
        super().load_state_dict(state_dict)

    def _save_checkpoint(self, trainer, filepath: str) -> None:
        """Write best.ckpt; RUN_DIR/eval/, the final evaluation of the best.ckpt it replaces (a resumed run), then
        describes a checkpoint that is gone: removed, so that it never stands beside another best.ckpt (the run
        evaluates the new one at its end with final_eval: true)."""
        if self.hold is not None and trainer.world_size == 1 and _epoch_ends(trainer):
            self.hold.hold()  # until last.ckpt records this epoch too
        super()._save_checkpoint(trainer, filepath)
        stale = Path(filepath).parent.parent / "eval"
        if trainer.is_global_zero and (stale / "report.json").is_file():
            shutil.rmtree(stale, ignore_errors=True)
            info(f"train: note: removed {stale}: it evaluated the best.ckpt this run has now replaced")


def best_checkpoint(ckpt_dir: Path, hold: EpochEndHold | None = None) -> ModelCheckpoint:
    """checkpoints/best.ckpt, rewritten whenever val/mIoU reaches a new maximum: weights and meta only (eval,
    predict and export need nothing else; resuming uses last.ckpt), a third of a checkpoint with AdamW state."""
    return BestCheckpoint(dirpath=ckpt_dir, filename=BEST, monitor=MONITOR, mode="max", save_top_k=1,
                          save_weights_only=True, enable_version_counter=False, auto_insert_metric_name=False,
                          hold=hold)


class LastCheckpoint(Checkpoint):
    """checkpoints/last.ckpt at every epoch end (after validation, so early-stopping and best-score state are
    in it) and, with `every_n_steps`, every N optimiser steps. Resuming from an epoch-end checkpoint continues
    exactly; from a mid-epoch one, the interrupted epoch's data order starts over.

    A Lightning `Checkpoint`: Lightning runs the epoch-end hooks of EarlyStopping and checkpoint callbacks after
    all others, and the checkpoint callbacks last, in the order given; best.ckpt's callback must come before this
    one, so the best score and early-stopping counters saved here include this epoch's validation.

    With `min_interval_s`, an epoch end less than that many seconds after the previous write is skipped (epochs
    of a second or two on a GPU would otherwise spend much of their time writing a full checkpoint with optimiser
    state); the epoch that ends training (time budget, early stop, last epoch or step) is always written. A kill
    then loses at most `min_interval_s` of training, plus the epoch under way."""

    def __init__(self, ckpt_dir: Path, every_n_steps: int | None = None, min_interval_s: float | None = None):
        self.path = Path(ckpt_dir) / f"{LAST}.ckpt"
        self.every_n_steps = int(every_n_steps or 0)
        self.min_interval_s = float(min_interval_s or 0.0)
        self._saved_step = -1  # with gradient accumulation several batches share one step
        self._saved_at: float | None = None  # time.monotonic() of the last write
        self._pending = False  # an epoch end was skipped since the last write
        self.hold = EpochEndHold()  # entered by best.ckpt's callback at an epoch end; ended once this one is done

    def _save(self, trainer, pl_module) -> None:
        check = getattr(pl_module, "check_diverged", None)
        if check is not None:  # a diverged run stops before its NaN weights overwrite last.ckpt
            check()
        trainer.save_checkpoint(self.path, weights_only=False)
        self._saved_at = time.monotonic()
        self._pending = False

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if _epoch_ends(trainer):  # written at the epoch's end, after its validation: resumed from a step checkpoint
            return  # of its last step, Lightning took the epoch as done and skipped its validation and epoch end
        if self.every_n_steps and step and step % self.every_n_steps == 0 and step != self._saved_step:
            self._saved_step = step
            self._save(trainer, pl_module)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        recent = self._saved_at is not None and time.monotonic() - self._saved_at < self.min_interval_s
        if trainer.world_size == 1:
            self.hold.hold()  # with best.ckpt's, if it wrote: until Lightning has logged the epoch (below)
        try:
            if recent and not _last_epoch(trainer):
                self._pending = True
            else:
                self._save(trainer, pl_module)
        except BaseException:
            self.hold.drop()
            raise

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        # Lightning writes an epoch's train/loss_epoch row after its epoch-end hooks: a stop raised at the end of
        # the one above lost the row of an epoch that last.ckpt records, and the resume starts after that epoch
        self.hold.release()  # a stop held since then stops the run now

    def on_train_end(self, trainer, pl_module) -> None:
        self.hold.release()
        if self._pending:  # training ended in a way _last_epoch did not foresee
            self._save(trainer, pl_module)

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        self.hold.drop()


def _epoch_ends(trainer) -> bool:
    """Whether this validation is the one at the end of an epoch (its last batch, trainer.limit_train_batches
    reached, or a stop asked for that ends it, as trainer.max_time does), not one in the middle of it."""
    loop = trainer.fit_loop
    try:
        return bool(loop.epoch_loop._num_ready_batches_reached() or (trainer.should_stop and loop._can_stop_early))
    except AttributeError:  # another Lightning's loops: the last batch only
        return bool(loop.epoch_loop.batch_progress.is_last_batch)


def _last_epoch(trainer) -> bool:
    """Whether the epoch now ending is the run's last: a stop was asked for (trainer.max_time, early stopping)
    and trainer.min_epochs / min_steps are met (Lightning trains on until they are), or max_epochs or max_steps
    is reached."""
    max_epochs, max_steps = trainer.max_epochs, trainer.max_steps
    min_epochs, min_steps = trainer.fit_loop.min_epochs or 0, trainer.fit_loop.min_steps or 0
    can_stop = trainer.current_epoch + 1 >= min_epochs and trainer.global_step >= min_steps
    return bool((trainer.should_stop and can_stop)
                or (max_epochs is not None and max_epochs >= 0 and trainer.current_epoch + 1 >= max_epochs)
                or (max_steps is not None and max_steps >= 0 and trainer.global_step >= max_steps))
