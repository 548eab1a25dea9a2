"""The fleet store's costs, measured side by side in one process against a real redis-server.

Run: ``python -m benchmarks.fleet_store [--markdown PATH]`` (needs ``redis-server`` on PATH
and ``asyncres[redis]``). Starts redis-server on a free 127.0.0.1 port, then measures on
asyncio and trio:

1. the call path — a closed `CircuitBreaker.call` with ``store=RedisStore(...)`` (the store
   syncing every 100 ms in the background) against the in-memory breaker, and a local
   `RateLimit.call` against a bare ``await`` (median of rounds, interleaved, as ratios: this
   machine is noisy);
2. the wire — Redis script calls per second per process while a breaker, a budget and a
   rate limit on one store take 1,000 calls a second each;
3. accuracy — two stores (two fleet members) in this process share ``RateLimit(200/s)``
   while each offers 300 calls a second: admitted per second over 3 steady seconds.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio

import asyncres
from asyncres.redis import RedisStore

ROUNDS = 15
CALLS = 5_000


async def ok() -> None:
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_redis() -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("redis-server is not installed (apt-get install redis-server)")
    port = _free_port()
    folder = tempfile.mkdtemp(prefix="asyncres-bench-redis-")
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", folder],
        stdout=subprocess.DEVNULL,
    )
    for _ in range(500):  # bounded: up to 10 s for the server to answer
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(8).startswith(b"+PONG"):
                    return process, f"redis://127.0.0.1:{port}/0"
        except OSError:
            time.sleep(0.02)
    process.kill()
    sys.exit("redis-server did not start")


async def _per_call(call: Callable[[], Awaitable[Any]]) -> float:
    start = time.perf_counter()
    for _ in range(CALLS):
        await call()
    return (time.perf_counter() - start) / CALLS


async def call_path(url: str) -> dict[str, float]:
    store = RedisStore(url, prefix="bench-path")
    shared = asyncres.CircuitBreaker(name="dep", store=store)
    local = asyncres.CircuitBreaker()
    limit = asyncres.RateLimit(1e9, burst=10**9)
    cases: dict[str, Callable[[], Awaitable[Any]]] = {
        "bare await": lambda: ok(),  # through a lambda, as the others
        "CircuitBreaker.call, in memory": lambda: local.call(ok),
        "CircuitBreaker.call, RedisStore": lambda: shared.call(ok),
        "RateLimit.call, local": lambda: limit.call(ok),
    }
    samples: dict[str, list[float]] = {name: [] for name in cases}
    async with store:
        for _ in range(ROUNDS):
            for name, call in cases.items():
                samples[name].append(await _per_call(call))
    return {name: statistics.median(values) for name, values in samples.items()}


async def wire(url: str) -> float:
    """Script calls per second with three shared policies busy at 1,000 calls/s each."""
    store = RedisStore(url, prefix="bench-wire")
    breaker = asyncres.CircuitBreaker(name="dep", store=store)
    budget = asyncres.RetryBudget(name="dep", store=store)
    limit = asyncres.RateLimit(5_000, name="api", store=store)
    async with store:
        began = time.perf_counter()
        before = store.statistics().commands
        end = began + 3.0
        next_at = began
        while time.perf_counter() < end:
            await breaker.call(ok)
            budget.deposit()
            await limit.call(ok)
            next_at += 0.001
            await anyio.sleep(max(0.0, next_at - time.perf_counter()))
        seconds = time.perf_counter() - began
        return (store.statistics().commands - before) / seconds


async def accuracy(url: str) -> float:
    """Admitted per second by two members sharing RateLimit(200/s), 600/s offered."""
    stores = [RedisStore(url, prefix="bench-rate") for _ in range(2)]
    limits = [asyncres.RateLimit(200, burst=20, name="api", store=s) for s in stores]
    admitted: list[float] = []

    async def offer(limit: asyncres.RateLimit, end: float) -> None:
        next_at = time.perf_counter()
        while time.perf_counter() < end:
            try:
                await limit.call(ok)
                admitted.append(time.perf_counter())
            except asyncres.RateLimitedError:
                pass
            next_at += 1 / 300
            await anyio.sleep(max(0.0, next_at - time.perf_counter()))

    async with stores[0], stores[1]:
        start = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for limit in limits:
                tg.start_soon(offer, limit, start + 4.0)
    steady = [t for t in admitted if start + 1.0 <= t < start + 4.0]
    return len(steady) / 3.0


def run(url: str, backend: str) -> dict[str, Any]:
    path = anyio.run(call_path, url, backend=backend)
    return {
        "path": path,
        "wire": anyio.run(wire, url, backend=backend),
        "accuracy": anyio.run(accuracy, url, backend=backend),
    }


def table(results: dict[str, dict[str, Any]]) -> str:
    lines = [
        "| backend | measure | value | target | met |",
        "| --- | --- | ---: | ---: | --- |",
    ]
    for backend, r in results.items():
        p = r["path"]
        shared = p["CircuitBreaker.call, RedisStore"] / p["CircuitBreaker.call, in memory"]
        local = p["RateLimit.call, local"] / p["bare await"]
        rows = [
            ("closed breaker, RedisStore ÷ in memory", f"{shared:.2f} ×", "≤ 1.5 ×", shared <= 1.5),
            ("RateLimit local ÷ bare await", f"{local:.2f} ×", "≤ 5 ×", local <= 5.0),
            (
                "script calls / s, 3 shared policies at 1,000 calls/s",
                f"{r['wire']:.1f}",
                "≤ 35 (one per policy per sync)",
                r["wire"] <= 35.0,
            ),
            (
                "RateLimit(200/s) over 2 members offering 600/s",
                f"{r['accuracy']:.1f} / s",
                "200 ± 5 %",
                abs(r["accuracy"] - 200.0) <= 10.0,
            ),
        ]
        for name, value, target, met in rows:
            lines.append(f"| {backend} | {name} | {value} | {target} | {'yes' if met else 'NO'} |")
        lines.append(
            f"| {backend} | (per call: bare {p['bare await'] * 1e9:,.0f} ns, breaker "
            f"{p['CircuitBreaker.call, in memory'] * 1e9:,.0f} / "
            f"{p['CircuitBreaker.call, RedisStore'] * 1e9:,.0f} ns, rate limit "
            f"{p['RateLimit.call, local'] * 1e9:,.0f} ns) | | | |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markdown", type=Path, help="write the results table here")
    args = parser.parse_args()
    process, url = start_redis()
    try:
        results = {backend: run(url, backend) for backend in ("asyncio", "trio")}
    finally:
        process.kill()
        process.wait()
    from importlib.metadata import version

    versions = ", ".join(f"{name} {version(name)}" for name in ("anyio", "trio", "coredis"))
    text = (
        table(results)
        + f"\n\nPython {sys.version.split()[0]}, {versions}, redis-server on 127.0.0.1; "
        f"median of {ROUNDS} rounds of {CALLS:,} calls, interleaved. Regenerate: "
        "`python -m benchmarks.fleet_store --markdown benchmarks/results/fleet_store.md`.\n"
    )
    print(text)
    if args.markdown:
        args.markdown.write_text(text)


if __name__ == "__main__":
    main()
