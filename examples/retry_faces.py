"""Retry's three faces, a total timeout, on_result and a shared retry budget.

Run: python examples/retry_faces.py [asyncio|trio]
"""

from __future__ import annotations

import sys
from itertools import count

import anyio

import asyncres
from asyncres import backoff

attempts = count(1)


async def flaky() -> str:
    """Fails twice, then works."""
    if next(attempts) <= 2:
        raise ConnectionError("refused")
    return "ok"


# One budget per downstream dependency, shared by every call site that talks to it.
inventory_budget = asyncres.RetryBudget(ratio=0.2, min_per_second=10.0, ttl=10.0)

retry = asyncres.Retry(
    on=(ConnectionError, asyncres.RejectedError),
    max_attempts=4,
    timeout=5.0,  # all attempts and waits together
    backoff=backoff.FullJitter(base=0.01, cap=1.0),
    budget=inventory_budget,
    name="inventory",
)


async def main() -> None:
    # 1. call(): the function first, then its arguments.
    print(await retry.call(flaky))

    # 2. The decorator keeps the signature for type checkers.
    @retry
    async def reserve(sku: str, *, quantity: int) -> str:
        return f"reserved {quantity} x {sku}"

    print(await reserve("A-1", quantity=2))

    # 3. The block form, for code that is not a function of its own.
    async for attempt in retry.attempts():
        with attempt:
            print("attempt", attempt.number)

    # on_result: retry results that mean "try again"; the last one is returned.
    statuses = iter([503, 503, 200])

    async def status() -> int:
        return next(statuses)

    http_retry = asyncres.Retry(on=OSError, on_result=lambda code: code >= 500)
    print("status:", await http_retry.call(status))
    print(inventory_budget.statistics())


if __name__ == "__main__":
    anyio.run(main, backend=sys.argv[1] if len(sys.argv) > 1 else "asyncio")
