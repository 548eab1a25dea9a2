"""asyncres.db.postgres against a real PostgreSQL server (asyncpg: asyncio only, real time).

The server is started by the session fixtures in conftest.py; outages stop and start a
server of the test's own for real.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import pytest
from asyncio_only import asyncio_test
from local_postgres import PostgresServer

import asyncres
from asyncres import backoff
from asyncres.db import (
    CommitOutcomeUnknownError,
    ConnectionDiscarded,
    GuardedPool,
    PoolExhaustedError,
    StatementInterrupted,
)
from asyncres.testing import capture_events

APP = "asyncres-test"
SETTINGS = {"server_settings": {"application_name": APP}}


def pool_for(dsn: str, **options: Any) -> GuardedPool[Any]:
    options.setdefault("connect_kwargs", SETTINGS)
    return asyncres.db.postgres(dsn, **options)


async def settle(pool: GuardedPool[Any], seconds: float = 10.0) -> None:
    """Wait (bounded, real time) for background resets, opening and closing to finish."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        stats = pool.statistics()
        busy = stats.resetting or stats.opening or stats.in_use or pool._counts.closing
        if not busy and stats.size >= stats.min_size:
            return
        await anyio.sleep(0.005)
    raise AssertionError(f"the pool did not settle: {pool!r}")


async def server_sessions(dsn: str) -> list[asyncpg.Record]:
    """Our sessions as the server sees them (from a connection outside the pool)."""
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetch(
            "SELECT pid, state, query, wait_event_type FROM pg_stat_activity "
            "WHERE application_name = $1 AND pid <> pg_backend_pid()",
            APP,
        )
    finally:
        await conn.close()


async def create_items(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "CREATE TABLE items (id serial PRIMARY KEY, name text UNIQUE, n int DEFAULT 0)"
        )
    finally:
        await conn.close()


async def insert(conn: asyncpg.Connection, name: str) -> None:
    await conn.execute("INSERT INTO items (name) VALUES ($1)", name)


async def count(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM items"))


@asyncio_test
async def test_run_commits_and_connection_reads(postgres_dsn: str) -> None:
    """run() commits; connection() hands out the asyncpg connection itself."""
    await create_items(postgres_dsn)
    async with pool_for(postgres_dsn, max_size=3) as pool:
        for i in range(5):
            await pool.run(insert, f"item-{i}")
        async with pool.connection() as conn:
            assert isinstance(conn, asyncpg.Connection)
            assert await count(conn) == 5
            assert not conn.is_in_transaction()
        health = await pool.health(deep=True)
        assert health.status == "healthy"
        assert health.latency is not None


@asyncio_test
async def test_the_server_statement_timeout_follows_the_deadline(postgres_dsn: str) -> None:
    """Each checkout's server-side statement_timeout is min(statement_timeout, deadline)."""

    async def show(conn: asyncpg.Connection) -> str:
        return str(await conn.fetchval("SHOW statement_timeout"))

    async with pool_for(postgres_dsn, max_size=1, statement_timeout=20.0) as pool:
        async with pool.connection() as conn:
            assert await show(conn) == "20s"
        with asyncres.timeout(1.5):
            async with pool.connection() as conn:
                assert 1400 <= _millis(await show(conn)) <= 1520
            assert 1300 <= _millis(await pool.run(show)) <= 1520
        async with pool.connection() as conn:
            assert await show(conn) == "20s"  # restored once the deadline is gone


def _millis(text: str) -> int:
    if text.endswith("ms"):
        return int(text[:-2])
    return int(float(text[:-1]) * 1000)


@asyncio_test
async def test_a_timed_out_query_stops_on_the_server(postgres_dsn: str) -> None:
    """The caller's deadline cancels pg_sleep on the server; the connection is reused."""
    async with pool_for(postgres_dsn, max_size=1) as pool:
        started = time.monotonic()
        with capture_events() as events:
            with pytest.raises(asyncres.TimeoutExceededError), asyncres.timeout(0.3):
                async with pool.connection() as conn:
                    await conn.execute("SELECT pg_sleep(30)")
            assert time.monotonic() - started < 1.0
            await settle(pool)
        sessions = await server_sessions(postgres_dsn)
        assert [s["state"] for s in sessions] == ["idle"]
        # (Normally the client's cancel request stops it; rarely the server's own limit,
        # 20 ms later, gets there first.)
        assert len([e for e in events if isinstance(e, StatementInterrupted)]) <= 1
        assert pool.statistics().discarded == 0
        async with pool.connection() as again:
            assert again is conn


@asyncio_test
async def test_the_server_stops_a_statement_even_if_the_client_does_not(
    postgres_dsn: str,
) -> None:
    """With the client unable to cancel, the server's statement_timeout still fires."""
    async with pool_for(postgres_dsn, max_size=1) as pool:
        with asyncres.timeout(0.5):
            async with pool.connection() as conn:
                # A shield hides the deadline from the client: only the server can stop it.
                with anyio.CancelScope(shield=True):
                    started = time.monotonic()
                    with pytest.raises(asyncpg.QueryCanceledError):
                        await conn.execute("SELECT pg_sleep(30)")
                    assert time.monotonic() - started < 1.0


@asyncio_test
async def test_a_query_blocked_by_a_lock_is_cancelled_and_never_lands(postgres_dsn: str) -> None:
    """An INSERT stuck behind LOCK TABLE is cancelled at the deadline and never commits."""
    await create_items(postgres_dsn)
    locker = await asyncpg.connect(postgres_dsn)
    try:
        async with pool_for(postgres_dsn, max_size=2) as pool:
            await locker.execute("BEGIN; LOCK TABLE items IN ACCESS EXCLUSIVE MODE")
            for i in range(3):
                with pytest.raises(asyncres.TimeoutExceededError), asyncres.timeout(0.2):
                    await pool.run(insert, f"blocked-{i}")
            await settle(pool)
            sessions = await server_sessions(postgres_dsn)
            assert all(s["wait_event_type"] != "Lock" for s in sessions), sessions
            await locker.execute("COMMIT")
            await pool.run(insert, "after")
            async with pool.connection() as conn:
                assert await conn.fetchval("SELECT array_agg(name) FROM items") == ["after"]
    finally:
        await locker.close()


@asyncio_test
async def test_constraint_and_syntax_errors_are_not_retried(postgres_dsn: str) -> None:
    """A unique violation or a syntax error propagates after one attempt."""
    await create_items(postgres_dsn)
    calls = 0

    async def dup(conn: asyncpg.Connection) -> None:
        nonlocal calls
        calls += 1
        await insert(conn, "same")
        await insert(conn, "same")

    async with pool_for(postgres_dsn) as pool:
        with pytest.raises(asyncpg.UniqueViolationError) as unique:
            await pool.run(dup)
        assert calls == 1
        assert not asyncres.db.is_transient(unique.value)
        with pytest.raises(asyncpg.PostgresSyntaxError) as syntax:
            await pool.run(_execute, "SELEC 1")
        assert not asyncres.db.is_transient(syntax.value)
        assert not asyncres.db.is_connection_error(syntax.value)
        async with pool.connection() as conn:
            assert await count(conn) == 0  # rolled back


async def _execute(conn: asyncpg.Connection, sql: str) -> None:
    await conn.execute(sql)


@asyncio_test
async def test_serialization_failures_are_retried(postgres_dsn: str) -> None:
    """Conflicting serializable transactions fail with 40001 and succeed when retried."""
    await create_items(postgres_dsn)
    retry = asyncres.Retry(
        on=asyncres.db.is_transient, max_attempts=5, backoff=backoff.Constant(0.01)
    )
    async with pool_for(postgres_dsn, max_size=2, isolation="serializable", retry=retry) as pool:
        await pool.run(_execute, "INSERT INTO items (name, n) VALUES ('counter', 0)")
        both_read = anyio.Event()
        readers = 0

        async def increment(conn: asyncpg.Connection) -> None:
            nonlocal readers
            n = await conn.fetchval("SELECT n FROM items WHERE name = 'counter'")
            readers += 1
            if readers == 2:
                both_read.set()
            with anyio.move_on_after(1.0):
                await both_read.wait()
            await conn.execute("UPDATE items SET n = $1 WHERE name = 'counter'", n + 1)

        with capture_events() as events:
            async with anyio.create_task_group() as tg:
                tg.start_soon(pool.run, increment)
                tg.start_soon(pool.run, increment)
        retried = [e.error for e in events if isinstance(e, asyncres.events.RetryScheduled)]
        assert retried
        assert all(isinstance(e, asyncpg.SerializationError) for e in retried)
        async with pool.connection() as conn:
            assert await conn.fetchval("SELECT n FROM items WHERE name = 'counter'") == 2


@asyncio_test
async def test_deadlocks_are_retried(postgres_dsn: str) -> None:
    """Two transactions locking rows in opposite orders deadlock (40P01); the loser retries."""
    await create_items(postgres_dsn)
    retry = asyncres.Retry(
        on=asyncres.db.is_transient, max_attempts=5, backoff=backoff.Constant(0.01)
    )
    async with pool_for(postgres_dsn, max_size=2, retry=retry) as pool:
        await pool.run(_execute, "INSERT INTO items (name) VALUES ('a'), ('b')")
        first_locked = anyio.Event()
        second_locked = anyio.Event()

        async def lock_two(conn: asyncpg.Connection, first: str, second: str) -> None:
            await conn.execute("UPDATE items SET n = n + 1 WHERE name = $1", first)
            (first_locked if first == "a" else second_locked).set()
            with anyio.move_on_after(1.0):
                await (second_locked if first == "a" else first_locked).wait()
            await conn.execute("UPDATE items SET n = n + 1 WHERE name = $1", second)

        with capture_events() as events:
            async with anyio.create_task_group() as tg:
                tg.start_soon(pool.run, lock_two, "a", "b")
                tg.start_soon(pool.run, lock_two, "b", "a")
        retried = [e.error for e in events if isinstance(e, asyncres.events.RetryScheduled)]
        assert any(isinstance(e, asyncpg.DeadlockDetectedError) for e in retried)
        async with pool.connection() as conn:
            assert await conn.fetchval("SELECT sum(n) FROM items") == 4


@asyncio_test
async def test_a_killed_connection_is_replaced_and_the_transaction_retried(
    postgres_dsn: str,
) -> None:
    """A backend terminated by an admin (57P01) is discarded; run() retries on a new one."""
    await create_items(postgres_dsn)
    killed = False

    async def insert_once_killed(conn: asyncpg.Connection) -> None:
        nonlocal killed
        if not killed:
            killed = True
            await conn.execute("SELECT pg_terminate_backend(pg_backend_pid())")
        await insert(conn, "survivor")

    async with pool_for(postgres_dsn, min_size=1, max_size=2) as pool:
        with capture_events() as events:
            await pool.run(insert_once_killed)
        assert [e.reason for e in events if isinstance(e, ConnectionDiscarded)] == ["broken"]
        error = next(e.error for e in events if isinstance(e, asyncres.events.RetryScheduled))
        assert asyncres.db.is_connection_error(error)
        await settle(pool)
        assert len(await server_sessions(postgres_dsn)) == pool.statistics().size
        async with pool.connection() as conn:
            assert await count(conn) == 1


@asyncio_test
async def test_a_connection_killed_while_idle_is_caught_by_the_pre_ping(
    postgres_dsn: str,
) -> None:
    """After idle time the pre-ping finds the dead connection; the caller never sees it."""
    async with pool_for(postgres_dsn, min_size=1, max_size=1, ping_after=0.05) as pool:
        async with pool.connection() as conn:
            pid = conn.get_server_pid()
        admin = await asyncpg.connect(postgres_dsn)
        try:
            await admin.execute("SELECT pg_terminate_backend($1)", pid)
        finally:
            await admin.close()
        await anyio.sleep(0.1)
        with capture_events() as events:
            async with pool.connection() as conn:
                assert await conn.fetchval("SELECT 1") == 1
                assert conn.get_server_pid() != pid
        assert [e.reason for e in events if isinstance(e, ConnectionDiscarded)] == ["ping_failed"]


@asyncio_test
async def test_too_many_connections_is_a_connection_error(postgres_dsn: str) -> None:
    """A server refusing connections (53300) fails the waiting caller fast, classified."""
    admin = await asyncpg.connect(postgres_dsn)
    try:
        await admin.execute("CREATE ROLE limited LOGIN CONNECTION LIMIT 1")
        limited = postgres_dsn.replace("postgres@", "limited@")
        async with pool_for(limited, min_size=1, max_size=2, acquire_timeout=5.0) as pool:
            async with pool.connection():
                started = time.monotonic()
                with pytest.raises(asyncpg.TooManyConnectionsError) as info:
                    async with pool.connection():
                        pass
                assert time.monotonic() - started < 1.0
            assert asyncres.db.is_connection_error(info.value)
            assert asyncres.db.is_transient(info.value)
    finally:
        await admin.execute("DROP ROLE IF EXISTS limited")
        await admin.close()


@asyncio_test
async def test_a_connection_lost_during_commit_is_not_retried(postgres_dsn: str) -> None:
    """A backend that dies during COMMIT raises CommitOutcomeUnknownError, no retry."""
    admin = await asyncpg.connect(postgres_dsn)
    try:
        await admin.execute(
            """
            CREATE TABLE doomed (id int);
            CREATE FUNCTION die() RETURNS trigger LANGUAGE plpgsql AS
              $$ BEGIN PERFORM pg_terminate_backend(pg_backend_pid()); RETURN NULL; END $$;
            CREATE CONSTRAINT TRIGGER die_at_commit AFTER INSERT ON doomed
              DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION die();
            """
        )
    finally:
        await admin.close()
    calls = 0

    async def write(conn: asyncpg.Connection) -> None:
        nonlocal calls
        calls += 1
        await conn.execute("INSERT INTO doomed VALUES (1)")

    async with pool_for(postgres_dsn) as pool:
        with pytest.raises(CommitOutcomeUnknownError) as info:
            await pool.run(write)
        assert calls == 1
        assert asyncres.db.is_connection_error(info.value.__cause__)  # type: ignore[arg-type]
        await settle(pool)
        async with pool.connection() as conn:
            assert await conn.fetchval("SELECT 1") == 1


@asyncio_test
async def test_an_outage_fails_fast_and_the_pool_heals(
    postgres_own_server: PostgresServer,
) -> None:
    """Server stopped: callers fail fast, then the breaker opens; restarted: all recovers."""
    server = postgres_own_server
    async with pool_for(
        server.dsn, min_size=2, max_size=4, ping_after=0.0, acquire_timeout=2.0, retry=None
    ) as pool:
        async with pool.connection() as conn:
            assert await conn.fetchval("SELECT 1") == 1
        server.stop("fast")
        errors: list[BaseException] = []
        started = time.monotonic()
        with capture_events() as events:
            for _ in range(20):
                try:
                    with asyncres.timeout(2.0):
                        async with pool.connection() as conn:
                            await conn.fetchval("SELECT 1")
                except Exception as exc:
                    errors.append(exc)
        assert time.monotonic() - started < 3.0  # no caller waited out its deadline
        assert len(errors) == 20
        refused = [e for e in errors if not isinstance(e, asyncres.CircuitOpenError)]
        # A connect that races the server's shutdown can hang until the caller's own 2 s
        # deadline: that is the caller's timeout, which the breaker does not count, so at
        # most one such call comes on top of the 5 connection failures that open it.
        timed_out = [e for e in refused if isinstance(e, asyncres.TimeoutExceededError)]
        assert len(timed_out) <= 1, refused
        assert len(refused) - len(timed_out) == 5  # the default breaker opens after 5 failures
        assert all(asyncres.db.is_connection_error(e) for e in refused if e not in timed_out), (
            refused
        )
        assert [type(e) for e in events if isinstance(e, asyncres.events.CircuitOpened)]
        health = await pool.health()
        assert (health.status, health.breaker) == ("unhealthy", "open")

        server.restart_same_port()
        back = time.monotonic()
        while True:  # the breaker lets a probe through within seconds; it succeeds
            try:
                async with pool.connection() as conn:
                    assert await conn.fetchval("SELECT 1") == 1
                break
            except (asyncres.CircuitOpenError, OSError, asyncpg.PostgresError):
                assert time.monotonic() - back < 15.0
                await anyio.sleep(0.05)
        await settle(pool)
        stats = pool.statistics()
        assert stats.size >= 2
        assert len(await server_sessions(server.dsn)) == stats.size
        health = await pool.health(deep=True)
        assert (health.status, health.breaker) == ("healthy", "closed")


@asyncio_test
async def test_ten_thousand_randomly_cancelled_operations_leak_nothing(
    postgres_dsn: str,
) -> None:
    """After 10,000 random operations, many cancelled mid-query, the server sees 8 idle
    sessions and nothing else."""
    await create_items(postgres_dsn)
    counts = {"ok": 0, "cut": 0, "refused": 0}
    rng = random.Random(11)

    async def work(conn: asyncpg.Connection, name: str, sleep: float) -> None:
        await conn.execute("INSERT INTO items (name) VALUES ($1)", name)
        if sleep:
            await conn.execute("SELECT pg_sleep($1)", sleep)

    async with pool_for(
        postgres_dsn, min_size=8, max_size=8, max_queued=8, acquire_timeout=0.05
    ) as pool:
        names = iter(range(10_000))

        async def worker(seed: int) -> None:
            local = random.Random(seed)
            for n in names:
                limit = local.choice([0.0, 0.0005, 0.002, 0.005, 0.02, 0.5])
                sleep = local.choice([0.0, 0.0, 0.001, 0.003, 0.01])
                outcome = "cut"
                with anyio.move_on_after(limit):
                    try:
                        if local.random() < 0.5:
                            await pool.run(work, f"n{n}", sleep)
                        else:
                            async with pool.connection() as conn:
                                async with conn.transaction():
                                    await work(conn, f"n{n}", sleep)
                        outcome = "ok"
                    except PoolExhaustedError:
                        outcome = "refused"
                    except asyncpg.QueryCanceledError:
                        outcome = "cut"  # the server enforced the deadline first
                counts[outcome] += 1
                if outcome == "refused":
                    await anyio.sleep(local.uniform(0.0, 0.002))

        async with anyio.create_task_group() as tg:
            for _ in range(16):
                tg.start_soon(worker, rng.randrange(1 << 30))
        await settle(pool, 20.0)
        stats = pool.statistics()
        assert sum(counts.values()) == 10_000
        assert counts["ok"] > 200, counts
        assert counts["cut"] > 200, counts
        assert stats.interrupted > 100, stats
        assert (stats.size, stats.idle, stats.in_use, stats.waiting) == (8, 8, 0, 0)
        sessions = await server_sessions(postgres_dsn)
        assert len(sessions) == 8
        assert all(s["state"] == "idle" for s in sessions), sessions
        async with pool.connection() as conn:
            rows = await count(conn)
    assert counts["ok"] <= rows <= counts["ok"] + counts["cut"]
    assert await server_sessions(postgres_dsn) == []


def test_the_postgres_example_runs(postgres_dsn: str) -> None:
    """examples/db_postgres.py (not standalone) runs against the test server."""
    root = Path(__file__).resolve().parent.parent
    pythonpath = os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, str(root / "examples" / "db_postgres.py")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=root,
        env={**os.environ, "PYTHONPATH": pythonpath, "ASYNCRES_PG_DSN": postgres_dsn},
    )
    assert result.returncode == 0, result.stderr
    assert "cancelled on the server" in result.stdout
    assert "balances: [(1, 70), (2, 30)]" in result.stdout


@pytest.mark.parametrize(("required", "outcome"), [("1", "1 error"), ("", "1 skipped")])
def test_a_missing_server_fails_when_required(required: str, outcome: str) -> None:
    """Without server binaries the PostgreSQL tests skip, or fail when CI requires them."""
    root = Path(__file__).resolve().parent.parent
    test = "tests/test_db_postgres.py::test_run_commits_and_connection_reads"
    env = {**os.environ, "ASYNCRES_PG_BIN": "/nonexistent", "ASYNCRES_REQUIRE_POSTGRES": required}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=root,
        env=env,
    )
    assert outcome in result.stdout, result.stdout
    assert (result.returncode != 0) == bool(required)
    if required:
        assert "PostgreSQL is required (ASYNCRES_REQUIRE_POSTGRES=1)" in result.stdout
