"""CircuitBreaker: stop calling a dependency that keeps failing, and probe it to recover.

States (`CircuitState`)::

    CLOSED ──trip──▶ OPEN ──recovery time passed, next call──▶ HALF_OPEN
      ▲                ▲                                          │
      │                └──────────── a probe failed ──────────────┤
      └──────────────── success_threshold probes succeeded ───────┘

    ISOLATED (manual, rejects everything)   DISABLED (manual, admits everything, records)

Trip rules (the union of Resilience4j, Polly and Failsafe): ``failure_threshold``
consecutive failures, and/or a failure rate (and a slow-call rate) over a sliding window of
the last ``window`` calls or seconds, once the window holds ``min_calls`` calls.

Cost. The closed success path reads no clock and allocates nothing: it bumps a counter.
Counted successes are dated in batches of at most 64 (`_BATCH`): the first success of a
batch and the moment the batch is folded into the window (64th success, any failure,
`statistics()`) read the clock, and the batch is spread evenly over that
interval. Under load a batch spans microseconds, so the time window is exact in practice;
at a trickle it is a uniform estimate within the span of 64 calls. Count windows are exact.
Failures are dated exactly. Every update is O(1) (amortised for count windows): time
buckets and a ring of failure positions, with subtract-on-evict.

Bookkeeping is synchronous (no ``await`` between reading and writing state), so the breaker
is correct under concurrency without a lock, and no lock is ever held across your call.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import math
import random
from asyncio.events import _get_running_loop
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, ParamSpec, TypeVar

from . import _validation
from ._backoff import Backoff
from ._clock import Clock, resolve_clock
from ._events import CallRejected, CircuitClosed, CircuitHalfOpened, CircuitOpened, Listener, emit
from ._exceptions import CircuitOpenError, RejectedError
from ._matching import ErrorFilter, matcher
from ._policy import PolicyFaces

__all__ = ["CircuitBreaker", "CircuitBreakerStatistics", "CircuitState"]

T = TypeVar("T")
P = ParamSpec("P")

#: Successes counted before they are dated and folded into the window.
_BATCH = 64
#: Buckets of a time window (Polly, Hystrix: 10).
_BUCKETS = 10

_DEFAULT_FAILURE_RATE = 0.5  # Resilience4j, Hystrix
_DEFAULT_WINDOW_SECONDS = 60.0
_DEFAULT_WINDOW_CALLS = 100  # Resilience4j
_DEFAULT_RECOVERY_TIME = 30.0


class CircuitState(enum.Enum):
    """The state of a `CircuitBreaker`.

    ``CLOSED``: calls pass and are recorded. ``OPEN``: calls are rejected until the recovery
    time has passed. ``HALF_OPEN``: up to ``half_open_max_calls`` probe calls at a time.
    ``ISOLATED``: forced open by `CircuitBreaker.isolate` until `CircuitBreaker.reset`.
    ``DISABLED``: every call passes and is recorded, the breaker never trips
    (`CircuitBreaker.disable`).
    """

    __module__ = "asyncres"

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"
    ISOLATED = "isolated"
    DISABLED = "disabled"

    def __repr__(self) -> str:
        return f"CircuitState.{self.name}"


_CLOSED = CircuitState.CLOSED
_OPEN = CircuitState.OPEN
_HALF_OPEN = CircuitState.HALF_OPEN
_ISOLATED = CircuitState.ISOLATED
_DISABLED = CircuitState.DISABLED

#: The probe ticket of a call that is not a probe.
_NO_PROBE = -1
#: `CircuitBreaker._left` while the lean path is closed: any success that sees it is stale.
_OFF = -(1 << 62)


@dataclass(frozen=True, slots=True)
class CircuitBreakerStatistics:
    """A snapshot of a `CircuitBreaker` (the window as of the moment it was taken)."""

    __module__ = "asyncres"

    state: CircuitState
    #: Calls recorded in the current window (successes, failures, excluded errors).
    calls: int
    #: Failures among them.
    failures: int
    #: Calls slower than ``slow_call_duration`` among them (0 when not measured).
    slow_calls: int
    #: ``failures / calls`` (0.0 for an empty window).
    failure_rate: float
    #: ``slow_calls / calls`` (0.0 for an empty window).
    slow_call_rate: float
    #: Failures since the last success.
    consecutive_failures: int
    #: Loop time when the breaker last opened (``None`` unless OPEN, HALF_OPEN or ISOLATED).
    opened_at: float | None
    #: Seconds until a probe is admitted (OPEN); the current recovery time (HALF_OPEN,
    #: ISOLATED); ``None`` otherwise.
    retry_after: float | None
    #: Probe calls running now (HALF_OPEN).
    probes_in_flight: int
    #: Calls rejected with `CircuitOpenError` since the breaker was created.
    rejected: int
    #: Times the breaker opened (tripped, a probe failed, or isolated) since it was created.
    times_opened: int


# -- sliding windows ----------------------------------------------------------------------


class _TimeWindow:
    """Outcomes of the last ``seconds``, in 10 buckets (the window slides a bucket at a time)."""

    __slots__ = ("_calls", "_current", "_failures", "_slows", "calls", "failures", "slows", "width")

    def __init__(self, seconds: float) -> None:
        self.width = seconds / _BUCKETS
        self._calls = [0] * _BUCKETS
        self._failures = [0] * _BUCKETS
        self._slows = [0] * _BUCKETS
        self._current: int | None = None
        self.calls = self.failures = self.slows = 0

    def reset(self) -> None:
        for counts in (self._calls, self._failures, self._slows):
            counts[:] = [0] * _BUCKETS
        self._current = None
        self.calls = self.failures = self.slows = 0

    def advance(self, now: float) -> int:
        """Evict the buckets that left the window by ``now``; return ``now``'s bucket."""
        bucket = int(now // self.width)
        current = self._current
        if current is None or bucket < current or bucket - current >= _BUCKETS:
            # First use, a long pause, or a clock that went backwards (a new event loop).
            if self.calls:
                self.reset()
        elif bucket > current:
            calls, failures, slows = self._calls, self._failures, self._slows
            for expired in range(current + 1, bucket + 1):
                i = expired % _BUCKETS
                self.calls -= calls[i]
                self.failures -= failures[i]
                self.slows -= slows[i]
                calls[i] = failures[i] = slows[i] = 0
        self._current = bucket
        return bucket

    def add_successes(self, count: int, since: float, now: float) -> None:
        """Add ``count`` successes that happened evenly over ``[since, now]``."""
        bucket = self.advance(now)
        width = self.width
        first = int(since // width)
        if since >= now or first >= bucket:
            self._calls[bucket % _BUCKETS] += count
            self.calls += count
            return
        span = now - since
        oldest = bucket - _BUCKETS + 1
        if first < oldest:  # the part before the window is dropped
            first = oldest
            assigned = round(count * (first * width - since) / span)
        else:
            assigned = 0
        calls = self._calls
        for b in range(first, bucket + 1):
            upto = count if b == bucket else round(count * ((b + 1) * width - since) / span)
            calls[b % _BUCKETS] += upto - assigned
            self.calls += upto - assigned
            assigned = upto

    def add(self, now: float, failed: bool, slow: bool) -> None:
        i = self.advance(now) % _BUCKETS
        self._calls[i] += 1
        self.calls += 1
        if failed:
            self._failures[i] += 1
            self.failures += 1
        if slow:
            self._slows[i] += 1
            self.slows += 1


class _CountWindow:
    """Outcomes of the last ``size`` calls: a call counter and the positions of failures."""

    __slots__ = ("_failed", "_seq", "_slow", "size")

    def __init__(self, size: int) -> None:
        self.size = size
        self._seq = 0
        self._failed: deque[int] = deque()
        self._slow: deque[int] = deque()

    @property
    def calls(self) -> int:
        return min(self._seq, self.size)

    @property
    def failures(self) -> int:
        return len(self._failed)

    @property
    def slows(self) -> int:
        return len(self._slow)

    def reset(self) -> None:
        self._seq = 0
        self._failed.clear()
        self._slow.clear()

    def advance(self, now: float) -> int:
        return 0

    def add_successes(self, count: int, since: float, now: float) -> None:
        self._seq += count
        self._evict()

    def add(self, now: float, failed: bool, slow: bool) -> None:
        self._seq = seq = self._seq + 1
        if failed:
            self._failed.append(seq)
        if slow:
            self._slow.append(seq)
        self._evict()

    def _evict(self) -> None:
        oldest = self._seq - self.size
        for positions in (self._failed, self._slow):
            while positions and positions[0] <= oldest:
                positions.popleft()


def _current_task() -> object:
    """The running task (asyncio or trio): who is inside an ``async with breaker`` block.

    ``None`` outside any task (a coroutine closed by the garbage collector).
    """
    loop = _get_running_loop()
    if loop is not None:
        return asyncio.current_task(loop)
    try:
        import trio

        return trio.lowlevel.current_task()
    except (ImportError, RuntimeError):
        return None


# -- the breaker --------------------------------------------------------------------------


class CircuitBreaker(PolicyFaces):
    """Fail fast while a dependency is failing; let a few probes through to see it recover.

    **Tripping.** The breaker opens on ``failure_threshold`` consecutive failures, and/or
    when the failure rate over the window reaches ``failure_rate`` (or the slow-call rate
    reaches ``slow_call_rate``) once the window holds ``min_calls`` calls. With neither
    ``failure_threshold`` nor ``failure_rate`` given, ``failure_rate=0.5`` (Resilience4j,
    Hystrix). The window is the last ``window`` seconds in 10 buckets (``window_type="time"``,
    default 60 s) or the last ``window`` calls (``window_type="count"``, default 100).

    **Open.** Calls are rejected at once with `CircuitOpenError` (``retry_after``: seconds
    until a probe is admitted), without calling the function. After the recovery time the
    next call turns the breaker HALF_OPEN (lazily: there are no timers). The recovery time
    is ``recovery_time`` (default 30 s), or the successive delays of ``recovery_backoff``
    (e.g. ``backoff.EqualJitter(5, 300)``, Finagle's) on each re-opening, restarted when
    the circuit closes.

    **Half-open.** At most ``half_open_max_calls`` probes run at a time; other calls are
    rejected (``retry_after`` is the current recovery time: a caller should not hammer a
    recovering dependency). ``success_threshold`` probe successes close the circuit; a
    failed (or slow) probe re-opens it.

    **What counts.** An exception matched by ``on`` and not by ``exclude`` is a failure;
    any other exception counts as a success for the window and propagates unchanged.
    A `RejectedError` from an inner layer (`CircuitOpenError` from another breaker,
    `BulkheadFullError` from a bulkhead inside this breaker) counts as nothing: the call
    never reached the dependency. Cancellation is never
    counted and frees the probe slot. A call is slow when it takes longer than
    ``slow_call_duration`` seconds (measured only when set); a slow probe counts as failed.

    **Faces.** ``await breaker.call(fn, *args, **kwargs)``, ``await breaker.execute(fn)``,
    ``@breaker`` (keeps the signature) and ``async with breaker: ...``.

    **Manual control.** `isolate` (force open), `reset` (close), `disable` (admit
    everything, keep recording, never trip). `state` and `statistics` report.

    Not thread-safe: use a breaker from one event loop at a time (as anyio primitives).
    """

    __slots__ = (
        "_clock",
        "_clock_injected",
        "_consecutive",
        "_delay",
        "_delays",
        "_epoch",
        "_exclude",
        "_gate",
        "_left",
        "_listeners",
        "_match",
        "_min_calls",
        "_opened_at",
        "_pending",
        "_pending_since",
        "_phase",
        "_probe_successes",
        "_probes",
        "_rejected",
        "_state",
        "_tickets",
        "_time_window",
        "_times_opened",
        "_window",
        "exclude",
        "failure_rate",
        "failure_threshold",
        "half_open_max_calls",
        "min_calls",
        "name",
        "on",
        "recovery_backoff",
        "recovery_time",
        "rng",
        "slow_call_duration",
        "slow_call_rate",
        "success_threshold",
        "window",
        "window_type",
    )

    __module__ = "asyncres"

    # The lean path runs when the state is CLOSED or DISABLED and durations are not
    # measured (`_gate`). Its successes count down `_left` (which is `_OFF` when the lean
    # path is closed); at 0 the batch bookkeeping runs. Successes counted but not yet
    # folded into the window: `_pending + _phase - _left`.
    _gate: bool
    _left: int
    _phase: int
    _pending: int

    def __init__(
        self,
        *,
        failure_threshold: int | None = None,
        failure_rate: float | None = None,
        window: float | None = None,
        window_type: Literal["time", "count"] = "time",
        min_calls: int = 20,
        slow_call_duration: float | None = None,
        slow_call_rate: float = 1.0,
        recovery_time: float | None = None,
        recovery_backoff: Backoff | None = None,
        half_open_max_calls: int = 1,
        success_threshold: int = 1,
        on: ErrorFilter = Exception,
        exclude: ErrorFilter = (),
        name: str | None = None,
        listeners: Iterable[Listener] = (),
        clock: Clock | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if failure_threshold is not None:
            failure_threshold = _validation.count("failure_threshold", failure_threshold, minimum=1)
        if failure_rate is not None:
            failure_rate = _validation.ratio("failure_rate", failure_rate)
            if failure_rate == 0.0:
                raise ValueError("`failure_rate` must be > 0, got 0.0")
        elif failure_threshold is None:
            failure_rate = _DEFAULT_FAILURE_RATE
        self.failure_threshold = failure_threshold
        self.failure_rate = failure_rate

        if window_type == "time":
            if window is None:
                window = _DEFAULT_WINDOW_SECONDS
            window = _validation.finite_positive("window", window)
            self._window: _TimeWindow | _CountWindow = _TimeWindow(window)
        elif window_type == "count":
            if window is None:
                window = _DEFAULT_WINDOW_CALLS
            if isinstance(window, bool) or not isinstance(window, int):
                raise ValueError(
                    f"`window` must be a whole number of calls with window_type='count', "
                    f"got {window!r}"
                )
            window = _validation.count("window", window, minimum=1)
            self._window = _CountWindow(window)
        else:
            raise ValueError(f"`window_type` must be 'time' or 'count', got {window_type!r}")
        self.window = window
        self.window_type = window_type
        self._time_window = window_type == "time"

        self.min_calls = _validation.count("min_calls", min_calls, minimum=1)
        # A count window never holds more than `window` calls.
        self._min_calls = min(self.min_calls, int(window)) if window_type == "count" else min_calls

        if slow_call_duration is not None:
            slow_call_duration = _validation.positive("slow_call_duration", slow_call_duration)
        self.slow_call_duration = slow_call_duration
        self.slow_call_rate = _validation.ratio("slow_call_rate", slow_call_rate)
        if self.slow_call_rate == 0.0:
            raise ValueError("`slow_call_rate` must be > 0, got 0.0")

        if recovery_backoff is not None:
            if recovery_time is not None:
                raise ValueError(
                    "pass `recovery_time` or `recovery_backoff`, not both: the backoff's "
                    "delays are the recovery times"
                )
            if not callable(getattr(recovery_backoff, "delays", None)):
                raise ValueError(
                    f"`recovery_backoff` must have a delays() method, got {recovery_backoff!r}"
                )
        elif recovery_time is None:
            recovery_time = _DEFAULT_RECOVERY_TIME
        else:
            recovery_time = _validation.non_negative("recovery_time", recovery_time)
            if math.isinf(recovery_time):
                raise ValueError("`recovery_time` must be finite, got inf")
        self.recovery_time = recovery_time
        self.recovery_backoff = recovery_backoff
        self.rng = rng

        self.half_open_max_calls = _validation.count(
            "half_open_max_calls", half_open_max_calls, minimum=1
        )
        self.success_threshold = _validation.count(
            "success_threshold", success_threshold, minimum=1
        )
        if on == ():
            raise ValueError("`on` must name at least one exception type")
        self._match = matcher(on, "on")
        self._exclude = matcher(exclude, "exclude")
        self.on = on
        self.exclude = exclude
        self.name = name
        self._listeners = tuple(listeners)
        for listener in self._listeners:
            if not callable(listener):
                raise ValueError(f"`listeners` must be callables, got {listener!r}")
        if clock is not None and not callable(clock):
            raise ValueError(f"`clock` must be callable, got {clock!r}")
        self._clock = clock
        self._clock_injected = clock is not None

        self._state = _CLOSED
        self._gate = slow_call_duration is None
        self._pending = 0
        self._phase = self._first_phase()
        self._left = self._phase if self._gate else _OFF
        self._pending_since = 0.0
        self._consecutive = 0
        self._epoch = 0
        self._probes = 0
        self._probe_successes = 0
        self._opened_at: float | None = None
        self._delay = recovery_time if recovery_time is not None else 0.0
        self._delays: Iterator[float] | None = None
        self._rejected = 0
        self._times_opened = 0
        # Who is inside `async with breaker` on the guarded path: task -> [(probe, start)].
        self._tickets: dict[object, list[tuple[int, float | None]]] = {}

    def __repr__(self) -> str:
        parts = []
        if self.name:
            parts.append(f"name={self.name!r}")
        parts.append(f"state={self._state.value}")
        if self.failure_threshold is not None:
            parts.append(f"failure_threshold={self.failure_threshold}")
        if self.failure_rate is not None:
            parts.append(f"failure_rate={self.failure_rate!r}")
        unit = "s" if self._time_window else " calls"
        parts.append(f"window={self.window!r}{unit}")
        parts.append(f"min_calls={self.min_calls}")
        if self.slow_call_duration is not None:
            parts.append(f"slow_call_duration={self.slow_call_duration!r}")
        if self.recovery_backoff is not None:
            parts.append(f"recovery_backoff={self.recovery_backoff!r}")
        else:
            parts.append(f"recovery_time={self.recovery_time!r}")
        return f"CircuitBreaker({', '.join(parts)})"

    @property
    def state(self) -> CircuitState:
        """The current state. OPEN becomes HALF_OPEN lazily, when a call arrives."""
        return self._state

    # -- faces ----------------------------------------------------------------------------
    # The closed success path is flat: one flag test, one await in a try, one counter.

    async def call(self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``await fn(*args, **kwargs)`` through the breaker.

        Raises `CircuitOpenError` without calling ``fn`` when the circuit is open (or
        half-open with every probe slot taken); otherwise ``fn``'s outcome, unchanged.
        """
        if not self._gate:
            return await self._call_guarded(fn, args, kwargs)
        try:
            result = await fn(*args, **kwargs)
        except Exception as exc:
            self._complete(_NO_PROBE, exc, None)
            raise
        left = self._left - 1
        if left > 0:
            self._left = left
        else:
            self._counted(left)
        return result

    def __call__(self, fn: Callable[P, Awaitable[T]], /) -> Callable[P, Coroutine[Any, Any, T]]:
        """Decorate an async function: every call goes through the breaker."""
        breaker = self

        @functools.wraps(fn)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            if not breaker._gate:
                return await breaker._call_guarded(fn, args, kwargs)
            try:
                result = await fn(*args, **kwargs)
            except Exception as exc:
                breaker._complete(_NO_PROBE, exc, None)
                raise
            left = breaker._left - 1
            if left > 0:
                breaker._left = left
            else:
                breaker._counted(left)
            return result

        return wrapper

    async def __aenter__(self) -> None:
        if not self._gate:
            self._enter_guarded()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            left = self._left - 1
            if left > 0:
                self._left = left
            elif left < 0 and not self._gate:
                self._exit_guarded(None)
            else:
                self._counted(left)
        elif not self._gate:
            self._exit_guarded(exc)
        elif isinstance(exc, Exception):
            self._complete(_NO_PROBE, exc, None)
        # Cancellation and other BaseExceptions: not counted, never suppressed.

    async def _call_guarded(
        self, fn: Callable[..., Awaitable[T]], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> T:
        """``call`` when the circuit is not closed, or when call durations are measured."""
        probe = self._admit()
        start = self._now() if self.slow_call_duration is not None else None
        try:
            result = await fn(*args, **kwargs)
        except Exception as exc:
            self._complete(probe, exc, start)
            raise
        except BaseException:
            self._abandon(probe)
            raise
        self._complete(probe, None, start)
        return result

    def _enter_guarded(self) -> None:
        probe = self._admit()
        start = self._now() if self.slow_call_duration is not None else None
        if probe != _NO_PROBE or start is not None:
            self._tickets.setdefault(_current_task(), []).append((probe, start))

    def _exit_guarded(self, exc: BaseException | None) -> None:
        probe: int = _NO_PROBE
        start: float | None = None
        if self._tickets:
            task = _current_task()
            stack = self._tickets.get(task)
            if stack:
                probe, start = stack.pop()
                if not stack:
                    del self._tickets[task]
        if exc is not None and not isinstance(exc, Exception):
            self._abandon(probe)
        else:
            self._complete(probe, exc, start)

    # -- admission and outcomes -----------------------------------------------------------

    def _admit(self) -> int:
        """Admit a call or raise `CircuitOpenError`. Returns the probe ticket (or -1)."""
        state = self._state
        if state is _CLOSED or state is _DISABLED:
            return _NO_PROBE
        if state is _HALF_OPEN:
            if self._probes < self.half_open_max_calls:
                self._probes += 1
                return self._epoch
            raise self._rejection("half_open_full", self._delay)
        if state is _OPEN:
            now = self._now()
            opened_at = self._opened_at
            if opened_at is None or opened_at > now:  # forced open, or a new event loop
                opened_at = self._opened_at = now
            wait = opened_at + self._delay - now
            if wait <= 0.0:
                self._to_half_open()
                self._probes = 1
                return self._epoch
            raise self._rejection("circuit_open", wait)
        raise self._rejection("circuit_open", self._delay)  # ISOLATED

    def _rejection(self, reason: str, retry_after: float) -> CircuitOpenError:
        self._rejected += 1
        emit(self._listeners, CallRejected(self.name, reason))
        return CircuitOpenError(self.name, retry_after=retry_after)

    def _abandon(self, probe: int) -> None:
        """A call ended without an outcome (cancelled): free its probe slot, count nothing."""
        if probe == self._epoch and self._state is _HALF_OPEN:
            self._probes -= 1

    def _is_failure(self, exc: Exception) -> bool:
        return self._match(exc) and not self._exclude(exc)

    def _complete(self, probe: int, exc: Exception | None, start: float | None) -> None:
        """Record the outcome of a call that returned (``exc is None``) or raised ``exc``."""
        if isinstance(exc, RejectedError):
            # An inner breaker, bulkhead or pool refused the call: it never reached the
            # dependency, so it says nothing about the dependency's health.
            self._abandon(probe)
            return
        failed = exc is not None and self._is_failure(exc)
        now: float | None = None
        slow = False
        if start is not None:
            now = self._now()
            slow = now - start > self.slow_call_duration  # type: ignore[operator]
        if probe == self._epoch and self._state is _HALF_OPEN:
            self._probes -= 1
            if failed or slow:
                self._to_open(
                    self._now() if now is None else now,
                    "probe failed" if failed else "probe was slow",
                )
            else:
                self._probe_successes += 1
                if self._probe_successes >= self.success_threshold:
                    self._to_closed()
            return
        state = self._state
        if state is not _CLOSED and state is not _DISABLED:
            return  # admitted before the circuit opened: its outcome is stale
        if now is None:
            if not failed and self._gate:
                left = self._left - 1
                if left > 0:
                    self._left = left
                else:
                    self._counted(left)
                return
            now = self._now()
        self._fold(now)
        self._window.add(now, failed, slow)
        if failed:
            self._consecutive += 1
        else:
            self._consecutive = 0
        if state is _CLOSED:
            self._check_trip(now, failed, slow)

    def _first_phase(self) -> int:
        # A time window dates a batch from its first success: that one ends a phase alone.
        return 1 if self._time_window else _BATCH

    def _counted(self, left: int) -> None:
        """A lean-path success took ``_left`` to ``left`` <= 0."""
        if left < 0:
            return  # admitted while closed, finished after the circuit opened: stale
        self._left = 0
        if self._phase == 1 and self._time_window:
            self._pending += 1
            self._pending_since = self._now()
            self._phase = self._left = _BATCH - 1
        else:
            self._fold(self._now() if self._time_window else 0.0)

    def _fold(self, now: float) -> None:
        """Date the counted successes (spread since the batch began) into the window."""
        left = self._left
        if left < 0:
            self._window.advance(now)
            return
        count = self._pending + self._phase - left
        if count:
            self._pending = 0
            self._phase = self._left = self._first_phase()
            self._consecutive = 0
            self._window.add_successes(count, self._pending_since, now)
        else:
            self._window.advance(now)

    def _check_trip(self, now: float, failed: bool, slow: bool) -> None:
        threshold = self.failure_threshold
        if failed and threshold is not None and self._consecutive >= threshold:
            self._to_open(now, f"{self._consecutive} consecutive failures")
            return
        window = self._window
        calls = window.calls
        if calls < self._min_calls:
            return
        rate = self.failure_rate
        if failed and rate is not None:
            observed = window.failures / calls
            if observed >= rate:
                self._to_open(now, f"failure rate {observed:.2f} >= {rate:g} over {calls} calls")
                return
        if slow:
            observed = window.slows / calls
            if observed >= self.slow_call_rate:
                self._to_open(
                    now,
                    f"slow-call rate {observed:.2f} >= {self.slow_call_rate:g} over {calls} calls",
                )

    # -- transitions ----------------------------------------------------------------------

    def _next_delay(self) -> float:
        backoff = self.recovery_backoff
        if backoff is None:
            return self.recovery_time  # type: ignore[return-value]
        if self._delays is None:
            self._delays = backoff.delays(self.rng)
        return float(next(self._delays))

    def _enter(self, state: CircuitState) -> None:
        self._state = state
        self._epoch += 1
        self._probes = 0
        self._probe_successes = 0
        gated = state is _CLOSED or state is _DISABLED
        self._gate = gated and self.slow_call_duration is None
        if not self._gate:
            self._left = _OFF  # counted successes not yet folded are dropped
            self._pending = 0
        elif self._left < 0:
            self._pending = 0
            self._phase = self._left = self._first_phase()
            # Blocks entered on the guarded path now leave on the lean one.
            self._tickets.clear()

    def _clear_window(self) -> None:
        self._window.reset()
        self._pending = 0
        if self._gate:
            self._phase = self._left = self._first_phase()
        self._consecutive = 0

    def _to_open(
        self,
        now: float | None,
        reason: str,
        state: CircuitState = _OPEN,
        delay: float | None = None,
    ) -> None:
        self._enter(state)
        self._opened_at = now
        self._delay = self._next_delay() if delay is None else delay
        self._times_opened += 1
        emit(self._listeners, CircuitOpened(self.name, self._delay, reason))

    def _to_half_open(self) -> None:
        self._enter(_HALF_OPEN)
        emit(self._listeners, CircuitHalfOpened(self.name))

    def _to_closed(self) -> None:
        was = self._state
        self._enter(_CLOSED)
        self._clear_window()
        self._opened_at = None
        self._delays = None
        if was is not _CLOSED:
            emit(self._listeners, CircuitClosed(self.name))

    # -- manual control -------------------------------------------------------------------

    def isolate(self) -> None:
        """Force the circuit open until `reset`: every call is rejected (no probes).

        Emits `CircuitOpened` (reason ``"isolated"``). Rejections carry the recovery time
        as ``retry_after``.
        """
        if self._state is not _ISOLATED:
            self._to_open(self._now_or_none(), "isolated", _ISOLATED)

    def reset(self) -> None:
        """Close the circuit and clear its window (emits `CircuitClosed` unless closed)."""
        self._to_closed()

    def disable(self) -> None:
        """Admit every call and never trip; outcomes are still recorded (metrics only).

        `reset` (or `isolate`) leaves this state.
        """
        was = self._state
        if was is _DISABLED:
            return
        self._enter(_DISABLED)
        if was is not _CLOSED:
            self._clear_window()
        self._opened_at = None

    def statistics(self) -> CircuitBreakerStatistics:
        """A snapshot: state, the window's counts and rates, rejections, openings."""
        now = self._now_or_none()
        if now is not None:
            self._fold(now)
        window = self._window
        calls, failures, slows = window.calls, window.failures, window.slows
        state = self._state
        retry_after: float | None = None
        if state is _OPEN:
            opened_at = self._opened_at
            if now is None or opened_at is None:
                retry_after = self._delay
            else:
                retry_after = max(0.0, opened_at + self._delay - now)
        elif state is _HALF_OPEN or state is _ISOLATED:
            retry_after = self._delay
        return CircuitBreakerStatistics(
            state=state,
            calls=calls,
            failures=failures,
            slow_calls=slows,
            failure_rate=failures / calls if calls else 0.0,
            slow_call_rate=slows / calls if calls else 0.0,
            consecutive_failures=self._consecutive,
            opened_at=self._opened_at,
            retry_after=retry_after,
            probes_in_flight=self._probes,
            rejected=self._rejected,
            times_opened=self._times_opened,
        )

    # -- testing hooks (asyncres.testing) -------------------------------------------------

    def _force(self, state: CircuitState, retry_after: float | None = None) -> None:
        if state is _CLOSED:
            self._to_closed()
        elif state is _OPEN:
            self._to_open(self._now_or_none(), "forced", _OPEN, retry_after)
        elif state is _HALF_OPEN:
            if self._state is not _HALF_OPEN:
                if self._state is not _OPEN:  # as if it had opened and recovered just now
                    self._opened_at = self._now_or_none()
                    self._delay = self._next_delay()
                self._to_half_open()
        else:  # pragma: no cover - the helpers only force the three automatic states
            raise ValueError(f"cannot force {state!r}")

    # -- clock ----------------------------------------------------------------------------

    def _now(self) -> float:
        """The loop's time, through a clock resolved once (or the injected one)."""
        clock = self._clock
        if clock is not None:
            if self._clock_injected:
                return clock()
            try:
                return clock()
            except RuntimeError:  # resolved in another kind of loop
                pass
        clock = self._clock = resolve_clock()
        return clock()

    def _now_or_none(self) -> float | None:
        """The loop's time, or ``None`` outside an event loop (manual control, statistics)."""
        if self._clock_injected or _get_running_loop() is not None:
            return self._now()
        try:
            return self._now()
        except (RuntimeError, ImportError):
            return None
