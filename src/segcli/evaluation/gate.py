"""The CI gate: `--fail-under mIoU=0.60 --fail-under class:road=0.90 --fail-under class:road:biou=0.5`.

A threshold names an aggregate (mIoU, mAcc, mDice, aAcc, fwIoU, mBIoU) or a class and one of its
rates (iou by default; acc (alias recall), dice (f1), precision, biou) and a fraction in [0, 1] (or a percentage "90%").
The gate fails when a value is below its threshold, or is null (absent class: nothing to vouch for). A value equal
to its threshold passes, also when float rounding puts it a hair below: a mean of rates (0.99 and 0.87 average to
0.9299999999999999) or a percentage (14.3 / 100 is 0.14300000000000002, above the rate 143/1000).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from segcli.config import did_you_mean, listed
from segcli.errors import ConfigError
from segcli.metrics import format_value

AGGREGATES = ("mIoU", "mAcc", "mDice", "aAcc", "fwIoU", "mBIoU")
CLASS_METRICS = ("iou", "acc", "dice", "precision", "biou")
ALIASES = {"recall": "acc", "f1": "dice", "prec": "precision", "boundary_iou": "biou"}
_LABEL = {"iou": "IoU", "acc": "Acc", "dice": "Dice", "precision": "Precision", "biou": "BIoU"}
_ROUNDING = 1e-9  # how far below its threshold a value still meets it: float rounding, not one pixel in a billion


@dataclass(frozen=True)
class Threshold:
    spec: str  # as given, e.g. "class:road=0.90"
    metric: str  # aggregate name, or a class metric when cls is set
    minimum: float  # fraction in [0, 1]
    cls: str | None = None  # class name

    @property
    def label(self) -> str:
        return f"class:{self.cls} {_LABEL[self.metric]}" if self.cls is not None else self.metric

    def value(self, metrics: dict) -> float | None:
        if self.cls is None:
            return metrics.get(self.metric)
        row = next(r for r in metrics["classes"] if r["name"] == self.cls)
        return row.get(self.metric)


MAX_NAMES = 30  # names listed after "choose from" (ADE20K has 150 classes)


def _match(word: str, choices: list[str] | tuple[str, ...], what: str) -> str:
    """`word` itself, or its unique case-insensitive match; else a ConfigError suggesting close names."""
    if word in choices:
        return word
    folded = [c for c in choices if c.lower() == word.lower()]
    if len(folded) == 1:
        return folded[0]
    if folded:  # 'CAR' with classes 'car' and 'Car': not unknown, but which one?
        raise ConfigError(f"--fail-under: {what} '{word}' matches {' and '.join(folded)} apart from case; "
                          "write the name exactly as it is spelled")
    more = f", … ({len(choices) - MAX_NAMES} more)" if len(choices) > MAX_NAMES else ""
    raise ConfigError(f"--fail-under: unknown {what} '{word}'{did_you_mean(word, list(choices))}; "
                      f"choose from {listed(choices[:MAX_NAMES])}{more}")


def _fraction(spec: str, key: str, text: str) -> float:
    text = text.strip()
    try:
        value = float(Decimal(text[:-1].strip()) / 100) if text.endswith("%") else float(text)
    except (ValueError, ArithmeticError):  # Decimal: shifts the point exactly, so "14.3%" is the float 0.143
        raise ConfigError(f"--fail-under {spec}: '{text}' is not a number; write e.g. mIoU=0.60 or mIoU=60%") from None
    if 1.0 < value <= 100.0 and not text.endswith("%"):
        raise ConfigError(f"--fail-under {spec}: thresholds are fractions in [0, 1] or percentages with '%'; "
                          f"write {key}={value / 100:g} or {key}={text}%")
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"--fail-under {spec}: thresholds are fractions in [0, 1] or percentages with '%' in "
                          "[0%, 100%], e.g. mIoU=0.60 or mIoU=60%")
    return value


def _class_key(rest: str, class_names: list[str]) -> tuple[str, str]:
    """'road' → (road, iou); 'road:acc' → (road, acc); a class name may itself contain ':'."""
    head, sep, tail = rest.rpartition(":")
    metric = ALIASES.get(tail.lower(), tail.lower())
    is_class = {c.lower() for c in class_names}.__contains__
    if sep and metric in CLASS_METRICS and not (is_class(rest.lower()) and not is_class(head.lower())):
        return head, metric  # 'x:acc' is class x's acc, unless only a class named 'x:acc' exists
    if sep and is_class(head.lower()):
        return head, _match(metric, CLASS_METRICS + tuple(ALIASES), "class metric")
    return rest, "iou"


def parse_gate(specs, class_names: list[str]) -> list[Threshold]:
    """Parse and validate `METRIC=V` / `class:NAME[:METRIC]=V` specs against the model's classes."""
    out = []
    if isinstance(specs, (str, int, float)):  # fail_under=mIoU=0.6 as a Hydra override: one spec, not its characters
        specs = [specs]
    for spec in (str(s) for s in specs or []):
        if "=" not in spec:
            raise ConfigError(f"--fail-under {spec}: expected METRIC=VALUE or class:NAME[:METRIC]=VALUE, e.g. mIoU=0.60")
        key, value = spec.rsplit("=", 1)
        minimum = _fraction(spec, key.strip(), value)
        if key.strip().lower().startswith("class:"):
            name, metric = _class_key(key.strip()[len("class:"):], class_names)
            out.append(Threshold(spec, metric, minimum, _match(name, class_names, "class")))
        else:
            out.append(Threshold(spec, _aggregate(key.strip(), value.strip(), class_names), minimum))
    return out


def _aggregate(key: str, value: str, class_names: list[str]) -> str:
    """The aggregate `key` names; a class name given without 'class:' is a ConfigError that writes it with it."""
    folded = {c.lower(): c for c in class_names}
    name = key if key.lower() in folded else key.rpartition(":")[0]
    if key not in AGGREGATES and name.lower() in folded and not any(a.lower() == key.lower() for a in AGGREGATES):
        raise ConfigError(f"--fail-under {key}={value}: '{folded[name.lower()]}' is a class; write "
                          f"class:{key}={value}")
    try:
        return _match(key, AGGREGATES, "metric")
    except ConfigError as err:
        raise ConfigError(f"{err.message}, or class:NAME=V for one class's IoU (class:NAME:acc=V …)") from None


def failures(thresholds: list[Threshold], metrics: dict) -> list[str]:
    """'mIoU 55.21 < 60.00' for each threshold not met (a null value never meets one)."""
    out = []
    for t in thresholds:
        value = t.value(metrics)
        if value is None:
            out.append(f"{t.label} null (not measurable) < {format_value(t.minimum)}%")
        elif value < t.minimum - _ROUNDING:
            digits = 2  # as many as it takes to show the two apart: 59.9996 against 60 is not "60.00% < 60.00%"
            while digits < 9 and format_value(value, digits) == format_value(t.minimum, digits):
                digits += 1
            out.append(f"{t.label} {format_value(value, digits)}% < {format_value(t.minimum, digits)}%")
    return list(dict.fromkeys(out))  # mIoU=0.9 and mIoU=90% fall short alike: said once
