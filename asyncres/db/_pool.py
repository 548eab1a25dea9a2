"""GuardedPool: a connection pool that cannot wedge, leak, or outlive its caller's deadline."""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Concatenate, Generic, ParamSpec, Protocol, TypedDict, TypeVar

import anyio
import anyio.lowlevel

from .. import _validation
from .._backoff import EqualJitter, FullJitter
from .._breaker import CircuitBreaker
from .._clock import resolve_clock
from .._deadline import remaining
from .._events import CallRejected, Listener, emit
from .._retry import Retry
from ._driver import CONNECTION, TRANSIENT, Driver
from ._errors import (
    CommitOutcomeUnknownError,
    ConnectTimeoutError,
    PoolClosedError,
    PoolExhaustedError,
)
from ._events import ConnectionDiscarded, ConnectionFailed, ConnectionRecycled, StatementInterrupted

if TYPE_CHECKING:
    from typing import Self

    from anyio.abc import TaskGroup

__all__ = ["GuardedPool", "PoolHealth", "PoolOptions", "PoolStatistics"]

C = TypeVar("C")
T = TypeVar("T")
P = ParamSpec("P")

_DEFAULT: Any = object()  # sentinel: "build the documented default"

#: Backoff of the maintenance task while it cannot open ``min_size`` connections.
_REOPEN_BACKOFF = FullJitter(base=0.1, cap=5.0)
#: A connection's lifetime is shortened by up to this fraction, so that connections opened
#: together are not all recycled in the same instant (HikariCP subtracts up to 2.5 %).
_LIFETIME_SPREAD = 0.1
#: Default queue bound per connection. By Little's law a caller at the back of the queue
#: waits about this many statement-times (20 x 5 ms = 100 ms for a typical OLTP statement);
#: a deeper queue only holds callers that will miss their deadline anyway.
_QUEUED_PER_CONNECTION = 20
#: The default breaker: consecutive connection failures that open it, and its recovery
#: times (equal jitter keeps at least half of each step, so a dead database is not probed
#: in a tight loop, and stays spread so that many pools do not probe in step).
_BREAKER_FAILURES = 5
_BREAKER_RECOVERY = EqualJitter(base=1.0, cap=10.0)
#: The maintenance task looks at idle connections at least this often (seconds).
_MAINTENANCE_PERIOD = 30.0


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


@dataclass(frozen=True, slots=True)
class PoolStatistics:
    """A snapshot of a `GuardedPool`: its connections now, and counters since it opened.

    ``size`` counts every connection the pool owns or is opening:
    ``size == idle + in_use + opening + recovering``.
    """

    __module__ = "asyncres.db"

    #: Connections owned, including those being opened.
    size: int
    #: Connections ready in the pool.
    idle: int
    #: Connections checked out (or handed to a waiter that has not resumed yet).
    in_use: int
    #: Connections being opened.
    opening: int
    #: Connections being rolled back after a failure or cancellation, in the background.
    recovering: int
    #: Callers waiting for a connection.
    waiting: int
    min_size: int
    max_size: int
    max_queued: int
    #: Successful checkouts.
    acquired: int
    #: Checkouts that had to wait for a connection.
    waited: int
    #: The longest time a checkout waited, in seconds.
    max_wait: float
    #: Callers refused at once because ``max_queued`` callers were already waiting.
    rejected: int
    #: Callers that waited ``acquire_timeout`` in vain.
    timed_out: int
    #: Connections opened, and attempts to open one that failed.
    opened: int
    open_failures: int
    #: Connections thrown away as untrustworthy, and healthy ones closed by maintenance.
    discarded: int
    recycled: int
    #: Checkouts abandoned by a cancelled or timed-out caller, cleaned up in the background.
    interrupted: int


@dataclass(frozen=True, slots=True)
class PoolHealth:
    """The answer of `GuardedPool.health`.

    ``status`` is ``"healthy"``, ``"degraded"`` (serving, but saturated or below
    ``min_size``) or ``"unhealthy"`` (closed, circuit open, cannot connect, or the deep
    check failed); ``ok`` is true unless unhealthy (use it for readiness probes).
    ``latency`` is the deep check's round trip in seconds; ``checked_at`` its time on the
    loop clock; ``cached`` says the deep result came from the cache (``health_ttl``).
    """

    __module__ = "asyncres.db"

    status: str
    reason: str
    statistics: PoolStatistics
    breaker: str | None = None
    deep: bool = False
    latency: float | None = None
    error: str | None = None
    checked_at: float | None = None
    cached: bool = False

    @property
    def ok(self) -> bool:
        """True unless the status is ``"unhealthy"``."""
        return self.status != "unhealthy"

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (for a health endpoint)."""
        stats = self.statistics
        return {
            "status": self.status,
            "ok": self.ok,
            "reason": self.reason,
            "breaker": self.breaker,
            "deep": self.deep,
            "latency": self.latency,
            "error": self.error,
            "cached": self.cached,
            "pool": {f: getattr(stats, f) for f in stats.__dataclass_fields__},
        }


@dataclass(frozen=True, slots=True)
class _DeepResult:
    at: float
    latency: float | None
    error: str | None
    status: str


class _Holder(Generic[C]):
    """One pooled connection and its bookkeeping."""

    __slots__ = ("conn", "created", "expires", "last_used")

    def __init__(self, conn: C, now: float, expires: float) -> None:
        self.conn = conn
        self.created = now
        self.last_used = now
        self.expires = expires


class _Waiter(Generic[C]):
    __slots__ = ("error", "event", "holder")

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.holder: _Holder[C] | None = None
        self.error: Exception | None = None


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
    in the database too; a cancelled or timed-out caller's connection is stopped, rolled
    back and returned, or discarded, never leaked; broken connections are replaced and
    ``min_size`` kept alive; idle connections are pinged before reuse; a circuit breaker
    makes callers fail fast while the database is unreachable.

    Usable on asyncio and trio as far as the driver allows (aiosqlite and asyncpg are
    asyncio-only). Not thread-safe: use one pool from one event loop.
    """

    __module__ = "asyncres.db"

    def __init__(
        self,
        driver: Driver[C],
        *,
        min_size: int = 1,
        max_size: int = 10,
        acquire_timeout: float = 5.0,
        max_queued: int | None = None,
        statement_timeout: float | None = 30.0,
        connect_timeout: float = 5.0,
        retry: Retry | None = _DEFAULT,
        breaker: BreakerLike | None = _DEFAULT,
        ping_after: float | None = 1.0,
        health_timeout: float = 1.0,
        health_ttl: float = 1.0,
        max_idle: float = 300.0,
        max_lifetime: float | None = 1800.0,
        recovery_timeout: float = 2.0,
        close_timeout: float = 10.0,
        name: str | None = None,
        listeners: Iterable[Listener] = (),
    ) -> None:
        self._driver = driver
        self.min_size = _validation.count("min_size", min_size, minimum=0)
        self.max_size = _validation.count("max_size", max_size, minimum=1)
        if self.min_size > self.max_size:
            raise ValueError(f"`min_size` must be <= `max_size` ({max_size}), got {min_size}")
        self.acquire_timeout = _validation.non_negative("acquire_timeout", acquire_timeout)
        if max_queued is None:
            max_queued = _QUEUED_PER_CONNECTION * self.max_size
        self.max_queued = _validation.count("max_queued", max_queued, minimum=0)
        statement_timeout = _validation.optional_limit("statement_timeout", statement_timeout)
        self.statement_timeout = statement_timeout
        driver.configure(statement_timeout=statement_timeout)
        self.connect_timeout = _validation.finite_positive("connect_timeout", connect_timeout)
        self.ping_after = _validation.optional_limit("ping_after", ping_after, zero_ok=True)
        self.health_timeout = _validation.finite_positive("health_timeout", health_timeout)
        self.health_ttl = _validation.non_negative("health_ttl", health_ttl)
        self.max_idle = _validation.positive("max_idle", max_idle)
        self.max_lifetime = _validation.optional_limit("max_lifetime", max_lifetime)
        self.recovery_timeout = _validation.finite_positive("recovery_timeout", recovery_timeout)
        self.close_timeout = _validation.non_negative("close_timeout", close_timeout)
        self.name = name
        self._listeners = tuple(listeners)
        if retry is _DEFAULT:
            retry = default_retry(self)
        elif retry is not None and not isinstance(retry, Retry):
            raise ValueError(f"`retry` must be an asyncres.Retry or None, got {retry!r}")
        self.retry = retry
        if breaker is _DEFAULT:
            breaker = default_breaker(self)
        elif breaker is not None and not (
            callable(getattr(breaker, "__aenter__", None))
            and callable(getattr(breaker, "__aexit__", None))
        ):
            raise ValueError(
                f"`breaker` must be a circuit breaker (async with breaker:), got {breaker!r}"
            )
        self.breaker = breaker

        # State. size == idle + in_use + opening + recovering, at every await point.
        self._idle: list[_Holder[C]] = []
        self._waiters: deque[_Waiter[C]] = deque()
        self._size = 0
        self._in_use = 0
        self._opening = 0
        self._recovering = 0
        self._closing = 0  # connections being closed in the background (not in size)
        self._state = "new"  # new -> open -> closing -> closed
        self._tg: TaskGroup | None = None
        self._clock: Callable[[], float] = _unopened_clock
        self._wake: anyio.Event | None = None
        self._settled: anyio.Event | None = None
        self._last_connect_error: BaseException | None = None
        self._deep: _DeepResult | None = None
        self._deep_running: anyio.Event | None = None
        # Counters.
        self._acquired = 0
        self._waited = 0
        self._max_wait = 0.0
        self._rejected = 0
        self._timed_out = 0
        self._opened = 0
        self._open_failures = 0
        self._discarded = 0
        self._recycled = 0
        self._interrupted = 0

    def __repr__(self) -> str:
        name = f" {self.name!r}" if self.name else ""
        return (
            f"<GuardedPool{name} {self._driver.name} {self._state} size={self._size} "
            f"idle={len(self._idle)} in_use={self._in_use} waiting={len(self._waiters)} "
            f"min_size={self.min_size} max_size={self.max_size}>"
        )

    # -- lifecycle -----------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._state != "new":
            raise RuntimeError("a GuardedPool can be opened only once")
        self._driver.check_runtime()
        self._clock = resolve_clock()
        tg = anyio.create_task_group()
        await tg.__aenter__()
        self._tg = tg
        self._state = "open"
        self._wake = anyio.Event()
        try:
            # Open min_size connections now: a wrong DSN fails here, not on first use.
            opened: list[C] = []
            failures: list[BaseException] = []

            async def open_one() -> None:
                try:
                    opened.append(await self._connect())
                except Exception as exc:
                    failures.append(exc)

            self._size = self._opening = self.min_size
            async with anyio.create_task_group() as starters:
                for _ in range(self.min_size):
                    starters.start_soon(open_one)
            self._size = self._opening = 0
            if failures:
                for conn in opened:
                    await self._close_now(conn, hard=False)
                raise failures[0]
            now = self._clock()
            for conn in opened:
                self._size += 1
                self._opened += 1
                self._idle.append(_Holder(conn, now, self._expiry(now)))
            tg.start_soon(self._maintain)
        except BaseException:
            self._state = "closed"
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
        await self._shutdown()
        tg = self._tg
        assert tg is not None
        tg.cancel_scope.cancel()
        # The body's own exception is not the task group's business: passing it in would
        # wrap it in an ExceptionGroup. Background tasks never raise.
        await tg.__aexit__(None, None, None)

    async def _shutdown(self) -> None:
        """Refuse new work, let checkouts and recoveries finish (bounded), close all."""
        self._state = "closing"
        error = PoolClosedError(self.name)
        while self._waiters:
            waiter = self._waiters.popleft()
            waiter.error = error
            waiter.event.set()
        with anyio.move_on_after(self.close_timeout, shield=True):
            while self._in_use or self._recovering or self._opening or self._closing:
                await self._wait_settled()
        self._state = "closed"
        idle, self._idle = self._idle, []
        self._size -= len(idle)
        with anyio.CancelScope(shield=True):
            for holder in idle:
                with anyio.move_on_after(self.close_timeout):
                    await self._close_now(holder.conn, hard=False)

    async def _wait_settled(self) -> None:
        event = self._settled
        if event is None:
            event = self._settled = anyio.Event()
        await event.wait()

    def _changed(self) -> None:
        """Wake whoever waits for the pool to settle (off the success path only)."""
        event = self._settled
        if event is not None:
            self._settled = None
            event.set()

    # -- checkout ------------------------------------------------------------------------

    def connection(self) -> _Checkout[C]:
        """``async with pool.connection() as conn:`` — the driver's connection, guarded.

        The connection is in autocommit mode; a transaction you open and leave open is
        rolled back on release. Statements are bounded by ``statement_timeout`` and by the
        remaining deadline. Raises `PoolExhaustedError`, `PoolClosedError`, the breaker's
        ``CircuitOpenError``, or the driver's error when no connection can be opened.
        """
        return _Checkout(self, False)

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
        retry = self.retry
        if retry is None:
            return await self._transaction(fn, args, kwargs)
        return await retry.call(self._transaction, fn, args, kwargs)

    async def _transaction(
        self,
        fn: Callable[..., Awaitable[T]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> T:
        committing: BaseException | None = None
        try:
            async with _Checkout(self, True) as conn:
                result = await fn(conn, *args, **kwargs)
                try:
                    await self._driver.commit(conn)
                except Exception as exc:
                    # A lost connection or a client-side timeout leaves the outcome open.
                    if self._classify(exc) & CONNECTION or type(exc) is TimeoutError:
                        committing = exc
                    raise
        except Exception as exc:
            if exc is committing:
                raise CommitOutcomeUnknownError(
                    "the connection failed during COMMIT; the transaction may or may not "
                    f"have committed ({type(exc).__name__}: {exc})"
                ) from exc
            raise
        return result

    async def _acquire(self) -> _Holder[C]:
        """A connection for the caller: idle (pinged if idle long), or wait for one."""
        if self._state != "open":
            self._reject_closed()
        idle = self._idle
        while idle:
            holder = idle.pop()
            self._in_use += 1
            ping_after = self.ping_after
            if (
                ping_after is not None
                and self._clock() - holder.last_used > ping_after
                and not await self._ping(holder)
            ):
                continue
            self._acquired += 1
            return holder
        return await self._wait()

    async def _ping(self, holder: _Holder[C]) -> bool:
        """Pre-ping a connection that sat idle; discard it (False) if it does not answer."""
        try:
            with anyio.move_on_after(self.health_timeout) as scope:
                await self._driver.ping(holder.conn)
        except Exception as exc:
            self._in_use -= 1
            self._discard(holder, "ping_failed", exc)
            return False
        except BaseException:
            self._in_use -= 1
            self._recover_soon(holder)
            raise
        if scope.cancelled_caught:
            self._in_use -= 1
            self._discard(holder, "ping_failed", None)
            return False
        return True

    async def _wait(self) -> _Holder[C]:
        waiters = self._waiters
        if self._size >= self.max_size and len(waiters) - self._opening >= self.max_queued:
            # Yield once: a caller that retries a refusal in a loop must not starve the
            # tasks that would free a connection.
            await anyio.lowlevel.checkpoint()
            self._rejected += 1
            emit(self._listeners, CallRejected(self.name, "pool_queue_full"))
            raise PoolExhaustedError(
                self.name, max_size=self.max_size, max_queued=self.max_queued, reason="queue_full"
            )
        waiter: _Waiter[C] = _Waiter()
        waiters.append(waiter)
        self._grow()
        started = self._clock()
        try:
            with anyio.move_on_after(self.acquire_timeout):
                await waiter.event.wait()
        except BaseException:
            self._abandon(waiter)
            raise
        waited = self._clock() - started
        self._waited += 1
        if waited > self._max_wait:
            self._max_wait = waited
        holder = waiter.holder
        if holder is not None:
            self._acquired += 1
            return holder
        error = waiter.error
        if error is not None:
            if isinstance(error, PoolClosedError):
                emit(self._listeners, CallRejected(self.name, "pool_closed"))
            raise error
        self._abandon(waiter)
        self._timed_out += 1
        emit(self._listeners, CallRejected(self.name, "pool_acquire_timeout"))
        raise PoolExhaustedError(
            self.name,
            max_size=self.max_size,
            max_queued=self.max_queued,
            reason="acquire_timeout",
            waited=waited,
        )

    def _abandon(self, waiter: _Waiter[C]) -> None:
        """A waiter gave up (cancelled or timed out): hand back what it was given."""
        holder = waiter.holder
        if holder is not None:
            waiter.holder = None
            self._in_use -= 1
            self._put(holder)
        elif waiter.error is None:
            try:
                self._waiters.remove(waiter)
            except ValueError:  # pragma: no cover - defensive
                pass

    def _reject_closed(self) -> None:
        emit(self._listeners, CallRejected(self.name, "pool_closed"))
        raise PoolClosedError(self.name)

    def _put(self, holder: _Holder[C]) -> None:
        """A clean connection is free: hand it to the oldest waiter, or make it idle."""
        if self._state != "open":
            self._size -= 1
            self._close_soon(holder.conn, hard=False)
            return
        waiters = self._waiters
        if waiters:
            waiter = waiters.popleft()
            waiter.holder = holder
            self._in_use += 1
            waiter.event.set()
            return
        self._idle.append(holder)

    def _checkin(self, holder: _Holder[C]) -> None:
        """The fast path of a release: the connection is clean."""
        self._in_use -= 1
        now = self._clock()
        holder.last_used = now
        if now >= holder.expires:
            self._retire(holder, "lifetime")
            return
        waiters = self._waiters
        if waiters or self._state != "open":
            self._put(holder)
            self._changed()
            return
        self._idle.append(holder)

    async def _release(self, holder: _Holder[C], exc: BaseException | None) -> None:
        """End a checkout: clean connections go back at once, others are recovered."""
        driver = self._driver
        conn = holder.conn
        driver.release(conn)
        if self._state == "closed":
            # Returned after the pool closed (its close_timeout passed): just close it.
            self._in_use -= 1
            self._size -= 1
            with anyio.move_on_after(self.close_timeout, shield=True):
                await self._close_now(conn, hard=True)
            return
        if exc is None or isinstance(exc, Exception):
            if exc is not None and (self._classify(exc) & CONNECTION or driver.is_broken(conn)):
                self._in_use -= 1
                self._discard(holder, "broken", exc)
            elif driver.needs_recovery(conn):
                await self._recover_inline(holder)
            else:
                self._checkin(holder)
        else:
            # Cancelled (or KeyboardInterrupt...): a statement may still be running. The
            # caller must not wait for the cleanup; the pool does it in the background.
            self._in_use -= 1
            self._recover_soon(holder)

    async def _recover_inline(self, holder: _Holder[C]) -> None:
        try:
            with anyio.move_on_after(self.recovery_timeout) as scope:
                await self._driver.recover(holder.conn, abandoned=False)
        except Exception as exc:
            self._in_use -= 1
            self._discard(holder, "recovery_failed", exc)
            return
        except BaseException:
            self._in_use -= 1
            self._recover_soon(holder)
            raise
        if scope.cancelled_caught or self._driver.is_broken(holder.conn):
            self._in_use -= 1
            self._discard(holder, "recovery_failed", None)
        else:
            self._checkin(holder)

    def _recover_soon(self, holder: _Holder[C]) -> None:
        """Stop, roll back and return an abandoned connection in the background."""
        self._recovering += 1
        self._interrupted += 1
        tg = self._tg
        assert tg is not None
        tg.start_soon(self._recover, holder)

    async def _recover(self, holder: _Holder[C]) -> None:
        driver = self._driver
        conn = holder.conn
        ok = interrupted = False
        error: BaseException | None = None
        try:
            with anyio.move_on_after(self.recovery_timeout):
                interrupted = await driver.recover(conn, abandoned=True)
                ok = not driver.is_broken(conn)
        except Exception as exc:
            error = exc
        except BaseException:
            self._recovering -= 1
            self._size -= 1
            self._close_soon(conn, hard=True)
            raise
        self._recovering -= 1
        if interrupted:
            emit(self._listeners, StatementInterrupted(self.name))
        if ok:
            holder.last_used = self._clock()
            self._put(holder)
        else:
            self._discard(holder, "recovery_failed", error)
        self._changed()

    # -- opening, discarding, maintenance ------------------------------------------------

    def _classify(self, exc: BaseException) -> int:
        if isinstance(exc, ConnectTimeoutError):
            return CONNECTION | TRANSIENT
        return self._driver.classify(exc)

    def _expiry(self, now: float) -> float:
        lifetime = self.max_lifetime
        if lifetime is None:
            return math.inf
        return now + lifetime * (1.0 - _LIFETIME_SPREAD * random.random())

    async def _connect(self) -> C:
        """Open one connection within ``connect_timeout``."""
        try:
            with anyio.fail_after(self.connect_timeout):
                conn = await self._driver.connect()
        except TimeoutError as exc:
            if isinstance(exc, ConnectTimeoutError):
                raise
            raise ConnectTimeoutError(self.connect_timeout) from exc
        self._last_connect_error = None
        return conn

    def _grow(self) -> None:
        """Start opening connections for waiters that no release or opener will serve."""
        tg = self._tg
        assert tg is not None
        while (
            self._opening < len(self._waiters)
            and self._size < self.max_size
            and self._state == "open"
        ):
            self._size += 1
            self._opening += 1
            tg.start_soon(self._open_for_waiter)

    async def _open_for_waiter(self) -> None:
        try:
            conn = await self._connect()
        except Exception as exc:
            self._size -= 1
            self._opening -= 1
            self._open_failures += 1
            self._last_connect_error = exc
            emit(self._listeners, ConnectionFailed(self.name, exc, False))
            # The oldest waiter learns why: with the database down, waiting longer helps
            # nobody (its retry, if any, backs off and tries again).
            if self._waiters:
                waiter = self._waiters.popleft()
                waiter.error = exc
                waiter.event.set()
            self._changed()
            return
        except BaseException:
            self._size -= 1
            self._opening -= 1
            raise
        self._opening -= 1
        self._opened += 1
        now = self._clock()
        self._put(_Holder(conn, now, self._expiry(now)))
        self._changed()

    def _discard(self, holder: _Holder[C], reason: str, error: BaseException | None) -> None:
        """Throw an untrustworthy connection away (the caller already left ``in_use``)."""
        self._size -= 1
        self._discarded += 1
        self._close_soon(holder.conn, hard=True)
        emit(self._listeners, ConnectionDiscarded(self.name, reason, error))
        self._replace()

    def _retire(self, holder: _Holder[C], reason: str) -> None:
        """Close a healthy connection (idle too long, or too old)."""
        self._size -= 1
        self._recycled += 1
        self._close_soon(holder.conn, hard=False)
        emit(self._listeners, ConnectionRecycled(self.name, reason))
        self._replace()

    def _replace(self) -> None:
        self._grow()
        if self._size < self.min_size and self._wake is not None:
            self._wake.set()
        self._changed()

    def _close_soon(self, conn: C, *, hard: bool) -> None:
        self._closing += 1
        tg = self._tg
        assert tg is not None
        tg.start_soon(self._close_task, conn, hard)

    async def _close_task(self, conn: C, hard: bool) -> None:
        try:
            # Shielded: closing the pool must not abandon a half-closed connection.
            with anyio.move_on_after(self.close_timeout, shield=True):
                await self._close_now(conn, hard=hard)
        finally:
            self._closing -= 1
            self._changed()

    async def _close_now(self, conn: C, *, hard: bool) -> None:
        try:
            await self._driver.close(conn, hard=hard)
        except Exception:
            pass  # closing a broken connection may fail; it is gone either way

    async def _maintain(self) -> None:
        """Keep ``min_size`` connections, retire idle and old ones. Runs until close."""
        delays = None
        while self._state == "open":
            self._wake = wake = anyio.Event()
            if self._size < self.min_size:
                self._size += 1
                self._opening += 1
                try:
                    conn = await self._connect()
                except Exception as exc:
                    self._size -= 1
                    self._opening -= 1
                    self._open_failures += 1
                    self._last_connect_error = exc
                    emit(self._listeners, ConnectionFailed(self.name, exc, True))
                    self._changed()
                    if delays is None:
                        delays = _REOPEN_BACKOFF.delays()
                    await anyio.sleep(next(delays))
                    continue
                except BaseException:
                    self._size -= 1
                    self._opening -= 1
                    raise
                delays = None
                self._opening -= 1
                self._opened += 1
                now = self._clock()
                self._put(_Holder(conn, now, self._expiry(now)))
                self._changed()
                continue
            # Connections that become idle later are due later than any deadline computed
            # now, except lifetimes of connections now in use: look again at least this often.
            next_due = min(self._expire_idle(), _MAINTENANCE_PERIOD)
            with anyio.move_on_after(next_due):
                await wake.wait()

    def _expire_idle(self) -> float:
        """Retire idle connections past ``max_idle`` (above ``min_size``) or lifetime.

        Returns the seconds until the next connection is due.
        """
        now = self._clock()
        due = math.inf
        keep: list[_Holder[C]] = []
        # Oldest-used first: the idle list is a stack, its bottom has waited longest.
        for holder in self._idle:
            if now >= holder.expires:
                self._size -= 1
                self._recycled += 1
                self._close_soon(holder.conn, hard=False)
                emit(self._listeners, ConnectionRecycled(self.name, "lifetime"))
                continue
            idle_until = holder.last_used + self.max_idle
            if now >= idle_until and self._size > self.min_size:
                self._size -= 1
                self._recycled += 1
                self._close_soon(holder.conn, hard=False)
                emit(self._listeners, ConnectionRecycled(self.name, "idle"))
                continue
            keep.append(holder)
            due = min(due, holder.expires)
            if self._size > self.min_size:
                due = min(due, idle_until)
        if len(keep) != len(self._idle):
            self._idle[:] = keep
            self._changed()
        return max(0.0, due - now)

    # -- observation ---------------------------------------------------------------------

    def statistics(self) -> PoolStatistics:
        """A snapshot of the pool's connections and counters."""
        return PoolStatistics(
            size=self._size,
            idle=len(self._idle),
            in_use=self._in_use,
            opening=self._opening,
            recovering=self._recovering,
            waiting=len(self._waiters),
            min_size=self.min_size,
            max_size=self.max_size,
            max_queued=self.max_queued,
            acquired=self._acquired,
            waited=self._waited,
            max_wait=self._max_wait,
            rejected=self._rejected,
            timed_out=self._timed_out,
            opened=self._opened,
            open_failures=self._open_failures,
            discarded=self._discarded,
            recycled=self._recycled,
            interrupted=self._interrupted,
        )

    async def health(self, *, deep: bool = False) -> PoolHealth:
        """The pool's health; ``deep=True`` adds a time-bounded round trip to the database.

        The shallow check reads only the pool's own state (no I/O). The deep check borrows
        a connection (bypassing the breaker, within ``health_timeout``) and pings it; its
        result is cached for ``health_ttl`` seconds and concurrent deep checks share one
        round trip, so a storm of probes costs the database one query per TTL.
        """
        if not deep:
            return self._shallow()
        result = self._deep
        now = anyio.current_time()
        cached = True
        if result is None or now - result.at >= self.health_ttl:
            running = self._deep_running
            if running is not None:
                await running.wait()
            else:
                self._deep_running = anyio.Event()
                try:
                    self._deep = await self._deep_check()
                finally:
                    event, self._deep_running = self._deep_running, None
                    event.set()
                cached = False
            result = self._deep
            assert result is not None
        shallow = self._shallow()
        if result.status == "healthy" or _RANK[shallow.status] > _RANK[result.status]:
            status, reason = shallow.status, shallow.reason
        else:
            status, reason = result.status, f"deep check: {result.error}"
        return PoolHealth(
            status=status,
            reason=reason,
            statistics=shallow.statistics,
            breaker=shallow.breaker,
            deep=True,
            latency=result.latency,
            error=result.error,
            checked_at=result.at,
            cached=cached,
        )

    async def _deep_check(self) -> _DeepResult:
        started = anyio.current_time()
        error: str | None = None
        status = "healthy"
        try:
            with anyio.fail_after(self.health_timeout):
                holder = await self._acquire()
                await self._release_after(holder, self._driver.ping(holder.conn))
        except PoolExhaustedError as exc:
            status, error = "degraded", f"{type(exc).__name__}: {exc}"
        except Exception as exc:
            status = "unhealthy"
            if type(exc) is TimeoutError:  # our own fail_after, not a driver's timeout
                error = f"no answer within health_timeout={self.health_timeout:g}s"
            else:
                error = f"{type(exc).__name__}: {exc}"
        latency = anyio.current_time() - started if status == "healthy" else None
        return _DeepResult(started, latency, error, status)

    async def _release_after(self, holder: _Holder[C], step: Awaitable[None]) -> None:
        try:
            await step
        except BaseException as exc:
            await self._release(holder, exc)
            raise
        await self._release(holder, None)

    def _shallow(self) -> PoolHealth:
        stats = self.statistics()
        breaker_state = _breaker_state(self.breaker)
        if self._state != "open":
            status, reason = "unhealthy", f"pool is {self._state}"
        elif breaker_state in _BREAKER_DOWN:
            status, reason = "unhealthy", f"circuit breaker is {breaker_state}"
        elif stats.size == 0 and self._last_connect_error is not None:
            error = self._last_connect_error
            status = "unhealthy"
            reason = f"cannot connect: {type(error).__name__}: {error}"
        elif stats.waiting:
            status, reason = "degraded", f"saturated: {stats.waiting} callers waiting"
        elif stats.size < self.min_size:
            status, reason = "degraded", f"{stats.size} connections, below min_size"
        else:
            status, reason = "healthy", "ok"
        return PoolHealth(status=status, reason=reason, statistics=stats, breaker=breaker_state)


_RANK = {"healthy": 0, "degraded": 1, "unhealthy": 2}


class _Checkout(Generic[C]):
    """``async with pool.connection() as conn:`` (and the body of `GuardedPool.run`)."""

    __slots__ = ("_holder", "_pool", "_transaction")

    def __init__(self, pool: GuardedPool[C], transaction: bool) -> None:
        self._pool = pool
        self._transaction = transaction
        self._holder: _Holder[C] | None = None

    async def __aenter__(self) -> C:
        pool = self._pool
        breaker = pool.breaker
        if breaker is not None:
            await breaker.__aenter__()
        try:
            # The fast path, inline: a recently used idle connection.
            idle = pool._idle
            holder = idle[-1] if idle and pool._state == "open" else None
            if holder is not None and (
                pool.ping_after is None or pool._clock() - holder.last_used <= pool.ping_after
            ):
                idle.pop()
                pool._in_use += 1
                pool._acquired += 1
            else:
                holder = await pool._acquire()
            try:
                if self._transaction:
                    await pool._driver.begin(holder.conn, remaining())
                else:
                    pending = pool._driver.prepare(holder.conn, remaining())
                    if pending is not None:
                        await pending
            except BaseException as exc:
                await pool._release(holder, exc)
                raise
        except BaseException as exc:
            if breaker is not None:
                await breaker.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        self._holder = holder
        return holder.conn

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        holder = self._holder
        assert holder is not None
        self._holder = None
        pool = self._pool
        try:
            if (
                exc is None
                and pool._state == "open"
                and not pool._driver.needs_recovery(holder.conn)
            ):
                pool._driver.release(holder.conn)
                pool._checkin(holder)  # the fast path
            else:
                await pool._release(holder, exc)
        finally:
            breaker = pool.breaker
            if breaker is not None:
                await breaker.__aexit__(exc_type, exc, tb)


def _unopened_clock() -> float:
    raise RuntimeError("the pool is not open: use `async with pool:`")


def _breaker_state(breaker: object) -> str | None:
    """The breaker's state as a word (``"closed"``, ``"open"``, ``"half_open"``...)."""
    if breaker is None:
        return None
    state = getattr(breaker, "state", None)
    if state is None:
        return None
    value = getattr(state, "value", state)
    return str(value).lower()


_BREAKER_DOWN = frozenset({"open", "isolated"})


def default_retry(pool: GuardedPool[Any]) -> Retry:
    """The retry `GuardedPool.run` uses unless told otherwise.

    3 attempts (the SRE book's per-request limit), full jitter from 50 ms capped at 2 s
    (database conflicts clear in milliseconds), retrying only the driver's transient
    errors, with a `RetryBudget` of its own (at most 20 % extra load in an outage).
    """
    return Retry(
        on=_ErrorKind(pool, TRANSIENT, "transient errors"),
        attempts=3,
        backoff=FullJitter(base=0.05, cap=2.0),
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
        failure_threshold=_BREAKER_FAILURES,
        recovery_backoff=_BREAKER_RECOVERY,
        on=_ErrorKind(pool, CONNECTION, "connection errors"),
        name=pool.name,
        listeners=pool._listeners,
    )
