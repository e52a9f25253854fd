"""segcli train: compose data + model + loss + optimiser + trainer, fit, keep best/last checkpoints.

    config → dataset card, model meta, SegModule, SegDataModule (all validated before anything is written)
    → run directory (config.yaml) → Lightning fit (segcli.training: atomic best/last checkpoints, lr and
    throughput, RNG state, early stopping, CSV/TensorBoard logs) → curves.png → final evaluation of
    best.ckpt through `segcli eval`'s code (RUN_DIR/eval/) → the run directory on stdout.

Python users call `run(cfg)` with the composed `train` config; `run(resume_config(DIR, []), resume=True)`
continues a run (segcli.training.resume).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import warnings
from dataclasses import dataclass
from pathlib import Path

from segcli.config import literal, to_container
from segcli.console import counted, first_process, info, result, stderr_console, stderr_is_terminal
from segcli.errors import ConfigError, DataError, SegcliError


@dataclass
class TrainResult:
    run_dir: Path
    best_miou: float | None  # best val mIoU during training (fraction), None when no validation ran
    epochs: int  # completed epochs
    final_miou: float | None  # mIoU of best.ckpt from the final evaluation, None when skipped


RUN_DIR_ENV = "SEGCLI_RUN_DIR"


def _given_run_dir(cfg) -> str | None:
    """--run-dir; in the further processes Lightning's DDP launcher starts, the directory the first process made
    (every process must write to one run directory). None: make a new one under runs/train/. Processes started by
    another launcher (torchrun, srun, mpirun, several machines) cannot agree on a new name: they need --run-dir."""
    from segcli.models.trainer_args import started_as_one_of_several

    if cfg.run_dir:
        return str(cfg.run_dir)
    if not first_process() and os.environ.get(RUN_DIR_ENV):
        return os.environ[RUN_DIR_ENV]
    if started_as_one_of_several(cfg.trainer.get("num_nodes", 1)):
        raise ConfigError("segcli train was started as one of several processes (torchrun, srun, mpirun or on several "
                          "machines) without --run-dir; give --run-dir DIR, the same folder for every process")
    return None


def _has_checkpoint(run_dir: Path) -> bool:
    """Whether RUN_DIR/checkpoints holds a checkpoint (not just the temp file of a write killed half-way)."""
    checkpoints = run_dir / "checkpoints"
    return checkpoints.is_dir() and any(p.suffix == ".ckpt" and not p.name.startswith(".") for p in checkpoints.iterdir())


def _holds_the_run(cfg) -> bool:
    """Whether this process is the one that starts (or resumes) the run: the others of a distributed run share the
    folder the first one made."""
    from segcli.models.trainer_args import started_as_one_of_several

    return first_process() and not started_as_one_of_several(cfg.trainer.get("num_nodes", 1))


def _refuse_an_earlier_run(run_dir: Path, cfg) -> None:
    """--run-dir naming a folder that holds a run's checkpoints would overwrite them: a usage error. A run that
    stopped before its first checkpoint (killed in its first epoch, a bad image, Ctrl-C) left only its config and
    logs: nothing to resume from or to lose, so it is started afresh there (_start_afresh). Two runs started at
    once in one folder are kept apart by its lock (segcli.runs.held_run_dir). Checked by the one process that
    starts a run."""
    if _holds_the_run(cfg):
        _refuse_checkpoints(run_dir)
        from segcli.training.sweep import is_sweep_dir

        if is_sweep_dir(run_dir):  # its files would mix with the sweep's, and --resume would find the sweep
            raise ConfigError(f"--run-dir {run_dir} holds a sweep (its summary and job folders); give a folder of the "
                              f"run's own (a job of the sweep continues with `segcli train --resume {run_dir}/JOB`)")


def _refuse_checkpoints(run_dir: Path) -> None:
    """A run with a last.ckpt is continued with --resume; one with only a best.ckpt (its first last.ckpt failed, e.g.
    on a full disk) cannot be, and advising --resume sent the user back here: its best.ckpt is a model, kept."""
    if (run_dir / "checkpoints" / "best.ckpt").is_file() and not (run_dir / "checkpoints" / "last.ckpt").is_file():
        raise ConfigError(f"--run-dir {run_dir} holds a run's best.ckpt but no last.ckpt to continue from (the run "
                          "stopped before it wrote one, e.g. on a full disk); give another --run-dir, or delete "
                          f"{run_dir} to start afresh there (a new run would overwrite that best.ckpt)")
    if _has_checkpoint(run_dir):
        raise ConfigError(f"--run-dir {run_dir} holds a run already (checkpoints); continue it with "
                          f"`segcli train --resume {run_dir}`, or give another --run-dir (a new run would overwrite "
                          "its checkpoints)")


def _start_afresh(run_dir: Path) -> None:
    """Under the run directory's lock: refuse it if a run wrote a checkpoint there meanwhile; remove what a run
    that stopped before its first checkpoint left (its metrics.csv would be appended to, its TensorBoard events
    and curves.png would mix with this run's)."""
    import shutil

    _refuse_checkpoints(run_dir)
    validated = _validated_epochs(run_dir / "metrics.csv")
    if validated:  # it reached a checkpoint, which has been deleted since (to save space): its logs are the results
        raise ConfigError(f"--run-dir {run_dir} holds the logs of a run that validated {validated} epoch(s) "
                          "(metrics.csv), though not its checkpoints; give another --run-dir (a new run there would delete them), or "
                          "delete the folder to start afresh in it")
    if (run_dir / "config.yaml").is_file():
        info(f"train: note: {run_dir} holds a run that stopped before its first checkpoint; starting it afresh")
        for name in ("metrics.csv", "curves.png", "hparams.yaml"):
            (run_dir / name).unlink(missing_ok=True)
        shutil.rmtree(run_dir / "tensorboard", ignore_errors=True)
        shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)  # a first checkpoint's temp file, killed half-way


def _validated_epochs(metrics: Path) -> int:
    """The epochs a run's metrics.csv holds validation results for (0: none, or no readable file)."""
    import csv

    try:
        with metrics.open(newline="", encoding="utf-8") as f:
            return len({row.get("epoch") for row in csv.DictReader(f) if row.get("val/mIoU")})
    except (OSError, UnicodeDecodeError, csv.Error):
        return 0


def _remove_if_no_checkpoint(run_dir: Path, created: list[Path]) -> None:
    """After an error building the Trainer or inside fit: a run directory this command made and that holds no
    checkpoint yet (only its config and logs) is removed, with the empty parents it made (`created`), so a failed
    run leaves nothing behind (e.g. an unreadable training image, a trainer.devices Lightning refuses)."""
    import shutil

    from segcli.inference.io import remove_empty

    if first_process() and not _has_checkpoint(run_dir):
        shutil.rmtree(run_dir, ignore_errors=True)
        remove_empty(created)


def _no_adverts(record: logging.LogRecord) -> bool:
    """Drop Lightning's product tips (e.g. "💡 Tip: ... try installing litlogger"), its word on its own internals
    ("Loading `train_dataloader` to estimate number of stepping batches.", said by every run with a schedule) and its
    "Detected KeyboardInterrupt, attempting graceful shutdown ..." (a SIGTERM too, which segcli's own last line names:
    'segcli: terminated (SIGTERM)'): noise in a CLI's log. Its facts (devices, precision, why fit stopped) stay."""
    message = record.getMessage()
    return not any(words in message for words in ("💡 Tip", "to estimate number of stepping batches",
                                                  "Detected KeyboardInterrupt"))


def _note_unused_bands(pairs, channels: int) -> None:
    """A TIFF of 2 bands, or of 4 or more (RGB + near infrared, multispectral), trained by a 1- or 3-channel model is
    read as grey (its first band) or as its first three bands, and the rest are left out: a note with the setting
    that uses them all. Only TIFFs: a 4-channel PNG is RGBA, whose alpha is rightly dropped (screenshots, exports of
    editors), as is a TIFF's alpha band; a CMYK TIFF is converted to RGB."""
    from segcli.inference.io import is_alpha_tiff, is_cmyk_tiff, stored_channels

    if channels not in (1, 3) or not pairs or pairs[0][0].suffix.lower() not in (".tif", ".tiff"):
        return
    try:
        bands = stored_channels(pairs[0][0])  # through segcli's reader (non-UTF-8 names, one message per failure)
    except DataError:
        return  # an unreadable image gets its own error when the data are read
    if bands in (1, 3) or is_cmyk_tiff(pairs[0][0]) or is_alpha_tiff(pairs[0][0]):
        return
    read = ("its first band as grey" if bands == 2 else
            "the first 3 as RGB" if channels == 3 else "the first 3 as grey (their luma)")
    info(f"train: note: {pairs[0][0]} has {bands} bands and the model reads {read} "
         f"(model.in_channels={channels}); set model.in_channels={bands} to train on all of them")


def _note_untrainable_classes(card, split: str) -> None:
    """A note naming the classes with no pixel in the train split (the card's counts): the model cannot learn them,
    and only prepare's lint said so (class_missing), which a run started later no longer shows."""
    counts = (card.stats.get("class_pixels") or {}).get(split)
    if not counts or len(counts) != card.num_classes:
        return
    absent = [name for name, count in zip(card.classes, counts) if not count]
    if absent:
        shown = ", ".join(absent[:5]) + (f", … ({len(absent) - 5} more)" if len(absent) > 5 else "")
        info(f"train: note: {len(absent)} class(es) have no pixel in the train split '{split}' ({shown}): the model "
             "cannot learn them; label some of their pixels, or prepare the dataset without them")


def _crop_note(card, data_cfg, crop: list[int], smallest: int) -> None:
    """A note when the training crops are much larger than the training images (100×100 tiles under the default
    192×192 crop: 73% of every crop is unlabelled padding), or much smaller (_small_crop_note): the card's mean pixels
    per image, at data.input_scale, against the crop's area."""
    import math

    from segcli.data.datamodule import input_scale

    split = (card.stats.get("splits") or {}).get(str(data_cfg.train_split)) or {}
    images, pixels = split.get("images"), split.get("pixels")
    if not images or not pixels:
        return
    scale = input_scale(data_cfg)
    area = float(pixels) / float(images) * scale ** 2
    if crop[0] * crop[1] * SMALL_CROP < area:
        _small_crop_note(data_cfg, crop, area, scale, int(images))
        return
    if crop[0] * crop[1] <= 2 * area:
        return
    side = max(smallest, round(math.sqrt(area) / 32) * 32)  # the nearest multiple of 32
    if side * side >= crop[0] * crop[1]:  # images below the smallest crop the network runs on: nothing to suggest
        return
    info(f"train: note: the {data_cfg.train_split} images hold {area:,.0f} pixels each on average (about "
         f"{math.sqrt(area):.0f}x{math.sqrt(area):.0f}), but crops are {crop[0]}x{crop[1]}: "
         f"{1 - area / (crop[0] * crop[1]):.0%} of a crop is unlabelled padding, which costs time and teaches "
         f"nothing; crop about the images' size, e.g. augment.crop_size=[{side},{side}]")


def _workers_note(setting) -> None:
    """One note when data.num_workers is more than the CPU cores this process may use (instead of torch's warning,
    raw and once per loader, train and val): each loader process competes with training for the cores."""
    from segcli.data.datamodule import loader_workers, usable_cores

    workers, cores = loader_workers(setting), usable_cores()
    if workers > cores:
        info(f"train: note: data.num_workers={workers} is more than the {cores} CPU core(s) this process may use: "
             "the extra loader processes compete with training for them; data.num_workers=auto chooses for this "
             "machine")


SMALL_CROP = 50  # a crop under 1/50 of the mean training image (192×192 of a 12 MP photo: 0.3%) gets a note


def _small_crop_note(data_cfg, crop: list[int], area: float, scale: float, images: int) -> None:
    """A note when the training crops see a sliver of each image (phone photos of 3000×4000 under the default
    192×192 crop: 0.3% each; a probe's run learnt nothing, mIoU 3.2, in a budget where data.input_scale=0.25 reached
    94.8): the input_scale (0.5, 0.25, …) at which a crop covers at least 4% of an image, and data.repeat where the split
    gives under 4 optimiser steps per epoch (each epoch then costs a validation over those large images)."""
    import math

    factor = next((f for f in (0.5, 0.25, 0.125, 0.0625) if crop[0] * crop[1] * 25 >= area * f * f), 0.0625)
    side = math.sqrt(area)
    batch, samples = max(1, int(data_cfg.get("batch_size", 1))), images * int(data_cfg.get("repeat", 1) or 1)
    steps = samples // batch if samples > batch else 1  # the loader drops a last partial batch (one batch: kept)
    more = (f", and data.repeat={math.ceil(4 * batch / images)} or more: {samples} images a pass make {steps} "
            "optimiser step(s) per epoch, each followed by a validation" if steps < 4 else "")
    info(f"train: note: each {crop[0]}x{crop[1]} crop covers {crop[0] * crop[1] / area:.1%} of a {data_cfg.train_split} "
         f"image (about {side:.0f}x{side:.0f} pixels on average), so training sees little of each in a step; let the "
         f"network see smaller images, e.g. data.input_scale={scale * factor:g} (or prepare --max-size), or crop larger"
         f"{more}")


def _train_images_per_process(card, data_cfg, processes: int) -> int:
    """Training images one process sees per epoch: the train split (or the training folds of data.fold) times
    data.repeat, shared among `processes`."""
    from segcli.data.datamodule import images_per_process, split_indices

    indices = split_indices(card, data_cfg)[2]
    return images_per_process(len(indices) * int(data_cfg.get("repeat", 1) or 1), processes)


def _accumulation_note(card, data_cfg, trainer_cfg, processes: int) -> None:
    """A note when trainer.accumulate_grad_batches is more than the batches of an epoch: Lightning steps the
    optimiser at every epoch's end, so each step sums fewer batches than asked (10 asked, 2 per epoch: 2)."""
    accumulate = int(trainer_cfg.get("accumulate_grad_batches") or 1)
    if accumulate <= 1:
        return
    batch = int(data_cfg.batch_size)
    batches = _limited(_epoch_train_batches(card, data_cfg, processes), trainer_cfg, "limit_train_batches")[0]
    if 0 < batches < accumulate:
        info(f"train: note: trainer.accumulate_grad_batches={accumulate} is more than the {batches} batch(es) of an "
             f"epoch, and the optimiser steps at every epoch's end: each step sums {batches} batch(es) of "
             f"{batch}, each loss divided by {accumulate} (a gradient {batches}/{accumulate} of their mean's); set "
             f"trainer.accumulate_grad_batches={batches} or less, or data.repeat to lengthen epochs")


def _epoch_train_batches(card, data_cfg, processes: int) -> int:
    """Training batches of one process per epoch, before any trainer.limit_train_batches (datamodule.train_batches)."""
    from segcli.data.datamodule import train_batches

    return train_batches(_train_images_per_process(card, data_cfg, processes), int(data_cfg.batch_size))[0]


def _epoch_val_batches(card, data_cfg, processes: int) -> int:
    """Validation batches of the process with the fewest val images (UnrepeatedDistributedSampler shares the images
    out unpadded; the last partial batch is kept)."""
    from segcli.data.datamodule import split_indices

    indices = split_indices(card, data_cfg)[3]
    return -(-(len(indices) // max(1, processes)) // int(data_cfg.get("val_batch_size", 1) or 1))


def _limited(batches: int, trainer_cfg, key: str) -> tuple[int, str]:
    """(the batches Lightning runs of a loader of `batches` under trainer.<key>, the setting that limits them):
    trainer.overfit_batches above 0 stands in for limit_train_batches and limit_val_batches, as in Lightning."""
    from segcli.checks import finite_number, limited_batches

    overfit = trainer_cfg.get("overfit_batches")
    if overfit is not None and (finite_number(overfit) or 0) > 0:
        return limited_batches(batches, overfit), f"trainer.overfit_batches={overfit}"
    limit = trainer_cfg.get(key)
    return limited_batches(batches, limit), f"trainer.{key}={limit}"


def _check_epoch_batches(card, data_cfg, trainer_cfg: dict, processes: int, validates: bool) -> None:
    """Batch limits and the validation interval against the batches an epoch has, before the run directory is made:
    a fraction of the batches that leaves none (trainer.limit_train_batches=0.3 of 2 batches), or a
    trainer.val_check_interval of more batches than an epoch has, failed inside Lightning's fit, after
    'train: run directory ...' (exit 2 with Lightning's words, or exit 4)."""
    import math

    from segcli.checks import counts_batches, validates_by_batches

    counts = [("train", "limit_train_batches", "batch_size", _epoch_train_batches(card, data_cfg, processes))]
    if validates:
        counts.append(("val", "limit_val_batches", "val_batch_size", _epoch_val_batches(card, data_cfg, processes)))
    train_kept = 0
    for role, key, size, batches in counts:
        kept, setting = _limited(batches, trainer_cfg, key)
        train_kept = kept if role == "train" else train_kept
        if kept == 0 and batches > 0:  # a limit of 0 itself: training is refused (checks), validation is off
            least = f"{math.ceil(1000 / batches) / 1000:g}"
            raise ConfigError(f"{setting} leaves 0 of the {batches} {role} batch(es) an epoch has (data.{size}="
                              f"{data_cfg.get(size, 1)}); give a fraction of at least {least} (1 batch), a whole "
                              "number of batches, or null for all")
        if role == "val" and 0 < kept < batches and first_process():  # smoke's limit_val_batches=4, for one
            info(f"train: note: {setting} validates {kept} of the {batches} val batches an epoch has: val mIoU (and "
                 "so best.ckpt's choice) is of those images only; the final evaluation and segcli eval score the "
                 "whole split")
    interval, limit_val = trainer_cfg.get("val_check_interval"), trainer_cfg.get("limit_val_batches")
    if interval is None or isinstance(interval, (str, dict)) or not counts_batches(interval) \
            or validates_by_batches(trainer_cfg) \
            or (limit_val is not None and float(limit_val) == 0):  # Lightning's condition for its check
        return
    if int(interval) > train_kept:
        raise ConfigError(f"trainer.val_check_interval={interval} is more than the {train_kept} training batch(es) an "
                          f"epoch has; give {train_kept} or fewer batches, a fraction of an epoch such as 0.5, or null "
                          "to validate at each epoch's end")


def _check_pooled_batch(arch: str, card, data_cfg, processes: int) -> None:
    """DeepLabV3(+), PAN and UPerNet cannot train on a batch of one image (a BatchNorm after a 1×1 pooling): a
    ConfigError before the run directory is made, rather than one from the first training step (SegModule). The
    smallest batch is data.batch_size, or the whole per-process split when that is not larger (datamodule.
    train_batches)."""
    from segcli.data.datamodule import train_batches
    from segcli.models.module import POOLING_ARCHS

    if arch.lower() not in POOLING_ARCHS:
        return
    batch = int(data_cfg.batch_size)
    if batch == 1:
        raise ConfigError(f"model={arch} cannot train on a batch of 1 image: a BatchNorm layer after its image pooling "
                          "needs 2 or more images per step; set data.batch_size to 2 or more")
    if train_batches(_train_images_per_process(card, data_cfg, processes), batch)[1] == 1:
        raise ConfigError(f"model={arch} cannot train on a batch of 1 image: a BatchNorm layer after its image pooling "
                          f"needs 2 or more images per step, and each of {processes} process(es) gets 1 training image "
                          f"of the split '{data_cfg.train_split}'; add training images, or train on fewer devices")


def run(cfg, resume: bool = False) -> Path:
    """Train (or, with resume, continue cfg.run_dir); returns and prints (last stdout line) the run directory."""
    return fit(cfg, resume=resume, announce=True).run_dir


def fit(cfg, resume: bool = False, announce: bool = True) -> TrainResult:
    """Train as configured; `announce` prints the run directory on stdout (sweeps print a table instead)."""
    import contextlib

    with contextlib.ExitStack() as held:  # the run directory's lock (segcli.runs.held_run_dir), until fit returns
        return _fit(cfg, resume, announce, held)


def _fit(cfg, resume: bool, announce: bool, held) -> TrainResult:
    from segcli.checks import check_values

    for key in ("train_split", "val_split"):  # data.val_split=2022: Hydra reads a number; the card's splits are names
        value = cfg.data.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            cfg.data[key] = str(value)
    # Numeric settings, before anything is built or written, and before torch and Lightning are imported (6 s here):
    # a mistyped value is told at once.
    check_values(to_container(cfg))

    import lightning as L
    import torch

    from segcli.data.card import load_card
    from segcli.data.channels import fit_normalization
    from segcli.data.datamodule import (SegDataModule, check_val_per_process, files_for_workers, input_scale,
                                        loader_workers, split_digests, validated_split, validation_off)
    from segcli.inference.io import missing_folders
    from segcli.models.factory import build_model, local_weights, min_input_size, model_kwargs, size_multiple
    from segcli.models.module import SegModule
    from segcli.models.optim import check_fused
    from segcli.models.trainer_args import check as check_trainer, for_this_machine, lightning_config_errors, processes
    from segcli.runs import held_run_dir, make_run_dir, model_meta, save_config
    from segcli.training.callbacks import CtrlC, DataWatch
    from segcli.training.checkpoints import LastCheckpoint, best_checkpoint

    # The last pattern, Lightning's advice to log with sync_dist=True under DDP: val/* metrics come from the
    # confusion matrix summed over the processes (SegModule), and the train/* epoch figures are the first process's
    # (loss) or scaled by the process count (images/s). Synced logging would deadlock: the rank-0 progress bar
    # reduces its metrics at another point than the other ranks.
    for pattern in (".*does not have many workers.*", ".*LeafSpec.*", ".*Experiment logs directory.*",
                    ".*Checkpoint directory .* exists and is not empty.*",
                    ".*Total length of .* across ranks is zero.*",  # data.val_split=null
                    ".*is smaller than the logging interval.*",  # the epoch figures are logged whatever the interval
                    ".*This DataLoader will create .* worker processes in total.*",  # said once: _workers_note
                    r".*self\.log\('(val|train)/.*sync_dist=True.*"):
        warnings.filterwarnings("ignore", pattern)
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logging.getLogger(name).addFilter(_no_adverts)  # idempotent: the same filter object is added once
    L.seed_everything(int(cfg.seed), workers=True, verbose=False)
    card = load_card(cfg.data.root)
    cfg.data.root = literal(str(Path(card.location).resolve()))  # config.yaml names it for --resume from any folder
    weights_file = local_weights(cfg.model.encoder_weights)
    if weights_file is not None and not resume:  # so must it a local encoder weights file (provenance)
        cfg.model.encoder_weights = literal(str(weights_file.resolve()))
    if card.num_classes < 2:
        raise DataError(f"{card.path}: one class ({', '.join(card.classes)}); a model has nothing to "
                        "tell apart: label at least two classes (e.g. background and object) and prepare again")
    kwargs = model_kwargs(to_container(cfg.model), card.num_classes)
    probe = build_model(**kwargs)  # validates arch/encoder before anything is written; gives the stride
    smallest = min_input_size(probe, kwargs)
    crop = cfg.augment.get("crop_size")
    if crop and min(int(v) for v in crop) < smallest and first_process():
        info(f"train: note: {kwargs['arch']}/{kwargs['encoder']} runs on inputs of at least {smallest}x{smallest}; "
             f"crops of {crop[0]}x{crop[1]} are padded up to it (unlabelled), so larger augment.crop_size costs "
             "little more")
    fold = cfg.data.get("fold")
    meta = model_meta(card, kwargs, size_multiple(probe), validated_split(cfg.data), train_crop=crop,
                      input_scale=input_scale(cfg.data), min_size=smallest)
    meta = fit_normalization(meta, card, cfg.data.train_split)
    if cfg.get("inference") is not None:  # the final evaluation's settings (config.yaml keeps them for a later
        # eval), checked before training: found wrong only after it, they would cost the whole run
        from segcli.checks import number
        from segcli.inference.options import InferenceOptions

        note = InferenceOptions.from_config(cfg.inference, meta).cost_note()
        if note and first_process() and cfg.get("final_eval", True):
            info(f"train: note: {note} (the final evaluation)")
        number("inference.batch_size", cfg.inference.get("batch_size", 1), 1, integer=True)
    del probe
    train_pairs = card.pairs(cfg.data.train_split)  # an unknown split fails here, before the run directory exists
    if first_process() and not resume:
        _note_unused_bands(train_pairs, int(kwargs.get("in_channels", 3)))
        _note_untrainable_classes(card, str(cfg.data.train_split))
    if fold is not None:  # so does a fold the card lacks
        card.indices(cfg.data.train_split, int(fold), held_out=True)
    elif cfg.data.val_split is not None:  # null: no validation
        try:
            card.pairs(cfg.data.val_split)
        except ConfigError as err:
            if resume:  # the run validated on it: its dataset changed since (a changed card is exit 3)
                raise DataError(f"{card.path}: no split '{cfg.data.val_split}' now, which the run "
                                f"validates on; the dataset changed since the run began: restore that split, or "
                                f"start a new run") from None
            raise ConfigError(f"{err}; or train without validation: data.val_split=null") from None
        if cfg.data.val_split == cfg.data.train_split and first_process():
            info(f"train: note: data.val_split is the training split '{cfg.data.train_split}', so val mIoU and "
                 "best.ckpt measure images the model trains on; data.val_split=null trains without validation")
    meta["dataset"].update(split_digests(card, cfg.data))  # what --resume compares (check_same_data)
    # Loss (class weights), encoder weights and data settings fail here too, before anything is written. A resumed
    # run's weights come from last.ckpt: its initial encoder weights are not read again (a file moved or deleted
    # since, or a named set that would be downloaded again, offline, must not stop a resume).
    module = SegModule(meta, to_container(cfg.loss), to_container(cfg.optim), to_container(cfg.sched),
                       encoder_weights=None if resume else cfg.model.encoder_weights,
                       channels_last=bool(cfg.channels_last),
                       compile=bool(cfg.model.get("compile", False)))
    datamodule = SegDataModule(to_container(cfg.data), to_container(cfg.augment), card=card,
                               channels=int(cfg.model.in_channels))
    # null is Lightning's default for most keys; check_val_every_n_epoch=null means validating by batches instead
    given = {k: v for k, v in to_container(cfg.trainer).items() if v is not None or k == "check_val_every_n_epoch"}
    check_trainer(given)
    trainer_args = for_this_machine(given)
    check_fused(to_container(cfg.optim), trainer_args)  # needs the precision made concrete (auto → bf16-mixed)
    count = processes(given)
    validating = validation_off(cfg) is None
    if validating:  # said once here: found by the data module, each process said it
        check_val_per_process(card, to_container(cfg.data), count)
    _check_pooled_batch(str(kwargs["arch"]), card, cfg.data, count)
    _check_epoch_batches(card, cfg.data, given, count, validating)
    if "precision" in trainer_args:
        cfg.trainer.precision = trainer_args["precision"]  # config.yaml records what trainer.precision=auto chose
    callbacks = _callbacks(cfg)  # config errors (early_stopping, ema) before the run directory too
    files_for_workers(loader_workers(cfg.data.get("num_workers", "auto")))
    callbacks.append(DataWatch(card.path, cfg.data))

    # Messages said once per run check first_process(): Lightning's DDP launcher runs this command again in each
    # further process.
    ckpt_path, new_dir, created, restore = None, False, [], None
    if resume:
        from segcli.training.resume import check_same_data, last_checkpoint, trim_metrics

        run_dir = Path(cfg.run_dir)
        if _holds_the_run(cfg):
            held.enter_context(held_run_dir(run_dir, "wait for it to end (or stop it) before resuming"))
        ckpt_path, step, saved = last_checkpoint(run_dir)
        check_same_data(saved, meta, card.path)
        restore = _config_restorer(run_dir, ckpt_path)
        trim_metrics(run_dir, step)
        if first_process():
            info(f"train: resuming {run_dir} from {ckpt_path.name} (step {step})")
    else:
        given = _given_run_dir(cfg)
        if given:
            _refuse_an_earlier_run(Path(given), cfg)
        created = missing_folders(given if given else Path("runs") / "train")  # before make_run_dir makes them
        new_dir = given is None or bool(created)
        run_dir = make_run_dir(given, "train")
        if _holds_the_run(cfg):
            held.enter_context(held_run_dir(run_dir, "give another --run-dir"))
            _start_afresh(run_dir)
        os.environ[RUN_DIR_ENV] = str(run_dir)  # Lightning's DDP launcher starts the other processes with it
        if first_process():
            info(f"train: run directory {run_dir}")
            if crop:  # once every setting has passed its checks: an error stays the only line
                _crop_note(card, cfg.data, [int(v) for v in crop], smallest)
            _workers_note(cfg.data.get("num_workers", "auto"))
            _accumulation_note(card, cfg.data, cfg.trainer, count)
    try:
        save_config(run_dir, cfg)
    except Exception:  # a full disk: the run directory this command made goes too
        if new_dir:
            _remove_if_no_checkpoint(run_dir, created)
        raise

    last = LastCheckpoint(run_dir / "checkpoints", cfg.get("save_every_n_steps"), cfg.get("save_min_interval_s"))
    best = best_checkpoint(run_dir / "checkpoints", last.hold) if validating else None
    ctrl_c = CtrlC()
    callbacks += [c for c in (best, last, ctrl_c) if c is not None]
    torch.set_float32_matmul_precision("high")
    trainer = None
    try:
        trainer = _trainer(trainer_args, run_dir, callbacks)  # what only Lightning can check fails here; nothing left
        failed_at_start = (lambda: _remove_if_no_checkpoint(run_dir, created)) if new_dir else None
        with ctrl_c.installed(), _start_watched(trainer, failed_at_start), \
                lightning_config_errors(value_errors=False):
            trainer.fit(module, datamodule=datamodule, ckpt_path=str(ckpt_path) if ckpt_path else None)
    except SystemExit:  # Lightning turns Ctrl-C into exit(1) after its graceful shutdown
        if restore is not None:  # stopped before a new last.ckpt: the resume's overrides did not take effect
            restore()
        if (trainer is not None and trainer.interrupted) or ctrl_c.noted:
            raise KeyboardInterrupt from None
        raise
    except KeyboardInterrupt:  # Ctrl-C before Lightning's handler is in place
        if restore is not None:
            restore()
        raise
    except Exception as err:
        if new_dir:
            _remove_if_no_checkpoint(run_dir, created)
        if restore is not None:
            restore()
        peer = _failed_process(trainer, err)
        if peer is not None:
            raise peer from None
        raise
    if trainer.interrupted or ctrl_c.noted:
        if restore is not None:
            restore()
        raise KeyboardInterrupt
    try:
        return _finish(cfg, trainer, module, best, run_dir, card, announce)
    except SegcliError:  # the final evaluation failed in some process: they all stop (distributed.fail_together)
        _children_ended(trainer)
        raise


# How a collective operation fails when another process of the run has died (gloo over TCP, NCCL)
_PEER_GONE = ("connection closed by peer", "connection reset by peer", "remote worker", "communicator was aborted")


def _failed_process(trainer, err: Exception):
    """A collective operation that failed because another process of the run died ('Connection closed by peer')
    ended the run as an internal error, exit 4, beside that process's own one-line error (a damaged image, exit 3).
    Under Lightning's DDP launcher on one machine (trainer=ddp, devices=N) the first process waits for the others it
    started and takes the failed one's exit code; any other process says it stopped because another one failed.
    None when the error is this process's own."""
    from segcli.errors import EXIT_INTERNAL, STOP_EXIT_CODES, OtherProcessFailed, stop_signal

    if isinstance(err, SegcliError) or not any(words in str(err).lower() for words in _PEER_GONE):
        return None
    codes = _children_ended(trainer)
    failed = ([(r, c) for r, c in codes if c in (1, 2, 3)]
              or [(r, c) for r, c in codes if c > 0 and c not in STOP_EXIT_CODES])
    if failed:
        rank, code = failed[0]
        return OtherProcessFailed(rank, code if code in (1, 2, 3) else EXIT_INTERNAL)
    stopped = [(r, c) for r, c in codes if stop_signal(c) is not None]
    if stopped:  # a signal to that process alone (a scheduler's, torchrun's): the run was stopped, not a bug (exit 4)
        from segcli.errors import OtherProcessStopped

        return OtherProcessStopped(*stopped[0], run_dir=shlex.quote(str(trainer.default_root_dir)))
    return OtherProcessFailed(None, this_rank=os.environ.get("RANK") or os.environ.get("LOCAL_RANK") or "0")


def _children_ended(trainer, timeout: float = 10.0) -> list[tuple[int, int]]:
    """(rank, exit code) of each process that Lightning's DDP launcher started on this machine (ranks 1..N-1) and
    that ends within `timeout` seconds; [] elsewhere. Once all have ended, the launcher's list of them is emptied:
    Lightning's observer thread, polling that list every 5 s, SIGKILLs this process too when one ended non-zero, and
    did so while this one was reporting the run's error (exit -9 instead of the failed process's exit 3)."""
    import subprocess
    import time

    launcher = getattr(getattr(trainer, "strategy", None), "launcher", None)
    procs = getattr(launcher, "procs", None)
    if not isinstance(procs, list) or not all(isinstance(proc, subprocess.Popen) for proc in procs):
        return []
    codes, deadline = [], time.monotonic() + timeout
    for rank, proc in enumerate(procs, start=1):
        try:
            codes.append((rank, proc.wait(timeout=max(0.0, deadline - time.monotonic()))))
        except subprocess.TimeoutExpired:
            continue
    if len(codes) == len(procs):
        procs.clear()  # the observer's list (the same object): nothing left for it to watch
    return codes


def _config_restorer(run_dir: Path, last: Path):
    """A callable putting back the run's config.yaml as it is now, for a resume that fails before it writes a
    new last.ckpt: its overrides (trainer.max_epochs, ...) stay only once training went on with them."""
    from segcli.inference.io import atomic_write_bytes

    saved, stamp = run_dir / "config.yaml", last.stat().st_mtime_ns
    previous = saved.read_bytes()

    def restore() -> None:
        if last.is_file() and last.stat().st_mtime_ns == stamp and first_process():
            atomic_write_bytes(saved, previous)
    return restore


def _callbacks(cfg) -> list:
    from segcli.data.datamodule import validation_off
    from segcli.training.callbacks import RngState, SpeedAndLR, early_stopping
    from segcli.training.ema import ema_callback

    callbacks = [SpeedAndLR(), RngState()]
    off = validation_off(cfg)
    if off and (cfg.get("early_stopping") or {}).get("patience") is not None:
        fix = "name a val split" if off.startswith("data.") else "set trainer.limit_val_batches=null"
        raise ConfigError(f"early_stopping.patience needs validation, and {off} turns it off; {fix} or set "
                          "early_stopping.patience=null")
    for optional in (early_stopping(to_container(cfg.get("early_stopping") or {})),
                     ema_callback((cfg.get("ema") or {}).get("decay"))):
        if optional is not None:
            callbacks.append(optional)
    if not cfg.trainer.get("enable_progress_bar", True):
        return callbacks
    if stderr_is_terminal():
        from segcli.training.callbacks import ProgressBar

        # stdout is for results; 4 redraws a second, not Lightning's 100: its refresh thread competes with training
        # for the GIL and, on a 2-core CPU, for a core (the bar off saved 1.3% of a 5-epoch run's time)
        callbacks.append(ProgressBar(refresh_rate=4, leave=True, console_kwargs={"stderr": True}))
    else:
        from segcli.training.callbacks import EpochLines

        callbacks.append(EpochLines())  # a line per epoch in a log file, not the bar's frames (_trainer: no bar)
    return callbacks


def _trainer(trainer_args: dict, run_dir: Path, callbacks: list):
    import lightning as L
    from lightning.pytorch.callbacks import Checkpoint, ProgressBar, Timer

    from segcli.models.trainer_args import lightning_config_errors
    from segcli.training.checkpoints import AtomicCheckpointIO
    from segcli.training.loggers import make_loggers

    if not any(isinstance(c, ProgressBar) for c in callbacks):  # else Lightning adds its own bar
        trainer_args = {**trainer_args, "enable_progress_bar": False}
    budget = trainer_args.get("max_time")
    trainer_args = {k: v for k, v in trainer_args.items() if k != "max_time"}
    with lightning_config_errors():
        # The Timer is there with or without trainer.max_time (Lightning adds one only with it): last.ckpt keeps the
        # run's training time, so a budget first given on --resume counts the sessions before it too
        callbacks = [*callbacks, Timer(duration=budget, interval="step")]
        # last.ckpt's and best.ckpt's callbacks are Lightning Checkpoints: without one Lightning would add its own
        # ModelCheckpoint, writing epoch=N-step=M.ckpt files beside last.ckpt.
        trainer = L.Trainer(**trainer_args, default_root_dir=str(run_dir), callbacks=callbacks,
                            logger=make_loggers(run_dir), plugins=[AtomicCheckpointIO()], enable_model_summary=False,
                            enable_checkpointing=any(isinstance(c, Checkpoint) for c in callbacks))
    _no_collective_in_handler(trainer)
    return trainer


@contextlib.contextmanager
def _start_watched(trainer, on_failure=None):
    """While the processes that Lightning's DDP launcher starts join the run, the first process waits for them
    inside torch (init_process_group), where no signal handler of its own runs: a Ctrl-C then stopped the others
    (exit 130), and Lightning's observer, seeing that, SIGKILLed this one (exit 137, Lightning's line, no segcli
    line). A thread here watches them until the run's process group is made: one that ends so stops this process
    with its exit code and one line (the others killed, as Lightning did). Afterwards the run's own handling
    applies (a collective fails: _failed_process). `on_failure` runs before a failure (not a stop signal) ends it:
    the clean-up that the run's own error handling would have done (a new run directory without a checkpoint)."""
    import threading

    launcher = getattr(getattr(trainer, "strategy", None), "launcher", None)
    if not hasattr(launcher, "_call_children_scripts") or launcher.cluster_environment.creates_processes_externally \
            or not first_process():
        yield
        return
    done = threading.Event()

    def watch() -> None:
        import torch.distributed as dist

        while not done.wait(0.2):
            if dist.is_available() and dist.is_initialized():
                return
            procs = list(getattr(launcher, "procs", None) or [])
            codes = [(rank, proc.poll()) for rank, proc in enumerate(procs, start=1)]
            ended = next(((rank, code) for rank, code in codes if code), None)  # None: running; 0: done
            if ended is not None:
                _stopped_at_start(procs, *ended, on_failure)

    threading.Thread(target=watch, daemon=True, name="segcli-start-watch").start()
    try:
        yield
    finally:
        done.set()


def _stopped_at_start(procs, rank: int, code: int, on_failure=None) -> None:
    """End this process (waiting inside torch for the others) as the run's process `rank` ended with `code`: a stop
    signal's code and line for a Ctrl-C or SIGTERM, which reach every process of a terminal's or a scheduler's job;
    another process's failure as `OtherProcessFailed` says it, after `on_failure` (the run's clean-up)."""
    import signal
    import sys

    from segcli.errors import EXIT_INTERNAL, OtherProcessFailed, signal_name, stop_line, stop_signal

    for proc in procs:
        if proc.poll() is None:
            proc.kill()
    signum = stop_signal(code)
    stopped = signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    if stopped:
        line, exit_code = stop_line(128 + signum), 128 + signum
    elif signum is not None:
        line = (f"segcli: error: process {rank} of this run was killed by {signal_name(signum)} while the run's "
                "processes started, so this one stopped too; start the run again")
        exit_code = 128 + signum
    else:
        failed = OtherProcessFailed(rank, code if code in (1, 2, 3) else EXIT_INTERNAL)
        line, exit_code = f"segcli: error: {failed.message}", failed.exit_code
    if not stopped and on_failure is not None:
        on_failure()
    try:
        sys.stderr.write(f"{line}\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    os._exit(exit_code)


def _no_collective_in_handler(trainer) -> None:
    """Lightning's SIGTERM handler broadcasts from process 0 to the others, inside the handler: a SIGTERM while
    process 0 wrote an epoch-end checkpoint (its stops are held there) and the others waited in a barrier for it
    left each process in a different collective until gloo's 30-minute timeout (exit 4). The handler here does the
    rest of Lightning's: the processes it started get the signal too, and the flag its loops read is set; segcli's
    own handler then ends this process (Terminated), and Lightning's shutdown stops the others."""
    connector = trainer._signal_connector

    def notify(signum, frame) -> None:
        launcher = trainer.strategy.launcher
        if not connector.received_sigterm and launcher is not None:
            launcher.kill(signum)
        connector.received_sigterm = True

    connector._sigterm_notifier_fn = notify


def _unlearnt_note(report: dict, cfg) -> None:
    """A note when best.ckpt predicts no pixel of most classes the val images hold (60 classes after 2 minutes: 58
    at IoU 0, and only the table said so): the model has not learnt them yet."""
    present = [row for row in report.get("classes", []) if row.get("gt_pixels")]
    never = [row["name"] for row in present if not row.get("pred_pixels")]
    if len(present) >= 4 and 2 * len(never) > len(present):
        shown = ", ".join(never[:5]) + (", …" if len(never) > 5 else "")
        weights = "" if cfg.get("loss", {}).get("class_weights") else ", or weight rare classes (loss.class_weights=auto)"
        info(f"train: note: best.ckpt predicts no pixel of {len(never)} of the {len(present)} classes in the val "
             f"images ({shown}): it has not learnt them yet; train longer (trainer.max_time or trainer.max_epochs)"
             f"{weights}")


def _finish(cfg, trainer, module, best, run_dir: Path, card, announce: bool) -> TrainResult:
    """After fit: curves.png, the final evaluation of best.ckpt, the per-class table, the summary lines."""
    from lightning.pytorch.callbacks import EarlyStopping

    from segcli.data.datamodule import validation_off
    from segcli.reports import metrics_table
    from segcli.training.curves import write_curves
    from segcli.training.final_eval import final_eval

    trainer.strategy.barrier()
    stopper = next((c for c in trainer.callbacks if isinstance(c, EarlyStopping) and c.stopped_epoch), None)
    if stopper is not None and trainer.is_global_zero:  # Lightning names max_epochs and max_time, not this
        delta = abs(stopper.min_delta)  # a fraction, as val/mIoU is; the epoch lines print mIoU in points
        info(f"train: early stopping after epoch {stopper.stopped_epoch + 1}: val mIoU has not risen by more than "
             f"{round(delta * 100, 6):g} point{'s' * (delta != 0.01)} in {counted(stopper.patience, 'validation')} "
             f"(early_stopping.patience={stopper.patience}, early_stopping.min_delta={delta:g})")
    report = None
    if cfg.get("final_eval", True):
        report = final_eval(cfg, run_dir, run_dir / "checkpoints" / "best.ckpt")  # every rank: eval shards over them
    score = best.best_model_score if best is not None else None
    if trainer.is_global_zero:
        curves = write_curves(run_dir)
        if report is None and module.last_val_metrics is not None:
            stderr_console().print(metrics_table(module.last_val_metrics, title=f"val ({card.name}), last epoch"))
        last = run_dir / "checkpoints" / "last.ckpt"
        if score is not None:
            info(f"train: best val mIoU {float(score) * 100:.2f} → {best.best_model_path}")
        elif best is None:
            info(f"train: no validation ({validation_off(cfg)}); the trained weights → {last}")
        elif last.is_file():
            info("train: no validation ran; only last.ckpt was written")
        else:
            info("train: no validation ran and no checkpoint was written")
        if report is not None:
            from segcli.training.final_eval import inference_overrides

            given = " ".join(inference_overrides(cfg))  # settings a plain `segcli eval` would not use
            how = (f" (with {given}: `segcli eval --ckpt {run_dir / 'checkpoints' / 'best.ckpt'} {given}` reproduces it; best.ckpt was "
                   "chosen by validation on whole images)") if given else ""
            info(f"train: final evaluation mIoU {report['mIoU'] * 100:.2f}{how} → {run_dir / 'eval' / 'report.json'}")
            _unlearnt_note(report, cfg)
        if curves is not None:
            info(f"train: training curves → {curves}")
        if announce:
            result(str(run_dir))
    return TrainResult(run_dir, float(score) if score is not None else None, int(trainer.current_epoch),
                       report["mIoU"] if report else None)
