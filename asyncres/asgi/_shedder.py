"""Shedder: load shedding before queueing, as ASGI 3 middleware.

At most ``limit`` requests run the app at once (a fixed number, or an `asyncres.AdaptiveLimit`
whose algorithm moves it with the app's latency). The others wait in a bounded queue run
the way Facebook's "Fail at scale" describes (adaptive LIFO + CoDel):

- **CoDel queue-time bound.** While every slot has been busy for less than ``interval``
  (100 ms), a waiter may wait until they have been busy that long; once they have (a
  standing queue: the app is overloaded, not bursting), a waiter may wait only ``target``
  (5 ms). A burst is absorbed; a standing queue is cut to the requests that can be served
  at once. Busy slots, not a non-empty queue, mark the overload: under CoDel the queue
  empties often (its waiters are shed) while the app stays saturated.
- **Adaptive LIFO.** Waiters are served oldest first while the queue is young, newest first
  once it stands: under overload the newest request is the one whose caller is still there.
- **Priority lanes.** A request's urgency comes from ``priority_header`` (when configured)
  or RFC 9218's ``Priority: u=0..7`` (0 is the most urgent, 3 the default). The most urgent
  lane is served first; a full queue evicts a less urgent waiter for a more urgent
  newcomer; a waiter whose time bound fires takes every less urgent waiter with it (they
  would be served after it), so a more urgent request is never shed while a less urgent
  one still waits.

A shed request gets ``503`` with ``Retry-After`` (seconds to drain the queue ahead of it at
the measured completion rate, at least 1) before any app code runs: the refusal costs
microseconds. Paths in ``exempt`` (the health endpoints by default) bypass the limit.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass

import anyio

from .. import _validation
from .._clock import current_time
from .._deadline import remaining
from .._events import CallRejected, Listener, emit
from .._limit import AdaptiveLimit
from ._deadline import ASGIApp, Message, Receive, Scope, Send, checked_app, reply

__all__ = ["SHED_REASONS", "Shedder", "ShedderStatistics"]

#: Why a request was shed: the queue was full; a more urgent request took its place; its
#: queue-time bound (CoDel) fired, or a more urgent waiter's did.
SHED_REASONS = ("queue_full", "priority", "queue_timeout")
URGENCY_LEVELS = 8  # RFC 9218: u=0 (most urgent) .. u=7
DEFAULT_URGENCY = 3
# The completion rate behind Retry-After is measured over at least this many seconds.
_RATE_PERIOD = 1.0
# Shed within this long (or a standing queue) counts as "under pressure" (`Health` serves
# deep checks from cache then).
_PRESSURE_MEMORY = 1.0
_RATE_STALE = 10.0

_QUEUED, _ADMITTED, _SHED = 0, 1, 2


@dataclass(frozen=True, slots=True)
class ShedderStatistics:
    """A snapshot of a `Shedder` (the dictionaries are copies)."""

    __module__ = "asyncres.asgi"

    #: The current limit, the requests running the app, and those waiting (per urgency).
    limit: int
    in_flight: int
    queued: int
    queued_by_urgency: dict[int, int]
    #: Requests admitted to the app, and shed, per reason and per urgency (every key present).
    admitted: int
    shed: dict[str, int]
    shed_by_urgency: dict[int, int]
    #: Whether the queue is standing (LIFO, ``target`` bound) right now.
    standing_queue: bool
    #: Requests the app finished per second, last measured (``None`` before the first).
    drain_rate: float | None


class _Waiter:
    __slots__ = ("event", "reason", "state", "urgency")

    def __init__(self, urgency: int) -> None:
        self.urgency = urgency
        self.state = _QUEUED
        self.reason = ""
        self.event = anyio.Event()


class Shedder:
    """Bound the requests running ``app`` and shed the excess early (ASGI 3 middleware).

    ``limit``: an ``int`` (fixed) or an `AdaptiveLimit` (its algorithm sets the limit from
    the app's latency; give the Shedder an instance of its own). Default: ``AdaptiveLimit(
    "gradient2", initial_limit=20, min_limit=4, max_limit=1000)``. ``max_queued`` bounds the
    waiters (default 256; the time bound usually cuts first). ``target`` and ``interval``
    are CoDel's (Facebook's 5 ms and 100 ms). ``priority_header`` names a header carrying
    the urgency 0..7 (takes precedence over ``Priority``). Emits `CallRejected` (``name``,
    the reason) for each shed request.
    """

    __slots__ = (
        "_adaptive",
        "_admitted",
        "_app",
        "_default_urgency",
        "_done",
        "_exempt",
        "_fixed",
        "_header",
        "_in_flight",
        "_interval",
        "_lanes",
        "_last_shed",
        "_listeners",
        "_max_queued",
        "_max_retry_after",
        "_name",
        "_paused",
        "_rate",
        "_rate_done",
        "_rate_since",
        "_shed",
        "_shed_by_urgency",
        "_since",
        "_target",
        "_waiting",
    )

    __module__ = "asyncres.asgi"

    def __init__(
        self,
        app: ASGIApp,
        *,
        limit: int | AdaptiveLimit | None = None,
        max_queued: int = 256,
        target: float = 0.005,
        interval: float = 0.1,
        priority_header: str | None = None,
        default_urgency: int = DEFAULT_URGENCY,
        exempt: Iterable[str] = ("/healthz", "/readyz"),
        max_retry_after: int = 30,
        name: str | None = None,
        listeners: Iterable[Listener] = (),
    ) -> None:
        self._app = checked_app(app)
        if limit is None:
            limit = AdaptiveLimit("gradient2", initial_limit=20, min_limit=4, max_limit=1000)
        if isinstance(limit, AdaptiveLimit):
            self._adaptive: AdaptiveLimit | None = limit
            self._fixed = 0
        else:
            self._adaptive = None
            self._fixed = _validation.count("limit", limit, minimum=1)
        self._max_queued = _validation.count("max_queued", max_queued, minimum=0)
        self._target = _validation.finite_positive("target", target)
        self._interval = _validation.finite_positive("interval", interval)
        if self._target > self._interval:
            raise ValueError(f"`target` ({target!r}) must be <= `interval` ({interval!r})")
        self._header = (
            None
            if priority_header is None
            else _validation.header_name("priority_header", priority_header)
        )
        self._default_urgency = _validation.count("default_urgency", default_urgency, minimum=0)
        if self._default_urgency >= URGENCY_LEVELS:
            raise ValueError(f"`default_urgency` must be 0..7, got {default_urgency!r}")
        exempt = frozenset(exempt)
        for path in exempt:
            if not isinstance(path, str) or not path.startswith("/"):
                raise ValueError(f"`exempt` must hold paths starting with '/', got {path!r}")
        self._exempt = exempt
        self._max_retry_after = _validation.count("max_retry_after", max_retry_after, minimum=1)
        self._name = name
        listeners = _validation.listeners(listeners)
        self._listeners = listeners
        self._in_flight = 0
        self._waiting = 0
        # One deque per urgency, oldest waiter on the left.
        self._lanes: list[deque[_Waiter]] = [deque() for _ in range(URGENCY_LEVELS)]
        self._since = math.inf  # since when every slot has been busy
        # The last saturation's start and when a slot freed (`_saturated` may resume it).
        self._paused = (math.inf, -math.inf)
        self._admitted = 0
        self._done = 0
        self._shed = dict.fromkeys(SHED_REASONS, 0)
        self._shed_by_urgency = dict.fromkeys(range(URGENCY_LEVELS), 0)
        self._last_shed = -math.inf
        self._rate: float | None = None
        self._rate_since = -math.inf
        self._rate_done = 0

    def __repr__(self) -> str:
        return f"Shedder({self._app!r}, limit={self._adaptive or self._fixed!r})"

    @property
    def limit(self) -> int:
        """The current limit: the fixed one, or the adaptive limit's whole number."""
        adaptive = self._adaptive
        return self._fixed if adaptive is None else adaptive._permits

    def under_pressure(self) -> bool:
        """Whether the queue stands now or a request was shed within the last second."""
        return self._standing() or current_time() - self._last_shed < _PRESSURE_MEMORY

    def statistics(self) -> ShedderStatistics:
        return ShedderStatistics(
            limit=self.limit,
            in_flight=self._in_flight,
            queued=self._waiting,
            queued_by_urgency={u: len(lane) for u, lane in enumerate(self._lanes) if lane},
            admitted=self._admitted,
            shed=dict(self._shed),
            shed_by_urgency=dict(self._shed_by_urgency),
            standing_queue=self._standing(),
            drain_rate=self._rate,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") in self._exempt:
            await self._app(scope, receive, send)
            return
        adaptive = self._adaptive
        limit = self._fixed if adaptive is None else adaptive._permits
        in_flight = self._in_flight
        if in_flight < limit:
            self._in_flight = in_flight = in_flight + 1  # nobody waits while a slot is free
            if in_flight == limit:
                self._saturated(current_time())  # the last slot taken
        else:
            urgency = self._urgency(scope.get("headers", ()))
            reason = await self._queue(urgency)
            if reason:
                await self._refuse(send, urgency, reason)
                return
        self._admitted += 1
        if adaptive is None:
            try:
                await self._app(scope, receive, send)
            finally:
                self._release()
            return
        # Feed the app's latency to the adaptive limit: a 503 or 504 it answers, or a
        # deadline that fires inside it, is a drop; a cancellation is no sample.
        in_flight = self._in_flight
        status = 0

        # A plain function handing back the server's awaitable: no coroutine per message.
        def watched_send(message: Message) -> Awaitable[None]:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            return send(message)

        start = current_time()
        try:
            await self._app(scope, receive, watched_send)
        except BaseException as exc:
            self._release()
            # A timeout in the app, or the caller's deadline cancelling it, is a drop; any
            # other cancellation (the client left) or error says nothing about the queue.
            left = remaining()
            if isinstance(exc, TimeoutError) or (left is not None and left <= 0.0):
                adaptive._sample(current_time() - start, in_flight, True)
            raise
        self._release()
        adaptive._sample(current_time() - start, in_flight, status in (503, 504))

    # -- the queue ---------------------------------------------------------------------

    async def _queue(self, urgency: int) -> str:
        """Wait for a slot; ``""`` once admitted, else why the request is shed."""
        if self._waiting >= self._max_queued:
            victim = self._least_urgent_waiter(urgency)
            if victim is None:
                return "queue_full"
            self._shed_waiter(victim, "priority")
        now = current_time()
        self._measure(now)
        if self._since == math.inf:  # saturated without taking the last slot (limit fell)
            self._saturated(now)
        # CoDel: wait until the slots have been busy for `interval`, or at least `target`.
        deadline = max(now + self._target, self._since + self._interval)
        waiter = _Waiter(urgency)
        self._lanes[urgency].append(waiter)
        self._waiting += 1
        try:
            with anyio.CancelScope(deadline=deadline):
                await waiter.event.wait()
        except BaseException:
            if waiter.state == _QUEUED:
                self._remove(waiter)
            elif waiter.state == _ADMITTED:
                self._release()  # handed a slot it will not use: pass it on
                self._done -= 1  # ... without counting a request the app finished
            raise
        if waiter.state == _ADMITTED:
            return ""
        if waiter.state == _QUEUED:
            # Its bound fired: the less urgent waiters behind it go first.
            self._remove(waiter)
            for lane in self._lanes[urgency + 1 :]:
                while lane:
                    self._shed_waiter(lane[0], "queue_timeout")
            return "queue_timeout"
        return waiter.reason

    def _least_urgent_waiter(self, urgency: int) -> _Waiter | None:
        """The waiter a newcomer of ``urgency`` may evict from a full queue, if any: the
        least urgent lane's oldest under a standing queue (served last), else its newest."""
        for lane_urgency in range(URGENCY_LEVELS - 1, urgency, -1):
            lane = self._lanes[lane_urgency]
            if lane:
                return lane[0] if self._standing() else lane[-1]
        return None

    def _saturated(self, now: float) -> None:
        """Every slot is taken from ``now``: a new episode, or the last one after a gap."""
        since, freed = self._paused
        self._since = since if now - freed < self._interval else now

    def _standing(self) -> bool:
        return current_time() - self._since >= self._interval

    def _release(self) -> None:
        """The app finished a request: its slot goes to the next waiters the limit allows."""
        self._done += 1
        self._in_flight -= 1
        if self._waiting:
            self._admit()
        elif self._since != math.inf and self._in_flight < self.limit:
            # A slot is free: the saturation pauses. CoDel empties the queue often while
            # the app stays overloaded, so a gap shorter than `interval` will not count.
            self._paused = (self._since, current_time())
            self._since = math.inf

    def _admit(self) -> None:
        adaptive = self._adaptive
        limit = self._fixed if adaptive is None else adaptive._permits
        lifo = self._standing()
        lanes = self._lanes
        while self._waiting and self._in_flight < limit:
            lane = next(lane for lane in lanes if lane)
            waiter = lane.pop() if lifo else lane.popleft()
            self._waiting -= 1
            self._in_flight += 1
            waiter.state = _ADMITTED
            waiter.event.set()

    def _remove(self, waiter: _Waiter) -> None:
        self._lanes[waiter.urgency].remove(waiter)
        self._waiting -= 1

    def _shed_waiter(self, waiter: _Waiter, reason: str) -> None:
        self._remove(waiter)
        waiter.state = _SHED
        waiter.reason = reason
        waiter.event.set()

    # -- refusing ----------------------------------------------------------------------

    async def _refuse(self, send: Send, urgency: int, reason: str) -> None:
        now = current_time()
        self._shed[reason] += 1
        self._shed_by_urgency[urgency] += 1
        self._last_shed = now
        emit(self._listeners, CallRejected(self._name, reason))
        retry_after = str(self._retry_after(now)).encode()
        await reply(
            send,
            503,
            b"overloaded: request shed (" + reason.encode() + b")",
            b"text/plain; charset=utf-8",
            (b"retry-after", retry_after),
        )

    def _measure(self, now: float) -> None:
        """Update the completion rate (off the hot path: only when queueing or shedding)."""
        elapsed = now - self._rate_since
        if elapsed >= _RATE_PERIOD:
            if elapsed <= _RATE_STALE:  # older marks span calm and storm: keep the last rate
                self._rate = (self._done - self._rate_done) / elapsed
            self._rate_since, self._rate_done = now, self._done

    def _retry_after(self, now: float) -> int:
        """Seconds for the queue ahead to drain at the measured completion rate."""
        self._measure(now)
        rate = self._rate
        if not rate:
            return 1
        return max(1, min(self._max_retry_after, math.ceil((self._waiting + 1) / rate)))

    def _urgency(self, headers: Iterable[tuple[bytes, bytes]]) -> int:
        custom = self._header
        found: int | None = None
        for key, value in headers:
            key = key.lower()
            if custom is not None and key == custom:
                value = value.strip()
                if len(value) == 1 and 48 <= value[0] < 48 + URGENCY_LEVELS:
                    return value[0] - 48
            elif key == b"priority" and found is None:
                found = _rfc9218_urgency(value)
        return self._default_urgency if found is None else found


def _rfc9218_urgency(value: bytes) -> int | None:
    """The ``u`` parameter of an RFC 9218 ``Priority`` field (``u=5, i``), if valid."""
    for item in value.split(b","):
        item = item.strip()
        if item.startswith(b"u="):
            digits = item[2:].strip()
            if len(digits) == 1 and 48 <= digits[0] < 48 + URGENCY_LEVELS:
                return digits[0] - 48
            return None
    return None
