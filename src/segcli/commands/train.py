"""segcli train: compose data + model + loss + optimiser + trainer, fit, keep best/last checkpoints."""

from __future__ import annotations

import warnings
from pathlib import Path

from segcli.config import to_container
from segcli.console import info, result, stderr_console


def run(cfg) -> Path:
    """Train; returns (and prints as the last stdout line) the run directory."""
    import lightning as L
    import torch
    from lightning.pytorch.callbacks import ModelCheckpoint, RichProgressBar
    from lightning.pytorch.loggers import CSVLogger

    from segcli.data.card import load_card
    from segcli.data.channels import fit_normalization
    from segcli.data.datamodule import SegDataModule, input_scale
    from segcli.models.factory import build_model, model_kwargs, size_multiple
    from segcli.models.module import SegModule
    from segcli.models.trainer_args import check as check_trainer
    from segcli.models.trainer_args import lightning_config_errors
    from segcli.reports import metrics_table
    from segcli.runs import make_run_dir, model_meta, save_config

    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*LeafSpec.*")
    warnings.filterwarnings("ignore", ".*Experiment logs directory.*exists and is not empty.*")
    L.seed_everything(int(cfg.seed), workers=True, verbose=False)
    card = load_card(cfg.data.root)
    kwargs = model_kwargs(to_container(cfg.model), card.num_classes)
    probe = build_model(**kwargs)  # validates arch/encoder before anything is written; gives the stride
    meta = model_meta(card, kwargs, size_multiple(probe), cfg.data.root, cfg.data.val_split,
                      train_crop=cfg.augment.get("crop_size"), input_scale=input_scale(cfg.data))
    meta = fit_normalization(meta, card, cfg.data.train_split)
    del probe
    for split in (cfg.data.train_split, cfg.data.val_split):
        card.pairs(split)  # an unknown split fails here, before the run directory exists
    # Loss (class weights), encoder weights and data settings fail here too, before anything is written.
    module = SegModule(meta, to_container(cfg.loss), to_container(cfg.optim), to_container(cfg.sched),
                       encoder_weights=cfg.model.encoder_weights, channels_last=bool(cfg.channels_last),
                       compile=bool(cfg.model.get("compile", False)))
    datamodule = SegDataModule(to_container(cfg.data), to_container(cfg.augment), card=card,
                               channels=int(cfg.model.in_channels))
    trainer_args = {k: v for k, v in to_container(cfg.trainer).items() if v is not None}
    check_trainer(trainer_args)
    run_dir = make_run_dir(cfg.run_dir, "train")
    save_config(run_dir, cfg)
    info(f"train: run directory {run_dir}")

    checkpoint = ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="best", monitor="val/mIoU", mode="max",
                                 save_last=True, enable_version_counter=False, auto_insert_metric_name=False)
    callbacks = [checkpoint]
    if trainer_args.get("enable_progress_bar", True):
        callbacks.append(RichProgressBar(leave=True, console_kwargs={"stderr": True}))  # stdout is for results
    with lightning_config_errors():
        trainer = L.Trainer(**trainer_args, default_root_dir=str(run_dir), callbacks=callbacks,
                            logger=CSVLogger(str(run_dir), name="", version=""), enable_model_summary=False)
    torch.set_float32_matmul_precision("high")
    try:
        trainer.fit(module, datamodule=datamodule)
    except SystemExit:  # Lightning turns Ctrl-C into exit(1) after its graceful shutdown
        if trainer.interrupted:
            raise KeyboardInterrupt from None
        raise
    if trainer.interrupted:
        raise KeyboardInterrupt

    if trainer.is_global_zero:
        if module.last_val_metrics is not None:
            stderr_console().print(metrics_table(module.last_val_metrics, title=f"val ({card.name}), last epoch"))
        best = checkpoint.best_model_score
        info(f"train: best val mIoU {float(best) * 100:.2f} → {checkpoint.best_model_path}" if best is not None
             else "train: no validation ran; only last.ckpt was written")
        result(str(run_dir))
    return run_dir
