"""Edge cases of predict's options (and every command's --out) met in shell pipelines and CI: empty values from unset
variables, a list of paths on stdin with a byte-order mark or a name that is not UTF-8, `-` given twice. Each was a
silent surprise or a misleading line before."""

from __future__ import annotations

import io
import sys

from predict_helpers import write_images


def test_empty_shard_is_refused(tmp_path, ckpt, cli):
    """`--shard "$SHARD"` with SHARD unset: every job predicted every input into the same files, exit 0."""
    write_images(tmp_path / "in", 2)
    code, out, err = cli("predict", tmp_path / "in", "--ckpt", ckpt, "--out", tmp_path / "out", "--shard", "")
    assert code == 2, err
    assert "--shard ''" in err and "I/N" in err and "Traceback" not in err
    assert out == "" and not (tmp_path / "out").exists()


def test_stdin_list_with_byte_order_mark(tmp_path, ckpt, cli, monkeypatch):
    """A list piped from PowerShell or a Windows editor starts with a BOM: its first path failed 'cannot read file'
    (exit 3), while `--list FILE` read the same text."""
    paths = write_images(tmp_path / "in", 2)
    monkeypatch.setattr(sys, "stdin", io.StringIO("\ufeff" + "".join(f"{p}\r\n" for p in paths)))
    code, out, err = cli("predict", "-", "--ckpt", ckpt, "--out", tmp_path / "out", "--save", "mask")
    assert code == 0, err
    assert out.splitlines() == [str(tmp_path / "out" / f"{p.stem}.png") for p in paths]


def test_dash_given_twice_is_refused(tmp_path, ckpt, cli, monkeypatch):
    """The second `-` read an empty stdin: 'stdin: no paths listed' (exit 3), with the list right there."""
    paths = write_images(tmp_path / "in", 1)
    monkeypatch.setattr(sys, "stdin", io.StringIO(f"{paths[0]}\n"))
    code, out, err = cli("predict", "-", "-", "--ckpt", ckpt, "--out", tmp_path / "out")
    assert code == 2, err
    assert "- is given more than once" in err and out == ""


def test_an_empty_out_or_save_is_a_usage_error(tmp_path, ckpt, cli, monkeypatch):
    """`--out "$OUT"` with OUT unset: Typer read '' as '.', and predict, eval, export and prepare wrote into the current
    folder (exit 0); `--save ""` fell back to the default outputs."""
    paths = write_images(tmp_path / "in", 1)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    for args in (("predict", paths[0], "--ckpt", ckpt, "--out"), ("export", "--ckpt", ckpt, "--out"),
                 ("prepare", "synthetic", "--num-images", "2", "--out"),
                 ("eval", "--ckpt", ckpt, "--data", tmp_path / "none", "--out"),
                 ("train", "data.root=none", "--run-dir")):
        code, out, err = cli(*args, "")
        assert code == 2, (args, err)
        assert err.startswith(f"segcli: error: Invalid value for '{args[-1]}': names no folder or file (an unset "
                              "variable?)"), err
        assert out == "" and list(work.iterdir()) == [], args
    code, out, err = cli("predict", paths[0], "--ckpt", ckpt, "--out", tmp_path / "out", "--save", "")
    assert code == 2 and "save=(empty)" in err, err
    assert not (tmp_path / "out").exists()


def test_a_name_that_is_not_utf8_on_stdin_is_found_under_a_strict_locale(tmp_path, ckpt):
    """`find | segcli predict -` with a Latin-1 file name, where stdin decodes strictly (PYTHONIOENCODING=utf-8:strict,
    as under some UTF-8 locales): 'internal error: UnicodeDecodeError', exit 4. Stdin's bytes are now decoded as file
    names are."""
    import os
    import subprocess

    import cv2
    import numpy as np

    (tmp_path / "in").mkdir()
    good = tmp_path / "in" / "x.png"
    assert cv2.imwrite(str(good), np.zeros((40, 50, 3), np.uint8))
    name = os.fsencode(tmp_path / "in") + b"/caf\xe9.png"
    os.rename(os.fsencode(good), name)
    proc = subprocess.run([sys.executable, "-m", "segcli", "predict", "-", "--ckpt", str(ckpt), "--out", "out",
                           "--save", "mask"], input=name + b"\n", cwd=tmp_path, capture_output=True, timeout=300,
                          env={**os.environ, "PYTHONIOENCODING": "utf-8:strict"})
    assert proc.returncode == 0, proc.stderr
    assert os.listdir(os.fsencode(tmp_path / "out")) == [b"caf\xe9.png"]


def test_a_nul_separated_or_utf16_list_of_paths_is_one_line(tmp_path, ckpt):
    """`find -print0` into --list FILE or stdin, and a UTF-16 list on stdin (PowerShell's >): 'internal error:
    ValueError: embedded null byte', exit 4. Exit 3 now, naming the list and how to write it."""
    import os
    import subprocess

    paths = write_images(tmp_path / "in", 2)
    nul = b"".join(os.fsencode(p) + b"\0" for p in paths)
    (tmp_path / "list0.txt").write_bytes(nul)
    utf16 = "".join(f"{p}\r\n" for p in paths).encode("utf-16")
    blank_first = "".join(f"\r\n{p}" for p in paths).encode("utf-16-le")  # no BOM, an empty first line
    for args, stdin, line in (
            (["--list", "list0.txt"], None, "list0.txt: its paths are separated by NUL bytes (find -print0)"),
            (["-"], nul, "stdin: its paths are separated by NUL bytes (find -print0)"),
            (["-"], utf16, "stdin: it is UTF-16 text (PowerShell's > and Out-File write it); save the list of paths as "
                           "UTF-8"),
            (["-"], blank_first, "stdin: it is UTF-16 text")):
        proc = subprocess.run([sys.executable, "-m", "segcli", "predict", *args, "--ckpt", str(ckpt), "--out", "out",
                               "--save", "mask"], input=stdin, cwd=tmp_path, capture_output=True, timeout=300)
        err = proc.stderr.decode()
        assert proc.returncode == 3 and err.startswith(f"segcli: error: {line}"), err
        assert len(err.strip().splitlines()) == 1 and not (tmp_path / "out").exists(), err
