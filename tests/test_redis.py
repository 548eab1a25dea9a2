"""asyncres.redis.RedisStore against a real redis-server on 127.0.0.1 (both backends, real
clock): the fleet's view reaches every member, and Redis trouble never fails a call.

The multi-process fleet (four workers sharing a breaker, a budget, a rate limit) is in
tests/test_redis_fleet.py.
"""

from __future__ import annotations

import contextlib
import gc
import warnings
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
from local_redis import RedisServer, start_redis

import asyncres
from asyncres import chaos, events
from asyncres.redis import RedisStore

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.real_clock,
    # coredis 6.9 creates six anyio memory streams per connection object and never closes
    # them when the connect fails (refused, reset): garbage, warned about at collection,
    # not a socket or a task. Only that warning is ignored here.
    pytest.mark.filterwarnings(
        r"ignore:Exception ignored in. <function MemoryObject(Send|Receive)Stream.__del__"
        ":pytest.PytestUnraisableExceptionWarning"
    ),
]


@pytest.fixture(autouse=True)
def collect_coredis_garbage() -> Iterator[None]:
    """Collect, before the next test (maybe another module's), the streams coredis leaves
    behind in reference cycles when a connect fails (see the filter above)."""
    yield
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    server = start_redis()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis(redis_server: RedisServer) -> RedisServer:
    if redis_server.process is None:
        redis_server.start()
    redis_server.flush()
    return redis_server


class Seen:
    def __init__(self) -> None:
        self.events: list[events.Event] = []

    def __call__(self, event: events.Event) -> None:
        self.events.append(event)

    def of(self, kind: type[events.Event]) -> list[events.Event]:
        return [event for event in self.events if isinstance(event, kind)]


async def ok() -> str:
    return "ok"


async def boom() -> None:
    raise ConnectionError("dependency down")


async def until(predicate: Any, seconds: float = 3.0) -> float:
    """Poll ``predicate`` every 10 ms for at most ``seconds``; the time it took."""
    start = anyio.current_time()
    with anyio.fail_after(seconds):
        while not predicate():  # noqa: ASYNC110 - a plain state read, no event to wait on
            await anyio.sleep(0.01)
    return anyio.current_time() - start


# -- configuration ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "parameter"),
    [
        ({}, "`url`"),
        ({"url": "127.0.0.1:6379"}, "`url`"),
        ({"url": "redis://x", "client": object()}, "`url`"),
        ({"url": "redis://x", "prefix": ""}, "`prefix`"),
        ({"url": "redis://x", "flush_interval": 0}, "`flush_interval`"),
        ({"url": "redis://x", "timeout": -1}, "`timeout`"),
        ({"url": "redis://x", "max_backoff": float("nan")}, "`max_backoff`"),
    ],
)
def test_bad_store_configuration_names_the_parameter(
    kwargs: dict[str, Any], parameter: str
) -> None:
    with pytest.raises(ValueError, match=parameter):
        RedisStore(**kwargs)


@pytest.mark.parametrize(
    "make",
    [
        lambda store: asyncres.CircuitBreaker(store=store),
        lambda store: asyncres.RetryBudget(store=store, name=""),
        lambda store: asyncres.Throttle(store=store),
        lambda store: asyncres.RateLimit(10, store=store),
    ],
)
def test_a_shared_policy_needs_a_name(make: Any) -> None:
    with pytest.raises(ValueError, match="`name` is required with `store`"):
        make(RedisStore("redis://127.0.0.1:1/0"))


def test_store_must_be_a_store_and_names_unique() -> None:
    with pytest.raises(ValueError, match="`store` must be a state store"):
        asyncres.CircuitBreaker(name="x", store=object())  # type: ignore[arg-type]
    store = RedisStore("redis://127.0.0.1:1/0")
    with pytest.raises(ValueError, match="`window_type` must be 'time'"):
        asyncres.CircuitBreaker(name="x", store=store, window_type="count")
    first = asyncres.CircuitBreaker(name="x", store=store)
    with pytest.raises(ValueError, match="`name` 'x' is already used by another breaker"):
        asyncres.CircuitBreaker(name="x", store=store)
    asyncres.RetryBudget(name="x", store=store)  # another kind: its own namespace
    assert first.state is asyncres.CircuitState.CLOSED


# -- the fleet's view --------------------------------------------------------------------


async def test_one_members_open_reaches_the_other_within_the_flush_interval(
    redis: RedisServer,
) -> None:
    """Two stores are two members of a fleet: A's breaker opens, B's follows; B's probe
    closes it and A follows."""
    a_store, b_store = RedisStore(redis.url, prefix="t1"), RedisStore(redis.url, prefix="t1")
    a = asyncres.CircuitBreaker(name="dep", store=a_store, failure_threshold=3, recovery_time=0.3)
    b = asyncres.CircuitBreaker(name="dep", store=b_store, failure_threshold=3, recovery_time=0.3)
    async with a_store, b_store:
        for _ in range(3):
            with pytest.raises(ConnectionError):
                await a.call(boom)
        assert a.state is asyncres.CircuitState.OPEN
        took = await until(lambda: b.state is asyncres.CircuitState.OPEN)
        assert took <= 0.5  # one flush interval (0.1 s) and two round trips, with margin
        with pytest.raises(asyncres.CircuitOpenError):
            await b.call(ok)
        await anyio.sleep(0.35)  # the recovery time: B probes, succeeds, closes the fleet
        assert await b.call(ok) == "ok"
        assert b.state is asyncres.CircuitState.CLOSED
        await until(lambda: a.state is asyncres.CircuitState.CLOSED, 1.0)
        assert a_store.statistics().available
        assert a_store.statistics().syncs > 0


async def test_the_fleets_failures_trip_it_not_each_members(redis: RedisServer) -> None:
    """Threshold 10: two members failing 6 times each open the fleet's circuit (12 >= 10)
    although neither saw 10 in a row."""
    stores = [RedisStore(redis.url, prefix="t2") for _ in range(2)]
    breakers = [
        asyncres.CircuitBreaker(name="dep", store=store, failure_threshold=10, recovery_time=5)
        for store in stores
    ]
    async with stores[0], stores[1]:
        for _ in range(6):
            for breaker in breakers:
                with pytest.raises(ConnectionError):
                    await breaker.call(boom)
        assert all(b.state is asyncres.CircuitState.CLOSED for b in breakers)  # locally 6
        await until(lambda: all(b.state is asyncres.CircuitState.OPEN for b in breakers), 1.0)


async def test_a_shared_budget_bounds_the_fleets_retries(redis: RedisServer) -> None:
    """Two members share a reserve of 10 retries: together they get 10, not 20."""
    stores = [RedisStore(redis.url, prefix="t3") for _ in range(2)]
    budgets = [
        asyncres.RetryBudget(name="dep", store=s, min_per_second=1.0, ttl=10.0, ratio=0.1)
        for s in stores
    ]
    async with stores[0], stores[1]:
        granted = 0
        for _ in range(6):  # the first member spends, the store syncs, the second sees it
            granted += budgets[0].try_withdraw()
        await stores[0].sync()
        await stores[1].sync()
        for _ in range(10):
            granted += budgets[1].try_withdraw()
        assert granted == 10
        assert budgets[1].statistics().available < 1.0


async def test_one_members_overload_signal_holds_the_fleets_budget_at_the_floor(
    redis: RedisServer,
) -> None:
    """A 429 seen by one member (its `Retry` calls `signal_overload`) holds every member's
    adaptive ratio at ``min_ratio`` from the next sync on, and lets go as it does locally."""
    stores = [RedisStore(redis.url, prefix="t13") for _ in range(2)]
    budgets = [asyncres.RetryBudget(name="dep", store=s, ttl=2.0) for s in stores]
    async with stores[0], stores[1]:
        for budget in budgets:  # retries that succeed: the adaptive ratio climbs
            for _ in range(10):
                budget.deposit()
                assert budget.try_withdraw()
                budget.refund()
        await stores[0].sync()
        await stores[1].sync()
        assert budgets[1].statistics().ratio == pytest.approx(1.0)
        budgets[0].signal_overload()
        assert not budgets[1].statistics().overloaded  # not synced yet
        await stores[0].sync()
        await stores[1].sync()
        stats = budgets[1].statistics()
        assert stats.overloaded
        assert stats.ratio == pytest.approx(0.1)
        await anyio.sleep(0.3)  # the hold is ttl / 10 = 0.2 s, and no new signal came
        await stores[1].sync()
        assert not budgets[1].statistics().overloaded


async def test_a_shared_throttle_engages_on_the_fleets_refusals(redis: RedisServer) -> None:
    """A member that has seen no refusal itself throttles while the fleet is refused."""
    stores = [RedisStore(redis.url, prefix="t4") for _ in range(2)]
    throttles = [asyncres.Throttle(name="dep", store=s) for s in stores]
    async with stores[0], stores[1]:
        for _ in range(200):  # refused, or throttled locally once refused enough
            with pytest.raises((ConnectionError, asyncres.ThrottledError)):
                await throttles[0].call(boom)
        assert throttles[1].statistics().reject_probability == 0.0
        await stores[0].sync()
        await stores[1].sync()
        assert throttles[1].statistics().reject_probability > 0.5


async def test_a_shared_rate_limit_is_one_limit(redis: RedisServer) -> None:
    """Two members of RateLimit(20/s, burst 5) admit about 20/s between them."""
    stores = [RedisStore(redis.url, prefix="t5", flush_interval=0.05) for _ in range(2)]
    limits = [asyncres.RateLimit(20, burst=5, name="api", store=s) for s in stores]
    admitted = [0, 0]
    refusals: list[float] = []

    async def offer(i: int) -> None:
        for _ in range(60):  # 30/s each for 2 s: 60/s offered against 20/s
            try:
                await limits[i].call(ok)
                admitted[i] += 1
            except asyncres.RateLimitedError as exc:
                refusals.append(exc.retry_after)
            await anyio.sleep(1 / 30)

    async with stores[0], stores[1]:
        await anyio.sleep(0.2)
        async with anyio.create_task_group() as tg:
            tg.start_soon(offer, 0)
            tg.start_soon(offer, 1)
    total = sum(admitted)
    assert 30 <= total <= 50, admitted  # 2 s x 20/s + burst 5 = 45 at most
    assert min(admitted) > 0
    assert refusals
    assert all(after > 0 for after in refusals)


async def test_a_shared_rate_limits_keys_are_fleet_wide_and_bounded(redis: RedisServer) -> None:
    """``limit.key(k)`` with a store: each key is one limit for the fleet (two members of
    RateLimit(20/s, burst 5) offering 30/s each on one key admit about 20/s in total),
    keys do not share a budget, a key only one member uses gets the whole rate, and a
    process holds at most ``max_keys`` of them."""
    stores = [RedisStore(redis.url, prefix="t12", flush_interval=0.05) for _ in range(2)]
    limits = [asyncres.RateLimit(20, burst=5, name="api", store=s, max_keys=4) for s in stores]
    admitted: dict[tuple[int, str], int] = {}
    refusals: list[tuple[str | None, float]] = []

    async def offer(i: int, key: str, per_second: float, count: int) -> None:
        view = limits[i].key(key)
        for _ in range(count):
            try:
                await view.call(ok)
                admitted[i, key] = admitted.get((i, key), 0) + 1
            except asyncres.RateLimitedError as exc:
                refusals.append((exc.key, exc.retry_after))
            await anyio.sleep(1 / per_second)

    async with stores[0], stores[1]:
        await anyio.sleep(0.2)
        async with anyio.create_task_group() as tg:
            tg.start_soon(offer, 0, "shared", 30, 60)  # 2 s at 30/s from each member
            tg.start_soon(offer, 1, "shared", 30, 60)
            tg.start_soon(offer, 0, "alone", 15, 30)  # under the rate: all admitted
        both = admitted.get((0, "shared"), 0) + admitted.get((1, "shared"), 0)
        assert 30 <= both <= 50, admitted  # 2 s x 20/s + burst 5 = 45 at most
        assert min(admitted.get((0, "shared"), 0), admitted.get((1, "shared"), 0)) > 0
        assert admitted.get((0, "alone"), 0) >= 27, admitted  # not halved by the other member
        assert refusals
        assert {key for key, _ in refusals} == {"shared"}
        assert all(after > 0 for _, after in refusals)
        for n in range(10):  # ten more keys: the process keeps at most max_keys
            await limits[0].key(f"tenant-{n}").call(ok)
        assert len(limits[0]._replica.keys) <= 4  # type: ignore[union-attr]


# -- Redis trouble ---------------------------------------------------------------------


async def test_redis_killed_fails_no_call_and_the_store_resyncs(redis: RedisServer) -> None:
    seen = Seen()
    store = RedisStore(redis.url, prefix="t6", max_backoff=0.5, listeners=[seen])
    other_store = RedisStore(redis.url, prefix="t6", max_backoff=0.5)
    breaker = asyncres.CircuitBreaker(name="dep", store=store, failure_threshold=3)
    other = asyncres.CircuitBreaker(
        name="dep", store=other_store, failure_threshold=3, recovery_time=30
    )
    limit = asyncres.RateLimit(1000, name="api", store=store)
    async with store, other_store:
        await anyio.sleep(0.2)
        redis.stop()
        for _ in range(50):  # a second of calls while Redis is gone: none fails
            assert await breaker.call(ok) == "ok"
            assert await limit.call(ok) == "ok"
            await anyio.sleep(0.02)
        assert seen.of(events.StoreUnavailable)
        assert not store.statistics().available
        redis.start()
        took = await until(lambda: store.statistics().available, 3.0)
        assert took <= 1.5  # max_backoff 0.5 s + a sync
        assert seen.of(events.StoreRecovered)
        # Resynced: an open elsewhere reaches this member again.
        for _ in range(3):
            with pytest.raises(ConnectionError):
                await other.call(boom)
        await until(lambda: breaker.state is asyncres.CircuitState.OPEN, 2.0)


@pytest.mark.parametrize(
    "fault",
    [
        pytest.param(lambda p: p.add(chaos.LatencyToxic(0.6)), id="latency"),
        pytest.param(lambda p: p.add(chaos.ResetPeerToxic()), id="reset"),
        pytest.param(lambda p: p.add(chaos.TimeoutToxic()), id="blackhole"),
        pytest.param(lambda p: setattr(p, "enabled", False), id="outage"),
    ],
)
async def test_redis_trouble_between_process_and_server_fails_no_call(
    redis: RedisServer, fault: Any
) -> None:
    """A FaultProxy between the store and redis-server: each kind of trouble makes the store
    unavailable (local state, an event), never a call fail; it recovers when it clears."""
    seen = Seen()
    async with chaos.FaultProxy(upstream=("127.0.0.1", redis.port)) as proxy:
        store = RedisStore(
            f"redis://127.0.0.1:{proxy.port}/0", prefix="t7", max_backoff=0.3, listeners=[seen]
        )
        breaker = asyncres.CircuitBreaker(name="dep", store=store, failure_threshold=50)
        budget = asyncres.RetryBudget(name="dep", store=store)
        async with store:
            await until(lambda: store.statistics().syncs > 0)
            fault(proxy)
            with anyio.fail_after(5.0):
                for _ in range(40):
                    assert await breaker.call(ok) == "ok"
                    budget.deposit()
                    await anyio.sleep(0.02)
            await until(lambda: bool(seen.of(events.StoreUnavailable)), 3.0)
            assert budget.try_withdraw()  # the local reserve
            proxy.clear()
            proxy.enabled = True
            await until(lambda: store.statistics().available, 4.0)
            assert seen.of(events.StoreRecovered)


async def test_cancelling_a_stuck_store_call_holds_nothing(redis: RedisServer) -> None:
    """A sync stuck on a black-holed Redis is cancelled cleanly: the cancellation propagates,
    a rate-limit waiter's cancellation gives nothing away, and the store exits promptly."""
    async with chaos.FaultProxy(upstream=("127.0.0.1", redis.port)) as proxy:
        store = RedisStore(f"redis://127.0.0.1:{proxy.port}/0", prefix="t8", timeout=5.0)
        limit = asyncres.RateLimit(5, burst=1, max_wait=2.0, name="api", store=store)
        async with store:
            await until(lambda: store.statistics().syncs > 0)
            proxy.add(chaos.TimeoutToxic())
            with anyio.move_on_after(0.1) as scope:
                await store.sync()
            assert scope.cancelled_caught  # not swallowed as a store failure
            tokens_before = limit._replica.tokens  # type: ignore[union-attr]
            with anyio.move_on_after(0.1):  # waiters cancelled, or refused at the deadline
                for _ in range(1000):  # bounded; a refusal does not yield, so sleep a bit
                    with contextlib.suppress(asyncres.RateLimitedError):
                        await limit.call(ok)
                    await anyio.sleep(0.005)
            assert limit._replica.tokens <= tokens_before  # type: ignore[union-attr]
            exiting = anyio.current_time()
        # Exiting cancelled the background sync stuck on the black hole, promptly.
        assert anyio.current_time() - exiting < 1.0


async def test_a_store_whose_redis_is_down_from_the_start_still_runs() -> None:
    """No Redis at start-up: the store enters, says so, and the policies work locally."""
    seen = Seen()
    store = RedisStore("redis://127.0.0.1:1/0", prefix="t9", listeners=[seen])
    breaker = asyncres.CircuitBreaker(name="dep", store=store)
    limit = asyncres.RateLimit(100, name="api", store=store)
    with anyio.fail_after(5.0):
        async with store:
            assert await breaker.call(ok) == "ok"
            assert await limit.call(ok) == "ok"
            await until(lambda: bool(seen.of(events.StoreUnavailable)))
            assert not store.statistics().available
            assert store.statistics().syncs == 0


async def test_an_unexpected_sync_error_fails_open_and_is_logged_loudly(
    redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A key of another type under the store's prefix makes the breaker's script fail: not
    Redis being away, so besides `StoreUnavailable` the asyncres logger reports it (once,
    with the traceback); the calls still pass on local state. Redis away logs nothing."""
    import coredis

    raw = coredis.Redis.from_url(redis.url)
    async with raw:
        await raw.set("t10:breaker:dep:state", "not a hash")
    seen = Seen()
    store = RedisStore(redis.url, prefix="t10", listeners=[seen])
    breaker = asyncres.CircuitBreaker(name="dep", store=store, window_type="time")
    with caplog.at_level("ERROR", logger="asyncres"), anyio.fail_after(5.0):
        async with store:
            assert await breaker.call(ok) == "ok"
            assert await store.sync() is False
            assert await store.sync() is False
            assert await breaker.call(ok) == "ok"
    unavailable = seen.of(events.StoreUnavailable)
    assert len(unavailable) == 1
    assert "WrongTypeError" in str(unavailable[0])
    errors = [r for r in caplog.records if "unexpected reason" in r.getMessage()]
    assert len(errors) == 1
    assert errors[0].exc_info is not None

    caplog.clear()
    down = RedisStore("redis://127.0.0.1:1/0", prefix="t11")
    kept = asyncres.CircuitBreaker(name="dep", store=down, window_type="time")
    with caplog.at_level("ERROR", logger="asyncres"), anyio.fail_after(5.0):
        async with down:
            assert await down.sync() is False
            assert await kept.call(ok) == "ok"
    assert not [r for r in caplog.records if "unexpected reason" in r.getMessage()]
