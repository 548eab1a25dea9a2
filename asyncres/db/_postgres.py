"""The asyncpg adapter: `asyncres.db.postgres(dsn, **options)`.

asyncpg runs on asyncio only. How the guarantees are kept:

- the server's ``statement_timeout`` follows the client: each checkout sets it to
  ``min(statement_timeout, remaining deadline)`` (piggybacked on ``BEGIN`` in `run`, and
  skipped when the value already in force is close enough), so the server stops work the
  client has given up on even if the client vanishes;
- when the caller's deadline fires or it is cancelled mid-query, asyncpg sends the server
  a cancel request; the pool waits for it to land, rolls back, and returns the connection;
- transient errors by SQLSTATE: serialization failure (40001), deadlock (40P01), lock not
  available (55P03), statement timeout (57014), and the connection-level ones: connection
  exceptions (08xxx), admin / crash shutdown (57P01, 57P02), cannot connect now (57P03),
  too many connections (53300), plus lost sockets (``ConnectionError``).
"""

from __future__ import annotations

import math
import sys
from asyncio.events import _get_running_loop
from collections.abc import Awaitable, Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ._driver import CONNECTION, TRANSIENT
from ._errors import NoServerMatchedError
from ._pool import GuardedPool

if TYPE_CHECKING:
    from typing import Unpack

    from ._pool import PoolOptions

__all__ = ["PostgresDriver", "classify_postgres", "postgres"]

# serialization failure, deadlock, lock not available, query cancelled (statement_timeout:
# the server rolled the transaction back, so running it again is safe; the caller's
# deadline, which also sets the server's limit, cancels the caller and ends the retries).
_RETRYABLE_STATES = {"40001", "40P01", "55P03", "57014"}
_CONNECTION_STATES = {"57P01", "57P02", "57P03", "53300"}
_ISOLATION = {
    None: "BEGIN",
    "read committed": "BEGIN ISOLATION LEVEL READ COMMITTED",
    "repeatable read": "BEGIN ISOLATION LEVEL REPEATABLE READ",
    "serializable": "BEGIN ISOLATION LEVEL SERIALIZABLE",
}
#: The client-side limit (asyncpg ``command_timeout``) trails the server's by this much,
#: so that the server's cleaner error normally wins; it still bounds a silent network.
_CLIENT_MARGIN = 1.0
#: asyncpg's ``target_session_attrs`` (libpq's names).
_SESSION_ATTRS = ("any", "primary", "standby", "read-write", "read-only", "prefer-standby")
#: The server-side limit derived from a deadline trails it by this much (milliseconds).
_SERVER_MARGIN_MS = 20


def classify_postgres(exc: BaseException) -> int:
    """`TRANSIENT` / `CONNECTION` flags for an asyncpg (or socket) error (0: neither)."""
    if isinstance(exc, NoServerMatchedError):
        return CONNECTION  # the servers answer, none has the role: not worth a retry
    asyncpg = sys.modules.get("asyncpg")
    if asyncpg is not None:
        if isinstance(exc, asyncpg.PostgresError):
            state = getattr(exc, "sqlstate", None) or ""
            if state.startswith("08") or state in _CONNECTION_STATES:
                return CONNECTION | TRANSIENT
            if state in _RETRYABLE_STATES:
                return TRANSIENT
            return 0
        if isinstance(exc, asyncpg.InterfaceError) and "connection is closed" in str(exc):
            return CONNECTION | TRANSIENT
    if isinstance(exc, ConnectionError):
        return CONNECTION | TRANSIENT
    return 0


def _millis(seconds: float | None) -> int:
    """PostgreSQL's statement_timeout in ms; 0 means none, so a due deadline becomes 1."""
    if seconds is None:
        return 0
    return max(1, math.ceil(seconds * 1000))


class PostgresDriver:
    """The `Driver` for asyncpg connections to one PostgreSQL server (asyncio only).

    Use `postgres` rather than building this by hand.
    """

    __module__ = "asyncres.db"

    name = "postgres"

    def __init__(
        self,
        dsn: str | None = None,
        *,
        dsns: Sequence[str] | None = None,
        target_session_attrs: str | None = None,
        isolation: str | None = None,
        connect_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        if dsns is not None:
            if dsn is not None:
                raise ValueError("give `dsn` or `dsns`, not both")
            dsns = _checked_dsns(dsns)
            if target_session_attrs is None:
                target_session_attrs = "read-write"
        if target_session_attrs is not None and target_session_attrs not in _SESSION_ATTRS:
            raise ValueError(
                f"`target_session_attrs` must be one of {list(_SESSION_ATTRS)}, "
                f"got {target_session_attrs!r}"
            )
        self.hosts = len(dsns) if dsns is not None else 1
        #: The servers in the order they are tried (``[dsn]`` for a single server).
        self.dsns: tuple[str | None, ...] = tuple(dsns) if dsns is not None else (dsn,)
        self.target_session_attrs = target_session_attrs
        if isolation is not None:
            isolation = isolation.lower()
        if isolation not in _ISOLATION:
            names = sorted(k for k in _ISOLATION if k)
            raise ValueError(f"`isolation` must be None or one of {names}, got {isolation!r}")
        self.dsn = dsn
        self.isolation = isolation
        self._begin_sql = _ISOLATION[isolation]
        kwargs = dict(connect_kwargs or {})
        for reserved in ("command_timeout", "timeout", "target_session_attrs"):
            if reserved in kwargs:
                raise ValueError(
                    f"`connect_kwargs` must not set {reserved!r}: the pool sets it (from "
                    "statement_timeout / connect_timeout / target_session_attrs)"
                )
        self.connect_kwargs = kwargs
        self.statement_timeout: float | None = None
        self._default_ms = 0
        # The statement_timeout in force on each connection, in ms (0: none).
        self._timeouts: dict[Any, int] = {}

    def __repr__(self) -> str:
        return f"PostgresDriver(isolation={self.isolation!r})"

    # -- the Driver contract -------------------------------------------------------------

    def configure(self, *, statement_timeout: float | None) -> None:
        self.statement_timeout = statement_timeout
        self._default_ms = _millis(statement_timeout)

    def check_runtime(self) -> None:
        _import_asyncpg()
        if _get_running_loop() is None:
            raise RuntimeError(
                "asyncres.db.postgres needs asyncio: asyncpg runs on asyncio only "
                "(run this pool under asyncio, e.g. anyio.run(main, backend='asyncio'))"
            )

    async def connect(self) -> Any:
        asyncpg = _import_asyncpg()
        kwargs = dict(self.connect_kwargs)
        settings = dict(kwargs.pop("server_settings", None) or {})
        settings["statement_timeout"] = str(self._default_ms)
        timeout = self.statement_timeout
        kwargs["command_timeout"] = None if timeout is None else timeout + _CLIENT_MARGIN
        kwargs["server_settings"] = settings
        attrs = self.target_session_attrs
        if attrs is None:
            conn = await asyncpg.connect(self.dsn, **kwargs)
        else:
            conn = await self._connect_by_role(asyncpg, attrs, kwargs)
        self._timeouts[conn] = self._default_ms
        return conn

    async def _connect_by_role(self, asyncpg: Any, attrs: str, kwargs: dict[str, Any]) -> Any:
        """Try the servers in order for one with the role (asyncpg's own multi-host connect
        reports the first refused host's error even when another answered with the wrong
        role: the difference between "all down" and "no primary" matters here)."""
        passes = ("standby", "any") if attrs == "prefer-standby" else (attrs,)
        wrong_role = False
        last: BaseException | None = None
        for wanted in passes:
            for dsn in self.dsns:
                try:
                    return await asyncpg.connect(dsn, target_session_attrs=wanted, **kwargs)
                except asyncpg.exceptions.TargetServerAttributeNotMatched:
                    wrong_role = True
                except (OSError, asyncpg.PostgresError) as exc:
                    last = exc
        if wrong_role:
            raise NoServerMatchedError(attrs, self.hosts) from last
        assert last is not None
        raise last

    async def close(self, conn: Any, *, hard: bool) -> None:
        self._timeouts.pop(conn, None)
        if hard:
            conn.terminate()
        else:
            await conn.close()

    def is_broken(self, conn: Any) -> bool:
        return bool(conn.is_closed())

    def needs_reset(self, conn: Any) -> bool:
        if conn.is_in_transaction() or getattr(conn, "_top_xact", None) is not None:
            return True
        is_cancelling = getattr(conn._protocol, "_is_cancelling", None)
        return bool(is_cancelling is not None and is_cancelling())

    def _wanted(self, conn: Any, left: float | None) -> int | None:
        """The statement_timeout to SET (ms), or None when the one in force will do."""
        wanted = self._default_ms
        if left is not None:
            # The client cancels at its deadline; the server's limit trails it a little so
            # that the client's (clearer) TimeoutExceededError normally wins the race.
            deadline_ms = _millis(left) + _SERVER_MARGIN_MS
            if wanted == 0 or deadline_ms < wanted:
                wanted = deadline_ms
        current = self._timeouts.get(conn, -1)
        if wanted == 0:
            return None if current == 0 else 0
        # A little slack keeps steady deadlines from costing a round trip per checkout:
        # the client's own deadline still cancels on time; this is the server's backstop.
        if current != 0 and wanted <= current <= wanted * 1.25 + 50:
            return None
        return wanted

    def prepare(self, conn: Any, left: float | None) -> Awaitable[None] | None:
        wanted = self._wanted(conn, left)
        if wanted is None:
            return None
        return self._execute(conn, f"SET statement_timeout = {wanted}", wanted)

    async def _execute(self, conn: Any, sql: str, wanted: int) -> None:
        await conn.execute(sql)
        self._timeouts[conn] = wanted

    async def begin(self, conn: Any, left: float | None) -> None:
        wanted = self._wanted(conn, left)
        if wanted is None:
            await conn.execute(self._begin_sql)
        else:
            # One round trip: the simple-query protocol runs both statements.
            await self._execute(
                conn, f"SET statement_timeout = {wanted}; {self._begin_sql}", wanted
            )

    async def commit(self, conn: Any) -> None:
        status = await conn.execute("COMMIT")
        if status != "COMMIT":
            # PostgreSQL answers COMMIT of a failed transaction with ROLLBACK, no error.
            asyncpg = _import_asyncpg()
            raise asyncpg.exceptions.InFailedSQLTransactionError(
                "COMMIT rolled back: an error inside the transaction was caught and ignored"
            )

    async def ping(self, conn: Any) -> None:
        await conn.execute("SELECT 1")

    def release(self, conn: Any) -> None:
        return None

    async def reset(self, conn: Any, *, abandoned: bool) -> bool:
        # When the waiting task was cancelled (or command_timeout fired), asyncpg already
        # sent the server a cancel request: wait for it to land, then roll back.
        protocol = conn._protocol
        is_cancelling = getattr(protocol, "_is_cancelling", None)
        wait = getattr(protocol, "_wait_for_cancellation", None)
        cancelling = bool(is_cancelling is not None and is_cancelling())
        if cancelling and wait is not None:
            await wait()
        if conn.is_closed():
            asyncpg = _import_asyncpg()
            raise asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed")
        if getattr(conn, "_top_xact", None) is not None:
            # An interrupted ``async with conn.transaction():`` never got to forget itself.
            conn._top_xact = None
            await conn.execute("ROLLBACK")
        elif wait is None or conn.is_in_transaction():
            # (Without asyncpg's private hook, ROLLBACK itself waits for the cancellation.)
            await conn.execute("ROLLBACK")
        return cancelling

    def classify(self, exc: BaseException) -> int:
        return classify_postgres(exc)


def _checked_dsns(dsns: Sequence[str]) -> list[str]:
    """``dsns`` as a list, after checking they name one database on several servers."""
    if isinstance(dsns, str) or not dsns:
        raise ValueError("`dsns` must be a non-empty list of postgresql:// URLs")
    parts = []
    for item in dsns:
        if not isinstance(item, str):
            raise ValueError(f"`dsns` must hold postgresql:// URLs, got {item!r}")
        url = urlsplit(item)
        if url.scheme not in ("postgresql", "postgres") or not url.hostname:
            raise ValueError(f"`dsns`: {item!r} is not a postgresql://user@host:port/db URL")
        parts.append(url)
    first = parts[0]
    shared = (first.username, first.password, first.path, first.query)
    for url in parts[1:]:
        if (url.username, url.password, url.path, url.query) != shared:
            raise ValueError(
                "`dsns` must differ only in host and port (same user, database, options)"
            )
    return list(dsns)


def _import_asyncpg() -> Any:
    try:
        import asyncpg
    except ImportError as exc:
        raise ImportError(
            "asyncres.db.postgres needs the asyncpg driver: pip install 'asyncres[postgres]'"
        ) from exc
    return asyncpg


def postgres(
    dsn: str | None = None,
    *,
    dsns: Sequence[str] | None = None,
    target_session_attrs: str | None = None,
    isolation: str | None = None,
    connect_kwargs: Mapping[str, Any] | None = None,
    **options: Unpack[PoolOptions],
) -> GuardedPool[Any]:
    """A `GuardedPool` of asyncpg connections to the PostgreSQL server at ``dsn``.

    ``async with asyncres.db.postgres("postgresql://app@db/app") as pool:``. Driver
    options: ``isolation`` for transactions of `GuardedPool.run` (``None``: the server's
    default, normally read committed; ``"repeatable read"``, ``"serializable"``) and
    ``connect_kwargs`` for ``asyncpg.connect`` (``ssl``, ``server_settings``, ...; the pool
    owns ``timeout`` and ``command_timeout``). Pool options as for `GuardedPool`. The pool
    opens connections itself rather than wrapping ``asyncpg.create_pool`` (see the README).
    asyncio only: asyncpg does not run on trio.

    A primary and its standbys: ``dsns=[primary, standby, ...]`` (same user and database)
    makes each new connection try the servers in order for the one with the role
    ``target_session_attrs`` asks for — ``"read-write"`` by default (the primary: writes),
    ``"prefer-standby"`` for a pool of reads. When the primary is lost its connections
    break and are replaced on the server that is promoted; with no server of the role the
    pool raises `NoServerMatchedError` at once (and its breaker counts it), while a reads
    pool keeps serving from the standbys.
    """
    driver = PostgresDriver(
        dsn,
        dsns=dsns,
        target_session_attrs=target_session_attrs,
        isolation=isolation,
        connect_kwargs=connect_kwargs,
    )
    return GuardedPool(driver, **options)
