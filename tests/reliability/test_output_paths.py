"""Where outputs go when things go wrong: an unwritable --out, a full disk, inputs whose output names would
leave --out (.., absolute paths, symlinks, list files, eval --worst keys), non-UTF-8 and spaced file names."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers_reliability import assert_clean, error_line, files_under, noise, only_error, write_image


def _inputs(folder: Path, count: int = 3) -> Path:
    for i in range(count):
        write_image(folder / f"img{i}.png", noise(32, 40, seed=i))
    return folder


# ----------------------------------------------------------------------------- unwritable --out
def _commands(tmp_path: Path, ckpt: Path, data: Path, out: Path) -> dict[str, list]:
    images = _inputs(tmp_path / "in")
    return {
        "predict": ["predict", images, "--ckpt", ckpt, "--out", out],
        "eval": ["eval", "--ckpt", ckpt, "--out", out],
        "export": ["export", "--ckpt", ckpt, "--out", out / "m.onnx"],
        "prepare": ["prepare", "synthetic", "--num-images", "2", "synthetic.height=32", "synthetic.width=32", "--out", out],
        "train": ["train", f"data.root={data}", "trainer.max_epochs=1", "--run-dir", out],
    }


@pytest.mark.parametrize("command", ["predict", "eval", "export", "prepare", "train"])
def test_output_under_a_regular_file(cli, model_ckpt, tiny_data, tmp_path, monkeypatch, command):
    """--out below a regular file cannot be created (works as root too): exit 3 naming the path, nothing written."""
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder\n")
    monkeypatch.chdir(tmp_path)
    code, out, err = cli(*_commands(tmp_path, model_ckpt, tiny_data, blocker / "out")[command])
    only_error(code, err, 3, blocker)
    assert (out == "" or command == "eval") and blocker.read_text() == "a file, not a folder\n"  # eval prints, then writes
    assert not (tmp_path / "runs").exists()
    assert_clean(tmp_path)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root writes through chmod 0o555")
@pytest.mark.parametrize("command", ["predict", "eval"])
def test_read_only_output_dir(cli, model_ckpt, tiny_data, tmp_path, command):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        code, _, err = cli(*_commands(tmp_path, model_ckpt, tiny_data, locked / "out")[command])
        only_error(code, err, 3, locked)
    finally:
        locked.chmod(0o755)
    assert list(locked.iterdir()) == []


@pytest.mark.parametrize("command", ["predict", "eval", "eval_json", "prepare"])
def test_unwritable_output_dir_is_found_before_the_work(cli, model_ckpt, tiny_data, tmp_path, monkeypatch, command):
    """A folder this user cannot write (a shared store, a read-only mount) under --out / --json: eval and predict
    ran the model over every image first and failed at the first write; prepare named its hidden staging folder
    ('.out.partial-123: Permission denied'). Now each stops first, naming the folder (exit 3), with nothing on
    stdout. os.access is faked: the tests may run as root, who can write anywhere."""
    locked = tmp_path / "locked"
    locked.mkdir()
    real = os.access
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: False if Path(path) == locked else real(path, mode, **kw))
    args = (["eval", "--ckpt", model_ckpt, "--json", locked / "r.json"] if command == "eval_json"
            else _commands(tmp_path, model_ckpt, tiny_data, locked / "out")[command])
    code, out, err = cli(*args)
    line = only_error(code, err, 3, locked)
    assert "is not writable for this user" in line and out == ""
    assert list(locked.iterdir()) == []


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
    code, stdout, err = cli("predict", _inputs(tmp_path / "in"), "--ckpt", model_ckpt, "--out", out)
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


@pytest.fixture
def full_disk(tmp_path):
    """A folder on a filesystem of its own that is full: a 1 MiB tmpfs, filled. Needs the right to mount (root)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)],
                                           capture_output=True).returncode != 0:
        pytest.skip("needs to mount a small tmpfs (root, and a system that lets it)")
    try:
        with open(disk / "filler", "wb", buffering=0) as filler:
            try:
                while True:
                    filler.write(b"\0" * 4096)
            except OSError as err:
                assert err.errno == errno.ENOSPC
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
    commands = _commands(tmp_path, model_ckpt, tiny_data, out)
    commands["torchscript"] = ["export", "--ckpt", model_ckpt, "--format", "torchscript", "--out", out / "m.pt"]
    code, stdout, err = cli(*commands[command])
    named = {"export": out / "m.onnx", "torchscript": out / "m.pt"}.get(command, out)
    line = error_line(code, err, 3, named)
    assert "No space left on device" in line
    assert sorted(p.name for p in full_disk.iterdir()) == ["filler"]


@pytest.mark.parametrize("save", ["mask,areas", "mask,uncertainty"])
def test_a_full_disk_in_predict_names_the_first_file_that_failed(cli, model_ckpt, tmp_path, full_disk, save):
    """The tables (areas.csv, uncertainty.csv) of the inputs done are written when a run stops; on a full disk
    that write failed too, and its error hid the one that stopped the run: "areas.csv: cannot write it" when not
    one mask had been written. The error names the mask that failed first."""
    out = full_disk / "out"
    code, stdout, err = cli("predict", _inputs(tmp_path / "in"), "--ckpt", model_ckpt, "--out", out, "--save", save,
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


def _refill(disk: Path) -> None:
    """Fill full_disk's filesystem again (after room was made by cutting its filler file)."""
    with open(disk / "filler", "ab", buffering=0) as filler:
        try:
            while True:
                filler.write(b"\0" * 4096)
        except OSError as err:
            assert err.errno == errno.ENOSPC


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
    _refill(full_disk)
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
    assert err.count("segcli: error:") == 1 and "sweep job 3/3" not in err and line
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
    assert "1 video(s) (3 frames) predicted, 0 skipped" in err and frame.read_bytes() == whole


def test_skip_existing_does_not_trust_a_cut_off_output(cli, model_ckpt, tmp_path):
    """Outputs cut off by a full disk (an earlier segcli, a copy) or by a crash (zero length after a power cut):
    --skip-existing took any file that existed as done. A cut-off mask stopped the run with "internal error:
    OSError: image file is truncated" (exit 4), a cut-off overlay was kept as it was. Both inputs are predicted
    again and their files rewritten whole."""
    images, out = _inputs(tmp_path / "in"), tmp_path / "out"
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


# ----------------------------------------------------------------------------- outputs stay under --out
def _outside_files(tmp_path: Path, out: Path, before: set[Path]) -> list[Path]:
    return [p for p in files_under(tmp_path) if p not in before and out.resolve() not in p.resolve().parents]


def test_list_entries_with_dotdot_stay_under_out(cli, model_ckpt, tmp_path, monkeypatch):
    work = tmp_path / "a" / "b"
    _inputs(work, 1)
    _inputs(tmp_path / "other", 1)
    listing = work / "list.txt"
    listing.write_text("img0.png\n../../other/img0.png\n")
    monkeypatch.chdir(work)
    before = set(files_under(tmp_path))
    out = tmp_path / "x" / "out"
    code, stdout, err = cli("predict", "--list", listing, "--ckpt", model_ckpt, "--out", out, "--save", "mask")
    assert code == 0, err
    assert _outside_files(tmp_path, out, before) == []
    assert sorted(p.relative_to(out).as_posix() for p in files_under(out)) == ["a/b/img0.png", "other/img0.png"]


def test_glob_climbing_out_of_its_base_is_refused(cli, model_ckpt, tmp_path):
    _inputs(tmp_path / "in" / "sub", 1)
    _inputs(tmp_path / "outside", 1)
    pattern = f"{tmp_path}/in/*/../../outside/*.png"
    code, _, err = cli("predict", pattern, "--ckpt", model_ckpt, "--out", tmp_path / "out")
    only_error(code, err, 2, "outside")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("out_name", ["in", "link_to_in"])
def test_predict_into_its_own_input_folder_is_refused(cli, model_ckpt, tmp_path, out_name):
    """`predict DIR --out DIR` (or through a symlink to DIR) would replace every PNG image by its mask."""
    folder = tmp_path / "in"
    _inputs(folder, 2)
    (tmp_path / "link_to_in").symlink_to(folder, target_is_directory=True)
    before = {p: p.read_bytes() for p in files_under(folder)}
    code, _, err = cli("predict", folder, "--ckpt", model_ckpt, "--out", tmp_path / out_name, "--save", "mask")
    assert "--out" in only_error(code, err, 2, "img0.png")
    assert {p: p.read_bytes() for p in files_under(folder)} == before  # every image as it was, nothing added


@pytest.mark.parametrize("form", ["folder", "glob"])
def test_rerun_into_a_subfolder_does_not_read_earlier_outputs(cli, model_ckpt, tmp_path, form):
    """`predict DIR --out DIR/preds`, run twice: the second run predicts DIR's images only, not the masks the first
    run wrote under DIR/preds (the folder walk is recursive)."""
    folder = _inputs(tmp_path / "in", 2)
    source = str(folder) if form == "folder" else f"{folder}/**/*.png"
    out = folder / "preds"
    code, first, err = cli("predict", source, "--ckpt", model_ckpt, "--out", out, "--save", "mask,overlay")
    assert code == 0, err
    masks = {p: p.read_bytes() for p in files_under(out)}
    code, second, err = cli("predict", source, "--ckpt", model_ckpt, "--out", out, "--save", "mask,overlay")
    assert code == 0, err
    assert second.split() == first.split() == [str(out / "img0.png"), str(out / "img1.png")]
    assert {p: p.read_bytes() for p in files_under(out)} == masks  # no preds/preds/…, the same two masks
    assert "left out 4 file(s) found under --out" in err


def test_named_files_under_out_are_still_predicted(cli, model_ckpt, tmp_path):
    """Only files found by walking a folder are left out: a file named on the command line is predicted even
    when it lies under --out, and a folder whose every image is under --out is an error, not an empty run."""
    folder = _inputs(tmp_path / "in", 1)
    out = folder / "preds"
    _inputs(out / "photos", 1)
    named = out / "photos" / "img0.png"
    code, stdout, err = cli("predict", named, "--ckpt", model_ckpt, "--out", out, "--save", "mask")
    assert code == 0, err
    assert stdout.split() == [str(out / "img0.png")]
    (folder / "img0.png").unlink()
    code, _, err = cli("predict", folder, "--ckpt", model_ckpt, "--out", out, "--save", "mask")
    assert "every input found lies under --out" in only_error(code, err, 3, "img0.png")


def test_absolute_dotdot_and_symlinked_inputs_stay_under_out(cli, model_ckpt, tmp_path, monkeypatch):
    _inputs(tmp_path / "elsewhere", 2)
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "linked.png").symlink_to(tmp_path / "elsewhere" / "img0.png")
    (folder / "linked_dir").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    out = tmp_path / "out"
    out.mkdir()
    victim = tmp_path / "victim.png"
    victim.write_text("must survive\n")
    (out / "img1.png").symlink_to(victim)  # an output name that is a symlink out of --out
    monkeypatch.chdir(folder)
    before = set(files_under(tmp_path))
    code, _, err = cli("predict", folder, "../elsewhere/img1.png", str(tmp_path / "elsewhere" / "img0.png"),
                       "--ckpt", model_ckpt, "--out", out, "--save", "mask")
    assert code == 0, err
    assert victim.read_text() == "must survive\n"
    assert not (out / "img1.png").is_symlink()
    assert _outside_files(tmp_path, out, before) == []


def test_eval_worst_names_stay_under_out(cli, model_ckpt, dataset_copy, tmp_path):
    """A card entry whose mask path climbs out of masks/<split>/: the --worst panel is still written in OUT/worst/."""
    import shutil

    import yaml

    card_path = dataset_copy / "dataset.yaml"
    card = yaml.safe_load(card_path.read_text())
    entry = card["splits"]["val"][0]
    escape = tmp_path / "escape"
    escape.mkdir()
    shutil.copy(dataset_copy / entry["mask"], escape / "m.png")
    entry["mask"] = f"masks/val/../../../{escape.name}/m.png"
    card_path.write_text(yaml.safe_dump(card, sort_keys=False))
    out = tmp_path / "report"
    before = set(files_under(tmp_path))
    code, _, err = cli("eval", "--ckpt", model_ckpt, "--data", dataset_copy, "--out", out, "--worst", "1")
    assert code == 0, err
    assert _outside_files(tmp_path, out, before) == []
    assert len(list((out / "worst").iterdir())) == 1


# ----------------------------------------------------------------------------- file names
ODD_NAMES = [b"\xff\xfe odd.png", b"with space.png", "caf\u00e9 \u00fc.png".encode()]


def _bytes_cli(*args, cwd) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "SEGCLI_DEBUG"}
    env["PYTHONIOENCODING"] = "utf-8:strict"  # what an en_US.UTF-8 terminal gets (C.UTF-8 escapes surrogates)
    return subprocess.run([sys.executable, "-m", "segcli", *map(os.fsencode, map(str, args))], cwd=cwd, env=env,
                          capture_output=True, timeout=300)


@pytest.mark.skipif(sys.platform != "linux", reason="file names that are not UTF-8 need a POSIX file system")
def test_predict_non_utf8_and_spaced_names(model_ckpt, tmp_path):
    folder = tmp_path / "in dir"
    folder.mkdir()
    for i, name in enumerate(ODD_NAMES):
        write_image(Path(os.fsdecode(os.path.join(os.fsencode(folder), name))), noise(32, 40, seed=i))
    out = tmp_path / "out dir"
    proc = _bytes_cli("predict", folder, "--ckpt", model_ckpt, "--out", out, "--save", "mask", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    assert b"Traceback" not in proc.stderr
    printed = sorted(proc.stdout.splitlines())
    expected = sorted(os.path.join(os.fsencode(out), name) for name in ODD_NAMES)
    assert printed == expected  # the exact bytes of each mask path, one per line
    assert sorted(os.listdir(os.fsencode(out))) == sorted(ODD_NAMES)
    # areas.csv names each input by its own bytes (a non-UTF-8 name was exit 4: UnicodeEncodeError, no CSV)
    proc = _bytes_cli("predict", folder, "--ckpt", model_ckpt, "--out", tmp_path / "areas", "--save", "areas",
                      cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    rows = (tmp_path / "areas" / "areas.csv").read_bytes().splitlines()[1:]
    assert {row.split(b",")[0].rsplit(b"/", 1)[-1] for row in rows} == set(ODD_NAMES)


@pytest.mark.skipif(sys.platform != "linux", reason="file names that are not UTF-8 need a POSIX file system")
def test_prepare_non_utf8_and_spaced_names(cli, model_ckpt, tmp_path):
    """Names that are not UTF-8 survive prepare (the card escapes them) and the dataset reads back; spaces too."""
    from helpers_reliability import ids
    from segcli.data.card import load_card
    from segcli.inference.io import read_image, read_mask

    images, masks = tmp_path / "src" / "images", tmp_path / "src" / "masks"
    stems = [b"\xff\xfe odd", b"with space", "caf\u00e9 \u00fc".encode(), b"plain0", b"plain1", b"plain2"]
    for i, stem in enumerate(stems):
        for folder, array in ((images, noise(32, 32, seed=i)), (masks, ids(seed=i))):
            write_image(Path(os.fsdecode(os.path.join(os.fsencode(folder), stem + b".png"))), array)
    out = tmp_path / "ds"
    code, _, err = cli("prepare", "folder", "--images", images, "--masks", masks, "--out", out, "--classes", "a,b",
                       "--val-fraction", "0.34")
    assert code == 0, err
    card = load_card(out)
    pairs = [pair for split in card.splits for pair in card.pairs(split)]
    assert sorted(os.fsencode(image.stem) for image, _ in pairs) == sorted(stems)
    for image, mask in pairs:
        assert read_image(image).shape == (32, 32, 3) and read_mask(mask).shape == (32, 32)
    code, _, err = cli("eval", "--ckpt", model_ckpt, "--data", out, "--split", "train")
    assert code == 2 and "classes" in err  # readable up to the class check: the model is for other classes
    assert_clean(tmp_path)


# ----------------------------------------------------------------------------- staging left by a killed process
@pytest.mark.parametrize("command", ["eval", "export", "prepare"])
def test_staging_left_by_a_killed_process_is_removed_by_the_next_run(cli, model_ckpt, tiny_data, tmp_path, command):
    """A SIGKILL (the OOM killer, a cancelled job) leaves the hidden staging of an eval report, an export or a
    prepared dataset behind, and later runs into the same place kept every one of them. Now the next run removes
    those of processes no longer running on this machine, and keeps those of a running one."""
    import socket

    out = tmp_path / "out"
    args = _commands(tmp_path, model_ckpt, tiny_data, out)[command]
    folder, name, suffix = {"eval": (out, ".report", ""), "export": (out, ".m", ".onnx"),
                            "prepare": (tmp_path, ".out", "")}[command]
    dead = subprocess.Popen(["true"])
    dead.wait()
    running = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        stale, kept = (folder / f"{name}.partial-{socket.gethostname()}-{pid}{suffix}" for pid in (dead.pid, running.pid))
        for path in (stale, kept):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.mkdir() if command != "export" else path.write_bytes(b"half an onnx file")
        code, _, err = cli(*args)
        assert code == 0, err
        assert not stale.exists() and kept.exists()
    finally:
        running.kill()
        running.wait()
