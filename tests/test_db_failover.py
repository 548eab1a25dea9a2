"""asyncres.db.postgres(dsns=[primary, standby]): a real primary and a real streaming
standby (initdb, pg_basebackup -R, pg_ctl promote). asyncpg: asyncio only, real time."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
from asyncio_only import asyncio_test
from local_postgres import PostgresServer, PostgresUnavailable

import asyncres
import asyncres.db

# A standby needs WAL that a base backup can replay: the test template's speed settings
# (full_page_writes=off) do not allow that.
REPLICATION = {"full_page_writes": "on", "wal_level": "replica", "hot_standby": "on"}


@pytest.fixture
def primary_and_standby(postgres_template: PostgresServer) -> Iterator[tuple[Any, Any]]:
    primary = PostgresServer(postgres_template.bindir, settings=REPLICATION)
    standby = PostgresServer(postgres_template.bindir, settings=REPLICATION)
    try:
        try:
            primary.clone_from(postgres_template)
            primary.start()
            standby.base_backup_from(primary)
            standby.start()
        except PostgresUnavailable as exc:
            pytest.fail(f"could not start a primary and a standby: {exc}")
        yield primary, standby
    finally:
        standby.destroy()
        primary.destroy()


async def role(conn: Any) -> str:
    standby = await conn.fetchval("SELECT pg_is_in_recovery()")
    return "standby" if standby else "primary"


async def eventually(check: Any, seconds: float = 20.0) -> Any:
    """Poll ``check()`` (bounded, real time) until it returns a truthy value."""
    deadline = time.monotonic() + seconds
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = await check()
            if value:
                return value
        except Exception as exc:  # collected for the failure message
            last = exc
        await anyio.sleep(0.1)
    raise AssertionError(f"not within {seconds} s (last error: {last!r})")


@asyncio_test
async def test_writes_fail_over_to_the_promoted_standby_and_reads_never_stop(
    primary_and_standby: tuple[Any, Any],
) -> None:
    primary, standby = primary_and_standby
    dsns = [primary.dsn, standby.dsn]
    writes = asyncres.db.postgres(dsns=dsns, min_size=1, max_size=4)
    reads = asyncres.db.postgres(
        dsns=dsns, target_session_attrs="prefer-standby", min_size=1, max_size=4
    )
    async with writes, reads:
        async with writes.connection() as conn:
            assert await role(conn) == "primary"
            await conn.execute("CREATE TABLE orders (id int PRIMARY KEY)")
            await conn.execute("INSERT INTO orders VALUES (1)")

        async def replicated() -> bool:
            async with reads.connection() as conn:
                assert await role(conn) == "standby"  # reads prefer the standby
                return bool(await conn.fetchval("SELECT count(*) FROM orders") == 1)

        await eventually(replicated)

        primary.stop("immediate")  # the primary is lost (a crash, no clean shutdown)

        # No promotion yet: writes fail fast with a typed error; reads carry on.
        refusals: list[tuple[asyncres.db.NoServerMatchedError, float]] = []

        async def refused() -> bool:
            started = time.monotonic()
            try:
                async with writes.connection() as conn:
                    await conn.execute("INSERT INTO orders VALUES (2)")
            except asyncres.db.NoServerMatchedError as exc:
                refusals.append((exc, time.monotonic() - started))
                return True
            except (OSError, asyncres.ResilienceError):
                return False  # the old primary's broken connections go first
            raise AssertionError("a write succeeded with no primary")

        await eventually(refused)
        error, took = refusals[-1]
        assert error.target_session_attrs == "read-write"
        assert took < 2.0
        async with reads.connection() as conn:
            assert await conn.fetchval("SELECT count(*) FROM orders") == 1

        standby.promote()

        async def written() -> bool:
            async with writes.connection() as conn:
                assert await role(conn) == "primary"  # the promoted standby
                await conn.execute("INSERT INTO orders VALUES (2) ON CONFLICT DO NOTHING")
                return bool(await conn.fetchval("SELECT count(*) FROM orders") == 2)

        await eventually(written)
        stats = writes.statistics()
        assert stats.in_use == 0


def test_bad_dsns_name_the_parameter() -> None:
    with pytest.raises(ValueError, match="`dsns`"):
        asyncres.db.postgres(dsns=[])
    with pytest.raises(ValueError, match="`dsns`"):
        asyncres.db.postgres(dsns=["mysql://h/db"])
    with pytest.raises(ValueError, match="differ only in host and port"):
        asyncres.db.postgres(dsns=["postgresql://a@h1/db", "postgresql://b@h2/db"])
    with pytest.raises(ValueError, match="`target_session_attrs`"):
        asyncres.db.postgres(dsns=["postgresql://a@h1/db"], target_session_attrs="writer")
    with pytest.raises(ValueError, match="not both"):
        asyncres.db.postgres("postgresql://a@h1/db", dsns=["postgresql://a@h1/db"])
    driver = asyncres.db.PostgresDriver(
        dsns=["postgresql://a:pw@h1:5433/db", "postgresql://a:pw@h2/db"]
    )
    assert driver.dsns == ("postgresql://a:pw@h1:5433/db", "postgresql://a:pw@h2/db")
    assert driver.target_session_attrs == "read-write"
