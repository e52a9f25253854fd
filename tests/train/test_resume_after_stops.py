"""--resume of runs that stopped on their own: early stopping, a wall-clock budget first given on resume, an
epoch limit lowered below what an unlimited run reached; and the half-written checkpoints a killed run leaves."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers_train import epochs_run, rows, segcli, tiny, val_rows

from segcli.inference.io import _partial_prefix


def test_resuming_an_early_stopped_run_trains_no_further_epoch(tiny_data, tmp_path, capsys):
    """Before: each --resume trained one more epoch (Lightning does not save that it should stop) and could replace
    best.ckpt: what a run killed in its final evaluation, then resumed, did."""
    run_dir = tmp_path / "run"
    stopping = ("trainer.max_epochs=6", "early_stopping.patience=1", "early_stopping.min_delta=0.5", "seed=0",
                "final_eval=false")
    code, _, err = segcli(["train", *tiny(tiny_data, *stopping), "--run-dir", run_dir], capsys)
    assert code == 0, err
    assert "early stopping after epoch 2" in err
    rows, best = val_rows(run_dir), (run_dir / "checkpoints" / "best.ckpt").read_bytes()
    for _ in range(2):
        code, _, err = segcli(["train", "--resume", run_dir], capsys)
        assert code == 0, err
        assert "early stopping after epoch 2" in err
        assert val_rows(run_dir) == rows and epochs_run(run_dir) == 2
        assert (run_dir / "checkpoints" / "best.ckpt").read_bytes() == best


def test_a_time_budget_first_given_on_resume_counts_the_sessions_before_it(tiny_data, tmp_path, capsys):
    """README: trainer.max_time on --resume is 'a budget over all sessions of the run'. Before: a run started without
    one kept no training time, so the budget counted from the resume (3 more epochs in the probe)."""
    run_dir = tmp_path / "run"
    code, _, err = segcli(["train", *tiny(tiny_data, "trainer.max_epochs=2", "final_eval=false"),
                           "--run-dir", run_dir], capsys)
    assert code == 0, err
    code, _, err = segcli(["train", "--resume", run_dir, "trainer.max_epochs=50", "trainer.max_time=00:00:00:01"],
                          capsys)
    assert code == 0, err
    assert epochs_run(run_dir) == 2


def test_lowering_max_epochs_of_an_unlimited_run_below_its_epochs_is_segclis_own_error(tiny_data, tmp_path, capsys):
    """Before: the check was skipped when the run had max_epochs=-1, and Lightning's 'You restored a checkpoint with
    current_epoch=…, but you have set Trainer(max_epochs=…)' came after loading, with no fix."""
    run_dir = tmp_path / "run"
    # no epoch limit; a step limit ends it after 2 epochs of 2 batches (a 4-s max_time reached 1 epoch under load)
    code, _, err = segcli(["train", *tiny(tiny_data, "trainer.max_epochs=-1", "+trainer.max_steps=4",
                                          "final_eval=false"), "--run-dir", run_dir], capsys)
    assert code == 0, err
    assert len({epoch for epoch, _, _ in val_rows(run_dir)}) == 2, err
    config = (run_dir / "config.yaml").read_bytes()
    code, _, err = segcli(["train", "--resume", run_dir, "trainer.max_epochs=1"], capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith("segcli: error: trainer.max_epochs=1: give a whole number >= the ")
    assert "epochs the run has reached, or -1 for no limit" in lines[0] and "Trainer(" not in err
    assert (run_dir / "config.yaml").read_bytes() == config


def test_a_killed_writers_half_checkpoint_is_removed_at_the_next_save(tiny_data, tmp_path, capsys):
    """Before: '.last.ckpt.<random>.tmp' files a SIGKILL left mid-write (tens of MB each) stayed for good."""
    run_dir = tmp_path / "run"
    code, _, err = segcli(["train", *tiny(tiny_data, "trainer.max_epochs=1", "final_eval=false"),
                           "--run-dir", run_dir], capsys)
    assert code == 0, err
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = int(gone.stdout)  # a process that has ended
    checkpoints = run_dir / "checkpoints"
    stale = checkpoints / f".{_partial_prefix('last.ckpt')}{dead}-k3j9x2.tmp"
    alive = checkpoints / f".{_partial_prefix('last.ckpt')}{os.getppid()}-q8w1z0.tmp"  # a running writer's
    for path in (stale, alive):
        path.write_bytes(b"\0" * 1024)
    code, _, err = segcli(["train", "--resume", run_dir, "trainer.max_epochs=2"], capsys)
    assert code == 0, err
    assert not stale.exists() and alive.exists()
    assert sorted(p.name for p in checkpoints.iterdir() if not p.name.startswith(".")) == ["best.ckpt", "last.ckpt"]


def test_atomic_writes_name_their_temp_files_by_writer():
    import tempfile

    from segcli.inference.io import atomic_write

    folder = Path(tempfile.mkdtemp())
    seen = []
    atomic_write(folder / "x.bin", lambda handle: seen.extend(p.name for p in folder.iterdir()))  # mid-write
    assert seen[0].startswith(f".{_partial_prefix('x.bin')}{os.getpid()}-") and seen[0].endswith(".tmp")
    assert [p.name for p in folder.iterdir()] == ["x.bin"]


def _stopped_fit(how: str):
    def fit(self, *args, **kwargs):
        from lightning.pytorch.trainer.states import TrainerStatus

        if how == "ctrl-c before lightning's handler":
            raise KeyboardInterrupt
        self.state.status = TrainerStatus.INTERRUPTED  # Lightning's graceful shutdown after Ctrl-C or SIGTERM
        if how == "lightning's exit":
            raise SystemExit(1)
    return fit


@pytest.mark.parametrize("how", ["ctrl-c before lightning's handler", "lightning's exit", "lightning's return"])
def test_a_resume_stopped_before_its_first_checkpoint_leaves_the_config_as_it_was(how, tiny_data, tmp_path, capsys,
                                                                                  monkeypatch):
    """README: a resume that fails before it writes a new last.ckpt leaves config.yaml as it was. One stopped by
    Ctrl-C or SIGTERM kept its overrides (trainer.max_epochs=8): a later plain --resume trained to 8 epochs, and
    trainer.max_epochs=6 was refused as lower than 'the run's 8'."""
    import lightning.pytorch as pl

    run_dir = tmp_path / "run"
    code, _, err = segcli(["train", *tiny(tiny_data, "trainer.max_epochs=1", "final_eval=false"),
                           "--run-dir", run_dir], capsys)
    assert code == 0, err
    saved = (run_dir / "config.yaml").read_bytes()
    with monkeypatch.context() as patched:
        patched.setattr(pl.Trainer, "fit", _stopped_fit(how))
        code, _, err = segcli(["train", "--resume", run_dir, "trainer.max_epochs=8"], capsys)
    assert code == 130, err
    assert (run_dir / "config.yaml").read_bytes() == saved
    code, _, err = segcli(["train", "--resume", run_dir, "trainer.max_epochs=2"], capsys)
    assert code == 0, err
    assert epochs_run(run_dir) == 2


@pytest.mark.parametrize("signum", ["SIGTERM", "SIGINT"])
def test_a_stop_right_after_best_ckpt_waits_for_the_epochs_last_ckpt(signum, tiny_data, tmp_path, capsys,
                                                                     monkeypatch):
    """A Ctrl-C or SIGTERM between an epoch's best.ckpt and last.ckpt writes left a best.ckpt that no last.ckpt
    recorded: in the first epoch no last.ckpt at all, so `--resume` refused the run. Held until last.ckpt is
    written: the run stops (130/143) with both, and a resume trains on to the end."""
    import signal

    from lightning.pytorch.callbacks import ModelCheckpoint

    from segcli.inference.backends import read_checkpoint

    write = ModelCheckpoint._save_checkpoint

    def then_stop(self, trainer, filepath):
        write(self, trainer, filepath)
        signal.raise_signal(getattr(signal, signum))

    run_dir = tmp_path / "run"
    with monkeypatch.context() as patched:
        patched.setattr(ModelCheckpoint, "_save_checkpoint", then_stop)
        code, _, err = segcli(["train", *tiny(tiny_data, "trainer.max_epochs=3", "final_eval=false"),
                               "--run-dir", run_dir], capsys)
    assert code == {"SIGTERM": 143, "SIGINT": 130}[signum], err
    assert read_checkpoint(run_dir / "checkpoints" / "last.ckpt")["epoch"] == 0
    assert (run_dir / "checkpoints" / "best.ckpt").is_file()
    code, _, err = segcli(["train", "--resume", run_dir], capsys)
    assert code == 0, err
    assert epochs_run(run_dir) == 3


@pytest.mark.parametrize("signum", ["SIGTERM", "SIGINT"])
def test_a_stop_during_an_epochs_last_ckpt_keeps_that_epochs_metrics_row(signum, tiny_data, tmp_path, capsys,
                                                                         monkeypatch):
    """Lightning logs an epoch's train/loss_epoch after the epoch-end hooks that write last.ckpt: a Ctrl-C or SIGTERM
    during that write stopped the run before the row reached metrics.csv, and the resume (which starts at the next
    epoch) never wrote it, so curves.png and a sweep's epoch count missed that epoch. Held until it is logged."""
    import signal

    from segcli.training.checkpoints import LastCheckpoint

    save = LastCheckpoint._save

    def then_stop(self, trainer, pl_module):
        save(self, trainer, pl_module)
        if trainer.current_epoch == 1:
            signal.raise_signal(getattr(signal, signum))

    run_dir = tmp_path / "run"
    with monkeypatch.context() as patched:
        patched.setattr(LastCheckpoint, "_save", then_stop)
        code, _, err = segcli(["train", *tiny(tiny_data, "trainer.max_epochs=3", "final_eval=false"),
                               "--run-dir", run_dir], capsys)
    assert code == {"SIGTERM": 143, "SIGINT": 130}[signum], err
    trained = lambda: [r["epoch"] for r in rows(run_dir) if r.get("train/loss_epoch")]  # noqa: E731
    assert trained() == ["0", "1"]
    code, _, err = segcli(["train", "--resume", run_dir], capsys)
    assert code == 0, err
    assert trained() == ["0", "1", "2"] and epochs_run(run_dir) == 3


def test_a_stop_in_the_validation_after_a_step_checkpoint_on_the_epochs_last_step_resumes_that_epochs_end(
        tiny_data, tmp_path, capsys, monkeypatch):
    """save_every_n_steps=N where N divides the epoch: last.ckpt was written at the epoch's last step, and a stop
    during the validation after it made --resume start the next epoch, skipping that epoch's validation (best.ckpt
    never saw those weights) and its train/loss_epoch row, without a word. The epoch's end writes last.ckpt anyway."""
    import signal

    from segcli.models.module import SegModule

    check = SegModule.on_validation_start

    def stop_in_epoch_2(self):
        check(self)
        if self.current_epoch == 1 and not self.trainer.sanity_checking:
            signal.raise_signal(signal.SIGTERM)

    run_dir = tmp_path / "run"
    with monkeypatch.context() as patched:
        patched.setattr(SegModule, "on_validation_start", stop_in_epoch_2)
        code, _, err = segcli(["train", *tiny(tiny_data, "trainer.max_epochs=3", "data.batch_size=2",
                                              "trainer.limit_train_batches=3", "save_every_n_steps=3",
                                              "final_eval=false"), "--run-dir", run_dir], capsys)
    assert code == 143, err
    code, _, err = segcli(["train", "--resume", run_dir], capsys)
    assert code == 0, err
    assert [e for e, _, _ in val_rows(run_dir)] == ["0", "1", "2"]
    assert [r["epoch"] for r in rows(run_dir) if r.get("train/loss_epoch")] == ["0", "1", "2"]
