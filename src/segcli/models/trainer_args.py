"""Checks of the `trainer` config group before lightning.Trainer is built: one-line ConfigErrors
instead of Lightning's tracebacks for a GPU preset on a machine without one, an unknown precision, ...

Usage (commands/train.py): `check(trainer_args)` before `L.Trainer(**trainer_args, ...)`, and build the
Trainer inside `with lightning_config_errors():` for what Lightning alone can tell.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Optional

from segcli.config import did_you_mean
from segcli.errors import ConfigError, first_line

SET_BY_SEGCLI = ("default_root_dir", "callbacks", "logger", "plugins", "enable_model_summary", "enable_checkpointing")
ACCELERATORS = ("cpu", "gpu", "cuda", "mps", "auto")
PRECISIONS = ("auto", "32-true", "16-mixed", "bf16-mixed", "16-true", "bf16-true", "64-true", "32", "16", "bf16", "64")
LEGACY_PRECISIONS = {"32": "32-true", "16": "16-mixed", "bf16": "bf16-mixed", "64": "64-true"}  # Lightning 1.x names
NATIVE_BF16 = {"avx512_bf16", "amx_bf16"}  # /proc/cpuinfo flags of CPUs that compute in bfloat16 natively


def _gpu_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _launched_across_nodes() -> bool:
    """Whether the environment tells processes where the other machines are (what Lightning's cluster
    environments read): MASTER_ADDR (manual, torchrun, Kubeflow), SLURM, LSF or an MPI launcher."""
    import os

    return any(key in os.environ for key in ("MASTER_ADDR", "SLURM_JOB_ID", "LSB_JOBID", "OMPI_COMM_WORLD_SIZE",
                                             "PMI_SIZE"))


def started_as_one_of_several(num_nodes=1) -> bool:
    """Whether this process is one of several that each run the whole command: started by torchrun, srun with
    several tasks or mpirun, or one machine's share of a multi-node run (trainer.num_nodes > 1)."""
    import os

    def count(value) -> int:
        return int(value) if str(value).isdigit() else 1

    return (any(key in os.environ for key in ("RANK", "LOCAL_RANK")) or count(num_nodes) > 1
            or max(count(os.environ.get(key)) for key in ("SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE")) > 1)


def processes(trainer: dict) -> int:
    """How many processes train: trainer.devices (a count, or a list of device ids) × trainer.num_nodes. Devices auto
    or -1 count as Lightning counts them: every visible GPU where training runs on GPUs, one process elsewhere."""
    count, nodes = device_count(trainer.get("devices", "auto")), trainer.get("num_nodes", 1)
    if count is None:
        accelerator = str(trainer.get("accelerator", "auto")).lower()
        on_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and _gpu_count() > 0)
        count = max(1, _gpu_count()) if on_gpu else 1
    return count * (int(nodes) if str(nodes).isdigit() else 1)


def device_count(devices) -> int | None:
    """How many devices trainer.devices names on one machine: a count, or a list of ids ([0, 1] or "0,1"); None
    for auto or -1 (Lightning decides)."""
    if isinstance(devices, (list, tuple)):
        return len(devices)
    if str(devices).strip().isdigit():
        return int(str(devices).strip())
    if isinstance(devices, str) and "," in devices:  # "0,1": device ids
        return len([d for d in devices.split(",") if d.strip()])
    return None


def check(trainer: dict) -> None:
    """Raise ConfigError when a trainer key is no argument of lightning.Trainer, or when trainer.accelerator /
    devices / precision cannot run on this machine."""
    import inspect

    import lightning as L

    parameters = inspect.signature(L.Trainer.__init__).parameters
    accepted = [name for name in parameters if name != "self"]
    for key, value in trainer.items():
        if key not in accepted:
            raise ConfigError(f"unknown trainer.{key}: not an argument of lightning.Trainer"
                              f"{did_you_mean(key, accepted)}")
        if key in SET_BY_SEGCLI:
            raise ConfigError(f"trainer.{key} is set by segcli train itself (run directory, checkpoints, loggers); "
                              "leave it out (--run-dir chooses where the run goes)")
        # +trainer.detect_anomaly=maybe reached torch inside fit (exit 4); conf/trainer's own switches are config's
        if parameters[key].annotation in (bool, Optional[bool]) and not isinstance(value, bool) and value is not None:
            raise ConfigError(f"trainer.{key}={value!r}: give true or false")
    if trainer.get("barebones"):  # Lightning refused it with segcli's checkpoints, after the run directory was made
        raise ConfigError("trainer.barebones=true turns off the checkpoints and logs segcli train writes (best.ckpt, "
                          "last.ckpt, metrics.csv); leave it out")
    accelerator = str(trainer.get("accelerator", "auto")).lower()
    if accelerator not in ACCELERATORS:
        raise ConfigError(f"unknown trainer.accelerator '{accelerator}'{did_you_mean(accelerator, list(ACCELERATORS))}; "
                          f"choose from {', '.join(ACCELERATORS)}")
    precision = str(trainer.get("precision", "32-true")).lower()
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown trainer.precision '{precision}'{did_you_mean(precision, list(PRECISIONS))}; "
                          "choose from auto, 32-true, 16-mixed, bf16-mixed (or 16-true, bf16-true, 64-true)")
    strategy = str(trainer.get("strategy", "auto")).lower()
    if any(word in strategy for word in ("spawn", "fork", "notebook")):
        raise ConfigError(f"trainer.strategy={strategy}: segcli train cannot use a strategy that trains in child "
                          "processes (its best score, epochs and metrics never reach the command); use "
                          "trainer.strategy=ddp")
    _check_strategy(trainer.get("strategy", "auto"))
    nodes = trainer.get("num_nodes", 1)
    if not str(nodes).isdigit() or int(nodes) < 1:
        raise ConfigError(f"trainer.num_nodes={nodes}: give the number of machines, an integer >= 1")
    if int(nodes) > 1 and not _launched_across_nodes():
        raise ConfigError(f"trainer.num_nodes={nodes} but no multi-node launch was found (MASTER_ADDR unset, not under "
                          "SLURM, LSF or MPI): the run would wait for the other machines for ever; start the same "
                          "command on every machine with MASTER_ADDR, MASTER_PORT and NODE_RANK set, or with torchrun "
                          "--nnodes or srun")
    if accelerator in ("gpu", "cuda"):
        gpus = _gpu_count()
        if gpus == 0:
            raise ConfigError(f"trainer.accelerator={accelerator} but no CUDA GPU is visible on this machine; "
                              "use trainer=cpu (or trainer.accelerator=cpu)")
        devices = trainer.get("devices", "auto")
        wanted = device_count(devices)
        if wanted is not None and wanted > gpus:
            raise ConfigError(f"trainer.devices={devices} but this machine has {gpus} GPU(s); set trainer.devices={gpus}")
        if precision.startswith("bf16"):
            import torch

            if not torch.cuda.is_bf16_supported():
                raise ConfigError(f"trainer.precision={precision}: this GPU has no bfloat16 support; "
                                  "use trainer.precision=16-mixed")
    if accelerator == "cpu" or (accelerator == "auto" and _gpu_count() == 0):
        devices = trainer.get("devices", "auto")
        if not (str(devices).strip().lower() == "auto" or (str(devices).strip().isdigit() and int(devices) > 0)):
            raise ConfigError(f"trainer.devices={devices}: on the CPU give the number of processes (e.g. 2, with "
                              "trainer.strategy=ddp) or auto; -1 and device indices such as [0,1] select GPUs")
    if accelerator == "mps":
        import torch

        if not torch.backends.mps.is_available():
            raise ConfigError("trainer.accelerator=mps but Apple's MPS backend is not available; use trainer=cpu")


def _check_strategy(strategy) -> None:
    """A strategy name Lightning knows (a misspelt one failed in Lightning after the run directory was made); one
    that trains in child processes was refused before (check)."""
    from lightning.pytorch.strategies import StrategyRegistry

    if not isinstance(strategy, str) or strategy.lower() == "auto":
        return
    names = [name for name in StrategyRegistry.available_strategies()
             if not any(word in name for word in ("spawn", "fork", "notebook"))]
    if strategy.lower() not in names:
        raise ConfigError(f"unknown trainer.strategy '{strategy}'{did_you_mean(strategy.lower(), names)}; choose from "
                          f"auto, {', '.join(names)}")


# Trainer arguments Lightning takes as int only (limit_*_batches and val_check_interval are not among them: there a
# float is a fraction, 1.0 all batches, and 1 one batch)
WHOLE_NUMBERS = ("max_epochs", "min_epochs", "max_steps", "min_steps", "check_val_every_n_epoch", "num_nodes",
                 "accumulate_grad_batches", "log_every_n_steps", "reload_dataloaders_every_n_epochs",
                 "num_sanity_val_steps", "devices")


def for_this_machine(trainer: dict) -> dict:
    """The Trainer arguments with what cannot run here switched off, and trainer.precision=auto made concrete:
    SyncBatchNorm needs CUDA devices, so `trainer=ddp trainer.accelerator=cpu` (gloo) trains with each process's
    own BatchNorm statistics (a note on stderr) instead of failing in the first forward pass."""
    from segcli.console import first_process, info

    accelerator = str(trainer.get("accelerator", "auto")).lower()
    on_cpu = accelerator == "cpu" or (accelerator == "auto" and _gpu_count() == 0)
    if trainer.get("sync_batchnorm") and on_cpu:
        if first_process():
            info("train: trainer.sync_batchnorm is off on the CPU (SyncBatchNorm needs CUDA devices); "
                 "each process keeps its own BatchNorm statistics")
        trainer = {**trainer, "sync_batchnorm": False}
    # Lightning takes lower-case names only (check() accepts any case), and its old spellings (16, bf16, ...) with a
    # warning; config.yaml records the name that trains
    if "accelerator" in trainer:
        trainer = {**trainer, "accelerator": str(trainer["accelerator"]).lower()}
    if isinstance(trainer.get("deterministic"), str):  # 'WARN' passed check() but Lightning tests == "warn"
        trainer = {**trainer, "deterministic": trainer["deterministic"].lower()}
    # check() takes 30.0 as the whole number it is; Lightning asserts an int (max_epochs) or refuses the float
    trainer = {**trainer, **{key: int(value) for key, value in trainer.items() if key in WHOLE_NUMBERS
                             and isinstance(value, float) and value.is_integer()}}
    if "precision" in trainer:
        named = str(trainer["precision"]).lower()
        trainer = {**trainer, "precision": LEGACY_PRECISIONS.get(named, named)}
    precision = str(trainer.get("precision", "32-true"))
    if precision == "16-mixed" and on_cpu:  # no float16 autocast on the CPU: Lightning would switch, in a warning
        if first_process():
            info(f"train: trainer.precision={precision} on the CPU trains in bf16-mixed (the CPU has no float16 "
                 "autocast)")
        trainer, precision = {**trainer, "precision": "bf16-mixed"}, "bf16-mixed"
    if precision.lower() == "auto":
        chosen, why = auto_precision(on_cpu, accelerator)
        if first_process():
            info(f"train: trainer.precision=auto → {chosen} ({why})")
        return {**trainer, "precision": chosen}
    flags = cpu_flags() if on_cpu and precision.startswith("bf16") else set()
    if flags and not flags & NATIVE_BF16 and first_process():
        info(f"train: note: trainer.precision={precision} on a CPU without native bfloat16 (no AVX-512 BF16 or AMX "
             "in /proc/cpuinfo) is emulated, over 10x slower than trainer.precision=32-true on an AVX2 CPU; "
             "trainer.precision=auto picks the faster one")
    return trainer


def auto_precision(on_cpu: bool, accelerator: str) -> tuple[str, str]:
    """The precision that trains fastest without loss of accuracy on this machine, and why: bf16 autocast on a
    CUDA GPU that has bfloat16 (fp16 with loss scaling on an older one) and on a CPU that computes in bfloat16
    natively (AVX-512 BF16 or AMX: 1.8x the images/s of float32 measured on one); float32 elsewhere, since an
    emulated bfloat16 (an AVX2 CPU: 14x slower per step measured on one) or an unknown CPU would cost time."""
    if on_cpu:
        flags = cpu_flags()
        if flags & NATIVE_BF16:
            return "bf16-mixed", f"this CPU has {' and '.join(sorted(flags & NATIVE_BF16))}"
        if flags:
            return "32-true", "this CPU has no native bfloat16, no AVX-512 BF16 or AMX: emulated, it would train slower"
        return "32-true", "this CPU's features cannot be read from /proc/cpuinfo"
    if accelerator in ("gpu", "cuda", "auto"):
        import torch

        if torch.cuda.is_bf16_supported():
            return "bf16-mixed", "this GPU has bfloat16"
        return "16-mixed", "this GPU has no bfloat16"
    return "32-true", f"no mixed precision is chosen for trainer.accelerator={accelerator}"


def cpu_flags(path: str = "/proc/cpuinfo") -> set[str]:
    """The CPU's feature flags (Linux's /proc/cpuinfo 'flags' line); empty where it cannot be read."""
    return set(cpuinfo("flags", path).split())


def cpuinfo(key: str, path: str = "/proc/cpuinfo") -> str:
    """The value of the first `key` line of Linux's /proc/cpuinfo ('flags', 'model name'); '' where there is none."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                name, colon, value = line.partition(":")
                if colon and name.strip() == key:
                    return value.strip()
    except OSError:
        pass
    return ""


@contextmanager
def lightning_config_errors(value_errors: bool = True):
    """Turn Lightning's configuration exceptions into one-line ConfigErrors: around building the Trainer (with its
    ValueErrors), and around fit (value_errors=False: there a ValueError may be anything), where Lightning checks
    some settings against the data (limit_train_batches=0.5 of a one-batch loader)."""
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    caught = (MisconfigurationException, ValueError) if value_errors else (MisconfigurationException,)
    try:
        yield
    except caught as err:
        first = first_line(err)
        raise ConfigError(f"trainer: {first}") from None
