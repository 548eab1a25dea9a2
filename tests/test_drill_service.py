"""The drill's backend service, in process: both clients meet the same faults, the protected
one's backend runs behind `asyncres.asgi.protect`, slow statements are slow from their start.

On asyncio in real time: the backends keep their items in SQLite through aiosqlite.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import httpx
from asyncio_only import asyncio_test

from asyncres import db
from asyncres.asgi import Protected
from asyncres.drill._metrics import SETTLE, judged_until
from asyncres.drill._service import CLIENTS, Backend, DrillService, create_schema


@contextlib.asynccontextmanager
async def service(folder: Path) -> AsyncIterator[tuple[DrillService, httpx.AsyncClient]]:
    backends = {name: Backend(name=name, database=folder / f"{name}.db") for name in CLIENTS}
    async with contextlib.AsyncExitStack() as stack:
        for backend in backends.values():
            backend.pool = await stack.enter_async_context(
                db.sqlite(backend.database, min_size=1, max_size=4, max_queued=8)
            )
            await create_schema(backend.pool)
        app = DrillService(backends, seed=7)
        transport = httpx.ASGITransport(app=app)
        client = httpx.AsyncClient(transport=transport, base_url="http://drill.test")
        async with client:
            yield app, client


async def set_faults(client: httpx.AsyncClient, **faults: float) -> None:
    response = await client.post("/_drill/faults", json={"faults": faults})
    response.raise_for_status()


@asyncio_test
async def test_random_faults_are_drawn_per_request_and_attempt_alike_for_both_clients(
    tmp_path: Path,
) -> None:
    """The n-th request's k-th attempt gets the same brownout answer at both backends, so a
    difference between the clients is theirs, not the dice's."""
    async with service(tmp_path) as (_, client):
        await set_faults(client, brownout=0.5)
        outcomes: dict[str, list[int]] = {}
        for name in CLIENTS:
            statuses = []
            for n in range(40):
                for _ in range(3):  # three attempts of request n
                    response = await client.get(
                        f"/item/{n}?n={n}", headers={"X-Drill-Client": name}
                    )
                    statuses.append(response.status_code)
            outcomes[name] = statuses
        assert outcomes["naive"] == outcomes["protected"]
        assert set(outcomes["naive"]) == {200, 503}
        share = outcomes["naive"].count(503) / len(outcomes["naive"])
        assert 0.3 < share < 0.7, share


@asyncio_test
async def test_the_protected_backend_runs_behind_protect_and_counts_what_fired(
    tmp_path: Path,
) -> None:
    """A spent budget gets 504 from the protected backend without touching its database
    (counted as expired); the naive backend is the plain service and serves it."""
    async with service(tmp_path) as (app, client):
        assert isinstance(app.backends["protected"].app, Protected)
        assert not isinstance(app.backends["naive"].app, Protected)
        spent = {"Request-Timeout": "0"}
        naive = await client.get("/item/1", headers={"X-Drill-Client": "naive", **spent})
        protected = await client.get("/item/1", headers={"X-Drill-Client": "protected", **spent})
        assert naive.status_code == 200
        assert protected.status_code == 504
        stats = (await client.get("/_drill/stats")).json()
        assert sum(stats["protected"]["expired"].values()) == 1
        assert sum(stats["naive"]["expired"].values()) == 0
        for name in CLIENTS:
            assert sum(stats[name]["reached"].values()) == 1


@asyncio_test
async def test_a_statement_is_as_slow_as_the_database_when_it_starts(tmp_path: Path) -> None:
    """A statement begun during a slowdown takes the slow time; one begun after the
    slowdown ends is fast, even though its request arrived while the database was slow."""
    async with service(tmp_path) as (_, client):
        await set_faults(client, slow_db=0.4)
        headers = {"X-Drill-Client": "naive"}
        took: dict[str, float] = {}

        async def get(label: str) -> None:
            start = time.monotonic()
            response = await client.get("/item/2", headers=headers)
            assert response.status_code == 200
            took[label] = time.monotonic() - start

        async with anyio.create_task_group() as tg:
            for index in range(4):  # the pool's four connections, all slow
                tg.start_soon(get, f"slow {index}")
            await anyio.sleep(0.05)
            tg.start_soon(get, "queued")  # waits for a connection while the database is slow
            await anyio.sleep(0.05)
            await set_faults(client)  # the slowdown ends before the queued one starts
        assert all(0.4 <= took[f"slow {index}"] < 1.0 for index in range(4)), took
        # A connection's wait (~0.35 s), not that plus another slow statement (~0.75 s).
        assert took["queued"] < 0.55, took


def test_a_phase_is_judged_without_its_last_second_unless_it_is_short() -> None:
    assert judged_until(10.0, 18.0) == 18.0 - SETTLE
    assert judged_until(10.0, 10.0 + 2 * SETTLE) == 10.0 + SETTLE
    assert judged_until(10.0, 11.5) == 11.5
