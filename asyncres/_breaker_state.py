"""The circuit breaker's state machine (Polly's ``CircuitStateController``).

States (`CircuitState`)::

    CLOSED ──trip──▶ OPEN ──recovery time passed, next call──▶ HALF_OPEN
      ▲                ▲                                          │
      │                └──────────── a probe failed ──────────────┤
      └──────────────── success_threshold probes succeeded ───────┘

    ISOLATED (manual, rejects everything)   DISABLED (manual, admits everything, records)

`CircuitStateController` owns everything but the closed fast path: admission and
rejection, the outcome of each call that leaves the fast path, the trip rules over the
`HealthMetrics` window, the recovery time (fixed or a backoff), half-open probes, manual
control, events, statistics and the clock.

**The lean gate.** The closed fast path lives on `CircuitBreaker` itself and reads two of
its fields, ``_gate`` and ``_left`` (one attribute load each, no hop through this object).
The controller is their only writer besides the fast path: ``_gate`` is true while the
state is CLOSED or DISABLED and call durations are not measured; ``_left`` counts down the
successes left in the current batch (`OFF` while the gate is shut, so a success that sees
a negative count knows it is stale). At 0 the fast path calls `counted`.

**Batched dating.** Counted successes are dated in batches of at most 64 (`BATCH`): the
first success of a batch and the moment the batch is folded into the window (64th success,
any failure, `statistics`) read the clock, and the batch is spread evenly over that
interval. Under load a batch spans microseconds, so the time window is exact in practice;
at a trickle it is a uniform estimate within the span of 64 calls. Count windows are exact.
Failures are dated exactly. Successes counted but not yet folded:
``_pending + _phase - gate._left``.

Bookkeeping is synchronous (no ``await`` between reading and writing state), so the breaker
is correct under concurrency without a lock.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from ._backend import current_task, running_loop
from ._breaker_config import BreakerConfig
from ._clock import resolve_clock
from ._events import (
    CallRejected,
    CircuitClosed,
    CircuitDisabled,
    CircuitHalfOpened,
    CircuitOpened,
    emit,
)
from ._exceptions import CircuitOpenError, RejectedError
from ._health_metrics import HealthMetrics

__all__ = ["CircuitBreakerStatistics", "CircuitState", "CircuitStateController", "LeanGate"]

#: Successes counted before they are dated and folded into the window.
BATCH = 64
#: The probe ticket of a call that is not a probe.
NO_PROBE = -1
#: ``_left`` while the lean gate is shut: any success that sees it is stale.
OFF = -(1 << 62)


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


class LeanGate(Protocol):
    """The two fields the closed fast path reads, kept on the public object for speed."""

    _gate: bool
    _left: int


class CircuitStateController:
    """Admission, outcomes, transitions, manual control and events of one breaker."""

    __slots__ = (
        "_clock",
        "_clock_injected",
        "_config",
        "_consecutive",
        "_delay",
        "_delays",
        "_epoch",
        "_lean",
        "_measured",
        "_metrics",
        "_opened_at",
        "_pending",
        "_pending_since",
        "_phase",
        "_probe_admitted_at",
        "_probe_successes",
        "_probes",
        "_rejected",
        "_tickets",
        "_time_window",
        "_times_opened",
        "state",
    )

    def __init__(self, config: BreakerConfig, metrics: HealthMetrics, lean: LeanGate) -> None:
        self._config = config
        self._metrics = metrics
        self._lean = lean
        self._time_window = config.window_type == "time"
        self._measured = config.slow_call_duration is not None
        self._clock = config.clock
        self._clock_injected = config.clock is not None

        self.state = _CLOSED
        self._pending = 0
        self._pending_since = 0.0
        self._phase = self._first_phase()
        lean._gate = not self._measured
        lean._left = self._phase if lean._gate else OFF
        self._consecutive = 0
        self._epoch = 0
        self._probes = 0
        self._probe_admitted_at = 0.0
        self._probe_successes = 0
        self._opened_at: float | None = None
        self._delay = config.recovery_time if config.recovery_time is not None else 0.0
        self._delays: Iterator[float] | None = None
        self._rejected = 0
        self._times_opened = 0
        # Who is inside `async with breaker` off the lean path: task -> [(probe, start)].
        self._tickets: dict[object, list[tuple[int, float | None]]] = {}

    # -- admission ------------------------------------------------------------------------

    def admit(self) -> int:
        """Admit a call or raise `CircuitOpenError`. Returns the probe ticket (or `NO_PROBE`)."""
        state = self.state
        if state is _CLOSED or state is _DISABLED:
            return NO_PROBE
        if state is _HALF_OPEN:
            if self._probes < self._config.half_open_max_calls:
                self._probes += 1
                self._probe_admitted_at = self.now()
                return self._epoch
            # A probe still pending after a recovery delay (a slow dependency, a hung
            # connection) lets one more through: the door is never held shut by one slow
            # call, and a dead dependency still sees at most one new probe per delay.
            now = self.now()
            wait = self._probe_admitted_at + self._delay - now
            if wait <= 0.0 and self._delay > 0.0:
                self._probes += 1
                self._probe_admitted_at = now
                return self._epoch
            raise self._rejection("half_open_full", max(wait, 0.0))
        if state is _OPEN:
            now = self.now()
            opened_at = self._opened_at
            if opened_at is None or opened_at > now:  # forced open, or a new event loop
                opened_at = self._opened_at = now
            wait = opened_at + self._delay - now
            if wait <= 0.0:
                self._to_half_open()
                self._probes = 1
                self._probe_admitted_at = now
                return self._epoch
            raise self._rejection("circuit_open", wait)
        raise self._rejection("circuit_open", self._delay)  # ISOLATED

    def _rejection(self, reason: str, retry_after: float) -> CircuitOpenError:
        # One reason string for the event and the error (the glossary's "rejection reason").
        self._rejected += 1
        name = self._config.name
        emit(self._config.listeners, CallRejected(name, reason))
        return CircuitOpenError(name, retry_after=retry_after, reason=reason)

    def start(self) -> float | None:
        """The start time of an admitted call when durations are measured, else ``None``."""
        return self.now() if self._measured else None

    def enter_block(self) -> None:
        """``async with breaker`` off the lean path: admit, and remember the task's ticket."""
        probe = self.admit()
        start = self.start()
        if probe != NO_PROBE or start is not None:
            self._tickets.setdefault(current_task(), []).append((probe, start))

    def exit_block(self, exc: BaseException | None) -> None:
        """The end of a block entered off the lean path (``exc``: what left the block)."""
        probe: int = NO_PROBE
        start: float | None = None
        if self._tickets:
            task = current_task()
            stack = self._tickets.get(task)
            if stack:
                probe, start = stack.pop()
                if not stack:
                    del self._tickets[task]
        if exc is not None and not isinstance(exc, Exception):
            self.abandon(probe)
        else:
            self.complete(probe, exc, start)

    # -- outcomes -------------------------------------------------------------------------

    def abandon(self, probe: int) -> None:
        """A call ended without an outcome (cancelled): free its probe slot, count nothing."""
        if probe == self._epoch and self.state is _HALF_OPEN:
            self._probes -= 1

    def complete(self, probe: int, exc: Exception | None, start: float | None) -> None:
        """Record the outcome of a call that returned (``exc is None``) or raised ``exc``."""
        if isinstance(exc, RejectedError):
            # An inner breaker, bulkhead or pool refused the call: it never reached the
            # dependency, so it says nothing about the dependency's health.
            self.abandon(probe)
            return
        config = self._config
        failed = exc is not None and config.is_failure(exc)
        now: float | None = None
        slow = False
        if start is not None:
            now = self.now()
            slow = now - start > config.slow_call_duration  # type: ignore[operator]
        if probe == self._epoch and self.state is _HALF_OPEN:
            self._probes -= 1
            if failed or slow:
                self._to_open(
                    self.now() if now is None else now,
                    "probe failed" if failed else "probe was slow",
                )
            else:
                self._probe_successes += 1
                if self._probe_successes >= config.success_threshold:
                    self._to_closed()
            return
        state = self.state
        if state is not _CLOSED and state is not _DISABLED:
            return  # admitted before the circuit opened: its outcome is stale
        if now is None:
            lean = self._lean
            if not failed and lean._gate:
                # A success (an error that is not a failure) on the lean path: count it.
                left = lean._left - 1
                if left > 0:
                    lean._left = left
                else:
                    self.counted(left)
                return
            now = self.now()
        self._fold(now)
        self._metrics.record(now, failed, slow)
        if failed:
            self._consecutive += 1
        else:
            self._consecutive = 0
        if state is _CLOSED and (failed or slow):
            self._check_trip(now, failed, slow)

    def _first_phase(self) -> int:
        # A time window dates a batch from its first success: that one ends a phase alone.
        return 1 if self._time_window else BATCH

    def counted(self, left: int) -> None:
        """A lean-path success took ``_left`` to ``left`` <= 0."""
        if left < 0:
            return  # admitted while closed, finished after the circuit opened: stale
        lean = self._lean
        lean._left = 0
        if self._phase == 1 and self._time_window:
            self._pending += 1
            self._pending_since = self.now()
            self._phase = lean._left = BATCH - 1
        else:
            self._fold(self.now() if self._time_window else 0.0)

    def _fold(self, now: float) -> None:
        """Date the counted successes (spread since the batch began) into the window."""
        lean = self._lean
        left = lean._left
        if left < 0:
            return
        count = self._pending + self._phase - left
        if count:
            self._pending = 0
            self._phase = lean._left = self._first_phase()
            self._consecutive = 0
            self._metrics.record_successes(count, self._pending_since, now)

    def _check_trip(self, now: float, failed: bool, slow: bool) -> None:
        config = self._config
        threshold = config.failure_threshold
        if failed and threshold is not None and self._consecutive >= threshold:
            self._to_open(now, f"{self._consecutive} consecutive failures")
            return
        calls, failures, slows = self._metrics.snapshot(now)
        if calls < config.trip_min_calls:
            return
        rate = config.failure_rate
        if failed and rate is not None:
            observed = failures / calls
            if observed >= rate:
                self._to_open(now, f"failure rate {observed:.2f} >= {rate:g} over {calls} calls")
                return
        if slow:
            observed = slows / calls
            if observed >= config.slow_call_rate:
                self._to_open(
                    now,
                    f"slow-call rate {observed:.2f} >= {config.slow_call_rate:g} "
                    f"over {calls} calls",
                )

    # -- transitions ----------------------------------------------------------------------

    def _next_delay(self) -> float:
        config = self._config
        backoff = config.recovery_backoff
        if backoff is None:
            return config.recovery_time  # type: ignore[return-value]
        if self._delays is None:
            self._delays = backoff.delays(config.rng)
        return float(next(self._delays))

    def _enter(self, state: CircuitState) -> None:
        self.state = state
        self._epoch += 1
        self._probes = 0
        self._probe_successes = 0
        lean = self._lean
        lean._gate = gated = (state is _CLOSED or state is _DISABLED) and not self._measured
        if not gated:
            lean._left = OFF  # counted successes not yet folded are dropped
            self._pending = 0
        elif lean._left < 0:
            self._pending = 0
            self._phase = lean._left = self._first_phase()
            # Blocks entered off the lean path now leave on it.
            self._tickets.clear()

    def _clear_window(self) -> None:
        self._metrics.reset()
        self._pending = 0
        lean = self._lean
        if lean._gate:
            self._phase = lean._left = self._first_phase()
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
        emit(self._config.listeners, CircuitOpened(self._config.name, self._delay, reason))

    def _to_half_open(self) -> None:
        self._enter(_HALF_OPEN)
        emit(self._config.listeners, CircuitHalfOpened(self._config.name))

    def _to_closed(self) -> None:
        was = self.state
        self._enter(_CLOSED)
        self._clear_window()
        self._opened_at = None
        self._delays = None
        if was is not _CLOSED:
            emit(self._config.listeners, CircuitClosed(self._config.name))

    # -- manual control -------------------------------------------------------------------

    def isolate(self) -> None:
        if self.state is not _ISOLATED:
            self._to_open(self.now_or_none(), "isolated", _ISOLATED)

    def reset(self) -> None:
        self._to_closed()

    def disable(self) -> None:
        was = self.state
        if was is _DISABLED:
            return
        self._enter(_DISABLED)
        if was is not _CLOSED:
            self._clear_window()
        self._opened_at = None
        emit(self._config.listeners, CircuitDisabled(self._config.name))

    def force(self, state: CircuitState, retry_after: float | None = None) -> None:
        """Testing hook (`asyncres.testing`): enter an automatic state as if by the rules."""
        if state is _CLOSED:
            self._to_closed()
        elif state is _OPEN:
            self._to_open(self.now_or_none(), "forced", _OPEN, retry_after)
        elif state is _HALF_OPEN:
            if self.state is not _HALF_OPEN:
                if self.state is not _OPEN:  # as if it had opened and recovered just now
                    self._opened_at = self.now_or_none()
                    self._delay = self._next_delay()
                self._to_half_open()
        else:  # pragma: no cover - the helpers only force the three automatic states
            raise ValueError(f"cannot force {state!r}")

    def statistics(self) -> CircuitBreakerStatistics:
        now = self.now_or_none()
        if now is not None:
            self._fold(now)
        calls, failures, slows = self._metrics.snapshot(now)
        state = self.state
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

    # -- clock ----------------------------------------------------------------------------

    def now(self) -> float:
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

    def now_or_none(self) -> float | None:
        """The loop's time, or ``None`` outside an event loop (manual control, statistics)."""
        if self._clock_injected or running_loop() is not None:
            return self.now()
        try:
            return self.now()
        except (RuntimeError, ImportError):
            return None
