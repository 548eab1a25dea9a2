"""asyncres.db on PostgreSQL: deadlines that reach the server, retries, breaker, health.

Run: ASYNCRES_PG_DSN=postgresql://user@host/db python examples/db_postgres.py

Needs a PostgreSQL server (the test suite runs this example against its own). asyncpg runs
on asyncio only, so this example always runs on asyncio.
"""
# example: not standalone

from __future__ import annotations

import json
import os
import sys

import anyio
import asyncpg

import asyncres
import asyncres.db
from asyncres import backoff


async def transfer(conn: asyncpg.Connection, source: int, target: int, amount: int) -> None:
    """Runs in one transaction; serialization failures and deadlocks are retried."""
    await conn.execute("UPDATE accounts SET balance = balance - $1 WHERE id = $2", amount, source)
    await conn.execute("UPDATE accounts SET balance = balance + $1 WHERE id = $2", amount, target)


async def main(dsn: str) -> None:
    async with asyncres.db.postgres(
        dsn,
        min_size=2,
        max_size=10,
        statement_timeout=5.0,  # no statement runs longer, deadline or not
        isolation="serializable",
    ) as pool:
        await pool.run(_setup)
        await pool.run(transfer, 1, 2, 30)

        # The deadline is the server's statement_timeout too; when it fires the server is
        # told to stop, and the connection is rolled back and reused.
        try:
            with asyncres.timeout(0.3):
                async with pool.connection() as conn:
                    await conn.execute("SELECT pg_sleep(10)")
        except asyncres.TimeoutExceededError:
            print("pg_sleep(10) cancelled on the server after 0.3 s")

        # A health endpoint: shallow is free; deep is one bounded, cached round trip.
        health = await pool.health(deep=True)
        print(json.dumps(health.as_dict(), indent=1)[:200], "...")

    # Your own retry and breaker (the defaults are in the README's table).
    custom = asyncres.db.postgres(
        dsn,
        retry=asyncres.Retry(
            on=asyncres.db.is_transient,
            max_attempts=5,
            backoff=backoff.FullJitter(base=0.02, cap=1.0),
        ),
        breaker=asyncres.CircuitBreaker(
            failure_threshold=3,
            recovery_time=2.0,
            on=asyncres.db.is_connection_error,
        ),
    )
    async with custom:
        print("balances:", await custom.run(_balances))


async def _setup(conn: asyncpg.Connection) -> None:
    await conn.execute("CREATE TABLE IF NOT EXISTS accounts (id int PRIMARY KEY, balance int)")
    await conn.execute(
        "INSERT INTO accounts VALUES (1, 100), (2, 0) ON CONFLICT (id) DO UPDATE "
        "SET balance = EXCLUDED.balance"
    )


async def _balances(conn: asyncpg.Connection) -> list[tuple[int, int]]:
    rows = await conn.fetch("SELECT id, balance FROM accounts ORDER BY id")
    return [(row["id"], row["balance"]) for row in rows]


if __name__ == "__main__":
    dsn = os.environ.get("ASYNCRES_PG_DSN")
    if not dsn:
        sys.exit("set ASYNCRES_PG_DSN to a PostgreSQL DSN, e.g. postgresql://app@localhost/app")
    anyio.run(main, dsn, backend="asyncio")
