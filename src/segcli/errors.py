"""One exception family and the exit codes that `main()` turns them into.

Library code raises these with actionable one-line messages; only the CLI's
`main()` prints them (one line on stderr) and exits with the documented code.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_CHECK_FAILED = 1  # lint errors, an eval gate, export verification
EXIT_USAGE = 2  # usage or configuration error
EXIT_DATA = 3  # input data error (unreadable or invalid files)
EXIT_INTERNAL = 4  # an unexpected failure inside segcli (a bug): please report it
EXIT_INTERRUPTED = 130  # Ctrl-C / SIGINT


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


class CheckFailed(SegcliError):
    """A check ran and did not pass (lint, eval gate, export verification)."""

    exit_code = EXIT_CHECK_FAILED
