"""The database slows down under steady INSERTs: plain asyncpg pool + tenacity vs asyncres.db.

Run: ``python -m benchmarks.db_slowdown [--markdown PATH]`` (needs the PostgreSQL server
binaries, found as in ``tests/local_postgres.py``, and ``pip install -e '.[bench]'``).

One real PostgreSQL server on loopback. Open-loop clients send INSERTs at a steady rate,
each with an idempotency key (no unique index, so duplicates show) and the same client
budget: a 1 s request deadline and a 250 ms statement timeout, 3 attempts with jittered
exponential backoff. Then the database slows down for a while, two ways:

- ``lock``: another session holds ``LOCK TABLE ... ACCESS EXCLUSIVE`` (writes block);
- ``slow``: every INSERT takes 150-350 ms in a trigger (``pg_sleep``), around the timeout.

The two stacks:

- **plain**: ``asyncpg.create_pool(max_size=10)``; per attempt ``pool.acquire(timeout=1)``
  and ``conn.execute(..., timeout=0.25)``; tenacity retries database errors, ``OSError``
  and timeouts; the request is bounded by ``asyncio.wait_for(..., 1.0)``. A common setup.
- **asyncres**: ``asyncres.db.postgres(dsn, max_size=10, statement_timeout=0.25)`` with its
  defaults (bounded queue, retries of transient errors only), each request inside
  ``asyncres.timeout(1.0)``.

Measured: failed requests, duplicate and lost writes, INSERT attempts per request (load on
the struggling database), the longest wait for a pool connection, p99 latency, and the
recovery time: from the end of the slowdown until requests succeed again (the first
100 ms window, by start time, with at least 90 % successes, after which none falls below).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import platform
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import tenacity

import asyncres
import asyncres.db
from tests.local_postgres import PostgresServer, find_bindir

RATE = 200.0  # requests per second, open loop
BEFORE, SLOW, AFTER = 1.0, 2.0, 3.0  # seconds
REQUEST_TIMEOUT = 1.0
STATEMENT_TIMEOUT = 0.25
MAX_SIZE = 10
WINDOW = 0.1


@dataclass
class Request:
    key: str
    started: float
    wall: float  # time.time() at the start, to compare with the server's timestamps
    finished: float = 0.0
    ok: bool = False  # done, and within the client's deadline
    error: str = ""


@dataclass
class Result:
    stack: str
    scenario: str
    requests: list[Request]
    attempts: int
    max_pool_wait: float
    rows: dict[str, int]
    released: float
    late: int  # INSERTs that landed after their client had given up
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> int:
        return sum(not r.ok for r in self.requests)

    @property
    def duplicates(self) -> int:
        return sum(n - 1 for n in self.rows.values() if n > 1)

    @property
    def lost(self) -> int:
        return sum(1 for r in self.requests if r.ok and self.rows.get(r.key, 0) == 0)

    @property
    def p99(self) -> float:
        latencies = sorted(r.finished - r.started for r in self.requests)
        return latencies[int(0.99 * (len(latencies) - 1))]

    @property
    def recovery(self) -> float:
        """Seconds from the end of the slowdown until success is back for good."""
        windows: dict[int, list[bool]] = {}
        for r in self.requests:
            if r.started >= self.released:
                windows.setdefault(int((r.started - self.released) / WINDOW), []).append(r.ok)
        good = [i for i, oks in sorted(windows.items()) if sum(oks) >= 0.9 * len(oks)]
        last_bad = max((i for i, oks in windows.items() if sum(oks) < 0.9 * len(oks)), default=-1)
        after = [i for i in good if i > last_bad]
        return (after[0] if after else len(windows)) * WINDOW


# -- the two stacks ------------------------------------------------------------------------


class Plain:
    name = "plain asyncpg + tenacity"

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.attempts = 0
        self.max_wait = 0.0
        self.pool: Any = None

    async def __aenter__(self) -> Plain:
        self.pool = await asyncpg.create_pool(self.dsn, min_size=4, max_size=MAX_SIZE)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.pool.close()

    async def insert(self, key: str) -> None:
        # The caller's deadline is not propagated here (the common case): the service keeps
        # working on a request after its client gave up.
        @tenacity.retry(
            stop=tenacity.stop_after_attempt(3),
            wait=tenacity.wait_random_exponential(multiplier=0.05, max=2.0),
            retry=tenacity.retry_if_exception_type(
                (asyncpg.PostgresError, OSError, asyncio.TimeoutError)
            ),
            reraise=True,
        )
        async def attempt() -> None:
            started = time.monotonic()
            async with self.pool.acquire() as conn:
                self.max_wait = max(self.max_wait, time.monotonic() - started)
                self.attempts += 1
                await conn.execute(
                    "INSERT INTO orders (key) VALUES ($1)", key, timeout=STATEMENT_TIMEOUT
                )

        await attempt()


class Guarded:
    name = "asyncres.db (defaults)"
    max_queued: int | None = None

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.attempts = 0
        self.pool = asyncres.db.postgres(
            dsn,
            min_size=4,
            max_size=MAX_SIZE,
            max_queued=self.max_queued,
            statement_timeout=STATEMENT_TIMEOUT,
        )

    @property
    def max_wait(self) -> float:
        return self.pool.statistics().max_wait

    async def __aenter__(self) -> Guarded:
        await self.pool.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.pool.__aexit__(None, None, None)

    async def _insert(self, conn: asyncpg.Connection, key: str) -> None:
        self.attempts += 1
        await conn.execute("INSERT INTO orders (key) VALUES ($1)", key)

    async def insert(self, key: str) -> None:
        with asyncres.timeout(REQUEST_TIMEOUT):
            await self.pool.run(self._insert, key)


class GuardedShallowQueue(Guarded):
    name = "asyncres.db, max_queued=40"
    max_queued = 40


# -- the scenario ------------------------------------------------------------------------------


async def prepare(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            """
            DROP TABLE IF EXISTS orders, knobs;
            CREATE TABLE orders (id bigserial PRIMARY KEY, key text NOT NULL,
                                 at timestamptz DEFAULT clock_timestamp());
            CREATE TABLE knobs (slow boolean NOT NULL);
            INSERT INTO knobs VALUES (false);
            CREATE OR REPLACE FUNCTION maybe_slow() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
              IF (SELECT slow FROM knobs) THEN PERFORM pg_sleep(0.15 + random() * 0.2); END IF;
              RETURN NEW;
            END $$;
            CREATE TRIGGER maybe_slow BEFORE INSERT ON orders
              FOR EACH ROW EXECUTE FUNCTION maybe_slow();
            """
        )
    finally:
        await conn.close()


async def slowdown(dsn: str, scenario: str, start: float, stop: float) -> None:
    admin = await asyncpg.connect(dsn)
    try:
        await asyncio.sleep(max(0.0, start - time.monotonic()))
        if scenario == "lock":
            await admin.execute("BEGIN; LOCK TABLE orders IN ACCESS EXCLUSIVE MODE")
        else:
            await admin.execute("UPDATE knobs SET slow = true")
        await asyncio.sleep(max(0.0, stop - time.monotonic()))
        if scenario == "lock":
            await admin.execute("COMMIT")
        else:
            await admin.execute("UPDATE knobs SET slow = false")
    finally:
        await admin.close()


async def run_one(dsn: str, stack_type: Callable[[str], Any], scenario: str) -> Result:
    await prepare(dsn)
    requests: list[Request] = []
    async with stack_type(dsn) as stack:
        start = time.monotonic() + 0.2
        slow_from, slow_until = start + BEFORE, start + BEFORE + SLOW
        end = slow_until + AFTER
        tasks: set[asyncio.Task[None]] = set()
        slow_task = asyncio.create_task(slowdown(dsn, scenario, slow_from, slow_until))

        async def one(request: Request) -> None:
            try:
                await stack.insert(request.key)
            except Exception as exc:
                request.error = type(exc).__name__
            request.finished = time.monotonic()
            # The client gives up after REQUEST_TIMEOUT whatever the service does.
            request.ok = not request.error and (
                request.finished - request.started <= REQUEST_TIMEOUT + 0.01
            )

        n = 0
        while (now := time.monotonic()) < end:
            due = start + n / RATE
            if due > now:
                await asyncio.sleep(due - now)
            request = Request(f"k{n}", time.monotonic(), time.time())
            requests.append(request)
            task = asyncio.create_task(one(request))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            n += 1
        await slow_task
        if tasks:
            await asyncio.wait(tasks, timeout=120)
        await asyncio.sleep(0.5)  # let stragglers on the server finish before counting
        attempts, max_wait = stack.attempts, stack.max_wait
        name = stack.name
    conn = await asyncpg.connect(dsn)
    try:
        fetched = await conn.fetch(
            "SELECT key, count(*) AS n, max(extract(epoch FROM at)) AS at FROM orders GROUP BY key"
        )
    finally:
        await conn.close()
    rows = {r["key"]: r["n"] for r in fetched}
    landed = {r["key"]: float(r["at"]) for r in fetched}
    late = sum(1 for r in requests if r.key in landed and landed[r.key] > r.wall + REQUEST_TIMEOUT)
    return Result(name, scenario, requests, attempts, max_wait, rows, slow_until, late)


def table(results: list[Result]) -> str:
    lines = [
        "| scenario | stack | requests | failed | duplicate writes (max of runs) | late writes "
        "| INSERT attempts / request | max pool wait | p99 latency | recovery |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        n = len(r.requests)
        lines.append(
            f"| {r.scenario} | {r.stack} | {n} | {r.failed} ({100 * r.failed / n:.1f} %) "
            f"| {r.extra.get('max_duplicates', r.duplicates)} | {r.late} | {r.attempts / n:.2f} "
            f"| {r.max_pool_wait * 1000:.0f} ms "
            f"| {r.p99 * 1000:.0f} ms | {r.recovery:.1f} s |"
        )
    return "\n".join(lines)


async def main_async(repeat: int) -> list[Result]:
    bindir = find_bindir()
    if bindir is None:
        raise SystemExit("no PostgreSQL server binaries found (initdb, pg_ctl, postgres)")
    server = PostgresServer(bindir)
    try:
        server.initdb()
        server.start()
        conn = await asyncpg.connect(server.dsn)
        _SERVER_VERSION.append(str(await conn.fetchval("SHOW server_version")).split()[0])
        await conn.close()
        results: list[Result] = []
        for scenario in ("lock", "slow"):
            for stack in (Plain, Guarded, GuardedShallowQueue):
                runs = [await run_one(server.dsn, stack, scenario) for _ in range(repeat)]
                # Report the median run by failures (all runs' worst case for duplicates).
                runs.sort(key=lambda r: r.failed)
                median = runs[len(runs) // 2]
                median.extra["max_duplicates"] = max(r.duplicates for r in runs)
                results.append(median)
                print(table([median]).splitlines()[-1], file=sys.stderr)
        return results
    finally:
        server.destroy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markdown", type=Path, help="write the results table here")
    parser.add_argument("--repeat", type=int, default=3, help="runs per cell (median shown)")
    args = parser.parse_args()
    random.seed(1)
    results = asyncio.run(main_async(args.repeat))
    text = table(results)
    print(text)
    if args.markdown:
        versions = (
            f"Python {platform.python_version()} on {platform.machine()}, PostgreSQL "
            f"{_server_version()}, asyncpg {asyncpg.__version__}, tenacity "
            f"{_version('tenacity')}; {RATE:.0f} INSERT/s open loop, {BEFORE:g} s normal, "
            f"{SLOW:g} s slowdown, {AFTER:g} s after; request deadline {REQUEST_TIMEOUT:g} s, "
            f"statement timeout {STATEMENT_TIMEOUT * 1000:.0f} ms, pool max_size {MAX_SIZE}; "
            f"median of {args.repeat} runs per row."
        )
        args.markdown.write_text(
            "# Database slowdown: plain asyncpg pool + tenacity vs asyncres.db\n\n"
            + text
            + "\n\n"
            + _LEGEND
            + "\n\n"
            + versions
            + "\n\nRegenerate: `python -m benchmarks.db_slowdown --markdown "
            "benchmarks/results/db_slowdown.md`.\n"
        )


_LEGEND = """\
*failed*: the client had no success within its 1 s deadline. *duplicate writes*: extra rows
for one idempotency key (no unique index). *late writes*: INSERTs that committed after their
client had given up, i.e. work the database did for nobody while it was struggling.
*INSERT attempts / request*: load put on the database. *max pool wait*: the longest a caller
waited for a connection. *recovery*: from the end of the slowdown until requests succeed
again for good (100 ms windows, 90 % successes).

The plain stack retries statement timeouts and keeps working after its caller's deadline
(nothing carries the deadline into the service), so it lands hundreds of late writes, a few
of them twice, and makes callers wait almost 2 s for a connection. asyncres.db carries the
deadline to the pool's queue and into the server's statement_timeout: no late or duplicate
write, no wait past the deadline. Its queue bound is a knob: `max_queued=40` sheds load
early (fewer INSERT attempts on the struggling database) at the price of failing requests
that would have made it once the lock was released."""


def _version(name: str) -> str:
    from importlib.metadata import version

    with contextlib.suppress(Exception):
        return version(name)
    return "?"


_SERVER_VERSION: list[str] = []


def _server_version() -> str:
    return _SERVER_VERSION[0] if _SERVER_VERSION else "15"


if __name__ == "__main__":
    main()
