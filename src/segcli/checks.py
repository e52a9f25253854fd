"""Value checks of the numeric training settings, run before a run directory is made: a one-line ConfigError
naming the key and the values it takes, instead of an internal error (ZeroDivisionError, torch's "Invalid
learning rate") from inside training, or a setting silently truncated (data.batch_size=2.5 trained with 2).

Usage (commands/train.py): `check_values(cfg)` with the composed `train` config, as plain containers;
`number(key, value, ...)` for single settings elsewhere (predict's and eval's inference.batch_size, ...).
"""

from __future__ import annotations

import math
import re

from segcli.errors import ConfigError

OPTIMIZERS = ("adamw", "sgd")  # optim.name (built by segcli.models.optim)
SCHEDULES = ("poly", "cosine", "onecycle", "constant")  # sched.name
CLIP_ALGORITHMS = ("norm", "value")  # trainer.gradient_clip_algorithm (Lightning's)
PROFILERS = ("simple", "advanced", "pytorch", "xla")  # trainer.profiler's names (Lightning's)
_DURATION = re.compile(r"^\s*(\d+):(\d\d):(\d\d):(\d\d)\s*$")  # Lightning's Timer format: two digits after days
_TIMEDELTA_KEYS = ("weeks", "days", "hours", "minutes", "seconds", "milliseconds", "microseconds")


def finite_number(value) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _within(value, low, high, low_open: bool, integer: bool) -> bool:
    n = finite_number(value)
    if n is None or (integer and n != int(n)):
        return False
    if low is not None and not (n > low if low_open else n >= low):
        return False
    return high is None or n <= high


def _described(low, high, low_open: bool, integer: bool, plural: bool = False) -> str:
    kind = ("whole numbers" if plural else "a whole number") if integer else ("numbers" if plural else "a number")
    bounds = [f"> {low:g}" if low_open else f">= {low:g}"] if low is not None else []
    bounds += [f"<= {high:g}"] if high is not None else []
    return " ".join([kind, " and ".join(bounds)]).strip()


def number(key: str, value, low: float | None = None, high: float | None = None, *, low_open: bool = False,
           integer: bool = False, optional: bool = False, what: str = "") -> None:
    """value must be a number (a whole number with `integer`) in [low, high] ((low, high] with `low_open`);
    `optional`: null passes too. `what` describes the values in the message (default: the range)."""
    if (optional and value is None) or _within(value, low, high, low_open, integer):
        return
    what = what or _described(low, high, low_open, integer) + (" (or null)" if optional else "")
    raise ConfigError(f"{key}={value!r}: give {what}")


def is_size(value) -> bool:
    """[height, width] in pixels: two whole numbers >= 1 (a list, a tuple or an OmegaConf ListConfig)."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != 2:
        return False
    return all(_within(v, 1, None, False, True) for v in value)


def seed(key: str, value) -> None:
    """A random seed: what numpy takes, 0 to 2**32 - 1."""
    number(key, value, 0, 2**32 - 1, integer=True, what="a whole number from 0 to 4294967295")


def span(key: str, value, low: float | None = None, high: float | None = None, *, low_open: bool = False,
         integer: bool = False) -> None:
    """value must be [lo, hi] with lo <= hi, both within number()'s bounds."""
    pair = list(value) if isinstance(value, (list, tuple)) else []
    if len(pair) != 2 or not all(_within(v, low, high, low_open, integer) for v in pair):
        raise ConfigError(f"{key}={value!r}: give a range [low, high] of "
                          f"{_described(low, high, low_open, integer, True)}")
    if float(pair[0]) > float(pair[1]):
        raise ConfigError(f"{key}={value!r}: give the low end first, [{pair[1]}, {pair[0]}]")


def flag(key: str, value, *also: str) -> None:
    """value must be true or false (or one of the words in `also`, e.g. auto): "maybe" or "yes" would otherwise
    count as true wherever the setting is tested for truth."""
    if isinstance(value, bool) or (isinstance(value, str) and value.lower() in also):
        return
    raise ConfigError(f"{key}={value!r}: give {', '.join([*also, 'true'])} or false")


def input_scale_value(value) -> None:
    """data.input_scale: null (1) or a number in (0, 4]."""
    number("data.input_scale", value, 0, 4, low_open=True, optional=True,
           what="a number in (0, 4], e.g. 0.5 to train and predict at half resolution")


def _data_values(data: dict) -> None:
    number("data.batch_size", data.get("batch_size"), 1, integer=True)
    workers = data.get("num_workers", "auto")
    if str(workers).lower() != "auto":
        number("data.num_workers", workers, 0, integer=True, what="auto or a whole number >= 0")
    flag("data.cache", data.get("cache", "auto"), "auto")
    number("data.fold", data.get("fold"), 0, integer=True, optional=True,
           what="the index of a fold from prepare --folds (0, 1, ...), or null")
    number("data.val_batch_size", data.get("val_batch_size", 1), 1, integer=True)
    number("data.repeat", data.get("repeat", 1), 1, integer=True)
    number("data.rare_class_threshold", data.get("rare_class_threshold", 0.1), 0, 1, low_open=True)
    input_scale_value(data.get("input_scale"))


def _augment_values(augment: dict) -> None:
    crop = augment.get("crop_size")
    if crop is not None and not is_size(crop):
        raise ConfigError(f"augment.crop_size={crop!r}: give [height, width] in pixels (whole numbers >= 1), or null "
                          "for whole images")
    span("augment.scale", augment.get("scale") or [1.0, 1.0], 0, low_open=True)
    number("augment.rotate", augment.get("rotate") or 0, 0, 180, what="a largest rotation in degrees, 0 to 180")
    number("augment.hflip", augment.get("hflip") or 0, 0, 1, what="a probability, 0 to 1")
    ratio = augment.get("cat_max_ratio")  # not `or 1.0`: that passed 0 as "off"
    number("augment.cat_max_ratio", 1.0 if ratio is None else ratio, 0, 1, low_open=True,
           what="a share of the labelled pixels, > 0 and <= 1 (1.0 = off)")
    for key in ("brightness", "contrast", "saturation"):
        number(f"augment.{key}", augment.get(key) or 0, 0, what="a jitter strength >= 0 (0 = off)")
    number("augment.hue", augment.get("hue") or 0, 0, 0.5, what="a hue shift, 0 to 0.5 (0 = off)")
    ranges = {"noise": ("std", 0, None, False), "blur": ("sigma", 0, None, False), "jpeg": ("quality", 1, 100, True),
              "fog": ("density", 0, 1, False)}
    for name, (key, low, high, integer) in ranges.items():
        group = augment.get(name) or {}
        number(f"augment.{name}.p", group.get("p") or 0, 0, 1, what="a probability, 0 to 1 (0 = off)")
        if group.get("p"):
            span(f"augment.{name}.{key}", group.get(key), low, high, low_open=name == "blur", integer=integer)


def choice(key: str, value, choices: tuple[str, ...]) -> None:
    """A ConfigError naming `key`, the closest of `choices` and all of them, unless `value` (any case) is one."""
    if str(value).lower() not in choices:
        from segcli.config import did_you_mean

        raise ConfigError(f"unknown {key} '{value}'{did_you_mean(str(value).lower(), list(choices))}; choose from "
                          f"{', '.join(choices)}")


def _optim_values(optim: dict, sched: dict) -> None:
    choice("optim.name", optim.get("name", "adamw"), OPTIMIZERS)
    choice("sched.name", sched.get("name", "poly"), SCHEDULES)
    number("optim.lr", optim.get("lr"), 0, what="a learning rate >= 0")
    number("optim.weight_decay", optim.get("weight_decay", 0.0) or 0.0, 0)
    flag("optim.fused", optim.get("fused", "auto"), "auto")
    if "momentum" in optim:
        number("optim.momentum", optim.get("momentum"), 0, 1)
    if str(optim.get("name", "adamw")).lower() == "sgd" and optim.get("nesterov") and not optim.get("momentum", 0.9):
        # (optim=sgd optim.momentum=0 keeps sgd.yaml's nesterov: true)
        raise ConfigError("optim.nesterov=true needs optim.momentum > 0; set optim.nesterov=false for plain SGD")
    betas = optim.get("betas")
    if betas is not None and (not isinstance(betas, (list, tuple)) or len(betas) != 2
                              or any(finite_number(b) is None or not 0 <= finite_number(b) < 1 for b in betas)):
        raise ConfigError(f"optim.betas={betas!r}: give two numbers in [0, 1), e.g. [0.9, 0.999]")
    number("sched.warmup_steps", sched.get("warmup_steps") or 0, 0, integer=True)
    number("sched.warmup_fraction", sched.get("warmup_fraction") or 0.0, 0, 1)
    number("sched.power", sched.get("power", 0.9), 0, low_open=True)
    number("sched.min_lr_ratio", sched.get("min_lr_ratio", 0.0) or 0.0, 0, 1)
    number("sched.pct_start", sched.get("pct_start", 0.3), 0, 1, low_open=True)
    for key in ("div_factor", "final_div_factor"):
        number(f"sched.{key}", sched.get(key, 1.0), 0, low_open=True)


_LOSS_PARAMS = {  # (term, argument) → (low, high, low_open, optional) of its values
    ("ce", "label_smoothing"): (0, 1, False, False), ("dice", "smooth"): (0, None, False, False),
    ("jaccard", "smooth"): (0, None, False, False), ("focal", "gamma"): (0, None, False, False),
    ("focal", "alpha"): (0, 1, False, True), ("tversky", "alpha"): (0, None, False, False),
    ("tversky", "beta"): (0, None, False, False), ("tversky", "gamma"): (0, None, True, False),
    ("tversky", "smooth"): (0, None, False, False),
}
# true/false arguments of the terms' classes (smp's, and segcli's region losses with smp's keyword arguments); added
# with +loss.params.<term>.<name>, a text value such as 'no' was kept as text, which tests as true
_LOSS_SWITCHES = ("log_loss", "from_logits", "per_image", "normalized")


def _loss_values(loss: dict) -> None:
    for name, weight in (loss.get("terms") or {}).items():
        number(f"loss.terms.{name}", weight, 0, what="a weight >= 0 (0 drops the term)")
    number("loss.class_weight_power", loss.get("class_weight_power", 1.0), 0, 4,
           what="a number in [0, 4] (1 = median frequency, 0.5 = softer)")
    for term, args in (loss.get("params") or {}).items():
        for arg, value in (args or {}).items():
            if arg in _LOSS_SWITCHES and not isinstance(value, bool):
                raise ConfigError(f"loss.params.{term}.{arg}={value!r}: give true or false")
            if (term, arg) in _LOSS_PARAMS:
                low, high, low_open, optional = _LOSS_PARAMS[term, arg]
                number(f"loss.params.{term}.{arg}", value, low, high, low_open=low_open, optional=optional)
    tversky = (loss.get("params") or {}).get("tversky") or {}
    if (loss.get("terms") or {}).get("tversky") and tversky.get("alpha", 0.5) == 0 and tversky.get("beta", 0.5) == 0:
        # the index tp / (tp + 0·fp + 0·fn) is 1 whatever the model predicts: a loss of exactly 0, nothing learnt
        raise ConfigError("loss.params.tversky.alpha and beta are both 0: the Tversky index is then 1 for any "
                          "prediction (a zero loss); give them a positive sum, e.g. alpha=0.3 beta=0.7")


_DEVICES = re.compile(r"auto|-1|[1-9]\d*|\d+(,\d+)*,|\d+(,\d+)+")  # Lightning's string forms ("0," = GPU 0)


def _devices_ok(devices) -> bool:
    if isinstance(devices, str):
        return bool(_DEVICES.fullmatch(devices.replace(" ", "").lower()))
    if isinstance(devices, (list, tuple)):
        return bool(devices) and all(_within(d, 0, None, False, True) for d in devices)
    return devices == -1 or _within(devices, 1, None, False, True)


def duration_seconds(duration) -> float | None:
    """trainer.max_time in seconds, or None when Lightning's Timer cannot read it: "DD:HH:MM:SS" (two digits each
    after the days) or a dict of datetime.timedelta's keyword arguments ({minutes: 12}) with numbers >= 0."""
    if isinstance(duration, str):
        match = _DURATION.match(duration)
        if not match:
            return None
        days, hours, minutes, secs = (int(v) for v in match.groups())
        return ((days * 24 + hours) * 60 + minutes) * 60.0 + secs
    if isinstance(duration, dict) and duration:
        values = [finite_number(v) for v in duration.values()]
        if any(k not in _TIMEDELTA_KEYS for k in duration) or any(v is None or v < 0 for v in values):
            return None
        from datetime import timedelta

        return timedelta(**{str(k): float(v) for k, v in duration.items()}).total_seconds()
    return None


def _trainer_values(trainer: dict) -> None:
    epochs = trainer.get("max_epochs")
    if epochs is not None and epochs != -1:
        number("trainer.max_epochs", epochs, 1, integer=True,
               what="a whole number >= 1, or -1 for no limit (with trainer.max_time)")
    duration = trainer.get("max_time")
    if duration is not None:
        seconds = duration_seconds(duration)
        if seconds is None:
            raise ConfigError(f"trainer.max_time={duration!r}: give days:hours:minutes:seconds, e.g. 00:00:12:00 for "
                              "12 minutes (or {minutes: 12}; null for no limit)")
        if seconds <= 0:  # the Timer stops training before its first step: no checkpoint, nothing trained
            raise ConfigError(f"trainer.max_time={duration!r} trains nothing; give a budget above 0, e.g. 00:00:12:00 "
                              "for 12 minutes, or null for no limit")
    number("trainer.check_val_every_n_epoch", trainer.get("check_val_every_n_epoch"), 1, integer=True, optional=True)
    number("trainer.accumulate_grad_batches", trainer.get("accumulate_grad_batches", 1), 1, integer=True)
    number("trainer.gradient_clip_val", trainer.get("gradient_clip_val"), 0, optional=True)
    if trainer.get("gradient_clip_algorithm") is not None:  # Lightning refused a wrong one only inside fit
        choice("trainer.gradient_clip_algorithm", trainer["gradient_clip_algorithm"], CLIP_ALGORITHMS)
    number("trainer.log_every_n_steps", trainer.get("log_every_n_steps", 1), 1, integer=True)
    _step_and_epoch_bounds(trainer)
    sanity = trainer.get("num_sanity_val_steps")
    if sanity is not None and sanity != -1:
        number("trainer.num_sanity_val_steps", sanity, 0, integer=True,
               what="a number of validation batches >= 0, or -1 for all of them")
    _val_check_interval(trainer.get("val_check_interval"))
    _by_batches(trainer)
    number("trainer.reload_dataloaders_every_n_epochs", trainer.get("reload_dataloaders_every_n_epochs"), 0,
           integer=True, optional=True)
    if isinstance(trainer.get("profiler"), str):
        choice("trainer.profiler", trainer["profiler"], PROFILERS)
    devices = trainer.get("devices", "auto")
    if not _devices_ok(devices):
        raise ConfigError(f"trainer.devices={devices!r}: give auto, a number of devices >= 1 (-1: all), or the "
                          "indices of the GPUs to use, e.g. [0,1]")
    for key in ("limit_train_batches", "limit_val_batches", "limit_test_batches", "limit_predict_batches",
                "overfit_batches"):
        _batch_limit(f"trainer.{key}", trainer.get(key))
    limit = trainer.get("limit_train_batches")
    if limit is not None and finite_number(limit) == 0:  # Lightning skips training and the run ends with no checkpoint
        raise ConfigError("trainer.limit_train_batches=0 trains nothing; give a fraction of the batches (0, 1], a "
                          "number of batches >= 1, or null for all (to score a model, use segcli eval)")


def _step_and_epoch_bounds(trainer: dict) -> None:
    """trainer.max_steps (-1 or null: no limit; 0 trained nothing and ended with no checkpoint; -3 failed in
    Lightning after the run directory was made), min_steps and min_epochs (Lightning ignored negative ones, and a
    minimum above the maximum, without a word)."""
    steps = trainer.get("max_steps")
    if steps is not None and steps != -1:
        number("trainer.max_steps", steps, 1, integer=True,
               what="a number of optimiser steps >= 1, or -1 (or null) for no limit")
    for key, most in (("min_steps", steps), ("min_epochs", trainer.get("max_epochs"))):
        least = trainer.get(key)
        number(f"trainer.{key}", least, 0, integer=True, optional=True)
        if least is not None and most is not None and most != -1 and least > most:
            raise ConfigError(f"trainer.{key}={least} is more than trainer.max_{key[4:]}={most}, which ends training "
                              f"first; lower trainer.{key} or raise trainer.max_{key[4:]}")


def _val_check_interval(value) -> None:
    """trainer.val_check_interval as Lightning reads it: null (each epoch's end), a fraction of an epoch in (0, 1], a
    whole number of training batches, or a duration; 0 failed inside fit (ZeroDivisionError, exit 4) and 1.5 or -1
    in Lightning after the run directory was made. Whether a number of batches fits an epoch is train's check."""
    if value is None:
        return
    if isinstance(value, str):  # Lightning splits it on ':' into four whole numbers, any number of digits each
        parts = value.split(":")
        if len(parts) == 4 and all(p.strip().isdigit() for p in parts) and any(int(p) for p in parts):
            return
    elif isinstance(value, dict):
        seconds = duration_seconds(value)
        if seconds is not None and seconds > 0:
            return
    else:
        n = finite_number(value)
        if n is not None and n > 0 and (n <= 1 or n == int(n)):
            return
    raise ConfigError(f"trainer.val_check_interval={value!r}: give a fraction of an epoch in (0, 1], a whole number "
                      "of training batches, a duration such as 00:01:00:00 (an hour), or null (at each epoch's end)")


def validates_by_batches(trainer: dict) -> bool:
    """Whether trainer.check_val_every_n_epoch is given as null: Lightning then validates every val_check_interval
    training batches counted across epochs, not at epochs' ends (a key left out is Lightning's default, 1)."""
    return "check_val_every_n_epoch" in trainer and trainer["check_val_every_n_epoch"] is None


def _by_batches(trainer: dict) -> None:
    """trainer.check_val_every_n_epoch=null (validates_by_batches): the interval must be a whole number (an int) or a
    duration; Lightning refused a fraction (or no interval) only inside the Trainer."""
    if not validates_by_batches(trainer):
        return
    interval = trainer.get("val_check_interval")
    if isinstance(interval, (str, dict)) or (isinstance(interval, int) and not isinstance(interval, bool)):
        return
    shown = "" if interval is None else f" (trainer.val_check_interval={interval!r} is a fraction of an epoch)"
    raise ConfigError(f"trainer.check_val_every_n_epoch=null validates every trainer.val_check_interval training "
                      f"batches, counted across epochs{shown}; give trainer.val_check_interval=N, a whole number of "
                      "batches (or a duration), or a number of epochs to check_val_every_n_epoch")


def counts_batches(value) -> bool:
    """Whether Lightning reads a trainer.limit_*_batches or val_check_interval number as a count of batches (an int,
    or a whole number above 1 such as 2.0) rather than a fraction (0.5, 1.0)."""
    return isinstance(value, int) or float(value) > 1


def limited_batches(batches: int, limit) -> int:
    """The batches of a loader of `batches` that Lightning runs under trainer.limit_*_batches=`limit` (checked by
    _batch_limit): all for null, at most `limit` for a count, int(batches × limit) for a fraction."""
    if limit is None:
        return batches
    return min(batches, int(limit)) if counts_batches(limit) else int(batches * float(limit))


def _batch_limit(key: str, value) -> None:
    """trainer.limit_*_batches as Lightning reads it: null, a fraction in [0, 1], or a whole number of batches (a
    string such as '0' reached Lightning, which failed inside fit with a TypeError: exit 4)."""
    n = None if isinstance(value, str) else finite_number(value)
    if value is None or (n is not None and n >= 0 and (n <= 1 or n == int(n))):
        return
    raise ConfigError(f"{key}={value!r}: give a fraction of the batches in [0, 1], a whole number of batches, or null "
                      "for all")


def ema_decay(decay) -> float | None:
    """`ema.decay` as a float in [0, 1), or None (off); anything else is a ConfigError."""
    if decay is None:
        return None
    value = finite_number(decay)
    if value is None or not 0.0 <= value < 1.0:
        raise ConfigError(f"ema.decay={decay}: give a number in [0, 1) (e.g. 0.99: an average over about 100 "
                          "optimiser steps), or null for off")
    return value


def check_values(cfg: dict) -> None:
    """The numeric keys of data, augment, loss, optim, sched and trainer (and trainer.devices), the choices of
    optim.name, sched.name and trainer.gradient_clip_algorithm, model.in_channels, seed, save_every_n_steps,
    save_min_interval_s, early_stopping and ema.decay, and the true/false switches (final_eval, channels_last, ...)
    in the composed `train` config (plain containers). The trainer group's other machine
    settings (accelerator, precision, strategy, nodes) are segcli.models.trainer_args.check's."""
    _data_values(cfg.get("data") or {})
    _augment_values(cfg.get("augment") or {})
    _optim_values(cfg.get("optim") or {}, cfg.get("sched") or {})
    _trainer_values(cfg.get("trainer") or {})
    _loss_values(cfg.get("loss") or {})
    seed("seed", cfg.get("seed", 0))
    number("model.in_channels", (cfg.get("model") or {}).get("in_channels", 3), 1, integer=True,
           what="the number of image channels, a whole number >= 1 (3 RGB, 1 grayscale, C for C-band images)")
    number("save_every_n_steps", cfg.get("save_every_n_steps"), 1, integer=True, optional=True)
    number("save_min_interval_s", cfg.get("save_min_interval_s") or 0, 0, what="a number of seconds >= 0")
    stopping = cfg.get("early_stopping") or {}
    number("early_stopping.patience", stopping.get("patience"), 1, integer=True, optional=True,
           what="a number of validations >= 1, or null for off")
    number("early_stopping.min_delta", stopping.get("min_delta") or 0.0, 0)
    ema_decay((cfg.get("ema") or {}).get("decay"))
    for key, value in (("final_eval", cfg.get("final_eval", True)), ("channels_last", cfg.get("channels_last", True)),
                       ("model.compile", (cfg.get("model") or {}).get("compile", False)),
                       ("trainer.enable_progress_bar", (cfg.get("trainer") or {}).get("enable_progress_bar", True))):
        flag(key, value)
