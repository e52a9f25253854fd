"""`segcli train --from SOURCE`: a new run from a saved config (a run directory's config.yaml, or a file of
`segcli train --cfg`), changed by key=value overrides."""

from __future__ import annotations

import csv

import pytest
import yaml
from helpers_cli import assert_error, run_cli

TINY = ["experiment=smoke", "loss=ce", "optim=sgd", "optim.lr=0.05", "trainer.max_epochs=1", "seed=3"]


def _rows(run_dir) -> list[tuple[str, str]]:
    with open(run_dir / "metrics.csv", newline="") as handle:
        return [(row.get("val/mIoU", ""), row.get("train/loss_epoch", "")) for row in csv.DictReader(handle)
                if row.get("val/mIoU") or row.get("train/loss_epoch")]


def _config(path) -> dict:
    config = yaml.safe_load(path.read_text())
    config.pop("run_dir")
    return config


def test_a_run_started_from_another_runs_config_repeats_it(synthetic_data, tmp_path):
    first = tmp_path / "first"
    # final_eval=false (--from repeats it): the test compares configs and metrics.csv, not the final evaluation
    proc = run_cli("train", f"data.root={synthetic_data}", *TINY, "final_eval=false", "--run-dir", first, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    proc = run_cli("train", "--from", first, "--run-dir", tmp_path / "again", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == str(tmp_path / "again")
    assert _config(tmp_path / "again" / "config.yaml") == _config(first / "config.yaml")
    assert _rows(tmp_path / "again") == _rows(first) and _rows(first)  # seeded: the same losses and val mIoU


def test_a_cfg_file_keeps_its_group_choices_and_takes_key_overrides(synthetic_data, tmp_path):
    """Fed back as an experiment file, `--cfg` output merged into the default options: loss=ce came back as
    {ce: 1, dice: 1} and optim=sgd kept adamw's betas. --from takes the file as it is."""
    proc = run_cli("train", "--cfg", f"data.root={synthetic_data}", *TINY, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    (tmp_path / "saved.yaml").write_text(proc.stdout)
    proc = run_cli("train", "--from", tmp_path / "saved.yaml", "--cfg", "model.arch=fpn", "+trainer.limit_train_batches=2",
                   cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    config = yaml.safe_load(proc.stdout)
    assert config["loss"]["terms"] == {"ce": 1.0} and "betas" not in config["optim"]
    assert config["optim"]["name"] == "sgd" and config["optim"]["momentum"] == 0.9
    assert config["model"]["arch"] == "fpn" and config["trainer"]["limit_train_batches"] == 2
    assert config["run_dir"] is None  # a new run: runs/train/<timestamp> unless --run-dir


def test_a_saved_config_without_keys_added_since_gets_their_defaults(synthetic_data, tmp_path):
    proc = run_cli("train", "--cfg", f"data.root={synthetic_data}", *TINY, cwd=tmp_path)
    full = yaml.safe_load(proc.stdout)
    (tmp_path / "full.yaml").write_text(proc.stdout)
    older = yaml.safe_load(proc.stdout)
    for group, key in (("data", "repeat"), ("augment", "fog"), ("trainer", "precision"), ("optim", "momentum")):
        del older[group][key]
    del older["ema"]
    (tmp_path / "older.yaml").write_text(yaml.safe_dump(older))
    proc = run_cli("train", "--from", tmp_path / "older.yaml", "--cfg", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    filled = yaml.safe_load(proc.stdout)
    del full["optim"]["momentum"]  # sgd's own key: not every optimiser has it, so segcli's default (0.9) applies
    assert filled == full
    # the user is told which settings the saved config lacked (they train as today's segcli trains, not as the
    # version that wrote it); a key given on the command line is not among them
    added = sorted(["data.repeat", "trainer.precision"] + [f"augment.fog.{key}" for key in full["augment"]["fog"]]
                   + [f"ema.{key}" for key in full["ema"]])
    proc = run_cli("train", "--from", tmp_path / "older.yaml", "--cfg", "data.repeat=2", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    notes = [line for line in proc.stderr.splitlines() if "lacks" in line]
    listed = [key for key in added if key != "data.repeat"]
    assert notes == [f"train: note: {tmp_path / 'older.yaml'} lacks {len(listed)} setting(s) that a later segcli "
                     f"added; they take today's defaults: " + ", ".join(listed[:6])
                     + (f", … ({len(listed) - 6} more)" if len(listed) > 6 else "")], proc.stderr
    proc = run_cli("train", "--from", tmp_path / "older.yaml", "--cfg", cwd=tmp_path)
    assert "data.repeat" in proc.stderr
    proc = run_cli("train", "--from", tmp_path / "older.yaml", "--cfg", "ema={decay:0.99}", cwd=tmp_path)
    notes = [line for line in proc.stderr.splitlines() if "lacks" in line]
    assert proc.returncode == 0 and len(notes) == 1 and "ema." not in notes[0] and "augment.fog.p" in notes[0], notes
    proc = run_cli("train", "--from", tmp_path / "full.yaml", "--cfg", cwd=tmp_path)
    assert proc.returncode == 0 and "lacks" not in proc.stderr, proc.stderr


@pytest.mark.parametrize("args, code, message", [
    (["model=fpn"], 2, "model=fpn: --from starts from {cfg}, whose groups are composed in already; set their keys "
                       "instead (e.g. model.arch=fpn"),
    (["optim.lrr=0.1"], 2, "optim.lrr=0.1: {cfg} has no key optim.lrr (did you mean optim.lr"),
    (["seed=1,2"], 2, "seed=1,2: --from starts one run and keeps every key; give key=value"),
    (["-m", "seed=1,2"], 2, "--from starts one new run from a saved config; drop --resume, -m and --config-dir"),
])
def test_overrides_a_saved_config_cannot_take_are_refused(synthetic_run, tmp_path, args, code, message):
    proc = run_cli("train", "--from", synthetic_run.run_dir, *args, "--run-dir", tmp_path / "new", cwd=tmp_path)
    line = assert_error(proc, code)
    assert line.startswith("segcli: error: " + message.format(cfg=synthetic_run.run_dir / "config.yaml")), line
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("text, message", [
    (None, "not found; --from needs a saved config"),
    ("data: [", "not readable as YAML"),
    ("seed: 1\n", "not a `segcli train` config (no data and model settings)"),
    ("data: {root: x}\nmodel: {arch: unet}\nbogus: 1\n", "sets bogus, which `segcli train` reads nowhere"),
])
def test_a_file_that_is_no_saved_config_is_named(tmp_path, text, message):
    path = tmp_path / "saved.yaml"
    if text is not None:
        path.write_text(text)
    proc = run_cli("train", "--from", path, cwd=tmp_path)
    assert assert_error(proc, 3).startswith(f"segcli: error: {path}: {message}")


def _cfg_file(synthetic_data, tmp_path, *overrides) -> dict:
    proc = run_cli("train", "--cfg", f"data.root={synthetic_data}", *TINY, *overrides, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    return yaml.safe_load(proc.stdout)


@pytest.mark.parametrize("edit, message", [
    (lambda c: c.pop("trainer"), "has no trainer settings"),
    (lambda c: c.update(loss=None), "loss is null, not a mapping of settings"),
    (lambda c: c.update(early_stopping=None), "early_stopping is null, not a mapping of settings"),
    (lambda c: c.update(ema=0.99), "ema is 0.99, not a mapping of settings"),
    (lambda c: c["augment"].update(noise=0.5), "augment.noise is 0.5, not a mapping of settings"),
])
def test_a_saved_config_missing_a_section_or_with_a_value_for_it_is_named(synthetic_data, tmp_path, edit, message):
    """Hand-edited files: a whole group's section gone, or a section given a value, ended in exit 4 (internal error,
    `Key 'trainer' is not in struct`, `'float' object has no attribute 'get'`)."""
    config = _cfg_file(synthetic_data, tmp_path)
    edit(config)
    (tmp_path / "edited.yaml").write_text(yaml.safe_dump(config))
    proc = run_cli("train", "--from", tmp_path / "edited.yaml", "--run-dir", tmp_path / "new", cwd=tmp_path)
    line = assert_error(proc, 3)
    assert line.startswith(f"segcli: error: {tmp_path / 'edited.yaml'}: {message}"), line
    assert "give it its settings as `segcli train --cfg` prints them" in line
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("override", ["early_stopping=null", "ema=0.99", "augment.noise=0.5"])
def test_an_override_giving_a_section_a_value_is_a_usage_error(synthetic_data, tmp_path, override):
    (tmp_path / "saved.yaml").write_text(yaml.safe_dump(_cfg_file(synthetic_data, tmp_path)))
    proc = run_cli("train", "--from", tmp_path / "saved.yaml", override, "--run-dir", tmp_path / "new", cwd=tmp_path)
    key = override.partition("=")[0]
    assert assert_error(proc, 2).startswith(f"segcli: error: {override}: {key} is a mapping of settings; set its keys")
    assert not (tmp_path / "new").exists()


def test_run_dir_given_as_an_override_is_where_the_new_run_goes(synthetic_data, tmp_path):
    """run_dir=DIR was dropped without a word (the run went to runs/train/<timestamp>); plain `train` honours it."""
    (tmp_path / "saved.yaml").write_text(yaml.safe_dump(_cfg_file(synthetic_data, tmp_path)))
    proc = run_cli("train", "--from", tmp_path / "saved.yaml", f"run_dir={tmp_path / 'here'}", "--cfg", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert yaml.safe_load(proc.stdout)["run_dir"] == str(tmp_path / "here")
    proc = run_cli("train", "--from", tmp_path / "saved.yaml", f"run_dir={tmp_path / 'here'}", "--run-dir",
                   tmp_path / "there", "--cfg", cwd=tmp_path)
    assert yaml.safe_load(proc.stdout)["run_dir"] == str(tmp_path / "there")  # as in plain `train`: --run-dir wins


def test_model_kwargs_the_new_arch_lacks_can_be_deleted(synthetic_data, tmp_path):
    """unet_slim's decoder_channels is no argument of FPN: model.arch=fpn needs ~model.kwargs.decoder_channels, which
    --from refused as it refuses ~seed."""
    (tmp_path / "saved.yaml").write_text(yaml.safe_dump(_cfg_file(synthetic_data, tmp_path, "model=unet_slim")))
    proc = run_cli("train", "--from", tmp_path / "saved.yaml", "model.arch=fpn", "~model.kwargs.decoder_channels",
                   "~trainer.limit_val_batches", "--cfg", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    config = yaml.safe_load(proc.stdout)
    assert config["model"]["kwargs"] == {} and "limit_val_batches" not in config["trainer"]
    proc = run_cli("train", "--from", tmp_path / "saved.yaml", "~seed", "--cfg", cwd=tmp_path)
    assert "keys can be deleted only as ~trainer.<name>" in assert_error(proc, 2)


def test_a_checkpoint_a_sweep_or_a_moved_dataset_names_what_to_give(synthetic_run, tmp_path):
    run = synthetic_run.run_dir
    proc = run_cli("train", "--from", run / "checkpoints" / "last.ckpt", cwd=tmp_path)  # was 'not readable as YAML'
    assert assert_error(proc, 3).endswith(f"a checkpoint; --from reads a saved config, not weights: --from {run}")
    sweep = tmp_path / "sweep"
    (sweep / "0-seed=1").mkdir(parents=True)
    (sweep / "summary.csv").write_text("job\n0\n")
    (sweep / "0-seed=1" / "config.yaml").write_text((run / "config.yaml").read_text())
    proc = run_cli("train", "--from", sweep, cwd=tmp_path)  # was 'sweep/config.yaml: not found'
    assert assert_error(proc, 3).endswith(f"a sweep directory, one config per job; --from starts one run: give a "
                                          f"job's directory, e.g. --from {sweep / '0-seed=1'}")
    moved = yaml.safe_load((run / "config.yaml").read_text())
    moved["data"]["root"] = str(tmp_path / "gone")
    (tmp_path / "moved.yaml").write_text(yaml.safe_dump(moved))
    proc = run_cli("train", "--from", tmp_path / "moved.yaml", "--run-dir", tmp_path / "new", cwd=tmp_path)
    assert assert_error(proc, 3).endswith(f"its dataset {tmp_path / 'gone'} has no dataset.yaml (moved or deleted?); "
                                          f"give its place: segcli train --from {tmp_path / 'moved.yaml'} "
                                          "data.root=FOLDER")  # was: prepare a synthetic dataset there
    assert not (tmp_path / "new").exists()


def test_naming_another_preset_switches_the_section_keeping_the_shared_keys(synthetic_data, tmp_path):
    """`--from RUN sched.name=onecycle` kept poly's keys (power, warmup_steps), read by nothing, and `optim.name=sgd`
    kept adamw's betas and had no momentum to set. As without --from, the name selects that preset; the saved
    values of the keys both presets have (lr, warmup_steps) stay. A key the new preset lacks is refused, in any
    order."""
    from omegaconf import OmegaConf

    from segcli.config import compose, to_yaml
    from segcli.errors import ConfigError
    from segcli.training.resume import start_config

    saved = tmp_path / "saved.yaml"
    saved.write_text(to_yaml(compose("train", [f"data.root={synthetic_data}", "sched.warmup_steps=7",
                                               "optim.lr=0.002"])))
    cfg = start_config(saved, ["sched.name=cosine", "optim.name=sgd", "optim.momentum=0.5"])
    assert OmegaConf.to_container(cfg.sched) == {**OmegaConf.to_container(compose("train", ["sched=cosine"]).sched),
                                                 "warmup_steps": 7}
    assert cfg.optim.name == "sgd" and cfg.optim.lr == 0.002 and cfg.optim.momentum == 0.5 and cfg.optim.nesterov
    assert "betas" not in cfg.optim
    for order in (["sched.warmup_steps=3", "sched.name=onecycle"], ["sched.name=onecycle", "sched.warmup_steps=3"]):
        with pytest.raises(ConfigError, match="has no key sched.warmup_steps"):
            start_config(saved, order)
