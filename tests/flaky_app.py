"""A scripted, misbehaving ASGI app for the httpx adapter's real-server tests.

Serve it with ``servers.running_server(FlakyApp())``. Routes (``key`` isolates the counters
of one test from another's):

- ``/ok`` — 200 ``ok``.
- ``/flaky?key=K&fail=N&status=S[&retry_after=R]`` — the first N requests answer S
  (with ``Retry-After: R`` if given), later ones 200 ``ok``.
- ``/slow?seconds=S`` — waits S seconds, then 200.
- ``/drop?key=K&fail=N`` — the first N requests promise 1000 bytes, send 10, and drop the
  connection; later ones 200.
- ``/echo`` — 200 with the request's method, headers and body as JSON.
- ``/count?key=K`` — how many requests reached key K (any route), as text.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class FlakyApp:
    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        self.idempotency_keys: dict[str, list[str]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        query = {k: v[-1] for k, v in parse_qs(scope["query_string"].decode()).items()}
        key = query.get("key", "")
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        path = scope["path"]
        if path != "/count":
            self.hits[key] += 1
            if "idempotency-key" in headers:
                self.idempotency_keys.setdefault(key, []).append(headers["idempotency-key"])
        seen = self.hits[key]

        if path == "/ok":
            await _reply(send, 200, b"ok")
        elif path == "/flaky":
            if seen <= int(query.get("fail", "0")):
                extra = []
                if "retry_after" in query:
                    extra.append((b"retry-after", query["retry_after"].encode()))
                await _reply(send, int(query.get("status", "503")), b"unavailable", extra)
            else:
                await _reply(send, 200, b"ok")
        elif path == "/slow":
            await asyncio.sleep(float(query.get("seconds", "1")))
            await _reply(send, 200, b"slow ok")
        elif path == "/drop":
            if seen <= int(query.get("fail", "0")):
                await send(
                    {
                        "type": "http.response.start",
                        "status": 200,
                        "headers": [(b"content-length", b"1000")],
                    }
                )
                await send({"type": "http.response.body", "body": b"x" * 10, "more_body": True})
                raise RuntimeError("connection dropped mid-body (on purpose)")
            await _reply(send, 200, b"ok")
        elif path == "/echo":
            payload = {"method": scope["method"], "headers": headers, "body": body.decode()}
            await _reply(send, 200, json.dumps(payload).encode(), [(b"content-type", b"json")])
        elif path == "/count":
            await _reply(send, 200, str(self.hits[key]).encode())
        else:
            await _reply(send, 404, b"not found")


async def _reply(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-length", str(len(body)).encode()), *(headers or [])],
        }
    )
    await send({"type": "http.response.body", "body": body})
