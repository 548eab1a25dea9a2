"""An httpx client with timeouts, retries, per-host breakers and bulkheads: one line.

Run: python examples/httpx_client.py [asyncio|trio]

It starts a small flaky server on 127.0.0.1 (two 503s with Retry-After, then 200), so
the example needs nothing from the network.
"""

from __future__ import annotations

import socket
import sys
from typing import Any

import anyio
import httpx

import asyncres
import asyncres.httpx

hits = 0


async def flaky_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """503 (Retry-After: 0) twice, then 200: what a restarting service looks like."""
    global hits
    if scope["type"] != "http":
        return
    hits += 1
    status = 503 if hits <= 2 else 200
    headers = [(b"content-length", b"2")]
    if status == 503:
        headers.append((b"retry-after", b"0"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"ok" if status == 200 else b"no"})


async def main(base_url: str) -> None:
    client = httpx.AsyncClient(transport=asyncres.httpx.ResilientTransport())
    async with client:
        response = await client.get(f"{base_url}/price")
        print(response.status_code, response.text, f"after {hits} requests")

    # Tuned: a tighter total budget, hedged reads, idempotency keys for POSTs.
    policy = asyncres.httpx.standard_policy(
        total_timeout=5.0,
        attempt_timeout=1.0,
        max_attempts=4,
        hedge_delay=0.2,
    )
    transport = asyncres.httpx.ResilientTransport(policy=policy, idempotency_keys=True)
    async with httpx.AsyncClient(transport=transport, base_url=base_url) as client:
        with asyncres.timeout(2.0):  # the server sees "Request-Timeout: 2.000" at most
            response = await client.post("/orders", json={"sku": "A-1"})
        print(response.status_code, response.request.headers["idempotency-key"][:8], "...")


def serve_in_thread() -> tuple[str, Any]:
    import threading

    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(flaky_app, log_level="critical", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    for _ in range(1000):  # up to 10 s
        if server.started:
            break
        thread.join(0.01)
    return f"http://127.0.0.1:{sock.getsockname()[1]}", server


if __name__ == "__main__":
    url, server = serve_in_thread()
    try:
        anyio.run(main, url, backend=sys.argv[1] if len(sys.argv) > 1 else "asyncio")
    finally:
        server.should_exit = True
