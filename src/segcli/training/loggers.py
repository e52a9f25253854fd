"""Loggers of `segcli train`: metrics.csv in the run directory always, TensorBoard when it is installed."""

from __future__ import annotations

import csv
import importlib.util
import os
from pathlib import Path

from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter

METRICS = "metrics.csv"


class _AppendingWriter(ExperimentWriter):
    """Lightning's CSV writer deletes an existing metrics.csv; a resumed run appends to it instead
    (segcli.training.resume has already cut it back to the rows before its checkpoint)."""

    def _check_log_dir_exists(self) -> None:
        if os.path.isfile(self.metrics_file_path):
            with open(self.metrics_file_path, newline="") as handle:
                self.metrics_keys = next(csv.reader(handle), [])


class RunCSVLogger(CSVLogger):
    """RUN_DIR/metrics.csv (one row per logging step; epoch-level values in their own rows) and hparams.yaml."""

    def __init__(self, run_dir: Path):
        super().__init__(str(run_dir), name="", version="")

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _AppendingWriter(log_dir=self.log_dir)
        return self._experiment


def tensorboard_available() -> bool:
    """True when the `tensorboard` package can be imported (segcli does not depend on it)."""
    return importlib.util.find_spec("tensorboard") is not None


def make_loggers(run_dir: Path) -> list:
    """[CSV] or [CSV, TensorBoard (RUN_DIR/tensorboard/)]; the CSV logger comes first (trainer.logger)."""
    loggers = [RunCSVLogger(run_dir)]
    if tensorboard_available():
        from lightning.pytorch.loggers import TensorBoardLogger

        loggers.append(TensorBoardLogger(str(run_dir), name="tensorboard", version="", default_hp_metric=False))
    return loggers
