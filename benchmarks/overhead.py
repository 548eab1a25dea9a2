"""Per-call overhead of asyncres primitives next to their peers, in one process.

Run: ``python -m benchmarks.overhead`` (peers from ``pip install -e '.[bench]'``; a peer that
is not installed is skipped). Prints a markdown table of nanoseconds per call (median of
``--repeat`` rounds, cases interleaved within each round so drift hits all alike) and the
ratio to a bare ``await`` (the median of per-round ratios). ``--json PATH`` writes
``{"backend": {"case": ns}}``; ``--markdown PATH`` writes the table. Absolute numbers
drift between runs and machines: compare ratios within one run.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import platform
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio

import asyncres

Case = Callable[[int], Awaitable[None]]


async def ok() -> int:
    return 1


def _retry() -> asyncres.Retry:
    return asyncres.Retry(on=OSError, max_attempts=3)


# -- asyncres ---------------------------------------------------------------------------


async def bare(n: int) -> None:
    for _ in range(n):
        await ok()


async def asyncres_timeout(n: int) -> None:
    timeout = asyncres.timeout
    for _ in range(n):
        with timeout(10.0):
            await ok()


async def asyncres_retry_call(n: int) -> None:
    call = _retry().call
    for _ in range(n):
        await call(ok)


async def asyncres_retry_decorator(n: int) -> None:
    decorated = _retry()(ok)
    for _ in range(n):
        await decorated()


async def asyncres_timeout_policy(n: int) -> None:
    call = asyncres.Timeout(10.0).call
    for _ in range(n):
        await call(ok)


async def asyncres_bulkhead_with(n: int) -> None:
    bulkhead = asyncres.Bulkhead(max_concurrent=10)
    for _ in range(n):
        async with bulkhead:
            await ok()


async def asyncres_bulkhead_call(n: int) -> None:
    call = asyncres.Bulkhead(max_concurrent=10).call
    for _ in range(n):
        await call(ok)


async def asyncres_throttle_call(n: int) -> None:
    call = asyncres.Throttle().call
    for _ in range(n):
        await call(ok)


async def asyncres_rate_limit_call(n: int) -> None:
    # A rate no loop reaches: every call takes the admitted-at-once path.
    call = asyncres.RateLimit(1e12).call
    for _ in range(n):
        await call(ok)


async def asyncres_limit_call(n: int) -> None:
    call = asyncres.AdaptiveLimit().call
    for _ in range(n):
        await call(ok)


async def asyncres_limit_aimd_call(n: int) -> None:
    call = asyncres.AdaptiveLimit("aimd").call
    for _ in range(n):
        await call(ok)


async def asyncres_limit_timed_call(n: int) -> None:
    # A limit of 1: every call uses the whole limit, so every call is timed (a sample).
    call = asyncres.AdaptiveLimit(initial_limit=1, max_limit=1).call
    for _ in range(n):
        await call(ok)


async def asyncres_breaker_call(n: int) -> None:
    call = asyncres.CircuitBreaker().call
    for _ in range(n):
        await call(ok)


async def asyncres_breaker_with(n: int) -> None:
    breaker = asyncres.CircuitBreaker()
    for _ in range(n):
        async with breaker:
            await ok()


def _canonical_pipeline() -> asyncres.Pipeline:
    return asyncres.Pipeline(
        asyncres.Timeout(10.0),
        asyncres.Retry(on=OSError, max_attempts=4),
        asyncres.CircuitBreaker(failure_rate=0.5, window=30.0),
        asyncres.Bulkhead(max_concurrent=20, max_queued=50),
        asyncres.Timeout(2.0),
    )


async def asyncres_pipeline_call(n: int) -> None:
    call = _canonical_pipeline().call
    for _ in range(n):
        await call(ok)


def _instrumented() -> tuple[Case | None, Case | None]:
    try:
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import (
            MetricExporter,
            MetricExportResult,
            PeriodicExportingMetricReader,
        )
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import (
            BatchSpanProcessor,
            SpanExporter,
            SpanExportResult,
        )

        import asyncres.otel
    except ImportError:
        return None, None

    class DropSpans(SpanExporter):
        def export(self, spans: object) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    class DropMetrics(MetricExporter):
        def export(self, metrics_data: object, **kwargs: object) -> MetricExportResult:
            return MetricExportResult.SUCCESS

        def force_flush(self, timeout_millis: float = 10_000) -> bool:
            return True

        def shutdown(self, timeout_millis: float = 30_000, **kwargs: object) -> None:
            return None

    # A production-shaped SDK whose exporters drop everything: batching spans off the
    # loop, metrics read once a minute.
    meters = MeterProvider(metric_readers=[PeriodicExportingMetricReader(DropMetrics(), 60_000)])
    tracers = TracerProvider()
    tracers.add_span_processor(BatchSpanProcessor(DropSpans()))

    async def instrumented_pipeline_call(n: int) -> None:
        call = _canonical_pipeline().call
        asyncres.otel.instrument(meters, tracers)
        try:
            for _ in range(n):
                await call(ok)
        finally:
            asyncres.otel.uninstrument()

    return instrumented_pipeline_call, _sdk_floor(meters)


def _sdk_floor(meters: Any) -> Case:
    """The SDK's own work for one instrumented call, with no asyncres around it.

    An instrumented pipeline call records its attempt's and its own duration: two
    ``Histogram.record`` with the attribute sets `asyncres.otel` uses. Nothing that records
    those two histograms through the SDK can cost less than this plus the plain call.
    """
    from asyncres.otel import DURATION_BUCKETS

    meter = meters.get_meter("benchmarks.sdk_floor")
    attempts = meter.create_histogram(
        "floor.attempt.duration", unit="s", explicit_bucket_boundaries_advisory=DURATION_BUCKETS
    )
    calls = meter.create_histogram(
        "floor.call.duration", unit="s", explicit_bucket_boundaries_advisory=DURATION_BUCKETS
    )
    attempt_attributes = {"asyncres.policy.kind": "retry", "asyncres.outcome": "success"}
    call_attributes = {"asyncres.policy.kind": "pipeline", "asyncres.outcome": "success"}

    async def sdk_floor(n: int) -> None:
        record_attempt, record_call = attempts.record, calls.record
        for _ in range(n):
            await ok()
            record_attempt(0.001, attempt_attributes)
            record_call(0.001, call_attributes)

    return sdk_floor


async def asyncres_fallback_call(n: int) -> None:
    call = asyncres.Fallback(on=OSError, value=0).call
    for _ in range(n):
        await call(ok)


async def asyncres_hedge_call(n: int) -> None:
    call = asyncres.Hedge(delay=1.0).call
    for _ in range(n):
        await call(ok)


async def anyio_task_group(n: int) -> None:
    for _ in range(n):
        async with anyio.create_task_group():
            await ok()


# -- peers --------------------------------------------------------------------------------


async def asyncio_timeout(n: int) -> None:
    for _ in range(n):
        async with asyncio.timeout(10.0):
            await ok()


async def anyio_fail_after(n: int) -> None:
    for _ in range(n):
        with anyio.fail_after(10.0):
            await ok()


async def trio_fail_after(n: int) -> None:
    import trio

    for _ in range(n):
        with trio.fail_after(10.0):
            await ok()


def _tenacity() -> Case | None:
    try:
        import tenacity
    except ImportError:
        return None
    decorated = tenacity.retry(
        stop=tenacity.stop_after_attempt(3),
        wait=tenacity.wait_random_exponential(multiplier=0.1, max=10),
        retry=tenacity.retry_if_exception_type(OSError),
    )(ok)

    async def tenacity_retry(n: int) -> None:
        for _ in range(n):
            await decorated()

    return tenacity_retry


def _stamina() -> Case | None:
    try:
        import stamina
    except ImportError:
        return None
    decorated = stamina.retry(on=OSError, attempts=3)(ok)

    async def stamina_retry(n: int) -> None:
        for _ in range(n):
            await decorated()

    return stamina_retry


def _backoff() -> Case | None:
    try:
        import backoff
    except ImportError:
        return None
    decorated = backoff.on_exception(backoff.expo, OSError, max_tries=3)(ok)

    async def backoff_on_exception(n: int) -> None:
        for _ in range(n):
            await decorated()

    return backoff_on_exception


def _purgatory() -> Case | None:
    try:
        from purgatory import AsyncCircuitBreakerFactory
    except ImportError:
        return None

    async def purgatory_async_with(n: int) -> None:
        breaker = await AsyncCircuitBreakerFactory().get_breaker("svc")  # held, as documented
        for _ in range(n):
            async with breaker:
                await ok()

    return purgatory_async_with


def _pybreaker() -> Case | None:
    try:
        import pybreaker
    except ImportError:
        return None
    breaker = pybreaker.CircuitBreaker()

    async def pybreaker_calling(n: int) -> None:
        for _ in range(n):
            with breaker.calling():
                await ok()

    return pybreaker_calling


def _aiobreaker() -> Case | None:
    try:
        import aiobreaker
    except ImportError:
        return None
    breaker = aiobreaker.CircuitBreaker()

    async def aiobreaker_call_async(n: int) -> None:
        for _ in range(n):
            await breaker.call_async(ok)

    return aiobreaker_call_async


def _circuitbreaker() -> Case | None:
    try:
        import circuitbreaker
    except ImportError:
        return None
    decorated = circuitbreaker.circuit(failure_threshold=5, recovery_timeout=30)(ok)

    async def circuitbreaker_decorator(n: int) -> None:
        for _ in range(n):
            await decorated()

    return circuitbreaker_decorator


async def asyncio_semaphore(n: int) -> None:
    semaphore = asyncio.Semaphore(10)
    for _ in range(n):
        async with semaphore:
            await ok()


async def anyio_capacity_limiter(n: int) -> None:
    limiter = anyio.CapacityLimiter(10)
    for _ in range(n):
        async with limiter:
            await ok()


# (label, case factory, backends it runs on). The first row is the baseline.
def cases() -> list[tuple[str, Case | None, tuple[str, ...]]]:
    both = ("asyncio", "trio")
    instrumented, sdk_floor = _instrumented()
    return [
        ("bare `await ok()`", bare, both),
        ("asyncres.timeout", asyncres_timeout, both),
        ("asyncio.timeout (native)", asyncio_timeout, ("asyncio",)),
        ("trio.fail_after (native)", trio_fail_after, ("trio",)),
        ("anyio.fail_after", anyio_fail_after, both),
        ("asyncres.Timeout.call", asyncres_timeout_policy, both),
        ("asyncres Retry.call (success)", asyncres_retry_call, both),
        ("asyncres @retry (success)", asyncres_retry_decorator, both),
        ("tenacity @retry (success)", _tenacity(), both),
        ("stamina @retry (success)", _stamina(), both),
        ("backoff on_exception (success)", _backoff(), both),
        ("purgatory `async with` (held breaker)", _purgatory(), both),
        ("pybreaker calling()", _pybreaker(), both),
        ("aiobreaker call_async", _aiobreaker(), ("asyncio",)),
        ("circuitbreaker @circuit", _circuitbreaker(), both),
        ("asyncres CircuitBreaker.call (closed)", asyncres_breaker_call, both),
        ("asyncres CircuitBreaker `async with` (closed)", asyncres_breaker_with, both),
        ("asyncres canonical 5-layer Pipeline.call", asyncres_pipeline_call, both),
        (INSTRUMENTED, instrumented, both),
        (SDK_FLOOR, sdk_floor, both),
        ("asyncres Fallback.call (success)", asyncres_fallback_call, both),
        ("asyncres Hedge.call (answer before the delay)", asyncres_hedge_call, both),
        ("anyio task group (reference for Hedge)", anyio_task_group, both),
        ("asyncres Bulkhead `async with`", asyncres_bulkhead_with, both),
        ("asyncres Bulkhead.call", asyncres_bulkhead_call, both),
        ("asyncres Throttle.call (success)", asyncres_throttle_call, both),
        ("asyncres RateLimit.call (admitted)", asyncres_rate_limit_call, both),
        ("asyncres AdaptiveLimit.call (gradient2)", asyncres_limit_call, both),
        ("asyncres AdaptiveLimit.call (aimd)", asyncres_limit_aimd_call, both),
        ("asyncres AdaptiveLimit.call (every call timed)", asyncres_limit_timed_call, both),
        ("asyncio.Semaphore `async with`", asyncio_semaphore, ("asyncio",)),
        ("anyio.CapacityLimiter `async with`", anyio_capacity_limiter, both),
    ]


async def _measure(case: Case, number: int) -> float:
    await case(min(number, 1000))  # warm up
    gc.disable()
    try:
        start = time.perf_counter_ns()
        await case(number)
        elapsed = time.perf_counter_ns() - start
    finally:
        gc.enable()
    return elapsed / number


def run_backend(backend: str, number: int, repeat: int) -> dict[str, tuple[float, float]]:
    """Return {case: (median ns per call, median ratio to bare within the same round)}."""
    selected = [(label, case) for label, case, where in cases() if case and backend in where]

    async def main() -> dict[str, list[float]]:
        samples: dict[str, list[float]] = {label: [] for label, _ in selected}
        for _ in range(repeat):
            for label, case in selected:
                samples[label].append(await _measure(case, number))
        return samples

    samples = anyio.run(main, backend=backend)
    baseline = samples[selected[0][0]]
    return {
        label: (
            statistics.median(values),
            statistics.median(v / b for v, b in zip(values, baseline, strict=True)),
        )
        for label, values in samples.items()
    }


def markdown(results: dict[str, dict[str, tuple[float, float]]]) -> str:
    labels = [label for label, _, _ in cases() if any(label in r for r in results.values())]
    backends = list(results)
    head = "| case | " + " | ".join(f"{b} ns | {b} × bare" for b in backends) + " |"
    rule = "| --- | " + " | ".join("---: | ---:" for _ in backends) + " |"
    rows = [head, rule]
    for label in labels:
        cells = []
        for backend in backends:
            if label in results[backend]:
                ns, ratio = results[backend][label]
                cells.append(f"{ns:,.0f} | {ratio:.2f}")
            else:
                cells.append("— | —")
        rows.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n\n" + targets(results)


SEMAPHORE = "asyncio.Semaphore `async with`"
INSTRUMENTED = "asyncres 5-layer Pipeline.call, OpenTelemetry SDK instrumented"
SDK_FLOOR = "OpenTelemetry SDK alone: a call's two Histogram.record (no asyncres)"
LIMITER = "anyio.CapacityLimiter `async with`"

# (what, numerator, denominator or None for bare, limit) per backend.
TARGETS = {
    "asyncio": [
        (
            "asyncres.timeout ÷ asyncio.timeout",
            "asyncres.timeout",
            "asyncio.timeout (native)",
            1.15,
        ),
    ],
    "trio": [
        (
            "asyncres.timeout ÷ trio.fail_after",
            "asyncres.timeout",
            "trio.fail_after (native)",
            1.15,
        ),
    ],
}
PURGATORY = "purgatory `async with` (held breaker)"
PIPELINE = "asyncres canonical 5-layer Pipeline.call"
TENACITY = "tenacity @retry (success)"
RETRY_TARGETS = [
    ("Retry.call ÷ bare", "asyncres Retry.call (success)", None, 4.0),
    ("@retry ÷ bare", "asyncres @retry (success)", None, 4.0),
    ("CircuitBreaker.call ÷ purgatory", "asyncres CircuitBreaker.call (closed)", PURGATORY, 0.75),
    (
        "CircuitBreaker `async with` ÷ purgatory",
        "asyncres CircuitBreaker `async with` (closed)",
        PURGATORY,
        0.75,
    ),
    ("5-layer Pipeline ÷ tenacity", PIPELINE, TENACITY, 0.5),
    ("instrumented 5-layer Pipeline ÷ uninstrumented", INSTRUMENTED, PIPELINE, 2.0),
    ("Throttle.call ÷ bare", "asyncres Throttle.call (success)", None, 5.0),
    ("RateLimit.call ÷ bare", "asyncres RateLimit.call (admitted)", None, 5.0),
    ("AdaptiveLimit.call ÷ bare (gradient2)", "asyncres AdaptiveLimit.call (gradient2)", None, 5.0),
    ("AdaptiveLimit.call ÷ bare (aimd)", "asyncres AdaptiveLimit.call (aimd)", None, 5.0),
]


def targets(results: dict[str, dict[str, tuple[float, float]]]) -> str:
    """The issue's targets, as ratios from this run."""
    lines = ["| target | backend | measured | limit | met |", "| --- | --- | ---: | ---: | --- |"]
    for backend, per in results.items():
        for what, num, den, limit in TARGETS.get(backend, []) + RETRY_TARGETS:
            if num not in per or (den is not None and den not in per):
                continue
            ratio = per[num][1] / (per[den][1] if den is not None else 1.0)
            met = "yes" if ratio <= limit else "**no**"
            lines.append(f"| {what} | {backend} | {ratio:.2f} | ≤ {limit:g} | {met} |")
        if SDK_FLOOR in per and PIPELINE in per:
            # The lowest the instrumented ratio can be: the plain call plus the SDK's own
            # records (the floor row's one bare await taken out).
            best = (per[PIPELINE][1] + per[SDK_FLOOR][1] - 1.0) / per[PIPELINE][1]
            met = "yes" if best <= 2.0 else "**no**"
            lines.append(
                f"| lowest reachable instrumented ÷ uninstrumented (SDK floor) | {backend} "
                f"| {best:.2f} | ≤ 2 | {met} |"
            )
    return "\n".join(lines)


def update_readme(path: Path, block: str) -> None:
    """Replace the text between the overhead-table markers in the README."""
    start, end = "<!-- overhead-table -->", "<!-- /overhead-table -->"
    text = path.read_text()
    head, _, rest = text.partition(start)
    _, _, tail = rest.partition(end)
    path.write_text(f"{head}{start}\n{block}\n{end}{tail}")


def environment() -> str:
    from importlib.metadata import PackageNotFoundError, version

    versions = []
    peers = ("anyio", "trio", "tenacity", "stamina", "backoff")
    peers += ("purgatory", "pybreaker", "aiobreaker", "circuitbreaker")
    for name in peers:
        try:
            versions.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            pass
    return f"Python {platform.python_version()} on {platform.machine()}, " + ", ".join(versions)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=10_000, help="calls per measurement")
    parser.add_argument("--repeat", type=int, default=15, help="rounds; the median is reported")
    parser.add_argument("--backend", action="append", choices=["asyncio", "trio"])
    parser.add_argument("--json", type=Path, help="write {backend: {case: ns}} here")
    parser.add_argument("--markdown", type=Path, help="write the markdown table here")
    parser.add_argument("--readme", type=Path, help="also replace the table in this README")
    args = parser.parse_args(argv)
    backends = args.backend or ["asyncio", "trio"]
    results: dict[str, dict[str, tuple[float, float]]] = {}
    for backend in backends:
        results[backend] = run_backend(backend, args.number, args.repeat)
    table = markdown(results)
    print(table)
    print(f"\n{environment()}; median of {args.repeat} rounds of {args.number:,} calls.")
    if args.json:
        ns_only = {b: {case: ns for case, (ns, _) in r.items()} for b, r in results.items()}
        args.json.write_text(json.dumps(ns_only, indent=2) + "\n")
    footer = (
        f"{environment()}; median of {args.repeat} rounds of {args.number:,} calls. "
        "Regenerate: `python -m benchmarks.overhead --markdown benchmarks/results/overhead.md "
        "--readme README.md`."
    )
    if args.markdown:
        args.markdown.write_text(f"# Overhead per call\n\n{table}\n\n{footer}\n")
    if args.readme:
        update_readme(args.readme, f"{table}\n\n{footer}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
