"""Open-loop load from a process of its own, so it does not share the GIL with the server.

``python tests/load_generator.py BASE_URL PATH RATE SECONDS [--probe PATH]`` sends ``RATE``
requests per second for ``SECONDS`` to ``BASE_URL + PATH`` through httpx over
`asyncres.httpx.ResilientTransport` (one attempt, no breaker, no bulkhead: the server's
answers as they are), each with ``Request-Timeout: 5``; with ``--probe`` it also GETs that
path every 0.1 s (20 times at most). One warm-up request goes first (to the probe path if
any). Prints one JSON object: ``started`` (its ``time.monotonic()`` at the first request,
the same clock as the caller's on Linux), ``requests`` as ``[offset, latency, status,
retry_after]`` and ``probes`` as ``[latency, status]``. Every loop is bounded.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import anyio
import httpx

import asyncres.httpx


async def main(
    url: str, path: str, rate: float, seconds: float, probe: str | None
) -> dict[str, Any]:
    policy = asyncres.httpx.standard_policy(max_attempts=1, breaker=False, bulkhead=False)
    limits = httpx.Limits(max_connections=400, max_keepalive_connections=400)
    transport = asyncres.httpx.ResilientTransport(
        httpx.AsyncHTTPTransport(limits=limits), policy=policy
    )
    requests: list[list[Any]] = []
    probes: list[list[Any]] = []
    async with httpx.AsyncClient(transport=transport, base_url=url, timeout=10.0) as client:
        await client.get(probe or path, headers={"Request-Timeout": "5"})  # warm up
        started = time.monotonic()

        async def one() -> None:
            begin = time.monotonic()
            response = await client.get(path, headers={"Request-Timeout": "5"})
            requests.append(
                [
                    begin - started,
                    time.monotonic() - begin,
                    response.status_code,
                    response.headers.get("retry-after"),
                ]
            )

        async def probing(path: str) -> None:
            for _ in range(20):
                await anyio.sleep(0.1)
                begin = time.monotonic()
                response = await client.get(path)
                probes.append([time.monotonic() - begin, response.status_code])

        async with anyio.create_task_group() as tg:
            if probe is not None:
                tg.start_soon(probing, probe)
            for index in range(int(rate * seconds)):
                tg.start_soon(one)
                await anyio.sleep(max(0.0, started + (index + 1) / rate - time.monotonic()))
    return {"started": started, "requests": requests, "probes": probes}


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("path")
    parser.add_argument("rate", type=float)
    parser.add_argument("seconds", type=float)
    parser.add_argument("--probe", default=None)
    args = parser.parse_args()
    print(json.dumps(anyio.run(main, args.url, args.path, args.rate, args.seconds, args.probe)))
