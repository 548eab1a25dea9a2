"""Real servers on loopback for adapter and chaos tests: an ASGI app on uvicorn or hypercorn.

The server runs in a background thread with its own event loop, so a test on either backend
(asyncio or trio, on a real clock) talks to it over real TCP, and a test that blocks its own
loop cannot stall the server. Usage (fixtures in conftest.py)::

    def test_x(http_server: RunningServer) -> None:
        url = http_server.url            # "http://127.0.0.1:PORT"
        http_server.app.requests         # requests the app has seen

or directly: ``with running_server(ScriptedApp(), kind="hypercorn", loop="trio") as server``.

`ScriptedApp` routes (GET unless noted):

- ``/ok`` — 200 ``ok``
- ``/bytes?n=N`` — 200, N bytes of ``0123456789`` repeated, with Content-Length
- ``/slow?seconds=S`` — sleeps S seconds, then 200 ``slow``
- ``/status?code=C[&retry_after=R]`` — answers C (with ``Retry-After: R``)
- ``/stream?chunks=N&size=B[&delay=S]`` — chunked body of N chunks of B bytes, S apart
- ``POST /echo`` — 200 with the request body
"""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import parse_qs

import anyio
import anyio.to_thread

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

PATTERN = b"0123456789"


def pattern(n: int) -> bytes:
    """The body ``/bytes?n=N`` sends."""
    return (PATTERN * (n // len(PATTERN) + 1))[:n]


class ScriptedApp:
    """A small ASGI app whose routes are listed in the module docstring; counts requests."""

    def __init__(self) -> None:
        self.requests = 0
        self.paths: Counter[str] = Counter()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                kind = message["type"].rpartition(".")[2]  # startup or shutdown
                await send({"type": f"lifespan.{kind}.complete"})
                if kind == "shutdown":
                    return
        if scope["type"] != "http":
            return
        self.requests += 1
        path = scope["path"]
        self.paths[path] += 1
        query = {k: v[0] for k, v in parse_qs(scope["query_string"].decode()).items()}
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if path == "/ok":
            await _respond(send, 200, b"ok")
        elif path == "/bytes":
            await _respond(send, 200, pattern(int(query.get("n", "0"))))
        elif path == "/slow":
            await anyio.sleep(float(query.get("seconds", "1")))
            await _respond(send, 200, b"slow")
        elif path == "/status":
            headers = []
            if "retry_after" in query:
                headers.append((b"retry-after", query["retry_after"].encode()))
            await _respond(send, int(query.get("code", "503")), b"status", headers)
        elif path == "/stream":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            size = int(query.get("size", "10"))
            delay = float(query.get("delay", "0"))
            for _ in range(int(query.get("chunks", "3"))):
                if delay:
                    await anyio.sleep(delay)
                await send({"type": "http.response.body", "body": pattern(size), "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        elif path == "/echo":
            await _respond(send, 200, body)
        else:
            await _respond(send, 404, b"not found")


async def _respond(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    all_headers = [(b"content-length", str(len(body)).encode()), *(headers or [])]
    await send({"type": "http.response.start", "status": status, "headers": all_headers})
    await send({"type": "http.response.body", "body": body})


@dataclass
class RunningServer:
    """A server started by `running_server`."""

    app: Any
    host: str
    port: int
    kind: str

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on right now (for servers that must bind it themselves)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _listening_socket(host: str) -> socket.socket:
    # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY only on sockets that say so, and
    # without it uvicorn's two writes per response meet the 40 ms delayed-ACK stall.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    sock.listen(128)
    return sock


@contextmanager
def running_server(
    app: Any | None = None,
    *,
    kind: Literal["uvicorn", "hypercorn"] = "uvicorn",
    loop: Literal["asyncio", "trio"] = "asyncio",
    host: str = "127.0.0.1",
    start_timeout: float = 10.0,
) -> Iterator[RunningServer]:
    """Serve ``app`` (default: a new `ScriptedApp`) on ``host`` and a free port, in a thread.

    ``kind="hypercorn"`` can run its loop on trio (``loop="trio"``); uvicorn is asyncio only.
    The server is stopped and its thread joined when the block ends.
    """
    app = ScriptedApp() if app is None else app
    sock = _listening_socket(host)
    port = int(sock.getsockname()[1])
    failure: list[BaseException] = []
    if kind == "uvicorn":
        if loop != "asyncio":
            raise ValueError("uvicorn runs on asyncio only; use kind='hypercorn' for trio")
        import uvicorn

        config = uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            ws="none",
            http="h11",
            loop="asyncio",
        )
        server = uvicorn.Server(config)

        def serve() -> None:
            try:
                server.run(sockets=[sock])
            except BaseException as exc:  # reported to the test thread
                failure.append(exc)

        def stop() -> None:
            server.should_exit = True

        def ready() -> bool:
            return bool(server.started)

    else:
        import hypercorn.config

        stopping = threading.Event()
        started = threading.Event()
        hyper_config = hypercorn.config.Config()
        # hypercorn wraps the descriptor in a socket of its own and closes it at the end.
        hyper_config.bind = [f"fd://{sock.detach()}"]
        hyper_config.loglevel = "WARNING"
        hyper_config.accesslog = None
        hyper_config.errorlog = None

        async def trigger() -> None:
            started.set()
            await anyio.to_thread.run_sync(stopping.wait, abandon_on_cancel=True)

        def serve() -> None:
            try:
                if loop == "trio":
                    import hypercorn.trio
                    import trio

                    trio.run(
                        lambda: hypercorn.trio.serve(app, hyper_config, shutdown_trigger=trigger)
                    )
                else:
                    import asyncio

                    import hypercorn.asyncio

                    asyncio.run(
                        hypercorn.asyncio.serve(app, hyper_config, shutdown_trigger=trigger)
                    )
            except BaseException as exc:
                failure.append(exc)

        def stop() -> None:
            stopping.set()

        def ready() -> bool:
            return started.is_set()

    thread = threading.Thread(target=serve, name=f"{kind}-test-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + start_timeout
    while not ready():
        if failure or not thread.is_alive():
            raise RuntimeError(f"{kind} failed to start") from (failure[0] if failure else None)
        if time.monotonic() > deadline:
            stop()
            raise RuntimeError(f"{kind} did not start within {start_timeout} s")
        time.sleep(0.01)
    try:
        yield RunningServer(app=app, host=host, port=port, kind=kind)
    finally:
        stop()
        thread.join(start_timeout)
        sock.close()
        if failure:
            raise RuntimeError(f"{kind} failed") from failure[0]
