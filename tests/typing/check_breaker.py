"""Checked by mypy --strict (not run): the breaker's faces keep the wrapped signature."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, assert_type

import asyncres
from asyncres import testing

breaker = asyncres.CircuitBreaker(failure_rate=0.5, window=30.0, name="users")
by_count = asyncres.CircuitBreaker(failure_threshold=5, window=100, window_type="count")


@breaker
async def fetch(user_id: int, *, verbose: bool = False) -> str:
    return str(user_id)


async def main() -> None:
    keeps_signature: Callable[[int], Coroutine[Any, Any, str]] = fetch
    assert_type(await keeps_signature(1), str)
    assert_type(await fetch(1, verbose=True), str)
    assert_type(await breaker.call(fetch, 2), str)
    assert_type(await by_count.execute(lambda: fetch(3)), str)
    async with breaker:
        await fetch(4)
    assert_type(breaker.state, asyncres.CircuitState)
    stats = breaker.statistics()
    assert_type(stats, asyncres.CircuitBreakerStatistics)
    assert_type(stats.failure_rate, float)
    assert_type(stats.retry_after, float | None)
    breaker.isolate()
    breaker.disable()
    breaker.reset()
    testing.force_open(breaker, retry_after=1.0)
    testing.force_half_open(breaker)
    testing.force_closed(breaker)


async def misuse() -> None:
    await fetch("not an int")  # type: ignore[arg-type]
    await fetch(1, extra=True)  # type: ignore[call-arg]
    await breaker.call(fetch, "x")  # type: ignore[arg-type]
    asyncres.CircuitBreaker(window_type="sliding")  # type: ignore[arg-type]
    asyncres.CircuitBreaker(failure_rate="high")  # type: ignore[arg-type]
