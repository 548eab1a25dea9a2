"""Checked by mypy --strict (not run): the bulkhead's faces keep the wrapped signature."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, assert_type

import asyncres

bulkhead = asyncres.Bulkhead(max_concurrent=10, max_queued=20, queue_timeout=1.0)
urgent = bulkhead.lane(1)


@bulkhead
async def fetch(user_id: int, *, verbose: bool = False) -> str:
    return str(user_id)


@urgent
async def ping(host: str) -> float:
    return 1.0


async def main() -> None:
    keeps_signature: Callable[[int], Coroutine[Any, Any, str]] = fetch
    assert_type(await keeps_signature(1), str)
    assert_type(await fetch(1, verbose=True), str)
    assert_type(await ping("db"), float)
    assert_type(await bulkhead.call(fetch, 2, verbose=False), str)
    assert_type(await urgent.call(ping, "x"), float)
    assert_type(await bulkhead.execute(lambda: ping("x")), float)
    assert_type(urgent, asyncres.BulkheadLane)
    assert_type(bulkhead.acquire(priority=2), asyncres.BulkheadLane)
    async with bulkhead:
        pass
    async with bulkhead.acquire(priority=5):
        pass
    stats = bulkhead.statistics()
    assert_type(stats.in_use, int)
    assert_type(stats.rejected, dict[str, int])
    policy: asyncres.Policy = urgent
    del policy


async def misuse() -> None:
    await fetch("not an int")  # type: ignore[arg-type]
    await bulkhead.call(fetch, 1, priority=2)  # type: ignore[call-arg]
    await urgent.call(ping, 3)  # type: ignore[arg-type]
