"""GuardedPool: a connection pool that cannot wedge, leak, or outlive its caller's deadline.

This module holds the public class: its configuration, its lifecycle and the few primitives
that move a connection between states (each keeping the counters in step). The checkout
(lease), the maintenance task and the health check live beside it.
"""

from __future__ import annotations

import math
import random
import warnings
from collections.abc import Awaitable, Callable, Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Concatenate, Generic, ParamSpec, TypeVar

import anyio

from ... import _validation
from ..._clock import resolve_clock
from ..._events import CallRejected, Listener, emit
from ..._retry import Retry
from ..._setting import Setting
from ..._waiters import WaiterQueue
from .._driver import CONNECTION, TRANSIENT, Driver, reset_capable
from .._errors import ConnectTimeoutError, PoolClosedError
from .._events import ConnectionDiscarded, ConnectionRecycled
from . import _checkout, _health, _maintenance
from ._defaults import (
    ACQUIRE_TIMEOUT,
    CLOSE_TIMEOUT,
    CONNECT_TIMEOUT,
    HEALTH_TIMEOUT,
    HEALTH_TTL,
    LIFETIME_SPREAD,
    MAX_IDLE,
    MAX_LIFETIME,
    MAX_SIZE,
    MIN_SIZE,
    PING_AFTER,
    QUEUED_PER_CONNECTION,
    RESET_TIMEOUT,
    STATEMENT_TIMEOUT,
    BreakerLike,
    default_breaker,
    default_retry,
)
from ._health import PoolHealth
from ._state import (
    CLOSED,
    GONE,
    IDLE,
    IN_USE,
    NEW,
    OPEN,
    Connection,
    Counters,
    PoolState,
    PoolStatistics,
)

if TYPE_CHECKING:
    from typing import Self

    from anyio.abc import TaskGroup

__all__ = ["GuardedPool"]

C = TypeVar("C")
T = TypeVar("T")
P = ParamSpec("P")

_DEFAULT: Any = object()  # sentinel: "build the documented default"


class GuardedPool(Generic[C]):
    """A connection pool guarded against slow, failing and vanishing databases.

    Open it with `asyncres.db.sqlite` or `asyncres.db.postgres` (or with any `Driver`):
    ``async with asyncres.db.postgres(dsn) as pool:``. Then:

    - ``async with pool.connection() as conn:`` checks out the driver's own connection;
    - ``await pool.run(fn, *args)`` runs ``fn(conn, *args)`` in a transaction, retrying
      the whole transaction on transient errors (the connection goes back to the pool,
      rolled back, before each backoff wait).

    The guarantees: waits for a connection are bounded (``acquire_timeout``, ``max_queued``
    and the caller's deadline; overflow raises `PoolExhaustedError` at once); each
    statement is bounded by ``statement_timeout`` and by the caller's remaining deadline,
    in the database too; a cancelled or timed-out caller's connection is stopped, reset
    (rolled back) and returned, or discarded, never leaked; broken connections are replaced
    and ``min_size`` kept alive; idle connections are pinged before reuse; a circuit breaker
    makes callers fail fast while the database is unreachable.

    The configuration attributes are read-only after construction.

    Usable on asyncio and trio as far as the driver allows (aiosqlite and asyncpg are
    asyncio-only). Not thread-safe: use one pool from one event loop.
    """

    __module__ = "asyncres.db"

    min_size: Setting[int] = Setting()
    max_size: Setting[int] = Setting()
    acquire_timeout: Setting[float] = Setting()
    max_queued: Setting[int] = Setting()
    statement_timeout: Setting[float | None] = Setting()
    connect_timeout: Setting[float] = Setting()
    retry: Setting[Retry | None] = Setting()
    breaker: Setting[BreakerLike | None] = Setting()
    ping_after: Setting[float | None] = Setting()
    health_timeout: Setting[float] = Setting()
    health_ttl: Setting[float] = Setting()
    max_idle: Setting[float] = Setting()
    max_lifetime: Setting[float | None] = Setting()
    reset_timeout: Setting[float] = Setting()
    close_timeout: Setting[float] = Setting()
    name: Setting[str | None] = Setting()

    def __init__(
        self,
        driver: Driver[C],
        *,
        min_size: int = MIN_SIZE,
        max_size: int = MAX_SIZE,
        acquire_timeout: float = ACQUIRE_TIMEOUT,
        max_queued: int | None = None,
        statement_timeout: float | None = STATEMENT_TIMEOUT,
        connect_timeout: float = CONNECT_TIMEOUT,
        retry: Retry | None = _DEFAULT,
        breaker: BreakerLike | None = _DEFAULT,
        ping_after: float | None = PING_AFTER,
        health_timeout: float = HEALTH_TIMEOUT,
        health_ttl: float = HEALTH_TTL,
        max_idle: float = MAX_IDLE,
        max_lifetime: float | None = MAX_LIFETIME,
        reset_timeout: float = RESET_TIMEOUT,
        close_timeout: float = CLOSE_TIMEOUT,
        name: str | None = None,
        listeners: Iterable[Listener] = (),
        recovery_timeout: float | None = None,
    ) -> None:
        """``recovery_timeout`` is the deprecated spelling of ``reset_timeout`` (until 0.3)."""
        if recovery_timeout is not None:
            warnings.warn(
                "GuardedPool(recovery_timeout=...) is deprecated: use reset_timeout=...",
                DeprecationWarning,
                stacklevel=2,
            )
            if reset_timeout != RESET_TIMEOUT:
                raise ValueError("pass `reset_timeout` only (`recovery_timeout` is its old name)")
            reset_timeout = recovery_timeout
        self._driver = reset_capable(driver)
        self._min_size = _validation.count("min_size", min_size, minimum=0)
        self._max_size = _validation.count("max_size", max_size, minimum=1)
        if min_size > max_size:
            raise ValueError(f"`min_size` must be <= `max_size` ({max_size}), got {min_size}")
        self._acquire_timeout = _validation.non_negative("acquire_timeout", acquire_timeout)
        if max_queued is None:
            max_queued = QUEUED_PER_CONNECTION * self._max_size
        self._max_queued = _validation.count("max_queued", max_queued, minimum=0)
        statement_timeout = _validation.optional_limit("statement_timeout", statement_timeout)
        self._statement_timeout = statement_timeout
        self._driver.configure(statement_timeout=statement_timeout)
        self._connect_timeout = _validation.finite_positive("connect_timeout", connect_timeout)
        self._ping_after = _validation.optional_limit("ping_after", ping_after, zero_ok=True)
        self._health_timeout = _validation.finite_positive("health_timeout", health_timeout)
        self._health_ttl = _validation.non_negative("health_ttl", health_ttl)
        self._max_idle = _validation.positive("max_idle", max_idle)
        self._max_lifetime = _validation.optional_limit("max_lifetime", max_lifetime)
        self._reset_timeout = _validation.finite_positive("reset_timeout", reset_timeout)
        self._close_timeout = _validation.non_negative("close_timeout", close_timeout)
        self._name = name
        self._listeners = tuple(listeners)
        if retry is _DEFAULT:
            retry = default_retry(self)
        elif retry is not None and not isinstance(retry, Retry):
            raise ValueError(f"`retry` must be an asyncres.Retry or None, got {retry!r}")
        self._retry = retry
        if breaker is _DEFAULT:
            breaker = default_breaker(self)
        elif breaker is not None and not (
            callable(getattr(breaker, "__aenter__", None))
            and callable(getattr(breaker, "__aexit__", None))
        ):
            raise ValueError(
                f"`breaker` must be a circuit breaker (async with breaker:), got {breaker!r}"
            )
        self._breaker = breaker

        # State. counts.size == idle + in_use + opening + resetting, at every await point.
        self._state: PoolState = NEW
        self._idle: list[Connection[C]] = []
        self._waiters: WaiterQueue[Connection[C]] = WaiterQueue(self._take_back)
        self._counts = Counters()
        self._tg: TaskGroup | None = None
        self._clock: Callable[[], float] = _unopened_clock
        self._wake: anyio.Event | None = None
        self._settled: anyio.Event | None = None
        self._last_connect_error: BaseException | None = None
        self._health = _health.HealthCache()

    @property
    def recovery_timeout(self) -> float:
        """Deprecated alias of `reset_timeout` (until 0.3)."""
        warnings.warn(
            "GuardedPool.recovery_timeout is deprecated: use GuardedPool.reset_timeout",
            DeprecationWarning,
            stacklevel=2,
        )
        return self._reset_timeout

    def __repr__(self) -> str:
        name = f" {self._name!r}" if self._name else ""
        counts = self._counts
        return (
            f"<GuardedPool{name} {self._driver.name} {self._state.value} size={counts.size} "
            f"idle={len(self._idle)} in_use={counts.in_use} waiting={self._waiters.waiting} "
            f"min_size={self._min_size} max_size={self._max_size}>"
        )

    # -- lifecycle -----------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._state is not NEW:
            raise RuntimeError("a GuardedPool can be opened only once")
        self._driver.check_runtime()
        self._clock = resolve_clock()
        tg = anyio.create_task_group()
        await tg.__aenter__()
        self._tg = tg
        self._state = OPEN
        self._wake = anyio.Event()
        try:
            await _maintenance.open_min_size(self)
            tg.start_soon(_maintenance.maintain, self)
        except BaseException:
            self._state = CLOSED
            tg.cancel_scope.cancel()
            await tg.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await _maintenance.shutdown(self)
        tg = self._tg
        assert tg is not None
        tg.cancel_scope.cancel()
        # The body's own exception is not the task group's business: passing it in would
        # wrap it in an ExceptionGroup. Background tasks never raise.
        await tg.__aexit__(None, None, None)

    # -- checkout ------------------------------------------------------------------------

    def connection(self) -> _checkout.Checkout[C]:
        """``async with pool.connection() as conn:`` — the driver's connection, guarded.

        The connection is in autocommit mode; a transaction you open and leave open is
        rolled back on release. Statements are bounded by ``statement_timeout`` and by the
        remaining deadline. Raises `PoolExhaustedError`, `PoolClosedError`, the breaker's
        ``CircuitOpenError``, or the driver's error when no connection can be opened.
        """
        return _checkout.Checkout(self, False)

    async def run(
        self,
        fn: Callable[Concatenate[C, P], Awaitable[T]],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """Run ``await fn(conn, *args, **kwargs)`` in a transaction and commit it.

        On an error the transaction is rolled back and the connection goes back to the
        pool; transient errors (see `is_transient`) are retried by ``retry`` with jittered
        backoff, never past the caller's deadline. Other errors propagate at once. A
        connection lost during COMMIT raises `CommitOutcomeUnknownError` (not retried).
        ``fn`` may run several times: keep side effects outside the database idempotent.
        """
        retry = self._retry
        if retry is None:
            return await _checkout.transaction(self, fn, args, kwargs)
        return await retry.call(_checkout.transaction, self, fn, args, kwargs)

    async def _acquire(self) -> Connection[C]:
        return await _checkout.acquire(self)

    async def _release(self, connection: Connection[C], exc: BaseException | None) -> None:
        await _checkout.release(self, connection, exc)

    # -- observation ---------------------------------------------------------------------

    def statistics(self) -> PoolStatistics:
        """A snapshot of the pool's connections and counters."""
        counts = self._counts
        return PoolStatistics(
            size=counts.size,
            idle=len(self._idle),
            in_use=counts.in_use,
            opening=counts.opening,
            resetting=counts.resetting,
            waiting=self._waiters.waiting,
            min_size=self._min_size,
            max_size=self._max_size,
            max_queued=self._max_queued,
            acquired=counts.acquired,
            waited=counts.waited,
            max_wait=counts.max_wait,
            rejected=counts.rejected,
            timed_out=counts.timed_out,
            opened=counts.opened,
            open_failures=counts.open_failures,
            discarded=counts.discarded,
            recycled=counts.recycled,
            interrupted=counts.interrupted,
        )

    async def health(self, *, deep: bool = False) -> PoolHealth:
        """The pool's health; ``deep=True`` adds a time-bounded round trip to the database.

        The shallow check reads only the pool's own state (no I/O). The deep check borrows
        a connection (bypassing the breaker, within ``health_timeout``) and pings it; its
        result is cached for ``health_ttl`` seconds and concurrent deep checks share one
        round trip, so a storm of probes costs the database one query per TTL.
        """
        return await _health.check(self, deep)

    # -- moving connections between states (each keeps the counters in step) ------------

    def _put(self, connection: Connection[C]) -> None:
        """A clean connection is free: hand it to the oldest waiter, or make it idle."""
        counts = self._counts
        if self._state is not OPEN:
            counts.move(connection, GONE)
            self._close_soon(connection.conn, hard=False)
        elif self._waiters.waiting:
            counts.move(connection, IN_USE)
            self._waiters.hand_off(connection)
        else:
            counts.move(connection, IDLE)
            self._idle.append(connection)

    def _take_back(self, connection: Connection[C] | None) -> None:
        """A waiter handed ``connection`` gave up before it resumed: serve the next one."""
        assert connection is not None
        self._put(connection)

    def _checkin(self, connection: Connection[C]) -> None:
        """The fast path of a release: the connection is clean (and ``IN_USE``)."""
        now = self._clock()
        connection.last_used = now
        if now >= connection.expires:
            self._retire(connection, "lifetime")
        elif self._waiters.waiting or self._state is not OPEN:
            self._put(connection)
            self._changed()
        else:
            self._counts.in_use -= 1
            connection.state = IDLE
            self._idle.append(connection)

    def _discard(self, connection: Connection[C], reason: str, error: BaseException | None) -> None:
        """Throw an untrustworthy connection away, and replace it as needed."""
        self._counts.move(connection, GONE)
        self._counts.discarded += 1
        self._close_soon(connection.conn, hard=True)
        emit(self._listeners, ConnectionDiscarded(self._name, reason, error))
        self._replace()

    def _retire(self, connection: Connection[C], reason: str, *, replace: bool = True) -> None:
        """Close a healthy connection (idle too long, or too old)."""
        self._counts.move(connection, GONE)
        self._counts.recycled += 1
        self._close_soon(connection.conn, hard=False)
        emit(self._listeners, ConnectionRecycled(self._name, reason))
        if replace:
            self._replace()

    def _replace(self) -> None:
        _maintenance.grow(self)
        if self._counts.size < self._min_size and self._wake is not None:
            self._wake.set()
        self._changed()

    def _close_soon(self, conn: C, *, hard: bool) -> None:
        self._counts.closing += 1
        tg = self._tg
        assert tg is not None
        tg.start_soon(_maintenance.close_task, self, conn, hard)

    def _changed(self) -> None:
        """Wake whoever waits for the pool to settle (off the success path only)."""
        event = self._settled
        if event is not None:
            self._settled = None
            event.set()

    async def _wait_settled(self) -> None:
        event = self._settled
        if event is None:
            event = self._settled = anyio.Event()
        await event.wait()

    def _reject_closed(self) -> PoolClosedError:
        emit(self._listeners, CallRejected(self._name, "closed"))
        return PoolClosedError(self._name)

    def _new_connection(self, conn: C) -> Connection[C]:
        now = self._clock()
        lifetime = self._max_lifetime
        if lifetime is None:
            expires = math.inf
        else:
            expires = now + lifetime * (1.0 - LIFETIME_SPREAD * random.random())
        return Connection(conn, now, expires)

    def _classify(self, exc: BaseException) -> int:
        if isinstance(exc, ConnectTimeoutError):
            return CONNECTION | TRANSIENT
        return self._driver.classify(exc)


def _unopened_clock() -> float:
    raise RuntimeError("the pool is not open: use `async with pool:`")
