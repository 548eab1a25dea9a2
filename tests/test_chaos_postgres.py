"""FaultProxy between asyncpg and a real PostgreSQL server (started from initdb/pg_ctl).

The server is started once for this module in a temporary directory, on 127.0.0.1 and a
free port, as the ``postgres`` user when the tests run as root. Without PostgreSQL's
binaries the tests are skipped, unless ``ASYNCRES_REQUIRE_POSTGRES=1`` makes that a failure.
asyncpg runs on asyncio only, so these tests do too (real clock).
"""

from __future__ import annotations

import asyncio
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest
from servers import free_port

from asyncres.chaos import (
    BandwidthToxic,
    FaultProxy,
    LatencyToxic,
    LimitDataToxic,
    ResetPeerToxic,
    SlicerToxic,
    TimeoutToxic,
)

asyncpg = pytest.importorskip("asyncpg")

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    """asyncpg is asyncio-only; real clock."""
    return ("asyncio", {"loop_factory": asyncio.new_event_loop})


@dataclass
class Postgres:
    host: str
    port: int
    user: str
    database: str

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)


def _pg_bin() -> Path | None:
    candidates = [os.environ.get("ASYNCRES_PG_BIN", "")]
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    which = shutil.which("pg_ctl")
    if which:
        candidates.append(str(Path(which).parent))
    for candidate in candidates:
        if candidate and (Path(candidate) / "initdb").exists():
            return Path(candidate)
    return None


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    """A throwaway PostgreSQL server on 127.0.0.1 for this module."""
    bin_dir = _pg_bin()
    if bin_dir is None:
        reason = "PostgreSQL binaries (initdb, pg_ctl) not found"
        if os.environ.get("ASYNCRES_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"{reason}, and ASYNCRES_REQUIRE_POSTGRES=1")
        pytest.skip(reason)
    run_as: dict[str, Any] = {}
    root = Path(tempfile.mkdtemp(prefix="asyncres-pg-"))
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        account = pwd.getpwnam("postgres")
        run_as = {"user": account.pw_uid, "group": account.pw_gid}
        os.chown(root, account.pw_uid, account.pw_gid)
    data, log = root / "data", root / "server.log"
    port = free_port()
    try:
        subprocess.run(
            [
                bin_dir / "initdb",
                "-D",
                data,
                "-U",
                "test",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
            ],
            check=True,
            capture_output=True,
            **run_as,
        )
        options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
        subprocess.run(
            [bin_dir / "pg_ctl", "-D", data, "-l", log, "-o", options, "-w", "-t", "30", "start"],
            check=True,
            capture_output=True,
            **run_as,
        )
    except subprocess.CalledProcessError as exc:
        shutil.rmtree(root, ignore_errors=True)
        detail = exc.stderr.decode(errors="replace") if exc.stderr else ""
        pytest.fail(f"could not start PostgreSQL: {detail}")
    try:
        yield Postgres("127.0.0.1", port, "test", "postgres")
    finally:
        subprocess.run(
            [bin_dir / "pg_ctl", "-D", data, "-m", "immediate", "-w", "stop"],
            capture_output=True,
            **run_as,
        )
        shutil.rmtree(root, ignore_errors=True)


async def connect(proxy: FaultProxy, pg: Postgres, **options: Any) -> Any:
    return await asyncpg.connect(
        host=proxy.host, port=proxy.port, user=pg.user, database=pg.database, **options
    )


async def test_queries_pass_through(postgres: Postgres) -> None:
    """Without toxics asyncpg works through the proxy as it does directly."""
    with anyio.fail_after(20):
        async with FaultProxy(upstream=postgres.address) as proxy:
            conn = await connect(proxy, postgres)
            try:
                assert await conn.fetchval("SELECT 1 + 1") == 2
                rows = await conn.fetch("SELECT g FROM generate_series(1, 1000) AS g")
            finally:
                await conn.close()
    assert [r["g"] for r in rows] == list(range(1, 1001))


async def test_latency_slows_every_query(postgres: Postgres) -> None:
    """100 ms of latency on the replies makes each query take at least 100 ms."""
    with anyio.fail_after(20):
        async with FaultProxy(upstream=postgres.address) as proxy:
            conn = await connect(proxy, postgres)
            try:
                await conn.fetchval("SELECT 1")
                proxy.add(LatencyToxic(0.1))
                timings = []
                for _ in range(3):
                    start = time.perf_counter()
                    assert await conn.fetchval("SELECT 1") == 1
                    timings.append(time.perf_counter() - start)
            finally:
                await conn.close()
    assert all(0.1 <= t < 0.3 for t in timings), timings


async def test_reset_peer_breaks_a_running_query(postgres: Postgres) -> None:
    """A reset in the middle of a query surfaces as a lost connection in asyncpg."""
    with anyio.fail_after(20):
        async with FaultProxy(upstream=postgres.address) as proxy:
            conn = await connect(proxy, postgres)
            try:
                proxy.add(ResetPeerToxic(0.1))
                start = time.perf_counter()
                with pytest.raises((ConnectionResetError, asyncpg.ConnectionDoesNotExistError)):
                    await conn.fetchval("SELECT pg_sleep(2)")
                elapsed = time.perf_counter() - start
                assert conn.is_closed()
            finally:
                await conn.close()
    assert 0.1 <= elapsed < 1.0


async def test_down_refuses_connections_until_it_comes_back(postgres: Postgres) -> None:
    """A disabled proxy refuses connections; re-enabled it serves on the same port."""
    with anyio.fail_after(20):
        async with FaultProxy(upstream=postgres.address) as proxy:
            proxy.enabled = False
            with pytest.raises(OSError):
                await connect(proxy, postgres)
            proxy.enabled = True
            conn = await connect(proxy, postgres)
            try:
                assert await conn.fetchval("SELECT 'up'") == "up"
            finally:
                await conn.close()


async def test_black_hole_trips_the_clients_own_timeouts(postgres: Postgres) -> None:
    """A timeout toxic: the query timeout fires, and so does the connect timeout."""
    with anyio.fail_after(20):
        async with FaultProxy(upstream=postgres.address) as proxy:
            conn = await connect(proxy, postgres)
            try:
                hole = proxy.add(TimeoutToxic())
                start = time.perf_counter()
                with pytest.raises(TimeoutError):
                    await conn.fetchval("SELECT 1", timeout=0.2)
                assert 0.2 <= time.perf_counter() - start < 0.6
            finally:
                conn.terminate()
            start = time.perf_counter()
            with pytest.raises(TimeoutError):
                await connect(proxy, postgres, timeout=0.3)
            assert 0.3 <= time.perf_counter() - start < 0.8
            proxy.remove(hole)


async def test_limit_data_cuts_a_large_result(postgres: Postgres) -> None:
    """Closing after 2 kB of replies loses the connection in the middle of a big result."""
    with anyio.fail_after(20):
        async with FaultProxy(upstream=postgres.address) as proxy:
            conn = await connect(proxy, postgres)
            try:
                proxy.add(LimitDataToxic(2000))
                with pytest.raises((ConnectionResetError, asyncpg.ConnectionDoesNotExistError)):
                    await conn.fetch("SELECT repeat('x', 100) FROM generate_series(1, 1000)")
            finally:
                await conn.close()


async def test_sliced_replies_still_parse(postgres: Postgres) -> None:
    """The wire protocol sliced into 3-byte pieces still yields the right rows."""
    with anyio.fail_after(20):
        async with FaultProxy(upstream=postgres.address) as proxy:
            proxy.add(SlicerToxic(3, size_variation=2))
            conn = await connect(proxy, postgres)
            try:
                rows = await conn.fetch("SELECT g, md5(g::text) FROM generate_series(1, 200) g")
            finally:
                await conn.close()
    assert len(rows) == 200
    assert rows[-1]["g"] == 200


async def test_bandwidth_slows_a_large_result(postgres: Postgres) -> None:
    """About 200 kB of rows at 1 MB/s take about 200 ms."""
    with anyio.fail_after(20):
        async with FaultProxy(upstream=postgres.address) as proxy:
            conn = await connect(proxy, postgres)
            try:
                query = "SELECT repeat('x', 1000) FROM generate_series(1, 200)"
                await conn.fetch(query)
                proxy.add(BandwidthToxic(1_000_000))
                start = time.perf_counter()
                rows = await conn.fetch(query)
                elapsed = time.perf_counter() - start
            finally:
                await conn.close()
    assert len(rows) == 200
    assert 0.18 <= elapsed < 0.5, elapsed
