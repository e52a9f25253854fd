"""ema.decay: validation, best.ckpt and eval use the moving average of the weights; resume continues it."""

from __future__ import annotations

import json
import signal

import torch

from helpers_train import epochs_run, popen, rows, segcli, start_and_wait_for_last, tiny, val_rows


def _best_logged(run_dir) -> float:
    return max(float(r["val/mIoU"]) for r in rows(run_dir) if r.get("val/mIoU"))


def _eval_miou(ckpt, capsys) -> float:
    # One image per forward pass, as validation runs (data.val_batch_size=1): oneDNN may compute a batch of 4 in
    # other last bits than 4 single images, which flipped a near-tie pixel on an AVX2 CPU (1.6e-5 mIoU).
    code, out, err = segcli(["eval", "--ckpt", ckpt, "--json", "-", "inference.batch_size=1"], capsys)
    assert code == 0, err
    return json.loads(out)["mIoU"]


def test_decay_zero_is_the_plain_run(tiny_data, reference_run, tmp_path, capsys):
    # decay 0: the "average" is the latest weights and BatchNorm statistics, so every validation matches
    code, _, err = segcli(["train", *tiny(tiny_data, "trainer.max_epochs=3", "ema.decay=0", "final_eval=false"),
                           "--run-dir", tmp_path / "run"], capsys)
    assert code == 0, err
    assert val_rows(tmp_path / "run") == val_rows(reference_run)


def test_validation_best_ckpt_and_eval_agree_on_the_average(tiny_data, reference_run, tmp_path, capsys):
    run_dir = tmp_path / "run"
    code, _, err = segcli(["train", *tiny(tiny_data, "trainer.max_epochs=3", "ema.decay=0.7", "final_eval=false"),
                           "--run-dir", run_dir], capsys)  # the eval below is the check
    assert code == 0, err
    assert val_rows(run_dir) != val_rows(reference_run)  # the average is validated, not the latest weights
    best = run_dir / "checkpoints" / "best.ckpt"
    # best.ckpt holds the weights its val/mIoU was measured on: eval of it gives the logged best
    assert abs(_eval_miou(best, capsys) - _best_logged(run_dir)) < 1e-6
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert "current_model_state" in last  # both the latest weights and the average, for --resume
    key = next(k for k, v in last["state_dict"].items() if v.is_floating_point() and v.numel() > 1)
    assert not torch.equal(last["state_dict"][key], last["current_model_state"][key])


def _in_a_fresh_process(args, tmp_path) -> None:
    proc = popen(args, tmp_path, tmp_path / "stderr.txt")
    assert proc.wait(timeout=600) == 0, (tmp_path / "stderr.txt").read_text()[-2000:]


def test_sigkill_then_resume_continues_the_average(tiny_data, tmp_path):
    # Every part runs in a fresh process: in one full `make test` the in-process run's epoch-0 val mIoU differed
    # from a fresh process's in the 4th digit (not reproduced alone, nor in subsets): the test process's state,
    # not resume, which this test is about.
    # Two epochs: killed once epoch 0's last.ckpt exists, the resumed process trains and validates epoch 1 from the
    # average that last.ckpt holds (an average started afresh, or from the current weights, validates otherwise).
    args = tiny(tiny_data, "trainer.max_epochs=2", "ema.decay=0.7", "final_eval=false")
    _in_a_fresh_process(["train", *args, "--run-dir", tmp_path / "whole"], tmp_path)
    proc = start_and_wait_for_last(args, tmp_path / "killed", tmp_path)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL
    assert epochs_run(tmp_path / "killed") < 2  # killed mid-run: there is an epoch left to resume
    _in_a_fresh_process(["train", "--resume", tmp_path / "killed"], tmp_path)
    assert epochs_run(tmp_path / "killed") == 2
    assert val_rows(tmp_path / "killed") == val_rows(tmp_path / "whole")


def test_bad_decay_is_a_usage_error_before_the_run_dir(tiny_data, tmp_path, capsys):
    for bad in ("1.0", "-0.1", "often"):
        code, _, err = segcli(["train", *tiny(tiny_data, f"ema.decay={bad}"), "--run-dir", tmp_path / "run"], capsys)
        assert code == 2 and "ema.decay" in err and len(err.strip().splitlines()) == 1, err
        assert not (tmp_path / "run").exists()
