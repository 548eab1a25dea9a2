"""One circuit breaker for a whole fleet, its state on Redis.

Run: python examples/fleet_breaker.py [asyncio|trio]
(uses $REDIS_URL, or starts a throwaway redis-server on 127.0.0.1 when none is given)

Each process of a service builds the same named breaker on a RedisStore; here two stores in
one process stand for two processes. Replica A sees the failures and opens; replica B,
which never saw one, fails fast within the store's flush interval (0.1 s).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

import anyio

import asyncres
from asyncres.redis import RedisStore


async def payments_down() -> None:
    raise ConnectionError("payments is down")


async def main(url: str) -> None:
    store_a = RedisStore(url, prefix="example-shop")
    store_b = RedisStore(url, prefix="example-shop")
    replica_a = asyncres.CircuitBreaker(name="payments", failure_threshold=5, store=store_a)
    replica_b = asyncres.CircuitBreaker(name="payments", failure_threshold=5, store=store_b)

    async with store_a, store_b:  # each syncs every 100 ms in the background
        for _ in range(5):
            with contextlib.suppress(ConnectionError):
                await replica_a.call(payments_down)
        print("replica A:", replica_a.state.name)
        await anyio.sleep(0.3)  # a few flush intervals
        print("replica B:", replica_b.state.name, "(it never called payments)")
        try:
            await replica_b.call(payments_down)
        except asyncres.CircuitOpenError as exc:
            print(f"replica B fails fast: retry after {exc.retry_after:.2f}s")


@contextlib.contextmanager
def redis_url() -> Iterator[str]:
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("set REDIS_URL or install redis-server")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    folder = tempfile.mkdtemp()
    server = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", folder],
        stdout=subprocess.DEVNULL,
    )
    try:
        for _ in range(500):  # up to 10 s for the server to listen
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port)):
                break
            time.sleep(0.02)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.kill()
        server.wait()


if __name__ == "__main__":
    with redis_url() as url:
        anyio.run(main, url, backend=sys.argv[1] if len(sys.argv) > 1 else "asyncio")
