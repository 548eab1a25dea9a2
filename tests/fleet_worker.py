"""One process of a fleet for tests/test_redis_fleet.py: runs a scenario against policies
shared through a RedisStore and prints what it saw as JSON.

    python tests/fleet_worker.py SCENARIO REDIS_URL PREFIX BACKEND START_AT

Every worker starts its traffic at the wall-clock time START_AT, so the fleet's processes
overlap; each loop is bounded in time.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import anyio

import asyncres
from asyncres.redis import RedisStore


async def _dead() -> None:
    raise ConnectionError("dependency down")


async def _ok() -> None:
    return None


async def breaker(store: RedisStore) -> dict[str, Any]:
    """20/s against a dead dependency, 20 failures in a row trip the (shared) breaker."""
    breaker = asyncres.CircuitBreaker(
        name="dep", store=store, failure_threshold=20, recovery_time=30.0
    )
    reached = 0
    opened_at = None
    async with store:
        await _start()
        end = time.time() + 3.0
        while time.time() < end:
            try:
                await breaker.call(_dead)
            except ConnectionError:
                reached += 1
            except asyncres.CircuitOpenError:
                opened_at = opened_at or time.time()
            await anyio.sleep(0.05)
    return {"reached": reached, "opened_at": opened_at}


async def budget(store: RedisStore) -> dict[str, Any]:
    """10 requests/s for 3 s against a dead dependency, 3 attempts each, one shared budget."""
    shared = asyncres.RetryBudget(name="dep", store=store)
    retry = asyncres.Retry(
        max_attempts=3, backoff=asyncres.backoff.Constant(0.01), budget=shared, on=ConnectionError
    )
    attempts = offered = 0

    async def attempt() -> None:
        nonlocal attempts
        attempts += 1
        raise ConnectionError("dependency down")

    async with store:
        await _start()
        end = time.time() + 3.0
        while time.time() < end:
            offered += 1
            try:
                await retry.call(attempt)
            except ConnectionError:
                pass
            await anyio.sleep(0.1)
    return {"attempts": attempts, "offered": offered}


async def rate(store: RedisStore) -> dict[str, Any]:
    """60 calls/s for 4 s against RateLimit(100/s) shared by the fleet."""
    limit = asyncres.RateLimit(100, burst=10, name="api", store=store)
    admitted: list[float] = []
    async with store:
        began = time.time()
        await _start()
        end = time.time() + 4.0
        next_at = time.time()
        while time.time() < end:
            try:
                await limit.call(_ok)
                admitted.append(time.time())
            except asyncres.RateLimitedError:
                pass
            next_at += 1 / 60
            await anyio.sleep(max(0.0, next_at - time.time()))
        per_second = store.statistics().commands / (time.time() - began)
    return {"admitted": admitted, "commands_per_second": per_second}


START_AT = 0.0


async def _start() -> None:
    await anyio.sleep(max(0.0, START_AT - time.time()))


def main() -> None:
    global START_AT
    scenario, url, prefix, backend, start_at = sys.argv[1:6]
    START_AT = float(start_at)
    run = {"breaker": breaker, "budget": budget, "rate": rate}[scenario]
    result = anyio.run(run, RedisStore(url, prefix=prefix), backend=backend)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
