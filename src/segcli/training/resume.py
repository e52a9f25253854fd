"""`segcli train --resume RUN_DIR`: continue a run from RUN_DIR/checkpoints/last.ckpt with its own config.

The run's saved config.yaml is the configuration; the command line may only change what does not
alter the experiment (RESUMABLE). Lightning restores weights, optimiser, scheduler, epoch/step counters,
the callbacks' state (best score, early-stopping patience, the max_time clock) and segcli's RngState
restores the random generators. metrics.csv is cut back to the rows logged before the checkpoint, so
rows of a killed epoch that will be run again are not duplicated.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from segcli.checks import number
from segcli.errors import ConfigError, DataError, first_line

# Overrides accepted with --resume: key → why it is safe. trainer.max_epochs may only be raised.
RESUMABLE = {
    "trainer.max_epochs": "train for more epochs (never fewer than the saved value)",
    "trainer.max_time": "change the wall-clock budget (counted over all sessions of the run)",
    "trainer.enable_progress_bar": "show or hide the progress bar",
    "data.num_workers": "loader processes (the data are the same; augmentation random streams differ)",
    "data.cache": "decoded images kept in memory or read each epoch (the same data)",
    "data.root": "the dataset's folder, moved since the run began (its card must say the same: check_same_data)",
    "final_eval": "evaluate best.ckpt at the end or not",
    "save_min_interval_s": "how often last.ckpt is written (the training is the same)",
}


def refuse_unresumable(ov, reused: str, tail: str = "") -> None:
    """A parsed override a resume may not apply (a key outside RESUMABLE, a sweep, a deletion): a usage error,
    `reused` saying what the resume keeps."""
    if ov.key_or_group in RESUMABLE and ov.is_sweep_override():  # listed below, so name what is wrong
        raise ConfigError(f"'{ov.input_line}': a resume takes one value of {ov.key_or_group}, not a sweep of several")
    if ov.key_or_group not in RESUMABLE or ov.is_sweep_override() or ov.is_delete():
        raise ConfigError(f"{reused}; '{ov.input_line}' cannot change it. Only {', '.join(RESUMABLE)} may be given{tail}")


def last_checkpoint(run_dir: Path) -> tuple[Path, int, dict]:
    """(RUN_DIR/checkpoints/last.ckpt, its global step, its segcli meta), checked to be a readable segcli
    checkpoint."""
    from segcli.inference.backends import read_checkpoint
    from segcli.training.checkpoints import LAST

    path = run_dir / "checkpoints" / f"{LAST}.ckpt"
    if not path.is_file():
        raise DataError(_no_last_checkpoint(run_dir, path))
    ckpt = read_checkpoint(path)
    return path, int(ckpt.get("global_step", 0)), ckpt["hyper_parameters"]["meta"]


def _no_last_checkpoint(run_dir: Path, path: Path) -> str:
    """Why RUN_DIR cannot be resumed and what works instead. With a best.ckpt (the first last.ckpt failed, e.g. on
    a full disk, after best.ckpt was written), "start it again without --resume" was refused in turn ("holds a run
    already; continue it with --resume"): the run is not continued but its best.ckpt is a model, kept."""
    best = path.with_name("best.ckpt")
    if best.is_file():
        return (f"{path}: no last.ckpt to resume from (the run stopped before it wrote one, e.g. on a full disk); "
                f"{best} is a model to use as it is: to train again, give another --run-dir, or delete {run_dir} "
                "and start it again without --resume")
    return (f"{path}: no last.ckpt to resume from; the run stopped before its first epoch ended (start it again "
            "without --resume)")


def check_same_data(saved: dict, meta: dict, card_file: Path) -> None:
    """Refuse to resume when the dataset card now says other than when the run began (prepared again with other
    classes, ignore index or images): the weights and the normalisation belong to the data they were fit on.
    saved: the checkpoint's meta; meta: the one the card gives now."""
    changes = data_changes(saved, meta)
    if changes:
        raise DataError(f"{card_file}: the dataset changed since this run began ({'; '.join(changes)}); --resume "
                        "continues the same experiment: prepare the data as it was, or start a new run")


def data_changes(saved: dict, meta: dict) -> list[str]:
    """What differs between the data parts of two metas (`saved`: a run's; `meta`: the one its card gives now), in
    words: classes, ignore index, image range, mean/std, the train and val images."""
    changes = []
    for key, what in (("classes", "classes"), ("ignore_index", "ignore index"), ("image_range", "image range")):
        if saved.get(key) != meta.get(key):
            changes.append(f"{what} {_short(saved.get(key))} → {_short(meta.get(key))}")
    for key in ("mean", "std"):
        before, now = saved.get(key) or [], meta.get(key) or []
        if len(before) != len(now) or any(abs(float(a) - float(b)) > 1e-6 for a, b in zip(before, now)):
            changes.append(f"{key} {_short([round(float(v), 4) for v in before])} → "
                           f"{_short([round(float(v), 4) for v in now])}")
    before, now = saved.get("dataset") or {}, meta.get("dataset") or {}
    what = {"train_digest": "the images it trains on (the train split, or its folds)",
            "val_digest": f"the images it validates on (split '{now.get('val_split')}', or its folds)"}
    for key in ("train_digest", "val_digest"):
        if before.get(key) is not None and before.get(key) != now.get(key):  # runs before 2026-12-07 keep none
            changes.append(what[key])
    return changes


def meta_now(saved: dict, card, data_cfg) -> dict:
    """The data part of the meta a run with `data_cfg` on `card` would get now, beside its checkpoint's `saved`
    meta, for check_same_data without building the model: mean/std of an RGB model come from the card (runs.
    card_normalization); another model's, measured on the images, are taken as saved."""
    from segcli.data.datamodule import split_digests
    from segcli.runs import card_normalization

    now = {**saved, "classes": list(card.classes), "ignore_index": int(card.ignore_index),
           "image_range": card.image_range}
    if len(saved.get("mean") or []) == 3:
        now.update(card_normalization(card))
    now["dataset"] = {**(saved.get("dataset") or {}), **split_digests(card, data_cfg)}
    return now


def resolved(cfg, key: str, given: str):
    """A key's value as the config reads it: interpolations (${oc.env:HOME}/data) resolved."""
    from omegaconf import OmegaConf

    try:
        return OmegaConf.select(cfg, key)
    except Exception as err:
        raise ConfigError(f"{given}: cannot resolve its interpolation ({first_line(err)}); give a plain value "
                          r"(write a folder really named with '${' as \${)") from None


def _short(value) -> str:
    text = ",".join(map(str, value)) if isinstance(value, list) else str(value)
    return text if len(text) <= 60 else text[:57] + "…"


def resume_config(run_dir: str | Path, overrides: list[str]):
    """The run's saved config.yaml with the allowed `overrides` applied, run_dir set to RUN_DIR."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf, open_dict

    from segcli.config import literal, quote_values  # quote_values: a path with spaces, non-ASCII letters

    run_dir = Path(run_dir).expanduser().resolve()
    if run_dir.is_file() and run_dir.parent.name == "checkpoints":
        raise DataError(f"{run_dir}: --resume takes the run directory, not a checkpoint: --resume {run_dir.parent.parent}")
    if not run_dir.is_dir():
        raise DataError(f"{run_dir}: --resume needs an existing run directory (the one `segcli train` printed)")
    saved = run_dir / "config.yaml"
    if not saved.is_file():
        raise DataError(f"{saved}: not found; --resume needs a run directory written by `segcli train`")
    last = run_dir / "checkpoints" / "last.ckpt"
    if not last.is_file():
        raise DataError(_no_last_checkpoint(run_dir, last))
    cfg, added = _filled(OmegaConf.load(saved))
    try:
        parsed = OverridesParser.create().parse_overrides(quote_values(list(overrides)))
    except Exception as err:
        from segcli.config import unparsable

        raise unparsable(list(overrides), err) from None
    with open_dict(cfg):
        for ov in parsed:
            key = ov.key_or_group
            refuse_unresumable(ov, f"--resume reuses {saved}", " (start a new run to change anything else)")
            value = ov.value()
            before = OmegaConf.select(cfg, key)
            if key == "trainer.max_epochs" and before is not None and before != -1 and value != -1:
                number("trainer.max_epochs", value, int(before), integer=True,
                       what=f"a whole number >= the run's {before}, or -1 for no limit (it may only be raised)")
            elif key == "trainer.max_epochs" and before == -1 and value != -1:  # no limit so far: the epochs run
                from segcli.inference.backends import read_checkpoint

                reached = int(read_checkpoint(last).get("epoch", 0)) + 1
                number("trainer.max_epochs", value, reached, integer=True,
                       what=f"a whole number >= the {reached} epochs the run has reached, or -1 for no limit")
            if key == "data.root":  # an interpolation (${oc.env:HOME}/data) resolved first, then the path
                OmegaConf.update(cfg, key, value, merge=False)
                value = literal(str(Path(str(resolved(cfg, key, ov.input_line))).expanduser().resolve()))
            OmegaConf.update(cfg, key, value, merge=False)
        cfg.run_dir = literal(str(run_dir))
        root = OmegaConf.select(cfg, "data.root")
        if root is not None and not Path(str(root)).expanduser().is_absolute():
            cfg.data.root = literal(_dataset_root(last, str(root)))
        given_root = any(ov.key_or_group == "data.root" for ov in parsed)
        _check_dataset_there(saved, OmegaConf.select(cfg, "data.root"), given=given_root)
    OmegaConf.set_struct(cfg, True)
    _say_filled(saved, added)  # once the overrides have passed: an error stays the only line
    return cfg


# Settings added since the first segcli whose default trains otherwise than before they existed: a resumed run of
# that time keeps the old way (one parameter group, so its last.ckpt's optimiser state fits; torch's default AdamW
# step; no colour jitter nor class-aware crop redraws halfway through).
AS_BEFORE = {"optim.no_decay_norm_bias": False, "optim.fused": False, "augment.brightness": 0.0,
             "augment.contrast": 0.0, "augment.cat_max_ratio": 1.0}


def _filled(cfg):
    """(the saved config with the settings a later segcli added at today's defaults, as --from fills them, but
    AS_BEFORE's; the keys added). A run of an early version has no early_stopping, ema or final_eval: its resume
    stopped with an internal error."""
    from omegaconf import OmegaConf

    from segcli.config import compose

    before = set(_leaf_keys(cfg))
    _fill(cfg, compose("train", []))
    added = sorted(set(_leaf_keys(cfg)) - before)
    for key in added:
        if key in AS_BEFORE:  # the optimiser state in last.ckpt was made without them
            OmegaConf.update(cfg, key, AS_BEFORE[key], merge=False)
    return cfg, added


def _say_filled(saved: Path, added: list[str], as_before: bool = True) -> None:
    """A note naming the settings _filled (or --from's fill, as_before=False) added, as they may train otherwise
    than the version that started the run."""
    from segcli.console import first_process, info

    if added and first_process():
        shown = ", ".join(added[:6]) + (f", … ({len(added) - 6} more)" if len(added) > 6 else "")
        kept = [f"{key}={str(AS_BEFORE[key]).lower()}" for key in added if key in AS_BEFORE and as_before]
        but = f" but {' and '.join(kept)}, as the run trained" if kept else ""
        info(f"train: note: {saved} lacks {len(added)} setting(s) that a later segcli added; they take today's "
             f"defaults{but}: {shown}")


def _leaf_keys(cfg) -> list[str]:
    from omegaconf import DictConfig, OmegaConf

    from segcli.config import _flat_keys

    return [key for key in _flat_keys(cfg) if not isinstance(OmegaConf.select(cfg, key), DictConfig)]


def _check_dataset_there(saved: Path, root, given: bool) -> None:
    """The run's dataset folder (config.yaml's data.root) must still hold its card; when it has gone (moved,
    renamed, another machine), say how to name its new place rather than to prepare it again."""
    if root is None or given:
        return
    folder = Path(str(root)).expanduser()
    if not (folder.is_file() or (folder / "dataset.yaml").is_file()):
        raise DataError(f"{saved}: the run's dataset {folder} has no dataset.yaml now (moved or deleted?); give its "
                        f"new place: segcli train --resume {saved.parent} data.root=NEW_FOLDER")


def _dataset_root(last: Path, root: str) -> str:
    """The dataset folder of a run whose config.yaml holds data.root relative to the folder it was started in (runs
    before it was saved absolute): the checkpoint's meta names it absolutely."""
    from segcli.inference.backends import read_checkpoint

    dataset = read_checkpoint(last)["hyper_parameters"]["meta"].get("dataset") or {}
    return str(dataset.get("root") or root)


def trim_metrics(run_dir: Path, global_step: int) -> None:
    """Keep only the metrics.csv rows logged before optimiser step `global_step` (atomically). Damaged rows (more
    or fewer fields than the header, a step that is no number: a segcli before 2026-12-06 could write them on a full
    disk) are left out with a note; they stopped --resume with "internal error: ValueError"."""
    from segcli.console import info
    from segcli.inference.io import atomic_write_bytes

    path = run_dir / "metrics.csv"
    if not path.is_file():
        return
    rows, damaged = [], 0
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        fields = reader.fieldnames or []
        for row in reader:
            step = _step_of(row)
            if step is None:
                damaged += bool(row.get("step"))  # a row without a step is not logged by Lightning: left out as before
            elif step < global_step:
                rows.append(row)
    if damaged:
        info(f"train: note: {path}: left out {damaged} damaged row(s) (fields that do not match its header)")
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_bytes(path, buffer.getvalue().encode("utf-8"))


def _step_of(row: dict) -> int | None:
    """A metrics.csv row's step, or None for a row without one or a damaged row (fields past the header are under
    the key None; a row cut short has None values)."""
    if None in row or None in row.values():
        return None
    try:
        return int(float(row.get("step") or ""))
    except ValueError:
        return None


_ABSENT = object()
# config groups of `segcli train` whose options set different keys (optim=sgd's momentum, adamw's betas)
_GROUPS = ("model", "loss", "optim", "sched", "augment", "trainer", "inference", "data")


def start_config(source: str | Path, overrides: list[str], run_dir: str | Path | None = None):
    """A new run's config from a saved one (`segcli train --from SOURCE`): SOURCE is a run directory (its
    config.yaml) or a YAML file of `segcli train --cfg`. Its groups are composed in already, so `overrides` change
    keys (model.arch=fpn, not model=fpn); keys a later segcli added are filled with their defaults where every
    option of their group has them. run_dir: the new run's directory (None: runs/train/<timestamp>)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import DictConfig, OmegaConf, open_dict

    from segcli.config import (ADDABLE, _check_resolves, _flat_keys, _packaged_keys, compose, did_you_mean,
                               holds_settings, literal, quote_values, read_nowhere, unparsable)
    from segcli.training.sweep import is_sweep_dir

    source = Path(source).expanduser()
    path = source / "config.yaml" if source.is_dir() else source
    fix = "give a run directory (its config.yaml) or a file of `segcli train --cfg`"
    if source.is_dir() and not path.is_file() and is_sweep_dir(source):
        jobs = sorted(p.name for p in source.iterdir() if (p / "config.yaml").is_file())
        raise DataError(f"{source}: a sweep directory, one config per job; --from starts one run: give a job's directory"
                        + (f", e.g. --from {source / jobs[0]}" if jobs else ""))
    if path.suffix == ".ckpt" and path.is_file():
        run = path.parent.parent if path.parent.name == "checkpoints" else None
        raise DataError(f"{path}: a checkpoint; --from reads a saved config, not weights: "
                        + (f"--from {run}" if run is not None and (run / "config.yaml").is_file() else fix))
    if not path.is_file():
        raise DataError(f"{path}: not found; --from needs a saved config: {fix}")
    try:
        saved = OmegaConf.load(path)
    except Exception as err:
        raise DataError(f"{path}: not readable as YAML ({first_line(err)}); {fix}") from None
    if not isinstance(saved, DictConfig) or not isinstance(saved.get("data"), DictConfig) \
            or not isinstance(saved.get("model"), DictConfig):
        raise DataError(f"{path}: not a `segcli train` config (no data and model settings); {fix}")
    known, addable = _packaged_keys("train"), ADDABLE["train"]
    for key in _flat_keys(saved):
        if read_nowhere(key, known, addable):
            raise DataError(f"{path}: sets {key}, which `segcli train` reads nowhere{did_you_mean(key, list(known))} "
                            "(a file of another segcli version, or edited); remove it or fix its name")
    _check_sections(saved, known, path)
    try:
        parsed = OverridesParser.create().parse_overrides(quote_values(list(overrides)))
    except Exception as err:
        raise unparsable(list(overrides), err) from None
    cfg = OmegaConf.create(OmegaConf.to_container(saved))
    before = set(_leaf_keys(cfg))
    _fill(cfg, compose("train", []))
    added = sorted(set(_leaf_keys(cfg)) - before)  # a config of an older segcli: named once the overrides pass
    with open_dict(cfg):
        cfg.run_dir = None  # a new run: runs/train/<timestamp>, run_dir=DIR or --run-dir DIR, not the saved run's
        names_first = sorted(parsed, key=lambda o: o.key_or_group not in ("sched.name", "optim.name"))  # _switch_preset
        for ov in names_first:
            key = ov.key_or_group
            if key in _GROUPS or key == "experiment" or "@" in key:
                raise ConfigError(f"{ov.input_line}: --from starts from {path}, whose groups are composed in already; "
                                  f"set their keys instead (e.g. model.arch=fpn, optim.lr=1e-3), or compose afresh "
                                  "without --from")
            if ov.is_delete() and key.startswith(addable) and not ov.is_sweep_override():
                if OmegaConf.select(cfg, key, default=_ABSENT) is _ABSENT:
                    raise ConfigError(f"{ov.input_line}: {path} has no key {key}"
                                      f"{did_you_mean(key, _flat_keys(cfg))}; nothing to delete")
                parent, _, name = key.rpartition(".")
                OmegaConf.select(cfg, parent).pop(name)
                continue
            if ov.is_sweep_override() or ov.is_delete():
                raise ConfigError(f"{ov.input_line}: --from starts one run and keeps every key; give key=value"
                                  + (f" (keys can be deleted only as ~{'<name>, ~'.join(addable)}<name>)"
                                     if ov.is_delete() else ""))
            if OmegaConf.select(cfg, key, default=_ABSENT) is _ABSENT and not (
                    (ov.is_add() or ov.is_force_add()) and key.startswith(addable)):
                raise ConfigError(f"{ov.input_line}: {path} has no key {key}{did_you_mean(key, _flat_keys(cfg))}"
                                  + (f" (keys can be added only as +{'<name>, +'.join(addable)}<name>)"
                                     if ov.is_add() else ""))
            value = ov.value()
            if key == "data.root":
                value = str(Path(str(value)).expanduser())
            if _switch_preset(cfg, key, value):
                continue
            if known.get(key) and not holds_settings(key, value):
                raise ConfigError(f"{ov.input_line}: {key} is a mapping of settings; set its keys ({key}.<name>=VALUE) "
                                  f"or give a mapping, {key}={{...}}")
            OmegaConf.update(cfg, key, value, merge=False)
        if run_dir is not None:
            cfg.run_dir = literal(str(Path(run_dir).expanduser()))
    _check_resolves("train", cfg)
    if not any(ov.key_or_group == "data.root" for ov in parsed):
        _check_dataset_moved(path, source, cfg)
    given = tuple(ov.key_or_group for ov in parsed)  # a key, or a mapping's (ema={decay:0.99}) and so its keys
    _say_filled(path, [key for key in added if not any(key == g or key.startswith(g + ".") for g in given)],
                as_before=False)
    OmegaConf.set_struct(cfg, True)
    return cfg


def _switch_preset(cfg, key: str, value) -> bool:
    """`--from RUN sched.name=onecycle`: the section becomes that preset's, keeping the saved values of the keys it
    shares (lr, weight_decay, warmup_steps), as `sched.name=onecycle` selects the preset without --from. The name
    alone kept the old preset's keys (poly's power, adamw's betas), read by nothing. False: not such an override
    (another key, the same preset, or a name no preset has, refused later)."""
    from omegaconf import OmegaConf

    from segcli.config import compose, named_preset

    group = named_preset(key, value)  # the packaged presets: --from takes no --config-dir
    if group is None or str(value) == str(cfg[group].get("name")):
        return False
    preset = OmegaConf.to_container(compose("train", [f"{group}={value}"])[group])
    saved = OmegaConf.to_container(cfg[group])
    cfg[group] = {k: (saved[k] if k in saved and k != "name" else v) for k, v in preset.items()}
    return True


def _check_sections(saved, known: dict, path: Path) -> None:
    """Every section `segcli train` reads as a mapping of settings (trainer, loss, augment.noise, ema...) must be one in
    the saved config: a config group's section present, a top-level section not null (a nested one may be null)."""
    from omegaconf import DictConfig

    fix = "give it its settings as `segcli train --cfg` prints them, or start from an unedited run directory"
    for key in _GROUPS:
        if key not in saved:
            raise DataError(f"{path}: has no {key} settings (a `segcli train` config has {', '.join(_GROUPS)}; "
                            f"edited?); {fix}")

    def walk(node, prefix: str) -> None:
        for key in node.keys():
            full, value = f"{prefix}{key}", node._get_node(key)
            if not known.get(full) or full.startswith(("model.kwargs.", "loss.terms.", "loss.params.")):
                continue
            if isinstance(value, DictConfig) and not value._is_none():
                walk(value, full + ".")
            elif prefix == "" or not value._is_none():
                given = "null" if value._is_none() else _short(str(value._value()))
                raise DataError(f"{path}: {full} is {given}, not a mapping of settings; {fix}")

    walk(saved, "")


def _check_dataset_moved(path: Path, source: Path, cfg) -> None:
    """The saved config's dataset folder must hold its card: when it has gone (moved, renamed, another machine), say
    how to name its new place rather than to prepare a dataset there."""
    from omegaconf import OmegaConf

    root = OmegaConf.select(cfg, "data.root")
    if not isinstance(root, str) or not root:
        return
    folder = Path(root).expanduser()
    if not (folder.is_file() or (folder / "dataset.yaml").is_file()):
        raise DataError(f"{path}: its dataset {folder} has no dataset.yaml (moved or deleted?); give its place: "
                        f"segcli train --from {source} data.root=FOLDER")


def _fill(cfg, default, prefix: str = "") -> None:
    """Add to `cfg` (in place) the keys of `default` it lacks (settings a later segcli added) where every packaged
    option of their group sets them, with default's value; keys only some options have (adamw's betas) are left
    out, as the saved run's option did not have them."""
    from omegaconf import DictConfig, OmegaConf, open_dict

    for key in default.keys():
        full = f"{prefix}{key}"
        if full.startswith(("model.kwargs.", "loss.terms.", "loss.params.")):
            continue  # free mappings: the saved run's own
        node = default._get_node(key)
        if key not in cfg:
            if _in_every_option(full):
                with open_dict(cfg):
                    cfg[key] = OmegaConf.to_container(node) if isinstance(node, DictConfig) else node._value()
        elif isinstance(node, DictConfig) and isinstance(cfg._get_node(key), DictConfig):
            _fill(cfg[key], node, full + ".")


def _in_every_option(key: str) -> bool:
    """Whether every packaged option of `key`'s config group sets it (a key outside the groups: True)."""
    import yaml

    from segcli.config import conf_dir

    group, _, rest = key.partition(".")
    if group not in _GROUPS or not rest:
        return group not in _GROUPS
    for path in (conf_dir() / group).glob("*.yaml"):
        node = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        inherits = any(isinstance(d, str) and d != "_self_" for d in node.get("defaults") or [])
        for part in rest.split("."):
            if not isinstance(node, dict) or part not in node:
                node = _ABSENT
                break
            node = node[part]
        if node is _ABSENT and not inherits:
            return False
    return True
