"""asyncres.db on SQLite: a guarded pool, transactions with retries, deadlines, health.

Run: python examples/db_sqlite.py [asyncio|trio]

aiosqlite runs on asyncio only, so this example always runs on asyncio (it says so when
asked for trio). It uses a database file in a temporary directory.
"""

from __future__ import annotations

import sqlite3
import sys
import tempfile
from pathlib import Path

import aiosqlite
import anyio

import asyncres
import asyncres.db


async def add_order(conn: aiosqlite.Connection, key: str, amount: int) -> int:
    """One transaction: run() begins it, commits it, and retries it on busy errors."""
    cursor = await conn.execute("INSERT INTO orders (key, amount) VALUES (?, ?)", (key, amount))
    return cursor.lastrowid or 0


async def main(path: Path) -> None:
    async with asyncres.db.sqlite(path, max_size=4, begin="immediate") as pool:
        async with pool.connection() as conn:
            await conn.execute(
                "CREATE TABLE orders (id INTEGER PRIMARY KEY, key TEXT UNIQUE, amount INT)"
            )

        # A transaction, committed; transient errors (database is locked) are retried.
        order_id = await pool.run(add_order, "order-1", 30)
        print("inserted order", order_id)

        # Other errors propagate at once: no retry, rolled back.
        try:
            await pool.run(add_order, "order-1", 99)
        except sqlite3.IntegrityError as exc:
            print("not retried:", exc)

        # The caller's deadline reaches the database: a runaway statement is interrupted
        # when it passes, and the connection comes back to the pool rolled back.
        try:
            with asyncres.timeout(0.1):
                async with pool.connection() as conn:
                    await conn.execute(
                        "WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r) "
                        "SELECT count(*) FROM r"
                    )
        except asyncres.TimeoutExceededError:
            print("runaway query stopped at the deadline")

        health = await pool.health(deep=True)
        print("health:", health.status, f"(round trip {health.latency * 1000:.2f} ms)")
        stats = pool.statistics()
        print(f"pool: size={stats.size} in_use={stats.in_use} interrupted={stats.interrupted}")

    # A full pool fails fast instead of queueing without end.
    async with asyncres.db.sqlite(path, max_size=1, max_queued=0) as small, small.connection():
        try:
            async with small.connection():
                pass
        except asyncres.db.PoolExhaustedError as exc:
            print("refused at once:", exc.reason)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] != "asyncio":
        print(f"aiosqlite runs on asyncio only: running on asyncio, not {sys.argv[1]}")
    with tempfile.TemporaryDirectory() as tmp:
        anyio.run(main, Path(tmp) / "shop.db", backend="asyncio")
