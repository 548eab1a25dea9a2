"""The pool's background work: opening connections, keeping ``min_size``, retiring idle and
old ones, closing, and the bounded shutdown."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import TYPE_CHECKING, TypeVar

import anyio

from ..._events import emit
from .._errors import ConnectTimeoutError, PoolClosedError
from .._events import ConnectionFailed
from ._defaults import MAINTENANCE_PERIOD, REOPEN_BACKOFF
from ._state import CLOSED, CLOSING, OPEN, Connection

if TYPE_CHECKING:
    from ._pool import GuardedPool

__all__ = ["close_task", "grow", "maintain", "open_min_size", "shutdown"]

C = TypeVar("C")


async def connect(pool: GuardedPool[C]) -> C:
    """Open one connection within ``connect_timeout``."""
    try:
        with anyio.fail_after(pool._connect_timeout):
            conn = await pool._driver.connect()
    except TimeoutError as exc:
        if isinstance(exc, ConnectTimeoutError):
            raise
        raise ConnectTimeoutError(pool._connect_timeout) from exc
    pool._last_connect_error = None
    return conn


async def open_min_size(pool: GuardedPool[C]) -> None:
    """Open ``min_size`` connections at once: a wrong DSN fails here, not on first use."""
    counts = pool._counts
    opened: list[C] = []
    failures: list[BaseException] = []

    async def open_one() -> None:
        try:
            opened.append(await connect(pool))
        except Exception as exc:
            failures.append(exc)

    counts.size = counts.opening = pool._min_size
    async with anyio.create_task_group() as starters:
        for _ in range(pool._min_size):
            starters.start_soon(open_one)
    counts.size = counts.opening = 0
    if failures:
        for conn in opened:
            await close_now(pool, conn, hard=False)
        raise failures[0]
    for conn in opened:
        counts.size += 1
        counts.opened += 1
        pool._idle.append(pool._new_connection(conn))


async def _open_reserved(pool: GuardedPool[C], background: bool) -> BaseException | None:
    """Open the connection already counted in ``size`` and ``opening``; the error if it fails."""
    counts = pool._counts
    try:
        conn = await connect(pool)
    except Exception as exc:
        counts.size -= 1
        counts.opening -= 1
        counts.open_failures += 1
        pool._last_connect_error = exc
        emit(pool._listeners, ConnectionFailed(pool._name, exc, background))
        return exc
    except BaseException:
        counts.size -= 1
        counts.opening -= 1
        raise
    counts.opening -= 1
    counts.opened += 1
    pool._put(pool._new_connection(conn))
    return None


def grow(pool: GuardedPool[C]) -> None:
    """Start opening connections for waiters that no release or opener will serve."""
    tg = pool._tg
    assert tg is not None
    counts = pool._counts
    while (
        counts.opening < pool._waiters.waiting
        and counts.size < pool._max_size
        and pool._state is OPEN
    ):
        counts.size += 1
        counts.opening += 1
        tg.start_soon(_open_for_waiter, pool)


async def _open_for_waiter(pool: GuardedPool[C]) -> None:
    error = await _open_reserved(pool, background=False)
    # The oldest waiter learns why: with the database down, waiting longer helps nobody
    # (its retry, if any, backs off and tries again).
    if error is not None and pool._waiters.waiting:
        pool._waiters.reject_first(error)
    pool._changed()


async def maintain(pool: GuardedPool[C]) -> None:
    """Keep ``min_size`` connections, retire idle and old ones. Runs until close."""
    counts = pool._counts
    delays: Iterator[float] | None = None
    while pool._state is OPEN:
        pool._wake = wake = anyio.Event()
        if counts.size < pool._min_size:
            counts.size += 1
            counts.opening += 1
            error = await _open_reserved(pool, background=True)
            pool._changed()
            if error is not None:
                if delays is None:
                    delays = REOPEN_BACKOFF.delays()
                await anyio.sleep(next(delays))
            else:
                delays = None
            continue
        # Connections that become idle later are due later than any deadline computed
        # now, except lifetimes of connections now in use: look again at least this often.
        next_due = min(expire_idle(pool), MAINTENANCE_PERIOD)
        with anyio.move_on_after(next_due):
            await wake.wait()


def expire_idle(pool: GuardedPool[C]) -> float:
    """Retire idle connections past ``max_idle`` (above ``min_size``) or lifetime.

    Returns the seconds until the next connection is due.
    """
    now = pool._clock()
    due = math.inf
    keep: list[Connection[C]] = []
    counts = pool._counts
    # Oldest-used first: the idle list is a stack, its bottom has waited longest.
    for connection in pool._idle:
        if now >= connection.expires:
            pool._retire(connection, "lifetime", replace=False)
            continue
        idle_until = connection.last_used + pool._max_idle
        if now >= idle_until and counts.size > pool._min_size:
            pool._retire(connection, "idle", replace=False)
            continue
        keep.append(connection)
        due = min(due, connection.expires)
        if counts.size > pool._min_size:
            due = min(due, idle_until)
    if len(keep) != len(pool._idle):
        pool._idle[:] = keep
        pool._changed()
    return max(0.0, due - now)


async def close_task(pool: GuardedPool[C], conn: C, hard: bool) -> None:
    try:
        # Shielded: closing the pool must not abandon a half-closed connection.
        with anyio.move_on_after(pool._close_timeout, shield=True):
            await close_now(pool, conn, hard=hard)
    finally:
        pool._counts.closing -= 1
        pool._changed()


async def close_now(pool: GuardedPool[C], conn: C, *, hard: bool) -> None:
    try:
        await pool._driver.close(conn, hard=hard)
    except Exception:
        pass  # closing a broken connection may fail; it is gone either way


async def shutdown(pool: GuardedPool[C]) -> None:
    """Refuse new work, let checkouts and resets finish (bounded), close all."""
    pool._state = CLOSING
    pool._waiters.close(PoolClosedError(pool._name))
    counts = pool._counts
    with anyio.move_on_after(pool._close_timeout, shield=True):
        while counts.in_use or counts.resetting or counts.opening or counts.closing:
            await pool._wait_settled()
    pool._state = CLOSED
    idle, pool._idle = pool._idle, []
    counts.size -= len(idle)
    with anyio.CancelScope(shield=True):
        for connection in idle:
            with anyio.move_on_after(pool._close_timeout):
                await close_now(pool, connection.conn, hard=False)
