"""Hedged requests: a backup attempt to another replica when the first is slow or fails.

Run: python examples/hedging.py [asyncio|trio]
"""

from __future__ import annotations

import functools
import math
import sys

import anyio

import asyncres

# Simulated replicas of a search service: seconds each takes to answer, and whether it is up.
LATENCY = {"primary": 0.3, "replica-a": 0.02, "replica-b": 0.01}
DOWN = {"replica-b"}


async def search(replica: str, query: str) -> str:
    await anyio.sleep(LATENCY[replica])
    if replica in DOWN:
        raise ConnectionError(f"{replica} refused the connection")
    return f"{len(query)} hits for {query!r} from {replica}"


def show(event: asyncres.events.Event) -> None:
    print("  event:", event)


async def main() -> None:
    # Parallel replicas: A = 1 - (1 - a)**n, so two at 99 % answer 99.99 % of the time.
    for n in (1, 2, 3):
        print(f"{n} replica(s) at 99 %: {1 - (1 - 0.99) ** n:.4%} available")

    hedge = asyncres.Hedge(
        delay=0.05,  # about the primary's p95 latency
        max_hedges=2,
        on=ConnectionError,
        name="search",
        listeners=[show],
    )

    # The first attempt goes to the primary, each hedge to the next replica.
    start = anyio.current_time()
    result = await hedge.call_each(
        functools.partial(search, "primary", "books"),
        functools.partial(search, "replica-a", "books"),
        functools.partial(search, "replica-b", "books"),
    )
    print(result, f"after {anyio.current_time() - start:.2f} s")

    # The same function for every attempt: call() or the decorator.
    @asyncres.Hedge(delay=0.05)
    async def lookup(query: str) -> str:
        return await search("replica-a", query)

    print(await lookup("pens"))

    # Parallel mode starts every attempt at once; fallback mode the next only after a failure.
    parallel = asyncres.Hedge(delay=0, max_hedges=1)
    failover = asyncres.Hedge(delay=math.inf, max_hedges=1, on=ConnectionError)
    ink = [functools.partial(search, replica, "ink") for replica in LATENCY]
    print(await parallel.call_each(ink[0], ink[1]))  # replica-a wins
    print(await failover.call_each(ink[2], ink[0]))  # replica-b is down: the primary answers

    # An enclosing deadline bounds every attempt, hedges included.
    try:
        with asyncres.timeout(0.1):
            await hedge.call(search, "primary", "paper")
    except asyncres.TimeoutExceededError:
        print("no replica answered within 0.1 s")


if __name__ == "__main__":
    anyio.run(main, backend=sys.argv[1] if len(sys.argv) > 1 else "asyncio")
