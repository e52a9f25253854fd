"""The CI gate (--fail-under) as users write it: Hydra overrides, repeated thresholds, class names of any spelling."""

from __future__ import annotations

import json

import numpy as np
import pytest

from helpers_eval import run_cli, write_card
from segcli.inference.io import write_png

NAMES = ["traffic sign", "Straße", "a=b", "x,y", "absent", "car", "Car"]


@pytest.fixture()
def named(tmp_path):
    """One 1x8 image; IoU: traffic sign 1/3, Straße 1, a=b 1/3, x,y 1, absent null, car 1/2, Car 0 (mIoU 52.78%)."""
    root, preds = tmp_path / "data", tmp_path / "preds"
    gt = np.array([[0, 0, 1, 2, 2, 3, 5, 6]], np.uint8)
    pred = np.array([[0, 2, 1, 2, 0, 3, 5, 5]], np.uint8)
    write_png(root / "images" / "val" / "a.png", np.zeros((1, 8, 3), np.uint8))
    write_png(root / "masks" / "val" / "a.png", gt)
    write_png(preds / "a.png", pred)
    write_card(root, "named", NAMES, [[i, i, i] for i in range(len(NAMES))],
               {"val": [{"image": "images/val/a.png", "mask": "masks/val/a.png"}]})
    return ["eval", "--predictions", preds, "--data", root]


def last_line(err: str) -> str:
    return err.strip().splitlines()[-1]


@pytest.mark.parametrize("override, code, line", [
    # a string: was gated character by character ("--fail-under m: expected METRIC=VALUE ...", exit 2)
    ("fail_under=mIoU=0.9", 1, "segcli: error: eval gate failed: mIoU 52.78% < 90.00%"),
    ("fail_under=class:a=b=0.6", 1, "segcli: error: eval gate failed: class:a=b IoU 33.33% < 60.00%"),
    # a number: was exit 4, "internal error: TypeError: 'float' object is not iterable"
    ("fail_under=0.9", 2, "segcli: error: --fail-under 0.9: expected METRIC=VALUE or class:NAME[:METRIC]=VALUE, "
                          "e.g. mIoU=0.60"),
])
def test_gate_given_as_one_hydra_override_value(named, capsys, override, code, line):
    got, out, err = run_cli(named + ["--json", "-", override], capsys)
    assert got == code and last_line(err) == line, err
    if code == 1:  # the report is still written, and records the gate
        assert json.loads(out)["gate"]["passed"] is False


def test_the_same_shortfall_given_twice_is_said_once(named, capsys):
    """mIoU=0.9 and mIoU=90% are one threshold: the line said 'mIoU 52.78% < 90.00%; mIoU 52.78% < 90.00%'."""
    code, out, err = run_cli(named + ["--json", "-", "--fail-under", "mIoU=0.9", "--fail-under", "mIoU=90%",
                                      "--fail-under", "mIoU=0.1", "--fail-under", "class:absent=0"], capsys)
    assert code == 1
    assert last_line(err) == ("segcli: error: eval gate failed: mIoU 52.78% < 90.00%; "
                              "class:absent IoU null (not measurable) < 0.00%")
    gate = json.loads(out)["gate"]
    assert gate["thresholds"] == ["mIoU=0.9", "mIoU=90%", "mIoU=0.1", "class:absent=0"]
    assert gate["failures"] == ["mIoU 52.78% < 90.00%", "class:absent IoU null (not measurable) < 0.00%"]


def test_class_names_with_spaces_unicode_equals_and_commas(named, capsys):
    specs = ["class:traffic sign=0.33", "class:STRASSE=0.1", "class:straße:f1=100%", "class:a=b:acc=50%",
             "class:x,y:precision=1"]
    code, _, err = run_cli(named + ["--json", "/dev/null", "--fail-under", specs[0]] + [
        a for s in specs[2:] for a in ("--fail-under", s)], capsys)
    assert code == 0, err
    code, _, err = run_cli(named + ["--json", "/dev/null", "--fail-under", specs[1]], capsys)
    assert code == 2 and "unknown class 'STRASSE' (did you mean Straße?)" in last_line(err)


def test_a_name_two_classes_share_apart_from_case_is_ambiguous_not_unknown(named, capsys):
    """'class:CAR' with classes 'car' and 'Car': the line said "unknown class 'CAR' (did you mean car?)"."""
    code, out, err = run_cli(named + ["--fail-under", "class:CAR=0.5"], capsys)
    assert code == 2 and out == "" and err.strip().splitlines() == [
        "segcli: error: --fail-under: class 'CAR' matches car and Car apart from case; write the name exactly as it "
        "is spelled"]
    code, _, err = run_cli(named + ["--json", "/dev/null", "--fail-under", "class:Car=0.5"], capsys)
    assert code == 1 and last_line(err) == "segcli: error: eval gate failed: class:Car IoU 0.00% < 50.00%"


def test_unknown_class_lists_names_with_commas_quoted_and_at_most_thirty(named, tmp_path, capsys):
    """'x,y' was listed bare ('did you mean x,y?'; 'choose from …, x,y, …'), which reads as two classes; a 40-class
    card listed all 40 names."""
    code, _, err = run_cli(named + ["--fail-under", "class:xy=0.5"], capsys)
    assert code == 2 and last_line(err) == (
        "segcli: error: --fail-under: unknown class 'xy' (did you mean 'x,y'?); choose from traffic sign, Straße, a=b, "
        "'x,y', absent, car, Car")
    root, preds = tmp_path / "many", tmp_path / "many_preds"
    write_png(root / "images" / "val" / "a.png", np.zeros((1, 40, 3), np.uint8))
    write_png(root / "masks" / "val" / "a.png", np.arange(40, dtype=np.uint8)[None])
    write_png(preds / "a.png", np.arange(40, dtype=np.uint8)[None])
    write_card(root, "many", [f"c{i}" for i in range(40)], [[i, i, i] for i in range(40)],
               {"val": [{"image": "images/val/a.png", "mask": "masks/val/a.png"}]})
    code, _, err = run_cli(["eval", "--predictions", preds, "--data", root, "--fail-under", "class:zz=0.5"], capsys)
    assert code == 2 and last_line(err).endswith("choose from " + ", ".join(f"c{i}" for i in range(30))
                                                 + ", … (10 more)"), err
