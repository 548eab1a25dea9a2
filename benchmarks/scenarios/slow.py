"""Scenario 4: a slow dependency behind a fixed-size connection pool.

The dependency's latency rises 20x for 30 s. The client reaches it through a pool of 10
connections (a request holds one for its whole duration; waiting for one is bounded by a
pool timeout of 5 s, httpx's default). Callers want an answer within 1 s. Without load
shedding the pool's queue grows until every request waits longer than anyone cares.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio

from ._common import (
    ASYNCIO_CLOCK,
    ScenarioResult,
    Table,
    derive_seed,
    fmt,
    open_loop,
    parallel,
    pct,
    percentile,
    poisson_arrivals,
    run_virtual,
    seconds_or_ms,
    source_of,
)

POOL_SIZE = 10
POOL_TIMEOUT = 5.0
LATENCY = 0.020
LATENCY_SD = 0.004
SLOWDOWN = 20.0
DEADLINE = 1.0
#: A failure faster than this was rejected fast; slower, it timed out slowly.
FAST = 0.1


class PoolTimeout(TimeoutError):
    """No connection became free within the pool timeout (httpx.PoolTimeout's role)."""


class PooledDependency:
    """A dependency reached through a pool of ``POOL_SIZE`` connections."""

    def __init__(self, slow_window: tuple[float, float], seed: int) -> None:
        self._pool = anyio.Semaphore(POOL_SIZE)
        self._slow = slow_window
        self._rng = random.Random(derive_seed(seed, "latency"))
        self._origin = 0.0
        self.started = 0
        self.completed = 0

    def start(self) -> None:
        self._origin = anyio.current_time()

    async def request(self) -> str:
        """Wait for a connection (at most the pool timeout), then make the call on it."""
        with anyio.move_on_after(POOL_TIMEOUT) as scope:
            await self._pool.acquire()
        if scope.cancelled_caught:
            raise PoolTimeout("no connection within the pool timeout")
        try:
            now = anyio.current_time() - self._origin
            latency = abs(self._rng.gauss(LATENCY, LATENCY_SD))
            if self._slow[0] <= now < self._slow[1]:
                latency *= SLOWDOWN
            self.started += 1
            await anyio.sleep(latency)
            self.completed += 1
            return "ok"
        finally:
            self._pool.release()


# -- contenders (their source is printed in the results) -----------------------------------


def pool_only(dependency: Any) -> Any:
    # No resilience library: the pool's own 5 s timeout is the only limit.
    return dependency.request


def tenacity_with_timeouts(dependency: Any) -> Any:
    import asyncio

    import tenacity

    @tenacity.retry(
        stop=tenacity.stop_after_attempt(3),
        wait=tenacity.wait_random_exponential(multiplier=0.1, max=1),
        retry=tenacity.retry_if_exception_type(TimeoutError),
    )
    async def attempt() -> Any:
        async with asyncio.timeout(0.5):  # per attempt
            return await dependency.request()

    async def call() -> Any:
        async with asyncio.timeout(1.0):  # the caller's deadline
            return await attempt()

    return call


def asyncres_guarded(dependency: Any) -> Any:
    import asyncres

    policy = asyncres.Pipeline(
        asyncres.Timeout(1.0),  # the caller's deadline, for every layer below
        asyncres.Retry(on=TimeoutError),  # defaults: 3 attempts, jitter, a budget
        asyncres.CircuitBreaker(failure_rate=0.5, window=10.0, recovery_time=5.0),
        asyncres.Bulkhead(max_concurrent=10, max_queued=10),  # the pool's size
        asyncres.Timeout(0.5),  # per attempt
    )
    return lambda: policy.call(dependency.request)


ASYNCRES = "asyncres: deadline + retry + breaker + bulkhead"
TENACITY = "tenacity + asyncio timeouts"
POOL_ONLY = "pool timeout only (no library)"

CONTENDERS: list[tuple[str, Callable[[Any], Any]]] = [
    (ASYNCRES, asyncres_guarded),
    (TENACITY, tenacity_with_timeouts),
    (POOL_ONLY, pool_only),
]


@dataclass
class SlowOutcome:
    requests: int = 0
    on_time: int = 0
    late: int = 0
    failed_fast: int = 0
    failed_slow: int = 0
    durations: list[float] = field(default_factory=list)
    started: int = 0
    abandoned: int = 0
    after_on_time: float = math.nan
    errors: dict[str, int] = field(default_factory=dict)

    @property
    def goodput(self) -> float:
        return self.on_time / self.requests if self.requests else math.nan


async def _run(
    name: str, rate: float, window: tuple[float, float], total: float, seed: int
) -> SlowOutcome:
    build = dict(CONTENDERS)[name]
    arrivals = poisson_arrivals(rate, total, random.Random(derive_seed(seed, "arrivals")))
    dependency = PooledDependency(window, seed)
    random.seed(derive_seed(seed, "contender"))
    call: Callable[[], Awaitable[Any]] = build(dependency)
    ok = [False] * len(arrivals)
    spent = [math.nan] * len(arrivals)
    kinds: list[str] = [""] * len(arrivals)

    async def handle(index: int) -> None:
        began = anyio.current_time()
        try:
            await call()
        except Exception as exc:
            kinds[index] = type(exc).__name__
        else:
            ok[index] = True
        spent[index] = anyio.current_time() - began

    dependency.start()
    await open_loop(arrivals, handle)
    start, end = window
    outcome = SlowOutcome()
    after = [i for i, at in enumerate(arrivals) if end <= at < end + 10.0]
    outcome.after_on_time = (
        sum(1 for i in after if ok[i] and spent[i] <= DEADLINE) / len(after) if after else math.nan
    )
    for i, at in enumerate(arrivals):
        if not start <= at < end:
            continue
        outcome.requests += 1
        outcome.durations.append(spent[i])
        if ok[i]:
            if spent[i] <= DEADLINE:
                outcome.on_time += 1
            else:
                outcome.late += 1
        else:
            outcome.errors[kinds[i]] = outcome.errors.get(kinds[i], 0) + 1
            if spent[i] < FAST:
                outcome.failed_fast += 1
            else:
                outcome.failed_slow += 1
    outcome.started = dependency.started
    outcome.abandoned = dependency.started - dependency.completed
    return outcome


def _job(
    name: str, rate: float, window: tuple[float, float], total: float, seed: int
) -> SlowOutcome:
    result: SlowOutcome = run_virtual(_run, name, rate, window, total, seed)
    return result


def run(*, smoke: bool = False, seed: int = 4, workers: int = 1) -> ScenarioResult:
    started = time.perf_counter()
    if smoke:
        rate, window, total = 40.0, (1.0, 4.0), 6.0
    else:
        rate, window, total = 100.0, (10.0, 40.0), 60.0
    names = [name for name, _ in CONTENDERS if _available(name)]
    outcomes = parallel(
        [(_job, (n, rate, window, total, derive_seed(seed, "slow"))) for n in names], workers
    )
    results: dict[str, SlowOutcome] = dict(zip(names, outcomes, strict=True))
    seconds = window[1] - window[0]
    table = Table(
        f"Requests offered during the {seconds:.0f} s slowdown ({rate:.0f} requests/s; the pool "
        f"can serve {capacity():.0f}/s while slow)",
        [
            "contender",
            "on-time successes (≤ 1 s) per s",
            "on time",
            "late successes",
            "rejected fast (< 100 ms)",
            "failed slowly (≥ 100 ms)",
            "p99 time to outcome",
            "calls abandoned mid-flight",
            "on time, 10 s after",
        ],
        [
            [
                name,
                fmt(o.on_time / seconds, 1),
                pct(o.goodput),
                f"{o.late:,}",
                f"{o.failed_fast:,}",
                f"{o.failed_slow:,}",
                seconds_or_ms(percentile(o.durations, 99)),
                f"{o.abandoned:,}",
                pct(o.after_on_time),
            ]
            for name, o in results.items()
        ],
    )
    return ScenarioResult(
        number=4,
        title="Slow dependency, fixed-size pool",
        question=(
            "When the dependency becomes 20x slower for 30 s, how many callers still get an "
            "answer in time, and how do the others fail: fast, or after a long wait?"
        ),
        clock=ASYNCIO_CLOCK,
        setup=[
            f"Open-loop Poisson load, {rate:.0f} requests/s; the dependency answers in "
            f"|Normal(20 ms, 4 ms)|, ×{SLOWDOWN:.0f} from t = {window[0]:.0f} s to "
            f"{window[1]:.0f} s.",
            f"The client reaches it through a pool of {POOL_SIZE} connections held for a "
            f"call's duration; waiting for one is bounded by {POOL_TIMEOUT:.0f} s (httpx's "
            "default pool timeout). Callers count an answer after 1 s as useless (*late*).",
            "In-process, without HTTP: the pool is an `anyio.Semaphore`; a cancelled call "
            "frees its connection at once (*abandoned mid-flight*: the dependency did the "
            "work for nobody). The asyncres and tenacity contenders use the same timeouts "
            "(0.5 s per attempt, 1 s in all) and 3 attempts.",
        ],
        configs=[(name, source_of(factory)) for name, factory in CONTENDERS if name in results],
        tables=[table],
        reading=_reading(results, seconds),
        data={"results": results, "rate": rate, "seconds": seconds},
        seconds=time.perf_counter() - started,
        smoke=smoke,
        seed=seed,
    )


def _available(name: str) -> bool:
    if "tenacity" not in name:
        return True
    try:
        import tenacity  # noqa: F401
    except ImportError:  # pragma: no cover
        return False
    return True


def capacity() -> float:
    """On-time answers per second the pool can give while the dependency is slow."""
    return POOL_SIZE / (LATENCY * SLOWDOWN)


def _reading(results: dict[str, SlowOutcome], seconds: float) -> list[str]:
    cap = capacity()
    lines = []
    ours = results.get(ASYNCRES)
    peers = {n: o for n, o in results.items() if n != ASYNCRES}
    if ours is not None:
        rate = ours.on_time / seconds
        line = (
            f"asyncres's pipeline gives **{rate:.1f} on-time answers per second** during the "
            f"slowdown, {pct(rate / cap, 0)} of the {cap:.0f}/s the pool can serve, and fails the "
            f"rest fast ({ours.failed_fast:,} rejected in under 100 ms, {ours.failed_slow:,} "
            f"after waiting); {pct(ours.after_on_time)} of the requests in the 10 s after the "
            "slowdown are on time."
        )
        if peers:
            best = max(peers, key=lambda n: peers[n].on_time)
            theirs = peers[best].on_time
            if ours.on_time > theirs:
                ratio = f"{ours.on_time / theirs:.1f} times" if theirs else "infinitely"
                line += f" That is {ratio} the best alternative's ({best})."
            elif ours.on_time == theirs:
                line += f" **It does no better than {best}.**"
            else:
                line += f" **{best} does better** ({theirs / seconds:.1f}/s)."
        lines.append(line)
        shed = ours.errors.get("BulkheadFullError", 0)
        opened = ours.errors.get("CircuitOpenError", 0)
        lines.append(
            f"Who rejected: the bulkhead {shed:,} requests (the pool and its queue were full), "
            f"the breaker {opened:,}. The breaker sits outside the bulkhead (the canonical "
            "order) and counts a bulkhead's rejection as nothing, since the call never reached "
            "the dependency: shedding load does not trip it, so it never turns away a call "
            "for which a connection was free."
            if opened * 10 <= shed
            else f"Who rejected: the bulkhead {shed:,} requests, the breaker {opened:,}: the "
            "breaker opened on the attempts that timed out and turned away calls for which "
            "a connection may have been free."
        )
    peer = results.get(TENACITY)
    if peer is not None:
        lines.append(
            f"tenacity + timeouts: {peer.on_time / seconds:.1f} on-time answers per second; "
            f"{peer.failed_slow:,} requests fail only after waiting (p99 "
            f"{seconds_or_ms(percentile(peer.durations, 99))}), and {peer.abandoned:,} calls "
            "are abandoned mid-flight after holding a connection: the slow pool works for "
            "callers that have already given up, and retrying the timeouts feeds more attempts "
            "into the same queue."
        )
    base = results.get(POOL_ONLY)
    if base is not None:
        p99 = seconds_or_ms(percentile(base.durations, 99))
        lines.append(
            f"With the pool timeout alone the queue for connections grows without bound: "
            f"{base.late:,} answers arrive late (p99 {p99}), {base.failed_slow:,} requests fail "
            f"after waiting the {POOL_TIMEOUT:.0f} s pool timeout, and "
            f"{pct(base.after_on_time)} of the requests in the 10 s after the slowdown are on "
            "time while the backlog drains."
        )
    return lines
