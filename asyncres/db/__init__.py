"""asyncres.db: database pools that survive a slow or failing database.

``async with asyncres.db.sqlite("app.db") as pool:`` (aiosqlite, extra ``asyncres[sqlite]``)
or ``async with asyncres.db.postgres(dsn) as pool:`` (asyncpg, extra ``asyncres[postgres]``)
opens a `GuardedPool`: bounded waits for connections, statement timeouts that follow the
caller's deadline into the database, cancellation that never leaks a connection, retries
of transient errors only, self-healing, a circuit breaker and health checks.

Both drivers run on asyncio only. The drivers are imported when a pool opens, never by
``import asyncres.db``.
"""

from ._classify import is_connection_error as is_connection_error
from ._classify import is_transient as is_transient
from ._driver import Driver as Driver
from ._errors import CommitOutcomeUnknownError as CommitOutcomeUnknownError
from ._errors import ConnectTimeoutError as ConnectTimeoutError
from ._errors import NoServerMatchedError as NoServerMatchedError
from ._errors import PoolClosedError as PoolClosedError
from ._errors import PoolExhaustedError as PoolExhaustedError
from ._events import ConnectionDiscarded as ConnectionDiscarded
from ._events import ConnectionFailed as ConnectionFailed
from ._events import ConnectionRecycled as ConnectionRecycled
from ._events import StatementInterrupted as StatementInterrupted
from ._pool import GuardedPool as GuardedPool
from ._pool import PoolHealth as PoolHealth
from ._pool import PoolOptions as PoolOptions
from ._pool import PoolStatistics as PoolStatistics
from ._postgres import PostgresDriver as PostgresDriver
from ._postgres import postgres as postgres
from ._sqlite import SqliteDriver as SqliteDriver
from ._sqlite import sqlite as sqlite

Driver.__module__ = "asyncres.db"
PoolOptions.__module__ = "asyncres.db"

__all__ = [
    "CommitOutcomeUnknownError",
    "ConnectTimeoutError",
    "ConnectionDiscarded",
    "ConnectionFailed",
    "ConnectionRecycled",
    "Driver",
    "GuardedPool",
    "NoServerMatchedError",
    "PoolClosedError",
    "PoolExhaustedError",
    "PoolHealth",
    "PoolOptions",
    "PoolStatistics",
    "PostgresDriver",
    "SqliteDriver",
    "StatementInterrupted",
    "is_connection_error",
    "is_transient",
    "postgres",
    "sqlite",
]
