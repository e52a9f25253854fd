"""Commands run again over their own outputs, and two segcli processes at once: what pipelines and CI do."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from helpers_reliability import only_error, noise, write_image


def _inputs(folder: Path, count: int = 2) -> Path:
    for i in range(count):
        write_image(folder / f"img{i}.png", noise(32, 40, seed=i))
    return folder


# ----------------------------------------------------------------------------- run directories
def test_two_runs_started_in_the_same_second_get_their_own_run_directories(tmp_path, monkeypatch):
    """Without --run-dir, a run takes runs/<command>/<timestamp>. Two runs started within the same second (CI jobs,
    `segcli train ... &` in a loop) both looked, both saw the name free, and shared one folder: the second stopped at
    the first's lock ("give another --run-dir", though it had been given none). Here the other process makes the
    folder just after this one looked; this one must still get a folder of its own."""
    from segcli.runs import make_run_dir

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(time, "strftime", lambda fmt, *a: "20260101-120000")
    theirs = tmp_path / "runs" / "train" / "20260101-120000"
    theirs.mkdir(parents=True)
    (theirs / "config.yaml").write_text("the other run's\n")
    real_exists = Path.exists
    monkeypatch.setattr(Path, "exists", lambda self, **kw: False if self.name.startswith("20260101") else
                        real_exists(self, **kw))  # what this process saw before the other made its folder
    mine = make_run_dir(None, "train")
    assert mine == (tmp_path / "runs" / "train" / "20260101-120000-1").resolve()
    assert list(mine.iterdir()) == [] and (theirs / "config.yaml").read_text() == "the other run's\n"
    monkeypatch.setattr(Path, "exists", real_exists)
    assert make_run_dir(None, "sweep") == (tmp_path / "runs" / "sweep" / "20260101-120000").resolve()
    assert make_run_dir(str(theirs), "train") == theirs.resolve()  # a given --run-dir is used as it is


# ----------------------------------------------------------------------------- predict over an existing --out
def test_a_file_where_predict_puts_an_output_folder_is_named_before_the_work(cli, model_ckpt, tmp_path):
    """A file named like one of predict's folders in --out (OUT/overlays, or OUT/SUB for the input tree's SUB): every
    write there failed after the model had run, as '.../img0.png: cannot write it (File exists); check free space
    and permissions'. It is named before anything is predicted or written (exit 3)."""
    images = _inputs(tmp_path / "in")
    _inputs(images / "sub", 1)
    for blocker in ("overlays", "sub"):
        out = tmp_path / f"out-{blocker}"
        out.mkdir()
        (out / blocker).write_text("not a folder\n")
        code, stdout, err = cli("predict", images, "--ckpt", model_ckpt, "--out", out, "--save", "mask,overlay")
        line = only_error(code, err, 3, out / blocker)
        assert "is a file, but predict writes into a folder of that name" in line
        assert stdout == "" and [p.name for p in out.iterdir()] == [blocker]


def test_files_of_kinds_left_out_of_save_that_an_earlier_run_wrote_are_named(cli, model_ckpt, tmp_path):
    """predict --save mask,prob,uncertainty, then (a new model, the same images, the same --out) --save mask: the
    first run's probs/ and uncertainty/ files (and uncertainty.csv ranking them) stayed beside the new masks,
    silently. They are kept (a run may add kinds to an earlier run's), with a note naming them and the fix."""
    images = _inputs(tmp_path / "in", 2)
    out = tmp_path / "out"
    code, _, err = cli("predict", images, "--ckpt", model_ckpt, "--out", out, "--save", "mask,prob,uncertainty")
    assert code == 0, err
    earlier = {p: p.read_bytes() for p in (out / "probs").iterdir()}
    code, stdout, err = cli("predict", images, "--ckpt", model_ckpt, "--out", out, "--save", "mask")
    assert code == 0, err
    assert stdout.split() == [str(out / "img0.png"), str(out / "img1.png")]
    notes = [line for line in err.splitlines() if "of kinds this run did not write" in line]
    assert len(notes) == 1, err
    assert "for 2 of the 2 input(s)" in notes[0] and "prob (2), uncertainty (2) and uncertainty.csv" in notes[0]
    assert "add prob,uncertainty to --save" in notes[0]
    assert {p: p.read_bytes() for p in (out / "probs").iterdir()} == earlier  # kept, not deleted
    code, _, err = cli("predict", images, "--ckpt", model_ckpt, "--out", out, "--save", "mask,prob,uncertainty")
    assert code == 0 and "of kinds this run did not write" not in err  # every kind there written now


def test_a_prepare_whose_out_another_prepare_filled_meanwhile_keeps_that_dataset(tmp_path, monkeypatch, capsys):
    """Two prepares into one --out at once: both found it empty at the start, and the one to finish last deleted
    the other's dataset, both exiting 0. The later one now stops (exit 2) and the dataset in place stays whole."""
    import segcli.data.layout as layout
    from segcli.cli import main

    out = tmp_path / "pp"
    process = layout._process

    def other_prepare_finishes_first(staging, *args, **kwargs):
        card = process(staging, *args, **kwargs)
        out.mkdir()
        (out / "dataset.yaml").write_text("the other prepare's card\n")
        return card

    monkeypatch.setattr(layout, "_process", other_prepare_finishes_first)
    with pytest.raises(SystemExit) as exit_info:
        main(["prepare", "synthetic", "--out", str(out), "--num-images", "4"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"--out {out} was filled by another process while this prepare ran" in err and "Traceback" not in err
    assert (out / "dataset.yaml").read_text() == "the other prepare's card\n" and sorted(os.listdir(tmp_path)) == ["pp"]
