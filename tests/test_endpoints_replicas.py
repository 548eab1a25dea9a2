"""ResilientTransport(endpoints=...) against three real uvicorn replicas, one killed."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import pytest

import asyncres
import asyncres.httpx
from asyncres.backoff import Constant

pytestmark = [pytest.mark.anyio, pytest.mark.real_clock]

HERE = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Replica:
    def __init__(self, name: str) -> None:
        self.name = name
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(HERE / "replica_app.py"), str(self.port), self.name],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # bounded: the replica is up or the test fails
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"replica {self.name} did not start")

    def kill(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)
            self.process = None


@pytest.fixture
def replicas() -> Iterator[list[Replica]]:
    started = [Replica(f"r{i}") for i in range(3)]
    try:
        for replica in started:
            replica.start()
        yield started
    finally:
        for replica in started:
            replica.kill()


async def test_a_killed_replica_costs_no_request_and_is_readmitted_when_back(
    replicas: list[Replica],
) -> None:
    group = asyncres.EndpointGroup(
        [r.url for r in replicas], consecutive_failures=3, base_ejection_time=1.5
    )
    policy = asyncres.httpx.standard_policy(backoff=Constant(0.01))
    transport = asyncres.httpx.ResilientTransport(endpoints=group, policy=policy)
    answered: Counter[str] = Counter()
    failed: list[BaseException] = []

    async def worker(client: httpx.AsyncClient, until: float) -> None:
        while anyio.current_time() < until:
            try:
                response = await client.get("http://service.internal/slow?seconds=0.02")
                answered[response.text] += 1
                assert response.status_code == 200
            except Exception as exc:  # collected: the assertion below shows them all
                failed.append(exc)

    async with httpx.AsyncClient(transport=transport, timeout=5.0) as client:
        start = anyio.current_time()
        async with anyio.create_task_group() as tg:
            for _ in range(6):
                tg.start_soon(worker, client, start + 2.5)
            await anyio.sleep(1.0)
            replicas[1].kill()  # mid-run, requests in flight on it
            await anyio.sleep(0.5)
            stats = {row.endpoint.address: row for row in group.statistics().endpoints}
            assert stats[replicas[1].url].ejected, stats
        assert failed == []
        assert set(answered) == {"r0", "r1", "r2"}
        before = answered["r1"]
        replicas[1].start()  # back on the same port
        await anyio.sleep(1.6)  # past its ejection
        for _ in range(60):
            response = await client.get("http://service.internal/whoami")
            answered[response.text] += 1
        assert answered["r1"] > before  # readmitted: it takes its share again
    stats = {row.endpoint.address: row for row in group.statistics().endpoints}
    assert not stats[replicas[1].url].ejected
    assert all(row.outstanding == 0 for row in stats.values())
