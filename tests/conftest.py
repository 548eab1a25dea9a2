"""Shared fixtures: every core test runs on asyncio and trio, each on a virtual clock.

Tests that talk to real servers mark themselves ``pytest.mark.real_clock``: a virtual clock
would race ahead of real network I/O. They still run on both backends.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

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
    previous = asyncres.set_listeners()
    try:
        yield
    finally:
        asyncres.set_listeners(*previous)
        testing.set_testing(False)


@pytest.fixture(scope="session")
def http_server() -> Iterator[RunningServer]:
    """A real uvicorn server on 127.0.0.1 running `servers.ScriptedApp`, for the session.

    It runs in its own thread and loop, so tests on either backend reach it over real TCP.
    Count requests with ``http_server.app.requests`` / ``http_server.app.paths``.
    """
    with running_server(kind="uvicorn") as server:
        yield server
