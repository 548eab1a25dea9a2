"""RateLimit (GCRA): burst, spacing, waiting, deadlines, cancellation, keys, bad input."""

from __future__ import annotations

import math
import pickle
from typing import Any

import anyio
import pytest

import asyncres
from asyncres.backoff import Constant
from asyncres.testing import capture_events

pytestmark = pytest.mark.anyio


async def ok() -> str:
    return "ok"


async def test_a_burst_at_once_then_one_call_per_interval() -> None:
    limit = asyncres.RateLimit(10, burst=3, name="api")
    start = anyio.current_time()
    for _ in range(3):
        assert await limit.call(ok) == "ok"
    with pytest.raises(asyncres.RateLimitedError) as info:
        await limit.call(ok)
    assert info.value.retry_after == pytest.approx(0.1)
    assert info.value.reason == "rate_limited"
    assert isinstance(info.value, asyncres.RejectedError)
    await anyio.sleep_until(start + 0.1)
    assert await limit.call(ok) == "ok"
    with pytest.raises(asyncres.RateLimitedError):
        await limit.call(ok)
    stats = limit.statistics()
    assert (stats.admitted, stats.rejected, stats.waited) == (4, 2, 0)


async def test_sustained_rate_over_ten_seconds_is_rate_times_time_plus_the_burst() -> None:
    limit = asyncres.RateLimit(50, burst=5)
    admitted = 0
    start = anyio.current_time()
    while anyio.current_time() - start < 10.0:  # offered: 200 calls a second
        try:
            await limit.call(ok)
            admitted += 1
        except asyncres.RateLimitedError:
            pass
        await anyio.sleep(0.005)
    assert abs(admitted - (50 * 10 + 5)) <= 2, admitted


async def test_max_wait_queues_calls_for_their_turn_in_order() -> None:
    limit = asyncres.RateLimit(10, burst=1, max_wait=1.0)
    started: list[float] = []

    async def one(i: int) -> None:
        await limit.call(ok)
        started.append(anyio.current_time())

    t0 = anyio.current_time()
    async with anyio.create_task_group() as tg:
        for i in range(5):
            tg.start_soon(one, i)
    offsets = sorted(round(t - t0, 3) for t in started)
    assert offsets == [0.0, 0.1, 0.2, 0.3, 0.4]
    assert limit.statistics().waited == 4


async def test_a_turn_beyond_the_deadline_is_refused_at_once() -> None:
    limit = asyncres.RateLimit(1, burst=1, max_wait=10.0)
    await limit.call(ok)
    start = anyio.current_time()
    with asyncres.timeout(0.5), pytest.raises(asyncres.RateLimitedError) as info:
        await limit.call(ok)
    assert anyio.current_time() == start  # no waiting for a turn it cannot reach
    assert info.value.retry_after == pytest.approx(1.0)


async def test_a_cancelled_waiter_gives_its_turn_back() -> None:
    limit = asyncres.RateLimit(1, burst=1, max_wait=5.0)
    await limit.call(ok)
    async with anyio.create_task_group() as tg:
        tg.start_soon(limit.call, ok)  # its turn is at 1.0 s
        await anyio.sleep(0.2)
        tg.cancel_scope.cancel()  # not a deadline (a deadline would have refused the wait)
    t0 = anyio.current_time()
    await limit.call(ok)  # takes the turn back at 1.0 s, not 2.0 s
    assert anyio.current_time() - t0 == pytest.approx(0.8, abs=1e-6)


async def test_keys_are_limited_separately_and_their_memory_is_bounded() -> None:
    limit = asyncres.RateLimit(1, burst=1, max_keys=3)
    await limit.key("a").call(ok)
    await limit.key("b").call(ok)
    with pytest.raises(asyncres.RateLimitedError) as info:
        await limit.key("a").call(ok)
    assert info.value.key == "a"
    await limit.call(ok)  # the shared key is its own
    await anyio.sleep(2.0)  # a and b idle again
    for key in ("c", "d", "e", "f"):
        await limit.key(key).call(ok)
    assert len(limit._tats) == 3  # bounded: idle a and b went first
    assert limit.statistics().keys == 3


async def test_async_with_decorator_and_execute_faces() -> None:
    limit = asyncres.RateLimit(100, burst=2)

    @limit
    async def decorated() -> str:
        return "d"

    assert await decorated() == "d"
    async with limit:
        pass
    with pytest.raises(asyncres.RateLimitedError):
        await limit.execute(ok)
    keyed = limit.key("t")
    async with keyed:
        pass
    assert await keyed.execute(ok) == "ok"


async def test_a_retry_waits_out_retry_after_and_the_rejection_is_an_event() -> None:
    limit = asyncres.RateLimit(2, burst=1, name="tight")
    retry = asyncres.Retry(on=asyncres.RateLimitedError, backoff=Constant(0.0), budget=None)
    await limit.call(ok)
    start = anyio.current_time()
    with capture_events() as events:
        assert await retry.call(limit.call, ok) == "ok"
    assert anyio.current_time() - start == pytest.approx(0.5)
    rejected = [e for e in events if isinstance(e, asyncres.events.CallRejected)]
    assert [(e.name, e.reason) for e in rejected] == [("tight", "rate_limited")]


def test_the_error_pickles() -> None:
    error = asyncres.RateLimitedError("x", retry_after=1.5, key="k")
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.name, copy.retry_after, copy.key, str(copy)) == ("x", 1.5, "k", str(error))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"rate": 0}, "`rate`"),
        ({"rate": math.inf}, "`rate`"),
        ({"rate": 1, "per": -1}, "`per`"),
        ({"rate": 1, "burst": 0}, "`burst`"),
        ({"rate": 1, "max_wait": math.nan}, "`max_wait`"),
        ({"rate": 1, "max_keys": 0}, "`max_keys`"),
        ({"rate": 1, "store": object()}, "`store`"),
    ],
)
def test_bad_configuration_names_the_parameter(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        asyncres.RateLimit(**options)


def test_settings_are_read_only_and_burst_defaults_to_one_period() -> None:
    limit = asyncres.RateLimit(7.5)
    assert (limit.rate, limit.per, limit.burst, limit.max_wait) == (7.5, 1.0, 8, 0.0)
    with pytest.raises(AttributeError):
        limit.rate = 3  # type: ignore[misc]
