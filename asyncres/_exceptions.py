"""The asyncres error tree.

```
Exception
└── ResilienceError                 base of every error asyncres raises itself
    ├── RejectedError               the call never ran (safe to try elsewhere)
    │   ├── CircuitOpenError        .retry_after: seconds until a probe is allowed; .reason
    │   ├── BulkheadFullError       .max_concurrent, .max_queued
    │   ├── ThrottledError          .reject_probability
    │   ├── LimitExceededError      .limit, .max_queued, .reason
    │   ├── RateLimitedError        .retry_after: seconds until the call would be admitted
    │   └── (asyncres.db) PoolExhaustedError, PoolClosedError
    ├── (asyncres.db) ConnectTimeoutError, CommitOutcomeUnknownError
    └── TimeoutExceededError        also a builtin TimeoutError; .timeout
```

Errors raised by *your* function are never wrapped: when retries run out, the last
exception propagates unchanged, with a note saying how many attempts were made.
Cancellation is never turned into any of these.
"""

from __future__ import annotations

__all__ = [
    "BulkheadFullError",
    "CircuitOpenError",
    "LimitExceededError",
    "RateLimitedError",
    "RejectedError",
    "ResilienceError",
    "ThrottledError",
    "TimeoutExceededError",
]


class ResilienceError(Exception):
    """Base class of every error raised by asyncres itself."""

    __module__ = "asyncres"


class RejectedError(ResilienceError):
    """The call was refused before it started: the function never ran."""

    __module__ = "asyncres"


class CircuitOpenError(RejectedError):
    """A circuit breaker is open (or half-open with every probe slot taken).

    ``retry_after`` is the number of seconds until the breaker will admit a probe; a
    `Retry` waits at least that long before trying again, and gives up at once when the
    enclosing deadline comes sooner. ``reason`` is the rejection reason, the same string
    as on the `CallRejected` event: ``"circuit_open"`` (open or isolated) or
    ``"half_open_full"`` (every probe slot taken).
    """

    __module__ = "asyncres"

    def __init__(
        self, name: str | None = None, *, retry_after: float, reason: str = "circuit_open"
    ) -> None:
        self.name = name
        self.retry_after = retry_after
        self.reason = reason
        label = f"circuit {name!r}" if name else "circuit"
        super().__init__(f"{label} is open; retry after {retry_after:.3f}s")

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_circuit_open, (self.name, self.retry_after, self.reason))


class BulkheadFullError(RejectedError):
    """A bulkhead has no free slot and its queue is full (or the waiter was shed)."""

    __module__ = "asyncres"

    def __init__(
        self, name: str | None = None, *, max_concurrent: int, max_queued: int, reason: str = "full"
    ) -> None:
        self.name = name
        self.max_concurrent = max_concurrent
        self.max_queued = max_queued
        self.reason = reason
        label = f"bulkhead {name!r}" if name else "bulkhead"
        super().__init__(
            f"{label} rejected the call ({reason}): "
            f"max_concurrent={max_concurrent}, max_queued={max_queued}"
        )

    def __reduce__(self) -> tuple[object, ...]:
        return (
            _rebuild_bulkhead_full,
            (self.name, self.max_concurrent, self.max_queued, self.reason),
        )


class ThrottledError(RejectedError):
    """A `Throttle` rejected the call locally: the dependency has been refusing work.

    ``reject_probability`` is the probability with which the throttle was rejecting calls.
    """

    __module__ = "asyncres"

    reason = "throttled"

    def __init__(self, name: str | None = None, *, reject_probability: float) -> None:
        self.name = name
        self.reject_probability = reject_probability
        label = f"throttle {name!r}" if name else "throttle"
        super().__init__(
            f"{label} rejected the call locally "
            f"(rejecting {reject_probability:.0%} while the dependency refuses work)"
        )

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_throttled, (self.name, self.reject_probability))


class LimitExceededError(RejectedError):
    """An `AdaptiveLimit` refused the call: every slot of the current limit is busy and the
    queue is full (or the waiter was shed, waited too long, or its deadline had passed).

    ``limit`` is the limit at the time, ``reason`` the rejection reason (the same string as
    on the `CallRejected` event).
    """

    __module__ = "asyncres"

    def __init__(
        self, name: str | None = None, *, limit: int, max_queued: int, reason: str = "queue_full"
    ) -> None:
        self.name = name
        self.limit = limit
        self.max_queued = max_queued
        self.reason = reason
        label = f"limit {name!r}" if name else "adaptive limit"
        super().__init__(
            f"{label} rejected the call ({reason}): limit={limit}, max_queued={max_queued}"
        )

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_limit_exceeded, (self.name, self.limit, self.max_queued, self.reason))


class TimeoutExceededError(ResilienceError, TimeoutError):
    """An asyncres deadline expired. Raised only by the scope whose own deadline fired.

    ``timeout`` is the scope's length in seconds (``None`` for `deadline()` scopes built
    from an absolute time).
    """

    __module__ = "asyncres"

    def __init__(self, timeout: float | None = None) -> None:
        self.timeout = timeout
        if timeout is None:
            super().__init__("deadline exceeded")
        else:
            super().__init__(f"timed out after {timeout:g}s")

    def __reduce__(self) -> tuple[object, ...]:
        return (TimeoutExceededError, (self.timeout,))


class RateLimitedError(RejectedError):
    """A `RateLimit` refused the call: admitting it would exceed the rate.

    ``retry_after`` is the number of seconds until a call of the same key would be
    admitted (a `Retry` waits at least that long, or gives up at once when its deadline
    comes sooner); ``key`` is the key that was limited (``None`` for the shared one).
    """

    __module__ = "asyncres"

    reason = "rate_limited"

    def __init__(
        self, name: str | None = None, *, retry_after: float, key: str | None = None
    ) -> None:
        self.name = name
        self.retry_after = retry_after
        self.key = key
        label = f"rate limit {name!r}" if name else "rate limit"
        of = f" for key {key!r}" if key is not None else ""
        super().__init__(f"{label} exceeded{of}; retry after {retry_after:.3f}s")

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_rate_limited, (self.name, self.retry_after, self.key))


def _rebuild_circuit_open(
    name: str | None, retry_after: float, reason: str = "circuit_open"
) -> CircuitOpenError:
    return CircuitOpenError(name, retry_after=retry_after, reason=reason)


def _rebuild_bulkhead_full(
    name: str | None, max_concurrent: int, max_queued: int, reason: str
) -> BulkheadFullError:
    return BulkheadFullError(
        name, max_concurrent=max_concurrent, max_queued=max_queued, reason=reason
    )


def _rebuild_throttled(name: str | None, reject_probability: float) -> ThrottledError:
    return ThrottledError(name, reject_probability=reject_probability)


def _rebuild_limit_exceeded(
    name: str | None, limit: int, max_queued: int, reason: str
) -> LimitExceededError:
    return LimitExceededError(name, limit=limit, max_queued=max_queued, reason=reason)


def _rebuild_rate_limited(
    name: str | None, retry_after: float, key: str | None
) -> RateLimitedError:
    return RateLimitedError(name, retry_after=retry_after, key=key)
