"""Chaos policies: inject errors and latency, phase by phase, and watch the pipeline cope.

Run: python examples/chaos_policies.py [asyncio|trio]
"""

from __future__ import annotations

import sys
from collections import Counter

import anyio

import asyncres
from asyncres import backoff
from asyncres.chaos import InjectError, InjectLatency, Phase, Schedule


async def fetch_price(item: str) -> float:
    """The real dependency: fast and healthy."""
    await anyio.sleep(0.001)
    return 9.99


# Faults for the innermost place of a pipeline, each with a rate and a seed.
flaky = InjectError(ConnectionError("price service refused"), rate=0.3, seed=1)
slow = InjectLatency(0.2, jitter=0.05, seed=2)

schedule = Schedule(
    [
        Phase("steady", seconds=0.5),
        Phase("error burst", seconds=0.5, faults=[flaky]),
        Phase("latency spike", seconds=0.5, faults=[slow]),
        Phase("recovery", seconds=0.5),
    ]
)

prices = asyncres.Pipeline(
    asyncres.Retry(on=ConnectionError, max_attempts=3, backoff=backoff.Constant(0.01)),
    asyncres.Timeout(0.1),  # per attempt: the latency spike trips it
    schedule,  # innermost: the faults of the current phase
)


async def main() -> None:
    outcomes: dict[str, Counter[str]] = {}
    schedule.start()
    while (phase := schedule.current()) is not None:
        try:
            await prices.call(fetch_price, "book")
            outcome = "ok"
        except ConnectionError:
            outcome = "failed"
        except asyncres.TimeoutExceededError:
            outcome = "timed out"
        outcomes.setdefault(phase.name, Counter())[outcome] += 1
        await anyio.sleep(0.01)
    for name, counts in outcomes.items():
        print(f"{name:>14}: {dict(counts)}")
    print("errors injected:", flaky.statistics().injected)


if __name__ == "__main__":
    anyio.run(main, backend=sys.argv[1] if len(sys.argv) > 1 else "asyncio")
