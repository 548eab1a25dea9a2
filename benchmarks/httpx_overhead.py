"""Per-request overhead of `ResilientTransport` over httpx's MockTransport, beside the peers.

Run: ``python -m benchmarks.httpx_overhead`` (needs ``.[bench]``). Times ``await
client.get(url)`` in one process for: bare httpx, asyncres's `ResilientTransport` with the
full standard policy (total timeout, retry, per-host breaker and bulkhead, attempt timeout,
deadline header), and ``httpx_retries.RetryTransport`` (retry only). Median of interleaved
rounds; ratios to bare httpx in the same round. ``--markdown PATH`` writes the table.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
import httpx

from asyncres.httpx import ResilientTransport

Case = Callable[[int], Awaitable[None]]


def handler(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, content=b"ok")


def _client(transport: httpx.AsyncBaseTransport) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=transport, base_url="http://svc.test")


def _case(make: Callable[[], httpx.AsyncBaseTransport]) -> Case:
    async def run(n: int) -> None:
        async with _client(make()) as client:
            for _ in range(n):
                response = await client.get("/item")
                assert response.status_code == 200

    return run


def cases() -> list[tuple[str, Case]]:
    rows = [
        ("bare httpx (MockTransport)", _case(lambda: httpx.MockTransport(handler))),
        (
            "asyncres ResilientTransport, standard policy",
            _case(lambda: ResilientTransport(httpx.MockTransport(handler))),
        ),
    ]
    try:
        from httpx_retries import RetryTransport
    except ImportError:
        pass
    else:
        rows.append(
            (
                "httpx_retries.RetryTransport (defaults)",
                _case(lambda: RetryTransport(transport=httpx.MockTransport(handler))),
            )
        )
    return rows


async def _measure(case: Case, number: int) -> float:
    await case(50)
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter_ns()
        await case(number)
        return (time.perf_counter_ns() - start) / number / 1000.0
    finally:
        gc.enable()


def run_backend(backend: str, number: int, repeat: int) -> dict[str, tuple[float, float]]:
    rows = cases()

    async def main() -> dict[str, list[float]]:
        samples: dict[str, list[float]] = {label: [] for label, _ in rows}
        for _ in range(repeat):
            for label, case in rows:
                samples[label].append(await _measure(case, number))
        return samples

    samples = anyio.run(main, backend=backend)
    base = samples[rows[0][0]]
    return {
        label: (
            statistics.median(values),
            statistics.median(v / b for v, b in zip(values, base, strict=True)),
        )
        for label, values in samples.items()
    }


def markdown(results: dict[str, dict[str, tuple[float, float]]]) -> str:
    backends = list(results)
    lines = [
        "| case | " + " | ".join(f"{b} µs/request | {b} × bare" for b in backends) + " |",
        "| --- | " + " | ".join("---: | ---:" for _ in backends) + " |",
    ]
    for label in next(iter(results.values())):
        cells = [f"{results[b][label][0]:,.0f} | {results[b][label][1]:.3f}" for b in backends]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=2000, help="requests per measurement")
    parser.add_argument("--repeat", type=int, default=11, help="rounds; the median is kept")
    parser.add_argument("--markdown", type=Path, help="write the table here")
    args = parser.parse_args(argv)
    results = {b: run_backend(b, args.number, args.repeat) for b in ("asyncio", "trio")}
    table = markdown(results)
    footer = (
        f"Median of {args.repeat} interleaved rounds of {args.number:,} requests; target: "
        "the standard policy <= 1.10 x bare httpx. Regenerate: "
        "`python -m benchmarks.httpx_overhead --markdown benchmarks/results/httpx_overhead.md`."
    )
    print(table)
    print()
    print(footer)
    if args.markdown:
        args.markdown.write_text(f"# httpx adapter overhead\n\n{table}\n\n{footer}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
