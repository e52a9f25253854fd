"""What each command does when a write fails for the system's reason: a full disk (simulated, and a real full
tmpfs where the tests may mount one), a quota, a read-only file system. One line naming the output, exit 3, nothing
half-written left, and the next run (--resume, --skip-existing, a sweep's --resume) goes on once there is room."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from helpers_reliability import (assert_clean, error_line, files_under, noise, only_error, output_commands,
                                 write_image, write_inputs)


# ----------------------------------------------------------------------------- disk full
@pytest.fixture
def disk_full(monkeypatch):
    """disk_full(DIR, after=0, room=0): after `after` more files, a file opened by os.fdopen under DIR takes `room`
    bytes, and every write past them fails with ENOSPC (what the atomic writer's temp files get from a full disk)."""
    real = os.fdopen
    budget = [0, 0]

    class Full:
        def __init__(self, handle):
            self.handle = handle
            self.room = budget[1]

        def write(self, data):
            if len(data) > self.room:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            self.room -= len(data)
            return self.handle.write(data)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

        def __getattr__(self, name):
            return getattr(self.handle, name)

    def install(root: Path, after: int = 0, room: int = 0):
        root = str(Path(root).resolve())
        budget[:] = [after, room]

        def fdopen(fd, *args, **kwargs):
            handle = real(fd, *args, **kwargs)
            target = os.readlink(f"/proc/self/fd/{fd}") if os.path.exists(f"/proc/self/fd/{fd}") else ""
            if not target.startswith(root):
                return handle
            budget[0] -= 1
            return Full(handle) if budget[0] < 0 else handle

        monkeypatch.setattr(os, "fdopen", fdopen)

    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("needs /proc/self/fd")
    return install


def test_disk_full_during_predict(cli, model_ckpt, tmp_path, disk_full):
    out = tmp_path / "out"
    disk_full(tmp_path)
    code, stdout, err = cli("predict", write_inputs(tmp_path / "in"), "--ckpt", model_ckpt, "--out", out)
    line = only_error(code, err, 3, out)
    assert "No space left on device" in line
    assert stdout == "" and files_under(out) == []
    assert_clean(tmp_path)


def test_a_folder_removed_by_a_parallel_writer_is_made_again(tmp_path, monkeypatch):
    """Predict's writers run in parallel: one whose write failed removes the folder it made, now empty, while another
    is about to put its temp file there. That other write must still happen (or meet its own error), not fail with
    'No such file or directory' (seen under load: a full disk reported as a missing folder)."""
    import tempfile

    from segcli.inference.io import atomic_write_bytes

    real, calls = tempfile.mkstemp, []

    def mkstemp_after_a_parallel_cleanup(*args, **kwargs):
        calls.append(kwargs["dir"])
        if len(calls) == 1:
            Path(kwargs["dir"]).rmdir()  # the other writer's cleanup, between this writer's mkdir and mkstemp
        return real(*args, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp_after_a_parallel_cleanup)
    target = tmp_path / "out" / "a.png"
    atomic_write_bytes(target, b"mask")
    assert target.read_bytes() == b"mask" and len(calls) == 2
    assert os.listdir(target.parent) == ["a.png"]


def test_failed_run_prunes_only_the_empty_folders_it_created(tmp_path):
    """Parallel writers can each leave a folder another expected to remove (predict's disk-full case was flaky):
    the command removes the empty folders under an --out it created, never a file or a folder that existed."""
    from segcli.inference.io import missing_folders, prune_created_tree

    out = tmp_path / "new" / "out"
    created = missing_folders(out)
    assert created == [out, tmp_path / "new"]
    (out / "a" / "b").mkdir(parents=True), (out / "c").mkdir()
    prune_created_tree(out, created)
    assert not (tmp_path / "new").exists()
    (out / "a").mkdir(parents=True), (out / "kept.png").write_bytes(b"x")
    prune_created_tree(out, created)
    assert files_under(out) == [out / "kept.png"] and not (out / "a").exists()
    existing = tmp_path / "existing"
    (existing / "empty").mkdir(parents=True)
    prune_created_tree(existing, missing_folders(existing))  # --out existed before: left as it was
    assert (existing / "empty").is_dir()


@pytest.mark.parametrize("after", [0, 2])
def test_disk_full_during_eval_leaves_no_partial_report(cli, model_ckpt, tmp_path, disk_full, after):
    """The disk fills up before the first report file, or after two of them: no report files at all."""
    out = tmp_path / "report"
    disk_full(tmp_path, after)
    code, _, err = cli("eval", "--ckpt", model_ckpt, "--out", out, "--worst", "1")
    line = error_line(code, err, 3, out)
    assert "No space left on device" in line
    assert not out.exists() or files_under(out) == []
    assert_clean(tmp_path)


def test_disk_full_on_dev_full(model_ckpt, tmp_path):
    """A real ENOSPC from the kernel: the JSON report goes to a stdout on /dev/full."""
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    with open("/dev/full", "w") as full:  # stdout on a full device: the report cannot be delivered
        proc = subprocess.run([sys.executable, "-m", "segcli", "eval", "--ckpt", str(model_ckpt), "--json", "-"],
                              cwd=tmp_path, stdout=full, stderr=subprocess.PIPE, text=True, timeout=300,
                              env={k: v for k, v in os.environ.items() if k != "SEGCLI_DEBUG"})
    error_line(proc.returncode, proc.stderr, 3, "No space left on device")


def test_disk_full_when_training_writes_a_checkpoint(cli, tiny_data, tmp_path, disk_full, monkeypatch):
    """torch.save meets a full disk inside its zip writer, which reported it as "RuntimeError: [enforce fail at
    inline_container.cc:672] unexpected pos" (exit 4, an internal error); it is the write error naming the file."""
    _live_log_handlers(monkeypatch)
    run = tmp_path / "run"
    disk_full(run / "checkpoints", room=1000)  # the zip writer's first records fit
    code, _, err = cli("train", f"data.root={tiny_data}", "trainer.max_epochs=1", "--run-dir", run)
    line = error_line(code, err, 3, str(run / "checkpoints"))
    assert "No space left on device" in line and "internal error" not in err
    assert_clean(run)


def _live_log_handlers(monkeypatch) -> None:
    """Log handlers made while an earlier test ran in this process write to its captured stderr, closed since (each
    record would print "--- Logging error ---" and a traceback): they write to this test's stderr."""
    import logging

    loggers = [logging.getLogger(), *(v for v in logging.root.manager.loggerDict.values() if isinstance(v, logging.Logger))]
    for handler in (h for logger in loggers for h in logger.handlers):
        if type(handler) is logging.StreamHandler and getattr(handler.stream, "closed", False):
            monkeypatch.setattr(handler, "stream", sys.stderr)


def test_a_run_whose_first_last_ckpt_failed_is_not_sent_in_circles(cli, tiny_data, tmp_path, disk_full, monkeypatch):
    """The disk fills after best.ckpt, at the first last.ckpt: the run keeps best.ckpt (a model) but has nothing to
    resume from. `--resume` said "start it again without --resume", and starting it again said "holds a run
    already; continue it with `segcli train --resume`": each sent the user to the other. Now neither advises the
    other; both say what works (another --run-dir, or deleting the run first)."""
    _live_log_handlers(monkeypatch)
    run = tmp_path / "run"
    disk_full(run / "checkpoints", after=1)  # best.ckpt is written; last.ckpt meets the full disk
    code, _, err = cli("train", f"data.root={tiny_data}", "trainer.max_epochs=1", "--run-dir", run)
    error_line(code, err, 3, run / "checkpoints" / "last.ckpt", "No space left on device")
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best.ckpt"]
    code, _, err = cli("train", "--resume", run)
    line = only_error(code, err, 3, "no last.ckpt", run / "checkpoints" / "best.ckpt")
    assert "another --run-dir" in line and f"delete {run}" in line
    code, _, err = cli("train", f"data.root={tiny_data}", "trainer.max_epochs=1", "--run-dir", run)
    line = only_error(code, err, 2, run, "no last.ckpt")
    assert "--resume" not in line and "another --run-dir" in line and f"delete {run}" in line
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best.ckpt"]


def _mount_tmpfs(disk: Path, options: str = "size=1m") -> None:
    """A tmpfs at `disk` (made here), or the test skips: mounting needs root and a system that lets it."""
    disk.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(disk)],
                                           capture_output=True).returncode != 0:
        pytest.skip("needs to mount a small tmpfs (root, and a system that lets it)")


@pytest.fixture
def read_only_disk(tmp_path):
    """A folder on an empty file system of its own, mounted read-only."""
    disk = tmp_path / "ro"
    _mount_tmpfs(disk, "size=1m,ro")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


@pytest.mark.parametrize("command", ["train", "train_here", "sweep", "predict", "eval", "prepare"])
def test_a_read_only_file_system_is_named_as_such(cli, model_ckpt, tiny_data, tmp_path, read_only_disk, monkeypatch,
                                                   command):
    """Outputs on a read-only file system (a dataset volume mounted :ro, a read-only NFS export): train said
    "runs: Read-only file system; check the path, permissions and free space", not naming --run-dir; predict, eval
    and prepare said "is not writable for this user", which no chmod mends. Each names the folder and what works."""
    out = read_only_disk / "out"
    commands = output_commands(tmp_path, model_ckpt, tiny_data, out)
    commands["train_here"] = ["train", f"data.root={tiny_data}", "trainer.max_epochs=1"]
    commands["sweep"] = ["train", "-m", "seed=1,2", f"data.root={tiny_data}", "trainer.max_epochs=1", "--run-dir", out]
    monkeypatch.chdir(read_only_disk)
    code, stdout, err = cli(*commands[command])
    line = only_error(code, err, 3)
    assert ("Read-only file system" in line or "read-only file system" in line) and stdout == ""
    assert ("--run-dir" in line) if command.startswith(("train", "sweep")) else ("--out" in line)


def _fill(disk: Path) -> None:
    """Fill `disk`'s file system with its file `filler` (made, or grown again after room was made by cutting it)."""
    with open(disk / "filler", "ab", buffering=0) as filler:
        try:
            while True:
                filler.write(b"\0" * 4096)
        except OSError as err:
            assert err.errno == errno.ENOSPC


@pytest.fixture
def full_disk(tmp_path):
    """A folder on a filesystem of its own that is full: a 1 MiB tmpfs, filled. Needs the right to mount (root)."""
    disk = tmp_path / "disk"
    _mount_tmpfs(disk)
    try:
        _fill(disk)
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


@pytest.mark.parametrize("command", ["predict", "eval", "export", "torchscript", "prepare", "train"])
def test_a_full_disk_names_the_output(cli, model_ckpt, tiny_data, tmp_path, full_disk, command):
    """A real ENOSPC from the kernel in every command that writes files: the one error line names the output, with
    exit 3, and nothing half-written is left. Export to ONNX named no file ("cannot write the output … where stdout
    goes"), export to TorchScript aborted the process with a C++ stack, leaving its hidden staging file, and
    prepare named no file; eval named its hidden staging folder, train "internal error: … unexpected pos"."""
    out = full_disk / "out"
    commands = output_commands(tmp_path, model_ckpt, tiny_data, out)
    commands["torchscript"] = ["export", "--ckpt", model_ckpt, "--format", "torchscript", "--out", out / "m.pt"]
    code, stdout, err = cli(*commands[command])
    named = {"export": out / "m.onnx", "torchscript": out / "m.pt"}.get(command, out)
    line = error_line(code, err, 3, named)
    assert "No space left on device" in line
    assert sorted(p.name for p in full_disk.iterdir()) == ["filler"]


def test_a_failed_lint_on_a_full_disk_stays_the_result(cli, tmp_path, full_disk):
    """Data that fails the lint, with --out on a full disk: prepare said only that lint.json could not be written
    (exit 3), which hid that the data had failed (exit 1) and what was wrong with it. Now the lint's table and its
    one error line (exit 1) say so, and name lint.json as not written. prepare lint DIR alike."""
    images, masks = write_inputs(tmp_path / "images"), tmp_path / "masks"
    for name in ("img0", "img1"):  # img2 has no mask
        write_image(masks / f"{name}.png", np.zeros((32, 40), np.uint8))
    out = full_disk / "out"
    code, stdout, err = cli("prepare", "folder", "--images", images, "--masks", masks, "--classes", "a,b", "--out", out)
    line = error_line(code, err, 1, "no mask with stem 'img2'", out / "lint.json", "No space left on device")
    assert "missing_mask" in err.split(line)[0] and stdout == ""  # the table above the line
    assert sorted(p.name for p in full_disk.iterdir()) == ["filler"]

    subprocess.run(["umount", "-l", str(full_disk)], check=True)  # a dataset that lints clean, on a disk then filled
    _mount_tmpfs(full_disk.parent / "disk2")
    data = full_disk.parent / "disk2" / "data"
    write_image(masks / "img2.png", np.ones((32, 40), np.uint8))
    code, _, err = cli("prepare", "folder", "--images", images, "--masks", masks, "--classes", "a,b", "--out", data)
    assert code == 0, err
    try:
        next((data / "masks").rglob("*.png")).unlink()
        _fill(data.parent)
        code, stdout, err = cli("prepare", "lint", data)
        error_line(code, err, 1, data / "lint.json", "No space left on device")
        assert "missing_mask" in err and stdout == ""
    finally:
        subprocess.run(["umount", "-l", str(data.parent)], capture_output=True)


@pytest.mark.parametrize("save", ["mask,areas", "mask,uncertainty"])
def test_a_full_disk_in_predict_names_the_first_file_that_failed(cli, model_ckpt, tmp_path, full_disk, save):
    """The tables (areas.csv, uncertainty.csv) of the inputs done are written when a run stops; on a full disk
    that write failed too, and its error hid the one that stopped the run: "areas.csv: cannot write it" when not
    one mask had been written. The error names the mask that failed first."""
    out = full_disk / "out"
    code, stdout, err = cli("predict", write_inputs(tmp_path / "in"), "--ckpt", model_ckpt, "--out", out, "--save", save,
                            "writers=1")
    line = error_line(code, err, 3, out / "img0.png", "No space left on device")
    assert ".csv" not in line and stdout == ""
    assert sorted(p.name for p in full_disk.iterdir()) == ["filler"]


def test_a_full_disk_while_predicting_a_video_is_no_unreadable_input(cli, model_ckpt, tmp_path, disk_full):
    """A video's frame mask that met a full disk was counted as a failed input: a warning, then "1 of 1 inputs
    could not be read (first: …/clip/000000.png: cannot write it …); nothing was predicted". It is the write error,
    exit 3, naming the frame's file."""
    video = _video(tmp_path / "in" / "clip.avi", 3, 32, 40)
    out = tmp_path / "out"
    disk_full(out)
    code, stdout, err = cli("predict", video, "--ckpt", model_ckpt, "--out", out, "--save", "mask", "--frame-masks",
                            "video.codec=MJPG")
    line = only_error(code, err, 3, out / "clip" / "000000.png", "No space left on device")
    assert "could not be read" not in line and stdout == ""
    assert_clean(tmp_path)


@pytest.mark.parametrize("room", [0, 64])
def test_a_full_disk_under_an_overlay_video_is_named(cli, model_ckpt, tmp_path, full_disk, room):
    """OpenCV's video writer reports no failed write: on a disk full from the start, or filling up during the video,
    predict put a cut-off overlay video in place (its AVI header counting every frame) and exited 0. Both are the
    write error naming the overlay video, with nothing left."""
    video = _video(tmp_path / "in" / "clip.avi", 12, 128, 160)
    os.truncate(full_disk / "filler", max(0, (full_disk / "filler").stat().st_size - room * 1024))
    out = full_disk / "out"
    code, stdout, err = cli("predict", video, "--ckpt", model_ckpt, "--out", out, "--save", "overlay",
                            "video.codec=MJPG")
    error_line(code, err, 3, out / "overlays" / "clip.avi", "No space left on device")
    assert sorted(p.name for p in full_disk.iterdir()) == ["filler"]


@pytest.mark.parametrize("case", ["new column", "half a row"])
def test_metrics_csv_stays_whole_when_the_disk_fills(full_disk, case):
    """train's metrics.csv on a disk that fills. A new column (the epoch's loss after the first checkpoint): the
    header rewrite failed, but Lightning had widened its header in memory, so its next save (finalize, on the way
    out) appended a row of 10 fields under the 8-field header (tmpfs and most file systems have room left in the
    file's last block): values under the wrong columns, and `train --resume` stopped with "internal error:
    ValueError: dict contains fields not in fieldnames". An append that crossed into a new block left half a row.
    Now each failed save names metrics.csv and leaves the file as it was; once there is room, the rows held back
    are written under the right header."""
    import csv

    from segcli.errors import WriteError
    from segcli.training.loggers import _AppendingWriter

    os.truncate(full_disk / "filler", 0)
    run = full_disk / "run"
    writer = _AppendingWriter(log_dir=str(run))
    metrics = run / "metrics.csv"
    pad = 4096 - len("note,step\r\n") - len(",0\r\n") - 6  # the file ends 6 bytes before its block does
    writer.log_metrics({"note": "x" * (pad if case == "half a row" else 8)}, step=0)
    writer.save()
    _fill(full_disk)
    before = metrics.read_bytes()
    writer.log_metrics({"note": "y" * 20, **({"val/mIoU": 0.25} if case == "new column" else {})}, step=1)
    for _ in range(2):  # the failed save, then Lightning's finalize
        with pytest.raises(WriteError, match="metrics.csv"):
            writer.save()
        assert metrics.read_bytes() == before
    os.truncate(full_disk / "filler", 0)
    writer.save()
    with open(metrics, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["step"] for row in rows] == ["0", "1"] and rows[1]["note"] == "y" * 20
    assert all(None not in row for row in rows)
    if case == "new column":
        assert rows[1]["val/mIoU"] == "0.25"


def _fake_sweep_jobs(monkeypatch, full_at: int | None = None) -> list[list[str]]:
    """Each sweep job's `segcli train` process faked (seconds, not minutes): it makes its run folder, and the job
    `full_at` writes best.ckpt, then stops on a full disk at its first last.ckpt (exit 3, writing's error line);
    the others end with a last.ckpt. Returns the argument lists the jobs were started with."""
    import io

    started = []

    real = subprocess.Popen

    class Job:
        def __new__(cls, args, **kwargs):  # other processes (not a sweep's job) start as they would
            return super().__new__(cls) if list(args[1:4]) == ["-m", "segcli", "train"] else real(args, **kwargs)

        def __init__(self, args, **kwargs):
            started.append([str(a) for a in args])
            run = Path(args[args.index("--run-dir") + 1] if "--run-dir" in args else args[args.index("--resume") + 1])
            (run / "checkpoints").mkdir(parents=True, exist_ok=True)
            if "--run-dir" in args:  # what train saves: the job's config (a resume of the job checks it)
                from segcli.config import compose, to_yaml

                (run / "config.yaml").write_text(to_yaml(compose("train", [str(a) for a in args[4:-2]])))
            (run / "metrics.csv").write_text("epoch,step,val/mIoU\n0,1,0.5\n")
            (run / "checkpoints" / "best.ckpt").write_bytes(b"model")
            last = run / "checkpoints" / "last.ckpt"
            self.code, lines = 0, "train: done\n"
            if len(started) - 1 == full_at:
                self.code = 3
                lines = (f"train: run directory {run}\nsegcli: error: {last}: cannot write it (No space left on "
                         "device); check free space and permissions\n")
            else:
                last.write_bytes(b"state")
            self.stderr = io.StringIO(lines)

        def wait(self):
            return self.code

        def poll(self):
            return self.code

    monkeypatch.setattr(subprocess, "Popen", Job)  # sweep._run_job's
    return started


def test_a_full_disk_stops_a_sweep_and_resume_runs_the_job_again(cli, tiny_data, tmp_path, monkeypatch):
    """A sweep job stopped by a full disk was recorded as 'failed (exit 3)' and the sweep went on to the next job
    (on the same full disk), exiting 1; `train --resume SWEEP_DIR` after space was freed ran nothing ("3 of 3
    jobs ended before") and the job could not be started again in its folder (its best.ckpt). Now the sweep stops
    with the write error (exit 3, one error line, pointing at --resume), the job is left out of the summary and
    its folder, which cannot be continued, is removed; the resume runs it and the jobs after it."""
    root = tmp_path / "sweep"
    started = _fake_sweep_jobs(monkeypatch, full_at=1)
    code, out, err = cli("train", "-m", "seed=1,2,3", f"data.root={tiny_data}", "--run-dir", root)
    last = root / "1-seed=2" / "checkpoints" / "last.ckpt"
    line = error_line(code, err, 3, last, "No space left on device", f"segcli train --resume {root}")
    assert err.count("segcli: error:") == 1 and "sweep job 2 (3 of 3)" not in err and line
    assert len(started) == 2 and not (root / "1-seed=2").exists()
    assert [row["job"] for row in json.loads((root / "summary.json").read_text())["jobs"]] == [0]
    started = _fake_sweep_jobs(monkeypatch)  # room again
    code, out, err = cli("train", "--resume", root)
    assert code == 0, err
    assert [args[-1] for args in started] == [str(root / "1-seed=2"), str(root / "2-seed=3")]  # --run-dir: afresh
    assert [row["status"] for row in json.loads((root / "summary.json").read_text())["jobs"]] == ["ok"] * 3
    assert_clean(root)


def test_a_full_disk_at_the_sweep_summary_is_one_error_and_resume_goes_on(cli, tiny_data, tmp_path, monkeypatch,
                                                                          disk_full):
    """The disk fills when the summary is written after job 0 ended: one error naming the summary file (not a
    second failed write of it on the way out hiding the first), and `--resume` goes on from there."""
    root = tmp_path / "sweep"
    started = _fake_sweep_jobs(monkeypatch)
    disk_full(root, after=1)  # sweep.json is written; the summary after job 0 meets the full disk
    code, out, err = cli("train", "-m", "seed=1,2", f"data.root={tiny_data}", "--run-dir", root)
    error_line(code, err, 3, root / "summary.json", "No space left on device", f"segcli train --resume {root}")
    assert len(started) == 1 and not (root / "summary.json").exists() and not (root / "summary.csv").exists()
    assert_clean(root)
    disk_full(root, after=10 ** 6)
    code, out, err = cli("train", "--resume", root)
    assert code == 0, err
    assert [row["status"] for row in json.loads((root / "summary.json").read_text())["jobs"]] == ["ok"] * 2


def _video(path: Path, frames: int, height: int, width: int) -> Path:
    """An MJPG AVI of `frames` noise frames."""
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 5, (width, height))
    for i in range(frames):
        writer.write(noise(height, width, seed=i))
    writer.release()
    return path


def test_skip_existing_predicts_a_video_with_a_cut_off_frame_mask_again(cli, model_ckpt, tmp_path):
    """A video whose overlay and frame masks existed was skipped even when a frame mask was cut off (a full disk
    under an earlier segcli, a copy): its areas rows were then read from it, "not a readable PNG" (exit 3)."""
    video, out = _video(tmp_path / "in" / "clip.avi", 3, 32, 40), tmp_path / "out"
    args = ["predict", video, "--ckpt", model_ckpt, "--out", out, "--save", "mask,overlay,areas", "--frame-masks",
            "video.codec=MJPG"]
    code, _, err = cli(*args)
    assert code == 0, err
    frame = out / "clip" / "000001.png"
    whole = frame.read_bytes()
    frame.write_bytes(whole[: len(whole) // 2])
    code, _, err = cli(*args, "--skip-existing")
    assert code == 0, err
    assert "1 video (3 frames) predicted, 0 skipped" in err and frame.read_bytes() == whole


def test_skip_existing_does_not_trust_a_cut_off_output(cli, model_ckpt, tmp_path):
    """Outputs cut off by a full disk (an earlier segcli, a copy) or by a crash (zero length after a power cut):
    --skip-existing took any file that existed as done. A cut-off mask stopped the run with "internal error:
    OSError: image file is truncated" (exit 4), a cut-off overlay was kept as it was. Both inputs are predicted
    again and their files rewritten whole."""
    images, out = write_inputs(tmp_path / "in"), tmp_path / "out"
    code, _, err = cli("predict", images, "--ckpt", model_ckpt, "--out", out, "--save", "mask,overlay,areas")
    assert code == 0, err
    whole = {p: p.read_bytes() for p in files_under(out)}
    mask, overlay = out / "img0.png", out / "overlays" / "img1.png"
    with open(mask, "r+b") as handle:
        handle.truncate(len(whole[mask]) // 2)
    overlay.write_bytes(b"")
    code, _, err = cli("predict", images, "--ckpt", model_ckpt, "--out", out, "--save", "mask,overlay,areas",
                       "--skip-existing")
    assert code == 0, err
    assert "1 predicted" not in err and "2 predicted, 1 skipped" in err
    again = {p: p.read_bytes() for p in files_under(out)}
    table = out / "areas.csv"  # its rows: the skipped input's first
    assert sorted(again.pop(table).splitlines()) == sorted(whole.pop(table).splitlines()) and again == whole
    assert_clean(tmp_path)


def test_a_failed_mask_write_still_lists_the_masks_other_writers_finished(cli, model_ckpt, tmp_path, monkeypatch):
    """A write that fails stops predict (exit 3); the masks that other writer threads wrote meanwhile are on disk,
    so stdout lists them (they were kept but not listed: a pipeline reading stdout missed them)."""
    from segcli.inference import outputs

    real = outputs.Outputs.write

    def write(self, source, rel, *args, **kwargs):
        if Path(source).name == "img0.png":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.paths(rel)["mask"]))
        return real(self, source, rel, *args, **kwargs)

    monkeypatch.setattr(outputs.Outputs, "write", write)
    out = tmp_path / "out"
    code, stdout, err = cli("predict", write_inputs(tmp_path / "in", count=4), "--ckpt", model_ckpt, "--out", out,
                            "--save", "mask", "writers=2")
    assert "No space left on device" in only_error(code, err, 3, out)
    written = files_under(out)
    assert sorted(stdout.split()) == [str(p) for p in written] and len(written) == 3, (stdout, written)
    assert stdout.split() == sorted(stdout.split())  # in input order
