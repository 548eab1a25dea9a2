"""A circuit breaker's options, checked once: `breaker_config` returns a frozen `BreakerConfig`.

Each bad value raises ``ValueError`` naming the parameter. The trip defaults are the
published ones — a failure rate of 0.5 (Resilience4j, Hystrix) over 60 s or 100 calls — plus
20 failures in a row, so a hard outage opens the circuit within 20 calls instead of after
the window's healthy history is outweighed. The recovery default follows the dependency:
probes after 0.25 s, 0.5 s, then every second (`DEFAULT_RECOVERY`).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

from . import _validation
from ._backoff import Backoff, Exponential
from ._clock import Clock
from ._events import Listener
from ._matching import ErrorFilter, matcher

__all__ = ["BreakerConfig", "breaker_config"]

DEFAULT_FAILURE_RATE = 0.5  # Resilience4j, Hystrix
DEFAULT_WINDOW_SECONDS = 60.0
DEFAULT_WINDOW_CALLS = 100  # Resilience4j
DEFAULT_FAILURE_THRESHOLD = 20  # with the default rate: a hard outage opens in 20 calls
#: The default recovery times: short and growing to one second, so the first success after
#: the dependency returns comes within a second, while a dead dependency sees one probe a
#: second (1 % of the traffic at 100 requests/s). Finagle's 5 s...300 s suits costly probes.
DEFAULT_RECOVERY = Exponential(0.25, 1.0)


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    """Validated options of one `CircuitBreaker` (the public ones are its read-only settings)."""

    failure_threshold: int | None
    failure_rate: float | None
    window: float
    window_type: Literal["time", "count"]
    min_calls: int
    #: ``min_calls`` as the trip rule uses it: a count window never holds more than ``window``.
    trip_min_calls: int
    slow_call_duration: float | None
    slow_call_rate: float
    recovery_time: float | None
    recovery_backoff: Backoff | None
    rng: random.Random | None
    half_open_max_calls: int
    success_threshold: int
    on: ErrorFilter
    exclude: ErrorFilter
    #: ``on`` and ``exclude`` compiled: is this exception a failure?
    is_failure: Callable[[Exception], bool]
    name: str | None
    listeners: tuple[Listener, ...]
    clock: Clock | None


def breaker_config(
    *,
    failure_threshold: int | None,
    failure_rate: float | None,
    window: float | None,
    window_type: Literal["time", "count"],
    min_calls: int,
    slow_call_duration: float | None,
    slow_call_rate: float,
    recovery_time: float | None,
    recovery_backoff: Backoff | None,
    half_open_max_calls: int,
    success_threshold: int,
    on: ErrorFilter,
    exclude: ErrorFilter,
    name: str | None,
    listeners: Iterable[Listener],
    clock: Clock | None,
    rng: random.Random | None,
) -> BreakerConfig:
    """Check every option (``ValueError`` naming the parameter) and fill in the defaults."""
    if failure_threshold is not None:
        failure_threshold = _validation.count("failure_threshold", failure_threshold, minimum=1)
    if failure_rate is not None:
        failure_rate = _validation.ratio("failure_rate", failure_rate)
        if failure_rate == 0.0:
            raise ValueError("`failure_rate` must be > 0, got 0.0")
    elif failure_threshold is None:
        failure_rate = DEFAULT_FAILURE_RATE
        failure_threshold = DEFAULT_FAILURE_THRESHOLD

    if window_type == "time":
        if window is None:
            window = DEFAULT_WINDOW_SECONDS
        window = _validation.finite_positive("window", window)
    elif window_type == "count":
        if window is None:
            window = DEFAULT_WINDOW_CALLS
        if isinstance(window, bool) or not isinstance(window, int):
            raise ValueError(
                f"`window` must be a whole number of calls with window_type='count', got {window!r}"
            )
        window = _validation.count("window", window, minimum=1)
    else:
        raise ValueError(f"`window_type` must be 'time' or 'count', got {window_type!r}")

    min_calls = _validation.count("min_calls", min_calls, minimum=1)

    if slow_call_duration is not None:
        slow_call_duration = _validation.positive("slow_call_duration", slow_call_duration)
    slow_call_rate = _validation.ratio("slow_call_rate", slow_call_rate)
    if slow_call_rate == 0.0:
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
        recovery_backoff = DEFAULT_RECOVERY
    else:
        recovery_time = _validation.non_negative("recovery_time", recovery_time)
        if math.isinf(recovery_time):
            raise ValueError("`recovery_time` must be finite, got inf")

    half_open_max_calls = _validation.count("half_open_max_calls", half_open_max_calls, minimum=1)
    success_threshold = _validation.count("success_threshold", success_threshold, minimum=1)

    if on == ():
        raise ValueError("`on` must name at least one exception type")
    match = matcher(on, "on")
    excluded = matcher(exclude, "exclude")

    listeners = _validation.listeners(listeners)
    if clock is not None and not callable(clock):
        raise ValueError(f"`clock` must be callable, got {clock!r}")

    def is_failure(exc: Exception) -> bool:
        return match(exc) and not excluded(exc)

    return BreakerConfig(
        failure_threshold=failure_threshold,
        failure_rate=failure_rate,
        window=window,
        window_type=window_type,
        min_calls=min_calls,
        trip_min_calls=min(min_calls, int(window)) if window_type == "count" else min_calls,
        slow_call_duration=slow_call_duration,
        slow_call_rate=slow_call_rate,
        recovery_time=recovery_time,
        recovery_backoff=recovery_backoff,
        rng=rng,
        half_open_max_calls=half_open_max_calls,
        success_threshold=success_threshold,
        on=on,
        exclude=exclude,
        is_failure=is_failure,
        name=name,
        listeners=listeners,
        clock=clock,
    )
