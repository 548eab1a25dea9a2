"""The live stateful policies, read by the bridges `asyncres.otel` and `asyncres.prometheus`.

Every circuit breaker, bulkhead, adaptive limit, retry budget, throttle, endpoint group and
rate limit records itself here when it is built (weakly: a policy nobody holds disappears
with it), under its ``name`` or, unnamed, ``"<kind>-<n>"``. The bridges read `snapshot()`;
nothing on a call's path touches this module.

A policy's ``statistics()`` may fold its windows, so it must run on the event loop that
uses the policy, never beside it on an exporter's thread: `sample` takes the snapshot on
that loop's thread (through anyio's event-loop token, see `sample`), never elsewhere.
"""

from __future__ import annotations

import itertools
import sys
import threading
import weakref
from collections.abc import Callable
from typing import Any, NamedTuple

import anyio.from_thread
import anyio.lowlevel

from ._backend import running_loop

__all__ = ["KINDS", "MEASURES", "Measure", "Sample", "bind", "sample", "snapshot", "track"]

#: The kinds of tracked policies, in the order `snapshot` reports them.
KINDS = (
    "circuit_breaker",
    "bulkhead",
    "adaptive_limit",
    "retry_budget",
    "throttle",
    "endpoint_group",
    "rate_limit",
)

_live: dict[str, dict[int, tuple[weakref.ref[Any], str]]] = {kind: {} for kind in KINDS}
_numbers = itertools.count(1)


class Sample(NamedTuple):
    """One policy's statistics at one moment: its kind, label and ``statistics()``."""

    kind: str
    name: str
    statistics: Any


def track(kind: str, policy: object, name: str | None) -> None:
    """Record ``policy`` (called by its constructor)."""
    table = _live[kind]
    key = id(policy)

    def forget(_: object, key: int = key, table: dict[int, Any] = table) -> None:
        table.pop(key, None)

    table[key] = (weakref.ref(policy, forget), name or f"{kind}-{next(_numbers)}")
    bind()


def snapshot(kinds: tuple[str, ...] = KINDS) -> list[Sample]:
    """Every live tracked policy's statistics (of ``kinds``), read on the calling thread.

    Two policies with one name (say, a host's breaker rebuilt while the old one still runs
    a call) get ``"<name>#2"``: exporters must never see two series with the same labels.
    """
    samples: list[Sample] = []
    for kind in kinds:
        seen: dict[str, int] = {}
        for ref, name in list(_live[kind].values()):
            policy = ref()
            if policy is None:
                continue
            try:
                statistics = policy.statistics()
            except RuntimeError:  # its clock is a loop's (trio's) and no loop is running
                continue
            count = seen[name] = seen.get(name, 0) + 1
            label = name if count == 1 else f"{name}#{count}"
            samples.append(Sample(kind, label, statistics))
    return samples


class _Home(NamedTuple):
    loop: object  # the asyncio loop, or the trio run's TrioToken: its identity
    token: object  # anyio's event-loop token, to enter it from another thread
    thread: int


_home: _Home | None = None


def bind() -> None:
    """Make the running event loop, if any, the one samples are taken on.

    Called when a policy is built, when a bridge is installed and on each instrumented
    attempt: cheap when the loop is already the home one (an identity check).
    """
    global _home
    loop: object = running_loop()
    if loop is None:
        trio = sys.modules.get("trio")  # never imported: no trio run is going on
        if trio is None:
            return
        try:
            loop = trio.lowlevel.current_trio_token()
        except RuntimeError:  # outside any loop
            return
    home = _home
    if home is not None and home.loop is loop:
        return
    _home = _Home(loop, anyio.lowlevel.current_token(), threading.get_ident())


def sample(kinds: tuple[str, ...] = KINDS) -> list[Sample]:
    """`snapshot` taken on the home loop, from whichever thread asks.

    On the home loop's thread it is read directly (on the loop, or after it: nobody else
    mutates the policies then); from another thread the loop runs it (the caller waits).
    With no home loop yet, or one that has finished, the sample is empty.
    """
    global _home
    bind()
    home = _home
    if home is None:
        return []
    if threading.get_ident() == home.thread:
        return snapshot(kinds)
    run: Callable[..., list[Sample]] = anyio.from_thread.run_sync
    try:
        return run(snapshot, kinds, token=home.token)
    except RuntimeError:  # the loop has finished (trio.RunFinishedError included)
        if _home is home:
            _home = None
        return []


# -- what each kind exports ------------------------------------------------------------------

Points = list[tuple[dict[str, str], float]]


class Measure(NamedTuple):
    """One exported series per tracked policy: ``asyncres.<kind>.<name>`` in OpenTelemetry,
    ``asyncres_<kind>_<name>[_<unit>][_total]`` in Prometheus."""

    kind: str
    name: str
    #: ``"gauge"`` (a level) or ``"counter"`` (a total since the policy was built).
    type: str
    #: UCUM, as OpenTelemetry wants it: ``"1"``, ``"s"`` or ``"{call}"``-style annotations.
    unit: str
    help: str
    read: Callable[[Any], Points]
    #: The labels ``read`` adds to each point, besides the policy's name.
    labels: tuple[str, ...] = ()


def _one(read: Callable[[Any], float | None]) -> Callable[[Any], Points]:
    def points(stats: Any) -> Points:
        value = read(stats)
        return [] if value is None else [({}, float(value))]

    return points


def _by(label: str, read: Callable[[Any], dict[Any, int]]) -> Callable[[Any], Points]:
    def points(stats: Any) -> Points:
        return [({label: str(key)}, float(value)) for key, value in read(stats).items()]

    return points


def _states(stats: Any) -> Points:
    current = stats.state
    return [({"state": state.value}, 1.0 if state is current else 0.0) for state in type(current)]


def _per_endpoint(read: Callable[[Any], float]) -> Callable[[Any], Points]:
    def points(stats: Any) -> Points:
        return [({"endpoint": row.endpoint.address}, float(read(row))) for row in stats.endpoints]

    return points


MEASURES: tuple[Measure, ...] = (
    Measure(
        "circuit_breaker",
        "state",
        "gauge",
        "1",
        "1 for the breaker's current state, 0 for the others",
        _states,
        ("state",),
    ),
    Measure(
        "circuit_breaker",
        "failure_rate",
        "gauge",
        "1",
        "Failures / calls over the breaker's current window",
        _one(lambda s: s.failure_rate),
    ),
    Measure(
        "circuit_breaker",
        "calls",
        "gauge",
        "{call}",
        "Calls recorded in the breaker's current window",
        _one(lambda s: s.calls),
    ),
    Measure(
        "circuit_breaker",
        "rejected",
        "counter",
        "{call}",
        "Calls rejected with CircuitOpenError",
        _one(lambda s: s.rejected),
    ),
    Measure(
        "circuit_breaker",
        "opened",
        "counter",
        "{opening}",
        "Times the breaker opened",
        _one(lambda s: s.times_opened),
    ),
    Measure(
        "bulkhead",
        "in_use",
        "gauge",
        "{call}",
        "Permits held",
        _one(lambda s: s.in_use),
    ),
    Measure(
        "bulkhead",
        "queued",
        "gauge",
        "{call}",
        "Calls waiting for a permit",
        _one(lambda s: s.queued),
    ),
    Measure(
        "bulkhead",
        "max_concurrent",
        "gauge",
        "{call}",
        "The configured number of permits",
        _one(lambda s: s.max_concurrent),
    ),
    Measure(
        "bulkhead",
        "rejected",
        "counter",
        "{call}",
        "Calls refused, by reason",
        _by("reason", lambda s: s.rejected),
        ("reason",),
    ),
    Measure(
        "adaptive_limit",
        "limit",
        "gauge",
        "{call}",
        "The current concurrency limit",
        _one(lambda s: s.limit),
    ),
    Measure(
        "adaptive_limit",
        "in_flight",
        "gauge",
        "{call}",
        "Calls holding a slot",
        _one(lambda s: s.in_flight),
    ),
    Measure(
        "adaptive_limit",
        "queued",
        "gauge",
        "{call}",
        "Calls waiting for a slot",
        _one(lambda s: s.queued),
    ),
    Measure(
        "adaptive_limit",
        "rtt",
        "gauge",
        "s",
        "The last measured round-trip time",
        _one(lambda s: s.rtt),
    ),
    Measure(
        "adaptive_limit",
        "rejected",
        "counter",
        "{call}",
        "Calls refused, by reason",
        _by("reason", lambda s: s.rejected),
        ("reason",),
    ),
    Measure(
        "retry_budget",
        "available",
        "gauge",
        "{retry}",
        "Retries the budget would allow now",
        _one(lambda s: s.available),
    ),
    Measure(
        "retry_budget",
        "ratio",
        "gauge",
        "1",
        "The retry ratio in force",
        _one(lambda s: s.ratio),
    ),
    Measure(
        "retry_budget",
        "refused",
        "counter",
        "{retry}",
        "Retries refused by the budget",
        _one(lambda s: s.refused),
    ),
    Measure(
        "throttle",
        "reject_probability",
        "gauge",
        "1",
        "Probability that the next call is rejected locally",
        _one(lambda s: s.reject_probability),
    ),
    Measure(
        "throttle",
        "requests",
        "gauge",
        "{request}",
        "Requests in the throttle's window",
        _one(lambda s: s.requests),
    ),
    Measure(
        "throttle",
        "accepts",
        "gauge",
        "{request}",
        "Requests in the window that the dependency served",
        _one(lambda s: s.accepts),
    ),
    Measure(
        "throttle",
        "rejected",
        "counter",
        "{call}",
        "Calls rejected locally",
        _one(lambda s: s.rejected),
    ),
    Measure(
        "endpoint_group",
        "healthy",
        "gauge",
        "{endpoint}",
        "Endpoints not ejected",
        _one(lambda s: s.healthy),
    ),
    Measure(
        "endpoint_group",
        "panic",
        "gauge",
        "1",
        "1 while too few endpoints are healthy and all are used",
        _one(lambda s: s.panic),
    ),
    Measure(
        "endpoint_group",
        "outstanding",
        "gauge",
        "{attempt}",
        "Attempts in flight, per endpoint",
        _per_endpoint(lambda row: row.outstanding),
        ("endpoint",),
    ),
    Measure(
        "endpoint_group",
        "ejected",
        "gauge",
        "1",
        "1 while the endpoint is ejected",
        _per_endpoint(lambda row: row.ejected),
        ("endpoint",),
    ),
    Measure(
        "rate_limit",
        "admitted",
        "counter",
        "{call}",
        "Calls admitted at once",
        _one(lambda s: s.admitted),
    ),
    Measure(
        "rate_limit",
        "waited",
        "counter",
        "{call}",
        "Calls admitted after waiting for their turn",
        _one(lambda s: s.waited),
    ),
    Measure(
        "rate_limit",
        "rejected",
        "counter",
        "{call}",
        "Calls refused with RateLimitedError",
        _one(lambda s: s.rejected),
    ),
    Measure(
        "rate_limit",
        "available",
        "gauge",
        "{call}",
        "Calls of the shared key admitted now without waiting",
        _one(lambda s: s.available),
    ),
)
