"""The caller's deadline, carried by `Request-Timeout` through `asyncres.asgi.protect`, stops
a PostgreSQL statement on the server (uvicorn + asyncpg: asyncio only, real time).

Nothing else could stop it: uvicorn does not cancel an app whose client has left, and the
statement asks the server for 30 s of work.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import anyio
import asyncpg
import httpx
import pytest
from asyncio_only import asyncio_test
from servers import running_server

import asyncres
import asyncres.db
import asyncres.httpx
from asyncres.asgi import protect

APP = "asyncres-asgi-test"


class SleepingApp:
    """``GET /sleep`` runs ``SELECT pg_sleep(30)`` through an `asyncres.db` pool that lives
    on the server's loop (opened on the first request); ``GET /close`` closes it."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.pool: Any = None
        self.outcomes: list[str] = []
        self.statements = 0
        self.holder: asyncio.Task[None] | None = None
        self.closing = asyncio.Event()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if self.holder is None:
            await self.open()
        if scope["path"] == "/close":
            self.closing.set()
            assert self.holder is not None
            await self.holder
        else:
            try:
                async with self.pool.connection() as conn:
                    self.statements += 1
                    await conn.execute("SELECT pg_sleep(30)")
            except BaseException as exc:
                self.outcomes.append(type(exc).__name__)
                raise
            self.outcomes.append("finished")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"done"})

    async def open(self) -> None:
        """Open the pool in a task of its own on the server's loop (a pool's task group
        must be left by the task that entered it), held until ``/close``."""
        ready = asyncio.Event()

        async def hold() -> None:
            settings = {"server_settings": {"application_name": APP}}
            async with asyncres.db.postgres(self.dsn, max_size=2, connect_kwargs=settings) as pool:
                self.pool = pool
                ready.set()
                await self.closing.wait()

        self.holder = asyncio.get_running_loop().create_task(hold())
        await ready.wait()


async def active_sleeps(dsn: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetch(
            "SELECT pid, state FROM pg_stat_activity WHERE application_name = $1 "
            "AND state = 'active' AND query LIKE '%pg_sleep%'",
            APP,
        )
    finally:
        await conn.close()


@asyncio_test
async def test_the_callers_deadline_cancels_the_statement_on_the_server(
    postgres_dsn: str,
) -> None:
    """httpx over ResilientTransport with 0.5 s left: the adapter sends it as
    `Request-Timeout`, the Deadline runs the app inside it, and when it fires the pool's
    guard cancels pg_sleep on PostgreSQL — within a fraction of the statement's 30 s, though
    the client (whose own deadline fires first) has left and uvicorn does not cancel the
    app for that."""
    app = SleepingApp(postgres_dsn)
    protected = protect(app)
    policy = asyncres.httpx.standard_policy(max_attempts=1)
    with running_server(protected, kind="uvicorn") as server:
        transport = asyncres.httpx.ResilientTransport(httpx.AsyncHTTPTransport(), policy=policy)
        async with httpx.AsyncClient(transport=transport, base_url=server.url) as client:
            started = time.monotonic()
            with pytest.raises(asyncres.TimeoutExceededError), asyncres.timeout(0.5):
                await client.get("/sleep")
            # Bounded wait for the server to report the session idle again.
            for _ in range(100):
                if not await active_sleeps(postgres_dsn):
                    break
                await anyio.sleep(0.02)
            assert await active_sleeps(postgres_dsn) == []
            assert time.monotonic() - started < 3.0
            assert protected.deadline.statistics().cancelled == 1
            assert app.statements == 1  # the statement did start on the server
            assert app.outcomes, app.outcomes
            assert app.outcomes[0] != "finished", app.outcomes
            assert (await client.get("/close")).status_code == 200
