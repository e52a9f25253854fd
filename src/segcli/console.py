"""Where output goes: results to stdout, everything meant for people to stderr."""

from __future__ import annotations

import os
import sys


def stderr_console():
    from rich.console import Console

    return Console(stderr=True)


def stdout_console():
    from rich.console import Console

    return Console(file=sys.stdout, soft_wrap=True)


def info(message: str) -> None:
    """A progress/log line for people (stderr)."""
    sys.stderr.write(f"{message}\n")
    sys.stderr.flush()


def first_process() -> bool:
    """False in the 2nd, 3rd, … process of a distributed run on this machine (LOCAL_RANK, set by torchrun and by
    Lightning's launcher): messages said once per run check it."""
    return os.environ.get("LOCAL_RANK", "0") == "0"


def result(line: str) -> None:
    """A line a pipeline consumes (stdout)."""
    try:
        sys.stdout.write(f"{line}\n")
    except UnicodeEncodeError:  # a file name that is not UTF-8 (surrogate escapes): print its original bytes
        sys.stdout.flush()
        sys.stdout.buffer.write(f"{line}\n".encode(sys.stdout.encoding or "utf-8", "surrogateescape"))
    sys.stdout.flush()
