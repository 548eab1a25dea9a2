"""Goodput of a saturated service with and without `asyncres.asgi`, at 1x, 2x and 4x capacity.

Run: ``python -m benchmarks.asgi_goodput [--seconds S] [--markdown PATH]``.

The service is an ASGI app whose work holds one of ``SLOTS`` connections of a pool for
``WORK`` seconds (its capacity: ``SLOTS / WORK`` requests per second), the pool queueing the
rest first come, first served, as a database pool does. Clients arrive open loop (a fixed rate,
whatever the service does) and give up after ``CLIENT_TIMEOUT`` seconds, which they announce in
``Request-Timeout``. As a real ASGI server does, the app is *not* cancelled when its client
leaves: the server only learns of the disconnect when the app reads or writes.

Goodput counts the 200 responses a client received before giving up, per second, as a share
of the capacity. Without the middleware the pool's queue grows with the overload, every
request waits longer than its client, and the service works at full capacity for nobody.
With ``protect(app)`` the Deadline stops work whose caller has left and the Shedder keeps the
queue short (adaptive LIFO + CoDel), answering the surplus 503 at once.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio

from asyncres.asgi import protect

SLOTS = 8
WORK = 0.020
CAPACITY = SLOTS / WORK
CLIENT_TIMEOUT = 0.250
LOADS = (0.8, 1.0, 2.0, 4.0)
TICK = 0.001


def make_service() -> Any:
    pool = anyio.CapacityLimiter(SLOTS)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        async with pool:
            await anyio.sleep(WORK)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    return app


STACKS: dict[str, Callable[[Any], Any]] = {
    "bare app": lambda app: app,
    "protect(app)": lambda app: protect(app),
    f"protect(app, limit={SLOTS})": lambda app: protect(app, limit=SLOTS),
}

_SCOPE_HEADERS = [(b"host", b"svc.test"), (b"request-timeout", f"{CLIENT_TIMEOUT:.3f}".encode())]


class _Outcome:
    __slots__ = ("admitted_latency", "good", "sent", "shed", "timed_out")

    def __init__(self) -> None:
        self.sent = 0
        self.good = 0
        self.shed = 0
        self.timed_out = 0
        self.admitted_latency: list[float] = []


async def _one(app: Any, server: anyio.abc.TaskGroup, outcome: _Outcome) -> None:
    outcome.sent += 1
    done = anyio.Event()
    status: list[int] = []
    scope = {"type": "http", "method": "GET", "path": "/item", "headers": _SCOPE_HEADERS}

    async def receive() -> dict[str, Any]:
        await done.wait()  # the body is sent; the next message would be the disconnect
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])
        elif not message.get("more_body", False):
            done.set()

    async def serve() -> None:
        # The server's task: it runs to the end whether or not the client still waits.
        await app(scope, receive, send)
        done.set()

    start = time.perf_counter()
    server.start_soon(serve)
    with anyio.move_on_after(CLIENT_TIMEOUT):
        await done.wait()
    elapsed = time.perf_counter() - start
    if not done.is_set():
        outcome.timed_out += 1
    elif status and status[0] == 200:
        outcome.good += 1
        outcome.admitted_latency.append(elapsed)
    else:
        outcome.shed += 1


async def run_cell(stack: Callable[[Any], Any], load: float, seconds: float) -> dict[str, float]:
    app = stack(make_service())
    outcome = _Outcome()
    rate = load * CAPACITY
    async with anyio.create_task_group() as server, anyio.create_task_group() as clients:
        start = time.perf_counter()
        launched = 0
        while (now := time.perf_counter() - start) < seconds:
            due = int(now * rate) + 1
            for _ in range(due - launched):
                clients.start_soon(_one, app, server, outcome)
            launched = max(launched, due)
            await anyio.sleep(TICK)
    latencies = sorted(outcome.admitted_latency) or [float("nan")]
    return {
        "offered": outcome.sent / seconds,
        "goodput": outcome.good / seconds / CAPACITY,
        "shed": outcome.shed / max(outcome.sent, 1),
        "timed_out": outcome.timed_out / max(outcome.sent, 1),
        "p50": statistics.median(latencies),
        "p99": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
    }


async def _run(seconds: float) -> dict[str, dict[float, dict[str, float]]]:
    out: dict[str, dict[float, dict[str, float]]] = {name: {} for name in STACKS}
    for load in LOADS:
        for name, stack in STACKS.items():
            out[name][load] = await run_cell(stack, load, seconds)
    return out


def table(results: dict[str, dict[str, dict[float, dict[str, float]]]]) -> str:
    lines = [
        "| backend | stack | load | goodput (share of capacity) | shed 503 | client gave up "
        "| admitted p50 ms | admitted p99 ms |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for backend, per_stack in results.items():
        for name, per_load in per_stack.items():
            for load, cell in per_load.items():
                lines.append(
                    f"| {backend} | {name} | {load:g} x | {cell['goodput']:.0%} "
                    f"| {cell['shed']:.0%} | {cell['timed_out']:.0%} "
                    f"| {cell['p50'] * 1e3:.0f} | {cell['p99'] * 1e3:.0f} |"
                )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.asgi_goodput", description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of each cell")
    parser.add_argument("--markdown", type=Path, default=None, help="write the table here")
    args = parser.parse_args(argv)
    results = {
        backend: anyio.run(_run, args.seconds, backend=backend) for backend in ("asyncio", "trio")
    }
    text = (
        "# Goodput of a saturated ASGI service, with and without asyncres.asgi\n\n"
        + table(results)
        + f"\n\nCapacity {CAPACITY:.0f} requests/s ({SLOTS} pool connections x "
        f"{WORK * 1e3:.0f} ms of work); clients arrive open loop at 0.8, 1, 2 and 4 x capacity for "
        f"{args.seconds:g} s per cell and give up after {CLIENT_TIMEOUT * 1e3:.0f} ms "
        f"(announced in `Request-Timeout`). Goodput: 200 responses received before the client "
        f"gave up, per second, over the capacity. In process (ASGI calls, real clock), "
        f"Python {sys.version.split()[0]}. Regenerate: `python -m benchmarks.asgi_goodput "
        "--markdown benchmarks/results/asgi_goodput.md`.\n"
    )
    print(text)
    if args.markdown is not None:
        args.markdown.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
