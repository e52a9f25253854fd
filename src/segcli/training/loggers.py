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

    def save(self) -> None:
        """Lightning's save, undone in full when it fails (a full disk): Lightning widens its header in memory
        before it rewrites metrics.csv, so after a failed rewrite the next save (its finalize, on the way out) appended
        rows of more fields than the file's header (a later `--resume` then stopped with an internal error), and an
        append cut short left half a row. The header goes back, the file is cut back to where it was, and the
        error names metrics.csv."""
        from segcli.inference.io import writing

        keys = list(self.metrics_keys)
        self._whole = os.path.getsize(self.metrics_file_path) if os.path.isfile(self.metrics_file_path) else None
        try:
            with writing(self.metrics_file_path):
                super().save()
        except BaseException:
            self.metrics_keys = keys  # after a rewrite that did happen, the next save only rewrites it the same
            _cut_back(self.metrics_file_path, self._whole)
            raise

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
        data = buffer.getvalue().encode("utf-8")
        atomic_write_bytes(self.metrics_file_path, data)
        self._whole = len(data)  # where save cuts the file back to if the append after this fails


def _cut_back(path: str, size: int | None) -> None:
    """`path` back to its first `size` bytes (rows appended since, whole or half, go), or removed when it did not
    exist (size None); cutting a file needs no free space. Best effort: the write's own error is the one reported."""
    try:
        if size is None:
            os.unlink(path)
        elif os.path.getsize(path) > size:
            os.truncate(path, size)
    except OSError:
        pass


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
    """True when the `tensorboard` package is installed and imports (segcli does not depend on it). One that is
    installed but fails to import (built against another protobuf) stopped the run; it now goes on with metrics.csv
    alone, after a note."""
    if importlib.util.find_spec("tensorboard") is None:
        return False
    try:
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401  what Lightning's TensorBoardLogger imports
    except Exception as err:  # noqa: BLE001  any failure of an optional package's import
        from segcli.console import first_process, info
        from segcli.errors import first_line, pip_install

        if first_process():
            info(f"train: note: tensorboard is installed but cannot be imported ({first_line(err)}); this run logs to "
                 f"metrics.csv only (to mend it: {pip_install()} --force-reinstall tensorboard)")
        return False
    return True


def make_loggers(run_dir: Path) -> list:
    """[CSV] or [CSV, TensorBoard (RUN_DIR/tensorboard/)]; the CSV logger comes first (trainer.logger)."""
    loggers = [RunCSVLogger(run_dir)]
    if tensorboard_available():
        from lightning.pytorch.loggers import TensorBoardLogger

        loggers.append(TensorBoardLogger(str(run_dir), name="tensorboard", version="", default_hp_metric=False))
    return loggers
