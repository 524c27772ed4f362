"""Samplers: seeded infinite stream, rank disjointness, exact resume, unrepeated eval shards."""

from __future__ import annotations

from collections import Counter
from itertools import islice

import pytest

from vanseg.data.sampler import InfiniteSampler, ShardSampler


def take(sampler, n):
    return list(islice(iter(sampler), n))


def test_same_seed_same_stream_other_seed_other_stream():
    assert take(InfiniteSampler(20, seed=3), 50) == take(InfiniteSampler(20, seed=3), 50)
    assert take(InfiniteSampler(20, seed=3), 50) != take(InfiniteSampler(20, seed=4), 50)


def test_every_pass_is_a_new_permutation():
    indices = [index for index, _ in take(InfiniteSampler(7, seed=0), 7 * 4)]
    passes = [indices[i : i + 7] for i in range(0, 28, 7)]
    for p in passes:
        assert sorted(p) == list(range(7))  # each pass sees every sample exactly once
    assert len({tuple(p) for p in passes}) > 1  # and reshuffles


def test_without_shuffle_walks_in_order():
    assert [i for i, _ in take(InfiniteSampler(3, shuffle=False), 7)] == [0, 1, 2, 0, 1, 2, 0]


def test_sample_seeds_are_unique_per_position():
    seeds = [seed for _, seed in take(InfiniteSampler(5, seed=0), 200)]
    assert len(set(seeds)) == 200


def test_ranks_split_the_global_stream_without_overlap():
    size, world = 10, 3
    single = take(InfiniteSampler(size, seed=1, rank=0, world_size=1), 60)
    per_rank = [take(InfiniteSampler(size, seed=1, rank=r, world_size=world), 20) for r in range(3)]
    for r in range(world):
        assert per_rank[r] == single[r::world]  # rank r owns positions r, r + W, ...
    # Within one pass over the data (global positions 0..9) no index is served twice.
    first_pass = [per_rank[p % world][p // world][0] for p in range(size)]
    assert sorted(first_pass) == list(range(size))
    # Over 6 full passes every index is served exactly 6 times in total.
    counts = Counter(index for items in per_rank for index, _ in items)
    assert set(counts.values()) == {6}


def test_defaults_without_torch_distributed():
    sampler = InfiniteSampler(4)
    assert (sampler.rank, sampler.world_size) == (0, 1)
    with pytest.raises(ValueError, match="rank 2"):
        InfiniteSampler(4, rank=2, world_size=2)


def test_resume_continues_the_stream_exactly():
    full = take(InfiniteSampler(13, seed=5, rank=1, world_size=2), 100)
    resumed = InfiniteSampler(13, seed=5, rank=1, world_size=2, start=37)
    assert take(resumed, 63) == full[37:]

    fresh = InfiniteSampler(13, seed=5, rank=1, world_size=2)
    fresh.load_state_dict({"seed": 5, "world_size": 2, "start": 37})
    assert take(fresh, 63) == full[37:]
    assert fresh.state_dict() == {"seed": 5, "world_size": 2, "start": 37}


def test_resume_refuses_another_seed_or_world_size():
    sampler = InfiniteSampler(13, seed=5, rank=0, world_size=2)
    with pytest.raises(ValueError, match="seed=6"):
        sampler.load_state_dict({"seed": 6, "world_size": 2, "start": 1})
    with pytest.raises(ValueError, match="world_size=4"):
        sampler.load_state_dict({"seed": 5, "world_size": 4, "start": 1})


def test_num_yielded_counts_items_handed_out():
    sampler = InfiniteSampler(5, start=3)
    it = iter(sampler)
    next(it), next(it)
    assert sampler.num_yielded == 5


@pytest.mark.parametrize(("size", "world"), [(10, 3), (2000, 8), (5, 5), (7, 1)])
def test_shards_cover_every_index_exactly_once(size, world):
    shards = [list(ShardSampler(size, rank=r, world_size=world)) for r in range(world)]
    flat = [i for shard in shards for i in shard]
    assert flat == list(range(size))  # sorted, no duplicates, no padding
    assert max(map(len, shards)) - min(map(len, shards)) <= 1
    assert [len(ShardSampler(size, r, world)) for r in range(world)] == list(map(len, shards))


def test_shards_need_a_sample_per_rank():
    with pytest.raises(ValueError, match="3 evaluation samples for 4 ranks"):
        ShardSampler(3, rank=0, world_size=4)
