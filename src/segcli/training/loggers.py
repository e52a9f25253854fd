"""Loggers of `segcli train`: metrics.csv in the run directory always, TensorBoard when it is installed."""

from __future__ import annotations

import csv
import importlib.util
import io
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

    def _rewrite_with_new_header(self, fieldnames: list[str]) -> None:
        """When a metric appears for the first time (val/mIoU at the first validation), Lightning empties
        metrics.csv and writes it again under the wider header: a kill in between (SIGKILL, pre-emption, just after
        last.ckpt was written) lost every row. Written to a temp file and renamed over it instead."""
        from segcli.inference.io import atomic_write_bytes

        with open(self.metrics_file_path, newline="") as handle:
            rows = list(csv.DictReader(handle))
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=fieldnames)
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_bytes(self.metrics_file_path, buffer.getvalue().encode("utf-8"))


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
