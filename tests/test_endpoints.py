"""EndpointGroup: P2C selection, zones, outlier ejection, panic, routes, updates, views."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import anyio
import pytest

import asyncres
import asyncres.sharding
from asyncres import Endpoint, EndpointGroup
from asyncres.backoff import Constant
from asyncres.testing import capture_events

pytestmark = pytest.mark.anyio


class Replicas:
    """Fake replicas: each address answers after ``latency`` or fails when marked down."""

    def __init__(self, latency: float = 0.01) -> None:
        self.latency = latency
        self.down: set[str] = set()
        self.calls: list[str] = []

    async def __call__(self, endpoint: Endpoint, path: str = "/") -> str:
        self.calls.append(endpoint.address)
        await anyio.sleep(self.latency)
        if endpoint.address in self.down:
            raise ConnectionError(f"{endpoint.address} is down")
        return f"{endpoint.address}{path}"


def group(*addresses: str, **options: Any) -> EndpointGroup:
    options.setdefault("rng", random.Random(7))
    return EndpointGroup(list(addresses), **options)


async def test_power_of_two_choices_sends_the_next_attempt_to_the_idle_endpoint() -> None:
    endpoints = group("a", "b")
    held: list[str] = []
    release = anyio.Event()

    async def hold(endpoint: Endpoint) -> None:
        held.append(endpoint.address)
        await release.wait()

    quick = Replicas(latency=0.01)
    async with anyio.create_task_group() as tg:
        tg.start_soon(endpoints.call, hold)
        await anyio.sleep(0.01)
        for _ in range(10):  # two endpoints, both compared: always the idle one
            await endpoints.call(quick)
        release.set()
    assert len(held) == 1
    assert set(quick.calls) == {"b" if held == ["a"] else "a"}
    stats = endpoints.statistics()
    assert all(row.outstanding == 0 for row in stats.endpoints)
    assert sum(row.successes for row in stats.endpoints) == 11


async def test_load_spreads_by_weight() -> None:
    endpoints = EndpointGroup(
        [Endpoint("big", weight=3.0), Endpoint("small", weight=1.0)], rng=random.Random(1)
    )
    replicas = Replicas(latency=0.05)
    async with anyio.create_task_group() as tg:
        for _ in range(400):
            tg.start_soon(endpoints.call, replicas)
            await anyio.sleep(0.0025)  # ~20 in flight: P2C compares loads per weight
    share = Counter(replicas.calls)["big"] / len(replicas.calls)
    assert 0.65 < share < 0.85, share


async def test_a_route_retries_on_another_endpoint_in_another_zone() -> None:
    endpoints = EndpointGroup(
        [Endpoint("a1", zone="a"), Endpoint("a2", zone="a"), Endpoint("b1", zone="b")],
        zone="a",
        rng=random.Random(3),
    )
    replicas = Replicas()
    replicas.down = {"a1", "a2"}
    route = endpoints.route()
    retry = asyncres.Retry(on=ConnectionError, max_attempts=3, backoff=Constant(0.01))
    assert await retry.call(route, replicas, "/x") == "b1/x"
    # The first attempt stays in the caller's zone; the retry leaves the zone at once.
    assert route.tried[0].zone == "a"
    assert [e.address for e in route.tried][1] == "b1"


async def test_a_hedge_goes_to_a_different_endpoint() -> None:
    class Slow(Replicas):
        async def __call__(self, endpoint: Endpoint, path: str = "/") -> str:
            self.calls.append(endpoint.address)
            await anyio.sleep(1.0 if len(self.calls) == 1 else 0.01)
            return endpoint.address

    endpoints = group("r1", "r2", "r3")
    replicas = Slow()
    route = endpoints.route()
    hedge = asyncres.Hedge(delay=0.05)
    winner = await hedge.call(route, replicas)
    assert len(set(replicas.calls)) == 2
    assert winner == replicas.calls[1]


async def test_the_callers_zone_is_preferred_until_it_is_unhealthy() -> None:
    endpoints = EndpointGroup(
        [
            Endpoint("a1", zone="a"),
            Endpoint("a2", zone="a"),
            Endpoint("b1", zone="b"),
            Endpoint("c1", zone="c"),
        ],
        zone="a",
        consecutive_failures=1,
        max_ejection_percent=0.5,
        zone_threshold=0.6,
        rng=random.Random(5),
    )
    replicas = Replicas()
    for _ in range(20):
        await endpoints.call(replicas)
    assert set(replicas.calls) == {"a1", "a2"}
    replicas.down = {"a1"}
    with pytest.raises(ConnectionError):
        while True:  # until a1 is picked and ejected
            await endpoints.call(replicas)
    replicas.calls.clear()
    for _ in range(20):  # 1 of 2 healthy in zone a < 0.6: every zone, a1 left out
        await endpoints.call(replicas)
    assert set(replicas.calls) == {"a2", "b1", "c1"}


async def test_consecutive_failures_eject_for_a_growing_time_then_readmit() -> None:
    endpoints = group("good", "bad", "other", consecutive_failures=5, base_ejection_time=30.0)
    replicas = Replicas()
    replicas.down = {"bad"}
    with capture_events() as events:
        start = anyio.current_time()
        while "bad" not in {
            row.endpoint.address for row in endpoints.statistics().endpoints if row.ejected
        }:
            try:
                await endpoints.call(replicas)
            except ConnectionError:
                pass
        assert replicas.calls.count("bad") == 5
        ejected = [e for e in events if isinstance(e, asyncres.events.EndpointEjected)]
        assert [(e.endpoint, e.seconds, e.ejections) for e in ejected] == [("bad", 30.0, 1)]
        replicas.calls.clear()
        for _ in range(30):
            await endpoints.call(replicas)
        assert "bad" not in replicas.calls
        await anyio.sleep_until(start + 31.0)
        replicas.calls.clear()
        while replicas.calls.count("bad") < 5:  # readmitted, still failing: out again
            try:
                await endpoints.call(replicas)
            except ConnectionError:
                pass
    readmitted = [e for e in events if isinstance(e, asyncres.events.EndpointReadmitted)]
    assert [e.endpoint for e in readmitted] == ["bad"]
    ejected = [e for e in events if isinstance(e, asyncres.events.EndpointEjected)]
    assert [(e.seconds, e.ejections) for e in ejected] == [(30.0, 1), (60.0, 2)]


async def test_at_most_max_ejection_percent_are_ejected_and_panic_uses_everyone() -> None:
    # 10 endpoints, 20 % ejectable: two at most, whatever else fails.
    names = [f"e{i}" for i in range(10)]
    endpoints = group(*names, consecutive_failures=1, max_ejection_percent=0.2)
    replicas = Replicas()
    replicas.down = set(names[:5])
    for _ in range(200):
        try:
            await endpoints.call(replicas)
        except ConnectionError:
            pass
    stats = endpoints.statistics()
    assert stats.healthy == 8
    assert not stats.panic
    # A panic threshold above the healthy share: ejections ignored, all ten used.
    panicky = group(
        "p0", "p1", "p2", consecutive_failures=1, max_ejection_percent=1.0, panic_threshold=0.9
    )
    replicas = Replicas()
    replicas.down = {"p0"}
    for _ in range(30):
        try:
            await panicky.call(replicas)
        except ConnectionError:
            pass
    stats = panicky.statistics()
    assert stats.panic
    assert stats.healthy == 2
    replicas.calls.clear()
    for _ in range(30):
        try:
            await panicky.call(replicas)
        except ConnectionError:
            pass
    assert "p0" in replicas.calls  # in panic the ejected one is used again


async def test_one_ejectable_endpoint_at_least_even_in_a_small_group() -> None:
    endpoints = group("x", "y", "z", consecutive_failures=2)  # 10 % of 3 rounds to 0
    replicas = Replicas()
    replicas.down = {"x"}
    for _ in range(30):
        try:
            await endpoints.call(replicas)
        except ConnectionError:
            pass
    assert endpoints.statistics().healthy == 2


async def test_errors_outside_on_are_answers_and_cancellation_is_not_counted() -> None:
    endpoints = group("only", on=ConnectionError, consecutive_failures=1)

    async def not_found(endpoint: Endpoint) -> None:
        raise LookupError("404")

    async def slow(endpoint: Endpoint) -> None:
        await anyio.sleep(10)

    with pytest.raises(LookupError):
        await endpoints.call(not_found)
    with anyio.move_on_after(0.1):
        await endpoints.call(slow)
    (row,) = endpoints.statistics().endpoints
    assert (row.successes, row.failures, row.outstanding, row.ejected) == (1, 0, 0, False)


async def test_update_keeps_what_was_learnt_and_spares_attempts_in_flight() -> None:
    endpoints = group("keep", "drop", consecutive_failures=1, max_ejection_percent=1.0)
    replicas = Replicas(latency=0.5)
    replicas.down = {"keep"}
    results: list[str] = []

    async def one() -> None:
        try:
            results.append(await endpoints.call(replicas))
        except ConnectionError:
            results.append("failed")

    async with anyio.create_task_group() as tg:
        tg.start_soon(one)
        tg.start_soon(one)
        await anyio.sleep(0.1)  # one attempt on each, in flight
        endpoints.update([Endpoint("keep", zone="z"), "new"])
    assert sorted(results) == ["drop/", "failed"]
    by_address = {row.endpoint.address: row for row in endpoints.statistics().endpoints}
    assert set(by_address) == {"keep", "new"}
    assert by_address["keep"].ejected  # its history stayed
    assert by_address["keep"].endpoint.zone == "z"
    assert all(row.outstanding == 0 for row in by_address.values())


async def test_a_key_view_uses_its_shard_and_shares_endpoint_state() -> None:
    names = [f"w{i}" for i in range(8)]
    endpoints = group(*names, consecutive_failures=1, max_ejection_percent=1.0)
    view = endpoints.for_key("tenant-42", 2)
    assert view is endpoints.for_key("tenant-42", 2)  # cached
    shard = {e.address for e in view.endpoints}
    assert len(shard) == 2
    assert shard == set(asyncres.sharding.shuffle_shard("tenant-42", names, 2))
    replicas = Replicas()
    for _ in range(20):
        await view.call(replicas)
    assert set(replicas.calls) <= shard
    replicas.down = shard
    for _ in range(4):
        with pytest.raises(ConnectionError):
            await view.call(replicas)
    parent = {row.endpoint.address: row for row in endpoints.statistics().endpoints}
    assert all(parent[a].ejected for a in shard)  # learnt through the view


def test_bad_configuration_names_the_parameter() -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"endpoints": []}, "`endpoints`"),
        ({"endpoints": ["a", "a"]}, "must not repeat"),
        ({"endpoints": [3]}, "`endpoints`"),
        ({"endpoints": ["a"], "consecutive_failures": 0}, "`consecutive_failures`"),
        ({"endpoints": ["a"], "max_ejection_percent": 1.5}, "`max_ejection_percent`"),
        ({"endpoints": ["a"], "panic_threshold": -0.1}, "`panic_threshold`"),
        ({"endpoints": ["a"], "zone_threshold": 2}, "`zone_threshold`"),
        ({"endpoints": ["a"], "base_ejection_time": 0}, "`base_ejection_time`"),
        ({"endpoints": ["a"], "base_ejection_time": 60, "max_ejection_time": 30}, "`max_ejection"),
        ({"endpoints": ["a"], "zone": ""}, "`zone`"),
    ]
    for options, message in cases:
        endpoints = options.pop("endpoints")
        with pytest.raises(ValueError, match=message):
            EndpointGroup(endpoints, **options)
    with pytest.raises(ValueError, match="`weight`"):
        Endpoint("a", weight=0)
    with pytest.raises(ValueError, match="`address`"):
        Endpoint("")
    with pytest.raises(ValueError, match="`endpoints`"):
        group("a").update([])


@pytest.mark.parametrize("dark", ["refused", "blackholed"])
def test_a_dark_zone_costs_the_protected_client_under_one_percent(dark: str) -> None:
    """The zone-outage evidence of benchmarks/endpoints.py, asserted: through an
    EndpointGroup >= 99 % success at <= 1.6 x the surviving zones' share; round robin with
    same-address retries loses about a third."""
    from trio.testing import MockClock

    from benchmarks.endpoints import _zone_outage

    def run(client: str) -> dict[str, float]:
        options = {"clock": MockClock(autojump_threshold=0)}
        return anyio.run(_zone_outage, client, dark, backend="trio", backend_options=options)

    protected, naive = run("protected"), run("naive")
    assert protected["success"] >= 0.99, protected
    assert max(protected["share_a"], protected["share_b"]) <= 1.6, protected
    assert protected["after"] == 1.0
    assert 0.6 < naive["success"] < 0.75, naive
