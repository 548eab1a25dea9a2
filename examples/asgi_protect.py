"""asyncres.asgi.protect: health, deadline and load shedding around an app in one call.

Two slots and a 20 ms handler serve 100 requests a second; 60 requests arrive at once. The
ones that cannot be served in time are shed at the door with 503 and a Retry-After, a
request marked urgent (RFC 9218 ``Priority: u=0``) is served before the others, and the
health endpoints answer throughout.

Run: python examples/asgi_protect.py [asyncio|trio]
"""

from __future__ import annotations

import sys
from collections import Counter
from typing import Any

import anyio
import httpx

from asyncres.asgi import protect


async def app(scope: Any, receive: Any, send: Any) -> None:
    await anyio.sleep(0.02)  # the work: a query, a render
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


async def database_ping() -> bool:
    return True  # e.g. `pool.health(deep=True)` of an asyncres.db pool


service = protect(app, limit=2, checks={"db": database_ping}, warn_only=["db"])


async def main() -> None:
    transport = httpx.ASGITransport(app=service)
    statuses: Counter[int] = Counter()
    async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:

        async def one(headers: dict[str, str]) -> None:
            response = await client.get("/items/1", headers=headers)
            statuses[response.status_code] += 1
            if response.status_code == 503:
                assert response.headers["retry-after"]  # when to come back, in seconds

        async with anyio.create_task_group() as tg:
            for _ in range(59):
                tg.start_soon(one, {"Request-Timeout": "2"})
            tg.start_soon(one, {"Request-Timeout": "2", "Priority": "u=0"})
            health = await client.get("/healthz")  # never shed, touches nothing
        print("health:", health.status_code, health.text)
    print("answers:", dict(statuses))  # most shed with 503, the rest served
    shedder = service.shedder.statistics()
    print("admitted", shedder.admitted, "shed", shedder.shed, "by urgency", shedder.shed_by_urgency)


if __name__ == "__main__":
    anyio.run(main, backend=sys.argv[1] if len(sys.argv) > 1 else "asyncio")
