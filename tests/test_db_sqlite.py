"""asyncres.db.sqlite against real SQLite database files.

aiosqlite runs on asyncio only, so these tests run on asyncio (each on a fresh loop),
in real time: SQLite works in real threads.
"""

from __future__ import annotations

import random
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import aiosqlite
import anyio
import pytest
from asyncio_only import asyncio_test

import asyncres
from asyncres import backoff
from asyncres.db import GuardedPool, PoolExhaustedError, StatementInterrupted
from asyncres.testing import capture_events

# A statement that never ends by itself.
FOREVER = "WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r) SELECT count(*) FROM r"


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "app.db"
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA journal_mode = wal")
        conn.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT UNIQUE, n INT)")
    return path


async def insert(conn: aiosqlite.Connection, name: str, n: int = 0) -> None:
    await conn.execute("INSERT INTO items (name, n) VALUES (?, ?)", (name, n))


async def count(pool: GuardedPool[aiosqlite.Connection]) -> int:
    async with pool.connection() as conn:
        row = await (await conn.execute("SELECT count(*) FROM items")).fetchone()
        assert row is not None
        return int(row[0])


async def settle(pool: GuardedPool[Any], seconds: float = 5.0) -> None:
    """Wait (bounded, real time) for background resets and closing to finish."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        stats = pool.statistics()
        if not (stats.resetting or stats.opening or stats.in_use or pool._counts.closing):
            return
        await anyio.sleep(0.005)
    raise AssertionError(f"the pool did not settle: {pool!r}")


def outside_write(path: Path) -> None:
    """A write from outside the pool succeeds at once: no lock was left behind."""
    with sqlite3.connect(path, timeout=0.0) as conn:
        conn.execute("INSERT INTO items (name) VALUES (?)", (f"outside-{random.random()}",))


@asyncio_test
async def test_run_commits_to_the_file(db: Path) -> None:
    """run() commits; connection() reads; the rows are in the file."""
    async with asyncres.db.sqlite(db, max_size=3) as pool:
        for i in range(5):
            await pool.run(insert, f"item-{i}", i)
        assert await count(pool) == 5
        health = await pool.health(deep=True)
        assert health.status == "healthy"
        assert health.latency is not None
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT sum(n) FROM items").fetchone() == (10,)


@asyncio_test
async def test_a_failed_transaction_is_rolled_back_and_not_retried(db: Path) -> None:
    """A constraint violation rolls back everything fn did and is raised after one attempt."""
    calls = 0

    async def two_inserts(conn: aiosqlite.Connection) -> None:
        nonlocal calls
        calls += 1
        await insert(conn, "first")
        await insert(conn, "dup")
        await insert(conn, "dup")

    async with asyncres.db.sqlite(db) as pool:
        with pytest.raises(sqlite3.IntegrityError):
            await pool.run(two_inserts)
        assert calls == 1
        assert await count(pool) == 0
    outside_write(db)


@asyncio_test
async def test_two_pools_contending_for_writes_retry_busy_errors(db: Path) -> None:
    """A writer blocked by another pool's transaction gets SQLITE_BUSY and is retried."""
    retry = asyncres.Retry(
        on=asyncres.db.is_transient, max_attempts=10, backoff=backoff.Constant(0.05)
    )
    async with (
        asyncres.db.sqlite(db, busy_timeout=0.02, begin="immediate") as holder,
        asyncres.db.sqlite(db, busy_timeout=0.02, begin="immediate", retry=retry) as writer,
    ):
        locked = anyio.Event()

        async def hold_the_lock(conn: aiosqlite.Connection) -> None:
            await insert(conn, "holder")
            locked.set()
            await anyio.sleep(0.3)

        with capture_events() as events:
            async with anyio.create_task_group() as tg:
                tg.start_soon(holder.run, hold_the_lock)
                await locked.wait()
                started = time.monotonic()
                await writer.run(insert, "writer")
                waited = time.monotonic() - started
        retries = [e for e in events if isinstance(e, asyncres.events.RetryScheduled)]
        assert retries
        assert all(
            isinstance(e.error, sqlite3.OperationalError) and "locked" in str(e.error)
            for e in retries
        )
        assert 0.15 < waited < 2.0
        assert await count(writer) == 2


@asyncio_test
async def test_busy_errors_are_transient_and_constraint_errors_are_not(db: Path) -> None:
    """Real SQLite errors are classified: busy is transient, others are not."""
    blocker = sqlite3.connect(db, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        async with asyncres.db.sqlite(db, busy_timeout=0.0, retry=None) as pool:
            with pytest.raises(sqlite3.OperationalError) as busy:
                await pool.run(insert, "x")
            assert asyncres.db.is_transient(busy.value)
            assert not asyncres.db.is_connection_error(busy.value)
            blocker.execute("ROLLBACK")
            await pool.run(insert, "x")
            with pytest.raises(sqlite3.IntegrityError) as dup:
                await pool.run(insert, "x")
            assert not asyncres.db.is_transient(dup.value)
            with pytest.raises(sqlite3.OperationalError) as syntax:
                await pool.run(_execute, "SELEC 1")
            assert not asyncres.db.is_transient(syntax.value)
    finally:
        blocker.close()


async def _execute(conn: aiosqlite.Connection, sql: str) -> None:
    await conn.execute(sql)


@asyncio_test
async def test_the_deadline_interrupts_a_running_statement(db: Path) -> None:
    """A statement still running at the caller's deadline is interrupted, not left running."""
    async with asyncres.db.sqlite(db, max_size=1) as pool:
        started = time.monotonic()
        with capture_events() as events:
            with pytest.raises(asyncres.TimeoutExceededError), asyncres.timeout(0.2):
                async with pool.connection() as conn:
                    await conn.execute(FOREVER)
            assert time.monotonic() - started < 0.5
            await settle(pool)
        assert time.monotonic() - started < 1.0  # the worker thread is free again
        assert [type(e) for e in events if isinstance(e, StatementInterrupted)] == [
            StatementInterrupted
        ]
        assert pool.statistics().discarded == 0
        assert await count(pool) == 0  # the same connection, healthy


@asyncio_test
async def test_statement_timeout_stops_each_long_statement(db: Path) -> None:
    """Without a deadline, statement_timeout bounds each statement, not the checkout."""
    async with asyncres.db.sqlite(db, max_size=1, statement_timeout=0.3) as pool:
        async with pool.connection() as conn:
            started = time.monotonic()
            with pytest.raises(sqlite3.OperationalError, match="interrupted"):
                await conn.execute(FOREVER)
            assert 0.25 < time.monotonic() - started < 1.0
            # Many short statements may take longer than the limit in total.
            started = time.monotonic()
            while time.monotonic() - started < 0.5:
                await conn.execute("SELECT 1")
                await anyio.sleep(0.01)
        assert await count(pool) == 0


@asyncio_test
async def test_lock_waits_are_shortened_to_the_deadline(db: Path) -> None:
    """busy_timeout never outlasts the caller's deadline: the thread is free at once."""
    blocker = sqlite3.connect(db, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        async with asyncres.db.sqlite(db, max_size=1, busy_timeout=5.0) as pool:
            started = time.monotonic()
            with pytest.raises((asyncres.TimeoutExceededError, sqlite3.OperationalError)):
                with asyncres.timeout(0.3):
                    await pool.run(insert, "x")
            await settle(pool)
            assert time.monotonic() - started < 1.5  # not the 5 s busy_timeout
            assert pool.statistics().discarded == 0
            async with pool.connection():  # no deadline: the full busy_timeout again
                assert pool._driver._states  # type: ignore[attr-defined]
                state = next(iter(pool._driver._states.values()))  # type: ignore[attr-defined]
                assert state.busy == 5.0
    finally:
        blocker.close()


@asyncio_test
async def test_cancelling_mid_transaction_rolls_back_and_releases_the_lock(db: Path) -> None:
    """A write transaction cancelled mid-way leaves no row and no lock behind."""

    async def insert_then_spin(conn: aiosqlite.Connection) -> None:
        await insert(conn, "never")
        await conn.execute(FOREVER)

    async with asyncres.db.sqlite(db, max_size=1) as pool:
        with anyio.move_on_after(0.2):
            await pool.run(insert_then_spin)
        await settle(pool)
        outside_write(db)
        assert await count(pool) == 1  # only the outside row


@asyncio_test
async def test_a_connection_closed_underneath_is_replaced(db: Path) -> None:
    """A connection that died is discarded on its error and replaced."""
    async with asyncres.db.sqlite(db, min_size=1, max_size=1) as pool:
        with pytest.raises(ValueError, match=r"Connection closed|no active connection"):
            async with pool.connection() as conn:
                await conn.close()
                await conn.execute("SELECT 1")
        await settle(pool)
        assert pool.statistics().discarded == 1
        assert await count(pool) == 0


@asyncio_test
async def test_ten_thousand_randomly_cancelled_operations_leak_nothing(db: Path) -> None:
    """After 10,000 random operations, many cancelled mid-way, nothing leaked at all."""
    threads_before = threading.active_count()
    rng = random.Random(7)
    counts = {"ok": 0, "cut": 0, "exhausted": 0}

    async def work(conn: aiosqlite.Connection, name: str, spin: int) -> None:
        await insert(conn, name)
        await conn.execute(f"SELECT count(*) FROM (WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL "
                           f"SELECT i + 1 FROM r WHERE i < {spin}) SELECT i FROM r)")  # fmt: skip

    async with asyncres.db.sqlite(
        db, min_size=6, max_size=6, max_queued=2, acquire_timeout=0.05, busy_timeout=0.2
    ) as pool:
        names = iter(range(10_000))

        async def worker(seed: int) -> None:
            local = random.Random(seed)
            for n in names:
                limit = local.choice([0.0, 0.001, 0.003, 0.01, 0.03, 0.3])
                spin = local.choice([1, 100, 3_000, 10_000])
                outcome = "cut"
                with anyio.move_on_after(limit):
                    try:
                        if local.random() < 0.5:
                            await pool.run(work, f"n{n}", spin)
                        else:
                            async with pool.connection() as conn:
                                await conn.execute("BEGIN")
                                await work(conn, f"n{n}", spin)
                                await conn.execute("COMMIT")
                        outcome = "ok"
                    except (PoolExhaustedError, sqlite3.OperationalError):
                        outcome = "exhausted"  # or still busy after retries
                counts[outcome] += 1
                if outcome == "exhausted":
                    await anyio.sleep(local.uniform(0.0, 0.002))  # a client backing off

        async with anyio.create_task_group() as tg:
            for _ in range(9):
                tg.start_soon(worker, rng.randrange(1 << 30))
        await settle(pool, 20.0)
        stats = pool.statistics()
        assert sum(counts.values()) == 10_000
        assert counts["ok"] > 200, counts
        assert counts["cut"] > 200, counts
        assert stats.interrupted > 100, stats
        assert (stats.size, stats.idle, stats.in_use, stats.waiting) == (6, 6, 0, 0)
        for holder in pool._idle:
            assert not holder.conn.in_transaction
        assert pool.statistics().discarded < 10, pool.statistics()
        assert threading.active_count() <= threads_before + 6 + 10
        outside_write(db)  # no lock leaked
        rows = await count(pool)
    for _ in range(200):  # a closed connection's worker thread exits just after
        if threading.active_count() == threads_before:
            break
        await anyio.sleep(0.01)
    assert threading.active_count() == threads_before
    # Every success committed; a cut caller's COMMIT may or may not have landed.
    assert counts["ok"] <= rows - 1 <= counts["ok"] + counts["cut"]


def test_memory_databases_are_refused() -> None:
    """':memory:' would give every pooled connection its own empty database."""
    with pytest.raises(ValueError, match="`database`"):
        asyncres.db.sqlite(":memory:")


@pytest.mark.parametrize(
    ("option", "value"),
    [("busy_timeout", -1.0), ("begin", "later"), ("pragmas", {"bad name": 1})],
)
def test_bad_driver_options_name_the_parameter(option: str, value: Any) -> None:
    """The sqlite factory validates its own options too."""
    with pytest.raises(ValueError, match=f"`{option}`"):
        asyncres.db.sqlite("x.db", **{option: value})


@asyncio_test
async def test_pools_open_side_by_side_on_a_fresh_file(tmp_path: Path) -> None:
    """Several connections switching a new file to WAL at once wait for the lock, not fail."""
    for attempt in range(10):
        path = tmp_path / f"fresh-{attempt}.db"
        async with (
            asyncres.db.sqlite(path, min_size=6, max_size=6) as first,
            asyncres.db.sqlite(path, min_size=6, max_size=6) as second,
        ):
            assert first.statistics().idle == 6
            assert second.statistics().idle == 6
