"""Where output goes: results to stdout, everything meant for people to stderr."""

from __future__ import annotations

import errno
import functools
import os
import sys


def stderr_console():
    from rich.console import Console

    return Console(stderr=True)


def stdout_console():
    """A rich console on stdout. On a terminal, its width and colours. Anywhere else (a pipe, a file) plain text at
    the tables' natural width: FORCE_COLOR=1 or TTY_COMPATIBLE=1 (set in many CI jobs for the logs' sake) put escape
    codes into the tables a pipeline reads and cut their class names to the 80 columns of a terminal that is not
    there, and COLUMNS (COLUMNS=20 in a narrow CI runner) squeezed every number of a table to '…'."""
    Console = _results_console()
    if _is_tty(sys.stdout) and os.environ.get("TERM", "").lower() not in ("dumb", "unknown"):
        return Console(file=_Escaping(sys.stdout), soft_wrap=True)
    # a dumb terminal (Emacs' shell, some CI ptys) takes no escape codes, and rich held its tables to 80 columns there,
    # whatever their width was set to: class names cut to 'backg…'
    return Console(file=_Escaping(sys.stdout), soft_wrap=True, force_terminal=False, width=_NATURAL_WIDTH)


@functools.cache
def _results_console():
    """rich's Console, less its answer to a reader that went away (`segcli eval | head -1`): it pointed stdout at
    /dev/null and exited 1, the code of a failed check, without a word. The BrokenPipeError goes on to segcli's
    own handling instead (exit 3, one line)."""
    from rich.console import Console

    class ResultsConsole(Console):
        def on_broken_pipe(self) -> None:
            self.quiet = True  # what is left in its buffer is not written again
            raise BrokenPipeError(errno.EPIPE, os.strerror(errno.EPIPE))

    return ResultsConsole


_NATURAL_WIDTH = 10_000  # wider than any table: rich then prints each one at its own width (tables do not expand)


def print_wide(console, renderable) -> None:
    """A table on stdout at its natural width where the console is narrower: squeezed to a narrow terminal (COLUMNS=30,
    a split pane), rich cut every number to '…' or to nothing; wider lines wrap in the terminal instead, and every
    value stays readable."""
    from rich.measure import Measurement

    natural = Measurement.get(console, console.options.update(width=_NATURAL_WIDTH), renderable).maximum
    width, console.width = console.width, max(console.width, natural)
    try:
        console.print(renderable)
    finally:
        console.width = width


def stderr_is_terminal() -> bool:
    """Whether stderr is a terminal: progress bars only there (a CI log or `2> file` gets plain lines)."""
    return _is_tty(sys.stderr)


def _is_tty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, OSError, ValueError):
        return False


def writable(text: str, stream=None) -> str:
    """`text` as `stream` (stdout by default) can write it: the characters its encoding lacks (ASCII under a C locale
    with PYTHONUTF8=0) escaped as Python escapes them on stderr ('stra\\xdfe'); `text` itself where the encoding has
    them all."""
    encoding = getattr(sys.stdout if stream is None else stream, "encoding", None) or "utf-8"
    try:
        text.encode(encoding)
    except UnicodeEncodeError:
        return text.encode(encoding, "backslashreplace").decode(encoding)
    except LookupError:  # an encoding Python does not know: left to the stream
        pass
    return text


class _Escaping:
    """A text stream whose characters its encoding lacks are written as Python writes them on stderr (`\\xe9`), so a
    table of class names such as 'bâtiment' or the '—' of a null rate does not fail the command after its work is done
    when stdout's encoding is ASCII (PYTHONIOENCODING=ascii, a C locale with PYTHONUTF8=0)."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except UnicodeEncodeError:  # raised before anything is written: the text is encoded whole first
            return self._stream.write(writable(text, self._stream))

    @property
    def unescaped(self):
        """The stream underneath (write_out writes a path the encoding lacks as its bytes, not escaped)."""
        return getattr(self._stream, "unescaped", self._stream)

    def __getattr__(self, name):
        return getattr(self._stream, name)


class Results(_Escaping):
    """sys.stdout for a run of segcli: text from Click (the help of `segcli --help`, with its '→'), from rich or from
    a library that stdout's encoding lacks (latin-1 or cp1252: a redirected stdout on Windows, a legacy locale) is
    escaped, where it was exit 4 (UnicodeEncodeError) with nothing printed. An unbuffered stdout gets whole_writes."""

    def __init__(self, stream):
        super().__init__(whole_writes(stream))


class _WholeWrites:
    """A raw file whose write() writes every byte or raises: the kernel's short write (a file reaching the size limit
    of `ulimit -f`, a disk filling up) is followed by another write, which then fails with the reason (EFBIG,
    ENOSPC)."""

    def __init__(self, raw):
        self._raw = raw

    def write(self, data) -> int:
        view, done = memoryview(data).cast("B"), 0
        while done < len(view):
            written = self._raw.write(view[done:])
            if written is None:  # a non-blocking stdout that is full
                raise BlockingIOError(errno.EAGAIN, os.strerror(errno.EAGAIN))
            done += written
        return done

    def __getattr__(self, name):
        return getattr(self._raw, name)


def whole_writes(stream):
    """`stream` (sys.stdout), or where it is unbuffered (PYTHONUNBUFFERED=1 or `python -u`, as many container images
    set) the same text stream over _WholeWrites. Unbuffered, Python writes each text once to the file and drops what a
    short write left out: `segcli eval --json -` into a file at its size limit exited 0 with the JSON cut at 2,048
    bytes."""
    import io

    raw = getattr(stream, "buffer", None)
    if not isinstance(raw, io.FileIO):
        return stream
    return io.TextIOWrapper(_WholeWrites(raw), encoding=stream.encoding, errors=stream.errors,
                            line_buffering=stream.line_buffering, write_through=True)


class PeopleText:
    """sys.stderr made best effort: a stderr that cannot take a line (a log file on a full disk, the terminal of a
    closed ssh session: EIO, a reader that went away) loses that line, not the run that prints it (a progress bar
    or a log line failing a training with exit 3 after its first epoch)."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except (OSError, ValueError):
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except (OSError, ValueError):
            pass

    def __getattr__(self, name):
        return getattr(self._stream, name)


def counted(count: int, noun: str) -> str:
    """"1 image", "3 images": `count` and `noun`, plural (+s) unless the count is one."""
    return f"{count} {noun}{'s' * (count != 1)}"


def info(message: str) -> None:
    """A progress/log line for people (stderr); best effort, as PeopleText."""
    try:
        sys.stderr.write(f"{message}\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


def first_process() -> bool:
    """False in the 2nd, 3rd, … process of a distributed run on this machine (LOCAL_RANK, set by torchrun and by
    Lightning's launcher): messages said once per run check it."""
    return os.environ.get("LOCAL_RANK", "0") == "0"


def result(line: str) -> None:
    """A line a pipeline consumes (stdout)."""
    write_out(f"{line}\n")


def write_out(text: str) -> None:
    """Text a pipeline consumes, on stdout. A path that stdout's encoding cannot hold (a file name that is not UTF-8,
    seen as surrogate escapes; 'é' under PYTHONIOENCODING=ascii or a C locale with PYTHONUTF8=0) is written as the
    file name's own bytes, which is what a reader passes back to the file system."""
    stdout = getattr(sys.stdout, "unescaped", sys.stdout)
    try:
        stdout.write(text)
    except UnicodeEncodeError:
        stdout.flush()
        try:
            data = os.fsencode(text)
        except UnicodeEncodeError:  # not a path of this file system: text, as UTF-8
            data = text.encode("utf-8", "surrogateescape")
        stdout.buffer.write(data)
    stdout.flush()
