"""The canonical pipeline: total timeout, retry, breaker, bulkhead, per-attempt timeout.

Run: python examples/pipeline.py [asyncio|trio]
"""

from __future__ import annotations

import sys
from itertools import count

import anyio

import asyncres

calls = count(1)


async def fetch_user(user_id: int) -> dict[str, object]:
    """A dependency that hangs on its first call and refuses its second."""
    n = next(calls)
    if n == 1:
        await anyio.sleep(60)  # hung: the per-attempt timeout cuts it at 2 s
    if n == 2:
        raise ConnectionError("connection refused")
    return {"id": user_id, "name": "Ada"}


api = asyncres.Pipeline(
    asyncres.Timeout(10.0),  # total budget for the whole call
    asyncres.Retry(on=(ConnectionError, asyncres.TimeoutExceededError), max_attempts=4),
    asyncres.CircuitBreaker(failure_rate=0.5, window=30.0),
    asyncres.Bulkhead(max_concurrent=20, max_queued=50),
    asyncres.Timeout(2.0),  # per attempt
)


async def main() -> None:
    start = anyio.current_time()
    user = await api.call(fetch_user, 42)
    print(user, f"after {anyio.current_time() - start:.1f} s and 3 attempts")
    print("layers:", ", ".join(type(policy).__name__ for policy in api.policies))


if __name__ == "__main__":
    anyio.run(main, backend=sys.argv[1] if len(sys.argv) > 1 else "asyncio")
