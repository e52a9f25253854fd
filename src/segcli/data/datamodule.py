"""LightningDataModule reading a dataset card: cropped, augmented training batches; full-size validation.

data.fold=k (a card prepared with --folds K) trains on the train split's other folds and validates on
fold k; data.rare_class_sampling oversamples training images that contain rare classes.
Images are read with the channel count of the model they feed (its meta["model"]["in_channels"]).
"""

from __future__ import annotations

import functools
import os

import lightning as L
import torch

from segcli.data.card import DatasetCard, load_card
from segcli.data.channels import check_augment
from segcli.data.dataset import SegDataset
from segcli.data.sampler import rare_class_sampler
from segcli.data.transforms import train_transform
from segcli.errors import DataError


def _seed_worker(worker_id: int, parent: int | None = None) -> None:
    """Per-worker seeds for python/numpy (torch's is set by the DataLoader); one OpenCV thread per worker; and a
    watch on `parent`, the training process (see _follow)."""
    import random

    import cv2
    import numpy as np

    cv2.setNumThreads(1)
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)
    if parent is not None:
        import threading

        threading.Thread(target=_follow, args=(parent, _started(parent)), daemon=True, name="segcli-parent").start()


def _started(pid: int) -> str | None:
    """The start time of process `pid` (Linux /proc), to tell it from a later process given its number; 'ended'
    for one that has ended and is not yet reaped (a zombie); None where /proc cannot tell."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[1].split()
        return "ended" if fields[0] == b"Z" else fields[19].decode()
    except (OSError, IndexError):
        return None


def _follow(parent: int, started: str | None) -> None:
    """End this loader worker once the training process is gone. Workers are forkserver children: torch's own
    watchdog checks their parent, the fork server, which outlives a SIGKILLed run, so its workers (~500 MB each)
    and the server stayed for good."""
    import time

    while True:
        time.sleep(1.0)
        try:
            os.kill(parent, 0)
        except ProcessLookupError:
            os._exit(0)
        except OSError:
            pass
        if started is not None and _started(parent) != started:  # its number taken by another process
            os._exit(0)


class PadCollate:
    """Batches of differently sized samples (whole-image training with augment.crop_size=null, or a validation
    batch of several images): each image is padded at the bottom and right to the batch's largest size with 0,
    its mask with ignore_index, so the padding is never scored or learnt. Same-size batches are stacked as they
    are. Adds "labelled": whether any mask pixel of the batch is labelled, and for a padded batch "sizes": each
    sample's (height, width). (A class, not a closure: DataLoader workers must be able to pickle it.)"""

    def __init__(self, ignore_index: int):
        self.ignore_index = int(ignore_index)

    def __call__(self, samples: list[dict]) -> dict:
        import torch.nn.functional as F

        height = max(s["image"].shape[-2] for s in samples)
        width = max(s["image"].shape[-1] for s in samples)

        def pad(tensor: torch.Tensor, value: int) -> torch.Tensor:
            extra = (0, width - tensor.shape[-1], 0, height - tensor.shape[-2])
            return F.pad(tensor, extra, value=value) if any(extra) else tensor

        # default_collate then stacks them (into shared memory in a loader worker, as without padding)
        batch = torch.utils.data.default_collate(
            [{**s, "image": pad(s["image"], 0), "mask": pad(s["mask"], self.ignore_index)} for s in samples])
        # Whether any pixel is labelled (the loss skips a batch without one), as a plain bool, answered here in the
        # loader worker: asked of the mask on a GPU it stalls every step, and in the main process it competes with
        # the workers for the CPU.
        batch["labelled"] = any(bool((s["mask"] != self.ignore_index).any()) for s in samples)
        sizes = [tuple(int(v) for v in s["image"].shape[-2:]) for s in samples]
        if len(set(sizes)) > 1:  # each sample's own (height, width), so validation can score it as eval does
            batch["sizes"] = sizes
        return batch


def input_scale(data_cfg: dict) -> float:
    """data.input_scale as a float in (0, 4]: the model works on images resized by this factor (1.0 when null)."""
    from segcli.checks import input_scale_value

    value = data_cfg.get("input_scale")
    input_scale_value(value)
    return 1.0 if value is None else float(value)


def validates(data_cfg) -> bool:
    """Whether training validates: data.val_split=null (with no data.fold) trains on the train split alone."""
    return data_cfg.get("val_split") is not None or data_cfg.get("fold") is not None


def validated_split(data_cfg) -> str | None:
    """The card split a run validates on: data.val_split (None: no validation), or with data.fold the train split,
    whose fold `fold` validates whatever data.val_split says."""
    return str(data_cfg["train_split"]) if data_cfg.get("fold") is not None else data_cfg.get("val_split")


def split_indices(card, data_cfg) -> tuple[str, str | None, list[int], list[int]]:
    """(train split, val split or None, train indices, val indices) of a run's data config: the two splits, or with
    data.fold the other folds of the train split and its fold `fold` (cross-validation inside it)."""
    fold, train_split, val_split = data_cfg.get("fold"), str(data_cfg["train_split"]), validated_split(data_cfg)
    if fold is not None:
        return (train_split, val_split, card.indices(train_split, int(fold), held_out=False),
                card.indices(train_split, int(fold), held_out=True))
    return train_split, val_split, card.indices(train_split), card.indices(val_split) if val_split is not None else []


def split_digests(card, data_cfg) -> dict[str, str]:
    """Digests of the (image, mask) entries a run trains on and validates on, in order (split_indices): a checkpoint
    keeps them so that --resume can tell a split or fold assignment changed since (the same card name and classes
    with other images would compare best-val scores of different images, or validate on images trained on)."""
    import hashlib

    train_split, val_split, train, val = split_indices(card, data_cfg)
    digests = {}
    for key, split, indices in (("train_digest", train_split, train), ("val_digest", val_split, val)):
        entries = card.splits[split] if indices else []
        digest = hashlib.sha256()
        for i in indices:
            digest.update(f"{entries[i]['image']}\t{entries[i]['mask']}\n".encode())
        digests[key] = digest.hexdigest()[:16]
    return digests


def images_per_process(images: int, processes: int) -> int:
    """Images each of `processes` gets from a split of `images`: DistributedSampler pads the split to an equal share,
    so it rounds up (5 images on 2 processes: 3 each)."""
    return -(-int(images) // max(1, int(processes)))


def train_batches(images: int, batch_size: int) -> tuple[int, int]:
    """(batches per epoch, images in the smallest) of one process's training loader over `images` (SegDataModule.
    _loader): its last partial batch is dropped where a full one remains, else its one partial batch is kept."""
    return (images // batch_size, batch_size) if images > batch_size else (1, images)


def validation_off(run_cfg) -> str | None:
    """The setting of a run config that turns validation off (data.val_split=null, trainer.limit_val_batches=0), or
    None when the run validates."""
    from segcli.checks import finite_number

    if not validates(run_cfg.data):
        return "data.val_split=null"
    limit = (run_cfg.get("trainer") or {}).get("limit_val_batches")
    if limit is not None and finite_number(limit) == 0:
        return f"trainer.limit_val_batches={limit}"
    return None


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity mask; the machine's count where there is none)."""
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def loader_workers(setting) -> int:
    """data.num_workers → a worker count. auto: 0 on a machine with at most 2 CPU cores, where worker processes
    take cores from the training threads (measured: 10% slower training on 2 cores than loading in the main
    process), else min(8, cores // 2)."""
    from segcli.errors import ConfigError

    if str(setting).lower() == "auto":
        cores = usable_cores()
        return 0 if cores <= 2 else min(8, cores // 2)
    try:
        workers = int(setting)
    except (TypeError, ValueError):
        workers = -1
    if workers < 0:
        raise ConfigError(f"data.num_workers={setting!r}: give auto or a whole number >= 0")
    return workers


def files_for_workers(workers: int) -> None:
    """Before a run starts: data-loader workers need open files (pipes, shared-memory handles: a training process
    peaked at 23, 34 and 50 with 1, 2 and 4 workers, 7 with none). Where this process's soft limit (`ulimit -n`) is
    below 16 + 12 per worker, it is raised towards its hard limit; where even that is too low, ConfigError (exit 2).
    Found only at the first batch, the workers' failure printed their own tracebacks, and the run directory could not
    be removed for want of a file descriptor."""
    try:
        import resource
    except ImportError:  # not POSIX
        return
    need = 16 + 12 * workers
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if workers == 0 or soft == resource.RLIM_INFINITY or soft >= need:
        return
    if hard == resource.RLIM_INFINITY or hard >= need:
        raised = need if hard == resource.RLIM_INFINITY else min(hard, max(need, 4096))
        resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
        return
    from segcli.errors import ConfigError

    raise ConfigError(f"data.num_workers={workers} needs about {need} open files, and this process may open {hard} "
                      f"(ulimit -n); raise it (e.g. ulimit -n 4096), or load in the main process (data.num_workers=0)")


def cache_decision(setting, card: DatasetCard, split: str, count: int, channels: int, workers: int) -> bool:
    """data.cache → whether to keep `count` decoded images of `split` (and their masks) in memory.

    true/false as given; auto: yes when all loader copies together (one per worker process, or the main
    process) stay within an eighth of the machine's memory. The decoded size is the split's pixel count
    (from the card's statistics, else the first image's size × count) × (channels + 2 bytes of mask).
    """
    from segcli.errors import ConfigError

    text = str(setting).lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off", "none"):
        return False
    if text != "auto":
        raise ConfigError(f"data.cache={setting!r}: give auto, true or false")
    info = (card.stats.get("splits") or {}).get(split) or {}
    pixels, images = info.get("pixels"), info.get("images")
    if pixels and images:
        per_image = pixels / images
    else:  # a split the card has no statistics for: its first image stands for all
        from segcli.inference.io import read_mask

        per_image = read_mask(card.pairs(split)[0][1]).size
    decoded = per_image * count * (channels + 2)
    return decoded * max(1, workers) <= memory_bytes() / 8


# Memory limits of this process's control group (cgroup v2, v1), as a container or a Slurm job sets them
CGROUP_LIMITS = ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes")


def memory_bytes() -> int:
    """Memory this process may use in bytes: the machine's physical memory, or the control group's limit where
    that is lower (a container, a Slurm job with --mem); 0 when the OS does not say."""
    import os

    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return 0
    for path in CGROUP_LIMITS:
        try:
            with open(path, encoding="ascii") as file:
                limit = file.read().strip()
        except OSError:
            continue
        if limit.isdigit():  # "max" (v2) or a huge number (v1): no limit
            total = min(total, int(limit))
    return total


def worker_context(workers: int):
    """Start method for DataLoader workers: forkserver, whose server process imports the data pipeline once
    and has never run OpenCV's thread pool. Forking the training process itself deadlocks a worker in
    OpenCV when the parent had used OpenCV's threads before (e.g. a second run in one Python process)."""
    import multiprocessing

    if workers <= 0 or "forkserver" not in multiprocessing.get_all_start_methods():
        return None
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["segcli.data.datamodule"])  # takes effect when the server starts
    return context


class Repeated(torch.utils.data.Dataset):
    """`dataset` passed over `times` times per epoch (data.repeat): item i is dataset[i % len(dataset)], so a
    shuffled epoch holds each image `times` times in one random order. Meant for small datasets on fast devices,
    where each epoch start stalls the loader (the first batch waits for a worker to decode and augment it whole)
    and the per-epoch work would otherwise take much of the time."""

    def __init__(self, dataset, times: int):
        self.dataset, self.times = dataset, int(times)

    def __len__(self) -> int:
        return len(self.dataset) * self.times

    def __getitem__(self, i: int):
        return self.dataset[i % len(self.dataset)]


class SegDataModule(L.LightningDataModule):
    def __init__(self, data_cfg: dict, augment_cfg: dict, card: DatasetCard | None = None, channels: int | None = None):
        """channels: image channels to read (3 RGB, 1 grayscale, C multispectral); None = the attached
        LightningModule's meta["model"]["in_channels"] (3 when there is none)."""
        super().__init__()
        self.channels = channels
        if channels is not None:
            check_augment(augment_cfg, int(channels))  # fails before anything is written
        self.data_cfg = data_cfg
        self.augment_cfg = augment_cfg
        self.card = card or load_card(data_cfg["root"])
        self.sampler = None
        self.workers = 0

    def setup(self, stage: str | None = None) -> None:
        card, cfg = self.card, self.data_cfg
        channels = self._channels()
        check_augment(self.augment_cfg, channels)
        fold = cfg.get("fold")
        train_split, val_split, train_idx, val_idx = split_indices(card, cfg)
        _check_not_empty(card, fold, (("train", train_split, train_idx), ("val", val_split, val_idx)))
        self.workers = workers = loader_workers(cfg.get("num_workers", "auto"))
        setting = cfg.get("cache", "auto")
        self.train_set = SegDataset(card, train_split,
                                    train_transform(self.augment_cfg, card.ignore_index, input_scale(cfg), channels), train_idx,
                                    channels=channels,
                                    cache=cache_decision(setting, card, train_split, len(train_idx), channels, workers))
        self.val_set = None if val_split is None else SegDataset(
            card, val_split, indices=val_idx, channels=channels,
            cache=cache_decision(setting, card, val_split, len(val_idx), channels, workers))
        repeat = int(cfg.get("repeat", 1) or 1)
        if cfg.get("rare_class_sampling"):
            self.sampler = rare_class_sampler(card, train_split, train_idx, float(cfg.get("rare_class_threshold", 0.1)),
                                              repeat)
        if repeat > 1:
            self.train_set = Repeated(self.train_set, repeat)

    def _channels(self) -> int:
        if self.channels is not None:
            return int(self.channels)
        module = self.trainer.lightning_module if self.trainer is not None else None
        meta = getattr(module, "meta", None) or {}
        return int(meta.get("model", {}).get("in_channels", 3))

    def _loader(self, dataset, batch_size: int, shuffle: bool, sampler=None) -> torch.utils.data.DataLoader:
        workers = self.workers  # set by setup(), which also sized the caches for this many loader processes
        # A last partial batch is dropped only when each process still gets a full one (DDP shards the split);
        # train_batches counts the batches this gives.
        per_process = images_per_process(len(dataset), self.trainer.world_size if self.trainer is not None else 1)
        return torch.utils.data.DataLoader(
            dataset, batch_size=batch_size, shuffle=shuffle and sampler is None, sampler=sampler,
            drop_last=shuffle and per_process > batch_size, num_workers=workers, persistent_workers=workers > 0,
            collate_fn=PadCollate(self.card.ignore_index),
            worker_init_fn=functools.partial(_seed_worker, parent=os.getpid()), pin_memory=torch.cuda.is_available(),
            multiprocessing_context=worker_context(workers),
        )

    def train_dataloader(self):
        return self._loader(self.train_set, int(self.data_cfg["batch_size"]), shuffle=True, sampler=self.sampler)

    def val_dataloader(self):
        if self.val_set is None:  # data.val_split=null
            return []
        sampler = None
        if self.trainer is not None and self.trainer.world_size > 1:
            # Each val image exactly once over all processes: Lightning's default DistributedSampler pads
            # the split with repeated images to an equal count per process, which would bias the summed
            # confusion matrix. A DistributedSampler subclass is left alone by Lightning.
            from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler

            check_val_per_process(self.card, self.data_cfg, self.trainer.world_size)

            sampler = UnrepeatedDistributedSampler(self.val_set, num_replicas=self.trainer.world_size,
                                                   rank=self.trainer.global_rank, shuffle=False)
        return self._loader(self.val_set, int(self.data_cfg["val_batch_size"]), shuffle=False, sampler=sampler)


def check_val_per_process(card, data_cfg: dict, processes: int) -> None:
    """Each of `processes` validates at least one image (one with none would stall the others): a split with fewer
    is a ConfigError. train checks it before Lightning starts the processes, so that it is said once, not by each."""
    from segcli.errors import ConfigError

    fold = data_cfg.get("fold")
    if processes <= 1 or (data_cfg.get("val_split") is None and fold is None):
        return
    count = len(split_indices(card, data_cfg)[3])
    split = f"the '{data_cfg['val_split']}' split" if fold is None else f"fold {int(fold)}"
    if count < processes:
        raise ConfigError(f"{card.root}: {split} has {count} image(s) for {processes} processes, and each process "
                          "validates at least one; train on fewer devices or give the split more images")


def _check_not_empty(card, fold, parts) -> None:
    """A split (or a fold's part of the train split) with no pairs is a data error that names the fix."""
    for role, split, indices in parts:
        if split is None or indices:
            continue
        where = card.path
        if fold is not None:
            raise DataError(f"{where}: fold {fold} leaves no pair for {role} in split '{split}'; choose another "
                            "data.fold, or prepare the dataset with fewer --folds")
        fix = ("name a split that has pairs (data.train_split=NAME), or add pairs and prepare the dataset again"
               if role == "train" else "name another (data.val_split=NAME), or train without validation: "
               "data.val_split=null")
        raise DataError(f"{where}: split '{split}' (data.{role}_split) has no pairs; {fix}")
