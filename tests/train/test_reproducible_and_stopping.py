"""Seeded runs are reproducible on the CPU (0 and 2 loader workers); early stopping and max_time stop a run."""

from __future__ import annotations

from helpers_train import epochs_run, popen, segcli, tiny, val_rows


def test_same_seed_same_metrics_in_process(tiny_data, reference_run, tmp_path, capsys):
    code, _, err = segcli(["train", *tiny(tiny_data, "trainer.max_epochs=3", "final_eval=false"),
                           "--run-dir", tmp_path / "again"], capsys)
    assert code == 0, err
    assert val_rows(tmp_path / "again") == val_rows(reference_run)


def test_same_seed_same_metrics_with_two_workers(tiny_data, tmp_path):
    # Subprocesses: forking loader workers from this long-lived test process (which has used OpenCV's
    # thread pool in earlier in-process runs) can deadlock, as it can in any forking program.
    runs = []
    for name in ("a", "b"):
        proc = popen(["train", *tiny(tiny_data, "data.num_workers=2", "trainer.max_epochs=2", "final_eval=false"),
                      "--run-dir", tmp_path / name], tmp_path, tmp_path / f"{name}.err")
        assert proc.wait(timeout=600) == 0, (tmp_path / f"{name}.err").read_text()[-2000:]
        runs.append(val_rows(tmp_path / name))
    assert runs[0] == runs[1] and len(runs[0]) == 2


def test_early_stopping_stops_when_val_miou_does_not_improve(tiny_data, tmp_path, capsys):
    # lr 0: val mIoU never changes, so patience 1 stops after the second validation.
    code, _, err = segcli(["train", *tiny(tiny_data, "optim.lr=0", "trainer.max_epochs=6", "early_stopping.patience=1",
                                          "final_eval=false"), "--run-dir", tmp_path / "run"], capsys)
    assert code == 0, err
    assert epochs_run(tmp_path / "run") == 2
    # allowed, as torch allows it, but it trains nothing: said once (it was silent)
    assert err.count("train: note: optim.lr=0: no optimiser step changes a weight") == 1, err


def test_max_time_stops_training(tiny_data, tmp_path, capsys):
    code, out, err = segcli(["train", *tiny(tiny_data, "trainer.max_epochs=10000", "trainer.max_time=00:00:00:03",
                                            "final_eval=false"), "--run-dir", tmp_path / "run"], capsys)
    assert code == 0, err
    assert 1 <= epochs_run(tmp_path / "run") < 10000
    assert (tmp_path / "run" / "checkpoints" / "best.ckpt").is_file()


def test_max_time_validates_the_weights_it_stops_with(tiny_data, tmp_path, capsys):
    """A time budget that ends between check_val_every_n_epoch epochs still validates the final weights."""
    code, _, err = segcli(["train", *tiny(tiny_data, "trainer.max_epochs=10000", "trainer.max_time=00:00:00:03",
                                          "trainer.check_val_every_n_epoch=1000", "final_eval=false"),
                           "--run-dir", tmp_path / "run"], capsys)
    assert code == 0, err
    rows = val_rows(tmp_path / "run")
    assert len(rows) == 1 and int(rows[0][0]) < 999  # validated once, at the epoch the budget ran out
    assert (tmp_path / "run" / "checkpoints" / "best.ckpt").is_file()


def test_bad_patience_is_a_usage_error_before_the_run_dir(tiny_data, tmp_path, capsys):
    code, _, err = segcli(["train", *tiny(tiny_data, "early_stopping.patience=0"), "--run-dir", tmp_path / "run"], capsys)
    assert code == 2 and "early_stopping.patience" in err
    assert not (tmp_path / "run").exists()


def test_a_deferred_loss_check_stops_a_diverged_run_at_the_same_step(tiny_data, tmp_path, capsys, monkeypatch):
    """The deferred finite-loss check (how it runs on a GPU) in a whole run: optim.lr=1e30 sends the loss to NaN;
    the run stops with exit 1 and the same message, naming the same step, as with the check made at once."""
    from segcli.models.module import SegModule

    args = tiny(tiny_data, "optim.lr=1e30", "trainer.max_epochs=6")
    code, _, now = segcli(["train", *args, "--run-dir", tmp_path / "now"], capsys)
    assert code == 1 and "training diverged" in now, now
    monkeypatch.setattr(SegModule, "_defers_check", lambda self, loss: True)
    code, _, deferred = segcli(["train", *args, "--run-dir", tmp_path / "deferred"], capsys)
    assert code == 1, deferred
    line = lambda text: next(x for x in text.splitlines() if "training diverged" in x)  # noqa: E731
    assert line(deferred) == line(now)


def test_val_logits_that_overflow_stop_the_run_as_diverged(tiny_data, tmp_path, capsys, monkeypatch):
    """Finite weights whose logits overflow to inf/NaN (optim.lr=1e5): NaN argmaxes to class 0, so validation
    scored the model as predicting class 0 everywhere (val mIoU 5.37) and kept it as best.ckpt, which eval then
    refused (exit 3). Now the run stops as diverged (exit 1) and no val mIoU is logged for it."""
    import segcli.models.module as module

    scaled = module.forward_scaled
    monkeypatch.setattr(module, "forward_scaled", lambda *a, **k: scaled(*a, **k) * float("inf"))  # val only
    code, _, err = segcli(["train", *tiny(tiny_data, "trainer.max_epochs=2"), "--run-dir", tmp_path / "run"], capsys)
    assert code == 1, err
    line = next(x for x in err.splitlines() if x.startswith("segcli: error:"))
    assert "training diverged: " in line and "of the val logits after step" in line and "(a float overflow)" in line
    assert not (tmp_path / "run" / "checkpoints" / "best.ckpt").exists()
    assert not (tmp_path / "run").exists() or not val_rows(tmp_path / "run")
