"""Where output goes: results to stdout, everything meant for people to stderr."""

from __future__ import annotations

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


def result(line: str) -> None:
    """A line a pipeline consumes (stdout)."""
    sys.stdout.write(f"{line}\n")
    sys.stdout.flush()
