"""Quickstart: a flaky dependency called through a deadline and a retry.

Run: python examples/quickstart.py [asyncio|trio]
"""

from __future__ import annotations

import random
import sys

import anyio

import asyncres

rng = random.Random(42)


async def fetch_price(item: str) -> float:
    """A dependency that fails half the time and is sometimes slow."""
    await anyio.sleep(rng.uniform(0.001, 0.01))
    if rng.random() < 0.5:
        raise ConnectionError(f"price service refused {item!r}")
    return 9.99


retry = asyncres.Retry(on=ConnectionError, max_attempts=4)


@retry
async def price(item: str) -> float:
    return await fetch_price(item)


async def main() -> None:
    with asyncres.timeout(2.0):  # the whole request, retries included
        print("price:", await price("book"))
        print("seconds left:", round(asyncres.remaining() or 0.0, 2))


if __name__ == "__main__":
    anyio.run(main, backend=sys.argv[1] if len(sys.argv) > 1 else "asyncio")
