"""asyncres.asgi: the service stops working when its caller has given up, and answers
health probes cheaply.

Run: python examples/asgi_deadline.py [asyncio|trio]
"""

from __future__ import annotations

import sys
from typing import Any

import anyio
import httpx

import asyncres
from asyncres.asgi import Deadline, Health


async def app(scope: Any, receive: Any, send: Any) -> None:
    """A bare ASGI app: /slow works for 5 s, any other path says how long it may take."""
    if scope["path"] == "/slow":
        await anyio.sleep(5.0)  # cancelled at the caller's deadline
    body = f"my budget: {asyncres.remaining():.2f} s".encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


async def database_ping() -> bool:
    await anyio.sleep(0.01)  # e.g. `pool.health(deep=True)` of an asyncres.db pool
    return True


deadline = Deadline(app, max_timeout=30.0, routes={"/reports": 120.0})
service = Health(deadline, checks={"db": database_ping}, ttl=5.0, warn_only=["db"])


async def main() -> None:
    transport = httpx.ASGITransport(app=service)
    async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
        response = await client.get("/items/1", headers={"Request-Timeout": "1.5"})
        print(response.status_code, response.text)  # 200 my budget: 1.50 s
        response = await client.get("/items/1", headers={"Request-Timeout": "0"})
        print(response.status_code, response.text)  # 504: expired before it arrived
        response = await client.get("/slow", headers={"Request-Timeout": "0.2"})
        print(response.status_code, response.text)  # 504 after 0.2 s, the app cancelled
        response = await client.get("/healthz")  # touches nothing
        print(response.status_code, response.text)
        response = await client.get("/readyz")  # runs the checks, cached for 5 s
        print(response.status_code, response.json()["status"])
    print(deadline.statistics())
    print(service.statistics())


if __name__ == "__main__":
    anyio.run(main, backend=sys.argv[1] if len(sys.argv) > 1 else "asyncio")
