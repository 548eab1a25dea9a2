"""CircuitBreaker: stop calling a dependency that keeps failing, and probe it to recover.

The public class is thin: its options (read-only `Setting` attributes) and its faces, with the
closed fast path inlined. The rest lives in three modules, each replaceable on its own:

- `_breaker_config`: the options, checked once (``ValueError`` naming the parameter);
- `_breaker_state`: `CircuitStateController`, the state machine (admission, trip rules,
  recovery, probes, manual control, events, statistics, the clock);
- `_health_metrics`: the sliding windows behind the `HealthMetrics` record/snapshot
  interface (the seam a shared Redis store will implement).

Cost. The closed success path reads no clock and allocates nothing: one flag test, one
``await`` in a ``try``, one counter decrement. Every 64th success (and every failure) leaves
it for the controller, which dates the batch into the window (see `_breaker_state`).
"""

from __future__ import annotations

import functools
import random
import types
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from types import TracebackType
from typing import Any, Literal, ParamSpec, TypeVar, cast

from ._backoff import Backoff
from ._breaker_config import breaker_config
from ._breaker_state import NO_PROBE, CircuitBreakerStatistics, CircuitState, CircuitStateController
from ._clock import Clock
from ._events import CircuitClosed, CircuitOpened, Event, Listener
from ._health_metrics import CountWindow, HealthMetrics, HealthSnapshot, TimeWindow
from ._matching import ErrorFilter
from ._policy import PolicyFaces
from ._registry import track
from ._setting import Setting
from ._store import SharedBreaker, Store, TripRule, checked_store

__all__ = ["CircuitBreaker", "CircuitBreakerStatistics", "CircuitState"]

T = TypeVar("T")
P = ParamSpec("P")


class CircuitBreaker(PolicyFaces):
    """Fail fast while a dependency is failing; let a few probes through to see it recover.

    **Tripping.** The breaker opens on ``failure_threshold`` consecutive failures, and/or
    when the failure rate over the window reaches ``failure_rate`` (or the slow-call rate
    reaches ``slow_call_rate``) once the window holds ``min_calls`` calls. With neither
    ``failure_threshold`` nor ``failure_rate`` given, ``failure_rate=0.5`` (Resilience4j,
    Hystrix) and ``failure_threshold=20``: a rate over a long window opens late in a hard
    outage (the window's healthy history must be outweighed first), 20 failures in a row
    do not (at a 50 % random failure rate they come once in about two million calls). The
    window is the last ``window`` seconds in 10 buckets (``window_type="time"``,
    default 60 s) or the last ``window`` calls (``window_type="count"``, default 100).

    **Open.** Calls are rejected at once with `CircuitOpenError` (``retry_after``: seconds
    until a probe is admitted), without calling the function. After the recovery time the
    next call turns the breaker HALF_OPEN (lazily: there are no timers). The recovery time
    is ``recovery_time``, or the successive delays of ``recovery_backoff`` on each
    re-opening, restarted when the circuit closes. The default follows the dependency:
    ``backoff.Exponential(0.25, 1.0)`` — probes after 0.25 s, 0.5 s, then every second,
    so the circuit closes within about a second of the dependency's return while a dead
    one sees one call a second. Where a probe is costly, wait longer (a fixed
    ``recovery_time=30``, or Finagle's ``recovery_backoff=backoff.EqualJitter(5, 300)``).

    **Half-open.** At most ``half_open_max_calls`` probes run at a time; other calls are
    rejected (``retry_after`` says when the next probe may start: a caller should not
    hammer a recovering dependency). A probe still pending after one recovery delay lets
    one more probe through, so a slow probe never holds the door shut for longer than
    the delay. ``success_threshold`` probe successes close the circuit; a
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

    **Manual control.** `isolate` (force open, emits `CircuitOpened`), `reset` (close,
    emits `CircuitClosed`), `disable` (admit everything, keep recording, never trip; emits
    `CircuitDisabled`). `state` and `statistics` report.

    **Fleet.** With ``store=`` (e.g. `asyncres.redis.RedisStore`) and a ``name=``, one
    circuit for every process that shares the name: each counts locally and the store
    syncs the counts and the state in the background, so the fleet's failures trip it (the
    failures in a row and the window's rate, over the fleet), and a process's open or close
    reaches the others within the store's flush interval. A lost store leaves each process
    with its local breaker. Needs ``window_type="time"``.

    **Configuration** is read-only after construction: assigning ``breaker.failure_rate``
    (or any option) raises ``AttributeError``; build a new breaker instead.

    Not thread-safe: use a breaker from one event loop at a time (as anyio primitives).
    """

    __slots__ = (
        "__weakref__",
        "_controller",
        "_exclude",
        "_failure_rate",
        "_failure_threshold",
        "_gate",
        "_half_open_max_calls",
        "_left",
        "_min_calls",
        "_name",
        "_on",
        "_recovery_backoff",
        "_recovery_time",
        "_replica",
        "_rng",
        "_slow_call_duration",
        "_slow_call_rate",
        "_success_threshold",
        "_window",
        "_window_type",
    )

    __module__ = "asyncres"

    failure_threshold: Setting[int | None] = Setting()
    failure_rate: Setting[float | None] = Setting()
    window: Setting[float] = Setting()
    window_type: Setting[Literal["time", "count"]] = Setting()
    min_calls: Setting[int] = Setting()
    slow_call_duration: Setting[float | None] = Setting()
    slow_call_rate: Setting[float] = Setting()
    recovery_time: Setting[float | None] = Setting()
    recovery_backoff: Setting[Backoff | None] = Setting()
    half_open_max_calls: Setting[int] = Setting()
    success_threshold: Setting[int] = Setting()
    on: Setting[ErrorFilter] = Setting()
    exclude: Setting[ErrorFilter] = Setting()
    name: Setting[str | None] = Setting()
    rng: Setting[random.Random | None] = Setting()

    # The lean gate (written by the controller, read here in one attribute load each):
    # `_gate` is true while the state is CLOSED or DISABLED and durations are not measured;
    # `_left` counts down the successes left in the current batch (negative: stale).
    _gate: bool
    _left: int

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
        store: Store | None = None,
    ) -> None:
        fleet: _FleetReporter | None = None
        if store is not None:
            checked_store(store, name, "breaker")
            if window_type != "time":
                raise ValueError(
                    "`window_type` must be 'time' with `store`: a fleet shares a time window"
                )
            fleet = _FleetReporter()
            listeners = (*listeners, fleet)
        config = breaker_config(
            failure_threshold=failure_threshold,
            failure_rate=failure_rate,
            window=window,
            window_type=window_type,
            min_calls=min_calls,
            slow_call_duration=slow_call_duration,
            slow_call_rate=slow_call_rate,
            recovery_time=recovery_time,
            recovery_backoff=recovery_backoff,
            half_open_max_calls=half_open_max_calls,
            success_threshold=success_threshold,
            on=on,
            exclude=exclude,
            name=name,
            listeners=listeners,
            clock=clock,
            rng=rng,
        )
        self._failure_threshold = config.failure_threshold
        self._failure_rate = config.failure_rate
        self._window = config.window
        self._window_type = config.window_type
        self._min_calls = config.min_calls
        self._slow_call_duration = config.slow_call_duration
        self._slow_call_rate = config.slow_call_rate
        self._recovery_time = config.recovery_time
        self._recovery_backoff = config.recovery_backoff
        self._half_open_max_calls = config.half_open_max_calls
        self._success_threshold = config.success_threshold
        self._on = config.on
        self._exclude = config.exclude
        self._name = config.name
        self._rng = config.rng
        metrics: HealthMetrics
        if config.window_type == "time":
            metrics = TimeWindow(config.window)
        else:
            metrics = CountWindow(int(config.window))
        self._replica: SharedBreaker | None = None
        if store is not None and fleet is not None:
            replica = SharedBreaker(
                config.name or "",
                config.window,
                TripRule(
                    config.failure_threshold or 0,
                    config.failure_rate or 0.0,
                    config.trip_min_calls,
                    _first_delay(config.recovery_time, config.recovery_backoff, config.rng),
                ),
                self._apply_fleet,
            )
            fleet.replica = self._replica = replica
            metrics = _FleetMetrics(metrics, replica)
            store.attach(replica)
        self._controller = CircuitStateController(config, metrics, self)
        track("circuit_breaker", self, config.name)

    def __repr__(self) -> str:
        parts = []
        if self._name:
            parts.append(f"name={self._name!r}")
        parts.append(f"state={self._controller.state.value}")
        if self._failure_threshold is not None:
            parts.append(f"failure_threshold={self._failure_threshold}")
        if self._failure_rate is not None:
            parts.append(f"failure_rate={self._failure_rate!r}")
        unit = "s" if self._window_type == "time" else " calls"
        parts.append(f"window={self._window!r}{unit}")
        parts.append(f"min_calls={self._min_calls}")
        if self._slow_call_duration is not None:
            parts.append(f"slow_call_duration={self._slow_call_duration!r}")
        if self._recovery_backoff is not None:
            parts.append(f"recovery_backoff={self._recovery_backoff!r}")
        else:
            parts.append(f"recovery_time={self._recovery_time!r}")
        return f"CircuitBreaker({', '.join(parts)})"

    @property
    def state(self) -> CircuitState:
        """The current state. OPEN becomes HALF_OPEN lazily, when a call arrives."""
        return self._controller.state

    # -- faces ----------------------------------------------------------------------------
    # The one closed fast path is `call` (the decorator binds it, see `_BoundCall`). Only
    # `__aexit__` repeats its three-line counter: a shared helper would cost the
    # `async with` face a Python call per success (~40 ns, 10 % of its budget).

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
            self._controller.complete(NO_PROBE, exc, None)
            raise
        left = self._left - 1
        if left > 0:
            self._left = left
        else:
            self._controller.counted(left)
        return result

    def __call__(self, fn: Callable[P, Awaitable[T]], /) -> Callable[P, Coroutine[Any, Any, T]]:
        """Decorate an async function: every call goes through the breaker."""
        wrapper = functools.wraps(fn)(_BoundCall(CircuitBreaker.call, self, fn))
        return cast("Callable[P, Coroutine[Any, Any, T]]", wrapper)

    async def __aenter__(self) -> None:
        if not self._gate:
            self._controller.enter_block()

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
                self._controller.exit_block(None)
            else:
                self._controller.counted(left)
        elif not self._gate:
            self._controller.exit_block(exc)
        elif isinstance(exc, Exception):
            self._controller.complete(NO_PROBE, exc, None)
        # Cancellation and other BaseExceptions: not counted, never suppressed.

    async def _call_guarded(
        self, fn: Callable[..., Awaitable[T]], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> T:
        """``call`` when the circuit is not closed, or when call durations are measured."""
        controller = self._controller
        probe = controller.admit()
        start = controller.start()
        try:
            result = await fn(*args, **kwargs)
        except Exception as exc:
            controller.complete(probe, exc, start)
            raise
        except BaseException:
            controller.abandon(probe)
            raise
        controller.complete(probe, None, start)
        return result

    # -- manual control -------------------------------------------------------------------

    def isolate(self) -> None:
        """Force the circuit open until `reset`: every call is rejected (no probes).

        Emits `CircuitOpened` (reason ``"isolated"``). Rejections carry the recovery time
        as ``retry_after``.
        """
        self._controller.isolate()

    def reset(self) -> None:
        """Close the circuit and clear its window (emits `CircuitClosed` unless closed)."""
        self._controller.reset()

    def disable(self) -> None:
        """Admit every call and never trip; outcomes are still recorded (metrics only).

        Emits `CircuitDisabled` (unless already disabled). `reset` (or `isolate`) leaves
        this state.
        """
        self._controller.disable()

    def statistics(self) -> CircuitBreakerStatistics:
        """A snapshot: state, the window's counts and rates, rejections, openings."""
        return self._controller.statistics()

    # -- testing hook (asyncres.testing) --------------------------------------------------

    def _force(self, state: CircuitState, retry_after: float | None = None) -> None:
        self._controller.force(state, retry_after)

    def _apply_fleet(self, state: str, remaining: float) -> None:
        """The fleet's circuit changed state (another process opened or closed it)."""
        controller = self._controller
        local = controller.state
        if state == "open" and local in (CircuitState.CLOSED, CircuitState.HALF_OPEN):
            now = controller.now_or_none()
            controller._to_open(now, FLEET_REASON, CircuitState.OPEN, remaining)
        elif state == "closed" and local in (CircuitState.OPEN, CircuitState.HALF_OPEN):
            controller._to_closed()


#: The reason of a `CircuitOpened` applied from the fleet's state (not reported back).
FLEET_REASON = "opened by the fleet"


class _FleetReporter:
    """Hands this process's own transitions to the store (a listener of the breaker)."""

    __slots__ = ("replica",)

    def __init__(self) -> None:
        self.replica: SharedBreaker | None = None

    def __call__(self, event: Event) -> None:
        replica = self.replica
        if replica is None:
            return
        if isinstance(event, CircuitOpened):
            if event.reason not in (FLEET_REASON, "isolated"):
                replica.transitioned("open", event.retry_after)
        elif isinstance(event, CircuitClosed):
            replica.transitioned("closed", 0.0)


class _FleetMetrics:
    """The local window, with every outcome also counted for the fleet, and the others'
    counts (from the store's last sync) added to each snapshot the trip rule reads."""

    __slots__ = ("_local", "_replica")

    def __init__(self, local: HealthMetrics, replica: SharedBreaker) -> None:
        self._local = local
        self._replica = replica

    def record(self, now: float, failed: bool, slow: bool) -> None:
        self._local.record(now, failed, slow)
        self._replica.outcome(failed)

    def record_successes(self, count: int, since: float, now: float) -> None:
        self._local.record_successes(count, since, now)
        self._replica.outcome(False, count)

    def snapshot(self, now: float | None) -> HealthSnapshot:
        total, failures, slow = self._local.snapshot(now)
        calls, failed = self._replica.totals
        return HealthSnapshot(total + int(calls), failures + int(failed), slow)

    def reset(self) -> None:
        self._local.reset()
        self._replica.stale()


def _first_delay(recovery_time: float | None, backoff: Backoff | None, rng: Any) -> float:
    if recovery_time is not None:
        return recovery_time
    assert backoff is not None
    return float(next(iter(backoff.delays(rng))))


class _BoundCall(functools.partial[Coroutine[Any, Any, Any]]):
    """``breaker.call`` with the function bound: the decorator's wrapper.

    A C-level partial adds no coroutine of its own, so ``@breaker`` costs what ``call``
    costs and shares its one fast path. ``inspect.iscoroutinefunction`` sees through it;
    ``__get__`` makes it bind like a function, so it decorates methods too.
    """

    __slots__ = ()

    def __get__(self, obj: object, owner: type | None = None) -> Any:
        return self if obj is None else types.MethodType(self, obj)
