"""An in-memory database driver for testing `GuardedPool` logic on asyncio and trio.

A `FakeConn` behaves like a remote session: a statement keeps "running on the server" after
its caller stops waiting, until it ends or is interrupted, and a connection in that state
cannot be reused until the pool has reset it. Failures are injected on the driver.
"""

from __future__ import annotations

import math
from typing import Any

import anyio

from asyncres.db import _driver


class TransientError(Exception):
    """A conflict: retrying may succeed."""


class PermanentError(Exception):
    """A constraint violation: never retried."""


class LostConnection(ConnectionError):
    """The connection died."""


class FakeConn:
    """One fake session."""

    def __init__(self, driver: FakeDriver, number: int) -> None:
        self.driver = driver
        self.number = number
        self.closed = False
        self.in_tx = False
        self.busy_until: float | None = None  # a statement still running "on the server"
        self.limit: float | None = None  # the statement limit in force (seconds)
        self.statements: list[str] = []
        self.interrupts = 0
        self.rollbacks = 0
        self.pings = 0

    def __repr__(self) -> str:
        return f"<FakeConn {self.number}>"

    def _check(self) -> None:
        if self.closed:
            raise LostConnection(f"connection {self.number} is closed")
        if self.busy_until is not None:
            raise RuntimeError("another operation is in progress")

    async def execute(
        self, sql: str = "SELECT 1", *, duration: float = 0.0, error: Exception | None = None
    ) -> str:
        """Run a statement taking ``duration`` seconds, then raise ``error`` if given."""
        self._check()
        self.statements.append(sql)
        if self.limit is not None and duration > self.limit:
            # The "server" stops a statement at its statement_timeout.
            duration_run = self.limit
            error = TimeoutError("statement timeout")
        else:
            duration_run = duration
        self.busy_until = anyio.current_time() + duration_run
        await anyio.sleep(duration_run)
        # Reached only when the caller waited for the end: the statement is done.
        self.busy_until = None
        if self.closed:
            raise LostConnection("connection lost during the statement")
        if error is not None:
            raise error
        return "OK"


class FakeDriver:
    """A `Driver` over `FakeConn`s with knobs for failures (works on asyncio and trio)."""

    name = "fake"

    def __init__(self) -> None:
        self.connections: list[FakeConn] = []
        self.statement_timeout: float | None = None
        self.connect_error: BaseException | None = None
        self.connect_failures = 0  # fail this many connects, then succeed
        self.connect_delay = 0.0
        self.ping_error: Exception | None = None
        self.ping_delay = 0.0
        self.reset_delay = 0.0
        self.commit_error: Exception | None = None
        self.prepared: list[float | None] = []
        self.began: list[float | None] = []

    @property
    def open_connections(self) -> list[FakeConn]:
        return [c for c in self.connections if not c.closed]

    def configure(self, *, statement_timeout: float | None) -> None:
        self.statement_timeout = statement_timeout

    def check_runtime(self) -> None:
        return None

    async def connect(self) -> FakeConn:
        await anyio.sleep(self.connect_delay)
        if self.connect_failures:
            self.connect_failures -= 1
            raise LostConnection("connection refused")
        if self.connect_error is not None:
            raise self.connect_error
        conn = FakeConn(self, len(self.connections))
        self.connections.append(conn)
        return conn

    async def close(self, conn: FakeConn, *, hard: bool) -> None:
        if not hard:
            await anyio.lowlevel.checkpoint()
        conn.closed = True
        conn.busy_until = None

    def is_broken(self, conn: FakeConn) -> bool:
        return conn.closed

    def needs_reset(self, conn: FakeConn) -> bool:
        return conn.in_tx or conn.busy_until is not None

    def _limit(self, left: float | None) -> float | None:
        limit = self.statement_timeout
        if left is not None and (limit is None or left < limit):
            limit = left
        return limit

    def prepare(self, conn: FakeConn, left: float | None) -> Any:
        self.prepared.append(left)
        conn.limit = self._limit(left)
        return None

    async def begin(self, conn: FakeConn, left: float | None) -> None:
        self.began.append(left)
        conn.limit = self._limit(left)
        await conn.execute("BEGIN")
        conn.in_tx = True

    async def commit(self, conn: FakeConn) -> None:
        if self.commit_error is not None:
            conn.closed = True
            raise self.commit_error
        await conn.execute("COMMIT")
        conn.in_tx = False

    async def ping(self, conn: FakeConn) -> None:
        conn.pings += 1
        if self.ping_error is not None:
            raise self.ping_error
        await conn.execute("PING", duration=self.ping_delay)

    def release(self, conn: FakeConn) -> None:
        conn.limit = None

    async def reset(self, conn: FakeConn, *, abandoned: bool) -> bool:
        await anyio.sleep(self.reset_delay)
        stopped = False
        if conn.busy_until is not None:
            if abandoned:  # stop the statement the caller walked away from
                conn.interrupts += 1
                stopped = True
            else:  # wait for the statement to end
                await anyio.sleep(max(0.0, conn.busy_until - anyio.current_time()))
            conn.busy_until = None
        if conn.closed:
            raise LostConnection("closed")
        if conn.in_tx:
            conn.rollbacks += 1
            conn.in_tx = False
        return stopped

    def classify(self, exc: BaseException) -> int:
        if isinstance(exc, ConnectionError):
            return _driver.CONNECTION | _driver.TRANSIENT
        if isinstance(exc, TransientError):
            return _driver.TRANSIENT
        return 0


INF = math.inf
