"""The drill's backend: a small real HTTP service over SQLite, in a process of its own.

Each client gets its own backend (its own database file, pool and counters), so that one
client's retry storm cannot steal capacity from the other: the comparison stays fair.
Both receive identical faults, set by the drill through ``POST /_drill/faults``; the drill
reads the counters with ``GET /_drill/stats``. Its own process (one core for the clients,
one for the service) keeps the service from starving the clients' event loop.

Both backends keep their database in an `asyncres.db.GuardedPool`, which refuses overflow
quickly with a 503 instead of queueing without bound. The naive client's backend is the plain
service; the protected client's runs behind `asyncres.asgi.protect` (the backend side of the
call): it reads the caller's remaining budget from ``Request-Timeout`` and stops the work when
it runs out, sheds what it cannot serve in time with 503 + ``Retry-After`` (the Shedder's
limit is the pool's size, so requests wait in its LIFO + CoDel queue, not in the pool's), and
counts what fired: shed, expired on arrival, cancelled at the deadline.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

import asyncres

from ..asgi import Protected, protect
from ._faults import CapacityBucket

#: Counters count per 1/TICKS of a second.
TICKS = 10

__all__ = ["Backend", "DrillService", "ServiceFaults"]

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

ITEMS = 1000
#: The database pool of each backend: connections, and requests it queues beyond them.
POOL_SIZE = 8
POOL_QUEUE = 16
#: What the server-side protections count, per tick: requests shed by the Shedder, answered
#: 504 because they arrived with no budget left, and stopped at the caller's deadline.
PROTECTIONS = ("shed", "expired", "cancelled")


@dataclass(frozen=True, slots=True)
class ServiceFaults:
    """The faults a backend itself applies (the proxies apply latency and outage).

    - ``error_period``: answer 503 with ``Retry-After: retry_after`` during every other
      ``error_period`` seconds since the faults were set (`ErrorBurst`);
    - ``slow_db``: seconds every database statement takes (`SlowDatabase`);
    - ``brownout``: the share of requests answered 503 without ``Retry-After`` (`Brownout`);
    - ``capacity``: requests served per second, 0 for no limit (`Overload`): beyond it
      503 without ``Retry-After``, each refusal costing a fifth of a request (`CapacityBucket`).
    """

    error_period: float = 0.0
    retry_after: int = 1
    slow_db: float = 0.0
    brownout: float = 0.0
    capacity: float = 0.0


@dataclass
class Backend:
    """One client's backend: faults in force, its pool, and what reached it when."""

    name: str
    database: Path
    pool: Any = None
    faults: ServiceFaults = field(default_factory=ServiceFaults)
    phase_started: float = 0.0
    #: ``time.monotonic()`` when the drill began (system-wide on Linux: both processes).
    started: float = 0.0
    #: Requests that reached the service, per tenth of a second since the drill began.
    reached: Counter[int] = field(default_factory=Counter)
    #: What the server-side protections did (`PROTECTIONS`), per tenth of a second.
    fired: dict[str, Counter[int]] = field(
        default_factory=lambda: {key: Counter() for key in PROTECTIONS}
    )
    #: The ASGI app serving this backend's requests (set by `DrillService`).
    app: Any = None
    #: The protections' totals already counted into ``fired``.
    seen: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PROTECTIONS, 0))
    in_flight: int = 0
    max_in_flight: int = 0
    #: The overload's capacity while an `Overload` is on (`ServiceFaults.capacity`).
    bucket: CapacityBucket | None = None

    def count_fired(self, now: float) -> None:
        """Add what the protections did since the last call to the tick of ``now``."""
        totals = _fired(self.app)
        tick = int((now - self.started) * TICKS)
        for key, total in totals.items():
            if total > self.seen[key]:
                self.fired[key][tick] += total - self.seen[key]
                self.seen[key] = total

    def admit(self, now: float) -> bool:
        """Whether the capacity left serves one more request now."""
        return self.bucket is None or self.bucket.admit(now)


class DrillService:
    """The ASGI app. ``GET /item/{id}`` with header ``X-Drill-Client: <backend name>``."""

    def __init__(self, backends: dict[str, Backend], seed: int) -> None:
        self.backends = backends
        for backend in backends.values():
            app: Any = _BackendApp(backend, seed)
            if backend.name == "protected":
                health = functools.partial(backend.pool.health, deep=True)
                app = protect(app, limit=POOL_SIZE, checks={"db": health})
            backend.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":  # pragma: no cover - lifespan is off
            return
        if scope["path"].startswith("/_drill/"):
            await self._admin(scope, receive, send)
            return
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        backend = self.backends.get(headers.get("x-drill-client", ""))
        if backend is None:
            await _reply(send, 404, {"error": "unknown client"})
            return
        now = time.monotonic()  # shared with the drill's thread
        second = int((now - backend.started) * TICKS)
        backend.reached[second] += 1
        backend.in_flight += 1
        backend.max_in_flight = max(backend.max_in_flight, backend.in_flight)
        try:
            await backend.app(scope, receive, send)
        finally:
            backend.in_flight -= 1
            backend.count_fired(time.monotonic())

    async def _admin(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The drill's control channel: set faults, read counters."""
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        path = scope["path"]
        if path == "/_drill/faults" and scope["method"] == "POST":
            data = json.loads(body)
            now = time.monotonic()
            for backend in self.backends.values():
                if "started" in data:
                    backend.started = float(data["started"])
                backend.faults = ServiceFaults(**data.get("faults", {}))
                backend.phase_started = now
                capacity = backend.faults.capacity
                backend.bucket = CapacityBucket(capacity, now) if capacity else None
            await _reply(send, 200, {"ok": True})
        elif path == "/_drill/stats":
            stats = {
                name: {
                    "reached": dict(backend.reached),
                    **{key: dict(counts) for key, counts in backend.fired.items()},
                    "in_flight": backend.in_flight,
                    "max_in_flight": backend.max_in_flight,
                }
                for name, backend in self.backends.items()
            }
            await _reply(send, 200, stats)
        else:
            await _reply(send, 404, {"error": "unknown admin route"})


def _fired(app: Any) -> dict[str, int]:
    """The protections' totals so far (all zero for the plain service)."""
    if not isinstance(app, Protected):
        return dict.fromkeys(PROTECTIONS, 0)
    deadline = app.deadline.statistics()
    return {
        "shed": sum(app.shedder.statistics().shed.values()),
        "expired": deadline.expired_on_arrival,
        "cancelled": deadline.cancelled,
    }


class _BackendApp:
    """One backend's service: the faults in force, then an item read from its database."""

    def __init__(self, backend: Backend, seed: int) -> None:
        self.backend = backend
        self.key = str(seed).encode()
        self.rng = random.Random(seed)
        #: Attempts seen per request number (``?n=`` in the query string).
        self.attempts: Counter[bytes] = Counter()

    def _draw(self, scope: Scope) -> float:
        """A number in [0, 1) for this attempt: the same for the same (request, attempt) at
        every backend, so random faults hit both clients alike; else from the seeded rng."""
        query: bytes = scope.get("query_string", b"")
        if not query.startswith(b"n="):
            return self.rng.random()
        self.attempts[query] += 1
        digest = hashlib.blake2b(b"%s:%d" % (query, self.attempts[query]), key=self.key)
        return int.from_bytes(digest.digest()[:7]) / float(1 << 56)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        backend = self.backend
        faults = backend.faults
        now = time.monotonic()
        if faults.error_period:
            window = int((now - backend.phase_started) / faults.error_period)
            if window % 2 == 0:
                await _reply(
                    send,
                    503,
                    {"error": "briefly unavailable"},
                    [(b"retry-after", str(faults.retry_after).encode())],
                )
                return
        if faults.brownout and self._draw(scope) < faults.brownout:
            await _reply(send, 503, {"error": "brownout"})
            return
        if not backend.admit(now):
            await _reply(send, 503, {"error": "overloaded"})
            return
        item = _item_id(scope["path"])
        try:
            row = await backend.pool.run(_read_item, item, backend)
        except asyncres.TimeoutExceededError:
            # The pool's guard saw the caller's budget run out first and raised; the Deadline
            # then sees an answer, not its scope firing, so the cancellation is counted here.
            backend.fired["cancelled"][int((time.monotonic() - backend.started) * TICKS)] += 1
            await _reply(send, 504, {"error": "budget exhausted"})
            return
        except asyncres.RejectedError as exc:
            # The pool is exhausted (or its breaker open): shed load, say when to come back.
            retry_after = max(1, math.ceil(getattr(exc, "retry_after", 1.0) or 1.0))
            await _reply(
                send,
                503,
                {"error": type(exc).__name__},
                [(b"retry-after", str(retry_after).encode())],
            )
            return
        await _reply(send, 200, {"id": item, "name": row[0], "views": row[1]})


async def _read_item(conn: Any, item: int, backend: Backend) -> tuple[str, int]:
    # The slowdown in force when the statement starts (not when the request arrived): a
    # statement that started slow finishes slow; the ones after the recovery are fast.
    slow = backend.faults.slow_db
    if slow:
        await anyio.sleep(slow)  # a slow statement: the connection stays checked out
    await conn.execute("UPDATE items SET views = views + 1 WHERE id = ?", (item,))
    cursor = await conn.execute("SELECT name, views FROM items WHERE id = ?", (item,))
    row = await cursor.fetchone()
    await cursor.close()
    return (str(row[0]), int(row[1])) if row else ("missing", 0)


async def create_schema(pool: Any) -> None:
    async def setup(conn: Any) -> None:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS items "
            "(id INTEGER PRIMARY KEY, name TEXT NOT NULL, views INTEGER NOT NULL DEFAULT 0)"
        )
        await conn.executemany(
            "INSERT OR IGNORE INTO items (id, name) VALUES (?, ?)",
            [(i, f"item-{i}") for i in range(ITEMS)],
        )

    await pool.run(setup)


def _item_id(path: str) -> int:
    try:
        return int(path.rsplit("/", 1)[-1]) % ITEMS
    except ValueError:
        return 0


async def _reply(
    send: Send,
    status: int,
    payload: dict[str, Any],
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    body = json.dumps(payload).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def serve(connection: Any, folder: str, seed: int) -> None:
    """Process entry point: open the pools, start uvicorn, send back the port, serve."""
    import asyncio

    asyncio.run(_serve_forever(connection, Path(folder), seed))


async def _serve_forever(connection: Any, folder: Path, seed: int) -> None:
    import contextlib
    import socket

    import uvicorn

    from asyncres import db

    backends = {name: Backend(name=name, database=folder / f"{name}.db") for name in CLIENTS}
    async with contextlib.AsyncExitStack() as stack:
        for backend in backends.values():
            backend.pool = await stack.enter_async_context(
                db.sqlite(
                    backend.database,
                    min_size=2,
                    max_size=POOL_SIZE,
                    max_queued=POOL_QUEUE,
                    acquire_timeout=1.0,
                    name=f"drill {backend.name}",
                )
            )
            await create_schema(backend.pool)
        # proto=IPPROTO_TCP: asyncio then sets TCP_NODELAY on accepted connections; without
        # it each response waits ~40 ms for a delayed ACK.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(1024)
        config = uvicorn.Config(
            DrillService(backends, seed),
            log_level="critical",
            lifespan="off",
            access_log=False,
            timeout_keep_alive=30,
            backlog=1024,
        )
        server = uvicorn.Server(config)
        connection.send(sock.getsockname()[1])
        connection.close()
        await server.serve(sockets=[sock])


#: The clients, each with a backend of its own.
CLIENTS = ("naive", "protected")
