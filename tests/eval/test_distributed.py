"""Eval by several processes (torchrun, gloo on CPU) gives exactly the single-process report."""

from helpers_cli import torchrun_segcli
from helpers_eval import load_json, run_cli


def test_two_processes_equal_one(crafted, tmp_path, capsys):
    root, preds = crafted
    args = ["eval", "--predictions", str(preds), "--data", str(root), "--worst", "2"]
    code, _, err = run_cli(args + ["--out", tmp_path / "one"], capsys)
    assert code == 0, err
    proc = torchrun_segcli(args + ["--out", tmp_path / "two"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "terminate called" not in proc.stderr  # no rank aborted at exit (the process group is left cleanly)
    one, two = load_json(tmp_path / "one" / "report.json"), load_json(tmp_path / "two" / "report.json")
    assert one == two  # counts are summed, rows gathered in split order, worst images merged
    for name in ("per_image.csv", "per_class.csv", "confusion.csv", "report.md"):
        assert (tmp_path / "one" / name).read_text() == (tmp_path / "two" / name).read_text(), name
    assert proc.stdout.count("┃ class") == 1  # only rank 0 prints
