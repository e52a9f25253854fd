"""Find conf/, compose a command's config from it with Hydra, validate overrides.

`compose("train", ["model.arch=fpn"], values={"run_dir": "runs/x"})` returns an
OmegaConf DictConfig. Unknown keys, groups and options fail with a one-line
ConfigError that suggests the closest valid names.
"""

from __future__ import annotations

import difflib
import functools
import re
from pathlib import Path
from typing import Any, Callable

from segcli.errors import ConfigError, first_line


def conf_dir() -> Path:
    """The packaged conf/: inside the wheel (segcli/conf) or at the source tree's root."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "conf", here.parents[1] / "conf"):
        if (candidate / "train.yaml").is_file():
            return candidate
    raise ConfigError(f"segcli's conf/ directory is missing next to {here}; reinstall segcli")


def _groups(dirs: list[Path]) -> dict[str, list[str]]:
    """Config group → sorted option names, over the search directories."""
    groups: dict[str, set[str]] = {}
    for root in dirs:
        for yaml in root.glob("*/*.yaml"):
            groups.setdefault(yaml.parent.name, set()).add(yaml.stem)
    return {g: sorted(o) for g, o in groups.items()}


def did_you_mean(word: str, choices: list[str]) -> str:
    """' (did you mean a, b?)' for the closest choices, or '' when none is close. Case is ignored (OPTIM.LR →
    optim.lr); the word itself is never suggested."""
    lowered = {c.lower(): c for c in reversed(choices) if c != word}
    close = [lowered[c] for c in difflib.get_close_matches(word.lower(), list(lowered), n=3, cutoff=0.5)]
    return f" (did you mean {listed(close)}?)" if close else ""


def listed(names) -> str:
    """'a, b, c', a name holding a comma quoted ('road, main'), so that it reads as one name."""
    return ", ".join(repr(name) if "," in name else name for name in names)


def _flat_keys(node: Any, prefix: str = "") -> list[str]:
    from omegaconf import DictConfig

    keys = []
    if isinstance(node, DictConfig):
        for k in node.keys():
            full = f"{prefix}{k}"
            keys.append(full)
            keys.extend(_flat_keys(node._get_node(k), full + "."))
    return keys


_HYDRA_FUNCTION = re.compile(r"\s*(range|choice|interval|glob|sort|shuffle|tag|extend_list|int|float|str|bool|json_str)"
                             r"\s*\(")


def _single_quoted(value: str) -> str:
    """'value' in Hydra's grammar: in a quoted value only a quote, and backslashes just before one, need a
    backslash."""
    body = re.sub(r"(\\*)(')", lambda m: m.group(1) * 2 + "\\'", value)
    body = re.sub(r"(\\+)$", lambda m: m.group(1) * 2, body)
    return f"'{body}'"


def literal(text: str) -> str:
    """`text` (a path) as a config value OmegaConf keeps as it is: its `${` escaped, so that a folder named `a${b}`
    or one under it is not read as an interpolation (exit 4: 'Interpolation key 'b' not found')."""
    return text.replace("${", "\\${")


def _literals(value):
    """An option's value with literal() applied to each string in it (predict's inputs, a repeated --ckpt)."""
    if isinstance(value, (list, tuple)):
        return [_literals(v) for v in value]
    if isinstance(value, Path):
        value = str(value.expanduser())  # --ckpt=~/x: bash leaves ~
    return literal(value) if isinstance(value, str) else value


def quote_values(overrides: list[str]) -> list[str]:
    """`overrides` with the value of each `key=value` that Hydra's grammar cannot parse as typed quoted, when
    quoting makes it parse: paths with non-ASCII letters, ~, parentheses, brackets, #, &, = or ' in them
    (`data.root=~/Bilder/Straße (2)` → `data.root='~/Bilder/Straße (2)'`). Overrides that parse stay as they are,
    so sweeps (`a,b`), lists and Hydra's functions keep their meaning; a malformed list (`[fpn`) or function call
    (`range(1,4`) stays an error rather than becoming a string."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()

    def parses(item: str) -> bool:
        try:
            parser.parse_overrides([item])
        except Exception:
            return False
        return True

    def typed(part: str) -> bool:  # Hydra reads it as a number, a bool, a list or a mapping, not as text
        try:
            return not isinstance(parser.parse_overrides([f"k={part}"])[0].value(), str)
        except Exception:
            return False

    out = []
    for item in overrides:
        key, sep, value = item.partition("=")
        if (not parses(item) and sep and value and value[0] not in "'\"[{" and not _HYDRA_FUNCTION.match(value)
                and re.fullmatch(r"[+~]{0,2}[\w.@/-]+", key)):
            # each of a sweep's values (a,b) quoted on its own: one pair of quotes made the sweep one value
            quoted = f"{key}=" + ",".join(_single_quoted(part) for part in value.split(","))
            if parses(quoted):
                item = quoted
        elif (sep and key.lstrip("+~") in PATH_KEYS and value and value[0] not in "'\"" and value != "null"
              and not _HYDRA_FUNCTION.match(value)
              and not (value[0] == "[" and key.lstrip("+~") in PATH_LIST_KEYS)):
            parts = [value] if value[0] in "[{" else value.split(",")
            if any(typed(part) for part in parts):  # data.root=2024.10 was the float 2024.1: a folder not there
                item = f"{key}=" + ",".join(_single_quoted(part) for part in parts)
        out.append(item)
    return out


# keys whose value is a path: kept as the text given, where Hydra would read it as a number, a bool or a list
# (data.root=2024.10 was 2024.1, and a float where a path belongs failed as an internal error, exit 4)
PATH_KEYS = frozenset(("data.root", "run_dir", "out", "src", "images", "masks", "list", "json", "predictions", "data",
                       "compare", "verify_images", "ckpt", "model"))
PATH_LIST_KEYS = frozenset(("ckpt", "model"))  # an ensemble: a list of paths


@functools.lru_cache(maxsize=None)
def _primary(command: str) -> tuple[dict[str, Any], set[str]]:
    """({config group in the defaults list of conf/<command>.yaml: its default option}, its other top-level keys);
    read once per process (every compose asks, twice with --config-dir). Callers do not modify the result."""
    import yaml

    primary = yaml.safe_load((conf_dir() / f"{command}.yaml").read_text(encoding="utf-8")) or {}
    defaults = [next(iter(d.items())) for d in primary.get("defaults") or [] if isinstance(d, dict) and d]
    return {group.split("@")[0].split(" ")[-1]: option for group, option in defaults}, set(primary)


def unparsable(overrides: list[str], err: Exception) -> ConfigError:
    """Hydra's grammar error for `overrides` as one line with the likely fix: an item without '=' (`optim.lr 1e-3`,
    a space instead of =, or a list value split at its space), else quoting."""
    bare = next((o for o in overrides if "=" not in o and not o.startswith("~")), None)
    fix = (f"'{bare}' has no '=': write key=value with no space around '=' (e.g. optim.lr=1e-3), and quote a value "
           "holding spaces: 'augment.crop_size=[64, 64]'") if bare else "quote values with spaces or commas: key='a b'"
    return ConfigError(f"cannot parse overrides {overrides}: {first_line(err)}; {fix}")


_HYDRA_FIX = {  # what segcli offers instead of the hydra.* key people know from Hydra apps
    "hydra.run.dir": "give the run directory as --run-dir DIR",
    "hydra.sweep.dir": "give the sweep directory as -m ... --run-dir DIR",
    "hydra.searchpath": "add your own config options with --config-dir DIR",
    "hydra.verbose": "SEGCLI_DEBUG=1 shows tracebacks and library messages",
    "": "see `segcli {command} --cfg` for the keys segcli reads, --run-dir and --config-dir for paths",
}


NAMED_GROUPS = ("optim", "sched")  # groups whose options each set `name` to the option's own name


def named_preset(key: str, value, groups: dict[str, list[str]] | None = None) -> str | None:
    """The config group whose preset `key=value` names (`sched.name=cosine` → 'sched', as `sched=cosine`), None for
    any other override; `groups`: the options to look in (default: the packaged conf/)."""
    group = key.removesuffix(".name")
    if group not in NAMED_GROUPS or key != f"{group}.name":
        return None
    options = (groups if groups is not None else _groups([conf_dir()])).get(group, ())
    return group if str(value) in options else None


def _names_as_options(overrides: list[str], groups: dict[str, list[str]]) -> list[str]:
    """`sched.name=cosine` as `sched=cosine`: the name alone kept the preset's other keys (poly's power, adamw's
    betas), which the new schedule or optimiser reads not (onecycle ignored warmup_steps and power, sgd ran without
    the sgd preset's momentum and nesterov, which could then not even be set), without a word. Given beside a choice
    of the group (`sched=poly sched.name=cosine`), the two must agree."""
    chosen = {o.partition("=")[0]: o.partition("=")[2] for o in overrides if o.partition("=")[0] in NAMED_GROUPS}
    out = []
    for override in overrides:
        key, _, value = override.partition("=")
        group = named_preset(key, value, groups)
        if group is not None:
            if group in chosen and chosen[group] != value:
                raise ConfigError(f"{group}={chosen[group]} and {override} name two different {group} presets; give "
                                  f"one: {group}={value}")
            if group not in chosen:
                out.append(f"{group}={value}")
                chosen[group] = value
            continue
        out.append(override)
    return out


def _check_groups(overrides: list[str], groups: dict[str, list[str]], command: str = "") -> list:
    """Parse `overrides` (Hydra's Override objects, one per string, returned for the later checks) and check the
    options of config groups they select. A key of `command` named like a group it does not use (eval's and
    predict's `model`, eval's `data`: file paths) cannot be set as key=value, as Hydra reads that as a group choice."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except Exception as err:  # hydra's grammar errors are multi-line
        raise unparsable(overrides, err) from None
    own, keys = _primary(command) if command else (set(groups), set())
    for ov in parsed:
        key = ov.key_or_group
        if key.lstrip("+~") == "hydra" or key.lstrip("+~").startswith(("hydra.", "hydra/")):  # hydra/launcher=...
            raise ConfigError(f"{ov.input_line}: segcli reads no hydra.* settings (it composes conf/ with Hydra's "
                              f"compose API), so this would be ignored; {_HYDRA_FIX.get(key, _HYDRA_FIX['']).format(command=command or 'COMMAND')}")
        if key in groups and key not in own and key in keys and not ov.is_delete():
            raise ConfigError(f"{ov.input_line}: Hydra reads {key}=... as a choice of the config group '{key}', which "
                              f"'segcli {command}' does not use; give it as the option --{key.replace('_', '-')}")
        head = key.lstrip("+~").split(".")[0]
        if "." in key and head in groups and head not in own and head in keys:  # eval's data.root=DIR
            raise ConfigError(f"{ov.input_line}: 'segcli {command}' has no {head}.* settings: its {head} is a path, "
                              f"given as the option --{head.replace('_', '-')}")
        if key in groups and not ov.is_delete():
            value = ov.value()
            if isinstance(value, dict):  # optim={lr:0.1}: Hydra reads a group's value as the name of an option
                first = next(iter(value), "KEY")
                raise ConfigError(f"{ov.input_line}: a config group takes the name of an option ({', '.join(groups[key])}), "
                                  f"not a mapping; set its keys one by one, e.g. {key}.{first}=...")
            for option in value if isinstance(value, list) else [value]:
                if str(option) not in groups[key]:
                    raise ConfigError(
                        f"unknown option '{option}' for config group '{key}'{did_you_mean(str(option), groups[key])}; "
                        f"choose from {', '.join(groups[key])}"
                    )
    return parsed


# Where `+key=value` may add a key that segcli does not list: dicts handed on as keyword arguments (Lightning's
# Trainer, smp's architecture, a loss term's class) and the loss's term → weight dict (a term the preset lacks:
# +loss.terms.focal=0.5). Anywhere else an added key would be read by nothing.
ADDABLE = {"train": ("trainer.", "model.kwargs.", "loss.params.", "loss.terms.")}
_TAKEN_BY = {"trainer": "lightning.Trainer", "model": "the smp architecture", "loss": "segcli's loss"}  # ADDABLE's


def _check_added(command: str, parsed: list, groups: dict, listed: Callable[[str], bool]) -> None:
    """Refuse `+key=value` (and `++key=value` for a key `listed` says the config lacks) outside ADDABLE: the key
    would be composed in and then ignored without a word. parsed: the overrides as _check_groups parsed them."""
    for ov in parsed:
        key = ov.key_or_group
        if not (ov.is_add() or ov.is_force_add()) or key in groups:
            continue
        if key.startswith(ADDABLE.get(command, ())) or (ov.is_force_add() and listed(key)):
            continue
        where = ", ".join(f"+{p}<name>" for p in ADDABLE.get(command, ()))
        plus = "++" if ov.is_force_add() else "+"
        if listed(key):  # +model.kwargs={...}: was "reads no such key", of a key it reads
            raise ConfigError(f"{plus}{key}: '{key}' is in the config already; set it without the plus, {key}=VALUE")
        hint = f" (keys can be added only as {where})" if where else ""
        raise ConfigError(f"{plus}{key}: 'segcli {command}' reads no such key, so it would be ignored; see "
                          f"`segcli {command} --cfg` for the keys{hint}")


def _check_deleted(command: str, parsed: list, groups: dict) -> None:
    """Refuse `~key` outside ADDABLE: the command reads every key it lists (and every group it composes), and would
    fail on one deleted. parsed: the overrides as _check_groups parsed them."""
    for ov in parsed:
        key = ov.key_or_group
        if not ov.is_delete() or key.startswith(ADDABLE.get(command, ())):
            continue
        fix = f"choose another option, {key}=NAME" if key in groups else f"give it a value instead, {key}=VALUE"
        where = ", ".join(f"~{p}<name>" for p in ADDABLE.get(command, ()))
        raise ConfigError(f"~{key}: 'segcli {command}' reads this key, so it cannot be deleted; {fix} (see "
                          f"`segcli {command} --cfg`)" + (f"; keys can be deleted only as {where}" if where else ""))


def _check_resolves(command: str, cfg) -> None:
    """Every ${...} interpolation in `cfg` must resolve (optim.lr=${nope}, ${oc.env:UNSET}): otherwise the first
    read of the key fails deep inside the command."""
    from omegaconf import OmegaConf
    from omegaconf.errors import InterpolationResolutionError

    try:
        OmegaConf.to_container(cfg, resolve=True)
    except InterpolationResolutionError as err:
        key, why = getattr(err, "full_key", None) or "?", first_line(getattr(err, "msg", None) or err)
        raise ConfigError(f"{key}: cannot resolve its interpolation ({why}); "
                          f"give a plain value, or ${{key}} of a key that `segcli {command} --cfg` lists (a value "
                          r"really holding '${' is written \${)") from None


def _check_user_options(command: str, cfg, parsed: list, config_dir: Path) -> None:
    """An option from --config-dir (DIR/model/mine.yaml) must be a mapping of the group's settings: a YAML list or a
    single value there would fail the command's first read of the group. parsed: the overrides as _check_groups
    parsed them."""
    from omegaconf import DictConfig

    own = _primary(command)[0]
    for ov in parsed:
        key = ov.key_or_group
        if key not in own or ov.is_delete() or ov.is_sweep_override() or key not in cfg:
            continue  # (experiment is a package of global overrides: not under its own key)
        path = config_dir / key / f"{ov.value()}.yaml"
        if path.is_file() and not isinstance(cfg._get_node(key), DictConfig):
            raise ConfigError(f"{path}: holds no mapping of {key} settings (key: value lines); see "
                              f"{conf_dir() / key / f'{own[key]}.yaml'} for one")


@functools.lru_cache(maxsize=None)
def _packaged_keys(command: str) -> dict[str, bool]:
    """Every key that conf/<command>.yaml or an option of a group it composes sets ('optim.momentum'; an experiment's
    keys at the top, as `# @package _global_` puts them) → whether its value is a mapping of listed keys."""
    import yaml

    keys: dict[str, bool] = {}

    def walk(node: Any, prefix: str) -> None:
        for key, value in node.items():
            if key == "defaults" and isinstance(value, list):
                continue
            full = f"{prefix}{key}"
            keys[full] = keys.get(full, False) or bool(isinstance(value, dict) and value)
            if isinstance(value, dict):
                walk(value, full + ".")

    walk(yaml.safe_load((conf_dir() / f"{command}.yaml").read_text(encoding="utf-8")) or {}, "")
    for group in _primary(command)[0]:
        keys[group] = True
        for path in sorted((conf_dir() / group).glob("*.yaml")):
            text = path.read_text(encoding="utf-8")
            node = yaml.safe_load(text)
            if isinstance(node, dict):
                walk(node, "" if "@package _global_" in text else f"{group}.")
    return keys


def read_nowhere(key: str, known: dict[str, bool], addable: tuple[str, ...]) -> bool:
    """Whether `key` is one the command does not read: not set by any packaged config (`known`, _packaged_keys),
    not under a prefix where keys may be added (ADDABLE), and not inside a value that is no mapping of listed keys
    (there its parent is the one to report)."""
    parent = key.rpartition(".")[0]
    return key not in known and not key.startswith(addable) and (not parent or bool(known.get(parent)))


def holds_settings(key: str, value: Any) -> bool:
    """Whether `value` may stand at `key`, a section read as a mapping of settings: a mapping, or null when the
    section is nested (augment.noise: null is 'off'; a null top-level section fails deep inside the command)."""
    from omegaconf import DictConfig

    return isinstance(value, (dict, DictConfig)) or (value is None and "." in key)


def _check_unread(command: str, cfg, parsed: list, config_dir: Path) -> None:
    """A key that a file under --config-dir adds (a typo, `model:` nested once more, an experiment without its
    `# @package _global_` line, whose settings all land under `experiment.`) is read by nothing: the run would go on
    with the packaged values. As `+key=value`, such a key is refused, but where ADDABLE allows added keys. parsed: the
    overrides as _check_groups parsed them."""
    known = _packaged_keys(command)
    chosen = {ov.key_or_group: ov.value() for ov in parsed if not ov.is_delete() and not ov.is_sweep_override()}
    for key in _flat_keys(cfg):
        if not read_nowhere(key, known, ADDABLE.get(command, ())):
            continue
        top = key.split(".")[0]
        files = {group: config_dir / group / f"{option}.yaml" for group, option in chosen.items()
                 if isinstance(option, str) and (config_dir / group / f"{option}.yaml").is_file()}
        path = files.get(top, files.get("experiment", next(iter(files.values())) if len(files) == 1 else None))
        if top == "experiment" and path is not None and "@package _global_" not in path.read_text(encoding="utf-8"):
            raise ConfigError(f"{path}: its settings were composed under 'experiment.' and would be ignored; make "
                              f"`# @package _global_` the file's first line (as in {conf_dir() / 'experiment' / 'smoke.yaml'})")
        where = path or f"a file under --config-dir {config_dir}"
        raise ConfigError(f"{where}: sets {key}, which 'segcli {command}' reads nowhere, so it would be ignored"
                          f"{did_you_mean(key, list(known))}; fix or remove it (`segcli {command} --cfg` lists the keys)")


def _check_shadowing(config_dir: Path) -> None:
    """A user's DIR/<group>/<name>.yaml must not share its name with a packaged option, nor DIR/<command>.yaml with
    a packaged primary config (Hydra keeps the packaged file and ignores the user's without a word); and Hydra reads
    only .yaml files, so a DIR/<group>/<name>.yml of a packaged group would be 'unknown option'."""
    for path in sorted(config_dir.glob("*/*.yaml")):
        if (conf_dir() / path.parent.name / path.name).is_file():
            raise ConfigError(f"{path}: a packaged {path.parent.name} option is named '{path.stem}' too, and it would "
                              f"be used instead of yours; rename your file (e.g. {path.stem}_mine.yaml)")
    for path in sorted(config_dir.glob("*.yaml")):
        if (conf_dir() / path.name).is_file():
            fix = (f"put your settings into {config_dir / 'experiment' / 'NAME.yaml'} with `# @package _global_` as its "
                   "first line and give experiment=NAME" if path.stem == "train" else
                   f"give your settings as key=value overrides of `segcli {path.stem}`")
            raise ConfigError(f"{path}: segcli composes its own {path.name}, so this file would be ignored; {fix}")
    for path in sorted(p for p in config_dir.glob("*/*.yml") if (conf_dir() / p.parent.name).is_dir()):
        raise ConfigError(f"{path}: Hydra reads only .yaml files, so option '{path.stem}' would be unknown; rename it "
                          f"to {path.stem}.yaml")


def _chosen_files(config_dir: Path, parsed: list) -> list[Path]:
    """The files under --config-dir that the command line chooses (group=NAME, each value of a sweep)."""
    files = []
    for ov in parsed:
        if ov.is_delete():
            continue
        names = list(ov.sweep_string_iterator()) if ov.is_sweep_override() else [ov.value()]
        files += [config_dir / ov.key_or_group / f"{name}.yaml" for name in names if isinstance(name, str)]
    return [path for path in files if path.is_file()]


def _check_text(paths: list[Path]) -> None:
    """Each of the user's config files as Hydra reads them: UTF-8 ('utf-8' codec can't decode …, naming no file, was
    the error), and no byte-order mark before a `# @package` line (an editor's 'UTF-8 with BOM'): Hydra then does not
    see the line, and an experiment's settings landed under `experiment.`, refused as keys read nowhere."""
    for path in paths:
        try:
            data = path.read_bytes()
        except OSError as err:
            raise ConfigError(f"{path}: cannot read it ({err.strerror}); check its permissions") from None
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as err:
            raise ConfigError(f"{path}: not UTF-8 text (byte 0x{data[err.start]:02x} at offset {err.start}); save it "
                              "as UTF-8") from None
        if text.startswith("\ufeff") and "@package" in text:
            raise ConfigError(f"{path}: it starts with a byte-order mark ('UTF-8 with BOM'), which hides its "
                              "`# @package` line from Hydra; save it as UTF-8 without BOM")


def _say_option_wins(command: str, key: str, value, parsed) -> None:
    """A note when an override sets a key that an option sets too (`--split val split=train`): the option's value is
    used, and the override was dropped without a word."""
    from segcli.console import first_process, info

    given = next((ov.input_line for ov in parsed if ov.key_or_group == key), None)
    if given is not None and first_process():
        info(f"{command}: note: {given} and an option both set {key}; the option's value ({value}) is used")


def compose(command: str, overrides: list[str], values: dict | None = None, config_dir: Path | None = None):
    """Compose conf/<command>.yaml with `overrides`, then set `values` (CLI options; None = not given).

    `config_dir` adds group options (e.g. DIR/model/mine.yaml, DIR/experiment/mine.yaml) to the packaged
    conf/; a file named like a packaged option is refused (Hydra would silently keep the packaged one).
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf, open_dict

    search = [conf_dir()]
    if config_dir is not None:
        config_dir = Path(config_dir).expanduser().resolve()
        if not config_dir.is_dir():
            raise ConfigError(f"--config-dir {config_dir} is not a directory")
        search.insert(0, config_dir)
        _check_shadowing(config_dir)
    overrides = quote_values(list(overrides))
    groups = _groups(search)
    overrides = _names_as_options(overrides, groups)
    parsed = _check_groups(overrides, groups, command)
    if config_dir is not None:
        _check_text(_chosen_files(config_dir, parsed))

    extra = [f"hydra.searchpath=[file://{config_dir}]"] if config_dir else []
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(search[-1]), version_base="1.3", job_name=f"segcli-{command}"):
        try:
            cfg = hydra_compose(config_name=command, overrides=overrides + extra)
        except Exception as err:
            if config_dir is not None and "codec can't decode" in str(err):  # a file another one's defaults name
                _check_text(sorted(config_dir.rglob("*.yaml")))
            fmt = (values or {}).get("format") if command == "prepare" else None
            shown = f"{command} {fmt}" if fmt else command
            raise _explain(err, command, overrides, extra, hydra_compose, shown) from None
        _check_switches(command, overrides, parsed, groups, extra, hydra_compose, cfg)
        plain: list = []  # the config without the added keys, composed when first asked for

        def listed(key: str) -> bool:  # a forced add may name a listed key; a plain add should not
            if not plain:
                kept = [o for o, ov in zip(overrides, parsed) if not (ov.is_add() or ov.is_force_add())]
                plain.append(hydra_compose(config_name=command, overrides=kept + extra))
            absent = object()
            return OmegaConf.select(plain[0], key, default=absent) is not absent

        _check_added(command, parsed, groups, listed)
        _check_deleted(command, parsed, groups)
        if config_dir is not None:
            _check_user_options(command, cfg, parsed, config_dir)
            _check_unread(command, cfg, parsed, config_dir)
    if values:
        with open_dict(cfg):
            for key, value in values.items():
                if value is not None:
                    _say_option_wins(command, key, value, parsed)
                    value = _literals(value)  # an option's value (or each of a repeated option's) is no interpolation
                    OmegaConf.update(cfg, key, value, merge=False)
    _check_resolves(command, cfg)
    _check_mappings(command, cfg)
    OmegaConf.set_struct(cfg, True)
    return cfg


def _check_mappings(command: str, cfg) -> None:
    """A section the command reads as a mapping of settings (early_stopping, ema, augment.noise, model.kwargs) must
    stay one: `ema=5` or `early_stopping=null` failed deep inside training (exit 4). A nested section may be null
    (augment.noise: null is 'off'); a top-level one may not."""
    from omegaconf import OmegaConf

    absent = object()
    for key, mapping in _packaged_keys(command).items():
        if not mapping:
            continue
        value = OmegaConf.select(cfg, key, default=absent)
        if value is absent or holds_settings(key, value):
            continue
        given = "null" if value is None else repr(value)
        raise ConfigError(f"{key}={given}: {key} is a mapping of settings; set its keys ({key}.<name>=VALUE), or "
                          f"leave it as `segcli {command} --cfg` shows it")


_SWITCH_WORDS = {"trainer.deterministic": ("warn",)}  # switches that take a word too (Lightning's "warn")


def _check_switches(command: str, overrides: list[str], parsed: list, groups: dict, extra: list[str],
                    hydra_compose, cfg=None) -> None:
    """An override of a true/false setting must be true or false: Hydra keeps `legend=maybe` or `half=1` as given,
    and the command would test it for truth (anything but false, 0 or empty counts as on). parsed: `overrides` as
    _check_groups parsed them. An interpolation (`${final_eval}`) is checked by what it gives in `cfg`, the composed
    config (its text was refused); one that gives the text 'true' or 'false' (an environment variable) is set to
    that value, as the text would count as on even when 'false'."""
    from omegaconf import OmegaConf

    given = [(ov.key_or_group, ov.value()) for ov in parsed
             if ov.key_or_group not in groups and not ov.is_sweep_override() and not ov.is_delete()]
    given = [(key, value) for key, value in given if isinstance(value, (str, int, float)) and not isinstance(value, bool)]
    if not given:
        return
    base = hydra_compose(config_name=command, overrides=[o for o in overrides if o.split("=")[0] in groups] + extra)
    for key, value in given:
        if not isinstance(OmegaConf.select(base, key, default=None), bool) \
                or str(value).lower() in _SWITCH_WORDS.get(key, ()):
            continue
        words = ", ".join((*_SWITCH_WORDS.get(key, ()), "true"))
        if cfg is not None and isinstance(value, str) and "${" in value:
            try:
                resolved = OmegaConf.select(cfg, key, default=None)
            except Exception:  # noqa: BLE001 - an interpolation that does not resolve: _check_resolves names it
                continue
            if isinstance(resolved, bool) or str(resolved).lower() in _SWITCH_WORDS.get(key, ()):
                continue
            if str(resolved).strip().lower() in ("true", "false"):  # ${oc.env:FLAG}: text, which tests as on
                OmegaConf.update(cfg, key, str(resolved).strip().lower() == "true", merge=False)
                continue
            raise ConfigError(f"{key}={value!r} gives {resolved!r}: give {words} or false (segcli {command})")
        raise ConfigError(f"{key}={value!r}: give {words} or false (segcli {command})")


def _explain(err: Exception, command: str, overrides: list[str], extra: list[str], hydra_compose,
             shown: str = "") -> ConfigError:
    """Turn Hydra's multi-line composition error into one line with suggestions."""
    import re

    import yaml
    from omegaconf import DictConfig, OmegaConf

    mark = getattr(err, "problem_mark", None)
    if isinstance(err, yaml.MarkedYAMLError) and mark is not None:  # a broken file under --config-dir
        return ConfigError(f"{mark.name}: invalid YAML at line {mark.line + 1}, column {mark.column + 1} "
                           f"({', '.join(t for t in (err.context, err.problem) if t)}); fix the file")
    text = str(err)
    match = re.search(r"Could not append to config\. An item is already at '([^']+)'", text) \
        or re.search(r"Multiple values for ([\w.@/-]+)\.", text)
    if match:
        key = match.group(1)
        return ConfigError(f"+{key}: '{key}' is in the config already; set it without the plus, {key}=VALUE")
    match = re.search(r"Could not override '([^']+)'", text) or re.search(r"Key '([^']+)' is not in struct", text) \
        or re.search(r"Could not delete from config\. '([^']+)' does not exist", text)
    if match:
        key = match.group(1)
        # Suggest from the config composed with only the group-selecting overrides that did work.
        try:
            base = hydra_compose(config_name=command, overrides=[o for o in overrides if "." not in o.split("=")[0]] + extra)
        except Exception:
            base = hydra_compose(config_name=command, overrides=extra)
        keys = _flat_keys(base)
        if text.startswith("Could not delete") and key in keys:  # Hydra takes a null value for no key
            return ConfigError(f"~{key}: its value is null, which Hydra cannot delete; leave it out (null is its "
                               f"value already)")
        merged = any(o.partition("=")[0] == key and o.partition("=")[2].lstrip().startswith("{") for o in overrides)
        if merged and isinstance(OmegaConf.select(base, key, default=None), DictConfig):  # loss.terms={focal:1.0}
            return ConfigError(f"{key}={{...}}: a mapping is merged into the one already at '{key}' (its other "
                               f"entries stay), and names it lacks cannot be added that way; set entries one by one: "
                               f"{key}.NAME=VALUE, or +{key}.NAME=VALUE for a new one")
        close = did_you_mean(key, keys)
        arg = next((o for o in overrides if o.partition("=")[0] == key and o.partition("=")[2]), None)
        path = (f"; if {arg} is an input (a file that is not there, or a pattern matching none), write it as ./{arg}"
                if command == "predict" and arg and any(c in arg.partition("=")[2] for c in "/*?[\\") else "")
        return ConfigError(
            f"unknown config key '{key}' for 'segcli {shown or command}'{close}; see `segcli {shown or command} --cfg` "
            "for all keys"
            + (f", or add one with +{key}=... if {_TAKEN_BY[key.split('.')[0]]} takes it"
               if key.startswith(ADDABLE.get(command, ())) else "") + path
        )
    first = next((line for line in text.splitlines() if line.strip()), text)
    return ConfigError(f"invalid configuration for 'segcli {command}': {first}")


def to_yaml(cfg) -> str:
    """The config resolved, as YAML that OmegaConf.load reads back as it is: a value that holds `${` once resolved
    (a path under a folder named `a${b}`) is written escaped (`\\${`), not read back as an interpolation."""
    from omegaconf import OmegaConf

    def escaped(node):
        if isinstance(node, dict):
            return {key: escaped(value) for key, value in node.items()}
        if isinstance(node, list):
            return [escaped(value) for value in node]
        return literal(node) if isinstance(node, str) else node

    return OmegaConf.to_yaml(OmegaConf.create(escaped(OmegaConf.to_container(cfg, resolve=True))))


def to_container(cfg) -> dict:
    """Plain python dict of a config (resolved), for checkpoints and JSON."""
    from omegaconf import OmegaConf

    return OmegaConf.to_container(cfg, resolve=True)
