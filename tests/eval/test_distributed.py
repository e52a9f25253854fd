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


def test_a_data_error_in_one_process_is_every_processs_error(crafted, tmp_path):
    """A prediction missing from process 1's share: process 1 printed its error (exit 3) and process 0, cut off in
    the sum of the counts ('Connection closed by peer'), printed an internal error and exited 4."""
    import yaml

    root, preds = crafted
    second = yaml.safe_load((root / "dataset.yaml").read_text())["splits"]["val"][1]["image"]  # image i → process i % 2
    missing = preds / (second.removeprefix("images/val/"))
    missing.unlink()
    proc = torchrun_segcli(["eval", "--predictions", str(preds), "--data", str(root)])
    lines = sorted(line for line in proc.stderr.splitlines() if line.startswith("segcli:"))  # two processes' lines
    assert len(lines) == 2 and lines[0].startswith(f"segcli: error: {missing}: prediction missing"), proc.stderr[-3000:]
    assert lines[1] == "segcli: error: process 1 of this run failed (exit 3; its error is above), so this one stopped too"
    assert "exitcode  : 3" in proc.stderr and "internal error" not in proc.stderr
    assert "terminate called" not in proc.stderr  # both left the process group before exiting
