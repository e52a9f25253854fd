"""Run directories, the saved resolved config, and the self-description stored with models."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

from segcli import __version__
from segcli.data.stats import MIN_STD
from segcli.inference.io import atomic_write_bytes


def make_run_dir(run_dir: str | None, command: str) -> Path:
    """The given directory, or runs/<command>/<YYYYmmdd-HHMMSS>[-N] (never an existing one). A new name is taken by
    making its folder (mkdir fails if it exists), not by looking first: two runs started within the same second (CI
    jobs, a shell loop with &) both saw the name free, shared the folder, and the second stopped at its lock."""
    if run_dir:
        path = Path(run_dir)
        with _making(path, "give a --run-dir you can write to"):
            path.mkdir(parents=True, exist_ok=True)
        return path.resolve()
    base = Path("runs") / command / time.strftime("%Y%m%d-%H%M%S")
    with _making(base.parent.resolve(), "start it in a folder you can write to, or give --run-dir DIR"):
        base.parent.mkdir(parents=True, exist_ok=True)
    path, n = base, 1
    while True:
        try:
            path.mkdir()
            return path.resolve()
        except FileExistsError:
            path, n = Path(f"{base}-{n}"), n + 1


@contextlib.contextmanager
def _making(folder: Path, fix: str):
    """A run directory that cannot be made (a read-only file system, permissions, a full disk) is one line naming
    it and what to do: it named the folder Python failed on ("runs: Read-only file system; check the path, …"),
    with no word of --run-dir."""
    from segcli.errors import DataError

    try:
        yield
    except FileExistsError:
        raise
    except OSError as err:
        raise DataError(f"{folder}: cannot make the run directory ({err.strerror or err}); {fix}") from None


def lock_folder(handle: int) -> bool:
    """Take an exclusive advisory lock (flock) on the open folder `handle` without waiting: True once held; False
    where the file system keeps no locks (ENOLCK on some network and FUSE mounts), so the caller goes on unheld, as
    where flock does not exist; BlockingIOError while another process holds it. The system releases it when the
    process ends in any way, SIGKILL included, and it leaves no file behind."""
    import fcntl

    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise
    except OSError:
        return False
    return True


@contextlib.contextmanager
def held_run_dir(run_dir: Path, what: str):
    """Hold RUN_DIR for this process while it trains there: a second `segcli train` on the same folder (a
    `--resume` started twice, or beside the run it would continue) would interleave its rows into metrics.csv and
    overwrite the other's checkpoints (lock_folder). `what` completes the error's fix. Where flock does not exist
    (Windows), or the file system keeps no locks, nothing is held."""
    try:
        import fcntl  # noqa: F401  (only to know that flock exists here)
    except ImportError:
        yield run_dir
        return
    handle = os.open(run_dir, os.O_RDONLY)
    try:
        try:
            if not lock_folder(handle):
                from segcli.console import first_process, info

                if first_process():
                    info(f"train: note: {run_dir} is on a file system that keeps no locks: a second segcli train "
                         "started in it now would not be refused")
        except BlockingIOError:
            from segcli.errors import ConfigError

            raise ConfigError(f"{run_dir}: another segcli train is running in this run directory now; {what}") from None
        yield run_dir
    finally:
        os.close(handle)  # releases the lock


def save_config(run_dir: Path, cfg) -> Path:
    """Write the resolved config as run_dir/config.yaml."""
    from segcli.config import to_yaml

    path = run_dir / "config.yaml"
    atomic_write_bytes(path, to_yaml(cfg).encode("utf-8"))
    return path


def card_normalization(card) -> dict:
    """{"mean", "std"} of an RGB model trained on `card`: its statistics (ImageNet's where a card has none), each std
    at least MIN_STD (cards written before that floor)."""
    stats = card.stats or {}
    return {"mean": list(stats.get("mean", [0.485, 0.456, 0.406])),
            "std": [max(float(v), MIN_STD) for v in stats.get("std", [0.229, 0.224, 0.225])]}


def model_meta(card, model_kwargs: dict, size_multiple: int, val_split: str | None,
               train_crop: list[int] | None = None, input_scale: float = 1.0, min_size: int = 0) -> dict:
    """What a checkpoint or exported model carries so that it can be used with nothing else.

    train_crop: the [H, W] crop it was trained on (sliding-window inference defaults its tile to it).
    input_scale: the factor images are resized by before the network (data.input_scale).
    min_size: the smallest input side the network runs on (inference pads smaller inputs up to it)."""
    return {
        "segcli_version": __version__,
        "classes": list(card.classes),
        "palette": [list(map(int, c)) for c in card.palette],
        "ignore_index": int(card.ignore_index),
        **card_normalization(card),
        "input": "float32 NCHW RGB, (x / 255 - mean) / std",
        "image_range": card.image_range,  # deeper-than-8-bit images: the values mapped onto x = 0..255
        "size_multiple": int(size_multiple),
        "min_size": int(min_size),
        "train_crop": [int(v) for v in train_crop] if train_crop else None,
        "input_scale": float(input_scale),
        "model": model_kwargs,
        # the card's folder (also when data.root named DIR/dataset.yaml itself), or its file when named otherwise
        "dataset": {"name": card.name, "root": str(Path(card.location).resolve()), "val_split": val_split},
    }
