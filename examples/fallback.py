"""Fallback: degrade gracefully to a default, a cache, or a result judged bad.

Run: python examples/fallback.py [asyncio|trio]
"""

from __future__ import annotations

import sys

import anyio

import asyncres

last_known = {"book": 9.99, "pen": 1.49}


async def live_price(item: str) -> float:
    """The pricing service: down for anything but books."""
    await anyio.sleep(0.01)
    if item != "book":
        raise ConnectionError("pricing service unavailable")
    return 10.49


def show(event: asyncres.events.Event) -> None:
    print("  event:", event)


async def main() -> None:
    # A fixed substitute for the errors you name; anything else propagates.
    no_price = asyncres.Fallback(on=ConnectionError, value=None, name="price", listeners=[show])
    print("pen:", await no_price.call(live_price, "pen"))

    # A factory computes the substitute from the error, e.g. the last known value.
    async def cached_price(error: Exception) -> float:
        print("  using the cache after:", error)
        return last_known["pen"]

    cached = asyncres.Fallback(on=ConnectionError, factory=cached_price)
    print("pen:", await cached.call(live_price, "pen"))
    print("book:", await cached.call(live_price, "book"))  # live: the factory is not called

    # Stacked decorators: the fallback (outermost) catches the inner timeout's error.
    @asyncres.Fallback(on=TimeoutError, value=0.0)
    @asyncres.Timeout(0.005)
    async def quick_price(item: str) -> float:
        return await live_price(item)

    print("quick:", await quick_price("book"))

    # on_result: a result can count as a failure too (the factory then receives None).
    async def status() -> int:
        return 503

    healthy = asyncres.Fallback(on=OSError, value=200, on_result=lambda code: code >= 500)
    print("status:", await healthy.call(status))


if __name__ == "__main__":
    anyio.run(main, backend=sys.argv[1] if len(sys.argv) > 1 else "asyncio")
