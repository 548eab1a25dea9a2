"""RateLimit: 5 calls a second per tenant, bursts of 2, a short wait for a turn.

Run: python examples/rate_limit.py [asyncio|trio]
"""

from __future__ import annotations

import sys

import anyio

import asyncres


async def search(query: str) -> str:
    await anyio.sleep(0.001)
    return f"results for {query!r}"


async def main() -> None:
    limit = asyncres.RateLimit(5, per=1.0, burst=2, max_wait=0.25, name="search")

    async def handle(tenant: str, query: str) -> str:
        try:
            return await limit.key(tenant).call(search, query)
        except asyncres.RateLimitedError as exc:
            return f"429 Too Many Requests, Retry-After: {exc.retry_after:.2f}"

    async def noisy(i: int) -> None:
        print(f"noisy q{i}:", await handle("noisy", f"q{i}"))

    # Six at once from one tenant: a burst of 2, one more waits its 0.2 s turn, and the rest
    # would wait longer than max_wait: refused with the time to come back.
    async with anyio.create_task_group() as tg:
        for i in range(6):
            tg.start_soon(noisy, i)
    print("quiet:", await handle("quiet", "hello"))  # its own budget, untouched
    print(limit.statistics())


if __name__ == "__main__":
    anyio.run(main, backend=sys.argv[1] if len(sys.argv) > 1 else "asyncio")
