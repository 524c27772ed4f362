"""Process-group facts in one place: rank, world size, rank-zero checks and device choice.

Two sources exist and both are needed: ``torch.distributed`` once a process group is joined,
and the launcher's environment (``RANK``, ``LOCAL_RANK``, ``SLURM_PROCID``) before that, e.g.
while Hydra sets up run folders and logging.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")

__all__ = [
    "get_rank",
    "get_world_size",
    "rank_and_world_size",
    "is_rank_zero",
    "launcher_is_rank_zero",
    "local_rank",
    "resolve_device",
    "barrier",
    "distributed",
    "gather_objects",
    "sum_over_ranks",
    "gather_lists",
    "worker_rank_overrides",
]


def _initialised() -> bool:
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    """This process's rank in the joined process group, else 0."""
    return dist.get_rank() if _initialised() else 0


def get_world_size() -> int:
    """The number of processes in the joined process group, else 1."""
    return dist.get_world_size() if _initialised() else 1


def rank_and_world_size(rank: int | None = None, world_size: int | None = None) -> tuple[int, int]:
    """``(rank, world_size)`` from the arguments, else the process group, else ``(0, 1)``."""
    world_size = get_world_size() if world_size is None else world_size
    rank = get_rank() if rank is None else rank
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in 0..{world_size - 1}")
    return rank, world_size


def launcher_is_rank_zero(environ: Mapping[str, str] | None = None) -> bool:
    """True unless the launcher's environment (torchrun, SLURM) names a rank other than 0."""
    environ = os.environ if environ is None else environ
    return all(environ.get(k, "0") == "0" for k in ("RANK", "LOCAL_RANK", "SLURM_PROCID"))


def is_rank_zero() -> bool:
    """Rank 0 of the process group if one is joined, else by the launcher's environment."""
    return get_rank() == 0 if _initialised() else launcher_is_rank_zero()


def local_rank(environ: Mapping[str, str] | None = None) -> int:
    """This process's index on its node (``LOCAL_RANK``), 0 without a launcher."""
    environ = os.environ if environ is None else environ
    return int(environ.get("LOCAL_RANK", 0))


def resolve_device(name: str = "auto") -> torch.device:
    """``auto``: CUDA if available, else CPU; a bare ``cuda`` means this process's GPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":  # under torchrun, one GPU per process
        return torch.device("cuda", local_rank())
    return torch.device(name)


def barrier() -> None:
    """``dist.barrier()`` when several processes run, else nothing."""
    if get_world_size() > 1:
        dist.barrier()


@contextmanager
def distributed(device: torch.device) -> Iterator[None]:
    """Join the process group that ``torchrun`` describes (``WORLD_SIZE`` > 1), if not yet joined.

    gloo on CPU, nccl on CUDA. The group is left again at the end if it was joined here.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    joined = False
    if world_size > 1 and not (dist.is_available() and dist.is_initialized()):
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        joined = True
    try:
        yield
    finally:
        if joined:
            dist.destroy_process_group()


def worker_rank_overrides(environ: Mapping[str, str] | None = None) -> list[str]:
    """Hydra overrides that keep ranks > 0 of a ``torchrun`` launch from creating run folders.

    Every rank runs ``@hydra.main``; without these, each would make its own timestamped run
    folder and log file. Rank 0 keeps the normal run folder (the default output).
    """
    environ = os.environ if environ is None else environ
    if environ.get("RANK", "0") == "0":
        return []
    return ["hydra.run.dir=.", "hydra.output_subdir=null", "hydra/job_logging=stdout"]


def sum_over_ranks(value: int, device: torch.device) -> int:
    """``value`` summed over all processes (itself when one runs)."""
    if get_world_size() == 1:
        return value
    total = torch.tensor([value], dtype=torch.int64, device=device)
    dist.all_reduce(total)
    return int(total.item())


def gather_objects(value: T) -> list[T]:
    """``value`` of every process, in rank order (``[value]`` when one runs); picklable values.

    A collective (``all_gather_object``): every rank must call it.
    """
    if get_world_size() == 1:
        return [value]
    values: list[T | None] = [None] * get_world_size()
    dist.all_gather_object(values, value)
    return values  # type: ignore[return-value]


def gather_lists(items: list[T]) -> list[T]:
    """The lists of all processes joined in rank order (:func:`gather_objects` of each)."""
    return [item for part in gather_objects(list(items)) for item in part]
