"""The command-line surface: help, version, usage errors, lazy imports, the console script."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from importlib.metadata import version as dist_version
from pathlib import Path

import pytest
import yaml
from helpers_cli import HEAVY_MODULES, assert_ok, describe, run_cli

import segcli

COMMANDS = ("prepare", "train", "eval", "predict", "export")

HELP_ARGV = [
    ["--help"],
    ["train", "--help"],
    ["prepare", "--help"],
    ["eval", "--help"],
    ["predict", "--help"],
    ["export", "--help"],
    ["prepare", "synthetic", "--help"],
]

_PROBE = """
import json, sys
argv, modules = json.loads(sys.argv[1]), json.loads(sys.argv[2])
from segcli.cli import main
sys.argv = ["segcli", *argv]
try:
    main()
    code = 0
except SystemExit as exit:
    code = exit.code or 0
heavy = [m for m in modules if m in sys.modules]
print("PROBE " + json.dumps({"code": code, "heavy": heavy}))
"""


def _probe(argv: list[str], cwd: Path) -> dict:
    """Run segcli's main() with `argv` in a fresh interpreter; report its exit code and heavy modules loaded."""
    proc = subprocess.run([sys.executable, "-c", _PROBE, json.dumps(argv), json.dumps(HEAVY_MODULES)],
                          cwd=cwd, capture_output=True, text=True, timeout=120)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("PROBE ")]
    assert lines, describe(proc)
    return json.loads(lines[-1][len("PROBE "):])


@pytest.mark.parametrize("argv", HELP_ARGV, ids=lambda a: " ".join(a))
def test_help_exits_zero_and_imports_nothing_heavy(argv, tmp_path):
    proc = assert_ok(run_cli(*argv, cwd=tmp_path))
    assert "Usage:" in proc.stdout
    assert "Traceback" not in proc.stderr
    probe = _probe(argv, tmp_path)
    assert probe["code"] == 0
    assert probe["heavy"] == [], f"`segcli {' '.join(argv)}` imported {probe['heavy']}"


def test_top_level_help_lists_every_command(tmp_path):
    out = assert_ok(run_cli("--help", cwd=tmp_path)).stdout
    for command in COMMANDS:
        assert command in out


def test_prepare_help_lists_formats(tmp_path):
    out = assert_ok(run_cli("prepare", "--help", cwd=tmp_path)).stdout
    for fmt in ("synthetic", "camvid", "folder"):
        assert fmt in out


def test_train_help_mentions_overrides_and_cfg(tmp_path):
    out = assert_ok(run_cli("train", "--help", cwd=tmp_path)).stdout
    assert "--cfg" in out and "--config-dir" in out and "--run-dir" in out
    assert "override" in out.lower()


def test_version_matches_package(tmp_path):
    proc = assert_ok(run_cli("--version", cwd=tmp_path))
    assert proc.stdout.strip() == f"segcli {segcli.__version__}"
    assert proc.stdout.strip() == "segcli 0.1.0"
    assert dist_version("segcli") == segcli.__version__  # pyproject and __init__ agree


def test_version_imports_nothing_heavy(tmp_path):
    probe = _probe(["--version"], tmp_path)
    assert probe == {"code": 0, "heavy": []}


def test_console_script_entry_point(tmp_path):
    script = Path(sys.executable).parent / "segcli"
    if not script.exists():
        pytest.skip(f"no console script next to {sys.executable}")
    proc = subprocess.run([str(script), "--version"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, describe(proc)
    assert proc.stdout.strip() == f"segcli {segcli.__version__}"


@pytest.mark.parametrize("argv", [["nosuchcommand"], ["train", "--no-such-option"], ["prepare", "folder"],
                                  ["prepare", "nosuchformat"]],
                         ids=["unknown-command", "unknown-option", "missing-required-option", "unknown-format"])
def test_usage_errors_exit_2_without_traceback(argv, tmp_path):
    proc = run_cli(*argv, cwd=tmp_path)
    assert proc.returncode == 2, describe(proc)
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""
    assert "Error" in proc.stderr or "error" in proc.stderr


def test_missing_required_option_is_named(tmp_path):
    proc = run_cli("prepare", "folder", "--masks", "m", "--out", "o", cwd=tmp_path)
    assert proc.returncode == 2, describe(proc)
    assert "--images" in proc.stderr


@pytest.mark.parametrize("argv, code, said", [
    (["eval"], 2, "eval needs exactly one of"),
    (["eval", "--ckpt", "missing.ckpt", "--split", "val"], 3, "missing.ckpt: model file not found"),
    (["eval", "--model", "run"], 3, "run: a folder, not a model file"),
    (["eval", "--ckpt", "missing.ckpt", "--worst", "3"], 2, "pass --out DIR too"),
    (["predict", "in.png", "--out", "o"], 2, "no model given"),
    (["predict", "--ckpt", "missing.ckpt", "in.png", "--out", "o"], 3, "missing.ckpt: model file not found"),
    (["predict", "--ckpt", "missing.ckpt", "in.png", "--out", "o", "--save", "bogus"], 2, "unknown: bogus"),
    (["predict", "--ckpt", "missing.ckpt", "in.png", "--out", "o", "--shard", "3/2"], 2, "--shard"),
    (["export", "--ckpt", "missing.ckpt"], 3, "missing.ckpt: checkpoint not found"),
    (["export", "--ckpt", "run"], 3, "run: a folder, not a model file"),
], ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_option_and_model_file_errors_come_before_torch(argv, code, said, tmp_path):
    """A usage error of eval or predict, or a model file that is not there, was said after torch had loaded: 2.7-6 s
    and ~680 MB on a 2-core machine for `segcli eval` alone."""
    (tmp_path / "run").mkdir()
    probe = _probe(argv, tmp_path)
    assert probe == {"code": code, "heavy": probe["heavy"]} and "torch" not in probe["heavy"], probe
    proc = run_cli(*argv, cwd=tmp_path)
    assert proc.returncode == code and said in proc.stderr.strip().splitlines()[-1], describe(proc)


@pytest.mark.parametrize("given", [["--remap", "2=1", "--remap", "2=0"],
                                   ["--split-file", "train=a.txt", "--split-file", "train=b.txt"]])
def test_a_pair_option_giving_one_key_two_values_is_a_usage_error(given, tmp_path):
    """`--remap 2=1 --remap 2=0` stored 2 as 0 (the last won, exit 0, no word); so did two --split-file train=."""
    proc = run_cli("prepare", "folder", "--images", "i", "--masks", "m", "--out", "o", *given, cwd=tmp_path)
    key = given[1].split("=")[0]
    assert proc.returncode == 2 and f"{given[1]} and {given[3]} given; give {key} one value" in proc.stderr, \
        describe(proc)
    assert not (tmp_path / "o").exists()


def test_cfg_output_is_yaml_on_stdout_only(tmp_path):
    proc = assert_ok(run_cli("train", "--cfg", cwd=tmp_path))
    cfg = yaml.safe_load(proc.stdout)
    assert isinstance(cfg, dict) and "model" in cfg
    assert not (tmp_path / "runs").exists()  # --cfg prints and exits: no run directory


def test_cfg_loads_hydra_but_not_torch(tmp_path):
    """A positive control for the probe above: composing a config does import Hydra, and nothing of torch."""
    probe = _probe(["train", "--cfg"], tmp_path)
    assert probe["code"] == 0
    assert "hydra" in probe["heavy"]
    assert not {"torch", "lightning", "segmentation_models_pytorch", "cv2"} & set(probe["heavy"])


OVERRIDE_EXAMPLE = re.compile(r"Hydra\s+overrides,\s+e\.g\.\s+(.*?)\.(?:\s|$)", re.S)


@pytest.mark.parametrize("argv", [["prepare", "synthetic", "--out", "ds"], ["prepare", "folder", "--images", "i", "--masks", "m"],
                                  ["prepare", "lint", "ds"], ["train"], ["eval", "--ckpt", "x.ckpt"],
                                  ["predict", "--ckpt", "x.ckpt", "img.png"], ["export", "--ckpt", "x.ckpt"]],
                         ids=lambda a: " ".join(a[:2]))
def test_each_help_example_of_overrides_is_accepted_by_that_command(argv, tmp_path):
    help_text = assert_ok(run_cli(*argv[:2 if argv[0] == "prepare" else 1], "--help", cwd=tmp_path)).stdout
    match = OVERRIDE_EXAMPLE.search(help_text)
    assert match, help_text
    example = match.group(1).split()
    assert example and all("=" in item for item in example)
    proc = assert_ok(run_cli(*argv, *example, "--cfg", cwd=tmp_path))
    cfg = yaml.safe_load(proc.stdout)
    for item in example:  # each key=value shows in the composed config (group choices by a key of theirs)
        key, value = item.split("=", 1)
        node = cfg
        for part in key.split("."):
            node = node[part]
        assert isinstance(node, dict) or str(node) == value or float(node) == float(value), (item, node)


@pytest.mark.parametrize("argv, expected", [
    (["prepare", "folder", "--images", "i", "--out", "o"], "Missing option '--masks'; see 'segcli prepare folder -h'"),
    (["prepare", "folder", "--images", "i", "--masks", "m", "--out", "o", "--remap", "x=1"], "--remap: 'x=1'"),
    (["nosuchcommand"], "No such command 'nosuchcommand'; see 'segcli -h'"),
    (["export", "--ckpt", "a.ckpt", "--ckpt", "b.ckpt"], "export writes one model from one checkpoint"),  # not b's
    (["export", "ckpt=[a.ckpt,b.ckpt]"], "ckpt=['a.ckpt', 'b.ckpt']: export writes one model from one checkpoint"),
], ids=["missing-option", "bad-value", "unknown-command", "two-checkpoints-to-export", "a-list-to-export"])
def test_a_usage_error_from_the_option_parser_is_one_line_with_exit_2(argv, expected, tmp_path):
    proc = run_cli(*argv, cwd=tmp_path)
    assert proc.returncode == 2, describe(proc)
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("segcli: error: ") and expected in lines[0], describe(proc)
    assert proc.stdout == ""


def test_an_error_message_with_line_breaks_is_printed_on_one_line(capsys):
    from segcli.cli import _fail

    with pytest.raises(SystemExit) as stop:
        _fail("data/dataset.yaml: invalid card\n  line 3\n\n  column 7", 3)
    assert stop.value.code == 3
    assert capsys.readouterr().err == "segcli: error: data/dataset.yaml: invalid card line 3 column 7\n"


@pytest.mark.parametrize("local_rank, said", [("0", True), ("1", False)])
@pytest.mark.parametrize("signum, code", [(None, 130), ("SIGTERM", 143)])
def test_a_stop_is_said_once_per_distributed_run(local_rank, said, signum, code, capsys, monkeypatch):
    """A SIGTERM to a DDP run (trainer=ddp, devices=2) printed 'segcli: terminated (SIGTERM)' twice, the second from
    the process Lightning's launcher started, which stops with the first. The first process says it; all exit alike."""
    import signal

    from segcli import errors
    from segcli.cli import _fail

    monkeypatch.setenv("LOCAL_RANK", local_rank)
    monkeypatch.setattr(errors, "received_stop", signum and getattr(signal, signum))
    with pytest.raises(SystemExit) as stop:
        _fail("interrupted" if signum is None else "terminated", code)
    assert stop.value.code == code
    line = "segcli: interrupted\n" if signum is None else f"segcli: terminated ({signum})\n"
    assert capsys.readouterr().err == (line if said else "")


@pytest.mark.parametrize("argv", [[], ["prepare"]], ids=["segcli", "segcli prepare"])
def test_no_subcommand_shows_the_help_not_an_error_line(argv, tmp_path):
    """`segcli` alone printed its whole help squashed into one line: "segcli: error: Usage: segcli [OPTIONS] ...
    Commands: train Train a model; ...". It shows the help (on stderr, exit 2, as Click does)."""
    proc = run_cli(*argv, cwd=tmp_path)
    assert proc.returncode == 2, describe(proc)
    assert proc.stderr.startswith(f"Usage: segcli {' '.join(argv)}".rstrip() + " [OPTIONS] COMMAND")
    assert "segcli: error" not in proc.stderr and "\nCommands:\n" in proc.stderr and proc.stdout == ""


_CLOSED_PIPE = """
import sys
from segcli import cli

def flood(*args, **kwargs):  # a command with more results than the pipe holds
    for i in range(200000):
        sys.stdout.write(f"result {i}\\n")
        sys.stdout.flush()

cli._execute = flood
cli.main(["eval", "--ckpt", "x.ckpt"])
"""


def test_a_reader_closing_stdout_early_is_exit_3_in_one_line(tmp_path):
    """`segcli predict ... | head -1`: Click turned the BrokenPipeError into a silent exit 1, the code of a failed
    check (an eval gate), while predict had stopped after a few images. It is exit 3 (an output that cannot be
    written), one line on stderr, no traceback and no "Exception ignored" from Python's exit."""
    import os

    proc = subprocess.Popen([sys.executable, "-c", _CLOSED_PIPE], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={k: v for k, v in os.environ.items() if k != "SEGCLI_DEBUG"})
    assert proc.stdout.readline() == b"result 0\n"
    proc.stdout.close()  # what `head -1` does after its line
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 3, stderr
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("segcli: error: stdout: ") and "Broken pipe" in lines[0], stderr


def test_resume_help_lists_every_key_a_resume_accepts():
    """The --resume help named 5 of the keys training.resume.RESUMABLE accepts (data.cache, save_min_interval_s,
    data.root were missing)."""
    from segcli.training.resume import RESUMABLE

    proc = run_cli("train", "--help", cwd=Path.cwd(), env={"COLUMNS": "400"})
    assert proc.returncode == 0
    help_text = " ".join(proc.stdout.split())
    assert [key for key in RESUMABLE if key not in help_text] == []


def test_train_help_names_the_dataset_key_and_lists_the_config_groups(tmp_path):
    """A user with only the help texts could not find how to point train at a dataset (data.root=DIR) nor which
    config groups and options exist (found only by provoking errors)."""
    from segcli.config import conf_dir

    out = " ".join(assert_ok(run_cli("train", "--help", cwd=tmp_path)).stdout.split())
    assert "data.root is the prepared dataset" in out
    listed = out.split("Config groups (GROUP=OPTION, e.g. experiment=smoke): ", 1)[1]
    for group in sorted(p for p in conf_dir().iterdir() if p.is_dir() and p.name != "data"):
        options = ", ".join(sorted(f.stem for f in group.glob("*.yaml")))
        assert f"{group.name}: {options}" in listed, (group.name, listed)


@pytest.mark.parametrize("command, shown", [
    (["train"], "DIR/model/mine.yaml"), (["eval"], "DIR/inference/mine.yaml"), (["predict"], "DIR/inference/mine.yaml"),
    (["export"], None), (["prepare", "folder"], None), (["prepare", "synthetic"], None)])
def test_config_dir_help_names_the_groups_of_its_command(command, shown, tmp_path):
    """The train help's DIR/model, DIR/experiment examples were copied into every command; eval and predict compose
    only inference, prepare and export no group (their examples failed with exit 2)."""
    out = " ".join(assert_ok(run_cli(*command, "--help", cwd=tmp_path)).stdout.split())
    if shown is None:
        assert "--config-dir" not in out
    else:
        assert shown in out.split("--config-dir", 1)[1]
    if command[0] != "train":
        assert "DIR/model/" not in out and "DIR/experiment/" not in out


@pytest.mark.parametrize("argv, hint", [
    (["train", "--data", "ds"], "No such option: --data; settings are key=value overrides: data.root=DIR; "
                                "see 'segcli train -h'"),
    (["train", "--max-epochs", "3"], "No such option: --max-epochs; settings are key=value overrides: "
                                     "trainer.max_epochs=VALUE; see 'segcli train -h'"),
    (["train", "--lr=0.1"], "No such option: --lr; settings are key=value overrides: optim.lr=VALUE; see"),
    (["train", "--loss", "dice"], "No such option: --loss; settings are key=value overrides: loss=OPTION; see"),
    (["eval", "--ckpt", "x.ckpt", "--tile", "256"], "No such option: --tile; settings are key=value overrides: "
                                                    "inference.tile=VALUE; see 'segcli eval -h'"),
    (["train", "--nosuch"], "No such option: --nosuch"),
], ids=["data", "max-epochs", "lr", "loss-group", "eval-tile", "no-key"])
def test_an_unknown_option_that_is_a_config_key_names_its_override(argv, hint, tmp_path):
    """`segcli train --data ds` said 'No such option: --data; see segcli train -h', and that help never named
    data.root; `--lr` got Click's 'Possible options: --from, --help'."""
    proc = run_cli(*argv, cwd=tmp_path)
    assert proc.returncode == 2 and proc.stdout == "", describe(proc)
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("segcli: error: " + hint), describe(proc)
    assert "overrides" not in lines[0] or "Possible options" not in lines[0]


@pytest.mark.parametrize("argv, twice, key, value", [
    (["eval", "--ckpt", "x.ckpt"], ["--split", "val", "--split=test"], "split", "test"),
    (["prepare", "synthetic", "--out", "a"], ["--num-images", "3", "--num-images", "5"], "synthetic.num_images", 5),
    (["train"], ["--run-dir", "r1", "--run-dir", "r2"], "run_dir", "r2"),
], ids=["eval-split", "prepare-count", "train-run-dir"])
def test_an_option_of_one_value_given_twice_is_noted_and_the_last_kept(argv, twice, key, value, tmp_path):
    """Click keeps the last of `--split val --split test`: the first was dropped without a word."""
    proc = assert_ok(run_cli(*argv, *twice, "--cfg", cwd=tmp_path))
    name, first = twice[0], twice[1]
    notes = [line for line in proc.stderr.splitlines() if "given" in line]
    assert notes == [f"segcli: note: {name} given 2 times ({first}, {value}); the last, {value}, is used"], proc.stderr
    node = yaml.safe_load(proc.stdout)
    for part in key.split("."):
        node = node[part]
    assert Path(str(node)).name == str(value)
    proc = assert_ok(run_cli(*argv, *twice[-2:] if len(twice) == 4 else twice[-1:], "--cfg", cwd=tmp_path))
    assert "given" not in proc.stderr


def test_the_given_twice_note_stays_out_of_usage_errors_and_help(tmp_path):
    """`--split val --split` (no value) said "the last, , is used" before Click's usage error; the help ran nothing
    either."""
    proc = run_cli("eval", "--ckpt", "x.ckpt", "--split", "val", "--split", cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.splitlines() == [
        "segcli: error: Option '--split' requires an argument"], describe(proc)
    proc = assert_ok(run_cli("eval", "--split", "val", "--split", "test", "--help", cwd=tmp_path))
    assert "given" not in proc.stderr


def test_an_unknown_option_of_a_prepare_format_gets_no_key_of_another_format(tmp_path):
    """`prepare synthetic --val-fraction 0.2` was told `val_fraction=VALUE`, which prepare synthetic refuses."""
    proc = run_cli("prepare", "synthetic", "--out", "o", "--val-fraction", "0.2", cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.splitlines() == [
        "segcli: error: No such option: --val-fraction; see 'segcli prepare synthetic -h'"], describe(proc)


@pytest.mark.parametrize("argv, key, note", [
    (["eval", "--ckpt", "x.ckpt", "--split", "val", "split=train"], "split",
     "eval: note: split=train and an option both set split; the option's value (val) is used"),
    (["prepare", "synthetic", "--out", "o", "--num-images", "3", "synthetic.num_images=5"], "synthetic",
     "prepare: note: synthetic.num_images=5 and an option both set synthetic.num_images; the option's value (3) is used"),
], ids=["eval-split", "prepare-count"])
def test_an_override_of_a_key_an_option_sets_too_is_noted(argv, key, note, tmp_path):
    """The option wins (README: options are applied on top of the overrides), and the override was dropped without a
    word: `eval --ckpt A ckpt=B` scored A alone."""
    proc = assert_ok(run_cli(*argv, "--cfg", cwd=tmp_path))
    assert [line for line in proc.stderr.splitlines() if "note" in line] == [note], proc.stderr
    assert "val" in proc.stdout.split("split:", 1)[1].split("\n")[0] if key == "split" else \
        yaml.safe_load(proc.stdout)["synthetic"]["num_images"] == 3
