"""`segcli train -m key=a,b ...`: one training run per combination, Hydra's multirun semantics.

Hydra's override grammar and BasicSweeper expand the sweep (`key=a,b`, `key=range(1,4)`,
`key=choice(a,b)`, `group=unet,fpn`, `group=glob(unet*)`; the cartesian product over several swept keys, in
command-line order). Jobs run one after another, each as its own `segcli train` process in
SWEEP_DIR/<index>-<swept values>/ (a normal run directory). A failing job is recorded and the sweep goes on (one
that a full disk, a quota or a read-only file system stopped stops the sweep instead, exit 3, and is not recorded:
`--resume` runs it again); at the end the summary table goes to stdout, summary.csv and summary.json to SWEEP_DIR,
and the exit code is 1 when any job failed.

SWEEP_DIR/sweep.json records the command line and the jobs it expanded to, so that `segcli train --resume SWEEP_DIR`
continues a sweep that was stopped (Ctrl-C, SIGTERM, SIGKILL, a reboot): jobs in the summary stay as they ended, the
job that was running continues from its last.ckpt (or starts afresh when it had none), and the jobs never started
run.
"""

from __future__ import annotations

import csv
import io
import json
import re
import signal
from pathlib import Path

from segcli.console import info, print_wide, result, stdout_console  # light: no torch, cv2 (`train --cfg` stays light)
from segcli.errors import (EXIT_DATA, STOP_EXIT_CODES, CheckFailed, ConfigError, DataError, Terminated, WriteError,
                           first_line)

SWEEP_FILE = "sweep.json"  # the sweep's command line: overrides, --config-dir and the folder it was started in
FIELDS = ("job", "overrides", "status", "best_val_mIoU", "final_mIoU", "epochs", "run_dir", "error")


def _parse(overrides: list[str]):
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from segcli.config import quote_values, unparsable

    try:
        return OverridesParser.create().parse_overrides(quote_values(list(overrides)))
    except Exception as err:  # hydra's grammar errors are multi-line
        raise unparsable(list(overrides), err) from None


def refuse_sweep(overrides: list[str]) -> None:
    """A single run given `key=a,b`: a one-line usage error pointing at -m."""
    for given, ov in zip(overrides, _parse(overrides)):
        if ov.is_sweep_override():
            if ov.input_line != given:  # `crop_size=(64,64)`, read only once each comma's part was quoted: '(64', '64)'
                parts = ", ".join(str(v) for v in ov.sweep_string_iterator())  # as quoted
                raise ConfigError(f"'{given}' reads as a sweep of {parts}; write a list as [a,b], a single value "
                                  "holding commas as key='a,b', or add -m to run one job per value")
            raise ConfigError(f"'{ov.input_line}' is a sweep; add -m to run one job per value, or quote a single "
                              f"value that contains commas: key='a,b'")


class _GroupOptions:
    """What Hydra's glob() sweep asks of a config loader: the options of a config group (packaged conf/ and
    --config-dir)."""

    def __init__(self, config_dir) -> None:
        from segcli.config import _groups, conf_dir

        self.groups = _groups([conf_dir(), *([Path(config_dir).expanduser()] if config_dir else [])])

    def get_group_options(self, group: str, results_filter=None) -> list[str]:
        return list(self.groups.get(group, []))


def expand(overrides: list[str], config_dir=None) -> tuple[list[list[str]], list[str]]:
    """(one override list per job, the swept keys) from a multirun command line."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.types import Glob

    parsed = _parse(overrides)
    keys = [ov.get_key_element() for ov in parsed]
    twice = next((ov for ov in parsed if keys.count(ov.get_key_element()) > 1 and ov.is_sweep_override()), None)
    if twice is not None:  # Hydra keeps the last: `seed=0,1 seed=2` ran one job, the table still calling seed swept
        given = " and ".join(f"'{ov.input_line}'" for ov in parsed if ov.get_key_element() == twice.get_key_element())
        raise ConfigError(f"{given}: {twice.get_key_element()} is given more than once (the last would win); give "
                          "all its values in one override, e.g. seed=0,1,2")
    options = None
    for ov in parsed:
        if isinstance(ov.value(), Glob):  # model=glob(*): the group's options, as Hydra's multirun lists them
            options = options or _GroupOptions(config_dir)
            ov.config_loader = options
    try:
        jobs = BasicSweeper.split_arguments(parsed, None)[0]
        empty = [ov.input_line for ov in parsed if ov.is_sweep_override() and not list(ov.sweep_string_iterator())]
    except Exception as err:
        raise ConfigError(f"cannot expand sweep {overrides}: {first_line(err)}") from None
    if empty:  # range(0), range(5,1), glob() of no option: a sweep of no job would train nothing and exit 0
        groups = f" (glob() picks options of a config group: {', '.join(sorted(options.groups))})" if options else ""
        raise ConfigError(f"'{empty[0]}' gives no value to sweep over{groups}; give at least one, e.g. "
                          "seed=range(1,4) or optim.lr=1e-3,3e-4")
    swept = [ov.get_key_element() for ov in parsed if ov.is_sweep_override()]
    return jobs, swept


def job_name(index: int, job: list[str], swept: list[str]) -> str:
    """'<index>-<tail of each swept key>=<value>,…', filesystem-safe and at most ~80 characters."""
    parts = []
    for item in job:
        key, _, value = item.partition("=")
        if key in swept:
            value = value.strip("'\"")  # a quoted value (data.root='2024.10') is named without its quotes
            parts.append(f"{key.lstrip('+~').split('.')[-1]}={value}")
    short = re.sub(r"[^A-Za-z0-9._=,+-]+", "_", ",".join(parts))[:72].strip("_") or "job"
    return f"{index}-{short}"


def _job(index: int, total: int) -> str:
    """'sweep job 2 (3 of 4)': the job's number as its run folder, the summary table and errors give it (from 0),
    then how far the sweep has come."""
    return f"sweep job {index} ({index + 1} of {total})"


def sweep_dir(run_dir) -> Path:
    """The given --run-dir, or runs/sweep/<YYYYmmdd-HHMMSS>[-N]."""
    from segcli.runs import make_run_dir

    return make_run_dir(str(run_dir) if run_dir else None, "sweep")


def sweep(overrides: list[str], run_dir=None, config_dir=None, print_cfg: bool = False) -> list[dict]:
    """Run every job of the sweep; rows of the summary (also printed and written). Raises CheckFailed if one failed."""
    from segcli.config import compose, to_yaml

    jobs, swept = expand(overrides, config_dir)
    if not swept:
        raise ConfigError("-m needs at least one swept override, e.g. optim.lr=1e-3,3e-4 or model=unet,fpn")
    if print_cfg:  # every job composed before the first is printed: an error leaves no partial listing
        composed = [to_yaml(compose("train", job, config_dir=config_dir)) for job in jobs]
        for job, text in zip(jobs, composed):
            result(f"# {' '.join(job)}")
            result(text)
        return []
    _check_jobs(jobs, swept, config_dir, range(len(jobs)))  # every job, before the first trains for hours
    if run_dir and ((Path(run_dir) / "config.yaml").is_file() or (Path(run_dir) / "checkpoints").is_dir()):
        raise ConfigError(f"--run-dir {run_dir} holds a run (config.yaml, checkpoints); a sweep needs a folder of its "
                          "own (its summary and job folders would mix with the run, and `--resume` would find the "
                          "sweep, not the run): give another --run-dir")
    from segcli.runs import held_run_dir

    if run_dir and is_sweep_dir(Path(run_dir)):
        with held_run_dir(Path(run_dir), "wait for that sweep to end, or give another --run-dir"):  # a running one:
            pass  # was told to continue it with --resume, which is then refused while it runs
        raise ConfigError(f"--run-dir {run_dir} holds a sweep already ({_record(Path(run_dir))}); continue it with "
                          f"`segcli train --resume {run_dir}`, or give another --run-dir (its job folders hold the "
                          "earlier runs)")
    root = sweep_dir(run_dir)
    with held_run_dir(root, "wait for that sweep to end, or give another --run-dir"):
        _write_record(root, overrides, config_dir, jobs, swept)
        info(f"train: sweep of {len(jobs)} jobs in {root}")
        return _run_jobs(root, jobs, swept, config_dir, [], [], None)


def _check_jobs(jobs: list[list[str]], swept: list[str], config_dir, indices, extra: tuple[str, ...] = ()) -> None:
    """The keys and values of the jobs at `indices` (with `extra` overrides), as training will check them."""
    from segcli.checks import check_values
    from segcli.config import compose, to_container

    for index in indices:
        try:
            check_values(to_container(compose("train", jobs[index] + list(extra), config_dir=config_dir)))
        except ConfigError as err:
            raise ConfigError(f"sweep job {index} ({job_name(index, jobs[index], swept)}): {err}") from None


def is_sweep_dir(path: Path) -> bool:
    """Whether `path` holds a sweep (its record, or the summary of a sweep from before records were kept)."""
    return (path / SWEEP_FILE).is_file() or (path / "summary.csv").is_file()


def _record(path: Path) -> str:
    return SWEEP_FILE if (path / SWEEP_FILE).is_file() else "summary.csv"


def _write_record(root: Path, overrides: list[str], config_dir, jobs: list[list[str]], swept: list[str]) -> None:
    """sweep.json: the command line, and the jobs as expanded (a resume runs these: shuffle() and glob() could
    expand to another order or other options later)."""
    import os

    from segcli.inference.io import atomic_write_bytes

    record = {"overrides": list(overrides), "config_dir": str(Path(config_dir).resolve()) if config_dir else None,
              "cwd": os.getcwd(), "jobs": [list(job) for job in jobs], "swept": list(swept)}
    atomic_write_bytes(root / SWEEP_FILE, (json.dumps(record, indent=2) + "\n").encode("utf-8"))


def root_override(ov) -> str:
    """The `data.root=PATH` override each job of a resumed sweep gets for a parsed `data.root=...`: an interpolation
    (${oc.env:HOME}/data) resolved, the path made absolute (the jobs may run elsewhere) and its '${' escaped. Before,
    `${oc.env:HOME}/x` became CWD/${oc.env:HOME}/x, and a folder named with '${' failed in every job."""
    from omegaconf import OmegaConf

    from segcli.config import literal
    from segcli.training.resume import resolved

    value = resolved(OmegaConf.create({"data": {"root": ov.value()}}), "data.root", ov.input_line)
    return f"data.root={literal(str(Path(str(value)).expanduser().resolve()))}"


def resume_sweep(root: str | Path, overrides: list[str]) -> list[dict]:
    """`segcli train --resume SWEEP_DIR [overrides]`: continue a stopped sweep. Jobs the summary lists keep their
    row (ok or failed); a started job continues from its last.ckpt (`--resume`, the same RESUMABLE overrides), one
    without a checkpoint starts afresh in its folder; the others run as the sweep would have run them. The
    overrides (only RESUMABLE keys) apply to every job still to run."""
    from segcli.runs import held_run_dir
    from segcli.training.resume import refuse_unresumable

    root = Path(root).expanduser().resolve()
    record_file = root / SWEEP_FILE
    if not record_file.is_file():
        raise DataError(f"{record_file}: not found; this sweep was started by a segcli that did not record its "
                        "command line, so it cannot be continued: run the jobs it lacks as a new sweep")
    try:
        record = json.loads(record_file.read_text(encoding="utf-8"))
        saved, config_dir, cwd = list(record["overrides"]), record.get("config_dir"), record.get("cwd")
        recorded = record.get("jobs"), record.get("swept")  # absent in records of earlier segcli versions
        if recorded[0] is not None:
            recorded = [[str(o) for o in job] for job in recorded[0]], [str(k) for k in recorded[1]]
    except (ValueError, KeyError, TypeError) as err:
        raise DataError(f"{record_file}: unreadable ({first_line(err)}); it is written by `segcli train -m`") from None
    extra = []
    for ov in _parse(overrides):
        refuse_unresumable(ov, f"--resume continues the sweep in {root} as {SWEEP_FILE} records it")
        if ov.key_or_group == "data.root":
            extra.append(root_override(ov))
        else:
            extra.append(ov.input_line)
    if cwd is None or not Path(cwd).is_dir():
        cwd = None  # the folder it was started in has gone: relative paths are read from the current one
    jobs, swept = recorded if recorded[0] is not None else expand(saved, config_dir)
    rows = _summary_rows(root)
    for row in [r for r in rows if _write_failure(f"segcli: error: {r.get('error') or ''}") is not None]:
        rows.remove(row)  # a job an earlier segcli recorded as failed on a full disk (and went on): it runs again
        if row.get("run_dir"):
            _undo_job(root / Path(row["run_dir"]).name)
    for row in rows:  # the sweep folder may have been moved or copied since: its jobs' folders are in it
        if row.get("run_dir"):
            row["run_dir"] = str(root / Path(row["run_dir"]).name)
    done = {int(r["job"]) for r in rows}
    pending = [i for i in range(len(jobs)) if i not in done]
    started = [i for i in pending if _started(root / job_name(i, jobs[i], swept))]
    _check_jobs(jobs, swept, config_dir, [i for i in pending if i not in started], extra)  # the jobs that start afresh
    _check_resumes(root, jobs, swept, started, extra)  # and those that continue
    _check_resumed_data(root, jobs, swept, extra)
    _check_not_running(root, jobs, swept, pending)
    with held_run_dir(root, "wait for that sweep to end"):
        left = len(jobs) - len(done)
        info(f"train: continuing the sweep in {root}: {len(done)} of {len(jobs)} jobs ended before, {left} to run")
        return _run_jobs(root, jobs, swept, config_dir, rows, extra, cwd)


def _check_resumes(root: Path, jobs: list[list[str]], swept: list[str], indices, extra: list[str]) -> None:
    """The jobs at `indices` continue from their last.ckpt: the overrides must suit each one's resume (e.g.
    trainer.max_epochs only raised), else every such job would fail, and its row keep that failure."""
    from segcli.checks import check_values
    from segcli.config import to_container
    from segcli.training.resume import resume_config

    for index in indices:
        name = job_name(index, jobs[index], swept)
        try:
            check_values(to_container(resume_config(root / name, extra)))
        except (ConfigError, DataError) as err:
            raise type(err)(f"sweep job {index} ({name}): {err}") from None


def _check_resumed_data(root: Path, jobs: list[list[str]], swept: list[str], extra: list[str]) -> None:
    """A data.root given to --resume names the dataset moved since (README): it must hold a card saying what the
    jobs with a checkpoint trained on. Else every job left failed (no card; a started one: 'the dataset changed')
    and its row kept that failure for good, while a job starting afresh trained on the other data."""
    from omegaconf import OmegaConf

    from segcli.data.card import load_card
    from segcli.inference.backends import read_checkpoint
    from segcli.training.resume import check_same_data, meta_now

    given = next((o.partition("=")[2] for o in extra if o.startswith("data.root=")), None)
    if given is None:
        return
    card = load_card(OmegaConf.create({"root": given}).root)  # root_override's escaped path, read back
    for index, job in enumerate(jobs):
        run_dir = root / job_name(index, job, swept)
        ckpt = next((p for p in (run_dir / "checkpoints" / n for n in ("last.ckpt", "best.ckpt")) if p.is_file()), None)
        if ckpt is None or not (run_dir / "config.yaml").is_file():
            continue
        saved = read_checkpoint(ckpt, mmap=True)["hyper_parameters"]["meta"]  # the meta only: no weights read
        try:
            check_same_data(saved, meta_now(saved, card, OmegaConf.load(run_dir / "config.yaml").data), card.path)
        except DataError as err:
            raise DataError(f"sweep job {index} ({run_dir.name}): {err.message.replace('this run', 'this job')}; "
                            "give data.root the dataset the sweep trained on") from None


def _check_not_running(root: Path, jobs: list[list[str]], swept: list[str], indices) -> None:
    """A job folder another segcli train holds now (a job left running when its sweep was killed, or a --resume of
    that job alone) would fail that job with 'another segcli train is running', and its row keep the failure."""
    import os

    from segcli.runs import lock_folder

    for index in indices:
        run_dir = root / job_name(index, jobs[index], swept)
        if not run_dir.is_dir():
            continue
        handle = os.open(run_dir, os.O_RDONLY)
        try:
            lock_folder(handle)
        except BlockingIOError:
            raise ConfigError(f"sweep job {index} ({run_dir.name}): another segcli train is running in {run_dir} now "
                              "(left running by a sweep that was killed?); wait for it to end (or stop it), then "
                              "continue the sweep") from None
        except ImportError:  # no flock here (Windows)
            pass
        finally:
            os.close(handle)  # (and with it the lock just taken)


def follow_parent() -> None:
    """In a sweep's job (SEGCLI_SWEEP_PARENT holds the sweep's pid): stop as on SIGTERM when the sweep process dies
    (a SIGKILL, an out-of-memory kill), as when it is stopped. Such a job went on training as an orphan, and a
    --resume of the sweep then met its folder held. Linux only; the variable is not passed on (DDP processes)."""
    import ctypes
    import os
    import sys

    parent = os.environ.pop("SEGCLI_SWEEP_PARENT", None)
    if parent is None or not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if str(os.getppid()) != parent:  # it died before that: stop now
        os.kill(os.getpid(), signal.SIGTERM)


def _started(run_dir: Path) -> bool:
    return (run_dir / "checkpoints" / "last.ckpt").is_file()


def _summary_rows(root: Path) -> list[dict]:
    """The rows of SWEEP_DIR/summary.json (the jobs that ended), [] when there is none yet."""
    path = root / "summary.json"
    if not path.is_file():
        return []
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))["jobs"]
        return [dict(r, job=int(r["job"])) for r in rows]
    except (ValueError, KeyError, TypeError) as err:
        raise DataError(f"{path}: unreadable ({first_line(err)}); it is written by `segcli train -m`") from None


def _run_jobs(root: Path, jobs: list[list[str]], swept: list[str], config_dir, rows: list[dict], extra: list[str],
              cwd) -> list[dict]:
    """Run the jobs `rows` does not hold yet, writing the summary after each; then print it (exit 1 on a failure)."""
    done = {r["job"] for r in rows}
    try:
        for index, job in enumerate(jobs):
            if index in done:
                continue
            rows.append(_run_job(index, job, swept, root, config_dir, len(jobs), extra, cwd))
            rows.sort(key=lambda r: r["job"])
            try:
                write_summary(root, rows)
            except WriteError as err:  # the job ended; the sweep cannot record it, so it stops (--resume goes on)
                raise _stopping_the_sweep(err, root) from None
    except BaseException:
        try:  # the rows of the jobs that ended; on a full disk this fails too, and must not hide what stopped the sweep
            write_summary(root, rows)
        except DataError:
            pass
        raise
    write_summary(root, rows)
    print_summary(rows)
    _say_fold_ensembles(rows)
    result(str(root))
    failed = [r for r in rows if r["status"] != "ok"]
    if failed:
        raise CheckFailed(f"sweep: {len(failed)} of {len(rows)} jobs failed ({', '.join(str(r['job']) for r in failed)}); "
                          f"see {root / 'summary.csv'}")
    return rows


def _run_job(index: int, job: list[str], swept: list[str], root: Path, config_dir, total: int,
             extra: list[str], cwd) -> dict:
    """Run one job as its own `segcli train` process (isolated memory, CUDA and data-loader workers; a crash or
    an out-of-memory kill fails only that job); one stopped with a checkpoint continues (`--resume`). Its stderr is
    passed through; the result is read from its run dir."""
    import os
    import subprocess
    import sys

    name = job_name(index, job, swept)
    run_dir = root / name
    row = {"job": index, "overrides": " ".join(o for o in job if o.partition("=")[0] in swept), "status": "ok",
           "best_val_mIoU": None, "final_mIoU": None, "epochs": None, "run_dir": str(run_dir), "error": ""}
    if _started(run_dir):
        info(f"train: {_job(index, total)}: continuing {run_dir}")
        args = [sys.executable, "-m", "segcli", "train", "--resume", str(run_dir), *extra]
    else:
        if (run_dir / "checkpoints").is_dir():  # a stop reached it while it wrote its first best.ckpt: no last.ckpt
            info(f"train: {_job(index, total)}: {run_dir} was stopped before a last.ckpt to continue from; "
                 "it starts afresh")
            _undo_job(run_dir)  # else the job's own --run-dir check refuses the folder, and the job stays failed
        info(f"train: {_job(index, total)}: {' '.join(job + extra)}")
        args = [sys.executable, "-m", "segcli", "train", *job, *extra, "--run-dir", str(run_dir)]
        if config_dir:
            args += ["--config-dir", str(config_dir)]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, errors="replace",
                            cwd=cwd, env={**os.environ, "SEGCLI_SWEEP_PARENT": str(os.getpid())})  # follow_parent
    last, held = "", ""  # held: the job's error line, passed on unless the sweep stops with it as its own error
    try:
        for line in proc.stderr:
            if held:
                sys.stderr.write(held)
            held = line if line.startswith("segcli: error: ") else ""
            if not held:
                sys.stderr.write(line)
            last = line.strip() or last
        code = proc.wait()
    except KeyboardInterrupt as stop:  # the job gets the same signal (`timeout` or `kill` reach this process only)
        if held:
            sys.stderr.write(held)
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM if isinstance(stop, Terminated) else signal.SIGINT)
        _drain(proc)
        raise
    failed_write = _write_failure(last) if code == EXIT_DATA else None
    if failed_write is not None:
        _undo_job(run_dir)
        raise _stopping_the_sweep(failed_write, root)
    if held:
        sys.stderr.write(held)
    if code == 130:  # Ctrl-C reached the job (its whole process group) and the job stopped
        raise KeyboardInterrupt
    if code in STOP_EXIT_CODES:  # the job alone was stopped (`kill PID`): as on Ctrl-C, --resume continues it
        info(f"train: {_job(index, total)} was stopped ({signal.Signals(code - 128).name}); the sweep stops "
             f"too: continue it with `segcli train --resume {root}`")
        raise KeyboardInterrupt
    if code != 0:
        if code < 0:  # ended by a signal it could not handle
            error = f"killed by {signal.Signals(-code).name}" + (" (out of memory?)" if code == -9 else "")
        else:
            error = (last.removeprefix("segcli: error: ") if last.startswith("segcli: error: ")
                     else f"exit {code}: {last}")
        row.update(status=f"failed (exit {code})", error=error)
        info(f"train: {_job(index, total)} failed: {error}")
    row.update(run_results(run_dir))
    if not run_dir.exists():  # the job failed before making it (a bad dataset), or removed it
        row["run_dir"] = ""
    return row


def _stopping_the_sweep(err: WriteError, root: Path) -> WriteError:
    """A job stopped by a full disk, a quota or a read-only file system: the sweep stops with it (every later job
    would meet it too) and leaves the job out of the summary, so that `--resume` runs it again once it can write."""
    return WriteError(err.path, err.reason, fix="make room (or make it writable), then continue the sweep with "
                                                f"`segcli train --resume {root}`")


def _write_failure(line: str) -> WriteError | None:
    """The WriteError a job's last stderr line reports (segcli.inference.io.writing's message) when its cause is the
    file system's (WRITE_ERRNOS), else None."""
    import os

    from segcli.inference.io import WRITE_ERRNOS

    found = WriteError.from_line(line)
    if found is None or found.reason not in {os.strerror(code) for code in WRITE_ERRNOS}:
        return None
    return found


def _undo_job(run_dir: Path) -> None:
    """A job that a write failure stopped before its first last.ckpt cannot be continued, and its folder (a
    best.ckpt, validated epochs in metrics.csv) would refuse a fresh start there: it is removed, as if it had not
    started (which also gives back its room). One with a last.ckpt is kept; `--resume` continues it."""
    import shutil

    if run_dir.is_dir() and not _started(run_dir):
        shutil.rmtree(run_dir, ignore_errors=True)


def _drain(proc) -> None:
    """Wait for a job that was signalled to stop, passing on what it still prints (its `segcli: interrupted`)."""
    import sys

    for line in proc.stderr:
        sys.stderr.write(line)
    proc.wait()


def run_results(run_dir: Path) -> dict:
    """best_val_mIoU and completed epochs from RUN_DIR/metrics.csv, final_mIoU from RUN_DIR/eval/report.json
    (None if absent)."""
    out = {}
    metrics = run_dir / "metrics.csv"
    if metrics.is_file():
        with open(metrics, newline="") as handle:
            rows = list(csv.DictReader(handle))
        vals = [float(r["val/mIoU"]) for r in rows if r.get("val/mIoU")]
        # Completed epochs: those with an epoch-end training row (validation may run every N epochs, or never).
        ended = {int(r["epoch"]) for r in rows if r.get("train/loss_epoch") and str(r.get("epoch", "")).isdigit()}
        out.update(best_val_mIoU=max(vals) if vals else None, epochs=len(ended) if ended else len(vals))
    report = run_dir / "eval" / "report.json"
    if report.is_file():
        out["final_mIoU"] = json.loads(report.read_text(encoding="utf-8")).get("mIoU")
    return out


def _pct(value) -> str:
    return "—" if value is None else f"{value * 100:.2f}"


FOLD_KEY = "data.fold"  # a sweep over it is a k-fold cross-validation


def _key(item: str) -> str:
    return item.partition("=")[0].lstrip("+~")


def cross_validation(rows: list[dict]) -> list[dict]:
    """When the sweep swept data.fold: for each setting of the other swept keys, its folds' mean and sample standard
    deviation of best val mIoU, over the jobs that ended ok (std needs two; a fold run has no final evaluation).
    [] for other sweeps."""
    from statistics import fmean, stdev

    groups: dict[str, list[dict]] = {}
    for row in rows:
        items = row["overrides"].split()
        if not any(_key(item) == FOLD_KEY for item in items):
            return []
        groups.setdefault(" ".join(i for i in items if _key(i) != FOLD_KEY), []).append(row)
    out = []
    for setting, members in groups.items():
        ok = [m for m in members if m["status"] == "ok"]
        values = [m["best_val_mIoU"] for m in ok if m["best_val_mIoU"] is not None]
        out.append({"overrides": setting, "folds": len(members), "ok": len(ok), "run_dirs": [m["run_dir"] for m in ok],
                    "best_val_mIoU_mean": fmean(values) if values else None,
                    "best_val_mIoU_std": stdev(values) if len(values) > 1 else None})
    return out


def _mean_std(entry: dict, key: str) -> str:
    mean, std = entry[f"{key}_mean"], entry[f"{key}_std"]
    return _pct(mean) + ("" if std is None else f" ± {std * 100:.2f}")


def _say_fold_ensembles(rows: list[dict]) -> None:
    """After a k-fold sweep, for each setting whose folds all ended ok: the predict command of their ensemble."""
    import shlex

    for entry in cross_validation(rows):
        if entry["ok"] == entry["folds"] > 1 and all(entry["run_dirs"]):
            ckpts = " ".join(f"--ckpt {shlex.quote(str(Path(d) / 'checkpoints' / 'best.ckpt'))}"
                             for d in entry["run_dirs"])
            setting = f" of {entry['overrides']}" if entry["overrides"] else ""
            info(f"train: predict with the {entry['folds']} folds{setting} together (their probabilities averaged): "
                 f"segcli predict {ckpts} INPUT... --out DIR")


def print_summary(rows: list[dict]) -> None:
    """The summary table on stdout: one row per job; after a k-fold sweep, the folds' mean ± std per setting."""
    from rich.table import Table

    from segcli.reports import plain

    table = Table(title="sweep summary")
    for name, justify in (("job", "right"), ("overrides", "left"), ("status", "left"), ("best val mIoU", "right"),
                          ("final mIoU", "right"), ("epochs", "right"), ("run dir", "left")):
        table.add_column(name, justify=justify)
    for r in rows:
        table.add_row(str(r["job"]), plain(r["overrides"]), plain(r["status"]), _pct(r["best_val_mIoU"]),
                      _pct(r["final_mIoU"]), "—" if r["epochs"] is None else str(r["epochs"]), plain(r["run_dir"] or "—"))
    print_wide(stdout_console(), table)
    folds = cross_validation(rows)
    if folds:
        table = Table(title="cross-validation (mean ± std over folds)")
        for name in ("overrides", "folds ok", "best val mIoU"):
            table.add_column(name, justify="left" if name == "overrides" else "right")
        for entry in folds:
            table.add_row(plain(entry["overrides"] or "—"), f"{entry['ok']}/{entry['folds']}",
                          _mean_std(entry, "best_val_mIoU"))
        print_wide(stdout_console(), table)


def write_summary(root: Path, rows: list[dict]) -> None:
    """SWEEP_DIR/summary.csv and summary.json (mIoU as fractions), atomically."""
    from segcli.inference.io import atomic_write_bytes

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows([{k: ("" if r.get(k) is None else r.get(k)) for k in FIELDS} for r in rows])
    # summary.json first: it is what `--resume` reads (and it writes summary.csv again at its end)
    record = {"jobs": rows, **({"cross_validation": folds} if (folds := cross_validation(rows)) else {})}
    atomic_write_bytes(root / "summary.json", (json.dumps(record, indent=2) + "\n").encode("utf-8"))
    atomic_write_bytes(root / "summary.csv", buffer.getvalue().encode("utf-8"))
