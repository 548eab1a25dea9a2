"""Throttle: shed locally what an overloaded dependency would refuse anyway.

Run: python examples/throttle.py [asyncio|trio]
"""

from __future__ import annotations

import random
import sys

import anyio
import anyio.lowlevel

import asyncres


class Overloaded(Exception):
    """The dependency refused the call (think HTTP 503)."""


class Dependency:
    """Serves at most 20 calls a second; refuses the rest."""

    def __init__(self) -> None:
        self.received = 0
        self._served_in_second: dict[int, int] = {}

    async def __call__(self) -> str:
        self.received += 1
        await anyio.lowlevel.checkpoint()
        second = int(anyio.current_time())
        served = self._served_in_second.get(second, 0)
        if served >= 20:
            raise Overloaded("over capacity")
        self._served_in_second[second] = served + 1
        return "ok"


async def main() -> None:
    dependency = Dependency()
    # Overloaded is what the dependency refuses; any other error means it answered.
    throttle = asyncres.Throttle(on=Overloaded, name="inventory", rng=random.Random(1))

    outcomes = {"ok": 0, "refused": 0, "throttled": 0}
    for _ in range(300):  # 100 calls a second for 3 seconds
        try:
            await throttle.call(dependency)
            outcomes["ok"] += 1
        except Overloaded:
            outcomes["refused"] += 1
        except asyncres.ThrottledError:
            outcomes["throttled"] += 1  # rejected locally: never sent
        await anyio.sleep(0.01)

    stats = throttle.statistics()
    print("outcomes:", outcomes)
    print(f"the dependency received {dependency.received} of 300 calls")
    print(f"reject probability now: {stats.reject_probability:.2f}")


if __name__ == "__main__":
    anyio.run(main, backend=sys.argv[1] if len(sys.argv) > 1 else "asyncio")
