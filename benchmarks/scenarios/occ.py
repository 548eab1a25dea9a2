"""Scenario 1: backoff under contention (Brooker's optimistic-concurrency simulation).

N clients each make one write to the same row with optimistic concurrency: read the
version, write with it; the write fails when another client wrote first, and the client
backs off and starts over. Every network hop takes ``|Normal(10 ms, 2 ms)|``; backoff base
5 ms, cap 2 s. We count write calls (work) and the time until the last client is done.

Two harnesses:

* **The grid** (N = 10..100) is a discrete-event simulation, as in the blog: a heap of
  server events on a simulated clock. It drives each strategy through its public face:
  ``asyncres.backoff.X(...).delays(rng)`` and tenacity's ``wait_random_exponential`` called
  with a `RetryCallState`. The same simulation with the blog's own formulas is the check
  that the harness reproduces the published numbers.
* **The cross-check** runs the real retry loops, ``asyncres.Retry.call`` and tenacity's
  ``AsyncRetrying``, with N client tasks on trio's virtual clock, to show that the loops
  apply their strategies as the grid assumes. It costs ~80 µs of real time per sleep, so it
  runs at fewer points.
"""

from __future__ import annotations

import heapq
import math
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import anyio

import asyncres
from asyncres import backoff

from ._common import (
    TRIO_CLOCK,
    ScenarioResult,
    Table,
    derive_seed,
    fmt,
    parallel,
    pct,
    run_virtual,
)

BASE = 0.005
CAP = 2.0
HOP_MEAN = 0.010
HOP_SD = 0.002

#: The blog's re-run at N = 100 (REFERENCE.md): mean write calls, completion ms.
PUBLISHED_N100 = {
    "none": (2427, 2030),
    "exponential": (1857, 63716),
    "equal": (810, 6539),
    "full": (795, 4918),
    "decorrelated": (1003, 4528),
}

# A strategy factory gets (rng, client index) and returns that client's delays, in seconds.
DelayFactory = Callable[[random.Random], Iterator[float]]


def _asyncres(strategy: backoff.Backoff) -> DelayFactory:
    def delays(rng: random.Random) -> Iterator[float]:
        return strategy.delays(rng)

    return delays


def _tenacity_full_jitter() -> DelayFactory:
    import tenacity

    wait = tenacity.wait_random_exponential(multiplier=BASE, max=CAP)

    def delays(rng: random.Random) -> Iterator[float]:
        # tenacity draws from the module-level `random`, seeded per run by the caller.
        state = tenacity.RetryCallState(retry_object=None, fn=None, args=(), kwargs={})
        attempt = 0
        while True:
            attempt += 1
            state.attempt_number = attempt
            yield wait(state)

    return delays


# The blog's formulas, attempt counted from 1 (its simulator increments before backing
# off): the first ceiling is 2 * base, and decorrelated jitter caps after drawing.


def _published(kind: str) -> DelayFactory:
    def delays(rng: random.Random) -> Iterator[float]:
        attempt = 0
        sleep = BASE
        while True:
            attempt += 1
            expo = min(CAP, BASE * 2.0**attempt)
            if kind == "none":
                yield 0.0
            elif kind == "exponential":
                yield expo
            elif kind == "equal":
                yield expo / 2 + rng.uniform(0, expo / 2)
            elif kind == "full":
                yield rng.uniform(0, expo)
            else:
                sleep = min(CAP, rng.uniform(BASE, sleep * 3))
                yield sleep

    return delays


@dataclass(frozen=True)
class Strategy:
    key: str
    label: str
    factory: Callable[[], DelayFactory]
    #: Which published row it should be compared with.
    published: str


def strategies() -> list[Strategy]:
    """The contenders of the grid, asyncres's default (full jitter) first."""
    result = [
        Strategy(
            "full",
            "asyncres `FullJitter(0.005, 2.0)` (default kind)",
            lambda: _asyncres(backoff.FullJitter(BASE, CAP)),
            "full",
        ),
        Strategy(
            "equal",
            "asyncres `EqualJitter(0.005, 2.0)`",
            lambda: _asyncres(backoff.EqualJitter(BASE, CAP)),
            "equal",
        ),
        Strategy(
            "decorrelated",
            "asyncres `DecorrelatedJitter(0.005, 2.0)`",
            lambda: _asyncres(backoff.DecorrelatedJitter(BASE, CAP)),
            "decorrelated",
        ),
        Strategy(
            "exponential",
            "asyncres `Exponential(0.005, 2.0)` (no jitter)",
            lambda: _asyncres(backoff.Exponential(BASE, CAP)),
            "exponential",
        ),
        Strategy(
            "none",
            "asyncres `Constant(0)` (no backoff)",
            lambda: _asyncres(backoff.Constant(0.0)),
            "none",
        ),
        Strategy(
            "full10",
            "asyncres `FullJitter(0.010, 2.0)` (the blog's first ceiling)",
            lambda: _asyncres(backoff.FullJitter(2 * BASE, CAP)),
            "full",
        ),
    ]
    try:
        import tenacity  # noqa: F401
    except ImportError:  # pragma: no cover - peers are optional
        return result
    result.insert(
        3,
        Strategy(
            "tenacity",
            "tenacity `wait_random_exponential(multiplier=0.005, max=2.0)`",
            _tenacity_full_jitter,
            "full",
        ),
    )
    return result


# -- the discrete-event simulation ------------------------------------------------------


def simulate(clients: int, delays: DelayFactory, seed: int) -> tuple[int, float]:
    """One run: (write calls, completion seconds) for ``clients`` contending clients.

    Only server events go on the heap (reads and writes, each at the moment it reaches the
    row); the client side of a round trip is folded into the event times.
    """
    net = random.Random(seed)
    rng = random.Random(derive_seed(seed, "backoff"))
    random.seed(derive_seed(seed, "backoff"))  # for peers that use the module generator
    gauss = net.gauss

    def hop() -> float:
        return abs(gauss(HOP_MEAN, HOP_SD))

    plans = [delays(rng) for _ in range(clients)]
    heap: list[tuple[float, int, int, int]] = []  # (time, client, kind, version)
    read, write = 0, 1
    for client in range(clients):
        heap.append((hop(), client, read, 0))
    heapq.heapify(heap)
    version = 0
    calls = 0
    finished = 0.0
    push, pop = heapq.heappush, heapq.heappop
    while heap:
        now, client, kind, seen = pop(heap)
        if kind == read:
            # The reply travels back, then the write travels to the row.
            push(heap, (now + hop() + hop(), client, write, version))
            continue
        calls += 1
        if seen == version:
            version += 1
            done = now + hop()
            if done > finished:
                finished = done
        else:
            # The failure travels back; the client backs off; the next read travels out.
            push(heap, (now + hop() + next(plans[client]) + hop(), client, read, 0))
    return calls, finished


def _grid_row(key: str, clients: list[int], runs: int, seed: int) -> dict[int, tuple[float, float]]:
    factory = {s.key: s for s in strategies()}[key].factory()
    per_n: dict[int, tuple[float, float]] = {}
    for n in clients:
        total_calls = 0
        total_time = 0.0
        for run in range(runs):
            calls, finished = simulate(n, factory, derive_seed(seed, "occ", n, run))
            total_calls += calls
            total_time += finished
        per_n[n] = (total_calls / runs, total_time / runs)
    return per_n


def grid(
    clients: list[int], runs: int, seed: int, workers: int = 1
) -> dict[str, dict[int, tuple[float, float]]]:
    """Mean (write calls, completion seconds) per strategy and N."""
    keys = [s.key for s in strategies()]
    rows = parallel([(_grid_row, (k, clients, runs, seed)) for k in keys], workers)
    return dict(zip(keys, rows, strict=True))


def published_check(clients: int, runs: int, seed: int) -> dict[str, tuple[float, float]]:
    """The blog's own formulas in the same harness, for comparison with its numbers."""
    result: dict[str, tuple[float, float]] = {}
    for kind in PUBLISHED_N100:
        factory = _published(kind)
        calls = 0
        spent = 0.0
        for run in range(runs):
            c, f = simulate(clients, factory, derive_seed(seed, "occ", clients, run))
            calls += c
            spent += f
        result[kind] = (calls / runs, spent / runs)
    return result


# -- the cross-check: real retry loops on a virtual clock --------------------------------


class Conflict(Exception):
    """The row changed since it was read."""


async def _real_run(clients: int, make_call: Callable[[], Any], seed: int) -> tuple[int, float]:
    net = random.Random(seed)
    gauss = net.gauss
    row = {"version": 0, "calls": 0}
    finished = 0.0
    origin = anyio.current_time()

    def hop() -> float:
        return abs(gauss(HOP_MEAN, HOP_SD))

    async def attempt() -> None:
        await anyio.sleep(hop())  # read request reaches the row
        seen = row["version"]
        await anyio.sleep(hop() + hop())  # the version travels back, the write travels out
        row["calls"] += 1
        ok = seen == row["version"]
        if ok:
            row["version"] += 1
        await anyio.sleep(hop())  # the outcome travels back
        if not ok:
            raise Conflict

    async def client(call: Any) -> None:
        nonlocal finished
        await call(attempt)
        finished = max(finished, anyio.current_time() - origin)

    async with anyio.create_task_group() as tg:
        for _ in range(clients):
            tg.start_soon(client, make_call())
    return row["calls"], finished


def _asyncres_retry(strategy: backoff.Backoff, rng: random.Random) -> Callable[[], Any]:
    def make() -> Any:
        # One client, one retry policy: no budget and no attempt limit, as in the blog.
        retry = asyncres.Retry(
            on=Conflict, max_attempts=1_000_000, backoff=strategy, budget=None, rng=rng
        )
        return retry.call

    return make


def _tenacity_retry() -> Callable[[], Any]:
    import tenacity

    def make() -> Any:
        return tenacity.AsyncRetrying(
            wait=tenacity.wait_random_exponential(multiplier=BASE, max=CAP),
            retry=tenacity.retry_if_exception_type(Conflict),
        )

    return make


def cross_check(clients: int, runs: int, seed: int) -> dict[str, tuple[float, float, float, float]]:
    """(loop calls, loop seconds, grid calls, grid seconds) per strategy, same seeds."""
    contenders: list[tuple[str, Callable[[random.Random], Callable[[], Any]], DelayFactory]] = [
        (
            "full",
            lambda rng: _asyncres_retry(backoff.FullJitter(BASE, CAP), rng),
            _asyncres(backoff.FullJitter(BASE, CAP)),
        ),
        (
            "equal",
            lambda rng: _asyncres_retry(backoff.EqualJitter(BASE, CAP), rng),
            _asyncres(backoff.EqualJitter(BASE, CAP)),
        ),
        (
            "exponential",
            lambda rng: _asyncres_retry(backoff.Exponential(BASE, CAP), rng),
            _asyncres(backoff.Exponential(BASE, CAP)),
        ),
    ]
    try:
        import tenacity  # noqa: F401
    except ImportError:  # pragma: no cover
        pass
    else:
        contenders.append(("tenacity", lambda rng: _tenacity_retry(), _tenacity_full_jitter()))
    result = {}
    for key, loop_factory, grid_factory in contenders:
        loop_calls = loop_time = grid_calls = grid_time = 0.0
        for run in range(runs):
            run_seed = derive_seed(seed, "occ-loop", clients, run)
            rng = random.Random(derive_seed(run_seed, "backoff"))
            random.seed(derive_seed(run_seed, "backoff"))
            calls, spent = run_virtual(
                _real_run, clients, loop_factory(rng), run_seed, backend="trio"
            )
            loop_calls += calls
            loop_time += spent
            calls, spent = simulate(clients, grid_factory, run_seed)
            grid_calls += calls
            grid_time += spent
        result[key] = (loop_calls / runs, loop_time / runs, grid_calls / runs, grid_time / runs)
    return result


# -- the scenario -----------------------------------------------------------------------


def run(*, smoke: bool = False, seed: int = 2015, workers: int = 1) -> ScenarioResult:
    started = time.perf_counter()
    if smoke:
        clients, runs, check_n, check_runs, loop_n, loop_runs = [10, 20], 3, 20, 3, 10, 1
    else:
        clients, runs = list(range(10, 101, 10)), 100
        check_n, check_runs, loop_n, loop_runs = 100, 100, 50, 8
    table = grid(clients, runs, seed, workers)
    published = published_check(check_n, check_runs, seed)
    loops = cross_check(loop_n, loop_runs, seed)
    labels = {s.key: s.label for s in strategies()}
    order = [s.key for s in strategies()]

    calls_table = Table(
        "Mean write calls per run (work)",
        ["strategy", *[f"N={n}" for n in clients]],
        [[labels[k], *[fmt(table[k][n][0], 0) for n in clients]] for k in order],
    )
    time_table = Table(
        "Mean completion time per run, ms",
        ["strategy", *[f"N={n}" for n in clients]],
        [[labels[k], *[fmt(table[k][n][1] * 1000, 0) for n in clients]] for k in order],
    )
    check_rows = []
    for kind, (calls, spent) in published.items():
        pub_calls, pub_ms = PUBLISHED_N100[kind]
        check_rows.append(
            [kind, fmt(calls, 0), fmt(spent * 1000, 0), f"{pub_calls:,}", f"{pub_ms:,}"]
        )
    check_table = Table(
        f"Harness check: the blog's own formulas at N={check_n}, {check_runs} runs",
        ["formula (blog)", "write calls", "completion ms", "published calls", "published ms"],
        check_rows,
    )
    loop_table = Table(
        f"Cross-check: the real retry loops at N={loop_n} ({loop_runs} runs, {TRIO_CLOCK})",
        ["strategy", "loop: calls", "loop: ms", "grid: calls", "grid: ms"],
        [
            [labels.get(k, k), fmt(lc, 0), fmt(lt * 1000, 0), fmt(gc, 0), fmt(gt * 1000, 0)]
            for k, (lc, lt, gc, gt) in loops.items()
        ],
    )

    reading = _reading(table, clients, published, check_n, loops)
    return ScenarioResult(
        number=1,
        title="Backoff under contention",
        question=(
            "Does the default backoff do the least work when many clients fight over one "
            "row, as in Brooker's simulation?"
        ),
        clock=(
            "the grid: a discrete-event simulation (its own simulated clock, no event loop); "
            f"the cross-check: {TRIO_CLOCK}"
        ),
        setup=[
            f"N = {clients[0]}…{clients[-1]} clients, one optimistic-concurrency write each to "
            "one row; each network hop |Normal(10 ms, 2 ms)|; base 5 ms, cap 2 s.",
            f"{runs} runs per N{'' if runs >= 100 else ' (reduced for the smoke run)'}; run "
            "r at N uses the same network seed for every strategy.",
            "Strategies are driven through their public face: "
            "`asyncres.backoff.X(0.005, 2.0).delays(rng)`, and tenacity's "
            "`wait_random_exponential(multiplier=0.005, max=2.0)` called with a "
            "`RetryCallState`. Both draw their first wait from [0, 5 ms]; the blog's simulator "
            "counts attempts from 1, so its first ceiling is 10 ms (see the harness check).",
            "asyncres's decorrelated jitter caps the range before drawing (no pile-up at the "
            "cap), unlike the blog's. Polly's V2 decorrelated jitter is not implemented.",
            "`Retry` in the cross-check: `max_attempts=1_000_000, budget=None` (the blog's clients "
            "retry until they succeed; a budget would change the experiment).",
        ],
        configs=[],
        tables=[calls_table, time_table, check_table, loop_table],
        reading=reading,
        data={
            "grid": table,
            "published": published,
            "loops": loops,
            "clients": clients,
            "ranking": ranking(table, clients[-1]),
        },
        seconds=time.perf_counter() - started,
        smoke=smoke,
        seed=seed,
    )


def _retry_base() -> float:
    """`Retry`'s default first backoff ceiling."""
    base: float = asyncres.Retry(on=Conflict).backoff.base  # type: ignore[attr-defined]
    return base


def ranking(table: dict[str, dict[int, tuple[float, float]]], n: int) -> tuple[str, str, bool]:
    """At ``n`` clients: the jittered strategy with the least work, the slowest jittered one,
    and whether un-jittered exponential is the clear loser (more work than any jittered
    strategy, and over three times as slow)."""
    calls = {k: v[n][0] for k, v in table.items()}
    times = {k: v[n][1] for k, v in table.items()}
    jittered = [k for k in ("full", "equal", "decorrelated") if k in calls]
    least_work = min(jittered, key=lambda k: calls[k])
    slowest = max(jittered, key=lambda k: times[k])
    loser = calls["exponential"] > max(calls[k] for k in jittered) and times[
        "exponential"
    ] > 3 * max(times[k] for k in jittered)
    return least_work, slowest, loser


def _reading(
    table: dict[str, dict[int, tuple[float, float]]],
    clients: list[int],
    published: dict[str, tuple[float, float]],
    check_n: int,
    loops: dict[str, tuple[float, float, float, float]],
) -> list[str]:
    n = clients[-1]
    calls = {k: v[n][0] for k, v in table.items()}
    times = {k: v[n][1] for k, v in table.items()}
    least_work, slowest, loser = ranking(table, n)
    ranking_ok = least_work == "full" and slowest == "equal" and loser
    lines = [
        f"At N={n}: full jitter makes {calls['full']:,.0f} write calls and finishes in "
        f"{times['full'] * 1000:,.0f} ms; equal jitter {calls['equal']:,.0f} calls / "
        f"{times['equal'] * 1000:,.0f} ms; decorrelated {calls['decorrelated']:,.0f} calls / "
        f"{times['decorrelated'] * 1000:,.0f} ms; un-jittered exponential "
        f"{calls['exponential']:,.0f} calls / {times['exponential'] * 1000:,.0f} ms; no backoff "
        f"{calls['none']:,.0f} calls / {times['none'] * 1000:,.0f} ms.",
        (
            "**The published ranking holds**: full jitter does the least work, equal jitter is "
            "the slowest of the jittered strategies, and un-jittered exponential is the clear "
            "loser (its clients stay in lock-step, so it does more work than any jittered "
            "strategy and takes an order of magnitude longer)."
            if ranking_ok
            else f"**The published ranking does not fully hold in this run** (least work: "
            f"{least_work}; slowest jittered: {slowest}; exponential the clear loser: {loser})."
        ),
    ]
    jitter_keys = ("full", "equal", "decorrelated")
    least = {m: min(jitter_keys, key=lambda k: table[k][m][0]) for m in clients}
    from_n = next((m for m in clients if all(least[x] == "full" for x in clients if x >= m)), None)
    if from_n is not None and from_n > clients[0]:
        smaller = [m for m in clients if m < from_n]
        lines.append(
            f"Full jitter does the least work from N = {from_n} up; at N ≤ {smaller[-1]} "
            "decorrelated jitter does fewer calls (its first wait is drawn from [5, 15] ms, "
            "longer than full jitter's [0, 5] ms, which pays off while few clients collide)."
            + (
                f" Even with the blog's first ceiling, `FullJitter(0.010, 2.0)` does more "
                f"calls than decorrelated jitter at N = {clients[0]} "
                f"({table['full10'][clients[0]][0]:,.0f} against "
                f"{table['decorrelated'][clients[0]][0]:,.0f}): the ranking is a statement "
                "about heavy contention."
                if "full10" in table
                and table["full10"][clients[0]][0] > table["decorrelated"][clients[0]][0]
                else ""
            )
        )
    if "full10" in calls:
        lines.append(
            f"`FullJitter(0.010, 2.0)` — the blog's first ceiling of 10 ms — does "
            f"{calls['full10']:,.0f} calls / {times['full10'] * 1000:,.0f} ms at N={n}, "
            f"{(1 - calls['full10'] / calls['full']) * 100:.0f} % "
            f"{'less' if calls['full10'] < calls['full'] else 'more'} work than with base 5 ms"
            + (
                f", as the blog's own full jitter in this harness "
                f"({published['full'][0]:,.0f} calls / {published['full'][1] * 1000:,.0f} ms)"
                if check_n == n and "full" in published
                else ""
            )
            + (
                ": under heavy contention a larger first wait is cheaper."
                if calls["full10"] < calls["full"]
                else "."
            )
            + f" (`Retry`'s default base is {_retry_base() * 1000:.0f} ms.)"
        )
    if "tenacity" in calls:
        lines.append(
            f"tenacity's `wait_random_exponential` is the same full-jitter formula and, drawing "
            f"from the same seeded generator, gives the same numbers as asyncres's "
            f"`FullJitter` ({calls['tenacity']:,.0f} calls at N={n}): no strategy difference "
            "between the two libraries here."
        )
    lines.append(
        "Decorrelated jitter finishes sooner than full jitter at large N but with more calls, "
        "as in the blog. asyncres's variant draws from [base, min(cap, 3 × previous)] instead "
        "of capping after the draw; at this cap (2 s) the difference barely shows."
        if times["decorrelated"] < times["full"]
        else "Decorrelated jitter does more calls than full jitter; in this run it also "
        "finishes later than full jitter (the blog has it slightly sooner)."
    )
    pub_full = published.get("full")
    if pub_full is not None and check_n == 100:
        calls_off = max(
            abs(published[k][0] / PUBLISHED_N100[k][0] - 1)
            for k in published
            if k in PUBLISHED_N100
        )
        ms_off = max(
            abs(published[k][1] * 1000 / PUBLISHED_N100[k][1] - 1)
            for k in published
            if k in PUBLISHED_N100
        )
        lines.append(
            f"Harness check (N={check_n}): with the blog's own formulas this harness gives "
            f"{pub_full[0]:,.0f} calls / {pub_full[1] * 1000:,.0f} ms for full jitter against "
            f"the published re-run's {PUBLISHED_N100['full'][0]:,} / "
            f"{PUBLISHED_N100['full'][1]:,}; over all five formulas the calls are within "
            f"{pct(calls_off, 1)} and the completion times within {pct(ms_off, 1)} of the "
            "published ones"
            + (
                ", so the grid above runs the same experiment."
                if calls_off <= 0.02 and ms_off <= 0.05
                else " — **further off than the blog's own run-to-run noise would explain**."
            )
            + " Our strategies start one doubling lower (first ceiling 5 ms, not 10 ms), "
            "which is why their absolute numbers differ slightly from the blog's."
        )
    if loops:
        calls_off = max(abs(lc / gc - 1) for lc, _, gc, _ in loops.values())
        ms_off = max(abs(lt / gt - 1) for _, lt, _, gt in loops.values())
        same_order = sorted(loops, key=lambda k: loops[k][0]) == sorted(
            loops, key=lambda k: loops[k][2]
        )
        lines.append(
            "The cross-check runs `asyncres.Retry.call` and tenacity's `AsyncRetrying` as real "
            "retry loops on trio's virtual clock. The draws happen in another order than in "
            "the grid, so single runs differ; over the runs the mean calls differ from the "
            f"grid's by at most {pct(calls_off, 1)} and the completion times (set by the last "
            f"straggler, the noisiest) by at most {pct(ms_off, 1)}, and "
            + (
                "the strategies rank the same by work: the loops apply the strategies as the "
                "grid assumes."
                if same_order
                else "**the strategies rank differently by work** in the loops and the grid."
            )
        )
    return lines


_ = math
