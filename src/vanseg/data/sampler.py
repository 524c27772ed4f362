"""Samplers for iteration-based training and unrepeated distributed evaluation.

Training runs for a number of steps, not epochs. `InfiniteSampler` walks an endless global
stream made of one seeded permutation of the dataset after another; rank ``r`` of ``W`` takes
stream positions ``r, r + W, r + 2W, ...``, so ranks never draw the same position and the whole
stream depends only on the seed. Each item is ``(index, sample_seed)``: the dataset seeds the
augmentation of that item with ``sample_seed``, which makes a sample bitwise reproducible from
``(seed, position)`` alone, independent of worker count or prefetching. Resuming is therefore
just starting the stream at the number of samples a rank has consumed (``start``).

`ShardSampler` splits an evaluation set into contiguous, sorted, non-overlapping shards with
no padding, unlike ``DistributedSampler``, which repeats samples (docs/pitfalls.md B1).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
from torch.utils.data import Sampler

from vanseg.utils.distributed import rank_and_world_size

__all__ = ["InfiniteSampler", "ShardSampler"]


class InfiniteSampler(Sampler[tuple[int, int]]):
    """Endless, seeded, rank-disjoint stream of ``(index, sample_seed)``.

    Global position ``p`` holds ``perm_e[p % n]`` with ``e = p // n`` and ``perm_e`` the
    permutation drawn from ``numpy.random.default_rng([seed, e])``; its sample seed comes from
    ``SeedSequence([seed, p])``. This rank yields its ``k``-th item from position
    ``k * world_size + rank``, for ``k = start, start + 1, ...``.

    To resume exactly, store the number of samples this rank has consumed (for example
    ``global_step * accumulate_grad_batches * batch_size``) and pass it as ``start``, or
    through `load_state_dict`. ``num_yielded`` counts what the iterator handed out, which runs
    ahead of what training consumed when a ``DataLoader`` prefetches.

    Args:
        size: Number of samples in the dataset.
        seed: Seed of the whole stream; the same on every rank.
        shuffle: Permute each pass; ``False`` walks ``0..n-1`` repeatedly.
        rank: This process's rank; default from ``torch.distributed`` (0 if not initialised).
        world_size: Number of processes; default from ``torch.distributed`` (1).
        start: Number of items this rank already consumed.
    """

    def __init__(
        self,
        size: int,
        seed: int = 0,
        shuffle: bool = True,
        rank: int | None = None,
        world_size: int | None = None,
        start: int = 0,
    ) -> None:
        if size <= 0:
            raise ValueError(f"InfiniteSampler needs a non-empty dataset, got size={size}")
        if start < 0:
            raise ValueError(f"start must be >= 0, got {start}")
        self.size = size
        self.seed = seed
        self.shuffle = shuffle
        self.rank, self.world_size = rank_and_world_size(rank, world_size)
        self.start = start
        self.num_yielded = start
        self._perm_cache: tuple[int, np.ndarray] | None = None

    def _permutation(self, epoch: int) -> np.ndarray:
        if self._perm_cache is None or self._perm_cache[0] != epoch:
            if self.shuffle:
                perm = np.random.default_rng([self.seed, epoch]).permutation(self.size)
            else:
                perm = np.arange(self.size)
            self._perm_cache = (epoch, perm)
        return self._perm_cache[1]

    def item(self, k: int) -> tuple[int, int]:
        """This rank's ``k``-th item ``(index, sample_seed)``, counted from the stream start."""
        position = k * self.world_size + self.rank
        epoch, offset = divmod(position, self.size)
        index = int(self._permutation(epoch)[offset])
        sample_seed = int(np.random.SeedSequence([self.seed, position]).generate_state(1)[0])
        return index, sample_seed

    def __iter__(self) -> Iterator[tuple[int, int]]:
        k = self.start
        self.num_yielded = k
        while True:
            item = self.item(k)
            k += 1
            self.num_yielded = k
            yield item

    def state_dict(self) -> dict[str, Any]:
        """``{"seed", "world_size", "start"}``: what `load_state_dict` needs to resume."""
        return {"seed": self.seed, "world_size": self.world_size, "start": self.start}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume at ``state["start"]`` items; the seed and world size must match.

        Raises:
            ValueError: The stream was made with another seed or world size, so positions
                would not line up.
        """
        if state["seed"] != self.seed or state["world_size"] != self.world_size:
            raise ValueError(
                f"Cannot resume a sampler stream made with seed={state['seed']}, world_size="
                f"{state['world_size']} as seed={self.seed}, world_size={self.world_size}."
            )
        self.start = int(state["start"])
        self.num_yielded = self.start


class ShardSampler(Sampler[int]):
    """Contiguous, unrepeated shard of ``range(size)`` for one rank (evaluation).

    Rank ``r`` gets indices ``r * size // W`` to ``(r + 1) * size // W``: every sample is seen
    exactly once across ranks, in sorted order, shard sizes differing by at most one.

    Args:
        size: Number of samples.
        rank: This process's rank; default from ``torch.distributed``.
        world_size: Number of processes; default from ``torch.distributed``.

    Raises:
        ValueError: Fewer samples than ranks (every rank needs one, docs/pitfalls.md B2).
    """

    def __init__(self, size: int, rank: int | None = None, world_size: int | None = None) -> None:
        self.rank, self.world_size = rank_and_world_size(rank, world_size)
        if size < self.world_size:
            raise ValueError(
                f"{size} evaluation samples for {self.world_size} ranks: every rank needs at "
                "least one; use fewer devices or a larger validation set."
            )
        self.begin = self.rank * size // self.world_size
        self.end = (self.rank + 1) * size // self.world_size

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.begin, self.end))

    def __len__(self) -> int:
        return self.end - self.begin
