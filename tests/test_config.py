"""Config composition: primary configs, every group option, overrides, suggestions, --config-dir."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from helpers_cli import REPO, assert_error, assert_ok, run_cli, run_in_process

from segcli.config import compose, conf_dir, to_container
from segcli.errors import ConfigError

CONF = REPO / "conf"


def _train_groups() -> list[str]:
    """Config groups that conf/train.yaml selects in its defaults list."""
    defaults = yaml.safe_load((CONF / "train.yaml").read_text())["defaults"]
    return [next(iter(item)) for item in defaults if isinstance(item, dict)]


def _group_options() -> list[tuple[str, str]]:
    return [(path.parent.name, path.stem) for path in sorted(CONF.glob("*/*.yaml"))]


PRIMARY = {
    "train": (["train"], {"data", "model", "loss", "optim", "sched", "augment", "trainer", "inference", "seed", "run_dir"}),
    "eval": (["eval"], {"ckpt", "data", "split", "json", "device", "inference"}),
    "predict": (["predict", "--out", "masks"], {"ckpt", "inputs", "out", "overlay", "alpha", "device", "inference"}),
    "export": (["export"], {"ckpt", "format", "out", "opset", "verify", "verify_images"}),
    "prepare": (["prepare", "synthetic", "--out", "ds"], {"format", "out", "overwrite", "seed", "synthetic"}),
}


def test_conf_dir_is_the_repo_conf():
    assert conf_dir().resolve() == CONF.resolve()


@pytest.mark.parametrize("command", sorted(PRIMARY))
def test_primary_config_prints_with_cfg(command, tmp_path):
    argv, keys = PRIMARY[command]
    proc = assert_ok(run_cli(*argv, "--cfg", cwd=tmp_path))
    cfg = yaml.safe_load(proc.stdout)
    assert isinstance(cfg, dict)
    assert keys <= set(cfg), f"missing {keys - set(cfg)}"
    assert proc.stderr.strip() == ""
    assert list(tmp_path.iterdir()) == []  # --cfg writes nothing
    if "--out" in argv:
        assert cfg["out"] == argv[argv.index("--out") + 1]


def test_prepare_cfg_carries_cli_options(tmp_path):
    proc = assert_ok(run_cli("prepare", "synthetic", "--out", "ds", "--num-images", "7", "--seed", "3", "--cfg",
                             cwd=tmp_path))
    cfg = yaml.safe_load(proc.stdout)
    assert cfg["format"] == "synthetic"
    assert cfg["out"] == "ds"
    assert cfg["synthetic"]["num_images"] == 7
    assert cfg["seed"] == 3
    assert not (tmp_path / "ds").exists()


@pytest.mark.parametrize("command", ["train", "eval", "predict", "export", "prepare"])
def test_primary_config_composes_in_process(command):
    cfg = to_container(compose(command, []))
    expected = yaml.safe_load((CONF / f"{command}.yaml").read_text())
    for key, value in expected.items():
        if key != "defaults":
            assert cfg[key] == value, key


@pytest.mark.parametrize("group,option", _group_options(), ids=lambda x: str(x))
def test_every_group_option_composes(group, option):
    if group not in _train_groups():
        pytest.skip(f"group {group} is not used by train")
    if group == "experiment":
        pytest.skip("experiment bundles are '# @package _global_' files; tests/train composes them")
    cfg = to_container(compose("train", [f"{group}={option}"]))
    assert cfg[group] == _group_file(group, option)


def _group_file(group: str, option: str) -> dict:
    """The option's own keys on top of the same-group options its `defaults` list inherits from."""
    raw = yaml.safe_load((CONF / group / f"{option}.yaml").read_text())
    merged: dict = {}
    for parent in raw.pop("defaults", []):
        if parent != "_self_":
            merged.update(_group_file(group, parent))
    merged.update(raw)
    return merged


def test_every_group_is_used_by_some_command():
    """A group directory that no primary config selects would be unreachable."""
    used = set(_train_groups())
    for command in ("eval", "predict", "export", "prepare"):
        for item in yaml.safe_load((CONF / f"{command}.yaml").read_text()).get("defaults", []):
            if isinstance(item, dict):
                used.update(item)
    groups = {path.parent.name for path in CONF.glob("*/*.yaml")}
    assert groups <= used, f"unused groups: {groups - used}"


def test_overrides_appear_in_cfg(tmp_path):
    proc = assert_ok(run_cli("train", "model.arch=fpn", "trainer.max_epochs=3", "--cfg", cwd=tmp_path))
    cfg = yaml.safe_load(proc.stdout)
    assert cfg["model"]["arch"] == "fpn"
    assert cfg["trainer"]["max_epochs"] == 3
    assert cfg["model"]["encoder"] == "resnet18"  # the rest of the group is untouched


def test_group_selection_appears_in_cfg(tmp_path):
    proc = assert_ok(run_cli("train", "loss=ce", "sched=cosine", "augment=none", "--cfg", cwd=tmp_path))
    cfg = yaml.safe_load(proc.stdout)
    assert cfg["loss"]["terms"] == {"ce": 1.0}
    assert cfg["sched"]["name"] == "cosine"
    assert cfg["augment"]["crop_size"] is None


def test_list_override(tmp_path):
    proc = assert_ok(run_cli("train", "augment.crop_size=[64,96]", "--cfg", cwd=tmp_path))
    assert yaml.safe_load(proc.stdout)["augment"]["crop_size"] == [64, 96]


def test_new_key_with_plus_prefix(tmp_path):
    """The unknown-key error advises `+key=value`; that has to work."""
    proc = assert_ok(run_cli("train", "+trainer.benchmark=true", "--cfg", cwd=tmp_path))
    assert yaml.safe_load(proc.stdout)["trainer"]["benchmark"] is True


def test_an_added_key_that_nothing_reads_is_refused():
    """`+key=value` outside the dicts handed on as keyword arguments (trainer, model.kwargs, loss.params) was
    composed in and ignored without a word; a forced `++` on a listed key stays an ordinary override."""
    for command, override in (("train", "+foo=1"), ("train", "+model.bogus=1"), ("train", "++data.bogus=1"),
                              ("predict", "+foo=1"), ("eval", "+split2=val")):
        typed = re.escape(override.split("=")[0])
        with pytest.raises(ConfigError, match=f"{typed}: 'segcli {command}' reads no such key"):
            compose(command, [override])
    cfg = to_container(compose("train", ["loss=ce", "++data.batch_size=2", "+model.kwargs.decoder_attention_type=scse",
                                         "+loss.params.dice.smooth=1.0", "+trainer.benchmark=true"]))
    assert cfg["data"]["batch_size"] == 2 and cfg["model"]["kwargs"] == {"decoder_attention_type": "scse"}
    assert cfg["loss"]["params"]["dice"] == {"smooth": 1.0} and cfg["trainer"]["benchmark"] is True


def test_a_loss_term_can_be_added_and_unknown_dict_keys_advise_the_plus():
    """`+loss.terms.focal=0.5` (a term the preset lacks) was refused as a key nothing reads, though the loss error
    advises it; `trainer.benchmark=true` (README: any Trainer argument) suggested trainer.devices instead of the
    `+` that adds it."""
    cfg = to_container(compose("train", ["+loss.terms.focal=0.5"]))
    assert cfg["loss"]["terms"] == {"ce": 1.0, "dice": 1.0, "focal": 0.5}
    for key in ("trainer.benchmark", "loss.terms.focal", "model.kwargs.decoder_attention_type",
                "loss.params.focal.gamma"):
        with pytest.raises(ConfigError, match=re.escape(f"or add one with +{key}=...")):
            compose("train", [f"{key}=1"])
    with pytest.raises(ConfigError) as err:
        compose("train", ["data.bogus=1"])
    assert "add one" not in str(err.value)


def test_trainer_keys_are_lightning_trainer_arguments():
    from segcli.models.trainer_args import check

    with pytest.raises(ConfigError, match=r"unknown trainer.limit_train_batch: .*did you mean limit_train_batches"):
        check({"limit_train_batch": 1})
    with pytest.raises(ConfigError, match="trainer.logger is set by segcli train itself"):
        check({"logger": False})
    check({"limit_train_batches": 1, "benchmark": True})


def test_unknown_key_suggests_the_right_one(tmp_path):
    line = assert_error(run_cli("train", "trainer.max_epoch=3", cwd=tmp_path), 2)
    assert "did you mean" in line
    assert "trainer.max_epochs" in line
    assert "trainer.max_epoch'" in line  # names the offending key


def test_unknown_top_level_key(tmp_path):
    line = assert_error(run_cli("train", "sed=1", cwd=tmp_path), 2)
    assert "sed" in line and "did you mean" in line and "seed" in line


def test_unknown_key_in_other_commands(tmp_path):
    line = assert_error(run_cli("eval", "splitt=val", cwd=tmp_path), 2)
    assert "did you mean" in line and "split" in line


def test_unknown_group_option_suggests(tmp_path):
    line = assert_error(run_cli("train", "loss=cee", cwd=tmp_path), 2)
    assert "did you mean" in line
    assert "'cee'" in line
    for option in ("ce", "ce_dice", "dice"):
        assert option in line


def test_unknown_group_option_in_process():
    with pytest.raises(ConfigError, match="did you mean"):
        compose("train", ["model=unnet"])


def test_unparsable_override(tmp_path):
    assert_error(run_cli("train", "model.arch=[fpn", cwd=tmp_path), 2)


def _write_user_model(root: Path) -> Path:
    (root / "model").mkdir(parents=True)
    (root / "model" / "mine.yaml").write_text(
        "arch: fpn\nencoder: resnet34\nencoder_weights: null\nin_channels: 3\nkwargs: {decoder_dropout: 0.1}\n")
    return root


def test_config_dir_user_group_option(tmp_path):
    user = _write_user_model(tmp_path / "myconf")
    proc = assert_ok(run_cli("train", "--config-dir", user, "model=mine", "--cfg", cwd=tmp_path))
    model = yaml.safe_load(proc.stdout)["model"]
    assert model["arch"] == "fpn"
    assert model["encoder"] == "resnet34"
    assert model["kwargs"] == {"decoder_dropout": 0.1}


def test_config_dir_keeps_packaged_options(tmp_path):
    user = _write_user_model(tmp_path / "myconf")
    proc = assert_ok(run_cli("train", "--config-dir", user, "model=unet", "loss=dice", "--cfg", cwd=tmp_path))
    cfg = yaml.safe_load(proc.stdout)
    assert cfg["model"]["arch"] == "unet"
    assert cfg["loss"]["terms"] == {"dice": 1.0}


def test_config_dir_option_needs_the_dir(tmp_path):
    """Without --config-dir the user option is unknown (and the error lists the packaged ones)."""
    _write_user_model(tmp_path / "myconf")
    line = assert_error(run_cli("train", "model=mine", cwd=tmp_path), 2)
    assert "mine" in line and "unet" in line


def test_config_dir_in_process(tmp_path):
    user = _write_user_model(tmp_path / "myconf")
    cfg = compose("train", ["model=mine", "trainer.max_epochs=2"], config_dir=user)
    assert cfg.model.arch == "fpn" and cfg.model.encoder == "resnet34"
    assert cfg.trainer.max_epochs == 2


def test_config_dir_missing_is_a_usage_error(tmp_path):
    line = assert_error(run_cli("train", "--config-dir", tmp_path / "nope", "--cfg", cwd=tmp_path), 2)
    assert "nope" in line


@pytest.mark.parametrize("folder, content, says", [
    ("experiment", b"\xef\xbb\xbf# @package _global_\ntrainer:\n  max_epochs: 7\n",
     "it starts with a byte-order mark ('UTF-8 with BOM'), which hides its `# @package` line from Hydra; save it as "
     "UTF-8 without BOM"),
    ("model", b"defaults: [unet, _self_]\n# Stra\xdfe\nencoder: resnet34\n",
     "not UTF-8 text (byte 0xdf at offset 31); save it as UTF-8"),
    ("model", "encoder: resnet34\n".encode("utf-16"), "not UTF-8 text (byte 0xff at offset 0); save it as UTF-8"),
], ids=["bom", "cp1252", "utf16"])
def test_a_user_config_file_in_another_encoding_is_named_with_the_fix(tmp_path, folder, content, says):
    """An experiment saved as 'UTF-8 with BOM': Hydra missed its `# @package _global_` line and segcli said it set
    keys read nowhere (did you mean experiment, trainer …?); a cp1252 or UTF-16 file: "'utf-8' codec can't decode byte
    0xdf", naming no file."""
    (tmp_path / "cfg" / folder).mkdir(parents=True)
    (tmp_path / "cfg" / folder / "mine.yaml").write_bytes(content)
    line = assert_error(run_cli("train", "--config-dir", tmp_path / "cfg", f"{folder}=mine", "--cfg", cwd=tmp_path), 2)
    assert line == f"segcli: error: {tmp_path / 'cfg' / folder / 'mine.yaml'}: {says}", line


def test_a_stray_file_under_config_dir_that_is_not_utf8_blocks_nothing_it_is_not_chosen(tmp_path):
    """Only the files that the command line (or a chosen file's defaults) composes are read: a Latin-1 backup
    beside them stopped every command."""
    (tmp_path / "cfg" / "model").mkdir(parents=True)
    (tmp_path / "cfg" / "notes").mkdir()
    (tmp_path / "cfg" / "model" / "mine.yaml").write_text("defaults: [unet, _self_]\nencoder: resnet34\n")
    (tmp_path / "cfg" / "notes" / "old.yaml").write_bytes(b"auteur: Jos\xe9\n")
    assert compose("train", ["model=mine"], config_dir=tmp_path / "cfg").model.encoder == "resnet34"
    (tmp_path / "cfg" / "experiment").mkdir()  # named by a chosen file's defaults: found when Hydra fails on it
    (tmp_path / "cfg" / "experiment" / "two.yaml").write_text("# @package _global_\ndefaults:\n  - override "
                                                              "/model: latin\n")
    (tmp_path / "cfg" / "model" / "latin.yaml").write_bytes(b"defaults: [unet, _self_]\n# Jos\xe9\n")
    with pytest.raises(ConfigError, match=r"model/latin.yaml: not UTF-8 text \(byte 0xe9 at offset 30\)"):
        compose("train", ["experiment=two"], config_dir=tmp_path / "cfg")


def test_a_byte_order_mark_without_a_package_line_still_reads(tmp_path):
    (tmp_path / "cfg" / "model").mkdir(parents=True)
    (tmp_path / "cfg" / "model" / "mine.yaml").write_bytes(b"\xef\xbb\xbfdefaults: [unet, _self_]\nencoder: resnet34\n")
    cfg = compose("train", ["model=mine"], config_dir=tmp_path / "cfg")
    assert cfg.model.encoder == "resnet34" and cfg.model.arch == "unet"


def test_cli_values_override_config(tmp_path):
    cfg = compose("eval", ["split=train"], values={"ckpt": Path("a/b.ckpt"), "split": None, "json": "-"})
    assert cfg.ckpt == "a/b.ckpt"  # paths become strings
    assert cfg.split == "train"  # None means "not given": the override stands
    assert cfg.json == "-"


def test_composed_config_is_struct():
    cfg = compose("train", [])
    with pytest.raises(Exception):
        cfg.trainer.max_epoch = 3  # a typo must not silently add a key


def test_values_hydra_cannot_parse_are_quoted():
    """`data.root=/data/Straße (2)` failed with "cannot parse overrides ... LexerNoViableAltException": Hydra's
    grammar takes no non-ASCII letters, ~, parentheses, brackets, #, &, = or ' in an unquoted value."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from segcli.config import quote_values

    parser = OverridesParser.create()
    for value in ["/data/Straße (2)", "~/data", "/d/a=b#c&d", "/d/it's", "C:\\data\\x(1)\\", "/d/[1]{2}", "/d/a\\'b"]:
        (fixed,) = quote_values([f"data.root={value}"])
        assert parser.parse_overrides([fixed])[0].value() == value, fixed
    untouched = ["optim.lr=1e-3,2e-3", "augment.crop_size=[128,128]", "data.root='/x y'", "model=unet",
                 "model.arch=[fpn", "optim.lr=range(1,4"]  # a malformed list or function call stays an error
    assert quote_values(untouched) == untouched  # sweeps, lists, quoted values keep their meaning


@pytest.mark.parametrize("command, override, key, value", [
    ("train", "data.root=2024.10", "data.root", "2024.10"), ("train", "data.root=1_000", "data.root", "1_000"),
    ("train", "data.root=true", "data.root", "true"), ("train", "data.root=[a]", "data.root", "[a]"),
    ("train", "run_dir=2025.10", "run_dir", "2025.10"), ("prepare", "out=2030", "out", "2030"),
    ("export", "verify_images=1e3", "verify_images", "1e3"), ("eval", "json=+5", "json", "+5"),
    ("eval", "ckpt=[a.ckpt,b.ckpt]", "ckpt", ["a.ckpt", "b.ckpt"]),  # an ensemble's list stays a list
    ("train", "data.root=null", "data.root", None), ("train", "data.root=${oc.env:HOME}", "data.root", None),
])
def test_a_path_is_kept_as_the_text_given(command, override, key, value):
    """data.root=2024.10 was the float 2024.1 (exit 4: 'expected str, bytes or os.PathLike object, not float'), and
    run_dir=2025.10 trained into ./2025.1 (exit 0): a folder named like a number, a year or a version is common."""
    import os

    from omegaconf import OmegaConf

    cfg = compose(command, [override])
    got = OmegaConf.select(cfg, key)
    expected = os.environ["HOME"] if "oc.env" in override else value
    assert (OmegaConf.to_container(got) if OmegaConf.is_config(got) else got) == expected
    from segcli.config import quote_values

    assert quote_values(["data.root=2024,2024.10"]) == ["data.root='2024','2024.10'"]  # each of a sweep's values


@pytest.mark.parametrize("command, override, words", [
    ("predict", "legend=maybe", "true or false"), ("export", "half=1", "true or false"),
    ("eval", "boundary.enabled=0", "true or false"), ("prepare", "strict=x", "true or false"),
    ("train", "model=fpn model.compile=yes", "true or false"), ("train", "trainer.deterministic=maybe", "warn, true or false"),
])
def test_a_switch_takes_true_or_false(command, override, words):
    """Hydra keeps `legend=maybe` as a string, which the command would have taken as on."""
    key, value = override.split()[-1].split("=")
    with pytest.raises(ConfigError, match=f"^{key}='?{value}'?: give {words} \\(segcli {command}\\)$"):
        compose(command, override.split())


@pytest.mark.parametrize("command, override", [("predict", "legend=true"), ("train", "trainer.deterministic=warn"),
                                               ("train", "data.cache=auto"), ("export", "half=False")])
def test_switch_values_that_pass(command, override):
    compose(command, [override])


# ----------------------------------------------------------------------------- overrides users type wrong
@pytest.mark.parametrize("command, override", [("eval", "~inference"), ("eval", "~split"), ("eval", "~device"),
                                               ("predict", "~inference.batch_size"), ("predict", "~save"),
                                               ("train", "~augment"), ("train", "~loss.terms")])
def test_deleting_a_key_the_command_reads_is_refused(command, override):
    """`segcli eval --ckpt C ~split` (or ~inference, ~save, ~augment, ~loss.terms) composed, then crashed on the
    first read of the key: exit 4, "internal error: ConfigAttributeError: Key 'split' is not in struct"."""
    key = override[1:]
    with pytest.raises(ConfigError, match=rf"^~{re.escape(key)}: 'segcli {command}' reads this key, so it cannot "
                                          rf"be deleted; (give it a value instead|choose another option), "
                                          rf"{re.escape(key)}="):
        compose(command, [override])


def test_keys_handed_on_as_arguments_can_still_be_deleted():
    cfg = compose("train", ["~loss.terms.dice", "~loss.params.dice", "~trainer.log_every_n_steps"])
    assert dict(cfg.loss.terms) == {"ce": 1.0} and "log_every_n_steps" not in cfg.trainer
    with pytest.raises(ConfigError, match=r"unknown config key 'optim\.lrr' .*did you mean optim\.lr"):
        compose("train", ["~optim.lrr"])  # deleting a key that is not there: Hydra's error, with a suggestion


@pytest.mark.parametrize("command, override, key", [
    ("train", "optim.lr=${nope}", "optim.lr"), ("train", "optim.lr=${oc.env:SEGCLI_SURELY_UNSET}", "optim.lr"),
    ("train", "optim.lr=${foo:bar}", "optim.lr"), ("eval", "split=${nope}", "split"),
])
def test_an_interpolation_that_does_not_resolve_is_a_usage_error(command, override, key, monkeypatch):
    """`optim.lr=${nope}` passed composition and failed at the first read: exit 4 (InterpolationKeyError), in
    `--cfg` as in the run."""
    monkeypatch.delenv("SEGCLI_SURELY_UNSET", raising=False)
    with pytest.raises(ConfigError, match=rf"^{re.escape(key)}: cannot resolve its interpolation \(.+\); give a plain "
                                          rf"value, or \$\{{key\}} of a key that `segcli {command} --cfg` lists "
                                          r"\(a value really holding '\$\{' is written \\\$\{\)$"):
        compose(command, [override])
    assert compose("train", ["optim.lr=${seed}", "seed=3"]).optim.lr == 3  # one that resolves is fine


@pytest.mark.parametrize("override, key", [("+optim.lr=1", "optim.lr"), ("+experiment=camvid", "experiment")])
def test_adding_a_key_that_exists_says_to_drop_the_plus(override, key):
    """Hydra's "Could not append to config. An item is already at 'optim.lr'." (and "To override a value use
    'override experiment: camvid'", a defaults-list syntax) gave no command-line fix."""
    with pytest.raises(ConfigError, match=rf"^\+{re.escape(key)}: '{re.escape(key)}' is in the config already; set it "
                                          rf"without the plus, {re.escape(key)}="):
        compose("train", [override])


@pytest.mark.parametrize("command, override", [("eval", "model=m.onnx"), ("eval", "data=/data/x"),
                                               ("predict", "model=unet")])
def test_a_file_key_named_like_a_group_points_at_its_option(command, override):
    """eval's `model` and `data` are file paths, but Hydra reads model=... as a choice of the model group: the error
    was "unknown option 'm.onnx' for config group 'model'; choose from deeplabv3, ..." or "unknown config key
    'model' (did you mean model?)"."""
    key = override.split("=")[0]
    with pytest.raises(ConfigError, match=rf"^{re.escape(override)}: .*'segcli {command}' does not use; give it as "
                                          rf"the option --{key}$"):
        compose(command, [override])
    with pytest.raises(ConfigError, match=r"unknown option 'cee' for config group 'loss'"):
        compose("eval", ["loss=cee"])


def test_suggestions_ignore_case_and_never_repeat_the_word():
    from segcli.config import did_you_mean

    assert did_you_mean("OPTIM.LR", ["optim.lr", "optim.name"]).startswith(" (did you mean optim.lr")
    assert did_you_mean("model", ["model", "mode"]) == " (did you mean mode?)"


def test_a_broken_yaml_file_in_config_dir_is_named(tmp_path):
    """A syntax error in DIR/model/mine.yaml: "invalid configuration for 'segcli train': while parsing a flow
    sequence", naming neither the file nor the line."""
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "mine.yaml").write_text("arch: [unet\n")
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(tmp_path / 'model' / 'mine.yaml'))}: invalid YAML at "
                                          r"line \d+, column \d+ \(.*expected ',' or '\]'.*\); fix the file$"):
        compose("train", ["model=mine"], config_dir=tmp_path)


def test_a_config_dir_option_that_is_no_mapping_is_refused(tmp_path):
    """DIR/model/mine.yaml holding a YAML list composed, then failed in train: exit 4 "'list' object has no
    attribute 'get'"."""
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "mine.yaml").write_text("- unet\n- resnet18\n")
    with pytest.raises(ConfigError, match=r"mine\.yaml: holds no mapping of model settings"):
        compose("train", ["model=mine"], config_dir=tmp_path)


@pytest.mark.parametrize("args, bare", [(["train", "optim.lr", "1e-3"], "optim.lr"),
                                        (["train", "-m", "optim.lr", "1e-3,2e-3"], "optim.lr"),
                                        (["train", "augment.crop_size=[64,", "64]"], "64]"),
                                        (["train", "--resume", "RUN", "trainer.max_epochs", "5"], "trainer.max_epochs")])
def test_a_space_instead_of_equals_names_the_item_and_the_fix(tmp_path, args, bare):
    """`segcli train optim.lr 1e-3` was "Error parsing override 'optim.lr'" with no fix (and the sweep and resume
    paths dropped even the quoting hint)."""
    if "RUN" in args:  # a run to resume: only its config.yaml and last.ckpt's existence matter before the overrides
        run = tmp_path / "run"
        (run / "checkpoints").mkdir(parents=True)
        (run / "checkpoints" / "last.ckpt").write_bytes(b"")
        (run / "config.yaml").write_text("trainer:\n  max_epochs: 3\n")
        args = [str(run) if a == "RUN" else a for a in args]
    line = assert_error(run_cli(*args, cwd=tmp_path), 2)
    assert f"'{bare}' has no '=': write key=value with no space around '='" in line, line


def test_a_config_dir_option_missing_a_key_training_reads_is_one_line(tmp_path):
    """DIR/model/mini.yaml holding only `arch: fpn` composed, then training failed with exit 4 (ConfigAttributeError:
    Key 'encoder_weights' is not in struct); it is a usage error naming the key and the `defaults:` line that fixes it,
    and that line works."""
    assert run_in_process(["prepare", "synthetic", "--out", tmp_path / "syn", "--num-images", "4",  # the data only
                           "synthetic.height=64", "synthetic.width=64"]) == 0
    (tmp_path / "mine" / "model").mkdir(parents=True)
    (tmp_path / "mine" / "model" / "mini.yaml").write_text("arch: fpn\n")
    args = ("train", "--config-dir", tmp_path / "mine", "model=mini", f"data.root={tmp_path / 'syn'}",
            "trainer.max_epochs=1", "final_eval=false", "augment.crop_size=[64,64]")
    line = assert_error(run_cli(*args, "--run-dir", tmp_path / "r1", cwd=tmp_path), 2)
    assert "config key 'model." in line and "is missing" in line and "defaults: [<the packaged option>, _self_]" in line
    rest = "encoder_weights: null\nin_channels: 3\ncompile: false\nkwargs: {}\n"
    for key, text in (("arch", "encoder: resnet18\n" + rest), ("encoder", "arch: unet\n" + rest)):
        (tmp_path / "mine" / "model" / "mini.yaml").write_text(text)  # these two were exit 4 (KeyError)
        line = assert_error(run_cli(*args, "--run-dir", tmp_path / f"r-{key}", cwd=tmp_path), 2)
        assert f"config key 'model.{key}' is missing" in line and "defaults: [<the packaged option>, _self_]" in line
    (tmp_path / "mine" / "model" / "mini.yaml").write_text("defaults: [unet, _self_]\narch: fpn\n")
    assert_ok(run_cli(*args, "--run-dir", tmp_path / "r2", cwd=tmp_path))


@pytest.mark.parametrize("command, override, fix", [
    ("train", "hydra.run.dir=/tmp/x", "--run-dir DIR"), ("train", "hydra.job.chdir=true", "segcli train --cfg"),
    ("predict", "+hydra.verbose=true", "SEGCLI_DEBUG=1"), ("eval", "hydra.searchpath=[file:///x]", "--config-dir DIR"),
    ("train", "hydra/job_logging=disabled", "segcli train --cfg"),  # a hydra/ group choice: accepted, and ignored
    ("train", "hydra/launcher=basic", "segcli train --cfg")])
def test_hydra_settings_are_refused_not_ignored(command, override, fix):
    """Hydra composed `hydra.run.dir=...` and segcli read none of it: the run went to runs/train/<timestamp>."""
    with pytest.raises(ConfigError, match=re.escape(fix)) as err:
        compose(command, [override])
    assert str(err.value).startswith(f"{override}: segcli reads no hydra.* settings")


def test_an_experiment_without_its_package_line_is_refused_not_ignored(tmp_path):
    """DIR/experiment/fast.yaml without `# @package _global_` composed under `experiment.`: the run trained 30 epochs
    at lr 1e-3 instead of the file's 1 epoch at 0.5, without a word."""
    (tmp_path / "conf" / "experiment").mkdir(parents=True)
    (tmp_path / "conf" / "experiment" / "fast.yaml").write_text("trainer:\n  max_epochs: 1\noptim:\n  lr: 0.5\n")
    line = assert_error(run_cli("train", "--config-dir", tmp_path / "conf", "experiment=fast", "data.root=x", "--cfg",
                                cwd=tmp_path), 2)
    assert line.startswith(f"segcli: error: {tmp_path / 'conf' / 'experiment' / 'fast.yaml'}: ") and \
        "would be ignored" in line and "`# @package _global_` the file's first line" in line, line
    (tmp_path / "conf" / "experiment" / "fast.yaml").write_text("# @package _global_\ntrainer:\n  max_epochs: 1\n"
                                                                "optim:\n  lr: 0.5\n")
    cfg = compose("train", ["experiment=fast"], config_dir=tmp_path / "conf")
    assert cfg.trainer.max_epochs == 1 and cfg.optim.lr == 0.5


@pytest.mark.parametrize("name, text, key, close", [
    ("typo", "defaults: [unet, _self_]\narhc: fpn\n", "model.arhc", "model.arch"),
    ("nested", "defaults: [unet, _self_]\nmodel:\n  arch: fpn\n", "model.model", "model"),
    ("glob", "# @package _global_\ndefaults: [unet, _self_]\narch: fpn\n", "arch", "model.arch")])
def test_a_key_from_config_dir_that_nothing_reads_is_refused(tmp_path, name, text, key, close):
    """DIR/model/typo.yaml setting `arhc: fpn` trained a U-Net (the packaged arch) without a word, as +model.arhc=fpn
    would be refused; a `# @package _global_` model option failed in train with exit 4 (KeyError: 'arch')."""
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / f"{name}.yaml").write_text(text)
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(tmp_path / 'model' / f'{name}.yaml'))}: sets "
                                          rf"{re.escape(key)}, which 'segcli train' reads nowhere, so it would be "
                                          rf"ignored \(did you mean {re.escape(close)}\b"):
        compose("train", [f"model={name}"], config_dir=tmp_path)


def test_keys_of_config_dir_files_that_segcli_hands_on_are_kept(tmp_path):
    """Keys passed on as arguments (Lightning's Trainer, smp's architecture, a loss term and its parameters) may be
    added by a user's option files, as with +key=value; so may a key of another packaged option (sgd's momentum)."""
    for group, text in {"trainer": "defaults: [cpu, _self_]\ngradient_clip_val: 1.0\n",
                        "loss": "defaults: [ce_dice, _self_]\nterms:\n  focal: 0.5\nparams:\n  focal:\n    gamma: 2.0\n",
                        "optim": "defaults: [sgd, _self_]\nmomentum: 0.8\n",
                        "inference": "defaults: [slide, _self_]\noverlap: 0.25\n"}.items():
        (tmp_path / group).mkdir()
        (tmp_path / group / "mine.yaml").write_text(text)
    (tmp_path / "experiment").mkdir()
    (tmp_path / "experiment" / "all.yaml").write_text(
        "# @package _global_\ndefaults:\n  - override /trainer: mine\n  - override /loss: mine\n  - override /optim: mine\n"
        "model:\n  kwargs:\n    decoder_attention_type: scse\n")
    cfg = compose("train", ["experiment=all"], config_dir=tmp_path)
    assert cfg.trainer.gradient_clip_val == 1.0 and cfg.loss.terms.focal == 0.5 and cfg.loss.params.focal.gamma == 2.0
    assert cfg.optim.momentum == 0.8 and cfg.model.kwargs.decoder_attention_type == "scse"
    assert compose("eval", ["inference=mine"], config_dir=tmp_path).inference.overlap == 0.25


@pytest.mark.parametrize("name, fix", [("train.yaml", "experiment=NAME"), ("eval.yaml", "key=value overrides")])
def test_a_primary_config_in_config_dir_is_refused_not_ignored(tmp_path, name, fix):
    """DIR/train.yaml holding `seed: 5` was ignored without a word (Hydra keeps the packaged train.yaml)."""
    (tmp_path / name).write_text("seed: 5\n")
    with pytest.raises(ConfigError, match=rf"{re.escape(name)}: segcli composes its own {re.escape(name)}, so this "
                                          rf"file would be ignored; .*{re.escape(fix)}"):
        compose("train", [], config_dir=tmp_path)


def test_a_yml_option_in_config_dir_says_to_rename_it(tmp_path):
    """DIR/optim/fast.yml: "unknown option 'fast' for config group 'optim'; choose from adamw, sgd"."""
    (tmp_path / "optim").mkdir()
    (tmp_path / "optim" / "fast.yml").write_text("defaults: [adamw, _self_]\nlr: 0.5\n")
    with pytest.raises(ConfigError, match=r"fast\.yml: Hydra reads only \.yaml files, .* rename it to fast\.yaml$"):
        compose("train", ["optim=fast"], config_dir=tmp_path)


def test_a_mapping_given_to_a_group_says_to_set_its_keys():
    """optim={lr:0.1}: "unknown option '{'lr': 0.1}' for config group 'optim'"."""
    with pytest.raises(ConfigError, match=r"^optim=\{lr:0\.1\}: a config group takes the name of an option "
                                          r"\(adamw, sgd\), not a mapping; set its keys one by one, e\.g\. optim\.lr="):
        compose("train", ["optim={lr:0.1}"])


@pytest.mark.parametrize("override, message", [
    ("model.encoder=null", "model.encoder is None, not an encoder name; give one, e.g. model.encoder=resnet18"),
    ("model.arch=null", "model.arch is not set; choose one of unet, "),
    ("loss.terms=null", "loss.terms is None, not a mapping of term names to weights; choose a loss (loss=ce_dice)"),
])
def test_a_null_model_or_loss_setting_is_a_usage_error_naming_the_key(synthetic_data, tmp_path, override, message):
    """model.encoder=null and loss.terms=null were exit 4 (AttributeError, TypeError); model.arch=null said
    "unknown model.arch 'none'"."""
    proc = run_cli("train", f"data.root={synthetic_data}", "experiment=smoke", override, "--run-dir", tmp_path / "run",
                   cwd=tmp_path)
    assert assert_error(proc, 2).startswith(f"segcli: error: {message}")
    assert not (tmp_path / "run").exists()


def test_a_split_named_by_a_number_can_be_trained_and_validated_on(synthetic_data, tmp_path):
    """data.val_split=2022 (a split file's name): Hydra read the value as the number 2022, and train refused it with
    "no split '2022'; available: train, 2022"."""
    import shutil

    root = tmp_path / "data"
    shutil.copytree(synthetic_data, root)
    card = yaml.safe_load((root / "dataset.yaml").read_text())
    card["splits"]["2022"] = card["splits"].pop("val")
    (root / "dataset.yaml").write_text(yaml.safe_dump(card))
    proc = run_cli("train", f"data.root={root}", "experiment=smoke", "data.val_split=2022", "trainer.max_epochs=1",
                   "--run-dir", tmp_path / "run", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = yaml.safe_load((tmp_path / "run" / "eval" / "report.json").read_text())
    assert report["split"] == "2022" and report["num_images"] == len(card["splits"]["2022"])


@pytest.mark.parametrize("override, message", [
    ("early_stopping=null", "early_stopping=null: early_stopping is a mapping of settings; set its keys "
                            "(early_stopping.<name>=VALUE), or leave it as `segcli train --cfg` shows it"),
    ("ema=5", "ema=5: ema is a mapping of settings"),
    ("augment.noise=5", "augment.noise=5: augment.noise is a mapping of settings"),
    ("model.kwargs=5", "model.kwargs=5: model.kwargs is a mapping of settings"),
    ("loss.params=5", "loss.params=5: loss.params is a mapping of settings"),
    ("data.root=null", "data.root is not set; give the prepared dataset's folder, data.root=DIR"),
])
def test_a_section_given_a_value_and_a_null_data_root_are_usage_errors(synthetic_data, tmp_path, override, message):
    """Each was exit 4 from inside training ('int' object has no attribute 'get', TypeError on None)."""
    root = [] if override.startswith("data.root") else [f"data.root={synthetic_data}"]
    proc = run_cli("train", *root, "experiment=smoke", override, "--run-dir", tmp_path / "run", cwd=tmp_path)
    assert assert_error(proc, 2).startswith(f"segcli: error: {message}")
    assert not (tmp_path / "run").exists()


def test_a_nested_section_may_be_null():
    cfg = compose("train", ["augment.noise=null", "model.kwargs=null"])
    assert cfg.augment.noise is None and cfg.model.kwargs is None


@pytest.mark.parametrize("fmt, args", [("synthetic", []), ("folder", ["--images", "i", "--masks", "m"])])
def test_an_unknown_prepare_key_points_at_a_cfg_that_runs(fmt, args, tmp_path):
    """It said 'see `segcli prepare --cfg`', which is no command ('No such option: --cfg')."""
    line = assert_error(run_cli("prepare", fmt, *args, "--out", str(tmp_path / "o"), "foo=1", cwd=tmp_path), 2)
    assert f"unknown config key 'foo' for 'segcli prepare {fmt}'" in line
    assert f"see `segcli prepare {fmt} --cfg` for all keys" in line
    assert_ok(run_cli("prepare", fmt, *args, "--cfg", cwd=tmp_path))


def test_naming_a_schedule_or_optimiser_selects_its_preset():
    """`sched.name=onecycle` kept poly's keys: warmup_steps=5 and power=2 were accepted and read by nothing (the lr
    curve was onecycle's either way); `optim.name=sgd` ran SGD without the sgd preset's momentum and nesterov, and
    optim.momentum=... was then refused as unknown. The name now selects the preset, as `sched=onecycle` does."""
    from omegaconf import OmegaConf

    from segcli.config import compose
    from segcli.errors import ConfigError

    for key, name in (("sched", "onecycle"), ("sched", "cosine"), ("optim", "sgd")):
        by_name = compose("train", ["experiment=camvid", f"{key}.name={name}"])
        by_group = compose("train", ["experiment=camvid", f"{key}={name}"])
        assert OmegaConf.to_container(by_name[key]) == OmegaConf.to_container(by_group[key]), key
    assert compose("train", ["optim.name=sgd", "optim.momentum=0.5"]).optim.momentum == 0.5
    with pytest.raises(ConfigError, match="sched.warmup_steps"):
        compose("train", ["sched.name=onecycle", "sched.warmup_steps=5"])
    with pytest.raises(ConfigError, match="sched=poly and sched.name=cosine name two different sched presets"):
        compose("train", ["sched=poly", "sched.name=cosine"])
    assert compose("train", ["sched=cosine", "sched.name=cosine"]).sched.name == "cosine"


def test_a_switch_given_as_an_interpolation_is_checked_by_its_value(monkeypatch):
    """`channels_last=${final_eval}` and `final_eval=${oc.env:FLAG}` were refused by their text ("give true or
    false"), though numbers and paths take interpolations. The value they give is checked; an environment
    variable's text 'false' becomes false (the text would test as on)."""
    from segcli.config import compose
    from segcli.errors import ConfigError

    assert compose("train", ["final_eval=false", "channels_last=${final_eval}"]).channels_last is False
    monkeypatch.setenv("SEGCLI_TEST_FLAG", "False")
    cfg = compose("train", ["final_eval=${oc.env:SEGCLI_TEST_FLAG}"])
    assert cfg.final_eval is False
    monkeypatch.setenv("SEGCLI_TEST_FLAG", "maybe")
    with pytest.raises(ConfigError, match=r"final_eval='\$\{oc.env:SEGCLI_TEST_FLAG\}' gives 'maybe': give true or "
                                          r"false"):
        compose("train", ["final_eval=${oc.env:SEGCLI_TEST_FLAG}"])
    with pytest.raises(ConfigError, match="final_eval='maybe': give true or false"):
        compose("train", ["final_eval=maybe"])


def test_adding_a_key_the_config_has_says_to_drop_the_plus():
    """`+model.kwargs={encoder_depth:4}` was told "'segcli train' reads no such key", of a key it reads."""
    from segcli.config import compose
    from segcli.errors import ConfigError

    with pytest.raises(ConfigError, match=r"^\+model.kwargs: 'model.kwargs' is in the config already; set it without "
                                          r"the plus, model.kwargs=VALUE$"):
        compose("train", ["+model.kwargs={encoder_depth:4}"])
    with pytest.raises(ConfigError, match="reads no such key"):  # sgd's key, not adamw's: not in this config
        compose("train", ["+optim.momentum=0.9"])
    assert compose("train", ["++model.kwargs={encoder_depth:4}"]).model.kwargs.encoder_depth == 4
