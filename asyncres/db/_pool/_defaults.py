"""Every default of `GuardedPool` in one place, with the reasoning behind it.

The constructor's signature uses these constants, and the README's Defaults table lists them.
"""

from __future__ import annotations

from collections.abc import Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, TypedDict

from ..._backoff import EqualJitter, FullJitter
from ..._breaker import CircuitBreaker
from ..._events import Listener
from ..._retry import Retry
from .._driver import CONNECTION, TRANSIENT

if TYPE_CHECKING:
    from ._pool import GuardedPool

__all__ = ["BreakerLike", "PoolOptions", "default_breaker", "default_retry"]

# -- sizes and waits ---------------------------------------------------------------------

MIN_SIZE = 1
MAX_SIZE = 10
#: Seconds a caller may wait for a connection.
ACQUIRE_TIMEOUT = 5.0
#: Default queue bound per connection. By Little's law a caller at the back of the queue
#: waits about this many statement-times (20 x 5 ms = 100 ms for a typical OLTP statement);
#: a deeper queue only holds callers that will miss their deadline anyway.
QUEUED_PER_CONNECTION = 20

# -- time limits -------------------------------------------------------------------------

STATEMENT_TIMEOUT = 30.0
CONNECT_TIMEOUT = 5.0
#: Idle connections older than this (seconds) are pinged before reuse.
PING_AFTER = 1.0
HEALTH_TIMEOUT = 1.0
HEALTH_TTL = 1.0
#: Seconds to roll back and clean a connection after a failed or abandoned checkout.
RESET_TIMEOUT = 2.0
CLOSE_TIMEOUT = 10.0

# -- ageing ------------------------------------------------------------------------------

MAX_IDLE = 300.0
MAX_LIFETIME = 1800.0
#: A connection's lifetime is shortened by up to this fraction, so that connections opened
#: together are not all recycled in the same instant (HikariCP subtracts up to 2.5 %).
LIFETIME_SPREAD = 0.1
#: The maintenance task looks at idle connections at least this often (seconds).
MAINTENANCE_PERIOD = 30.0
#: Backoff of the maintenance task while it cannot open ``min_size`` connections.
REOPEN_BACKOFF = FullJitter(base=0.1, cap=5.0)

# -- the default breaker and retry -------------------------------------------------------

#: Consecutive connection failures that open the default breaker, and its recovery times
#: (equal jitter keeps at least half of each step, so a dead database is not probed in a
#: tight loop, and stays spread so that many pools do not probe in step).
BREAKER_FAILURES = 5
BREAKER_RECOVERY = EqualJitter(base=1.0, cap=10.0)
RETRY_ATTEMPTS = 3
RETRY_BACKOFF = FullJitter(base=0.05, cap=2.0)


class PoolOptions(TypedDict, total=False):
    """The keyword options of `GuardedPool` (for typing ``**options`` in factories)."""

    min_size: int
    max_size: int
    acquire_timeout: float
    max_queued: int | None
    statement_timeout: float | None
    connect_timeout: float
    retry: Retry | None
    breaker: BreakerLike | None
    ping_after: float | None
    health_timeout: float
    health_ttl: float
    max_idle: float
    max_lifetime: float | None
    reset_timeout: float
    #: Deprecated spelling of ``reset_timeout`` (until 0.3).
    recovery_timeout: float
    close_timeout: float
    name: str | None
    listeners: Iterable[Listener]


class BreakerLike(Protocol):
    """What the pool needs from a circuit breaker: the ``async with breaker:`` face."""

    async def __aenter__(self) -> Any: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None: ...


class _ErrorKind:
    """A default policy's ``on=`` predicate: errors of a kind, as the driver classifies them."""

    __slots__ = ("_label", "_mask", "_pool")

    def __init__(self, pool: GuardedPool[Any], mask: int, label: str) -> None:
        self._pool = pool
        self._mask = mask
        self._label = label

    def __call__(self, exc: Exception) -> bool:
        return bool(self._pool._classify(exc) & self._mask)

    def __repr__(self) -> str:
        return f"<{self._pool._driver.name} {self._label}>"


def default_retry(pool: GuardedPool[Any]) -> Retry:
    """The retry `GuardedPool.run` uses unless told otherwise.

    3 attempts (the SRE book's per-request limit), full jitter from 50 ms capped at 2 s
    (database conflicts clear in milliseconds), retrying only the driver's transient
    errors, with a `RetryBudget` of its own (at most 20 % extra load in an outage).
    """
    return Retry(
        on=_ErrorKind(pool, TRANSIENT, "transient errors"),
        max_attempts=RETRY_ATTEMPTS,
        backoff=RETRY_BACKOFF,
        name=pool.name,
    )


def default_breaker(pool: GuardedPool[Any]) -> CircuitBreaker:
    """The circuit breaker a pool gets unless told otherwise.

    It counts connection-level failures only (`is_connection_error`: refused, lost or
    timed-out connections, shutdowns, too many connections); every other outcome, a
    constraint violation as much as a success, shows the database is there. 5 consecutive
    connection failures open it (Finagle's failure accrual); it lets a probe through after
    an equal-jittered 0.5-1 s, doubling on each failed probe up to 5-10 s, so callers fail
    fast during an outage and the pool notices the database's return within seconds.
    """
    return CircuitBreaker(
        failure_threshold=BREAKER_FAILURES,
        recovery_backoff=BREAKER_RECOVERY,
        on=_ErrorKind(pool, CONNECTION, "connection errors"),
        name=pool.name,
        listeners=pool._listeners,
    )
