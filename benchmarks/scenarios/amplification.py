"""Scenarios 2, 3 and 6: what retries do to a dependency that is down, browning out at
random, or overloaded (its capacity below the offered load).

An open-loop load (Poisson arrivals, the same arrival times for every contender) calls a
simulated dependency whose faults come from an `asyncres.chaos.Schedule`: healthy, then
the fault for 60 s, then healthy again. We follow every request offered during the fault
window to its end and count the attempts it made.
"""

from __future__ import annotations

import functools
import math
import time
from typing import Any

import asyncres

from . import _retriers
from ._common import (
    ASYNCIO_CLOCK,
    TRIO_CLOCK,
    ScenarioResult,
    Table,
    derive_seed,
    fmt,
    parallel,
    pct,
    run_virtual,
    seconds_or_ms,
    source_of,
)
from ._load import (
    Contender,
    Outcome,
    Timeline,
    brownout_faults,
    outage_faults,
    overload_faults,
    run_contender,
)
from ._retriers import (
    ADAPTER,
    ASYNCRES_DEFAULTS,
    ASYNCRES_TUNED,
    BASELINE,
    PEER_ATTEMPTS,
    TUNED_RATIO,
    is_peer,
)

RATE = 100.0
#: How long the outage and the brownouts last in the full run.
FAULT_SECONDS = 60.0


def _job(contender: Contender, timeline: Timeline, rate: float, faults: Any, seed: int) -> Outcome:
    outcome: Outcome = run_virtual(
        run_contender, contender, timeline, rate, faults, seed, backend=contender.backend
    )
    return outcome


def _timeline(smoke: bool) -> Timeline:
    return (
        Timeline(warmup=2.0, fault=4.0, after=2.0) if smoke else Timeline(10.0, FAULT_SECONDS, 20.0)
    )


# Slow contenders first, so that two workers finish together.
_COST = {"stamina defaults": 0, "httpx-retries defaults": 1, "backoff (`expo`, `max_tries=3`)": 2}


def _ordered(items: list[Contender]) -> list[Contender]:
    return sorted(items, key=lambda c: _COST.get(c.name, 9))


def _configs() -> list[tuple[str, str]]:
    configs = []
    for factory in _retriers.CONFIG_SOURCES:
        name = factory.__name__
        if name == "asyncres_httpx_defaults" and not _retriers._has("asyncres.httpx"):
            continue
        configs.append((name, source_of(factory)))
    return configs


def run_outage(*, smoke: bool = False, seed: int = 2, workers: int = 1) -> ScenarioResult:
    started = time.perf_counter()
    timeline = _timeline(smoke)
    rate = 20.0 if smoke else RATE
    contenders = _ordered(_retriers.contenders())
    faults = functools.partial(_outage, 0)
    sweep_rates = [20.0] if smoke else [10.0, 25.0, 50.0, 100.0, 200.0]
    asyncres_default = _retriers.contenders(trio_row=False)[0]
    jobs: list[Any] = [
        (_job, (c, timeline, rate, faults, derive_seed(seed, "outage"))) for c in contenders
    ]
    jobs += [
        (_job, (asyncres_default, timeline, r, faults, derive_seed(seed, "outage", r)))
        for r in sweep_rates
    ]
    outcomes = parallel(jobs, workers)
    main = dict(zip([c.name for c in contenders], outcomes[: len(contenders)], strict=True))
    sweep = dict(zip(sweep_rates, outcomes[len(contenders) :], strict=True))

    budget = asyncres.RetryBudget()
    order = [c.name for c in _retriers.contenders() if c.name in main]
    table = Table(
        f"Requests offered during the {timeline.fault:.0f} s outage, {rate:.0f} requests/s",
        [
            "contender",
            "attempts per request",
            "attempts/s at the dependency",
            "requests that succeeded",
            "p50 time to outcome",
            "p99 time to outcome",
        ],
        [
            [
                name,
                f"**{times(main[name].amplification)}**"
                if name == ASYNCRES_DEFAULTS
                else times(main[name].amplification),
                fmt(main[name].attempts_per_second, 0),
                pct(main[name].success_rate),
                seconds_or_ms(main[name].p50),
                seconds_or_ms(main[name].p99),
            ]
            for name in order
        ],
    )
    sweep_table = Table(
        "asyncres `Retry` defaults at other offered loads (same outage)",
        [
            "offered load",
            "attempts per request",
            f"budget's bound: 1 + min({ATTEMPTS - 1}, max({budget.min_ratio:g}, "
            f"{budget.min_per_second:g} / rate))",
        ],
        [
            [f"{r:.0f} req/s", times(o.amplification), times(_outage_bound(budget, r))]
            for r, o in sweep.items()
        ],
    )
    reading = _outage_reading(main, sweep, rate)
    return ScenarioResult(
        number=2,
        title="Outage amplification",
        question=(
            "When a dependency is hard down for 60 s, how many attempts does each retrying "
            "client send it per request its callers make?"
        ),
        clock=f"{ASYNCIO_CLOCK}; the trio row: {TRIO_CLOCK}",
        setup=[
            f"Open-loop Poisson load, {rate:.0f} requests/s, the same arrival times for every "
            f"contender; healthy {timeline.warmup:.0f} s, **refused connections for "
            f"{timeline.fault:.0f} s** (`chaos.InjectLatency(0.001)` + "
            f"`chaos.InjectError(ConnectionRefused)` in a `chaos.Schedule`), healthy "
            f"{timeline.after:.0f} s. Healthy calls take |Normal(20 ms, 5 ms)|.",
            "Every request offered during the outage is followed to its end (a retry may land "
            "after the outage): *attempts per request* is their attempts ÷ their number.",
            "Each contender retries `TransientError` only; HTTP contenders call the same "
            "dependency through `httpx.MockTransport` (a refused connection is "
            "`httpx.ConnectError`, a 503 a response).",
            "All on asyncio: backoff and httpx-retries sleep with `asyncio.sleep` only (they "
            "do not run on trio). looptime makes `loop.time()` virtual, and `asyncio.sleep` "
            "waits on it. The asyncres row repeated on trio shows the backends agree.",
            "The module-level `random` is seeded alike before each contender (the peers draw "
            "jitter from it); logging and stamina's retry hooks are off for everyone.",
        ],
        configs=_configs(),
        tables=[table, sweep_table],
        reading=reading,
        data={"main": main, "sweep": sweep, "rate": rate},
        seconds=time.perf_counter() - started,
        smoke=smoke,
        seed=seed,
    )


def _outage(_: int, seed: int) -> list[Any]:
    return outage_faults(seed)


def _brownout(fraction: float, seed: int) -> list[Any]:
    return brownout_faults(fraction, seed)


# -- what the numbers should be: the budget's arithmetic --------------------------------

#: `Retry`'s default number of attempts (the first and two retries).
ATTEMPTS = 3
#: Issue 7's target for outage amplification.
TARGET = 1.25


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _sup(n: int) -> str:
    return str(n).translate(str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹"))


def times(value: float) -> str:
    """An amplification, with a third digit when it rounds to nothing."""
    return f"{value:.2f} ×" if value >= 0.1 or value == 0 else f"{value:.3f} ×"


def _failed_allowed(budget: asyncres.RetryBudget, rate: float, retry_success: float = 0.0) -> float:
    """Failed retries per request the budget allows at ``rate`` requests/s.

    ``retry_success`` is the share of retries that succeed (0 in an outage): the adaptive
    ratio rises with it from ``min_ratio`` toward ``max_ratio``.
    """
    low, high = budget.min_ratio, budget.max_ratio
    return max(low + (high - low) * retry_success, budget.min_per_second / rate)


def _outage_bound(budget: asyncres.RetryBudget, rate: float) -> float:
    """Attempts per request when no retry succeeds: the budget or the attempt limit."""
    return 1 + min(ATTEMPTS - 1, _failed_allowed(budget, rate))


def _failed_needed(p: float, attempts: int = ATTEMPTS) -> float:
    """Failed retries per request of a client making up to ``attempts`` attempts, no budget."""
    return sum(p**k for k in range(2, attempts + 1))


def _ceiling(p: float, attempts: int = ATTEMPTS) -> float:
    """Success of ``attempts`` independent attempts, each failing with probability ``p``."""
    return 1 - p**attempts


def _budget_bound(p: float, allowed: float, attempts: int = ATTEMPTS) -> tuple[float, float]:
    """(success, attempts per request) when failed retries are capped at ``allowed``.

    Each retry fails with probability ``p``, so the budget pays for ``allowed / p`` retries
    per request; each succeeds with probability ``1 - p``.
    """
    wanted = sum(p**k for k in range(1, attempts))  # retries per request, no budget
    retries = min(wanted, allowed / p) if p > 0 else 0.0
    return (1 - p) * (1 + retries), 1 + retries


def _level(a: Outcome, b: Outcome) -> bool:
    """``a`` and ``b`` succeed equally often within two standard errors."""
    if not a.requests or not b.requests:
        return False
    pa, pb = a.success_rate, b.success_rate
    se = math.sqrt(pa * (1 - pa) / a.requests + pb * (1 - pb) / b.requests)
    return abs(pa - pb) <= 2 * se


def _breaker_rules() -> tuple[str, Any] | None:
    """The httpx adapter's default per-host breaker, described, and the breaker itself."""
    if not _retriers._has("asyncres.httpx"):
        return None
    import asyncres.httpx

    factory = asyncres.httpx.standard_policy().breaker
    if factory is None:
        return None
    breaker = factory("http://dependency")
    rules = []
    if breaker.failure_rate is not None:
        rules.append(
            f"{pct(breaker.failure_rate, 0)} failures of ≥ {breaker.min_calls} calls in "
            f"{breaker.window:g} s"
        )
    if breaker.failure_threshold is not None:
        rules.append(f"{breaker.failure_threshold} failures in a row")
    probes = (
        f"probes after {breaker.recovery_time:g} s"
        if breaker.recovery_time is not None
        else "probes after 0.25 s, 0.5 s, then every second"
    )
    text = "opens on " + ", or on ".join(rules) + "; " + probes
    return text, breaker


def _outage_reading(
    main: dict[str, Outcome], sweep: dict[float, Outcome], rate: float
) -> list[str]:
    ours = main[ASYNCRES_DEFAULTS]
    budget = asyncres.RetryBudget()
    bound = _outage_bound(budget, rate)
    peers = {n: o for n, o in main.items() if is_peer(n)}
    met = ours.amplification <= TARGET
    lines = [
        f"**asyncres `Retry` defaults: {ours.amplification:.2f} attempts per request** "
        f"(target ≤ {TARGET}: {'met' if met else '**not met**'}). The shared retry budget lets "
        f"failed retries reach {pct(budget.min_ratio, 0)} of recent requests (at least "
        f"{budget.min_per_second:g}/s), so at {rate:.0f} requests/s it bounds the load on the "
        f"dependency to {times(bound)} the offered load; the per-request limit alone would "
        f"allow {ATTEMPTS} ×.",
    ]
    tuned = main.get(ASYNCRES_TUNED)
    if tuned is not None:
        tuned_budget = asyncres.RetryBudget(ratio=TUNED_RATIO)
        lines.append(
            f"With `RetryBudget(ratio={TUNED_RATIO})`: {times(tuned.amplification)} (bound "
            f"{times(_outage_bound(tuned_budget, rate))}) — the price, in an outage, of the "
            "larger budget that scenario 3 shows at work in a brownout."
        )
    if peers:
        worst = max(peers, key=lambda n: peers[n].amplification)
        fewest = min(o.amplification for o in peers.values())
        lines.append(
            "The peers have no budget, so each sends as many attempts as its per-request "
            "limit allows: "
            + ", ".join(f"{n} {times(o.amplification)}" for n, o in peers.items())
            + f". The worst, {worst}, multiplies the load on a dependency that is trying to "
            f"come back by {peers[worst].amplification:.0f}; the lightest peer sends "
            f"{fewest / ours.amplification:.1f} times as many attempts as asyncres."
        )
    stamina = main.get("stamina defaults")
    if stamina is not None and stamina.success_rate > ours.success_rate:
        lines.append(
            f"stamina's defaults (10 attempts over up to ~30 s) rescue "
            f"{pct(stamina.success_rate, 0)} of the outage's requests — those offered in its "
            "last half-minute, whose later attempts land after the dependency is back — at "
            f"{stamina.amplification:.1f} × the load and a median wait of "
            f"{seconds_or_ms(stamina.p50)} per caller. asyncres fails fast instead "
            f"(p50 {seconds_or_ms(ours.p50)}). Which is right depends on the caller; the load "
            "is not a matter of taste."
        )
    http = main.get(ADAPTER)
    rules = _breaker_rules()
    if http is not None and rules is not None:
        if http.amplification < 1:
            lines.append(
                f"The httpx adapter's defaults add a circuit breaker per host ({rules[0]}): "
                "once it opens, attempts stop reaching the dependency but for one probe per "
                f"recovery period — {times(http.amplification)} the offered load, "
                f"{http.attempts:,} attempts for {http.requests:,} requests."
            )
        else:
            lines.append(
                f"The httpx adapter's defaults ({rules[0]}) send {times(http.amplification)} "
                "the offered load: its breaker did not open in this outage."
            )
    low = [r for r, o in sweep.items() if o.amplification > TARGET]
    if low:
        knee = budget.min_per_second / (TARGET - 1)
        lines.append(
            f"**Where asyncres misses the {TARGET} × target: at low load** "
            f"({', '.join(f'{r:.0f}' for r in low)} requests/s: up to "
            f"{times(max(sweep[r].amplification for r in low))}). The budget always allows a "
            f"reserve of {budget.min_per_second:g} retries/s (Finagle's `min_per_second`), so "
            f"that a quiet client can retry at all; below {knee:.0f} requests/s that reserve "
            f"is more than {pct(TARGET - 1, 0)} of the traffic. The extra load is at most "
            f"{budget.min_per_second:g} attempts/s in absolute terms. Lower `min_per_second` "
            "where that matters."
        )
    return lines


def run_brownout(*, smoke: bool = False, seed: int = 3, workers: int = 1) -> ScenarioResult:
    started = time.perf_counter()
    timeline = _timeline(smoke)
    rate = 20.0 if smoke else RATE
    fractions = [0.2, 0.5]
    contenders = _ordered(_retriers.contenders(trio_row=False))
    jobs: list[Any] = []
    for fraction in fractions:
        faults = functools.partial(_brownout, fraction)
        jobs += [
            (_job, (c, timeline, rate, faults, derive_seed(seed, "brownout", fraction)))
            for c in contenders
        ]
    outcomes = parallel(jobs, workers)
    results: dict[float, dict[str, Outcome]] = {}
    for i, fraction in enumerate(fractions):
        chunk = outcomes[i * len(contenders) : (i + 1) * len(contenders)]
        results[fraction] = dict(zip([c.name for c in contenders], chunk, strict=True))
    order = [c.name for c in _retriers.contenders(trio_row=False)]
    tables = []
    for fraction, main in results.items():
        tables.append(
            Table(
                f"{pct(fraction, 0)} of calls fail with 503 for {timeline.fault:.0f} s, "
                f"{rate:.0f} requests/s",
                [
                    "contender",
                    "requests that succeeded",
                    "attempts per request",
                    "p99 time to outcome",
                ],
                [
                    [
                        name,
                        pct(main[name].success_rate),
                        times(main[name].amplification),
                        seconds_or_ms(main[name].p99),
                    ]
                    for name in order
                    if name in main
                ],
            )
        )
    return ScenarioResult(
        number=3,
        title="Brownout",
        question=(
            "When 20 % or 50 % of calls fail with 503 for 60 s, how many requests succeed, and "
            "at what extra load?"
        ),
        clock=ASYNCIO_CLOCK,
        setup=[
            "Scenario 2's harness and contenders; during the 60 s fault a seeded "
            "`chaos.InjectError(ServiceUnavailable, rate=0.2 | 0.5)` fails that fraction of "
            "calls at once, **independently of load** — the case where retrying helps most. "
            "The 503s carry no `Retry-After`.",
            "*Requests that succeeded*: of those offered during the brownout, after all their "
            "retries. *Level* below means within two standard errors of the two success rates "
            "(binomial).",
        ],
        configs=[],
        tables=tables,
        reading=_brownout_reading(results, rate),
        data={"results": results, "rate": rate},
        seconds=time.perf_counter() - started,
        smoke=smoke,
        seed=seed,
    )


#: Scenario 6: the dependency's capacity as a share of the offered rate, and the target.
OVERLOAD_SHARE = 0.5
OVERLOAD_LOAD_TARGET = 1.3


def _overload(capacity: float, seed: int) -> list[Any]:
    return overload_faults(capacity, seed)


def run_overload(*, smoke: bool = False, seed: int = 6, workers: int = 1) -> ScenarioResult:
    started = time.perf_counter()
    timeline = _timeline(smoke)
    rate = 20.0 if smoke else RATE
    capacity = OVERLOAD_SHARE * rate
    contenders = _ordered(_retriers.contenders(trio_row=False))
    faults = functools.partial(_overload, capacity)
    jobs = [(_job, (c, timeline, rate, faults, derive_seed(seed, "overload"))) for c in contenders]
    outcomes = parallel(jobs, workers)
    main = dict(zip([c.name for c in contenders], outcomes, strict=True))
    order = [c.name for c in _retriers.contenders(trio_row=False)]
    table = Table(
        f"capacity {capacity:.0f} calls/s for {timeline.fault:.0f} s, "
        f"{rate:.0f} requests/s offered",
        [
            "contender",
            "goodput (served during the fault ÷ offered)",
            "load on the dependency",
            "requests that succeeded eventually",
            "p99 time to outcome",
        ],
        [
            [
                name,
                pct(main[name].served_per_second / rate),
                times(main[name].attempts_per_second / rate),
                pct(main[name].success_rate),
                seconds_or_ms(main[name].p99),
            ]
            for name in order
            if name in main
        ],
    )
    return ScenarioResult(
        number=6,
        title="Overload brownout",
        question=(
            f"When the dependency can serve only {pct(OVERLOAD_SHARE, 0)} of the offered "
            "load, and every refused attempt still costs it a fifth of a call, who gets the "
            "most requests served, at what load?"
        ),
        clock=ASYNCIO_CLOCK,
        setup=[
            "Scenario 2's harness and contenders; during the fault the dependency is a token "
            f"bucket of {capacity:.0f} calls/s (a quarter second of burst): beyond it a 503 "
            "without `Retry-After`, at once, and each refusal costs 0.2 of a call — retries "
            "eat the capacity the first attempts need (the retry storm).",
            "*Goodput*: calls the dependency served per second during the fault ÷ the "
            "offered rate (at most "
            f"{pct(OVERLOAD_SHARE, 0)}). *Load on the dependency*: attempts it received per "
            "second during the fault ÷ the offered rate. *Succeeded eventually*: requests "
            "offered during the fault that succeeded, even after it (a client patient enough "
            "to outwait the fault scores here without serving anyone during it). Target for "
            f"asyncres's defaults: goodput ≥ the best peer's at ≤ {OVERLOAD_LOAD_TARGET} × "
            "the offered load.",
        ],
        configs=[],
        tables=[table],
        reading=_overload_reading(main, rate),
        data={"main": main, "rate": rate, "capacity": capacity},
        seconds=time.perf_counter() - started,
        smoke=smoke,
        seed=seed,
    )


def best_goodput_peer(main: dict[str, Outcome]) -> str | None:
    peers = [n for n in main if is_peer(n)]
    return max(peers, key=lambda n: main[n].served_per_second) if peers else None


def overload_verdict(
    main: dict[str, Outcome], rate: float, contender: str = ASYNCRES_DEFAULTS
) -> tuple[str, str | None]:
    """('meets' or 'misses', best peer) for the overload target."""
    ours = main.get(contender)
    best = best_goodput_peer(main)
    if ours is None or best is None:
        return "—", best
    load = ours.attempts_per_second / rate
    met = ours.served_per_second >= 0.99 * main[best].served_per_second
    return ("meets" if met and load <= OVERLOAD_LOAD_TARGET else "misses"), best


def _overload_reading(main: dict[str, Outcome], rate: float) -> list[str]:
    verdict, best = overload_verdict(main, rate)
    ours = main.get(ASYNCRES_DEFAULTS)
    if ours is None or best is None:
        return []
    theirs = main[best]
    lines = [
        f"asyncres defaults: goodput {pct(ours.served_per_second / rate)} at "
        f"{times(ours.attempts_per_second / rate)} the offered load; the best peer, {best}: "
        f"{pct(theirs.served_per_second / rate)} at "
        f"{times(theirs.attempts_per_second / rate)}. Target (goodput ≥ the best peer's, "
        f"within 1 %, at ≤ {OVERLOAD_LOAD_TARGET} ×): "
        + ("**met**." if verdict == "meets" else "**missed**."),
    ]
    adapter = main.get(ADAPTER)
    if adapter is not None:
        adapter_verdict, _ = overload_verdict(main, rate, ADAPTER)
        lines.append(
            f"The httpx adapter's defaults: goodput {pct(adapter.served_per_second / rate)} at "
            f"{times(adapter.attempts_per_second / rate)}: target "
            + ("met." if adapter_verdict == "meets" else "**missed**.")
        )
    baseline = main.get(BASELINE)
    if baseline is not None:
        lines.append(
            f"No retry at all serves {pct(baseline.served_per_second / rate)}: in an overload "
            "every retry costs capacity, so the best a retrying client can do is to stay "
            "near that while still riding out the random failures of scenario 3."
        )
    return lines


def best_peer(main: dict[str, Outcome]) -> str | None:
    """The peer that succeeds most (the lighter load breaks a tie)."""
    peers = [n for n in main if is_peer(n)]
    if not peers:
        return None
    return max(peers, key=lambda n: (main[n].success_rate, -main[n].amplification))


def compare(ours: Outcome, theirs: Outcome) -> str:
    """'beats', 'is level with' or 'loses to', on success within two standard errors."""
    if _level(ours, theirs):
        return "is level with"
    return "beats" if ours.success_rate > theirs.success_rate else "**loses to**"


def _brownout_reading(results: dict[float, dict[str, Outcome]], rate: float) -> list[str]:
    budget = asyncres.RetryBudget()
    lines = []
    for p, main in results.items():
        allowed = _failed_allowed(budget, rate, retry_success=1 - p)
        ours = main[ASYNCRES_DEFAULTS]
        best = best_peer(main)
        if best is None:
            continue
        theirs = main[best]
        verdict = compare(ours, theirs)
        line = (
            f"**At {pct(p, 0)}**: asyncres's defaults succeed for {pct(ours.success_rate)} of "
            f"requests at {times(ours.amplification)} (p99 {seconds_or_ms(ours.p99)}) — it "
            f"{verdict} the best peer, {best} ({pct(theirs.success_rate)} at "
            f"{times(theirs.amplification)}, p99 {seconds_or_ms(theirs.p99)})."
        )
        needed = _failed_needed(p)
        ceiling = _ceiling(p)
        if needed <= allowed:
            line += (
                f" The budget does not bind: with {ATTEMPTS} attempts, failed retries come to "
                f"{pct(needed, 1)} of the requests, and it allows {pct(allowed, 0)} (a retry that "
                f"succeeds is refunded). asyncres is at the ceiling of {ATTEMPTS} attempts, "
                f"1 − p{_sup(ATTEMPTS)} = {pct(ceiling)}."
            )
            level = [n for n in main if is_peer(n) and compare(ours, main[n]) == "is level with"]
            if level:
                line += (
                    " It is level with "
                    + ", ".join(f"{n} at {pct(main[n].success_rate)}" for n in level)
                    + "."
                )
            ahead = [n for n in main if is_peer(n) and compare(ours, main[n]) == "**loses to**"]
            if ahead:
                line += (
                    " Ahead of it: "
                    + ", ".join(
                        f"{n} at {pct(main[n].success_rate)} with up to "
                        f"{PEER_ATTEMPTS.get(n, '?')} attempts"
                        for n in ahead
                    )
                    + "."
                )
                if all(PEER_ATTEMPTS.get(n, 0) > ATTEMPTS for n in ahead):
                    most = max(PEER_ATTEMPTS[n] for n in ahead)
                    line += (
                        f" More attempts is all they have: 1 − p{_sup(most)} = "
                        f"{pct(_ceiling(p, most))}. Raise `attempts` to match them; the budget "
                        "still caps what an outage costs."
                    )
        else:
            success, attempts = _budget_bound(p, allowed)
            line += (
                f" **The budget binds, by design**: with {ATTEMPTS} attempts, failed retries "
                f"would come to {pct(needed, 1)} of the requests, and the budget allows "
                f"{pct(allowed, 0)}, so it pays for {allowed / p:.2f} retries per request: at most "
                f"{pct(success)} success at {times(attempts)} (without a budget: "
                f"{pct(ceiling)}). The same cap holds an outage to {times(1 + allowed)} "
                "(scenario 2); the peers ahead pay for their success with the load they add."
            )
            tuned = main.get(ASYNCRES_TUNED)
            if tuned is not None:
                tuned_allowed = _failed_allowed(asyncres.RetryBudget(ratio=TUNED_RATIO), rate)
                three = [n for n in main if is_peer(n) and PEER_ATTEMPTS.get(n) == ATTEMPTS]
                against = ""
                if three:
                    verdict = compare(tuned, main[three[0]]).replace("**", "")
                    against = (
                        f" — it {verdict} {three[0]}: {pct(main[three[0]].success_rate)} at "
                        f"{times(main[three[0]].amplification)}"
                    )
                line += (
                    " Where partial failures are common, a larger `ratio` buys the success "
                    f"back: `RetryBudget(ratio={TUNED_RATIO})` reaches "
                    f"{pct(tuned.success_rate)} at {times(tuned.amplification)}{against}; in "
                    f"an outage it lets through {times(1 + min(ATTEMPTS - 1, tuned_allowed))} "
                    "(scenario 2)."
                )
        lines.append(line)
    rules = _breaker_rules()
    if rules is not None:
        text, breaker = rules
        for p, main in results.items():
            adapter = main.get(ADAPTER)
            baseline = main.get(BASELINE)
            if adapter is None or baseline is None or adapter.amplification >= 1:
                continue
            line = (
                f"**The httpx adapter's defaults at {pct(p, 0)}**: its per-host breaker ({text}) "
                f"reads the brownout as an outage and opens, so only "
                f"{pct(adapter.success_rate)} succeed at {times(adapter.amplification)} "
                f"(no retry at all: {pct(baseline.success_rate)})."
            )
            streak_trips = False
            if breaker.failure_threshold is not None:
                k = breaker.failure_threshold
                run = (1 - p**k) / ((1 - p) * p**k)  # expected calls until k failures in a row
                streak_trips = run / rate < FAULT_SECONDS
                if streak_trips:
                    line += (
                        f" At p = {pct(p, 0)}, {k} failures in a row come once in {run:,.0f} "
                        f"calls on average: every ~{run / rate:.0f} s or sooner at "
                        f"{rate:.0f} requests/s (retries add calls)."
                    )
                else:
                    line += (
                        f" Not by its streak rule: at p = {pct(p, 0)}, {k} failures in a row "
                        f"come once in {run:,.0f} calls on average, ~{_duration(run / rate)} "
                        f"at {rate:.0f} requests/s."
                    )
            if breaker.failure_rate is not None and p >= breaker.failure_rate - 0.05:
                relation = "sits at" if p < breaker.failure_rate + 0.05 else "is above"
                line += (
                    f" It is the failure rate that opens it: the brownout's {pct(p, 0)} "
                    f"{relation} the {pct(breaker.failure_rate, 0)} threshold"
                    + (", and the streak rule adds to it." if streak_trips else ".")
                )
            line += (
                " Where partial brownouts are expected, pass "
                "`standard_policy(breaker=...)` a breaker with a higher `failure_rate` and "
                "`failure_threshold`. A server that sheds load with `Retry-After` does not "
                "trip it: such responses are flow control, not failures (these 503s carry "
                "none)."
            )
            lines.append(line)
    return lines
