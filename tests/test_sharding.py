"""asyncres.sharding: shuffle shards by rendezvous hashing, and their blast radius."""

from __future__ import annotations

import itertools
import random
from collections import Counter

import pytest

from asyncres import Endpoint
from asyncres.sharding import blast_radius, shuffle_shard

WORKERS = [f"10.0.0.{i}:8000" for i in range(1, 9)]


def test_the_amazon_builders_library_figures() -> None:
    small = blast_radius(8, 2)
    assert small.shards == 28
    assert small.share_all == pytest.approx(1 / 28)
    assert small.share_any == pytest.approx(13 / 28)  # 1 - C(6,2)/C(8,2)
    assert sum(small.overlap) == pytest.approx(1.0)
    assert blast_radius(100, 5).shards == 75_287_520


def test_a_shard_ignores_the_order_of_the_list_and_endpoints_objects_work_too() -> None:
    shuffled = WORKERS[:]
    random.Random(3).shuffle(shuffled)
    for key in (f"tenant-{i}" for i in range(200)):
        assert set(shuffle_shard(key, WORKERS, 3)) == set(shuffle_shard(key, shuffled, 3))
    objects = [Endpoint(address, zone="z") for address in WORKERS]
    chosen = shuffle_shard("tenant-7", objects, 2)
    assert [e.address for e in chosen] == shuffle_shard("tenant-7", WORKERS, 2)


def test_adding_one_endpoint_moves_a_key_by_at_most_that_endpoint() -> None:
    grown = [*WORKERS, "10.0.0.9:8000"]
    moved = 0
    keys = [f"customer-{i}" for i in range(4000)]
    for key in keys:
        before, after = set(shuffle_shard(key, WORKERS, 2)), set(shuffle_shard(key, grown, 2))
        changed = after - before
        assert changed <= {"10.0.0.9:8000"}
        moved += bool(changed)
    # The new endpoint should hold its share: k / (n + 1) of the keys' slots.
    assert moved / len(keys) == pytest.approx(2 / 9, abs=0.03)


def test_shards_are_spread_evenly_and_a_poison_key_takes_out_only_its_own() -> None:
    keys = [f"k{i}" for i in range(28_000)]
    shards = Counter(frozenset(shuffle_shard(key, WORKERS, 2)) for key in keys)
    assert len(shards) == 28
    assert all(700 < count < 1300 for count in shards.values()), shards
    poison = frozenset(shuffle_shard("poison", WORKERS, 2))
    fully = sum(1 for key in keys if frozenset(shuffle_shard(key, WORKERS, 2)) <= poison)
    assert fully / len(keys) == pytest.approx(blast_radius(8, 2).share_all, abs=0.006)


def test_every_shard_is_reachable() -> None:
    seen = {frozenset(shuffle_shard(f"t{i}", WORKERS[:5], 2)) for i in range(2000)}
    assert seen == {frozenset(pair) for pair in itertools.combinations(WORKERS[:5], 2)}


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: shuffle_shard("t", WORKERS, 9), "`k` must be <="),
        (lambda: shuffle_shard("t", WORKERS, 0), "`k` must be >= 1"),
        (lambda: shuffle_shard("t", [], 1), "`endpoints`"),
        (lambda: shuffle_shard("t", ["a", "a"], 1), "must not repeat"),
        (lambda: shuffle_shard(7, WORKERS, 1), "`key`"),  # type: ignore[arg-type]
        (lambda: blast_radius(3, 4), "`k` must be <= `n`"),
        (lambda: blast_radius(0, 1), "`n`"),
    ],
)
def test_bad_input_names_the_parameter(call: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()  # type: ignore[operator]
