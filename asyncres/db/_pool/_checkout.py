"""The checkout: leasing a connection to a caller, and getting it back clean.

``async with pool.connection() as conn:`` (and each attempt of ``pool.run``) is a `Checkout`.
A connection comes from the idle stack (pinged when it sat idle long) or, through the
shared `WaiterQueue`, from a release or a new connection. On release a clean connection
goes straight back; one left mid-transaction is reset (rolled back) within
``reset_timeout``; one whose caller was cancelled is reset in the background, so the caller
never waits for the clean-up; an untrustworthy one is discarded.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import anyio
import anyio.lowlevel

from ..._deadline import remaining
from ..._events import CallRejected, emit
from .._driver import CONNECTION
from .._errors import CommitOutcomeUnknownError, PoolClosedError, PoolExhaustedError
from .._events import StatementInterrupted
from . import _maintenance
from ._state import CLOSED, GONE, IN_USE, OPEN, RESETTING, Connection

if TYPE_CHECKING:
    from ._pool import GuardedPool

__all__ = ["Checkout", "acquire", "release", "transaction"]

C = TypeVar("C")
T = TypeVar("T")


class Checkout(Generic[C]):
    """``async with pool.connection() as conn:`` (and the body of `GuardedPool.run`)."""

    __slots__ = ("_connection", "_pool", "_transaction")

    def __init__(self, pool: GuardedPool[C], transaction: bool) -> None:
        self._pool = pool
        self._transaction = transaction
        self._connection: Connection[C] | None = None

    async def __aenter__(self) -> C:
        pool = self._pool
        breaker = pool._breaker
        if breaker is not None:
            await breaker.__aenter__()
        try:
            # The fast path, inline: a recently used idle connection.
            idle = pool._idle
            connection = idle[-1] if idle and pool._state is OPEN else None
            if connection is not None and (
                pool._ping_after is None or pool._clock() - connection.last_used <= pool._ping_after
            ):
                idle.pop()
                connection.state = IN_USE
                counts = pool._counts
                counts.in_use += 1
                counts.acquired += 1
            else:
                connection = await acquire(pool)
            try:
                if self._transaction:
                    await pool._driver.begin(connection.conn, remaining())
                else:
                    pending = pool._driver.prepare(connection.conn, remaining())
                    if pending is not None:
                        await pending
            except BaseException as exc:
                await release(pool, connection, exc)
                raise
        except BaseException as exc:
            if breaker is not None:
                await breaker.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        self._connection = connection
        return connection.conn

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        connection = self._connection
        assert connection is not None
        self._connection = None
        pool = self._pool
        try:
            if (
                exc is None
                and pool._state is OPEN
                and not pool._driver.needs_reset(connection.conn)
            ):
                pool._driver.release(connection.conn)
                pool._checkin(connection)  # the fast path
            else:
                await release(pool, connection, exc)
        finally:
            breaker = pool._breaker
            if breaker is not None:
                await breaker.__aexit__(exc_type, exc, tb)


async def transaction(
    pool: GuardedPool[Any],
    fn: Callable[..., Awaitable[T]],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> T:
    """One attempt of `GuardedPool.run`: check out, run ``fn`` in a transaction, commit."""
    committing: BaseException | None = None
    try:
        async with Checkout(pool, True) as conn:
            result = await fn(conn, *args, **kwargs)
            try:
                await pool._driver.commit(conn)
            except Exception as exc:
                # A lost connection or a client-side timeout leaves the outcome open.
                if pool._classify(exc) & CONNECTION or type(exc) is TimeoutError:
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


# -- getting a connection ----------------------------------------------------------------


async def acquire(pool: GuardedPool[C]) -> Connection[C]:
    """A connection for the caller: idle (pinged if idle long), or wait for one."""
    if pool._state is not OPEN:
        raise pool._reject_closed()
    idle = pool._idle
    counts = pool._counts
    while idle:
        connection = idle.pop()
        counts.move(connection, IN_USE)
        ping_after = pool._ping_after
        if (
            ping_after is not None
            and pool._clock() - connection.last_used > ping_after
            and not await _ping(pool, connection)
        ):
            continue
        counts.acquired += 1
        return connection
    return await _wait(pool)


async def _ping(pool: GuardedPool[C], connection: Connection[C]) -> bool:
    """Pre-ping a connection that sat idle; discard it (False) if it does not answer."""
    try:
        with anyio.move_on_after(pool._health_timeout) as scope:
            await pool._driver.ping(connection.conn)
    except Exception as exc:
        pool._discard(connection, "ping_failed", exc)
        return False
    except BaseException:
        reset_soon(pool, connection)
        raise
    if scope.cancelled_caught:
        pool._discard(connection, "ping_failed", None)
        return False
    return True


async def _wait(pool: GuardedPool[C]) -> Connection[C]:
    """Queue for a connection from a release or a new one, within ``acquire_timeout``."""
    queue = pool._waiters
    counts = pool._counts
    if counts.size >= pool._max_size and queue.waiting - counts.opening >= pool._max_queued:
        # Yield once: a caller that retries a refusal in a loop must not starve the
        # tasks that would free a connection.
        await anyio.lowlevel.checkpoint()
        counts.rejected += 1
        emit(pool._listeners, CallRejected(pool._name, "queue_full"))
        raise PoolExhaustedError(
            pool._name, max_size=pool._max_size, max_queued=pool._max_queued, reason="queue_full"
        )
    waiter = queue.enqueue()
    _maintenance.grow(pool)
    started = pool._clock()  # the loop's clock: the queue's deadline is on it too
    try:
        served = await queue.wait(waiter, started + pool._acquire_timeout)
    except BaseException as exc:
        if exc is not waiter.error:
            raise  # cancelled: the queue has withdrawn the waiter (nothing leaks)
        # Rejected: the pool closed, or opening a connection for it failed.
        counts.note_wait(pool._clock() - started)
        if isinstance(exc, PoolClosedError):
            emit(pool._listeners, CallRejected(pool._name, "closed"))
        raise
    waited = pool._clock() - started
    counts.note_wait(waited)
    if served:
        connection = waiter.value
        assert connection is not None
        counts.acquired += 1
        return connection
    counts.timed_out += 1
    emit(pool._listeners, CallRejected(pool._name, "queue_timeout"))
    raise PoolExhaustedError(
        pool._name,
        max_size=pool._max_size,
        max_queued=pool._max_queued,
        reason="queue_timeout",
        waited=waited,
    )


# -- giving it back ----------------------------------------------------------------------


async def release(
    pool: GuardedPool[C], connection: Connection[C], exc: BaseException | None
) -> None:
    """End a checkout: clean connections go back at once, others are reset or discarded."""
    driver = pool._driver
    conn = connection.conn
    driver.release(conn)
    if pool._state is CLOSED:
        # Returned after the pool closed (its close_timeout passed): just close it.
        pool._counts.move(connection, GONE)
        with anyio.move_on_after(pool._close_timeout, shield=True):
            await _maintenance.close_now(pool, conn, hard=True)
        return
    if exc is None or isinstance(exc, Exception):
        if exc is not None and (pool._classify(exc) & CONNECTION or driver.is_broken(conn)):
            pool._discard(connection, "broken", exc)
        elif driver.needs_reset(conn):
            await _reset_inline(pool, connection)
        else:
            pool._checkin(connection)
    else:
        # Cancelled (or KeyboardInterrupt...): a statement may still be running. The
        # caller must not wait for the clean-up; the pool does it in the background.
        reset_soon(pool, connection)


async def _reset_inline(pool: GuardedPool[C], connection: Connection[C]) -> None:
    try:
        with anyio.move_on_after(pool._reset_timeout) as scope:
            await pool._driver.reset(connection.conn, abandoned=False)
    except Exception as exc:
        pool._discard(connection, "reset_failed", exc)
        return
    except BaseException:
        reset_soon(pool, connection)
        raise
    if scope.cancelled_caught or pool._driver.is_broken(connection.conn):
        pool._discard(connection, "reset_failed", None)
    else:
        pool._checkin(connection)


def reset_soon(pool: GuardedPool[C], connection: Connection[C]) -> None:
    """Stop, roll back and return an abandoned connection in the background."""
    counts = pool._counts
    counts.move(connection, RESETTING)
    counts.interrupted += 1
    tg = pool._tg
    assert tg is not None
    tg.start_soon(_reset_in_background, pool, connection)


async def _reset_in_background(pool: GuardedPool[C], connection: Connection[C]) -> None:
    driver = pool._driver
    conn = connection.conn
    ok = interrupted = False
    error: BaseException | None = None
    try:
        with anyio.move_on_after(pool._reset_timeout):
            interrupted = await driver.reset(conn, abandoned=True)
            ok = not driver.is_broken(conn)
    except Exception as exc:
        error = exc
    except BaseException:
        pool._counts.move(connection, GONE)
        pool._close_soon(conn, hard=True)
        raise
    if interrupted:
        emit(pool._listeners, StatementInterrupted(pool._name))
    if ok:
        connection.last_used = pool._clock()
        pool._put(connection)
    else:
        pool._discard(connection, "reset_failed", error)
    pool._changed()
