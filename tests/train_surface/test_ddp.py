"""`trainer=ddp trainer.accelerator=cpu trainer.devices=2` (gloo) reports the same val mIoU as one process.

Training differs between 1 and 2 processes, so the runs are arranged to validate identical weights:
optim.lr=0 (no parameter moves) on a train split of ONE image with batch size 1, no augmentation.
DDP's sampler pads that split so each rank trains on the same image: BatchNorm running statistics
(the only state training still changes) are then the same as in the 1-process run (the ddp preset's
sync_batchnorm is switched off on the CPU, so every rank computes them over the same batch as the single process). Validation runs on an odd
number of images (5), so a sampler that padded the val split with a repeated image would count it twice.
"""

from __future__ import annotations

import csv
import os
import shutil

import pytest
import yaml
from helpers_surface import SRC, segcli

COMMON = ["trainer.max_epochs=1", "data.num_workers=0", "augment=none", "trainer.enable_progress_bar=false",
          "data.batch_size=1", "optim.lr=0", "trainer.precision=32-true", "model=fpn"]


def _val(run) -> dict:
    rows = [r for r in csv.DictReader((run / "metrics.csv").open()) if r.get("val/mIoU")]
    return {k: rows[-1][k] for k in ("val/mIoU", "val/mAcc", "val/aAcc")}


def _resplit(tiny_data, tmp_path, train: int, val: int):
    """A copy of tiny_data whose train split is its first `train` pairs and val the next `val`: (folder, pairs)."""
    root = tmp_path / "data"
    shutil.copytree(tiny_data, root)
    card = yaml.safe_load((root / "dataset.yaml").read_text())
    pool = card["splits"]["train"] + card["splits"]["val"]
    card["splits"] = {"train": pool[:train], "val": pool[train:train + val]}
    (root / "dataset.yaml").write_text(yaml.safe_dump(card, sort_keys=False))
    return root, pool


def test_two_processes_equal_one(tiny_data, tmp_path):
    root, _ = _resplit(tiny_data, tmp_path, 1, 5)
    one = segcli("train", f"data.root={root}", *COMMON, "trainer=cpu", "final_eval=false",  # compared: metrics.csv
                 "--run-dir", tmp_path / "one")
    assert one.returncode == 0, one.stderr[-2000:]
    two = segcli("train", f"data.root={root}", *COMMON, "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2",
                 "--run-dir", tmp_path / "two", timeout=600)
    assert two.returncode == 0, two.stderr[-3000:]
    assert two.stderr.count("sync_batchnorm is off on the CPU") == 1  # said once, not once per process
    assert "sync_dist=True" not in two.stderr  # Lightning's advice does not apply to the summed confusion matrix
    for once in ("train: run directory", "train: evaluating best.ckpt"):
        assert two.stderr.count(once) == 1, two.stderr[-3000:]
    assert _val(tmp_path / "one") == _val(tmp_path / "two")


def test_ddp_without_run_dir_makes_one_run_directory(tiny_data, tmp_path):
    """The issue's command as a user types it, with no --run-dir: Lightning's launcher runs the command again in
    the second process, which must use the first process's new run directory (it made its own, and the final
    evaluation then failed, exit 4). The progress bar stays on: metrics logged with sync_dist=True deadlocked
    there (rank 0's bar reduced them where the other rank did not)."""
    proc = segcli("train", f"data.root={tiny_data}", "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2",
                  "trainer.max_epochs=1", "data.num_workers=0", "model=fpn", cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = list((tmp_path / "runs" / "train").iterdir())
    assert len(runs) == 1 and proc.stdout.splitlines()[-1] == str(runs[0])
    assert (runs[0] / "eval" / "report.json").is_file(), proc.stderr[-3000:]
    assert (runs[0] / "checkpoints" / "best.ckpt").is_file()


def test_started_by_torchrun_without_run_dir_is_a_usage_error(tiny_data, tmp_path):
    """Processes that torchrun (or srun, mpirun) starts cannot agree on a new run directory's name."""
    proc = segcli("train", f"data.root={tiny_data}", "trainer.max_epochs=1", cwd=tmp_path,
                  env={"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "2"})
    assert proc.returncode == 2 and "--run-dir" in proc.stderr.strip().splitlines()[-1], proc.stderr[-2000:]
    assert not (tmp_path / "runs").exists()


def test_fewer_val_images_than_processes_is_a_usage_error(tiny_data, tmp_path):
    """One val image for two processes failed an assertion in Lightning's sampler (exit 4, "AssertionError: ")."""
    root = tmp_path / "data"
    shutil.copytree(tiny_data, root)
    card = yaml.safe_load((root / "dataset.yaml").read_text())
    card["splits"]["val"] = card["splits"]["val"][:1]
    (root / "dataset.yaml").write_text(yaml.safe_dump(card, sort_keys=False))
    proc = segcli("train", f"data.root={root}", *COMMON, "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2",
                  "--run-dir", tmp_path / "run", timeout=600)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "'val' split has 1 image(s) for 2 processes" in proc.stderr.strip().splitlines()[-1]
    # said once, before any process is started (each process said it), and also without trainer=ddp
    assert proc.stderr.count("segcli: error:") == 1 and not (tmp_path / "run").exists(), proc.stderr[-3000:]
    proc = segcli("train", f"data.root={root}", *COMMON, "trainer.accelerator=cpu", "trainer.devices=3",
                  "--run-dir", tmp_path / "run3", timeout=600)
    assert proc.returncode == 2 and proc.stderr.count("segcli: error:") == 1, proc.stderr[-3000:]
    assert "'val' split has 1 image(s) for 3 processes" in proc.stderr, proc.stderr[-3000:]
    assert not (tmp_path / "run3").exists()


@pytest.mark.parametrize("damaged, other", [
    (1, "segcli: error: process 1 of this run failed (exit 3; its error is above), so this one stopped too"),
    (0, "segcli: error: another process of this run failed (its error is above, or in its own log), so this one "
        "(rank 1) stopped too")])
def test_a_data_error_in_one_process_is_the_runs_error(tiny_data, tmp_path, damaged, other):
    """A damaged train image that one process reads (with seed 0, process 0 reads image 0, process 1 image 1): that
    process printed its one-line error (exit 3), and the other, cut off in a collective ('Connection closed by
    peer'), printed an internal error; when that was the first process, the run ended with exit 4."""
    root, pool = _resplit(tiny_data, tmp_path, 2, 2)
    path = root / pool[damaged]["image"]
    path.write_bytes(path.read_bytes()[:60])
    proc = segcli("train", f"data.root={root}", *COMMON, "data.cache=false", "trainer=ddp", "trainer.accelerator=cpu",
                  "trainer.devices=2", "--run-dir", tmp_path / "run", timeout=600)
    lines = [line for line in proc.stderr.splitlines() if line.startswith("segcli:")]
    assert proc.returncode == 3, proc.stderr[-3000:]
    assert sorted(lines) == sorted([f"segcli: error: {path}: not a readable image (corrupt, truncated or unsupported "
                                    "format); replace or remove it", other])


def test_the_first_process_is_not_killed_by_lightnings_observer_while_it_reports_a_failed_one(tmp_path):
    """Lightning's observer thread in the first process polls the processes it started every 5 s and SIGKILLs them
    all, itself too, once one has ended non-zero. The test above failed once in CI with exit -9: the first process
    had printed 'process 1 of this run failed (exit 3 …)' and was killed before it exited 3."""
    import subprocess
    import sys
    from types import SimpleNamespace

    from lightning.fabric.strategies.launchers.subprocess_script import _ChildProcessObserver

    from segcli.commands.train import _failed_process
    from segcli.errors import OtherProcessFailed

    child = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    trainer = SimpleNamespace(strategy=SimpleNamespace(launcher=SimpleNamespace(procs=[child])))
    observer = _ChildProcessObserver(main_pid=-1, child_processes=trainer.strategy.launcher.procs)
    killed = []
    observer._terminate_all = lambda: killed.append(True)
    peer = _failed_process(trainer, RuntimeError("[gloo] Connection closed by peer [127.0.0.1]:29500"))
    assert isinstance(peer, OtherProcessFailed) and peer.exit_code == 3
    assert "process 1 of this run failed (exit 3" in peer.message
    assert observer._run() is True and not killed  # the observer has nothing left to act on


def _rank_zeros_in(rank: int, init: str, out: str) -> None:
    import torch
    import torch.distributed as dist
    from types import SimpleNamespace

    from segcli.models.optim import rank_zeros

    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
    try:
        trainer = SimpleNamespace(world_size=2, strategy=SimpleNamespace(root_device=torch.device("cpu")))
        value = rank_zeros(trainer, 10.0 + rank)  # each process's own clock
        with open(f"{out}.{rank}", "w") as handle:
            handle.write(repr(value))
    finally:
        dist.destroy_process_group()


def test_the_time_budget_schedule_follows_the_first_processs_clock(tmp_path):
    """Under trainer.max_time each process computed the lr from its own clock: with DDP the lrs differed (9.0606e-4
    and 9.0587e-4 at step 1), the replicas drifted apart, and val mIoU (20.92) was not best.ckpt's (26.28)."""
    import torch.multiprocessing as mp

    out = tmp_path / "value"
    mp.start_processes(_rank_zeros_in, args=(f"file://{tmp_path / 'init'}", str(out)), nprocs=2, start_method="spawn")
    assert [float((tmp_path / f"value.{rank}").read_text()) for rank in (0, 1)] == [10.0, 10.0]


def _ddp_with(hook_source: str, tiny_data, tmp_path, epochs: int, env: dict | None = None):
    """A two-process CPU run with `hook_source` as every process's sitecustomize (and `env` added to the
    environment): (the run, its folder)."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(hook_source)
    run = tmp_path / "run"
    ddp = ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", f"trainer.max_epochs={epochs}",
           "data.num_workers=0", "model=fpn", "trainer.enable_progress_bar=false", "final_eval=false"]
    proc = segcli("train", f"data.root={tiny_data}", *ddp, "--run-dir", run, timeout=180,
                  env={"PYTHONPATH": os.pathsep.join([str(hook), str(SRC)]), **(env or {})})
    return proc, run


_TERM_IN_WRITE = '''
import os, signal
if os.environ.get("LOCAL_RANK", "0") == "0":  # the first process only, as `kill PID` reaches it
    import segcli.training.checkpoints as checkpoints
    write = checkpoints.atomic_write
    def atomic_write(path, *args, **kwargs):
        if str(path).endswith("last.ckpt"):  # inside the stop hold of the epoch-end checkpoint write
            os.kill(os.getpid(), signal.SIGTERM)
        return write(path, *args, **kwargs)
    checkpoints.atomic_write = atomic_write
'''


def test_a_sigterm_during_the_epoch_end_checkpoint_write_stops_every_process(tiny_data, tmp_path):
    """A SIGTERM while the first process wrote last.ckpt (held until the write is done) hung the run until gloo's
    30-minute timeout: Lightning's handler broadcast to processes that waited in a barrier. Now exit 143 within
    seconds, with checkpoints that `--resume` continues to the end."""
    from segcli.inference.backends import read_checkpoint

    proc, run = _ddp_with(_TERM_IN_WRITE, tiny_data, tmp_path, epochs=3)
    assert proc.returncode == 143, proc.stderr[-3000:]
    assert "Detected KeyboardInterrupt" not in proc.stderr  # Lightning's line: segcli's last line names the signal
    assert proc.stderr.strip().splitlines()[-1] == "segcli: terminated (SIGTERM)"
    assert read_checkpoint(run / "checkpoints" / "last.ckpt")["epoch"] == 0
    proc = segcli("train", "--resume", run, timeout=600, env={"OMP_NUM_THREADS": "1"})  # in a fresh interpreter
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert read_checkpoint(run / "checkpoints" / "last.ckpt")["epoch"] == 2


_TERM_THE_SECOND = '''
import os, signal, threading, time
if os.environ.get("LOCAL_RANK") == "1":  # the process Lightning's launcher started, signalled alone (a scheduler)
    def stop():
        last = os.path.join(os.environ["SEGCLI_RUN_DIR"], "checkpoints", "last.ckpt")
        while not os.path.exists(last):
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGTERM)
    threading.Thread(target=stop, daemon=True).start()
'''


_CHILD_STOPPED_AT_START = '''
import os, signal
if os.environ.get("LOCAL_RANK", "0") == "1":  # the second process, as it starts (before it joins the run)
    if os.environ["STOP_WITH"].startswith("exit"):
        os._exit(int(os.environ["STOP_WITH"][4:]))  # exit130: as segcli exits on Ctrl-C
    os.kill(os.getpid(), getattr(signal, os.environ["STOP_WITH"]))
'''


@pytest.mark.parametrize("stop, code, line", [("exit130", 130, "segcli: interrupted"),
                                              ("SIGTERM", 143, "segcli: terminated (SIGTERM)"),
                                              ("SIGKILL", 137, "was killed by SIGKILL while the run's processes "
                                                               "started")])
def test_a_process_stopped_while_the_processes_start_stops_the_run_with_its_code(tiny_data, tmp_path, stop, code,
                                                                                line):
    """Ctrl-C while a DDP run's processes started: the first one waited inside torch for the second, which had
    stopped, until Lightning's observer SIGKILLed it (exit 137, Lightning's 'Forcefully terminating' line, none of
    segcli's)."""
    proc, _ = _ddp_with(_CHILD_STOPPED_AT_START, tiny_data, tmp_path, epochs=1, env={"STOP_WITH": stop})
    assert proc.returncode == code, proc.stderr[-3000:]
    assert "Forcefully terminating" not in proc.stderr
    assert line in proc.stderr.strip().splitlines()[-1], proc.stderr[-3000:]


def test_a_process_failing_while_the_processes_start_leaves_no_run_directory(tiny_data, tmp_path):
    """The second process failed (exit 2) before it joined the run: the first one ended with that failure's line and
    code, but kept the new run directory (config and logs, no checkpoint) that any other failure removes."""
    proc, run = _ddp_with(_CHILD_STOPPED_AT_START, tiny_data, tmp_path, epochs=1, env={"STOP_WITH": "exit2"})
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "process 1 of this run failed (exit 2" in proc.stderr.strip().splitlines()[-1], proc.stderr[-3000:]
    assert not run.exists(), sorted(p.name for p in run.rglob("*"))


def test_a_sigterm_to_the_second_process_alone_stops_the_run_as_a_sigterm(tiny_data, tmp_path):
    """SIGTERM to the second process of `trainer=ddp devices=2` (a scheduler's or torchrun's stop) ended the run with
    exit 4, 'a bug', saying that process 'failed (exit 4; its error is above)' with nothing above. Exit 143 now, the
    line naming the signal and the resume; the checkpoints continue to the end."""
    proc, run = _ddp_with(_TERM_THE_SECOND, tiny_data, tmp_path, epochs=30)
    assert proc.returncode == 143, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines()[-1] == (
        f"segcli: error: process 1 of this run was stopped by SIGTERM, so this one stopped too; `segcli train "
        f"--resume {run}` continues from the last checkpoint")


@pytest.mark.parametrize("code, expected, words", [(143, 143, "stopped by SIGTERM"), (130, 130, "stopped by SIGINT"),
                                                   (-9, 137, "killed by SIGKILL (out of memory?)")])
def test_a_process_stopped_by_a_signal_gives_the_runs_exit_code(code, expected, words):
    from segcli.errors import OtherProcessStopped

    err = OtherProcessStopped(1, code, "runs/x")
    assert err.exit_code == expected and words in err.message and "--resume runs/x" in err.message
