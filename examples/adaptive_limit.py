"""AdaptiveLimit: find what a small, slow pool can serve, and refuse the excess at once.

Run: python examples/adaptive_limit.py [asyncio|trio]
"""

from __future__ import annotations

import sys
import time

import anyio

import asyncres

pool = anyio.Semaphore(8)  # a database with 8 connections, 50 ms a query


async def query(item: int) -> str:
    async with pool:
        await anyio.sleep(0.05)
    return f"item {item}"


async def main() -> None:
    limit = asyncres.AdaptiveLimit(initial_limit=4, name="db")

    served, refused = 0, 0

    async def request(item: int) -> None:
        nonlocal served, refused
        try:
            await limit.call(query, item)
            served += 1
        except asyncres.LimitExceededError:
            refused += 1  # refused at once: no queue in front of the pool

    started = time.monotonic()
    async with anyio.create_task_group() as tg:
        for item in range(600):  # 300 requests a second for 2 s: twice what the pool serves
            tg.start_soon(request, item)
            await anyio.sleep(1 / 300)
    stats = limit.statistics()
    print(f"served {served}, refused {refused} in {time.monotonic() - started:.1f} s")
    print(f"limit {stats.limit:.1f}, RTT {stats.rtt * 1000:.0f} ms (pool: 50 ms)")


if __name__ == "__main__":
    anyio.run(main, backend=sys.argv[1] if len(sys.argv) > 1 else "asyncio")
