"""EndpointGroup: replicas in zones, chosen by power of two choices, with outlier detection.

One dependency served by several endpoints is only more available than one if the client
uses them in parallel: each attempt goes to the least loaded of two random endpoints
(Finagle's P2C), in the caller's zone while that zone is healthy enough; a retry or a hedge
of the same call goes to an endpoint the call has not used, in another zone when one is
healthy; an endpoint that fails ``consecutive_failures`` times in a row is ejected for a
time that grows with each ejection (Envoy's outlier detection), never more than
``max_ejection_percent`` of the group at once, and when too few are left healthy the group
panics and uses them all again (ejecting everything is worse than anything). Everything is
decided from what this process has seen: no control plane is needed during a failure.
"""

from __future__ import annotations

import math
import random
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Concatenate, ParamSpec, TypeVar

from . import _validation
from ._clock import current_time
from ._events import EndpointEjected, EndpointReadmitted, Listener, emit
from ._matching import ErrorFilter, matcher
from ._registry import track

__all__ = [
    "Endpoint",
    "EndpointGroup",
    "EndpointGroupStatistics",
    "EndpointStatistics",
    "Route",
]

T = TypeVar("T")
P = ParamSpec("P")

#: Smoothing of the per-endpoint latency average (weight of the newest sample).
_EWMA_WEIGHT = 0.2
#: Per-key views kept by `EndpointGroup.for_key` (least recently used dropped first).
_MAX_VIEWS = 1024


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One replica: an ``address`` (a URL such as ``"http://10.0.0.7:8000"``, or any string
    your call function understands), its ``zone`` and a relative ``weight``."""

    __module__ = "asyncres"

    address: str
    zone: str | None = field(default=None, kw_only=True)
    weight: float = field(default=1.0, kw_only=True)

    def __post_init__(self) -> None:
        if not isinstance(self.address, str) or not self.address:
            raise ValueError(f"`address` must be a non-empty string, got {self.address!r}")
        if self.zone is not None and (not isinstance(self.zone, str) or not self.zone):
            raise ValueError(f"`zone` must be a non-empty string or None, got {self.zone!r}")
        object.__setattr__(self, "weight", _validation.finite_positive("weight", self.weight))

    def __str__(self) -> str:
        return self.address if self.zone is None else f"{self.address} ({self.zone})"


@dataclass(frozen=True, slots=True)
class EndpointStatistics:
    """One endpoint's state in a group."""

    __module__ = "asyncres"

    endpoint: Endpoint
    #: Attempts sent to it and not finished yet.
    outstanding: int
    #: Whether it is ejected right now, and until when (loop time; ``None`` when not).
    ejected: bool
    ejected_until: float | None
    #: Times it was ejected (the next ejection lasts ``base_ejection_time`` times one more).
    ejections: int
    consecutive_failures: int
    #: Exponentially weighted average of its successful attempts' latency, in seconds.
    latency_ewma: float | None
    successes: int
    failures: int


@dataclass(frozen=True, slots=True)
class EndpointGroupStatistics:
    """A group's endpoints and whether it is in panic mode."""

    __module__ = "asyncres"

    endpoints: tuple[EndpointStatistics, ...]
    #: Endpoints not ejected.
    healthy: int
    #: Fewer than ``panic_threshold`` of the endpoints are healthy: all are used again.
    panic: bool


class _State:
    """What the group knows about one endpoint (shared by the per-key views)."""

    __slots__ = (
        "consecutive",
        "ejected_until",
        "ejections",
        "endpoint",
        "ewma",
        "failures",
        "outstanding",
        "readmitted_at",
        "successes",
    )

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.outstanding = 0
        self.consecutive = 0
        self.ejected_until = -math.inf
        self.ejections = 0
        self.readmitted_at = -math.inf
        self.ewma: float | None = None
        self.successes = 0
        self.failures = 0


def _as_endpoint(item: Endpoint | str) -> Endpoint:
    if isinstance(item, Endpoint):
        return item
    if isinstance(item, str):
        return Endpoint(item)
    raise ValueError(f"`endpoints` must hold Endpoint objects or address strings, got {item!r}")


class EndpointGroup:
    """Replicas of one dependency; each attempt picks one (see the module docstring).

    ``endpoints``: `Endpoint` objects or plain address strings (no zone, weight 1).
    ``zone``: the caller's zone; its endpoints are preferred while at least
    ``zone_threshold`` of them are healthy, every zone is used below that. ``on``: the
    errors that count as an endpoint's failure (others are the caller's business and count
    as an answer). Ejection after ``consecutive_failures`` failures in a row, for
    ``base_ejection_time`` times the number of ejections so far (capped at
    ``max_ejection_time``; the count drops by one per ``base_ejection_time`` of health), at
    most ``max_ejection_percent`` of the endpoints at once (at least one). Below
    ``panic_threshold`` healthy, ejections are ignored.

    Use a `Route` per logical call (`route`) so that its retries and hedges avoid the
    endpoints it already used, or `call` for a single attempt.
    """

    __slots__ = (
        "__weakref__",
        "_base_ejection_time",
        "_clock",
        "_consecutive_failures",
        "_endpoints",
        "_listeners",
        "_match",
        "_max_ejection_percent",
        "_max_ejection_time",
        "_name",
        "_panic_threshold",
        "_rng",
        "_states",
        "_views",
        "_zone",
        "_zone_threshold",
    )

    __module__ = "asyncres"

    def __init__(
        self,
        endpoints: Iterable[Endpoint | str],
        *,
        zone: str | None = None,
        zone_threshold: float = 0.5,
        consecutive_failures: int = 5,
        base_ejection_time: float = 30.0,
        max_ejection_time: float = 300.0,
        max_ejection_percent: float = 0.1,
        panic_threshold: float = 0.5,
        on: ErrorFilter = Exception,
        name: str | None = None,
        listeners: Iterable[Listener] = (),
        rng: random.Random | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        if zone is not None and (not isinstance(zone, str) or not zone):
            raise ValueError(f"`zone` must be a non-empty string or None, got {zone!r}")
        self._zone = zone
        self._zone_threshold = _validation.ratio("zone_threshold", zone_threshold)
        self._consecutive_failures = _validation.count(
            "consecutive_failures", consecutive_failures, minimum=1
        )
        self._base_ejection_time = _validation.finite_positive(
            "base_ejection_time", base_ejection_time
        )
        self._max_ejection_time = _validation.finite_positive(
            "max_ejection_time", max_ejection_time
        )
        if self._max_ejection_time < self._base_ejection_time:
            raise ValueError(
                "`max_ejection_time` must be >= `base_ejection_time`, got "
                f"{max_ejection_time!r} < {base_ejection_time!r}"
            )
        self._max_ejection_percent = _validation.ratio("max_ejection_percent", max_ejection_percent)
        self._panic_threshold = _validation.ratio("panic_threshold", panic_threshold)
        self._match = matcher(on, "on")
        self._name = name
        self._listeners = tuple(listeners)
        self._rng = rng or random.Random()
        self._clock = clock or current_time
        self._states: dict[str, _State] = {}
        self._endpoints: tuple[Endpoint, ...] = ()
        self._views: OrderedDict[tuple[str, int], EndpointGroup] = OrderedDict()
        self.update(endpoints)
        track("endpoint_group", self, name)

    def __repr__(self) -> str:
        name = f", name={self._name!r}" if self._name else ""
        zone = f", zone={self._zone!r}" if self._zone else ""
        return f"EndpointGroup({[str(e) for e in self._endpoints]}{zone}{name})"

    @property
    def endpoints(self) -> tuple[Endpoint, ...]:
        return self._endpoints

    @property
    def name(self) -> str | None:
        return self._name

    @property
    def zone(self) -> str | None:
        return self._zone

    def update(self, endpoints: Iterable[Endpoint | str]) -> None:
        """Replace the endpoints. An address already in the group keeps what the group
        learnt about it (ejection, latency); attempts in flight to a removed one finish
        undisturbed. Per-key views taken before see the old list: take them again."""
        fresh = tuple(_as_endpoint(item) for item in endpoints)
        if not fresh:
            raise ValueError("`endpoints` must name at least one endpoint")
        addresses = [e.address for e in fresh]
        if len(set(addresses)) != len(addresses):
            duplicated = sorted({a for a in addresses if addresses.count(a) > 1})
            raise ValueError(f"`endpoints` must not repeat an address, got {duplicated}")
        states: dict[str, _State] = {}
        for endpoint in fresh:
            state = self._states.get(endpoint.address)
            if state is None:
                state = _State(endpoint)
            else:
                state.endpoint = endpoint  # a new zone or weight, same history
            states[endpoint.address] = state
        self._states = states
        self._endpoints = fresh
        self._views.clear()

    # -- using it ---------------------------------------------------------------------

    def route(self) -> Route:
        """A new logical call: its attempts avoid the endpoints it has used."""
        return Route(self)

    async def call(
        self,
        fn: Callable[Concatenate[Endpoint, P], Awaitable[T]],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """One attempt: ``await fn(endpoint, *args, **kwargs)`` on a chosen endpoint."""
        return await Route(self)(fn, *args, **kwargs)

    def for_key(self, key: str, k: int) -> EndpointGroup:
        """The group seen by one key (a tenant, a customer): its shuffle shard of ``k``
        endpoints (`asyncres.sharding.shuffle_shard`), sharing this group's knowledge of
        each endpoint. Views are cached (up to 1,024 keys) until `update`."""
        from .sharding import shuffle_shard

        cache_key = (key, k)
        view = self._views.get(cache_key)
        if view is not None:
            self._views.move_to_end(cache_key)
            return view
        chosen = shuffle_shard(key, self._endpoints, k)
        view = object.__new__(EndpointGroup)
        for slot in EndpointGroup.__slots__:
            if slot != "__weakref__":
                object.__setattr__(view, slot, getattr(self, slot))
        view._endpoints = tuple(chosen)
        view._states = {e.address: self._states[e.address] for e in chosen}
        view._views = OrderedDict()
        self._views[cache_key] = view
        if len(self._views) > _MAX_VIEWS:
            self._views.popitem(last=False)
        return view

    def statistics(self) -> EndpointGroupStatistics:
        now = self._clock()
        self._readmit(now)
        rows = tuple(
            EndpointStatistics(
                endpoint=s.endpoint,
                outstanding=s.outstanding,
                ejected=s.ejected_until > now,
                ejected_until=s.ejected_until if s.ejected_until > now else None,
                ejections=s.ejections,
                consecutive_failures=s.consecutive,
                latency_ewma=s.ewma,
                successes=s.successes,
                failures=s.failures,
            )
            for s in self._states.values()
        )
        healthy = sum(1 for row in rows if not row.ejected)
        return EndpointGroupStatistics(rows, healthy, healthy < self._panic_threshold * len(rows))

    # -- choosing ---------------------------------------------------------------------

    def _readmit(self, now: float) -> None:
        for state in self._states.values():
            if -math.inf < state.ejected_until <= now:
                state.ejected_until = -math.inf
                state.readmitted_at = now
                emit(
                    self._listeners,
                    EndpointReadmitted(name=self._name, endpoint=state.endpoint.address),
                )

    def _pick(
        self, tried: Sequence[_State], usable: Callable[[Endpoint], bool] | None = None
    ) -> _State:
        now = self._clock()
        states = list(self._states.values())
        if any(s.ejected_until > -math.inf for s in states):
            self._readmit(now)
            healthy = [s for s in states if s.ejected_until == -math.inf]
            if len(healthy) < self._panic_threshold * len(states) or not healthy:
                healthy = states  # panic: ejecting everything is worse than anything
        else:
            healthy = states
        if usable is not None:  # e.g. not behind an open breaker, when any is left
            healthy = [s for s in healthy if usable(s.endpoint)] or healthy
        candidates = healthy
        zone = self._zone
        if zone is not None:
            local = [s for s in healthy if s.endpoint.zone == zone]
            in_zone = sum(1 for s in states if s.endpoint.zone == zone)
            if local and len(local) >= self._zone_threshold * in_zone:
                candidates = local
        if tried:
            # A retry or a hedge: a different endpoint, in a zone the call has not used
            # when one is healthy (a zone's trouble is often the whole zone's), local
            # preference aside; an endpoint already used only when none is left.
            fresh = [s for s in healthy if s not in tried]
            if fresh:
                zones = {s.endpoint.zone for s in tried}
                elsewhere = [s for s in fresh if s.endpoint.zone not in zones]
                candidates = elsewhere or fresh
        if len(candidates) == 1:
            return candidates[0]
        return self._least_loaded_of_two(candidates)

    def _least_loaded_of_two(self, candidates: list[_State]) -> _State:
        rng = self._rng
        weights = [s.endpoint.weight for s in candidates]
        first = rng.choices(range(len(candidates)), weights)[0]
        weights[first] = 0.0
        second = rng.choices(range(len(candidates)), weights)[0]
        a, b = candidates[first], candidates[second]
        load_a = (a.outstanding + 1) / a.endpoint.weight
        load_b = (b.outstanding + 1) / b.endpoint.weight
        # Equal loads (light traffic, nothing outstanding): the random first pick, so that
        # light load spreads over every endpoint instead of piling onto the fastest one.
        return b if load_b < load_a else a

    # -- outcomes ---------------------------------------------------------------------

    def _succeeded(self, state: _State, latency: float) -> None:
        state.successes += 1
        state.consecutive = 0
        state.ewma = (
            latency if state.ewma is None else state.ewma + _EWMA_WEIGHT * (latency - state.ewma)
        )

    def _failed(self, state: _State) -> None:
        state.failures += 1
        state.consecutive += 1
        if state.consecutive < self._consecutive_failures or state.ejected_until > -math.inf:
            return
        if state.endpoint.address not in self._states:
            return  # removed by `update` while this attempt ran
        now = self._clock()
        ejected = sum(1 for s in self._states.values() if s.ejected_until > now)
        allowed = max(1, math.floor(self._max_ejection_percent * len(self._states)))
        if ejected >= allowed:
            return
        # Health since the last readmission earns back one ejection per base time.
        healthy_for = now - state.readmitted_at
        if state.ejections and healthy_for < math.inf:
            state.ejections = max(0, state.ejections - int(healthy_for // self._base_ejection_time))
        state.ejections += 1
        seconds = min(self._base_ejection_time * state.ejections, self._max_ejection_time)
        state.ejected_until = now + seconds
        state.consecutive = 0
        emit(
            self._listeners,
            EndpointEjected(
                name=self._name,
                endpoint=state.endpoint.address,
                seconds=seconds,
                ejections=state.ejections,
            ),
        )


class Route:
    """One logical call through an `EndpointGroup`: each call of it is one attempt.

    ``await retry.call(route, fetch, "/items")`` (or ``hedge.call(route, ...)``) sends each
    attempt as ``fetch(endpoint, "/items")`` to an endpoint this route has not used yet,
    in another zone when one is healthy.
    """

    __slots__ = ("_group", "_tried")

    __module__ = "asyncres"

    def __init__(self, group: EndpointGroup) -> None:
        self._group = group
        self._tried: list[_State] = []

    @property
    def tried(self) -> tuple[Endpoint, ...]:
        """The endpoints this route's attempts went to, in order."""
        return tuple(s.endpoint for s in self._tried)

    async def __call__(
        self,
        fn: Callable[Concatenate[Endpoint, P], Awaitable[T]],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        group = self._group
        state = self._begin()
        start = group._clock()
        failed: bool | None = None  # cancelled: says nothing about the endpoint
        try:
            result = await fn(state.endpoint, *args, **kwargs)
        except Exception as exc:
            failed = group._match(exc)  # an unmatched error is an answer: the caller's
            raise
        else:
            failed = False
            return result
        finally:
            self._end(state, failed, group._clock() - start)

    # -- for adapters that send themselves (asyncres.httpx) -----------------------------

    def _begin(self, usable: Callable[[Endpoint], bool] | None = None) -> _State:
        state = self._group._pick(self._tried, usable)
        self._tried.append(state)
        state.outstanding += 1
        return state

    def _end(self, state: _State, failed: bool | None, latency: float) -> None:
        """``failed``: True / False, or None for an outcome that says nothing (cancelled)."""
        state.outstanding -= 1
        if failed is True:
            self._group._failed(state)
        elif failed is False:
            self._group._succeeded(state, latency)
