"""The errors `asyncres.db` raises itself (the driver's own errors are never wrapped).

```
ResilienceError
├── RejectedError                       the operation never ran
│   ├── PoolExhaustedError              no connection in time: queue full or acquire timeout
│   └── PoolClosedError                 the pool is closed (or closing)
├── ConnectTimeoutError                 opening a connection took longer than connect_timeout
│                                       (also a builtin ConnectionError and TimeoutError)
└── CommitOutcomeUnknownError           the connection broke during COMMIT: the transaction
                                        may or may not have committed (never retried)
```
"""

from __future__ import annotations

from .._exceptions import RejectedError, ResilienceError

__all__ = [
    "CommitOutcomeUnknownError",
    "ConnectTimeoutError",
    "NoServerMatchedError",
    "PoolClosedError",
    "PoolExhaustedError",
]


class PoolExhaustedError(RejectedError):
    """No connection became free in time; the operation never ran.

    ``reason`` is ``"queue_full"`` (``max_queued`` callers were already waiting: failed at
    once) or ``"queue_timeout"`` (waited ``acquire_timeout`` seconds), the same string as
    on the `CallRejected` event. ``waited`` is how long this caller waited, in seconds.
    """

    __module__ = "asyncres.db"

    def __init__(
        self,
        name: str | None = None,
        *,
        max_size: int,
        max_queued: int,
        reason: str,
        waited: float = 0.0,
    ) -> None:
        self.name = name
        self.max_size = max_size
        self.max_queued = max_queued
        self.reason = reason
        self.waited = waited
        label = f"pool {name!r}" if name else "pool"
        super().__init__(
            f"{label} has no free connection ({reason}, waited {waited:.3f}s): "
            f"max_size={max_size}, max_queued={max_queued}"
        )

    def __reduce__(self) -> tuple[object, ...]:
        return (
            _rebuild_exhausted,
            (self.name, self.max_size, self.max_queued, self.reason, self.waited),
        )


class PoolClosedError(RejectedError):
    """The pool is closed or closing: no new operation starts (``reason`` is ``"closed"``)."""

    __module__ = "asyncres.db"

    #: The rejection reason, as on the `CallRejected` event.
    reason = "closed"

    def __init__(self, name: str | None = None) -> None:
        self.name = name
        label = f"pool {name!r}" if name else "pool"
        super().__init__(f"{label} is closed")

    def __reduce__(self) -> tuple[object, ...]:
        return (PoolClosedError, (self.name,))


class NoServerMatchedError(ResilienceError):
    """No server of a multi-host pool has the wanted role right now
    (``target_session_attrs``, e.g. ``"read-write"`` while the primary is lost and no
    standby has been promoted). Counts against the pool's breaker; not retried, so that
    writes fail fast while reads keep going to the standbys.
    """

    __module__ = "asyncres.db"

    def __init__(self, target_session_attrs: str, hosts: int) -> None:
        self.target_session_attrs = target_session_attrs
        self.hosts = hosts
        super().__init__(
            f"none of the {hosts} PostgreSQL servers is {target_session_attrs!r} right now"
        )


class ConnectTimeoutError(ResilienceError, ConnectionError, TimeoutError):
    """Opening a database connection took longer than ``connect_timeout`` seconds.

    A connection-level failure: it counts against the pool's circuit breaker and is
    retried by the default retry, like a refused connection.
    """

    __module__ = "asyncres.db"

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        super().__init__(f"opening a database connection timed out after {timeout:g}s")

    def __reduce__(self) -> tuple[object, ...]:
        return (ConnectTimeoutError, (self.timeout,))


class CommitOutcomeUnknownError(ResilienceError):
    """The connection failed while COMMIT was in flight: it may or may not have committed.

    Raised by `GuardedPool.run` from the driver's error (``__cause__``). It is never
    retried: re-running a transaction that did commit would apply it twice. Make the write
    idempotent (a unique key) and retry it yourself, or check whether it landed.
    """

    __module__ = "asyncres.db"


def _rebuild_exhausted(
    name: str | None, max_size: int, max_queued: int, reason: str, waited: float
) -> PoolExhaustedError:
    return PoolExhaustedError(
        name, max_size=max_size, max_queued=max_queued, reason=reason, waited=waited
    )
