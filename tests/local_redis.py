"""A real redis-server on 127.0.0.1 for the fleet-store tests, started from the machine's
binary (``.ci/run`` installs it with apt-get). Without one the tests skip with a message,
unless ``ASYNCRES_REQUIRE_REDIS=1`` (CI), where they fail instead."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from servers import free_port

REQUIRED = os.environ.get("ASYNCRES_REQUIRE_REDIS") == "1"


class RedisServer:
    """One redis-server process; `stop` kills it, `start` brings it back on the same port."""

    def __init__(self, binary: str, folder: Path) -> None:
        self.binary = binary
        self.folder = folder
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--dir", str(self.folder),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline:  # bounded: the server answers PING or we give up
            if self.ping():
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"redis-server did not start on 127.0.0.1:{self.port}")

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(timeout=10)

    def flush(self) -> None:
        with socket.create_connection(("127.0.0.1", self.port), timeout=2.0) as sock:
            sock.sendall(b"FLUSHALL\r\n")
            sock.recv(16)


def start_redis() -> RedisServer:
    binary = shutil.which("redis-server")
    if binary is None:
        message = "redis-server is not installed (apt-get install redis-server)"
        if REQUIRED:
            pytest.fail(message)
        pytest.skip(message)
    server = RedisServer(binary, Path(tempfile.mkdtemp(prefix="asyncres-redis-")))
    server.start()
    return server
