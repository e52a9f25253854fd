"""stdout and stderr as pipelines and CI jobs see them: colour forced for the logs, a narrow COLUMNS, a reader that
left before `--help` was printed, a stdout whose encoding lacks the help's characters, an explicit PYTHONUTF8=0.
Results on stdout stay plain text that a program can read; failures are one line with the documented exit code."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml
from helpers_cli import one_error_line
from helpers_cli import segcli_bytes as segcli
from helpers_reliability import SYNTHETIC

CLASSES = ["fond", "route", "bâtiment", "végétation", "車", "pôle", "sign"]


# ----------------------------------------------------------------------------- colour and width
@pytest.mark.parametrize("forced", [{"FORCE_COLOR": "1"}, {"TTY_COMPATIBLE": "1"}], ids=lambda e: next(iter(e)))
def test_colour_forced_for_ci_logs_stays_out_of_a_piped_table(forced, model_ckpt, tmp_path):
    """FORCE_COLOR=1 (set in many CI jobs so that their logs are coloured): eval's per-class table on a piped stdout
    carried escape codes (`\\x1b[1m`) and its class names were cut to an 80-column terminal that was not there."""
    proc = segcli("eval", "--ckpt", model_ckpt, cwd=tmp_path, env=forced)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    table = proc.stdout.decode("utf-8")
    assert "\x1b" not in table
    assert "mIoU" in table and "background" in table and "vegetation" in table and "…" not in table


def test_a_narrow_columns_setting_does_not_squeeze_a_piped_table(monkeypatch, capsys):
    """COLUMNS=20 (a narrow CI runner, or a value left from a terminal): `export --benchmark`'s table on a piped
    stdout came out as columns of '…', every latency lost."""
    from rich.table import Table

    from segcli.console import stdout_console

    monkeypatch.setenv("COLUMNS", "20")
    table = Table(title="latency at 64×64, batch 1")
    for column in ("device", "backend", "latency ms", "images/s", "÷ torch eager"):
        table.add_column(column)
    table.add_row("cpu", "onnxruntime", "35.1", "28.52", "0.16")
    stdout_console().print(table)
    out = capsys.readouterr().out
    assert "…" not in out
    assert "onnxruntime" in out and "35.1" in out and "28.52" in out and "÷ torch eager" in out


def test_a_table_on_a_narrow_terminal_keeps_every_value():
    """On a terminal of 30 columns (a split pane) eval's and the benchmark's tables lost every number (cells cut
    to '…' or left empty); the table now keeps its natural width, and the terminal wraps its lines."""
    import io

    from rich.console import Console
    from rich.table import Table

    from segcli.console import print_wide

    table = Table(title="syn / val: 2 images")
    for column in ("id", "class", "IoU", "BIoU", "Acc", "Prec", "Dice", "gt px", "pred px", "images"):
        table.add_column(column, justify="right")
    table.add_row("3", "vegetation", "17.92", "12.88", "72.92", "19.19", "30.39", "1,625", "6,174", "2")
    terminal = Console(file=io.StringIO(), force_terminal=True, width=30, color_system=None)
    print_wide(terminal, table)
    out = terminal.file.getvalue()
    assert "…" not in out and terminal.width == 30
    for value in ("vegetation", "17.92", "12.88", "72.92", "19.19", "30.39", "1,625", "6,174", "pred px"):
        assert value in out

def test_eval_whose_reader_left_is_exit_3_and_keeps_its_report_files(model_ckpt, tmp_path):
    """`segcli eval --out ev --json r.json | true`: rich's console met the broken pipe itself and exited 1 (the
    code of a failed gate) without a word, and the table was printed before the report files were written, so
    neither ev/ nor r.json was there. Exit 3 in one line, and the files are written."""
    read, write = os.pipe()
    os.close(read)  # the reader is gone before segcli writes
    try:
        proc = segcli("eval", "--ckpt", model_ckpt, "--out", tmp_path / "ev", "--json", tmp_path / "r.json",
                      cwd=tmp_path, stdout=write, stderr=subprocess.PIPE)
    finally:
        os.close(write)
    assert "Broken pipe" in one_error_line(proc, 3)
    assert yaml.safe_load((tmp_path / "r.json").read_text())["mIoU"] >= 0
    assert (tmp_path / "ev" / "report.json").read_text() == (tmp_path / "r.json").read_text()


def test_a_table_on_a_dumb_terminal_keeps_its_class_names(model_ckpt, tmp_path):
    """TERM=dumb on a terminal (Emacs' shell, some CI ptys): rich held eval's table to 80 columns whatever its width
    was set to, so 'vegetation' came out as 'veget…'. A dumb terminal gets the plain table at its natural width."""
    import pty
    import sys

    from helpers_cli import STREAM_SETTINGS

    leader, follower = pty.openpty()
    env = {**{k: v for k, v in os.environ.items() if k not in STREAM_SETTINGS}, "TERM": "dumb", "COLUMNS": "300"}
    proc = subprocess.Popen([sys.executable, "-m", "segcli", "eval", "--ckpt", str(model_ckpt)], cwd=tmp_path,
                            env=env, stdout=follower, stderr=subprocess.DEVNULL)
    os.close(follower)
    out = b""
    while True:  # read as it writes: a full terminal buffer would hold it
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the terminal has no writer left
            break
        if not chunk:
            break
        out += chunk
    os.close(leader)
    assert proc.wait(timeout=600) == 0
    table = out.decode("utf-8")
    assert "\x1b" not in table and "…" not in table
    assert "background" in table and "vegetation" in table and "pred px" in table


# ----------------------------------------------------------------------------- help and version
@pytest.mark.parametrize("argv", [["--help"], ["-h"], ["--version"]], ids=" ".join)
def test_help_and_version_into_a_closed_pipe_are_exit_3(argv, tmp_path):
    """`segcli --help | true`: Click turned the broken pipe into a silent exit 1 (a failed check), where a
    subcommand's help, `--cfg` and every result said exit 3 in one line."""
    read, write = os.pipe()
    os.close(read)  # the reader is gone before segcli writes
    try:
        proc = segcli(*argv, cwd=tmp_path, stdout=write, stderr=subprocess.PIPE)
    finally:
        os.close(write)
    assert "Broken pipe" in one_error_line(proc, 3, alone=True)


@pytest.mark.parametrize("encoding", ["cp1252", "latin-1"])
@pytest.mark.parametrize("argv", [["--help"], ["prepare", "--help"], ["prepare", "folder", "--help"]], ids=" ".join)
def test_help_on_a_stdout_whose_encoding_lacks_its_arrows(argv, encoding, tmp_path):
    """`segcli --help > help.txt` on Windows (a redirected stdout is cp1252) or in a latin-1 locale: exit 4,
    UnicodeEncodeError on the '→' of the help, nothing printed. Characters the encoding lacks are escaped."""
    proc = segcli(*argv, cwd=tmp_path, env={"PYTHONIOENCODING": encoding})
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    help_text = proc.stdout.decode(encoding)
    assert "Usage: segcli" in help_text and "\\u2192" in help_text


# ----------------------------------------------------------------------------- an explicit PYTHONUTF8=0
@pytest.fixture(scope="module")
def unicode_ckpt(tmp_path_factory) -> Path:
    """An untrained checkpoint of a dataset in 'dé/' whose class names are not ASCII."""
    import torch

    from segcli.data.card import load_card
    from segcli.models.factory import build_model
    from segcli.runs import model_meta

    root = tmp_path_factory.mktemp("streams") / "dé"
    root.mkdir()
    syn = root / "syn"
    assert segcli("prepare", "synthetic", "--out", syn, *SYNTHETIC, cwd=root).returncode == 0
    data = root / "data"
    proc = segcli("prepare", "folder", "--images", syn / "images", "--masks", syn / "masks", "--out", data,
                  "--classes", ",".join(CLASSES), cwd=root)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    torch.manual_seed(0)
    card = load_card(data)
    kwargs = {"arch": "unet", "encoder": "resnet18", "classes": card.num_classes}
    meta = model_meta(card, kwargs, 32, "val", train_crop=[32, 32])
    path = root / "modèle.ckpt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in build_model(**kwargs).state_dict().items()},
                "hyper_parameters": {"meta": meta}}, path)
    return path


ASCII_LOCALE = {"LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0"}


def test_an_explicit_pythonutf8_0_keeps_ascii_streams_and_non_ascii_names_work(unicode_ckpt, tmp_path):
    """LC_ALL=C PYTHONUTF8=0: segcli runs itself in UTF-8 mode so that 'dé/modèle.ckpt' and 'bâtiment' work, and
    that overrode what the user asked for: the table on stdout came out in UTF-8 (box lines, 'bâtiment') where the
    locale says ASCII. The streams keep the locale's encoding; the names still work."""
    proc = segcli("eval", "--ckpt", unicode_ckpt, cwd=tmp_path, env=ASCII_LOCALE)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-2000:]
    table = proc.stdout.decode("ascii")  # raises on any byte above 127
    assert "b\\xe2timent" in table and "\\u8eca" in table and "mIoU" in table
    rows = [line for line in table.splitlines() if line[:1] in "|+"]  # the escaped names widened their rows
    assert len(rows) > len(CLASSES) and len({len(row) for row in rows}) == 1, table
    proc = segcli("eval", "--ckpt", unicode_ckpt, "--json", "-", cwd=tmp_path, env=ASCII_LOCALE)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-2000:]
    assert [c["name"] for c in yaml.safe_load(proc.stdout.decode("ascii"))["classes"]] == CLASSES
    proc = segcli("eval", "--ckpt", unicode_ckpt.with_name("absent é.ckpt"), cwd=tmp_path, env=ASCII_LOCALE)
    line = one_error_line(proc, 3, alone=True)
    assert "absent \\xe9.ckpt" in line and "not found" in line


def test_an_explicit_pythonioencoding_wins_over_the_locale(unicode_ckpt, tmp_path):
    """PYTHONIOENCODING=utf-8 with LC_ALL=C PYTHONUTF8=0: the user's stream encoding stays UTF-8."""
    proc = segcli("eval", "--ckpt", unicode_ckpt, cwd=tmp_path, env={**ASCII_LOCALE, "PYTHONIOENCODING": "utf-8"})
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-2000:]
    assert "bâtiment" in proc.stdout.decode("utf-8")
