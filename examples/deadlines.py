"""Deadlines: timeout(), deadline(), remaining() and the Timeout policy.

Run: python examples/deadlines.py [asyncio|trio]
"""

from __future__ import annotations

import sys

import anyio

import asyncres


async def slow_query() -> str:
    await anyio.sleep(0.5)
    return "rows"


async def main() -> None:
    # A block with a time limit: only this scope's own deadline raises.
    try:
        with asyncres.timeout(0.1):
            await slow_query()
    except asyncres.TimeoutExceededError as exc:
        print("timed out after", exc.timeout, "s")

    # The tightest enclosing deadline is visible to every layer below.
    with asyncres.timeout(5.0):
        with anyio.move_on_after(1.0):
            print("budget left:", round(asyncres.remaining() or 0.0, 1), "s")

    # An absolute deadline, e.g. one received from a client.
    at = anyio.current_time() + 1.0
    with asyncres.deadline(at):
        print(await slow_query())

    # The same limit as a policy: call(), execute() or a decorator.
    per_attempt = asyncres.Timeout(1.0)
    print(await per_attempt.call(slow_query))


if __name__ == "__main__":
    anyio.run(main, backend=sys.argv[1] if len(sys.argv) > 1 else "asyncio")
