"""Events: frozen facts about state changes, delivered to listeners.

Every policy takes ``listeners=`` (called for its own events) and every event also goes to
the process-wide listeners set with `set_listeners()`; by default that is `log_event`, which
logs through the stdlib logger ``"asyncres"``. Events are emitted only off the success path:
a call that succeeds first time creates none.

A listener is a plain callable taking the event. It must not block; an exception it raises is
logged and otherwise ignored, so telemetry can never change the outcome of a call.
"""

import logging
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from typing import ClassVar

from . import _telemetry, _validation

__all__ = [
    "CallRejected",
    "CircuitClosed",
    "CircuitDisabled",
    "CircuitHalfOpened",
    "CircuitOpened",
    "EndpointEjected",
    "EndpointReadmitted",
    "Event",
    "FallbackUsed",
    "HedgeLaunched",
    "LimitChanged",
    "Listener",
    "RetryBudgetExhausted",
    "RetryGaveUp",
    "RetryScheduled",
    "StoreRecovered",
    "StoreUnavailable",
    "ThrottleEngaged",
    "ThrottleReleased",
    "TimeoutExpired",
    "emit",
    "log_event",
    "set_listeners",
]

logger = logging.getLogger("asyncres")
# A library does not print: without logging configured by the application, stay silent.
logger.addHandler(logging.NullHandler())


@dataclass(frozen=True, slots=True)
class Event:
    """Base class of every asyncres event. ``name`` is the emitting policy's name."""

    __module__ = "asyncres.events"

    level: ClassVar[int] = logging.INFO

    name: str | None

    def __str__(self) -> str:
        parts = [f"{f.name}={_show(getattr(self, f.name))}" for f in fields(self)]
        return f"{type(self).__name__}({', '.join(parts)})"


def _show(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, BaseException):
        return f"{type(value).__name__}({str(value)!r})"
    return repr(value)


Listener = Callable[[Event], None]


@dataclass(frozen=True, slots=True)
class RetryScheduled(Event):
    """Attempt ``attempt`` failed with ``error``; the next starts after ``wait`` seconds."""

    __module__ = "asyncres.events"

    attempt: int
    wait: float
    error: BaseException | None


@dataclass(frozen=True, slots=True)
class RetryGaveUp(Event):
    """A retryable failure propagates after ``attempts_made`` attempts.

    ``reason`` is ``"attempts"`` (none left), ``"deadline"`` (the next attempt could not
    start before the enclosing deadline) or ``"budget"`` (`RetryBudgetExhausted`).
    ``error`` is ``None`` when the last attempt returned a result rejected by ``on_result``.
    """

    __module__ = "asyncres.events"

    level: ClassVar[int] = logging.WARNING

    attempts_made: int
    error: BaseException | None
    reason: str

    @property
    def attempts(self) -> int:
        """Deprecated name of ``attempts_made``."""
        warnings.warn(
            "RetryGaveUp.attempts is deprecated, use RetryGaveUp.attempts_made",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.attempts_made


@dataclass(frozen=True, slots=True)
class RetryBudgetExhausted(RetryGaveUp):
    """The shared `RetryBudget` refused a retry: the last outcome propagates now."""

    __module__ = "asyncres.events"


@dataclass(frozen=True, slots=True)
class TimeoutExpired(Event):
    """A `Timeout` policy's deadline fired after ``timeout`` seconds."""

    __module__ = "asyncres.events"

    timeout: float


@dataclass(frozen=True, slots=True)
class CircuitOpened(Event):
    """A circuit breaker opened: calls fail fast for ``retry_after`` seconds.

    ``reason`` says why, e.g. ``"failure rate 0.62 >= 0.5 over 40 calls"``,
    ``"5 consecutive failures"``, ``"probe failed"`` or ``"isolated"``.
    """

    __module__ = "asyncres.events"

    level: ClassVar[int] = logging.WARNING

    retry_after: float
    reason: str


@dataclass(frozen=True, slots=True)
class CircuitHalfOpened(Event):
    """A circuit breaker's recovery time passed: it now admits probe calls."""

    __module__ = "asyncres.events"


@dataclass(frozen=True, slots=True)
class CircuitClosed(Event):
    """A circuit breaker closed again (probes succeeded, or it was reset)."""

    __module__ = "asyncres.events"


@dataclass(frozen=True, slots=True)
class CircuitDisabled(Event):
    """A circuit breaker was disabled: it admits every call and never trips until `reset`."""

    __module__ = "asyncres.events"

    level: ClassVar[int] = logging.WARNING


@dataclass(frozen=True, slots=True)
class CallRejected(Event):
    """A call was refused before it ran (`RejectedError`).

    ``reason``: ``"circuit_open"``, ``"half_open_full"``, ``"bulkhead_full"``, ``"throttled"``,
    ``"shed"`` (evicted by a higher-priority waiter), ``"queue_full"``, ``"queue_timeout"``,
    ``"deadline"`` (the caller's deadline had already passed), ``"rate_limited"``, and for
    `asyncres.db` pools ``"pool_queue_full"``, ``"pool_acquire_timeout"`` or
    ``"pool_closed"``.
    """

    __module__ = "asyncres.events"

    level: ClassVar[int] = logging.DEBUG

    reason: str


@dataclass(frozen=True, slots=True)
class ThrottleEngaged(Event):
    """A `Throttle` started rejecting calls locally, with ``reject_probability``."""

    __module__ = "asyncres.events"

    level: ClassVar[int] = logging.WARNING

    reject_probability: float


@dataclass(frozen=True, slots=True)
class ThrottleReleased(Event):
    """A `Throttle`'s reject probability returned to 0: every call passes again."""

    __module__ = "asyncres.events"


@dataclass(frozen=True, slots=True)
class LimitChanged(Event):
    """An `AdaptiveLimit` moved its whole-number limit from ``previous`` to ``limit``."""

    __module__ = "asyncres.events"

    level: ClassVar[int] = logging.DEBUG

    limit: int
    previous: int


@dataclass(frozen=True, slots=True)
class HedgeLaunched(Event):
    """A hedged call started extra attempt number ``hedge`` (1 = the first extra one)
    ``delay`` seconds after the call began."""

    __module__ = "asyncres.events"

    hedge: int
    delay: float


@dataclass(frozen=True, slots=True)
class EndpointEjected(Event):
    """An `EndpointGroup` ejected ``endpoint`` (an address) for ``seconds``, its
    ``ejections``-th time, after consecutive failures."""

    __module__ = "asyncres.events"

    level: ClassVar[int] = logging.WARNING

    endpoint: str
    seconds: float
    ejections: int


@dataclass(frozen=True, slots=True)
class EndpointReadmitted(Event):
    """An ejected endpoint's time is up: the `EndpointGroup` uses it again."""

    __module__ = "asyncres.events"

    endpoint: str


@dataclass(frozen=True, slots=True)
class FallbackUsed(Event):
    """A fallback replaced the outcome of a failed call (``error``)."""

    __module__ = "asyncres.events"

    error: BaseException | None


@dataclass(frozen=True, slots=True)
class StoreUnavailable(Event):
    """A shared state store (``name``: its prefix) cannot be reached: its policies decide on
    local state until it returns."""

    __module__ = "asyncres.events"
    level: ClassVar[int] = logging.WARNING

    error: str


@dataclass(frozen=True, slots=True)
class StoreRecovered(Event):
    """The store answers again after ``seconds`` without it; its policies resync."""

    __module__ = "asyncres.events"

    seconds: float


def log_event(event: Event) -> None:
    """The default process-wide listener: log the event to the ``"asyncres"`` logger."""
    if logger.isEnabledFor(event.level):
        logger.log(event.level, "%s", event)


_global_listeners: tuple[Listener, ...] = (log_event,)


def set_listeners(*listeners: Listener) -> tuple[Listener, ...]:
    """Replace the process-wide listeners; return the previous ones (to restore them).

    ``asyncres.events.set_listeners()`` with no argument silences events globally;
    ``set_listeners(log_event, my_metrics)`` keeps logging and adds yours.
    """
    global _global_listeners
    checked = _validation.listeners(listeners)
    previous = _global_listeners
    _global_listeners = checked
    return previous


def get_listeners() -> tuple[Listener, ...]:
    """The process-wide listeners currently installed."""
    return _global_listeners


def emit(local: Iterable[Listener], event: Event) -> None:
    """Deliver ``event`` to a policy's own listeners, then to the process-wide ones."""
    for listener in local:
        _deliver(listener, event)
    for listener in _global_listeners:
        _deliver(listener, event)
    hooks = _telemetry.hooks
    if hooks is not None:
        _deliver(hooks.event, event)


def _deliver(listener: Listener, event: Event) -> None:
    try:
        listener(event)
    except Exception:
        logger.exception("asyncres listener %r failed on %s", listener, event)
