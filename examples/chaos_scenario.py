"""A scenario file drives the faults: a TOML schedule, a policy fault and an HTTP fault.

Run: python examples/chaos_scenario.py [asyncio|trio]
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from pathlib import Path

import anyio
import httpx

from asyncres.chaos import ChaosTransport, PhaseStarted, Schedule

phases_seen: list[str] = []


def on_event(event: object) -> None:
    if isinstance(event, PhaseStarted):
        phases_seen.append(event.phase)


async def query_database() -> str:
    await anyio.sleep(0.001)
    return "row"


async def handler(request: httpx.Request) -> httpx.Response:
    """The service: reads the database through the schedule (where 'slow database' bites)."""
    row = await schedule.call(query_database)
    return httpx.Response(200, text=row)


api = ChaosTransport(httpx.MockTransport(handler))
schedule = Schedule.from_toml(
    Path(__file__).with_name("chaos_scenario.toml"),
    targets={"api": api},  # `attach = "api"` adds the HTTP fault to this transport
    listeners=[on_event],
)


async def main() -> None:
    results: dict[str, Counter[str]] = {}
    client = httpx.AsyncClient(transport=api, base_url="http://shop")
    async with client, anyio.create_task_group() as tg:
        await tg.start(schedule.run)  # switches the attached HTTP fault on and off
        while (phase := schedule.current()) is not None:
            start = time.perf_counter()
            response = await client.get("/checkout")
            took = "slow" if time.perf_counter() - start > 0.04 else "fast"
            results.setdefault(phase.name, Counter())[f"{response.status_code} {took}"] += 1
            await anyio.sleep(0.01)
    for name, counts in results.items():
        print(f"{name:>14}: {dict(counts)}")
    print("phases:", " -> ".join(phases_seen))


if __name__ == "__main__":
    anyio.run(main, backend=sys.argv[1] if len(sys.argv) > 1 else "asyncio")
