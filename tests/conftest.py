"""Shared fixtures: every core test runs on asyncio and trio, each on a virtual clock.

Tests that talk to real servers mark themselves ``pytest.mark.real_clock``: a virtual clock
would race ahead of real network I/O. They still run on both backends.

Also: a real PostgreSQL server for the asyncpg adapter's tests (see tests/local_postgres.py).
"""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import Iterator
from typing import Any

import local_postgres
import looptime
import pytest
from servers import RunningServer, running_server
from trio.testing import MockClock

import asyncres
from asyncres import testing


def _virtual_asyncio_loop() -> Any:
    # looptime compacts time: the loop jumps to the next timer whenever nothing is ready.
    # Two idle cycles (not its default 42) before each jump keep big simulations fast.
    return looptime.new_event_loop(noop_cycles=2)


@pytest.fixture(
    params=[
        pytest.param("asyncio", id="asyncio"),
        pytest.param("trio", id="trio"),
    ]
)
def anyio_backend(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    """Both backends, each with a virtual clock (or a real one for ``real_clock`` tests)."""
    if request.node.get_closest_marker("real_clock") is not None:
        if request.param == "asyncio":
            # An explicit loop factory: with anyio's default one, a loop is left unclosed at
            # the end of the session, which the strict warning filter turns into a failure.
            return ("asyncio", {"loop_factory": asyncio.new_event_loop})
        return ("trio", {})
    if request.param == "asyncio":
        return ("asyncio", {"loop_factory": _virtual_asyncio_loop})
    return ("trio", {"clock": MockClock(autojump_threshold=0)})


@pytest.fixture(autouse=True)
def _quiet_global_listeners() -> Iterator[None]:
    """Tests see only the events they capture; the logging default is restored after."""
    previous = asyncres.events.set_listeners()
    try:
        yield
    finally:
        asyncres.events.set_listeners(*previous)
        testing.set_testing(False)


@pytest.fixture(scope="session")
def http_server() -> Iterator[RunningServer]:
    """A real uvicorn server on 127.0.0.1 running `servers.ScriptedApp`, for the session.

    It runs in its own thread and loop, so tests on either backend reach it over real TCP.
    Count requests with ``http_server.app.requests`` / ``http_server.app.paths``.
    """
    with running_server(kind="uvicorn") as server:
        yield server


# -- PostgreSQL ------------------------------------------------------------------------------
# A real server for the asyncpg adapter: the machine's initdb/pg_ctl, on a free loopback port,
# in a temp dir. Without the binaries the tests skip, unless ASYNCRES_REQUIRE_POSTGRES=1
# (set by CI) turns that into a failure.


def _postgres_unavailable(reason: str) -> None:
    if os.environ.get("ASYNCRES_REQUIRE_POSTGRES") == "1":
        pytest.fail(f"PostgreSQL is required (ASYNCRES_REQUIRE_POSTGRES=1): {reason}")
    pytest.skip(f"PostgreSQL unavailable: {reason}")


@pytest.fixture(scope="session")
def postgres_template() -> Iterator[local_postgres.PostgresServer]:
    """An initialised, stopped cluster: initdb runs once, other clusters are copies."""
    bindir = local_postgres.find_bindir()
    if bindir is None:
        _postgres_unavailable("no initdb/pg_ctl/postgres binaries found")
    assert bindir is not None
    try:
        template = local_postgres.PostgresServer(bindir)
        template.initdb()
    except (local_postgres.PostgresUnavailable, OSError) as exc:
        _postgres_unavailable(str(exc))
    try:
        yield template
    finally:
        template.destroy()


@pytest.fixture(scope="session")
def postgres_server(
    postgres_template: local_postgres.PostgresServer,
) -> Iterator[local_postgres.PostgresServer]:
    """One running server shared by the session (tests use databases of their own)."""
    server = local_postgres.PostgresServer(postgres_template.bindir)
    try:
        server.clone_from(postgres_template)
        server.start()
    except local_postgres.PostgresUnavailable as exc:
        server.destroy()
        _postgres_unavailable(str(exc))
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture
def postgres_own_server(
    postgres_template: local_postgres.PostgresServer,
) -> Iterator[local_postgres.PostgresServer]:
    """A running server of this test's own, which it may stop and start (outages)."""
    server = local_postgres.PostgresServer(postgres_template.bindir)
    try:
        server.clone_from(postgres_template)
        server.start()
    except local_postgres.PostgresUnavailable as exc:
        server.destroy()
        _postgres_unavailable(str(exc))
    try:
        yield server
    finally:
        server.destroy()


_database_counter = itertools.count()


@pytest.fixture
def postgres_dsn(postgres_server: local_postgres.PostgresServer) -> Iterator[str]:
    """A fresh, empty database on the shared server, dropped afterwards."""
    name = f"test_{os.getpid()}_{next(_database_counter)}"
    postgres_server.psql(f"CREATE DATABASE {name}")
    try:
        yield postgres_server.dsn.rsplit("/", 1)[0] + f"/{name}"
    finally:
        postgres_server.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
