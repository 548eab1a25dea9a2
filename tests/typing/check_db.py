"""Checked by mypy --strict (not run): pools hand out the driver's connection type, and
run() keeps the signature of the function it runs."""

from __future__ import annotations

from typing import Any, assert_type

import aiosqlite

import asyncres
import asyncres.db

pool = asyncres.db.sqlite("app.db", max_size=4, acquire_timeout=1.0, begin="immediate")
assert_type(pool, asyncres.db.GuardedPool[aiosqlite.Connection])
pg = asyncres.db.postgres("postgresql://app@localhost/app", isolation="serializable")


async def add(conn: aiosqlite.Connection, key: str, *, amount: int = 0) -> int:
    cursor = await conn.execute("INSERT INTO orders VALUES (?, ?)", (key, amount))
    return cursor.lastrowid or 0


async def main() -> None:
    async with pool:
        async with pool.connection() as conn:
            assert_type(conn, aiosqlite.Connection)
        assert_type(await pool.run(add, "k", amount=3), int)
        assert_type(await pool.health(deep=True), asyncres.db.PoolHealth)
        assert_type(pool.statistics(), asyncres.db.PoolStatistics)
        await pool.run(add, 1)  # type: ignore[arg-type]
        await pool.run(add, "k", amount="3")  # type: ignore[arg-type]
    async with pg, pg.connection() as conn:
        assert_type(conn, Any)
    assert asyncres.db.is_transient(ValueError()) is False
