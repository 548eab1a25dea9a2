"""AdaptiveLimit: a concurrency limit that finds what the dependency can serve by itself.

A fixed `Bulkhead` is right for one dependency on one day. An adaptive limit measures each
call's round-trip time (RTT) and moves the limit the way TCP moves its congestion window —
the algorithms of Netflix's concurrency-limits library:

- ``"aimd"`` (additive increase, multiplicative decrease), per sample: a drop (an overload
  signal, see below) or an RTT above ``timeout`` multiplies the limit by ``backoff_ratio``;
  otherwise, when the calls in flight used at least half the limit, it grows by 1. Cheap and
  robust; it reacts to failures, not to queueing.
- ``"gradient2"`` (the default), per window of ``window_samples`` samples: it keeps a
  long-term RTT (an exponential average over ``long_window`` windows, the dependency's
  "normal") and compares it with the window's average RTT. The gradient
  ``clamp(0.5, 1, rtt_tolerance * long / short)`` is 1 while latency stays within the
  tolerance and falls as a queue builds; the new limit is ``limit * gradient +
  queue_size``, smoothed: ``limit = (1 - smoothing) * limit + smoothing * new``. When the
  long RTT is more than twice the short one (the dependency recovered), the long RTT decays
  by 5 % per window so that the baseline follows. A window where the calls in flight used
  less than half the limit does not change it (the client, not the dependency, was the
  bottleneck). asyncres adds one rule: drops lower the gradient to at most ``1 - share of
  drops in the window`` (never below 0.5), so a dependency that refuses work fast (a 503
  answers quicker than a query) is still backed off.

  Gradient2 learns "normal" from what it sees first (the first 10 windows are averaged):
  a limit that starts far above what the dependency serves (``initial_limit=20`` in front
  of a pool of 8) learns the standing queue as normal. Start it low where the dependency
  is small: it grows by about ``smoothing * queue_size`` a window while latency stays
  normal.

Calls beyond the limit wait in a bounded queue with the `Bulkhead`'s rules (priority lanes,
``max_queued``, ``queue_timeout``, the caller's deadline, shedding the lowest priority first;
the shared `WaiterQueue`) or are refused with `LimitExceededError`.

What is a sample: a call that returns (its RTT), or one that raises an error matched by
``drop_on`` (a drop). Cancellation, a `RejectedError` from an inner layer and any other
exception release the slot without a sample: they say nothing about the dependency's queue.

All bookkeeping is synchronous, so the limit is correct under concurrency without a lock.
Not thread-safe: use it from one event loop.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Literal, ParamSpec, TypeVar

from . import _validation
from ._backend import current_task
from ._clock import Clock, resolve_duration_clock
from ._events import LimitChanged, Listener, emit
from ._exceptions import LimitExceededError, RejectedError
from ._matching import ErrorFilter, matcher
from ._policy import PolicyFaces
from ._registry import track
from ._setting import Setting
from ._waiters import REJECTION_REASONS, QueueOwner, WaiterQueue

__all__ = ["AdaptiveLimit", "AdaptiveLimitLane", "LimitStatistics"]

T = TypeVar("T")
P = ParamSpec("P")

Algorithm = Literal["aimd", "gradient2"]
_ALGORITHMS = ("aimd", "gradient2")
# Under light load (fewer than half the limit in flight) one call in this many is timed.
_LIGHT_EVERY = 8
# Gradient2: windows averaged plainly before the exponential average takes over (Netflix's
# warm-up), and the decay of the long RTT when it is over twice the short one.
_WARMUP_WINDOWS = 10
_LONG_DECAY = 0.95
_CACHED_LANES = 32


def _is_overload(exc: BaseException) -> bool:
    """The default ``drop_on``: a timeout, or an error that asks to come back later."""
    return isinstance(exc, TimeoutError) or getattr(exc, "retry_after", None) is not None


@dataclass(frozen=True, slots=True)
class LimitStatistics:
    """A snapshot of an `AdaptiveLimit` (the dictionaries are copies)."""

    __module__ = "asyncres"

    algorithm: str
    #: The current limit (the estimate, and the whole number of calls it admits).
    limit: float
    #: Calls holding a slot right now (including ones handed to waiters not yet resumed).
    in_flight: int
    #: Waiters in the queue, in total and per priority.
    queued: int
    queued_by_priority: dict[int, int]
    #: The last window's average RTT (gradient2) or the last sample's (aimd), in seconds.
    rtt: float | None
    #: gradient2's long-term RTT, the dependency's normal (``None`` for aimd).
    rtt_baseline: float | None
    #: Samples taken and drops among them, since the limit was created.
    samples: int
    drops: int
    #: Calls refused since the limit was created, per reason (every key present).
    rejected: dict[str, int]


class AdaptiveLimit(QueueOwner, PolicyFaces):
    """Run at most ``limit`` calls at once, the limit following the dependency's latency.

    ``await limit.call(fn, *args)``, ``@limit``, ``await limit.execute(fn)`` and ``async
    with limit:`` use priority 0; ``limit.lane(priority)`` is a view with the same faces at
    another priority. See the module docstring for the algorithms; the defaults are Netflix
    concurrency-limits' except ``min_limit`` (1, not 20: the limit must be able to fall to
    what a dependency really serves, e.g. a pool of 8 connections) and ``max_queued``
    (0, the Bulkhead's: refuse rather than queue).

    Refusals raise `LimitExceededError` (a `RejectedError`; ``reason`` ``"queue_full"``,
    ``"shed"``, ``"queue_timeout"`` or ``"deadline"``, the same as the `CallRejected`
    event); `LimitChanged` is emitted when the whole-number limit changes.
    """

    __slots__ = (
        "__weakref__",
        "_algorithm",
        "_backoff_ratio",
        "_clock",
        "_countdown",
        "_drop_match",
        "_drops",
        "_exclude_match",
        "_gradient",
        "_in_flight",
        "_limit",
        "_listeners",
        "_long_rtt",
        "_long_window",
        "_max_limit",
        "_max_queued",
        "_min_limit",
        "_name",
        "_permits",
        "_queue",
        "_queue_size",
        "_queue_timeout",
        "_rejected",
        "_rtt",
        "_rtt_tolerance",
        "_samples",
        "_smoothing",
        "_tickets",
        "_timeout",
        "_views",
        "_window_drops",
        "_window_in_flight",
        "_window_samples",
        "_window_seen",
        "_window_sum",
        "_windows",
    )

    __module__ = "asyncres"

    algorithm: Setting[str] = Setting()
    min_limit: Setting[int] = Setting()
    max_limit: Setting[int] = Setting()
    max_queued: Setting[int] = Setting()
    queue_timeout: Setting[float | None] = Setting()
    backoff_ratio: Setting[float] = Setting()
    timeout: Setting[float] = Setting()
    smoothing: Setting[float] = Setting()
    rtt_tolerance: Setting[float] = Setting()
    long_window: Setting[int] = Setting()
    queue_size: Setting[int] = Setting()
    window_samples: Setting[int] = Setting()
    name: Setting[str | None] = Setting()

    def __init__(
        self,
        algorithm: Algorithm = "gradient2",
        *,
        initial_limit: int = 20,
        min_limit: int = 1,
        max_limit: int = 200,
        max_queued: int = 0,
        queue_timeout: float | None = None,
        backoff_ratio: float = 0.9,
        timeout: float = 5.0,
        smoothing: float = 0.2,
        rtt_tolerance: float = 1.5,
        long_window: int = 600,
        queue_size: int = 4,
        window_samples: int = 10,
        drop_on: ErrorFilter = _is_overload,
        exclude: ErrorFilter = (),
        name: str | None = None,
        listeners: Iterable[Listener] = (),
        clock: Clock | None = None,
    ) -> None:
        if algorithm not in _ALGORITHMS:
            raise ValueError(f"`algorithm` must be one of {list(_ALGORITHMS)}, got {algorithm!r}")
        self._algorithm = algorithm
        self._gradient = algorithm == "gradient2"
        self._min_limit = _validation.count("min_limit", min_limit, minimum=1)
        self._max_limit = _validation.count("max_limit", max_limit, minimum=1)
        if self._min_limit > self._max_limit:
            raise ValueError(f"`min_limit` ({min_limit}) must be <= `max_limit` ({max_limit})")
        initial = _validation.count("initial_limit", initial_limit, minimum=1)
        if not self._min_limit <= initial <= self._max_limit:
            raise ValueError(
                f"`initial_limit` must be between `min_limit` ({min_limit}) and "
                f"`max_limit` ({max_limit}), got {initial_limit!r}"
            )
        self._max_queued = _validation.count("max_queued", max_queued, minimum=0)
        self._queue_timeout = _validation.optional_limit("queue_timeout", queue_timeout)
        backoff_ratio = _validation.ratio("backoff_ratio", backoff_ratio)
        if not 0.0 < backoff_ratio < 1.0:
            raise ValueError(
                f"`backoff_ratio` must be between 0 and 1 (exclusive), got {backoff_ratio!r}"
            )
        self._backoff_ratio = backoff_ratio
        self._timeout = _validation.finite_positive("timeout", timeout)
        smoothing = _validation.ratio("smoothing", smoothing)
        if smoothing == 0.0:
            raise ValueError("`smoothing` must be > 0 (0 never moves the limit), got 0.0")
        self._smoothing = smoothing
        rtt_tolerance = _validation.finite_positive("rtt_tolerance", rtt_tolerance)
        if rtt_tolerance < 1.0:
            raise ValueError(f"`rtt_tolerance` must be >= 1, got {rtt_tolerance!r}")
        self._rtt_tolerance = rtt_tolerance
        self._long_window = _validation.count("long_window", long_window, minimum=1)
        self._queue_size = _validation.count("queue_size", queue_size, minimum=0)
        self._window_samples = _validation.count("window_samples", window_samples, minimum=1)
        self._drop_match = matcher(drop_on, "drop_on")
        self._exclude_match = matcher(exclude, "exclude")
        self._name = name
        track("adaptive_limit", self, name)
        listeners = _validation.listeners(listeners)
        self._listeners = listeners
        if clock is not None and not callable(clock):
            raise ValueError(f"`clock` must be callable, got {clock!r}")
        self._clock = clock
        self._limit = float(initial)
        # Invariant: waiters queue only while _in_flight >= _permits, so the fast path
        # (`_in_flight < _permits`) cannot barge past them.
        self._permits = initial
        self._in_flight = 0
        self._countdown = 1  # time the first call
        self._queue: WaiterQueue[None] = WaiterQueue(self._pass_on)
        self._rejected = dict.fromkeys(REJECTION_REASONS, 0)
        self._views: dict[int, AdaptiveLimitLane] = {}
        self._tickets: dict[object, list[tuple[float, int]]] = {}
        self._samples = 0
        self._drops = 0
        self._rtt: float | None = None
        self._long_rtt: float | None = None
        self._windows = 0
        self._window_seen = 0
        self._window_sum = 0.0
        self._window_in_flight = 0
        self._window_drops = 0

    def __repr__(self) -> str:
        name = f", name={self._name!r}" if self._name else ""
        return f"AdaptiveLimit({self._algorithm!r}, limit={self._permits}{name})"

    # -- faces at priority 0 ------------------------------------------------------------

    async def call(self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``await fn(*args, **kwargs)`` holding a slot (priority 0)."""
        if self._in_flight < self._permits:
            self._in_flight += 1
        else:
            await self._wait(0)
        in_flight = self._in_flight
        # Under light load (fewer than half the limit in use) the limit is not what bounds
        # the calls, so only one call in `_LIGHT_EVERY` is timed, enough for the RTT
        # baseline; the others skip the two clock reads. Under load every call is timed.
        clock: Clock | None = None
        start = 0.0
        if in_flight * 2 >= self._permits or self._countdown == 1:
            self._countdown = _LIGHT_EVERY
            clock = self._clock or self._resolve()
            start = clock()
        else:
            self._countdown -= 1
        try:
            result = await fn(*args, **kwargs)
        except BaseException as exc:
            self._finish_error(exc, None if clock is None else start, in_flight)
            raise
        rtt = 0.0 if clock is None else clock() - start
        if self._queue.waiting and self._in_flight <= self._permits:  # `_release` inlined
            self._queue.hand_off(None)
        else:
            self._in_flight -= 1
        if clock is None:
            return result
        if self._gradient:  # `_sample` inlined for a success
            seen = self._window_seen + 1
            self._window_seen = seen
            self._window_sum += rtt
            if in_flight > self._window_in_flight:
                self._window_in_flight = in_flight
            if seen >= self._window_samples:
                self._close_window()
        else:
            self._sample_aimd(rtt, in_flight, False)
        return result

    async def __aenter__(self) -> None:
        await self._enter(0)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._exit(exc)

    async def _timed(
        self, fn: Callable[P, Awaitable[T]], in_flight: int, /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run ``fn`` in the slot the caller holds, timing it: one sample."""
        clock = self._clock or self._resolve()
        start = clock()
        try:
            result = await fn(*args, **kwargs)
        except BaseException as exc:
            self._finish_error(exc, start, in_flight)
            raise
        rtt = clock() - start
        self._release()
        self._sample(rtt, in_flight, False)
        return result

    def lane(self, priority: int) -> AdaptiveLimitLane:
        """A view whose calls wait at ``priority`` (higher is served first, shed last)."""
        view = self._views.get(priority)
        if view is None or priority.__class__ is not int:  # True == 1 would find lane 1
            view = AdaptiveLimitLane(self, priority)
            if len(self._views) < _CACHED_LANES:
                self._views[priority] = view
        return view

    def statistics(self) -> LimitStatistics:
        """A snapshot: limit, in flight, queued, RTT estimates, samples and refusals."""
        return LimitStatistics(
            algorithm=self._algorithm,
            limit=self._limit,
            in_flight=self._in_flight,
            queued=self._queue.waiting,
            queued_by_priority=self._queue.by_priority(),
            rtt=self._rtt,
            rtt_baseline=self._long_rtt,
            samples=self._samples + self._window_seen,
            drops=self._drops,
            rejected=dict(self._rejected),
        )

    # -- admission and release ----------------------------------------------------------

    def _resolve(self) -> Clock:
        clock = self._clock = resolve_duration_clock()
        return clock

    async def _enter(self, priority: int) -> None:
        """``async with``: admit, and remember the start on the task's own stack."""
        if self._in_flight < self._permits:
            self._in_flight += 1
        else:
            await self._wait(priority)
        clock = self._clock or self._resolve()
        self._tickets.setdefault(current_task(), []).append((clock(), self._in_flight))

    def _exit(self, exc: BaseException | None) -> None:
        task = current_task()
        stack = self._tickets[task]
        start, in_flight = stack.pop()
        if not stack:
            del self._tickets[task]
        if exc is None:
            self._release()
            clock = self._clock or self._resolve()
            self._sample(clock() - start, in_flight, False)
        else:
            self._finish_error(exc, start, in_flight)

    def _finish_error(self, exc: BaseException, start: float | None, in_flight: int) -> None:
        """Release the slot; a drop is a sample (an untimed one takes the last RTT)."""
        self._release()
        if (
            isinstance(exc, Exception)
            and not isinstance(exc, RejectedError)
            and self._drop_match(exc)
            and not self._exclude_match(exc)
        ):
            if start is None:
                rtt = self._rtt or 0.0
            else:
                clock = self._clock or self._resolve()
                rtt = clock() - start
            self._sample(rtt, in_flight, True)
        # Cancellation, inner rejections and other errors: no sample.

    def _release(self) -> None:
        """Give the slot to the next waiter when the limit allows, else free it."""
        if self._queue.waiting and self._in_flight <= self._permits:
            self._queue.hand_off(None)
        else:
            self._in_flight -= 1

    def _pass_on(self, _slot: None) -> None:
        """Take back a slot from a waiter that gave up after it was handed one."""
        self._release()

    def _admit_waiters(self) -> None:
        queue = self._queue
        while queue.waiting and self._in_flight < self._permits:
            self._in_flight += 1
            queue.hand_off(None)

    def _error(self, reason: str) -> LimitExceededError:
        return LimitExceededError(
            self._name, limit=self._permits, max_queued=self._max_queued, reason=reason
        )

    # -- the algorithms -----------------------------------------------------------------

    def _sample(self, rtt: float, in_flight: int, dropped: bool) -> None:
        if not self._gradient:
            self._sample_aimd(rtt, in_flight, dropped)
            return
        if dropped:
            self._drops += 1
            self._window_drops += 1
        self._window_seen += 1
        self._window_sum += rtt
        if in_flight > self._window_in_flight:
            self._window_in_flight = in_flight
        if self._window_seen >= self._window_samples:
            self._close_window()

    def _sample_aimd(self, rtt: float, in_flight: int, dropped: bool) -> None:
        self._samples += 1
        self._rtt = rtt
        limit = self._limit
        if dropped or rtt > self._timeout:
            if dropped:
                self._drops += 1
            self._set(max(float(self._min_limit), math.floor(limit * self._backoff_ratio)))
        elif in_flight * 2 >= limit and limit < self._max_limit:
            self._set(min(float(self._max_limit), limit + 1.0))

    def _close_window(self) -> None:
        short = self._window_sum / self._window_seen
        in_flight, drops = self._window_in_flight, self._window_drops
        seen = self._window_seen
        self._samples += seen
        self._window_seen = 0
        self._window_sum = 0.0
        self._window_in_flight = 0
        self._window_drops = 0
        self._rtt = short
        self._windows += 1
        long = self._long_rtt
        if long is None:
            long = short
        elif self._windows <= _WARMUP_WINDOWS:
            long += (short - long) / self._windows
        else:
            long += (short - long) / self._long_window
        if short > 0.0 and long / short > 2.0:
            long *= _LONG_DECAY  # the dependency got faster: let the baseline follow
        self._long_rtt = long
        limit = self._limit
        if not drops and in_flight < limit / 2.0:
            return  # the client was the bottleneck: no evidence either way
        gradient = 1.0 if short <= 0.0 else min(1.0, self._rtt_tolerance * long / short)
        # Drops lower the gradient by their share of the window: all drops halve it.
        gradient = max(0.5, min(gradient, 1.0 - drops / seen))
        new = limit * gradient + self._queue_size
        new = limit * (1.0 - self._smoothing) + new * self._smoothing
        self._set(max(float(self._min_limit), min(float(self._max_limit), new)))

    def _set(self, limit: float) -> None:
        self._limit = limit
        permits = int(limit)
        previous = self._permits
        if permits != previous:
            self._permits = permits
            emit(self._listeners, LimitChanged(self._name, permits, previous))
            if permits > previous:
                self._admit_waiters()


class AdaptiveLimitLane(PolicyFaces):
    """An `AdaptiveLimit` seen at one priority: ``limit.lane(p)``. Shares its slots and queue."""

    __slots__ = ("limit", "priority")

    __module__ = "asyncres"

    limit: AdaptiveLimit
    priority: int

    def __init__(self, limit: AdaptiveLimit, priority: int) -> None:
        if not isinstance(limit, AdaptiveLimit):
            raise ValueError(f"`limit` must be an AdaptiveLimit, got {limit!r}")
        if isinstance(priority, bool) or not isinstance(priority, int):
            raise ValueError(f"`priority` must be an integer, got {priority!r}")
        object.__setattr__(self, "limit", limit)
        object.__setattr__(self, "priority", priority)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __repr__(self) -> str:
        return f"<AdaptiveLimitLane priority={self.priority} of {self.limit!r}>"

    async def call(self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``await fn(*args, **kwargs)`` holding a slot, waiting at this priority."""
        limit = self.limit
        if limit._in_flight < limit._permits:
            return await limit.call(fn, *args, **kwargs)  # a free slot: no queue to join
        await limit._wait(self.priority)
        return await limit._timed(fn, limit._in_flight, *args, **kwargs)

    async def __aenter__(self) -> None:
        await self.limit._enter(self.priority)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.limit._exit(exc)
