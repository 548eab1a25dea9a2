"""Per-request cost of the `asyncres.asgi` middleware in front of a bare ASGI app.

Run: ``python -m benchmarks.asgi_overhead [--markdown PATH]``. Times, in one process and on
both backends, an in-process ASGI request three ways — a direct ``await app(scope, receive,
send)`` (the middleware's own cost, nothing else), and a request through
``httpx.ASGITransport`` (the smallest end-to-end path: request building, the ASGI call,
response parsing) — for the bare app, ``Deadline(app)`` with a ``Request-Timeout`` header,
``Health(Deadline(app))``, the `Shedder` (fixed and adaptive limit) and ``protect(app)``.
Median of interleaved rounds; ratios to the bare app in the same round. Over real HTTP (a
server, a socket) the same microseconds weigh less still.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import httpx

from asyncres.asgi import Deadline, Health, Shedder, protect

Case = Callable[[int], Awaitable[None]]
HEADERS = [(b"host", b"svc.test"), (b"request-timeout", b"1.500")]


async def bare(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


async def _ok() -> bool:
    return True


APPS: dict[str, Callable[[], Any]] = {
    "bare app": lambda: bare,
    "Deadline(app)": lambda: Deadline(bare),
    "Health(Deadline(app))": lambda: Health(Deadline(bare), checks={"db": _ok}),
    "Shedder(app, limit=64)": lambda: Shedder(bare, limit=64),
    "Shedder(app) adaptive": lambda: Shedder(bare),
    "protect(app)": lambda: protect(bare, checks={"db": _ok}),
}


def direct_calls(make: Callable[[], Any]) -> Case:
    async def run(n: int) -> None:
        app = make()
        scope = {"type": "http", "method": "GET", "path": "/item", "headers": HEADERS}

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            pass

        for _ in range(n):
            await app(scope, receive, send)

    return run


def httpx_requests(make: Callable[[], Any]) -> Case:
    async def run(n: int) -> None:
        transport = httpx.ASGITransport(app=make())
        async with httpx.AsyncClient(transport=transport, base_url="http://svc.test") as client:
            for _ in range(n):
                await client.get("/item", headers={"Request-Timeout": "1.5"})

    return run


async def _measure(case: Case, number: int) -> float:
    await case(min(number, 200))
    gc.disable()
    try:
        start = time.perf_counter_ns()
        await case(number)
        return (time.perf_counter_ns() - start) / number
    finally:
        gc.enable()


async def _run(number: int, repeat: int) -> dict[str, dict[str, float]]:
    paths = {
        "direct": (direct_calls, number),
        "httpx.ASGITransport": (httpx_requests, number // 10),
    }
    out: dict[str, dict[str, float]] = {}
    for path, (wrap, n) in paths.items():
        rounds: dict[str, list[float]] = {name: [] for name in APPS}
        for _ in range(repeat):
            for name, make in APPS.items():
                rounds[name].append(await _measure(wrap(make), n))
        for name, samples in rounds.items():
            out[f"{path}: {name}"] = statistics.median(samples)
    return out


def table(results: dict[str, dict[str, dict[str, float]]]) -> str:
    lines = [
        "| path: app | asyncio ns | asyncio × bare | trio ns | trio × bare |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    first = next(iter(results.values()))
    for key in first:
        path = key.split(": ")[0]
        cells = []
        for backend in ("asyncio", "trio"):
            per = results.get(backend, {})
            if key not in per:
                cells += ["—", "—"]
                continue
            base = per[f"{path}: bare app"]
            cells += [f"{per[key]:,.0f}", f"{per[key] / base:.2f}"]
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.asgi_overhead", description=__doc__)
    parser.add_argument("--number", type=int, default=20_000, help="direct calls per round")
    parser.add_argument("--repeat", type=int, default=7, help="rounds; the median is reported")
    parser.add_argument("--markdown", type=Path, default=None, help="write the table here")
    args = parser.parse_args(argv)
    results = {
        backend: anyio.run(_run, args.number, args.repeat, backend=backend)
        for backend in ("asyncio", "trio")
    }
    text = (
        "# asyncres.asgi overhead per request\n\n"
        + table(results)
        + f"\n\nPython {sys.version.split()[0]}, httpx {httpx.__version__}; median of "
        f"{args.repeat} interleaved rounds ({args.number:,} direct calls, "
        f"{args.number // 10:,} through httpx per round). "
        "Regenerate: `python -m benchmarks.asgi_overhead --markdown "
        "benchmarks/results/asgi_overhead.md`.\n"
    )
    print(text)
    if args.markdown is not None:
        args.markdown.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
