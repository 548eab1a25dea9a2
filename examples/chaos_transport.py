"""ChaosTransport: HTTP faults between an httpx client and its transport.

Run: python examples/chaos_transport.py [asyncio|trio]
"""

from __future__ import annotations

import sys
from collections import Counter

import anyio
import httpx

import asyncres
from asyncres import backoff
from asyncres.chaos import (
    ChaosTransport,
    HttpDisconnectFault,
    HttpLatencyFault,
    HttpStatusFault,
)


def server(request: httpx.Request) -> httpx.Response:
    """A stand-in for the real service (any inner transport works the same)."""
    return httpx.Response(200, json={"price": 9.99})


transport = ChaosTransport(
    httpx.MockTransport(server),  # in production code: httpx.AsyncHTTPTransport()
    faults=[
        HttpStatusFault(503, retry_after=1, rate=0.2),  # never reaches the server
        HttpDisconnectFault(when="connect", rate=0.1),  # httpx.ConnectError
        HttpLatencyFault(0.05, where="body", rate=0.1),  # headers on time, body late
    ],
    seed=7,
)

retry = asyncres.Retry(on=httpx.ConnectError, max_attempts=3, backoff=backoff.Constant(0.01))


async def main() -> None:
    seen: Counter[str] = Counter()
    async with httpx.AsyncClient(transport=transport, base_url="http://prices") as client:
        for _ in range(100):
            try:
                response = await retry.call(client.get, "/book")
                seen[str(response.status_code)] += 1
            except httpx.ConnectError:
                seen["connect error after 3 attempts"] += 1
    print(dict(seen))
    print(transport.statistics())


if __name__ == "__main__":
    anyio.run(main, backend=sys.argv[1] if len(sys.argv) > 1 else "asyncio")
