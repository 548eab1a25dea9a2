"""AdaptiveLimit: AIMD and Gradient2 updates, the queue, what counts, faces, and stress."""

from __future__ import annotations

import math
import pickle
import random
from typing import Any

import anyio
import anyio.lowlevel
import pytest

import asyncres
from asyncres.testing import capture_events

pytestmark = pytest.mark.anyio


class Overloaded(Exception):
    """The dependency asks to come back later (think 503 with Retry-After)."""

    retry_after = 1.0


class Pool:
    """A dependency that serves ``size`` calls at once in ``service`` seconds each; the
    rest queue behind it (the slow-database shape: the queue is where latency comes from)."""

    def __init__(self, size: int, service: float) -> None:
        self.slots = anyio.Semaphore(size)
        self.service = service
        self.peak_waiting = 0
        self.waiting = 0

    async def __call__(self) -> str:
        self.waiting += 1
        self.peak_waiting = max(self.peak_waiting, self.waiting)
        try:
            await self.slots.acquire()
        finally:
            self.waiting -= 1
        try:
            await anyio.sleep(self.service)
        finally:
            self.slots.release()
        return "ok"


async def sleep_for(seconds: float) -> str:
    await anyio.sleep(seconds)
    return "ok"


def assert_idle(limit: asyncres.AdaptiveLimit) -> None:
    stats = limit.statistics()
    assert (stats.in_flight, stats.queued, stats.queued_by_priority) == (0, 0, {})


# -- configuration ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"algorithm": "vegas"}, "`algorithm` must be one of"),
        ({"min_limit": 0}, "`min_limit` must be >= 1"),
        ({"min_limit": 30, "max_limit": 20}, "`min_limit` .* must be <= `max_limit`"),
        ({"max_limit": 1.5}, "`max_limit` must be an integer"),
        ({"initial_limit": 500}, "`initial_limit` must be between"),
        ({"initial_limit": True}, "`initial_limit` must be an integer"),
        ({"max_queued": -1}, "`max_queued` must be >= 0"),
        ({"queue_timeout": -1.0}, "`queue_timeout` must be > 0"),
        ({"queue_timeout": math.nan}, "`queue_timeout`"),
        ({"backoff_ratio": 1.0}, "`backoff_ratio` must be between 0 and 1"),
        ({"backoff_ratio": 0.0}, "`backoff_ratio` must be between 0 and 1"),
        ({"backoff_ratio": math.nan}, "`backoff_ratio`"),
        ({"timeout": 0}, "`timeout` must be > 0"),
        ({"timeout": math.inf}, "`timeout` must be finite"),
        ({"smoothing": 0.0}, "`smoothing` must be > 0"),
        ({"smoothing": 1.5}, "`smoothing` must be between 0 and 1"),
        ({"rtt_tolerance": 0.9}, "`rtt_tolerance` must be >= 1"),
        ({"rtt_tolerance": math.nan}, "`rtt_tolerance`"),
        ({"long_window": 0}, "`long_window` must be >= 1"),
        ({"queue_size": -1}, "`queue_size` must be >= 0"),
        ({"window_samples": 0}, "`window_samples` must be >= 1"),
        ({"drop_on": 3}, "`drop_on`"),
        ({"listeners": [1]}, "`listeners` must be callables"),
        ({"clock": 1.0}, "`clock` must be callable"),
    ],
)
def test_bad_options_raise_value_errors_naming_the_parameter(
    kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        asyncres.AdaptiveLimit(**kwargs)


def test_defaults_and_read_only_settings() -> None:
    limit = asyncres.AdaptiveLimit()
    assert (limit.algorithm, limit.min_limit, limit.max_limit) == ("gradient2", 1, 200)
    assert (limit.smoothing, limit.rtt_tolerance, limit.long_window, limit.queue_size) == (
        0.2,
        1.5,
        600,
        4,
    )
    assert (limit.backoff_ratio, limit.timeout, limit.max_queued) == (0.9, 5.0, 0)
    stats = limit.statistics()
    assert (stats.limit, stats.in_flight, stats.rtt, stats.rtt_baseline) == (20.0, 0, None, None)
    assert stats.rejected == {"queue_full": 0, "shed": 0, "queue_timeout": 0, "deadline": 0}
    with pytest.raises(AttributeError, match="max_limit"):
        limit.max_limit = 5  # type: ignore[misc]
    assert repr(limit) == "AdaptiveLimit('gradient2', limit=20)"


def test_the_error_pickles_and_is_a_rejection() -> None:
    error = asyncres.LimitExceededError("db", limit=8, max_queued=4, reason="shed")
    assert isinstance(error, asyncres.RejectedError)
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.name, copy.limit, copy.max_queued, copy.reason) == ("db", 8, 4, "shed")
    assert "limit 'db' rejected the call (shed): limit=8, max_queued=4" in str(copy)


# -- admission and the queue --------------------------------------------------------------


async def test_calls_beyond_the_limit_are_refused_without_a_queue() -> None:
    limit = asyncres.AdaptiveLimit("aimd", initial_limit=2, min_limit=2, max_limit=2)
    async with anyio.create_task_group() as tg:
        tg.start_soon(limit.call, sleep_for, 1.0)
        tg.start_soon(limit.call, sleep_for, 1.0)
        await anyio.wait_all_tasks_blocked()
        assert limit.statistics().in_flight == 2
        with capture_events() as events:
            with pytest.raises(asyncres.LimitExceededError) as info:
                await limit.call(sleep_for, 1.0)
        assert (info.value.reason, info.value.limit) == ("queue_full", 2)
        assert events == [asyncres.events.CallRejected(None, "queue_full")]
    assert_idle(limit)
    assert limit.statistics().rejected["queue_full"] == 1


async def test_the_queue_serves_higher_priority_first_and_hands_off() -> None:
    limit = asyncres.AdaptiveLimit("aimd", initial_limit=1, min_limit=1, max_limit=1, max_queued=3)
    order: list[str] = []

    async def job(label: str) -> None:
        order.append(label)
        await anyio.sleep(1.0)

    async with anyio.create_task_group() as tg:
        tg.start_soon(limit.call, job, "first")
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(limit.lane(0).call, job, "low")
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(limit.lane(5).call, job, "high")
        await anyio.wait_all_tasks_blocked()
        stats = limit.statistics()
        assert (stats.in_flight, stats.queued, stats.queued_by_priority) == (1, 2, {5: 1, 0: 1})
    assert order == ["first", "high", "low"]
    assert_idle(limit)


async def test_full_queue_sheds_the_lowest_and_times_out_and_refuses_the_expired() -> None:
    limit = asyncres.AdaptiveLimit(
        "aimd", initial_limit=1, min_limit=1, max_limit=1, max_queued=1, queue_timeout=2.0
    )
    outcomes: dict[str, str] = {}

    async def caller(label: str, priority: int) -> None:
        try:
            await limit.lane(priority).call(sleep_for, 5.0)
        except asyncres.LimitExceededError as exc:
            outcomes[label] = exc.reason
        else:
            outcomes[label] = "ok"

    async with anyio.create_task_group() as tg:
        tg.start_soon(caller, "holder", 0)
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(caller, "low", 0)
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(caller, "high", 1)  # evicts "low"
        await anyio.wait_all_tasks_blocked()
        with asyncres.deadline(anyio.current_time()):
            with pytest.raises(asyncres.LimitExceededError) as info:
                await limit.lane(9).call(sleep_for, 1.0)
        assert info.value.reason == "deadline"
    assert outcomes == {"holder": "ok", "low": "shed", "high": "queue_timeout"}
    assert limit.statistics().rejected == {
        "queue_full": 0,
        "shed": 1,
        "queue_timeout": 1,
        "deadline": 1,
    }
    assert_idle(limit)


# -- what counts ----------------------------------------------------------------------------


async def test_cancellation_rejections_and_other_errors_are_not_samples() -> None:
    limit = asyncres.AdaptiveLimit("aimd", initial_limit=4, min_limit=1)

    async def inner_rejection() -> None:
        raise asyncres.BulkheadFullError("inner", max_concurrent=1, max_queued=0)

    async def not_found() -> None:
        raise KeyError("missing")

    with anyio.move_on_after(0.5):
        await limit.call(sleep_for, 10.0)
    with pytest.raises(asyncres.BulkheadFullError):
        await limit.call(inner_rejection)
    with pytest.raises(KeyError):
        await limit.call(not_found)
    stats = limit.statistics()
    assert (stats.samples, stats.drops, stats.limit) == (0, 0, 4.0)
    assert_idle(limit)


async def test_drops_are_samples_that_back_off() -> None:
    limit = asyncres.AdaptiveLimit("aimd", initial_limit=20, min_limit=1)

    async def refused() -> None:
        await anyio.sleep(0.01)
        raise Overloaded

    with capture_events() as events:
        for _ in range(3):
            with pytest.raises(Overloaded):
                await limit.call(refused)
    stats = limit.statistics()
    assert (stats.samples, stats.drops) == (3, 3)
    assert stats.limit == 14.0  # 20 -> 18 -> 16 -> 14 (x0.9, floored)
    assert events == [
        asyncres.events.LimitChanged(None, 18, 20),
        asyncres.events.LimitChanged(None, 16, 18),
        asyncres.events.LimitChanged(None, 14, 16),
    ]


async def test_a_custom_drop_filter_and_exclude() -> None:
    limit = asyncres.AdaptiveLimit(
        "aimd", initial_limit=10, drop_on=ConnectionError, exclude=ConnectionResetError
    )

    async def fail(exc: Exception) -> None:
        raise exc

    with pytest.raises(ConnectionRefusedError):
        await limit.call(fail, ConnectionRefusedError())
    with pytest.raises(ConnectionResetError):
        await limit.call(fail, ConnectionResetError())
    with pytest.raises(Overloaded):  # not a drop under this filter
        await limit.call(fail, Overloaded())
    assert (limit.statistics().samples, limit.statistics().drops) == (1, 1)


# -- AIMD ---------------------------------------------------------------------------------


async def test_aimd_grows_by_one_only_when_half_the_limit_is_used() -> None:
    limit = asyncres.AdaptiveLimit("aimd", initial_limit=4, min_limit=1, max_limit=6)
    for _ in range(5):  # one call at a time: 1 * 2 < 4, the client is the bottleneck
        await limit.call(sleep_for, 0.01)
    assert limit.statistics().limit == 4.0
    for _ in range(5):  # two at a time: 2 * 2 >= limit while the limit is 4
        async with anyio.create_task_group() as tg:
            tg.start_soon(limit.call, sleep_for, 0.01)
            tg.start_soon(limit.call, sleep_for, 0.01)
    assert limit.statistics().limit == 5.0  # 4 -> 5; at 5, 2 * 2 < 5 stops it
    async with anyio.create_task_group() as tg:
        for _ in range(5):
            tg.start_soon(limit.call, sleep_for, 0.01)
    assert limit.statistics().limit == 6.0  # capped at max_limit


async def test_aimd_backs_off_on_an_rtt_above_its_timeout_down_to_the_floor() -> None:
    limit = asyncres.AdaptiveLimit("aimd", initial_limit=3, min_limit=2, timeout=1.0)
    await limit.call(sleep_for, 1.5)
    assert limit.statistics().limit == 2.0
    await limit.call(sleep_for, 1.5)
    assert limit.statistics().limit == 2.0  # the floor
    assert limit.statistics().rtt == pytest.approx(1.5)


# -- Gradient2 ----------------------------------------------------------------------------


async def run_open_loop(
    limit: asyncres.AdaptiveLimit, fn: Any, seconds: float, rate: float
) -> dict[str, list[float]]:
    """Offer ``rate`` calls a second for ``seconds``; latencies per outcome."""
    outcomes: dict[str, list[float]] = {"ok": [], "refused": []}

    async def one() -> None:
        start = anyio.current_time()
        try:
            await limit.call(fn)
        except asyncres.LimitExceededError:
            outcomes["refused"].append(anyio.current_time() - start)
        else:
            outcomes["ok"].append(anyio.current_time() - start)

    async with anyio.create_task_group() as tg:
        origin = anyio.current_time()
        for i in range(round(seconds * rate)):
            await anyio.sleep(max(0.0, origin + i / rate - anyio.current_time()))
            tg.start_soon(one)
    return outcomes


async def test_gradient2_holds_the_limit_while_latency_is_normal_and_the_load_is_light() -> None:
    limit = asyncres.AdaptiveLimit(initial_limit=20)
    outcomes = await run_open_loop(limit, lambda: sleep_for(0.05), 5.0, 40.0)  # ~2 in flight
    stats = limit.statistics()
    assert len(outcomes["ok"]) == 200
    assert stats.limit == 20.0  # app-limited: 2 in flight < 20 / 2
    assert stats.rtt == pytest.approx(0.05)
    assert stats.rtt_baseline == pytest.approx(0.05)


async def test_gradient2_grows_under_load_at_steady_latency() -> None:
    limit = asyncres.AdaptiveLimit(initial_limit=10, max_limit=40)
    # 12 in flight on average at a steady 0.1 s: more than half the limit, no queueing.
    await run_open_loop(limit, lambda: sleep_for(0.1), 10.0, 120.0)
    stats = limit.statistics()
    # Each window moves it by smoothing * queue_size = 0.8, until the load is less than
    # half the limit: it settles at about twice the concurrency in use.
    assert 20.0 <= stats.limit <= 27.0, stats


async def test_gradient2_finds_a_slow_pools_capacity_and_keeps_latency_near_normal() -> None:
    """The slow-database case: 8 connections, 0.1 s a query, 200 calls/s offered (2.5x
    capacity). Without a limit the queue in front of the pool grows without bound; with one
    the excess is refused at once and served calls stay near the pool's own latency."""
    pool = Pool(8, 0.1)
    limit = asyncres.AdaptiveLimit(initial_limit=4)  # started below the pool's size
    outcomes = await run_open_loop(limit, pool, 20.0, 200.0)
    stats = limit.statistics()
    served = sorted(outcomes["ok"])
    late = served[len(served) // 2 :]  # after the limit has settled
    # Gradient2 settles where ``limit * gradient + queue_size == limit``: it tolerates
    # rtt_tolerance (1.5x) of the baseline plus a queue of 4, about 16 here, and the
    # baseline drifts up slowly (an average over 600 windows).
    assert 8.0 <= stats.limit <= 24.0, stats
    assert len(served) >= 0.9 * 80 * 20  # the pool stays busy: ~80 calls/s served
    assert late[len(late) // 2] <= 0.3  # median latency within 3x the pool's own
    assert max(r for r in outcomes["refused"]) == 0.0  # refused at once
    assert pool.peak_waiting <= 20
    assert_idle(limit)

    unlimited = Pool(8, 0.1)
    async with anyio.create_task_group() as tg:
        with anyio.move_on_after(5.0):
            for _ in range(1000):
                tg.start_soon(unlimited)
                await anyio.sleep(1 / 200)
        tg.cancel_scope.cancel()
    assert unlimited.peak_waiting > 500  # what the limit prevented


async def test_gradient2_backs_off_when_latency_rises_and_recovers_after() -> None:
    limit = asyncres.AdaptiveLimit(initial_limit=30, max_limit=60)
    latency = [0.05]

    async def dependency() -> str:
        await anyio.sleep(latency[0])
        return "ok"

    await run_open_loop(limit, dependency, 5.0, 400.0)  # 20 in flight at 0.05 s
    before = limit.statistics().limit
    latency[0] = 0.5  # a latency spike: 200 in flight wanted
    await run_open_loop(limit, dependency, 3.0, 400.0)
    during = limit.statistics()
    assert during.limit < before / 2, (before, during)
    latency[0] = 0.05
    await run_open_loop(limit, dependency, 10.0, 400.0)
    after = limit.statistics()
    assert after.limit > during.limit * 2, (during, after)
    assert after.rtt_baseline is not None
    assert after.rtt_baseline < 0.2  # the baseline followed


async def test_gradient2_a_window_with_drops_halves_the_gradient() -> None:
    limit = asyncres.AdaptiveLimit(initial_limit=20, window_samples=4)

    async def refused() -> None:
        raise Overloaded

    for _ in range(4):
        with pytest.raises(Overloaded):
            await limit.call(refused)
    # 20 * 0.8 + (20 * 0.5 + 4) * 0.2 = 18.8: a drop backs off even with a fast reply.
    assert limit.statistics().limit == pytest.approx(18.8)


# -- faces ----------------------------------------------------------------------------------


async def test_async_with_decorator_execute_and_lanes_share_the_slots() -> None:
    limit = asyncres.AdaptiveLimit("aimd", initial_limit=2, min_limit=2, max_limit=2)

    @limit
    async def decorated(seconds: float) -> str:
        return await sleep_for(seconds)

    @limit.lane(3)
    async def high(seconds: float) -> str:
        return await sleep_for(seconds)

    assert decorated.__name__ == "decorated"
    async with limit:
        async with limit.lane(1):
            assert limit.statistics().in_flight == 2
            with pytest.raises(asyncres.LimitExceededError):
                await decorated(0.1)
            with pytest.raises(asyncres.LimitExceededError):
                await high(0.1)
    assert await limit.execute(lambda: sleep_for(0.1)) == "ok"
    assert await high(0.1) == "ok"
    assert limit.statistics().samples == 4
    assert isinstance(limit, asyncres.Policy)
    assert limit.lane(3) is limit.lane(3)
    with pytest.raises(AttributeError):
        limit.lane(3).priority = 4  # type: ignore[misc]
    with pytest.raises(ValueError, match="`priority` must be an integer"):
        limit.lane(True)
    with pytest.raises(ZeroDivisionError):
        async with limit:
            1 / 0  # noqa: B018
    assert_idle(limit)


# -- everything at once ---------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(2))
async def test_random_outer_cancellations_through_a_full_pipeline_leak_nothing(seed: int) -> None:
    """10,000 calls through Pipeline(Timeout, Retry, Throttle, AdaptiveLimit), a fifth of
    them cancelled from outside at a random moment: no slot held, statistics consistent."""
    rng = random.Random(seed)
    limit = asyncres.AdaptiveLimit(initial_limit=10, max_queued=20, queue_timeout=0.5)
    throttle = asyncres.Throttle()
    pipeline = asyncres.Pipeline(
        asyncres.Timeout(2.0),
        asyncres.Retry(on=(Overloaded, asyncres.LimitExceededError), max_attempts=3),
        throttle,
        limit,
    )
    outcomes: dict[str, int] = {}
    running = peak = 0

    async def dependency() -> str:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        try:
            await anyio.sleep(rng.expovariate(1 / 0.05))
            if rng.random() < 0.1:
                raise Overloaded  # a drop: 10 % of windows' samples lower the gradient
        finally:
            running -= 1
        return "ok"

    async def caller() -> None:
        with anyio.CancelScope() as scope:
            if rng.random() < 0.2:
                scope.deadline = anyio.current_time() + rng.uniform(0.0, 0.2)
            try:
                await pipeline.call(dependency)
            except asyncres.RejectedError as exc:
                key = type(exc).__name__
            except (Overloaded, asyncres.TimeoutExceededError):
                key = "failed"
            else:
                key = "ok"
            outcomes[key] = outcomes.get(key, 0) + 1
        if scope.cancelled_caught:
            outcomes["cancelled"] = outcomes.get("cancelled", 0) + 1

    async with anyio.create_task_group() as tg:
        for _ in range(10_000):
            tg.start_soon(caller)
            await anyio.sleep(rng.expovariate(400.0))
            stats = limit.statistics()
            assert running <= stats.in_flight <= 200  # every running call holds a slot
            assert stats.queued <= 20
    stats = limit.statistics()
    assert sum(outcomes.values()) == 10_000
    assert outcomes["ok"] > 5_000, outcomes
    assert outcomes.get("cancelled", 0) > 300
    assert running == 0
    assert_idle(limit)
    assert 1 <= stats.limit <= 200
    assert stats.drops <= stats.samples <= 30_000
    assert peak <= 200


async def test_light_load_times_one_call_in_eight_and_load_times_every_call() -> None:
    """The two clock reads are the cost of a sample: under light load (fewer than half the
    limit in flight) one success in 8 is timed; once the limit binds, every call is."""
    limit = asyncres.AdaptiveLimit("aimd", initial_limit=4, min_limit=4, max_limit=4)
    for _ in range(16):
        await limit.call(sleep_for, 0.01)
    assert limit.statistics().samples == 2  # the 1st and the 9th
    async with anyio.create_task_group() as tg:
        for _ in range(4):  # 2 * in flight >= 4 from the second call on
            tg.start_soon(limit.call, sleep_for, 0.01)
    # The first of them is light and the 17th call: timed too (the 1st, 9th, 17th...).
    assert limit.statistics().samples == 2 + 4


@pytest.mark.real_clock
async def test_durations_use_the_cheapest_clock_that_agrees_with_the_loop() -> None:
    import time

    from asyncres._clock import resolve_duration_clock

    clock = resolve_duration_clock()
    assert clock in (time.monotonic, time.perf_counter)
    before, loop_before = clock(), anyio.current_time()
    await anyio.sleep(0.05)
    elapsed, loop_elapsed = clock() - before, anyio.current_time() - loop_before
    assert elapsed == pytest.approx(loop_elapsed, abs=0.005)


async def test_durations_follow_a_virtual_clock() -> None:
    from asyncres._clock import resolve_duration_clock

    clock = resolve_duration_clock()
    before = clock()
    await anyio.sleep(100.0)
    assert clock() - before == pytest.approx(100.0)
