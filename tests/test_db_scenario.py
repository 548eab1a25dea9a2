"""The seed's story, for real: the database slows down under a steady stream of INSERTs.

A real PostgreSQL server; the slowdown is another session holding ``LOCK TABLE`` for a
while. Clients send INSERTs open-loop, each with a client timeout and the pool's retries.
The pool must never wedge or leak, no INSERT may land twice (an idempotency-key column
without a unique index proves it), every INSERT reported as done must be there, and
throughput must come back within a second of the database recovering.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import anyio
import asyncpg
from asyncio_only import asyncio_test

import asyncres
from asyncres.db import PoolExhaustedError

APP = "asyncres-scenario"
RATE = 200.0  # INSERTs per second, open loop
CLIENT_TIMEOUT = 0.25
NORMAL, SLOW, AFTER = 0.8, 1.5, 1.7  # seconds of each phase


@dataclass
class Request:
    key: str
    started: float
    finished: float = 0.0
    outcome: str = "pending"


async def insert_order(conn: asyncpg.Connection, key: str) -> None:
    await conn.execute("INSERT INTO orders (key) VALUES ($1)", key)


@asyncio_test
async def test_a_slowdown_under_steady_inserts_never_wedges_or_duplicates(
    postgres_dsn: str,
) -> None:
    """Slow database, steady INSERTs with timeouts and retries: no wedge, no leak, no
    duplicate, nothing lost, and throughput back within 1 s of recovery."""
    admin = await asyncpg.connect(postgres_dsn)
    await admin.execute(
        "CREATE TABLE orders (id bigserial PRIMARY KEY, key text NOT NULL, at timestamptz "
        "DEFAULT clock_timestamp())"  # no unique index on key: duplicates would show
    )
    requests: list[Request] = []
    pool = asyncres.db.postgres(
        postgres_dsn,
        min_size=4,
        max_size=10,
        connect_kwargs={"server_settings": {"application_name": APP}},
    )
    try:
        async with pool:

            async def one(request: Request) -> None:
                try:
                    with asyncres.timeout(CLIENT_TIMEOUT):
                        await pool.run(insert_order, request.key)
                    request.outcome = "ok"
                except asyncres.TimeoutExceededError:
                    request.outcome = "timeout"
                except PoolExhaustedError:
                    request.outcome = "exhausted"
                except asyncpg.QueryCanceledError:
                    request.outcome = "server_timeout"
                request.finished = time.monotonic()

            start = time.monotonic()
            slow_from = start + NORMAL
            slow_until = slow_from + SLOW
            end = slow_until + AFTER
            async with anyio.create_task_group() as tg:

                async def slowdown() -> None:
                    await anyio.sleep(slow_from - time.monotonic())
                    await admin.execute("BEGIN; LOCK TABLE orders IN ACCESS EXCLUSIVE MODE")
                    await anyio.sleep(slow_until - time.monotonic())
                    await admin.execute("COMMIT")

                tg.start_soon(slowdown)
                n = 0
                while (now := time.monotonic()) < end:
                    due = start + n / RATE
                    if due > now:
                        await anyio.sleep(due - now)
                    request = Request(f"order-{n}", time.monotonic())
                    requests.append(request)
                    tg.start_soon(one, request)
                    n += 1
            released = slow_until

            # The pool never wedged and leaked nothing.
            stats = pool.statistics()
            assert (stats.in_use, stats.waiting, stats.resetting) == (0, 0, 0)
            sessions = await admin.fetch(
                "SELECT state FROM pg_stat_activity WHERE application_name = $1", APP
            )
            assert len(sessions) == stats.size <= 10
            assert {s["state"] for s in sessions} == {"idle"}
    finally:
        await admin.close()

    conn = await asyncpg.connect(postgres_dsn)
    try:
        rows = {
            r["key"]: r["n"]
            for r in await conn.fetch("SELECT key, count(*) AS n FROM orders GROUP BY key")
        }
    finally:
        await conn.close()

    outcomes = {r.outcome for r in requests}
    assert "pending" not in outcomes
    assert "ok" in outcomes
    assert outcomes & {"timeout", "exhausted", "server_timeout"}  # the slowdown was felt
    # Committed exactly once, or reported as failed (a timed-out COMMIT may have landed).
    assert max(rows.values()) == 1
    for request in requests:
        if request.outcome == "ok":
            assert rows.get(request.key) == 1, request
    # Nobody hung: every caller had its answer within its timeout (plus scheduling slack).
    assert max(r.finished - r.started for r in requests) < CLIENT_TIMEOUT + 0.25
    # Throughput is back within 1 s of the database recovering.
    later = [r for r in requests if r.started >= released + 1.0]
    assert later
    assert sum(r.outcome == "ok" for r in later) >= 0.95 * len(later)
    first_ok = min(r.finished for r in requests if r.outcome == "ok" and r.finished > released)
    assert first_ok - released < 1.0
