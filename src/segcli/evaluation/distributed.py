"""Evaluation by several processes: shard the split, then sum the counts and gather per-image rows.

Launch `torchrun --nproc-per-node N -m segcli eval ...`: each rank scores images i with
i % world_size == rank, the confusion matrix and the other counts are SUM-all_reduced
(segcli.metrics.reduce_matrix), and only rank 0 prints and writes reports. Sums of integer
counts do not depend on the order, so the result equals a single-process run exactly.
"""

from __future__ import annotations

import os

import torch


_OWN_GROUP: list[bool] = []  # [True] while the process group is the one `setup` created
JOINED: list[bool] = []  # [True] for good once `setup` created a process group: segcli.cli.main then exits hard


def active() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def setup(device: str) -> str:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1); returns the device this rank uses."""
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or not dist.is_available():
        return device
    local = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and str(device) in ("auto", "cuda")
    if not dist.is_initialized():  # under `segcli train` with DDP the group is Lightning's, already there
        dist.init_process_group("nccl" if use_cuda else "gloo")
        _OWN_GROUP.append(True)
        JOINED.append(True)
    if use_cuda:
        torch.cuda.set_device(local)
        return f"cuda:{local}"
    return device


def finish() -> None:
    """Wait until every rank got here (rank 0 has written the report), then leave the process group if `setup`
    joined it. A rank that exits with the group alive can abort in gloo's destructor ("terminate called without
    an active exception", SIGABRT), and torchrun then stops the others with SIGTERM and reports a failure; one that
    left it can still abort in a C++ destructor at exit, which segcli.cli.main skips (see JOINED)."""
    import torch.distributed as dist

    if active():
        dist.barrier()
        if _OWN_GROUP:
            dist.destroy_process_group()
            _OWN_GROUP.clear()


def rank() -> int:
    import torch.distributed as dist

    return dist.get_rank() if active() else 0


def world_size() -> int:
    import torch.distributed as dist

    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    return rank() == 0


def shard(items: list) -> list[tuple[int, object]]:
    """(index, item) pairs of this rank's share: every world_size-th item, starting at its rank."""
    r, n = rank(), world_size()
    return [(i, item) for i, item in enumerate(items) if i % n == r]


def sum_tensor(t: torch.Tensor) -> torch.Tensor:
    """SUM over ranks of an integer tensor (a copy; the input is unchanged)."""
    from segcli.metrics import reduce_matrix

    return reduce_matrix(t.to(torch.int64))


def gather(obj) -> list:
    """[obj of rank 0, obj of rank 1, ...] on every rank (picklable objects)."""
    import torch.distributed as dist

    if not active():
        return [obj]
    out: list = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def all_ok(ok: bool) -> bool:
    """True when `ok` holds on every rank (so that all ranks fail or succeed together)."""
    if not active():
        return ok
    return bool(sum_tensor(torch.tensor([0 if ok else 1])).item() == 0)


def fail_together(failure) -> None:
    """Every rank calls this after its share: a rank whose share failed (a SegcliError: a damaged image, a missing
    prediction) raises its error, and the others raise one naming that rank with its exit code. A rank that simply
    exited left the others to fail in their next collective ('Connection closed by peer'), an internal error, exit 4."""
    from segcli.errors import OtherProcessFailed

    if not active():
        if failure is not None:
            raise failure
        return
    outcomes = gather(None if failure is None else (failure.exit_code, failure.message))
    failed = [(r, outcome) for r, outcome in enumerate(outcomes) if outcome is not None]
    if failed:
        finish()  # all of them leave the process group before they exit (see finish)
    if failure is not None:
        raise failure
    if failed:
        r, (code, _) = failed[0]
        raise OtherProcessFailed(r, code)
