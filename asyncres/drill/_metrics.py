"""What the drill measures, and how it judges the result."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ..chaos import Phase, Schedule
from ._faults import ErrorBurst, Outage, Overload, ZoneOutage, describe_faults
from ._service import TICKS

__all__ = ["Outcome", "Recorder", "summarize"]

#: Outcomes of one request, as the caller saw it.
OK, FAILED, REJECTED, UNFINISHED = "ok", "failed", "rejected", "unfinished"
Outcome = str


@dataclass
class Recorder:
    """Every request of one client: (start offset, latency, outcome), plus side channels."""

    __module__ = "asyncres.drill"

    name: str
    samples: list[tuple[float, float, Outcome]] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    breaker: list[tuple[float, str, str]] = field(default_factory=list)  # t, state, zone

    def add(self, start: float, latency: float, outcome: Outcome) -> None:
        self.samples.append((start, latency, outcome))


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))
    return ordered[index]


def _stats(
    samples: list[tuple[float, float, Outcome]],
    sent: int,
    reached: int,
    fired: dict[str, int],
) -> dict[str, Any]:
    offered = len(samples)
    outcomes = Counter(outcome for _, _, outcome in samples)
    latencies = [latency for _, latency, _ in samples]
    return {
        "offered": offered,
        "succeeded": outcomes[OK],
        "failed": outcomes[FAILED] + outcomes[UNFINISHED],
        "rejected_fast": outcomes[REJECTED],
        "unfinished": outcomes[UNFINISHED],
        "success_rate": round(outcomes[OK] / offered, 4) if offered else None,
        "p50_ms": _ms(percentile(latencies, 0.50)),
        "p99_ms": _ms(percentile(latencies, 0.99)),
        "max_ms": _ms(max(latencies) if latencies else None),
        "sent_to_backend": sent,
        "reached_backend": reached,
        **{f"backend_{key}": count for key, count in fired.items()},
        "amplification": round(sent / offered, 3) if offered else None,
    }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000.0, 1)


def summarize(
    schedule: Schedule,
    recorders: dict[str, Recorder],
    sent: dict[str, Counter[int]],
    reached: dict[str, Counter[int]],
    fired: dict[str, dict[str, Counter[int]]],
    rate: float,
) -> dict[str, Any]:
    """Per phase and per second, for each client; then the verdict."""
    duration = schedule.duration
    # Half-second points for short drills, seconds for long ones.
    step = 0.5 if duration <= 20 else 1.0
    points = math.ceil(duration / step)
    clients: dict[str, Any] = {}
    for name, recorder in recorders.items():
        phases = {}
        for start, end, phase in schedule.timeline:
            until = judged_until(start, end)
            in_phase = [s for s in recorder.samples if start <= s[0] < until]
            phases[phase.name] = _stats(
                in_phase,
                window(sent[name], start, until),
                window(reached[name], start, until),
                {key: window(counts, start, until) for key, counts in fired[name].items()},
            ) | {
                "start": start,
                "end": end,
                "judged_until": until,
                "faults": describe_faults(phase.faults),
            }
        timeline = []
        for index in range(points):
            lo, hi = index * step, (index + 1) * step
            bucket = [s for s in recorder.samples if lo <= s[0] < hi]
            ok = sum(1 for s in bucket if s[2] == OK)
            timeline.append(
                {
                    "t": lo,
                    "step": step,
                    "offered": len(bucket),
                    "success_rate": round(ok / len(bucket), 4) if bucket else None,
                    "p50_ms": _ms(percentile([s[1] for s in bucket], 0.5)),
                    "p99_ms": _ms(percentile([s[1] for s in bucket], 0.99)),
                    "sent_to_backend": window(sent[name], lo, hi),
                    "reached_backend": window(reached[name], lo, hi),
                }
            )
        totals = _stats(
            recorder.samples,
            sum(sent[name].values()),
            sum(reached[name].values()),
            {key: sum(counts.values()) for key, counts in fired[name].items()},
        )
        clients[name] = {
            "phases": phases,
            "timeline": timeline,
            "totals": totals | {"max_in_flight": recorder.max_in_flight},
            "breaker": [
                {"t": round(t, 3), "state": state, "zone": zone}
                for t, state, zone in recorder.breaker
            ],
        }
    return {"clients": clients, "verdict": verdict(schedule, recorders, clients, rate)}


#: A phase's row leaves out the requests started in its last SETTLE seconds: their retries
#: (waits, timeouts) land in the next phase, so their outcome is the next fault's, and a
#: client with longer backoff would be judged on its neighbour. They stay in the timeline
#: and the totals. Phases shorter than twice this are judged whole.
SETTLE = 1.0


def judged_until(start: float, end: float) -> float:
    """The end of the part of ``[start, end)`` a phase's row is judged on."""
    return end - SETTLE if end - start >= 2 * SETTLE else end


def window(counter: Counter[int], start: float, end: float) -> int:
    """Sum of a per-tick counter over [start, end) seconds."""
    lo, hi = round(start * TICKS), round(end * TICKS)
    return sum(n for tick, n in counter.items() if lo <= tick < hi)


#: Percentage points the protected client may trail the naive one by in any phase.
TIE_MARGIN = 0.02
#: Seconds after an outage by which the protected client must get a success again (plus
#: one request interval: the first request that arrives after the breaker's probe time).
RECOVERY_LIMIT = 1.0


def verdict(
    schedule: Schedule,
    recorders: dict[str, Recorder],
    clients: dict[str, Any],
    rate: float,
) -> dict[str, Any]:
    """Did the protected client win, phase by phase? Every phase is judged.

    In every phase the protected client's success must be at least the naive one's minus
    `TIE_MARGIN`, at no more load (sent/offered). In phases where protection can win
    success — an error burst, an overload, a zone outage, and the fault-free phase after a
    fault (the recovery) — it must be strictly higher, or 100 % for both. A slow database is
    judged a tie: its capacity (connections / statement time) bounds both clients alike,
    each on a backend of its own; protection shows in the load, which must not exceed the
    naive one's.
    A hard outage must fail fast and the first success come within `RECOVERY_LIMIT` of its
    end.
    """
    checks: dict[str, Any] = {}
    naive, protected = clients["naive"]["phases"], clients["protected"]["phases"]
    previous_faulted = False
    for _, _, phase in schedule.timeline:
        ours, theirs = protected[phase.name], naive[phase.name]
        strict = _has(phase.faults, (ErrorBurst, Overload, ZoneOutage)) or (
            not phase.faults and previous_faulted
        )
        previous_faulted = bool(phase.faults)
        checks[f"phase {phase.name}"] = _phase_check(ours, theirs, strict=strict)
    checks["drill_kept_pace"] = _pace_check(schedule, clients, rate)
    outage_phase = _first_with(schedule, Outage)
    if outage_phase is not None:
        _, end, outage = outage_phase
        ours = protected[outage.name]
        amplification = ours["amplification"] or 0.0
        p50 = (ours["p50_ms"] or 0.0) / 1000.0
        # Fail fast: most calls end at once (a few in flight when it began wait out a
        # backoff), and the dead backend is not offered more than the budget allows.
        checks["outage_fails_fast"] = {
            "passed": amplification <= 1.25 and p50 <= 0.1,
            "detail": (
                f"protected: {amplification:.2f}x load, p50 {p50 * 1000:.0f} ms, p99 "
                f"{ours['p99_ms']} ms (need <= 1.25x and p50 <= 100 ms); naive: "
                f"{naive[outage.name]['amplification']}x load, "
                f"p50 {naive[outage.name]['p50_ms']} ms, p99 {naive[outage.name]['p99_ms']} ms"
            ),
        }
        # The first request that started after the outage and succeeded: when the door
        # opened again (its latency belongs to the next phase's fault, not to recovery).
        first_ok = min(
            (s[0] for s in recorders["protected"].samples if s[2] == OK and s[0] >= end),
            default=None,
        )
        waited = None if first_ok is None else first_ok - end
        limit = RECOVERY_LIMIT + 1.0 / rate
        checks["recovers_after_outage"] = {
            "passed": waited is not None and waited <= limit,
            "detail": (
                "no successful request after the outage"
                if waited is None
                else f"first successful request started {waited:.2f} s after the outage "
                f"ended (need <= {limit:.3g} s)"
            ),
            "seconds": None if waited is None else round(waited, 3),
        }
    return {"protected_wins": all(c["passed"] for c in checks.values()), "checks": checks}


#: The share of a phase's scheduled requests the drill must have started within it.
PACE_TOLERANCE = 0.05


def _pace_check(schedule: Schedule, clients: dict[str, Any], rate: float) -> dict[str, Any]:
    """Did the drill's own process start every request on time? The load is open loop (one
    request every 1/rate s), so a phase holds a known number; fewer means the process fell
    behind (its core saturated) and the latencies measure the harness, not the fault."""
    behind = []
    for _, _, phase in schedule.timeline:
        for name, client in clients.items():
            row = client["phases"][phase.name]
            expected = round((row["judged_until"] - row["start"]) * rate)
            if row["offered"] < expected * (1.0 - PACE_TOLERANCE):
                behind.append(f"{name} {phase.name} {row['offered']} of {expected}")
    detail = (
        "every phase started its scheduled requests on time"
        if not behind
        else "the drill's own process fell behind (requests started: "
        + ", ".join(behind)
        + "); this run measures the harness, not the faults: rerun on an idle machine"
    )
    return {"passed": not behind, "detail": detail}


def _has(faults: tuple[object, ...], kinds: tuple[type, ...]) -> bool:
    return any(isinstance(fault, kinds) for fault in faults)


def _phase_check(ours: dict[str, Any], theirs: dict[str, Any], *, strict: bool) -> dict[str, Any]:
    """Success at least the naive one's (minus the margin, or strictly more), at no more load."""
    mine, other = ours["success_rate"] or 0.0, theirs["success_rate"] or 0.0
    load, other_load = ours["amplification"] or 0.0, theirs["amplification"] or 0.0
    gap = mine - other
    # Strictly more, unless both are perfect: then there is nothing left to win.
    success_ok = (gap > 0.0 or mine >= 1.0) if strict else gap >= -TIE_MARGIN
    load_ok = load <= other_load
    need = "strictly more success" if strict else f"success >= naive - {TIE_MARGIN * 100:g} pp"
    problems = []
    if not success_ok:
        problems.append(f"success {gap * 100:+.1f} pp")
    if not load_ok:
        problems.append(f"load {load - other_load:+.2f}x")
    detail = (
        f"success protected {mine * 100:.1f} % vs naive {other * 100:.1f} % "
        f"({gap * 100:+.1f} pp); load {load:.2f}x vs {other_load:.2f}x; need {need} at no "
        "more load"
    )
    if problems:
        detail = "LOST by " + ", ".join(problems) + ": " + detail
    return {
        "passed": success_ok and load_ok,
        "strict": strict,
        "success_gap": round(gap, 4),
        "detail": detail,
    }


def _first_with(schedule: Schedule, kind: type) -> tuple[float, float, Phase] | None:
    """``(start, end, phase)`` of the first phase holding a fault of type ``kind``."""
    return next(
        (entry for entry in schedule.timeline if any(isinstance(f, kind) for f in entry[2].faults)),
        None,
    )
