"""The end-of-training evaluation: `segcli eval --ckpt RUN_DIR/checkpoints/best.ckpt --out RUN_DIR/eval`
run in-process through segcli.commands.evaluate, with the run's `inference` settings.

It is eval's own code path (shared predictor, full-size val images, same metrics and report files),
so RUN_DIR/eval/report.json holds the number `segcli eval` reports for that checkpoint. Its tables go
to stderr: the stdout of `segcli train` stays the run directory.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

from segcli.console import first_process, info


def eval_config(run_cfg, ckpt: Path, out: Path):
    """The composed `eval` config for `ckpt` on the run's dataset and val split, with the run's inference group."""
    from omegaconf import OmegaConf, open_dict

    from segcli.config import compose

    device = "cpu" if str(run_cfg.trainer.get("accelerator", "auto")) == "cpu" else "auto"
    cfg = compose("eval", [], values={"ckpt": str(ckpt), "out": str(out), "data": str(run_cfg.data.root),
                                      "split": str(run_cfg.data.val_split), "device": device})
    with open_dict(cfg):
        cfg.inference = OmegaConf.create(OmegaConf.to_container(run_cfg.inference, resolve=True))
    return cfg


def inference_overrides(run_cfg) -> list[str]:
    """The run's inference settings that differ from `segcli eval`'s defaults, as overrides (inference.mode=slide):
    what `segcli eval --ckpt best.ckpt` needs to give the final evaluation's number ([] when it gives it as is).
    Settings that do not change the scores (batch_size, amp) are left out."""
    from omegaconf import OmegaConf

    from segcli.config import compose

    default = OmegaConf.to_container(compose("eval", []).inference, resolve=True)
    run = OmegaConf.to_container(run_cfg.inference, resolve=True)
    differ = [key for key in run if key not in ("batch_size", "amp")
              and _same_as(key, run[key]) != _same_as(key, default.get(key))]
    return [f"inference.{key}={_value(run[key])}" for key in differ]


def _same_as(key: str, value):
    """A setting as inference reads it, so that another spelling of the default is no difference: scales [] or 1
    is [1.0] (the final line said "with inference.scales=[]: `segcli eval … inference.scales=[]` reproduces it")."""
    if key == "scales":
        values = list(value) if isinstance(value, (list, tuple)) else [value]
        try:
            return [float(v) for v in values] if values else [1.0]
        except (TypeError, ValueError):  # refused before training; compared as given
            return value
    return value


def _value(value) -> str:
    """An override's value as typed on a command line: lists without spaces ([0.75,1.0,1.25]), null for None."""
    if value is None:
        return "null"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_value(v) for v in value) + "]"
    return str(value)


def final_eval(run_cfg, run_dir: Path, ckpt: Path) -> dict | None:
    """Evaluate `ckpt` into RUN_DIR/eval/ (report.json, per_class.csv, …); the report, or None when skipped."""
    from segcli.commands import evaluate
    from segcli.data.datamodule import validation_off

    say = info if first_process() else (lambda message: None)  # once per run, not once per DDP process
    off = validation_off(run_cfg)
    if off and off.startswith("trainer."):  # trainer.limit_val_batches=0
        say(f"train: final evaluation skipped: {off} turns validation off, so there is no "
            f"best.ckpt; `segcli eval --ckpt {run_dir / 'checkpoints' / 'last.ckpt'}` scores the trained weights")
        return None
    if run_cfg.data.get("fold") is not None:
        say("train: final evaluation skipped: data.fold validates on a fold of the train split, which "
            "`segcli eval` cannot select")
        return None
    if off:
        say("train: final evaluation skipped: no val split (data.val_split=null)")
        return None
    if not ckpt.is_file():
        say("train: final evaluation skipped: no best.ckpt (no validation ran)")
        return None
    say(f"train: evaluating {ckpt.name} on the full-size '{run_cfg.data.val_split}' images (segcli eval)")
    cfg = eval_config(run_cfg, ckpt, run_dir / "eval")
    with contextlib.redirect_stdout(sys.stderr):  # the per-class table is for people
        return evaluate.run(cfg)
