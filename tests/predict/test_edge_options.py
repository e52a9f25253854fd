"""Edge cases of predict's and eval's options met in shell pipelines and CI: empty values from unset variables, a
list of paths on stdin with a byte-order mark, `-` given twice, a report folder passed to --compare, --severity
without --corruptions. Each was a silent surprise or a misleading line before."""

from __future__ import annotations

import io
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "eval"))  # the eval tests' crafted dataset

from helpers_eval import crafted  # noqa: E402,F401  (a fixture: registered by importing it)
from predict_helpers import write_images  # noqa: E402


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


def test_eval_empty_json_is_refused(crafted, tmp_path, cli):
    """`--json "$REPORT"` with REPORT unset wrote no report and exited 0."""
    root, preds = crafted
    code, out, err = cli("eval", "--predictions", preds, "--data", root, "--json", "")
    assert code == 2, err
    assert "--json ''" in err and out == ""


def test_eval_compare_with_a_report_folder(crafted, tmp_path, cli):
    """`--compare reports/main` (the --out of the earlier run): was '(IsADirectoryError)'; now names the file."""
    root, preds = crafted
    assert cli("eval", "--predictions", preds, "--data", root, "--out", tmp_path / "main")[0] == 0
    code, out, err = cli("eval", "--predictions", preds, "--data", root, "--compare", tmp_path / "main")
    assert code == 3, err
    assert f"pass {tmp_path / 'main' / 'report.json'}" in err and "IsADirectoryError" not in err
    assert out == ""


def test_eval_severity_without_corruptions_is_noted(crafted, cli):
    """--severity 5 alone evaluated nothing corrupted, without a word."""
    root, preds = crafted
    code, out, err = cli("eval", "--predictions", preds, "--data", root, "--severity", "5")
    assert code == 0, err
    assert "--severity 5 applies to --corruptions" in err
    assert "--severity" not in out


def test_an_empty_out_or_save_is_a_usage_error(tmp_path, ckpt, cli, monkeypatch):
    """`--out "$OUT"` with OUT unset: Typer read '' as '.', and predict, eval, export and prepare wrote into the current
    folder (exit 0); `--save ""` fell back to the default outputs."""
    paths = write_images(tmp_path / "in", 1)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    for args in (("predict", paths[0], "--ckpt", ckpt), ("export", "--ckpt", ckpt),
                 ("prepare", "synthetic", "--num-images", "2"), ("eval", "--ckpt", ckpt, "--data", tmp_path / "none")):
        code, out, err = cli(*args, "--out", "")
        assert code == 2, (args, err)
        assert err.startswith("segcli: error: Invalid value for '--out': names no folder or file (an unset variable?)")
        assert out == "" and list(work.iterdir()) == [], args
    code, out, err = cli("predict", paths[0], "--ckpt", ckpt, "--out", tmp_path / "out", "--save", "")
    assert code == 2 and "save=(empty)" in err, err
    assert not (tmp_path / "out").exists()
