"""One exception family and the exit codes that `main()` turns them into.

Library code raises these with actionable one-line messages; only the CLI's
`main()` prints them (one line on stderr) and exits with the documented code.
"""

from __future__ import annotations

import contextlib
import re
import signal
import threading

try:  # imported now: under a low address-space limit, the failure it explains can keep this extension from loading
    import resource
except ImportError:  # not POSIX
    resource = None

EXIT_OK = 0
EXIT_CHECK_FAILED = 1  # lint errors, an eval gate, export verification, a diverged training run
EXIT_USAGE = 2  # usage or configuration error
EXIT_DATA = 3  # input data error (unreadable or invalid files)
EXIT_INTERNAL = 4  # an unexpected failure inside segcli (a bug): please report it
EXIT_INTERRUPTED = 130  # Ctrl-C / SIGINT
EXIT_TERMINATED = 143  # SIGTERM (`kill`, `timeout`, a cancelled CI job, torchrun stopping its ranks); SIGHUP: 129
STOP_SIGNALS = ("SIGTERM", "SIGHUP")  # stopped like Ctrl-C: cleanups run, exit 128 + the signal's number
STOP_EXIT_CODES = (129, EXIT_INTERRUPTED, EXIT_TERMINATED)  # how a segcli process exits when SIGHUP, Ctrl-C or
# SIGTERM stopped it


class SegcliError(Exception):
    """Base class: a user-facing failure with an exit code."""

    exit_code = EXIT_USAGE

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class ConfigError(SegcliError):
    """Bad command-line usage or configuration (unknown key, bad value)."""

    exit_code = EXIT_USAGE


class DataError(SegcliError):
    """Unreadable or invalid input files (images, masks, checkpoints, models)."""

    exit_code = EXIT_DATA


class WriteError(DataError):
    """An output could not be written: a full disk, a quota, a read-only filesystem (segcli.inference.io.writing).
    `path` is the file or folder named; `reason` the system's words ("No space left on device")."""

    FIX = "check free space and permissions"

    def __init__(self, path, reason: str, fix: str = FIX):
        super().__init__(f"{path}: cannot write it ({reason}); {fix}")
        self.path, self.reason = path, reason

    @classmethod
    def from_line(cls, line: str) -> "WriteError | None":
        """The WriteError that another segcli process's `segcli: error:` line reports (a sweep's job), else None."""
        found = re.fullmatch(rf"segcli: error: (.+): cannot write it \((.+?)\); {re.escape(cls.FIX)}", line.strip())
        return None if found is None else cls(found.group(1), found.group(2))


class CheckFailed(SegcliError):
    """A check ran and did not pass (lint, eval gate, export verification, a training loss gone inf/NaN)."""

    exit_code = EXIT_CHECK_FAILED


class OtherProcessFailed(SegcliError):
    """Another process of a distributed run failed and printed its own error; this one stops with that exit code
    (rank None: which one is not known here, and the exit code is EXIT_INTERNAL)."""

    def __init__(self, rank: int | None, exit_code: int = EXIT_INTERNAL, this_rank: str = "0"):
        if rank is None:
            super().__init__(f"another process of this run failed (its error is above, or in its own log), so this "
                             f"one (rank {this_rank}) stopped too")
        else:
            super().__init__(f"process {rank} of this run failed (exit {exit_code}; its error is above), so this one "
                             "stopped too")
        self.exit_code = exit_code


class OtherProcessStopped(SegcliError):
    """Another process of a distributed run was stopped by a signal to it alone (exit 129/130/143, or killed): this
    one stops with the same exit code, 128 + the signal's number (SIGKILL: 137, e.g. the out-of-memory killer)."""

    def __init__(self, rank: int, exit_code: int, run_dir: str = "RUN_DIR"):
        signum = stop_signal(exit_code)
        name = signal_name(signum)
        why = f"killed by {name}" + (" (out of memory?)" if name == "SIGKILL" else "") if exit_code < 0 \
            else f"stopped by {name}"
        super().__init__(f"process {rank} of this run was {why}, so this one stopped too; "
                         f"`segcli train --resume {run_dir}` continues from the last checkpoint")
        self.exit_code = 128 + signum


def first_line(err: BaseException, limit: int = 200) -> str:
    """The first non-empty line of `err`'s message (at most `limit` characters), for a one-line error that quotes a
    library's multi-line one; the exception's type name when it has no message."""
    text = str(err).strip()
    return text.splitlines()[0].strip()[:limit] if text else type(err).__name__


MEMORY_HINTS = {  # command → what to lower when it runs out of (CPU or GPU) memory
    "train": "lower data.batch_size, augment.crop_size or data.input_scale, or use trainer.precision=bf16-mixed",
    "predict": "large images: inference=slide (windows of the training crop, or inference.tile=[H,W]); or lower "
               "inference.batch_size / inference.scales",
    "eval": "large images: inference=slide (windows of the training crop, or inference.tile=[H,W]); or lower "
            "inference.batch_size / inference.scales",
    "export": "verify on smaller images (--verify-images DIR)",
    "": "lower the batch size or the image size",
}


def out_of_memory(err: BaseException, command: str = "") -> str:
    """For a failed allocation (Python's MemoryError, torch's CPU allocator or CUDA, OpenCV's): the one-line message
    saying how much was asked for and what `command` should lower; '' for any other exception."""
    text = str(err)
    if not (isinstance(err, MemoryError) or type(err).__name__ == "OutOfMemoryError"
            or (isinstance(err, RuntimeError) and ("can't allocate memory" in text or "CUDA out of memory" in text))
            or (type(err).__name__ == "error" and "Insufficient memory" in text)):
        return ""
    found = re.search(r"[Tt]ried to allocate (\d+) bytes", text)  # torch's CPU allocator
    if found:
        size, unit = float(found.group(1)), "bytes"
        for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
            if size < 1024:
                break
            size /= 1024
        asked = f"tried to allocate {size:.3g} {unit}"
    else:
        found = re.search(r"[Tt]ried to allocate ([\d.]+ ?[KMGTP]?i?B)", text)  # CUDA's
        asked = f"tried to allocate {found.group(1)}" if found else first_line(err)
    limit = address_limit()
    also = f"; or raise this process's address-space limit (ulimit -v, now {limit})" if limit else ""
    return f"out of memory ({asked}); {MEMORY_HINTS.get(command, MEMORY_HINTS[''])}{also}"


def address_limit() -> str:
    """This process's address-space limit (`ulimit -v`, RLIMIT_AS) as '2.0 GB', or '' when there is none. torch maps
    gigabytes of libraries at import: under a few GB it fails to load, or fails oddly later."""
    if resource is None:
        return ""
    try:
        soft = resource.getrlimit(resource.RLIMIT_AS)[0]
    except (OSError, ValueError, AttributeError):
        return ""
    return "" if soft == resource.RLIM_INFINITY else f"{soft / 1e9:.1f} GB"


def exception_chain(err: BaseException | None) -> list[BaseException]:
    """`err` and the exceptions it was raised from or while handling (__cause__, else __context__), nearest first;
    each once (a chain can loop)."""
    seen: list[BaseException] = []
    while err is not None and all(err is not other for other in seen):
        seen.append(err)
        err = err.__cause__ or err.__context__
    return seen


def environment_limit(err: BaseException) -> str:
    """For a failure caused by a limit of this process rather than by segcli or its settings: too many open files
    (`ulimit -n`: data-loader workers failed with 'Too many open files', or Lightning's later 'Please call
    iter(combined_loader) first' hid it), or an address-space limit (`ulimit -v`) too low to load torch ('failed to
    map segment from shared object', which read as a broken install). The one-line message naming the limit and how
    to raise it; '' otherwise."""
    chain = exception_chain(err)
    if any(getattr(e, "errno", None) == 24 or "Too many open files" in str(e) for e in chain):
        try:
            files = f" (ulimit -n: {resource.getrlimit(resource.RLIMIT_NOFILE)[0]})"
        except (AttributeError, OSError, ValueError):  # (no resource module: not POSIX)
            files = ""
        return (f"too many open files for this process's limit{files}; raise it (e.g. ulimit -n 4096), or use "
                "fewer data-loader workers (data.num_workers=0)")
    limit = address_limit()
    mapping = any(isinstance(e, ImportError) and ("failed to map segment" in str(e) or "cannot allocate memory"
                                                  in str(e).lower()) for e in chain)
    if limit and mapping:
        return (f"cannot load a library within this process's address-space limit (ulimit -v: {limit}; "
                f"{first_line(err)}); raise it (e.g. ulimit -v unlimited): torch alone maps several GB")
    return ""


# import name → pip name, where they differ
PIP_NAMES = {"cv2": "opencv-python-headless", "PIL": "pillow", "yaml": "pyyaml", "hydra": "hydra-core",
             "segmentation_models_pytorch": "segmentation-models-pytorch"}


def _pip_name(package: str) -> str:
    """The pip name of top-level module `package` as segcli's requirements spell it (cv2 → opencv-python-headless)."""
    return PIP_NAMES.get(package, package.replace("_", "-"))


def pip_install() -> str:
    """The pip command that installs into the environment segcli runs in (this interpreter's)."""
    import sys

    return f"{sys.executable or 'python'} -m pip install"


def _distribution(package: str) -> str:
    """The installed distribution providing top-level module `package` (google → protobuf, cv2 → the OpenCV wheel
    installed, onnxruntime → onnxruntime-gpu where that one is); the pip name segcli requires when none does."""
    from importlib.metadata import packages_distributions

    found = packages_distributions().get(package)
    return found[0] if found else _pip_name(package)


def _segcli_requires(package: str) -> bool:
    """Whether `package` (a top-level module name) is one of segcli's declared requirements (extras too)."""
    from importlib.metadata import PackageNotFoundError, requires

    try:
        declared = {re.split(r"[\s;<>=!~\[]", line, maxsplit=1)[0].lower().replace("_", "-")
                    for line in requires("segcli") or []}
    except PackageNotFoundError:  # run from a source tree without an install: say what is missing anyway
        return True
    return _pip_name(package).lower() in declared


def import_failed(err: BaseException) -> str:
    """For a package that is missing or broken in this environment (onnxruntime left out of a hand-made install, a
    tensorboard whose protobuf does not match): the one-line message naming it and the pip command that installs it
    into this interpreter. '' for any other exception, and for what is a bug of segcli's: an ImportError among its own
    modules, or of a package it does not declare. A ModuleNotFoundError re-raised from a data-loader worker has lost
    its `name`; the text keeps it."""
    import sys

    if not isinstance(err, ImportError):
        return ""
    text = str(err)
    found = re.search(r"No module named '([\w.]+)'", text)
    name = err.name or (found.group(1) if found else "")
    reason = found.group(0) if found and not err.name else first_line(err)  # a worker's: its last line's words
    frames = []  # (module, function) of the traceback, outermost first, leaving out the standard library
    tb = err.__traceback__
    while tb is not None:
        module = tb.tb_frame.f_globals.get("__name__") or ""
        if module.split(".")[0] not in sys.stdlib_module_names and not module.startswith("_frozen_importlib"):
            frames.append((module, tb.tb_frame.f_code.co_name))
        tb = tb.tb_next
    innermost = frames[-1] if frames else ("", "")
    package = name.split(".")[0]
    if package == "segcli":  # one of segcli's own modules: a bug
        return ""
    generic = (f"a Python package this command needs is missing or broken ({reason}); install or repair the package "
               f"it names: {pip_install()} …")
    if isinstance(err, ModuleNotFoundError) and package:
        if package == "__main__" or package in sys.stdlib_module_names:
            return ""
        if innermost[0].startswith("segcli") and not _segcli_requires(package):
            return ""  # segcli imports a package it does not declare: its bug
        import importlib.util

        if importlib.util.find_spec(package) is None:
            pip = _pip_name(package)
            return (f"the Python package '{pip}' is not installed in this environment ({reason}); install it: "
                    f"{pip_install()} {pip} (or reinstall segcli with its dependencies)")
        broken = package  # a module inside an installed package is missing
    elif isinstance(err, ModuleNotFoundError):
        return generic
    else:  # an ImportError: the innermost package (not segcli) whose module-level code raised it
        last = max((i for i, (module, _) in enumerate(frames) if module.startswith("segcli")), default=-1)
        outside = frames[last + 1:]  # inner to segcli's innermost frame: the library code that raised it
        if outside and outside[-1][1] != "<module>":
            return generic  # raised at run time ('please install X'): the text names what is needed
        if not outside and text.startswith("cannot import name"):
            return ""  # segcli imports a name its installed package lacks: a bug, or a version it does not support
        broken = outside[-1][0].split(".")[0] if outside else package
        if broken in ("", "segcli", "__main__"):
            return ""
    pip = _distribution(broken)
    return (f"the Python package '{pip}' is installed but cannot be imported ({reason}); a broken or mismatched "
            f"install: {pip_install()} --force-reinstall {pip}")


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP arrived. A KeyboardInterrupt, so that everything written for Ctrl-C (staging folders and
    temp files removed, Lightning's graceful shutdown, checkpoint writes finished) runs for it too; Python's own
    handling of these signals ends the process on the spot and leaves half-written outputs behind."""


received_stop: int | None = None  # the stop signal received, kept for when the exception itself gets lost


def _on_stop_signal(signum, frame) -> None:
    global received_stop
    if received_stop is not None:
        return  # the cleanup of the first one is under way: a second must not cut it short
    received_stop = signum
    raise Terminated(signal.Signals(signum).name)


@contextlib.contextmanager
def stop_signals_raise():
    """Inside the block, SIGTERM and SIGHUP raise `Terminated` (main thread only). A signal someone set to be
    ignored (`nohup`) or handled stays as it was; the previous handlers come back afterwards."""
    global received_stop
    received_stop = None
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {}
    for name in STOP_SIGNALS:
        signum = getattr(signal, name, None)
        if signum is not None and signal.getsignal(signum) is signal.SIG_DFL:
            previous[signum] = signal.signal(signum, _on_stop_signal)
    try:
        yield
    finally:
        _restore(previous)


def stop_exit_code() -> int | None:
    """128 + the stop signal received inside `stop_signals_raise`, None if none arrived."""
    return 128 + received_stop if received_stop is not None else None


def stop_signal(exit_code: int) -> int | None:
    """The signal that stopped a process ending with `exit_code`: one that killed it (a negative code, as subprocess
    reports it) or one segcli stops on (129, 130, 143: 128 + its number); None for any other code."""
    if exit_code < 0:
        return -exit_code
    return exit_code - 128 if exit_code in STOP_EXIT_CODES else None


def signal_name(signum: int) -> str:
    """'SIGTERM' for 15; 'signal N' for a number that names no signal here."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def stop_line(code: int) -> str:
    """segcli's line for a process stopped with exit `code` (Ctrl-C: 130; a stop signal: 128 + its number)."""
    if code == EXIT_INTERRUPTED:
        return "segcli: interrupted"
    return f"segcli: terminated ({signal.Signals(code - 128).name})"


@contextlib.contextmanager
def stops_held():
    """Hold Ctrl-C, SIGTERM and SIGHUP until the block is done (a few renames, a checkpoint write), then raise
    them again for the handlers that were there before (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received = []
    signums = [signal.SIGINT] + [getattr(signal, name) for name in STOP_SIGNALS if hasattr(signal, name)]
    previous = {signum: signal.signal(signum, lambda signum, frame: received.append(signum)) for signum in signums}
    try:
        yield
    finally:
        _restore(previous)
        for signum in dict.fromkeys(received):
            signal.raise_signal(signum)


def _restore(handlers: dict) -> None:
    """Put `handlers` back, all of them: a signal arriving between two restores runs the handler that is back
    already (Ctrl-C's KeyboardInterrupt), which cut the loop short and left a hold handler in place for good (a
    later SIGTERM was kept in a list nobody reads). The exception is raised once every handler is back."""
    stopped = None
    while True:
        try:
            for signum, handler in handlers.items():
                if signal.getsignal(signum) is not handler:
                    signal.signal(signum, handler)
            break
        except BaseException as err:  # raised by a handler that ran between two steps: go over them again
            stopped = stopped or err
    if stopped is not None:
        raise stopped
