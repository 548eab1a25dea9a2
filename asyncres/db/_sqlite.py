"""The aiosqlite adapter: `asyncres.db.sqlite(path, **options)`.

aiosqlite runs each connection's statements in a worker thread and delivers results to the
asyncio loop; it runs on asyncio only. How the guarantees are kept:

- per-statement ``statement_timeout``: a progress handler in the worker thread aborts a
  statement that has run longer (``sqlite3.OperationalError: interrupted``);
- the caller's deadline: when it fires (or the caller is cancelled) the pool interrupts the
  running statement at once (``sqlite3.Connection.interrupt``, thread-safe), rolls back and
  returns the connection; lock waits (``busy_timeout``) are shortened to the deadline;
- transient errors: ``SQLITE_BUSY`` / ``SQLITE_LOCKED`` ("database is locked") and
  ``SQLITE_INTERRUPT`` (a statement stopped by ``statement_timeout``).
"""

from __future__ import annotations

import asyncio
import math
import os
import sys
import time
from asyncio.events import _get_running_loop
from collections.abc import Awaitable, Mapping
from typing import TYPE_CHECKING, Any

import anyio

from .. import _validation
from ._driver import CONNECTION, TRANSIENT
from ._pool import GuardedPool

if TYPE_CHECKING:
    from typing import Unpack

    import aiosqlite

    from ._pool import PoolOptions

__all__ = ["SqliteDriver", "classify_sqlite", "sqlite"]

# sqlite3 primary result codes (https://www.sqlite.org/rescode.html).
_SQLITE_BUSY = 5
_SQLITE_LOCKED = 6
_SQLITE_IOERR = 10
_SQLITE_CANTOPEN = 14
_SQLITE_INTERRUPT = 9  # our statement_timeout; SQLite rolls the transaction back
_TRANSIENT_CODES = {
    _SQLITE_BUSY: TRANSIENT,
    _SQLITE_LOCKED: TRANSIENT,
    _SQLITE_INTERRUPT: TRANSIENT,
}
_CONNECTION_CODES = {_SQLITE_IOERR, _SQLITE_CANTOPEN}
_CLOSED_MESSAGES = ("Connection closed", "no active connection")

#: Virtual-machine steps between two checks of the statement clock. Each check takes the
#: GIL from the worker thread; a million steps is a few milliseconds of work, so the cost
#: stays negligible even when the event loop is busy (measured: +0-5 %).
_PROGRESS_STEPS = 1_000_000

#: How long an abandoned connection's worker thread may take to finish what it is doing
#: before the running statement is interrupted.
_RUNNING_GRACE = 0.002

_DEFAULT_PRAGMAS: Mapping[str, str | int] = {"journal_mode": "wal", "synchronous": "normal"}
_BEGIN = {
    "deferred": "BEGIN DEFERRED",
    "immediate": "BEGIN IMMEDIATE",
    "exclusive": "BEGIN EXCLUSIVE",
}


def classify_sqlite(exc: BaseException) -> int:
    """`TRANSIENT` / `CONNECTION` flags for a sqlite3 or aiosqlite error (0: neither)."""
    sqlite3 = sys.modules.get("sqlite3")
    if sqlite3 is not None and isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        if isinstance(code, int):
            primary = code & 0xFF
            if primary in _CONNECTION_CODES:
                return CONNECTION | TRANSIENT
            return _TRANSIENT_CODES.get(primary, 0)
        message = str(exc)
        if "database is locked" in message or "database table is locked" in message:
            return TRANSIENT
        return 0
    if isinstance(exc, ValueError) and str(exc) in _CLOSED_MESSAGES:
        return CONNECTION | TRANSIENT  # aiosqlite: the connection was closed under us
    if isinstance(exc, ConnectionError):
        return CONNECTION | TRANSIENT
    return 0


class _Clock:
    """Per-connection statement clock, shared with the worker thread's callbacks."""

    __slots__ = ("limit", "started")

    def __init__(self, limit: float) -> None:
        self.limit = limit
        self.started = math.inf

    def statement_started(self, _sql: str) -> None:
        self.started = time.monotonic()

    def overdue(self) -> bool:
        return time.monotonic() - self.started > self.limit


class _State:
    __slots__ = ("busy", "clock")

    def __init__(self, busy: float, clock: _Clock | None) -> None:
        self.busy = busy  # the connection's busy_timeout now, in seconds
        self.clock = clock


class SqliteDriver:
    """The `Driver` for aiosqlite connections to one database file (asyncio only).

    Connections are opened in autocommit mode (``isolation_level=None``); `GuardedPool`
    issues ``BEGIN`` / ``COMMIT`` itself. Use `sqlite` rather than building this by hand.
    """

    __module__ = "asyncres.db"

    name = "sqlite"

    def __init__(
        self,
        database: str | os.PathLike[str],
        *,
        busy_timeout: float = 5.0,
        pragmas: Mapping[str, str | int] | None = None,
        begin: str = "deferred",
        uri: bool = False,
        connect_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        path = os.fspath(database)
        if not isinstance(path, str) or not path:
            raise ValueError(f"`database` must be a non-empty path, got {database!r}")
        if path == ":memory:" or (uri and "mode=memory" in path and "cache=shared" not in path):
            raise ValueError(
                "`database` must be a file: every pooled connection to ':memory:' would see "
                "its own empty database (use a file, or a shared-cache memory URI)"
            )
        self.database = path
        self.busy_timeout = _validation.non_negative("busy_timeout", busy_timeout)
        if math.isinf(self.busy_timeout):
            raise ValueError("`busy_timeout` must be finite, got inf")
        self.pragmas = dict(_DEFAULT_PRAGMAS if pragmas is None else pragmas)
        for key in self.pragmas:
            if not key.replace("_", "").isalnum():
                raise ValueError(f"`pragmas` keys must be pragma names, got {key!r}")
        if begin not in _BEGIN:
            raise ValueError(f"`begin` must be one of {sorted(_BEGIN)}, got {begin!r}")
        self.begin_mode = begin
        self._begin_sql = _BEGIN[begin]
        self.uri = uri
        self.connect_kwargs = dict(connect_kwargs or {})
        self.statement_timeout: float | None = None
        self._states: dict[aiosqlite.Connection, _State] = {}
        self._barriers: set[asyncio.Future[None]] = set()

    def __repr__(self) -> str:
        return f"SqliteDriver({self.database!r}, busy_timeout={self.busy_timeout!r})"

    # -- the Driver contract -------------------------------------------------------------

    def configure(self, *, statement_timeout: float | None) -> None:
        self.statement_timeout = statement_timeout

    def check_runtime(self) -> None:
        _import_aiosqlite()
        if _get_running_loop() is None:
            raise RuntimeError(
                "asyncres.db.sqlite needs asyncio: aiosqlite runs on asyncio only "
                "(run this pool under asyncio, e.g. anyio.run(main, backend='asyncio'))"
            )

    async def _pragma(self, conn: aiosqlite.Connection, key: str, value: str | int) -> None:
        """Run one PRAGMA, waiting out a lock: switching a new file to WAL takes an
        exclusive lock, and SQLite answers a concurrent switch with an immediate "database is
        locked" (its busy handler is not consulted there). Pools open connections side by
        side, so the first ones to a fresh file race for it."""
        give_up = anyio.current_time() + self.busy_timeout
        pause = 0.005
        while True:
            try:
                await conn.execute(f"PRAGMA {key} = {_pragma_value(value)}")
                return
            except Exception as exc:
                if "locked" not in str(exc) or anyio.current_time() + pause > give_up:
                    raise
            await anyio.sleep(pause)
            pause = min(pause * 2, 0.1)

    async def connect(self) -> aiosqlite.Connection:
        module = _import_aiosqlite()
        conn: aiosqlite.Connection = module.connect(
            self.database,
            isolation_level=None,
            timeout=self.busy_timeout,
            uri=self.uri,
            **self.connect_kwargs,
        )
        await conn
        try:
            for key, value in self.pragmas.items():
                await self._pragma(conn, key, value)
            clock = None
            if self.statement_timeout is not None:
                clock = _Clock(self.statement_timeout)
                await conn.set_trace_callback(clock.statement_started)
                await conn.set_progress_handler(clock.overdue, _PROGRESS_STEPS)
        except BaseException:
            conn.stop()  # closes in the worker thread; nothing here may block
            raise
        self._states[conn] = _State(self.busy_timeout, clock)
        return conn

    async def close(self, conn: aiosqlite.Connection, *, hard: bool) -> None:
        self._states.pop(conn, None)
        if hard:
            self._interrupt(conn)
        await conn.close()

    def is_broken(self, conn: aiosqlite.Connection) -> bool:
        return getattr(conn, "_connection", None) is None or not getattr(conn, "_running", True)

    def needs_reset(self, conn: aiosqlite.Connection) -> bool:
        try:
            return bool(conn.in_transaction)
        except Exception:
            return True

    def prepare(self, conn: aiosqlite.Connection, left: float | None) -> Awaitable[None] | None:
        state = self._states.get(conn)
        if state is None:
            return None
        wanted = self.busy_timeout
        if left is not None and left < wanted:
            wanted = left
        if wanted <= state.busy <= wanted * 1.25 + 0.05:
            return None
        return self._set_busy(conn, state, wanted)

    async def _set_busy(self, conn: aiosqlite.Connection, state: _State, seconds: float) -> None:
        millis = max(1, math.ceil(seconds * 1000))
        await conn.execute(f"PRAGMA busy_timeout = {millis}")
        state.busy = millis / 1000

    async def begin(self, conn: aiosqlite.Connection, left: float | None) -> None:
        pending = self.prepare(conn, left)
        if pending is not None:
            await pending
        await conn.execute(self._begin_sql)

    async def commit(self, conn: aiosqlite.Connection) -> None:
        await conn.commit()

    async def ping(self, conn: aiosqlite.Connection) -> None:
        await conn.execute("SELECT 1")

    def release(self, conn: aiosqlite.Connection) -> None:
        return None

    def _interrupt(self, conn: aiosqlite.Connection) -> None:
        raw = getattr(conn, "_connection", None)
        if raw is not None:
            try:
                raw.interrupt()  # thread-safe
            except Exception:
                pass

    async def reset(self, conn: aiosqlite.Connection, *, abandoned: bool) -> bool:
        stopped = False
        if abandoned:
            # Is a statement still running in the worker thread? A no-op queued behind it
            # tells. Interrupt only if so: sqlite3_interrupt() also fails the next statement
            # when a cursor of the abandoned checkout still holds an unfinished statement.
            # (A task of its own, shielded: a wait that times out must not lose its place.)
            barrier = asyncio.ensure_future(_drain(conn))
            self._barriers.add(barrier)
            barrier.add_done_callback(self._barriers.discard)
            with anyio.move_on_after(_RUNNING_GRACE):
                await asyncio.shield(barrier)
            if not barrier.done():
                self._interrupt(conn)
                stopped = True
                await asyncio.shield(barrier)
        await conn.rollback()
        return stopped

    def classify(self, exc: BaseException) -> int:
        return classify_sqlite(exc)


async def _drain(conn: aiosqlite.Connection) -> None:
    """Return once everything queued on ``conn``'s worker thread so far has run."""
    try:
        await conn._execute(_nothing)  # type: ignore[no-untyped-call]
    except Exception:
        pass


def _nothing() -> None:
    return None


def _pragma_value(value: str | int) -> str:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"`pragmas` values must be str or int, got {value!r}")
    text = str(value)
    if not text.replace("_", "").replace("-", "").isalnum():
        raise ValueError(f"`pragmas` values must be plain words or numbers, got {value!r}")
    return text


def _import_aiosqlite() -> Any:
    try:
        import aiosqlite
    except ImportError as exc:
        raise ImportError(
            "asyncres.db.sqlite needs the aiosqlite driver: pip install 'asyncres[sqlite]'"
        ) from exc
    return aiosqlite


def sqlite(
    database: str | os.PathLike[str],
    *,
    busy_timeout: float = 5.0,
    pragmas: Mapping[str, str | int] | None = None,
    begin: str = "deferred",
    uri: bool = False,
    connect_kwargs: Mapping[str, Any] | None = None,
    **options: Unpack[PoolOptions],
) -> GuardedPool[aiosqlite.Connection]:
    """A `GuardedPool` of aiosqlite connections to the database file ``database``.

    ``async with asyncres.db.sqlite("app.db") as pool:``. Driver options: ``busy_timeout``
    (seconds SQLite waits for a lock, shortened to the caller's deadline; Python's sqlite3
    default, 5 s), ``pragmas`` run on each new connection (default
    ``{"journal_mode": "wal", "synchronous": "normal"}``: readers never block the writer),
    ``begin`` (``"deferred"``, ``"immediate"`` — recommended for write transactions — or
    ``"exclusive"``), ``uri`` and ``connect_kwargs`` (passed to ``sqlite3.connect``).
    Pool options (``min_size``, ``max_size``, ``acquire_timeout``...) as for `GuardedPool`.
    asyncio only: aiosqlite does not run on trio.
    """
    driver = SqliteDriver(
        database,
        busy_timeout=busy_timeout,
        pragmas=pragmas,
        begin=begin,
        uri=uri,
        connect_kwargs=connect_kwargs,
    )
    return GuardedPool(driver, **options)
