"""segcli under unusual but real environments: ASCII locales and stdout encodings, closed or full standard streams,
a deleted current folder. Each ends in the results or in one error line with the documented exit code."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers_cli import describe, one_error_line
from helpers_cli import segcli_bytes as segcli

CLASSES = ["fond", "route", "bâtiment", "végétation", "車", "pôle", "sign"]
TINY_TRAIN = ["experiment=smoke", "trainer.enable_progress_bar=false", "trainer.max_epochs=1"]


@pytest.fixture(scope="module")
def unicode_run(tmp_path_factory) -> tuple[Path, Path]:
    """(the dataset, the run) of a 1-epoch tiny training on synthetic scenes whose folder, file names and class
    names are not ASCII."""
    root = tmp_path_factory.mktemp("env") / "dé 日本"
    root.mkdir()
    syn = root / "syn"
    assert segcli("prepare", "synthetic", "--out", syn, "--num-images", 6, "synthetic.height=48",
                  "synthetic.width=64", cwd=root).returncode == 0
    for kind in ("images", "masks"):
        shutil.copytree(syn / kind, root / "src" / kind)
        (root / "src" / kind / "train/scene_0000.png").rename(root / "src" / kind / "train/café_0000.png")
    data, run = root / "data", root / "run"
    proc = segcli("prepare", "folder", "--images", root / "src/images", "--masks", root / "src/masks", "--out", data,
                  "--classes", ",".join(CLASSES), cwd=root)
    assert proc.returncode == 0, describe(proc)
    proc = segcli("train", f"data.root={data}", *TINY_TRAIN, "--run-dir", run, cwd=root)
    assert proc.returncode == 0, describe(proc)
    return data, run


# ----------------------------------------------------------------------------- encodings
def test_a_path_stdout_cannot_encode_is_printed_as_its_bytes(tmp_path):
    """PYTHONIOENCODING=ascii: printing the card's path 'dé 日本/…/dataset.yaml' was exit 4 (UnicodeEncodeError) after
    the dataset was written. The line holds the path's own bytes, which a reader passes back to the file system."""
    out = tmp_path / "dé 日本" / "syn"
    proc = segcli("prepare", "synthetic", "--out", out, "--num-images", 2, "synthetic.height=48", "synthetic.width=64",
                  cwd=tmp_path, env={"PYTHONIOENCODING": "ascii"})
    assert proc.returncode == 0, describe(proc)
    assert proc.stdout == os.fsencode(out / "dataset.yaml") + b"\n"
    assert Path(os.fsdecode(proc.stdout.strip())).is_file()


def test_cfg_with_a_non_ascii_value_on_an_ascii_stdout(tmp_path):
    proc = segcli("train", "--cfg", "data.root=/data/dé", cwd=tmp_path, env={"PYTHONIOENCODING": "ascii"})
    assert proc.returncode == 0, describe(proc)
    assert yaml.safe_load(proc.stdout.decode("utf-8"))["data"]["root"] == "/data/dé"


def test_eval_table_of_non_ascii_class_names_on_an_ascii_stdout(unicode_run, tmp_path):
    """The per-class table on stdout with 'bâtiment', '車' and the '—' of a null rate: exit 4 after the evaluation
    under PYTHONIOENCODING=ascii. The characters are escaped as Python escapes them on stderr; report files are
    UTF-8 whatever the stdout."""
    data, run = unicode_run
    proc = segcli("eval", "--ckpt", run / "checkpoints/best.ckpt", "--out", tmp_path / "ev", cwd=tmp_path,
                  env={"PYTHONIOENCODING": "ascii"})
    assert proc.returncode == 0, describe(proc)
    table = proc.stdout.decode("ascii")
    assert "b\\xe2timent" in table and "\\u8eca" in table and "mIoU" in table
    assert "bâtiment" in (tmp_path / "ev/report.md").read_text(encoding="utf-8")


def test_an_ascii_locale_with_utf8_mode_off_reads_and_writes_non_ascii_names(unicode_run, tmp_path):
    """LC_ALL=C PYTHONUTF8=0 (file names encoded as ASCII): `prepare folder --classes bâtiment,…` died of SIGSEGV
    (OpenCV drawing a class name held as surrogate escapes), `train` on a card listing 'café_0000.png' was exit 4
    and `eval` of a run in 'dé 日本/' said 'model file not found'. segcli runs in Python's UTF-8 mode there."""
    data, run = unicode_run
    ascii_locale = {"LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0"}
    out = tmp_path / "né" / "data"
    proc = segcli("prepare", "folder", "--images", data / "images", "--masks", data / "masks", "--out", out,
                  "--classes", ",".join(CLASSES), cwd=tmp_path, env=ascii_locale)
    assert proc.returncode == 0, describe(proc)
    assert proc.stdout == os.fsencode(out / "dataset.yaml") + b"\n"
    assert yaml.safe_load((out / "dataset.yaml").read_text(encoding="utf-8"))["classes"] == CLASSES
    proc = segcli("eval", "--ckpt", run / "checkpoints/best.ckpt", "--json", "-", cwd=tmp_path, env=ascii_locale)
    assert proc.returncode == 0, describe(proc)
    assert [c["name"] for c in yaml.safe_load(proc.stdout)["classes"]] == CLASSES


# ----------------------------------------------------------------------------- standard streams
def test_a_stderr_that_cannot_be_written_loses_the_text_not_the_run(tmp_path):
    """stderr on a full disk (/dev/full), a dead terminal or a pipe whose reader went away: `segcli train` was exit 3
    at its first log line (and at the progress bar's), with nothing trained. People-text is best effort."""
    prepare = segcli("prepare", "synthetic", "--out", tmp_path / "syn", "--num-images", 4, "synthetic.height=48",
                     "synthetic.width=64", cwd=tmp_path, stdout=subprocess.PIPE, stderr=open("/dev/full", "w"))
    assert prepare.returncode == 0
    proc = segcli("train", f"data.root={tmp_path / 'syn'}", "experiment=smoke", "trainer.max_epochs=1",
                  "--run-dir", tmp_path / "run", cwd=tmp_path, stdout=subprocess.PIPE, stderr=open("/dev/full", "w"))
    assert proc.returncode == 0
    assert proc.stdout == os.fsencode(tmp_path / "run") + b"\n"
    assert (tmp_path / "run/checkpoints/last.ckpt").is_file()


def test_a_closed_stderr_keeps_the_documented_exit_code(tmp_path):
    """`2>&-`: printing the error line failed (sys.stderr is None), so a missing checkpoint was exit 1, the code of a
    failed check, instead of 3."""
    proc = segcli("eval", "--ckpt", tmp_path / "missing.ckpt", cwd=tmp_path, stdout=subprocess.PIPE,
                  preexec_fn=lambda: os.close(2))
    assert proc.returncode == 3


def test_a_closed_stdin_reads_as_empty(unicode_run, tmp_path):
    """`segcli predict --ckpt C - <&-`: exit 4 (AttributeError: 'NoneType' object has no attribute 'read')."""
    proc = segcli("predict", "--ckpt", unicode_run[1] / "checkpoints/best.ckpt", "-", "--out", tmp_path / "pred", cwd=tmp_path,
                  capture_output=True, preexec_fn=lambda: os.close(0))
    assert "stdin: no paths listed" in one_error_line(proc, 3)


def test_a_closed_stdout_stops_before_the_work(tmp_path):
    """`>&-`: predict did all its work, then was exit 4 (AttributeError on None) at the first result line."""
    proc = segcli("prepare", "synthetic", "--out", tmp_path / "syn", "--num-images", 2, cwd=tmp_path,
                  stderr=subprocess.PIPE, preexec_fn=lambda: os.close(1))
    line = one_error_line(proc, 3)
    assert "stdout is closed" in line and "/dev/null" in line
    assert not (tmp_path / "syn").exists()


# ----------------------------------------------------------------------------- the current folder
def test_a_deleted_current_folder_is_named(tmp_path):
    """A shell sitting in a folder deleted since (`rm -rf` from another terminal): 'invalid configuration for
    segcli eval: [Errno 2] No such file or directory', exit 2, named neither the folder nor the fix."""
    gone = tmp_path / "gone"
    gone.mkdir()
    code = ("import os, sys; os.chdir(sys.argv[1]); os.rmdir(sys.argv[1]); sys.argv = ['segcli', 'eval', '--ckpt', "
            "'x.ckpt']; from segcli.cli import main; main()")
    env = {k: v for k, v in os.environ.items() if k != "SEGCLI_DEBUG"}
    proc = subprocess.run([sys.executable, "-c", code, str(gone)], capture_output=True, env=env, timeout=120)
    line = one_error_line(proc, 3)
    assert "current folder" in line and "cd into an existing folder" in line


@pytest.mark.parametrize("args", [["eval", "--ckpt", "--help"], ["predict", "--out", "-h", "img.png"],
                                  ["prepare", "folder", "--images", "x", "--masks", "y", "--out", "z", "--classes",
                                   "--help"]])
def test_a_deleted_current_folder_is_named_when_help_is_an_option_value(tmp_path, args):
    """'--help' or '-h' given as an option's value is no request for help: the command runs and fails on the
    deleted folder, which its error names."""
    gone = tmp_path / "gone"
    gone.mkdir()
    code = ("import os, sys; os.chdir(sys.argv[1]); os.rmdir(sys.argv[1]); sys.argv = ['segcli', *sys.argv[2:]]; "
            "from segcli.cli import main; main()")
    env = {k: v for k, v in os.environ.items() if k != "SEGCLI_DEBUG"}
    proc = subprocess.run([sys.executable, "-c", code, str(gone), *args], capture_output=True, env=env, timeout=120)
    line = one_error_line(proc, 3)
    assert "current folder" in line and "cd into an existing folder" in line


@pytest.mark.parametrize("args", [[], ["--help"], ["--version"], ["train", "--help"]])
def test_help_and_version_answer_in_a_deleted_folder(tmp_path, args):
    """Help and the version need no current folder: they were the deleted-folder error (exit 3). A command given
    '--help' as an option's value is still told about the folder (test_a_deleted_current_folder_names_...)."""
    gone = tmp_path / "gone"
    gone.mkdir()
    code = ("import os, sys; os.chdir(sys.argv[1]); os.rmdir(sys.argv[1]); sys.argv = ['segcli', *sys.argv[2:]]; "
            "from segcli.cli import main; main()")
    proc = subprocess.run([sys.executable, "-c", code, str(gone), *args], capture_output=True, timeout=120)
    assert proc.returncode in (0, 2) and b"current folder" not in proc.stderr, proc.stderr  # bare segcli: help, exit 2
    assert b"segcli" in proc.stdout + proc.stderr


# ----------------------------------------------------------------------------- a literal ~
def test_a_tilde_the_shell_left_is_the_home_folder(unicode_run, tmp_path):
    """bash leaves `--ckpt=~/x` and a quoted '~/photos' as they are: the checkpoint was 'not found' and the input
    was taken for a config override ('cannot parse overrides', exit 2)."""
    data, run = unicode_run
    home = tmp_path / "home"
    shutil.copytree(data / "images" / "val", home / "photos")
    shutil.copy(run / "checkpoints" / "best.ckpt", home / "best.ckpt")
    proc = segcli("predict", "--ckpt=~/best.ckpt", "~/photos", "--out=~/pred", cwd=tmp_path, env={"HOME": str(home)})
    assert proc.returncode == 0, describe(proc)
    photos = sorted(p.relative_to(home / "photos").with_suffix(".png") for p in (home / "photos").rglob("*.png"))
    assert photos and all((home / "pred" / rel).is_file() for rel in photos)  # the masks, by relative name
    assert not (tmp_path / "~").exists()
