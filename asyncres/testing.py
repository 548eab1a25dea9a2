"""Helpers for *your* test suite (not imported by ``import asyncres``).

``set_testing(True)`` makes every `Retry` skip its waits and cap its attempts, so tests of
code that retries stay fast; ``capture_events()`` collects the events policies emit;
``force_open()``, ``force_half_open()`` and ``force_closed()`` put a `CircuitBreaker` in
the state your test needs without driving failures through it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType

from . import _events, _testing_state, _validation
from ._breaker import CircuitBreaker, CircuitState
from ._events import Event

__all__ = [
    "capture_events",
    "force_closed",
    "force_half_open",
    "force_open",
    "is_testing",
    "set_testing",
]


class _TestingMode:
    """Returned by `set_testing`; as a context manager it restores the previous mode."""

    __slots__ = ("_previous",)

    def __init__(self, previous: int | None) -> None:
        self._previous = previous

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        _testing_state.attempts_cap = self._previous


def set_testing(testing: bool, *, attempts: int = 1) -> _TestingMode:
    """Turn testing mode on or off for the whole process.

    In testing mode every `Retry` waits zero seconds between attempts and makes at most
    ``attempts`` attempts (default 1: no retries at all). Use it in a fixture, or as a
    context manager: ``with set_testing(True, attempts=3): ...`` restores the previous mode.
    """
    previous = _testing_state.attempts_cap
    if testing:
        _testing_state.attempts_cap = _validation.count("attempts", attempts, minimum=1)
    else:
        _testing_state.attempts_cap = None
    return _TestingMode(previous)


def is_testing() -> bool:
    """Whether testing mode is on."""
    return _testing_state.attempts_cap is not None


@contextmanager
def capture_events() -> Iterator[list[Event]]:
    """Collect every event emitted while the block runs (process-wide), in order.

    The list is yours to inspect; events keep going to the other listeners too.
    """
    captured: list[Event] = []
    previous = _events.set_listeners(*_events.get_listeners(), captured.append)
    try:
        yield captured
    finally:
        _events.set_listeners(*previous)


def force_open(breaker: CircuitBreaker, *, retry_after: float | None = None) -> None:
    """Put ``breaker`` in the OPEN state as if it had just tripped.

    Calls are rejected with `CircuitOpenError` until the recovery time has passed (the
    breaker's own, or ``retry_after`` seconds for this opening), then probes are admitted
    as usual. The recovery time starts now (or, outside an event loop, at the first call).
    Emits `CircuitOpened` with reason ``"forced"``. Unlike `CircuitBreaker.isolate`, the
    breaker recovers on its own.
    """
    if retry_after is not None:
        retry_after = _validation.non_negative("retry_after", retry_after)
    breaker._force(CircuitState.OPEN, retry_after)


def force_half_open(breaker: CircuitBreaker) -> None:
    """Put ``breaker`` in the HALF_OPEN state: the next calls are probes.

    Emits `CircuitHalfOpened` (nothing when it is already half-open).
    """
    breaker._force(CircuitState.HALF_OPEN)


def force_closed(breaker: CircuitBreaker) -> None:
    """Close ``breaker`` and clear its window (the same as `CircuitBreaker.reset`)."""
    breaker._force(CircuitState.CLOSED)
