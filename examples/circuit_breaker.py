"""CircuitBreaker: trip on failures, fail fast while open, probe, recover; the three faces.

Run: python examples/circuit_breaker.py [asyncio|trio]
"""

from __future__ import annotations

import sys

import anyio

import asyncres
from asyncres import backoff


class Inventory:
    """A dependency that is down until someone fixes it."""

    def __init__(self) -> None:
        self.down = True
        self.calls = 0

    async def stock(self, sku: str) -> int:
        self.calls += 1
        await anyio.sleep(0.001)
        if self.down:
            raise ConnectionError("inventory refused the connection")
        return 7


inventory = Inventory()

breaker = asyncres.CircuitBreaker(
    failure_rate=0.5,  # open when half the calls in the window fail...
    min_calls=10,  # ...once the window holds at least 10 calls
    window=30.0,  # the last 30 seconds, in 10 buckets
    recovery_time=0.2,  # then reject for 0.2 s before letting a probe through
    on=ConnectionError,
    name="inventory",
    listeners=[lambda event: print("  event:", event)],
)


async def main() -> None:
    # 1. Failures trip the breaker; then calls fail fast without reaching the dependency.
    for _ in range(12):
        try:
            await breaker.call(inventory.stock, "A-1")
        except ConnectionError:
            pass
        except asyncres.CircuitOpenError as exc:
            print(f"rejected at once, retry after {exc.retry_after:.2f}s")
    print("state:", breaker.state, "- calls that reached inventory:", inventory.calls)

    # 2. After the recovery time the next call is a probe; its success closes the circuit.
    inventory.down = False
    await anyio.sleep(0.2)
    print("probe:", await breaker.call(inventory.stock, "A-1"), "->", breaker.state)

    # 3. The decorator keeps the signature; `async with` guards a block.
    @breaker
    async def stock(sku: str) -> int:
        return await inventory.stock(sku)

    print("decorated:", await stock("B-2"))
    async with breaker:
        print("in a block:", await inventory.stock("C-3"))

    stats = breaker.statistics()
    print(f"window: {stats.calls} calls, failure rate {stats.failure_rate:.2f}")

    # A Retry outside the breaker waits for `retry_after` instead of hammering.
    retry = asyncres.Retry(on=asyncres.CircuitOpenError, max_attempts=3)
    breaker.isolate()  # manual: forced open until reset()
    with anyio.move_on_after(0.5):
        try:
            await retry.call(breaker.call, inventory.stock, "A-1")
        except asyncres.CircuitOpenError:
            print("still isolated after the retries")
    breaker.reset()

    # Recovery times that grow on each failed probe (Finagle's equal jitter, 5 s .. 300 s),
    # a count window, and consecutive failures as a second trip rule.
    payments = asyncres.CircuitBreaker(
        failure_threshold=5,
        failure_rate=0.2,
        window=100,
        window_type="count",
        recovery_backoff=backoff.EqualJitter(5.0, 300.0),
        half_open_max_calls=3,
        success_threshold=3,
        slow_call_duration=2.0,
        exclude=(ValueError,),  # a bad request is the caller's fault, not the service's
    )
    print(payments)


if __name__ == "__main__":
    anyio.run(main, backend=sys.argv[1] if len(sys.argv) > 1 else "asyncio")
