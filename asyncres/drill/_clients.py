"""The two clients of the drill: a naive one and one protected by asyncres.

The service is reached through one fault proxy per zone (`ZONES`): three replicas.

- naive: plain httpx (5 s timeout) that picks a replica round robin and retries on it the
  way most services copy from tenacity's docs: 3 attempts, exponential waits (0.1 s,
  0.2 s), retrying transport errors and 5xx; no budget, no breaker, no deadline
  propagation, ``Retry-After`` ignored.
- protected: httpx over `asyncres.httpx.ResilientTransport` with the standard policy,
  unchanged, and the three replicas as an `asyncres.EndpointGroup` (defaults, no zone
  preference: the load spreads like the naive client's).

Both send through a `CountingTransport` over `ZonePools` (one connection pool per zone,
the same for both); it counts what actually leaves the client
towards the backend, per replica: the load the backend is offered (and the amplification).
"""

from __future__ import annotations

import itertools
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from types import TracebackType
from typing import Any

import httpx
import tenacity

from .._endpoints import Endpoint, EndpointGroup
from ..httpx import ResilientTransport, standard_policy
from ._service import TICKS

__all__ = ["CountingTransport", "ZonePools", "naive_client", "protected_client"]

Get = Callable[[str], Awaitable[httpx.Response]]

#: Connections per zone: more than a client ever has in flight at 40 requests/s (a few
#: hundred at worst, in a slow database), so no request queues inside httpcore.
POOL_CONNECTIONS = 1000


class CountingTransport(httpx.AsyncBaseTransport):
    """Counts the requests sent through it, per tenth of a second since ``started``."""

    def __init__(
        self, inner: httpx.AsyncBaseTransport, started: float, zones: dict[int, str]
    ) -> None:
        self.inner = inner
        self.started = started
        self.zones = zones  # proxy port -> zone
        self.sent: Counter[int] = Counter()
        self.by_zone: Counter[tuple[int, str]] = Counter()  # (tick, zone)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        tick = int((time.monotonic() - self.started) * TICKS)
        self.sent[tick] += 1
        self.by_zone[tick, self.zones.get(request.url.port or 0, "?")] += 1
        return await self.inner.handle_async_request(request)

    async def __aenter__(self) -> CountingTransport:
        await self.inner.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc: BaseException | None = None,
        tb: TracebackType | None = None,
    ) -> None:
        await self.inner.__aexit__(exc_type, exc, tb)

    async def aclose(self) -> None:
        await self.inner.aclose()


class ZonePools(httpx.AsyncBaseTransport):
    """One httpx connection pool per zone's proxy, each with room for the drill's load.

    httpcore matches every queued request against every connection of a pool whenever a
    request starts or ends, so one pool of httpx's default 100 connections under a few
    hundred requests in flight (a slow database) burns the drill process's core: both
    clients (one event loop) then measure the harness, not the fault. Per-zone pools that
    never queue keep that cost small; both clients get the same.
    """

    def __init__(self, ports: Iterable[int]) -> None:
        limits = httpx.Limits(max_connections=POOL_CONNECTIONS, max_keepalive_connections=20)
        self.pools = {port: httpx.AsyncHTTPTransport(limits=limits) for port in ports}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        pool = self.pools.get(request.url.port or 0)
        if pool is None:
            raise httpx.ConnectError(f"no zone serves {request.url}", request=request)
        return await pool.handle_async_request(request)

    async def __aenter__(self) -> ZonePools:
        for pool in self.pools.values():
            await pool.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc: BaseException | None = None,
        tb: TracebackType | None = None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        for pool in self.pools.values():
            await pool.aclose()


def _client(base_url: str, name: str, transport: httpx.AsyncBaseTransport) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=base_url,
        transport=transport,
        timeout=5.0,
        headers={"X-Drill-Client": name},
    )


def _zones(urls: dict[str, str]) -> dict[int, str]:
    return {int(httpx.URL(url).port or 0): zone for zone, url in urls.items()}


def naive_client(
    urls: dict[str, str], started: float
) -> tuple[httpx.AsyncClient, Get, CountingTransport]:
    """``urls``: the service's URL through each zone's proxy."""
    zones = _zones(urls)
    counter = CountingTransport(ZonePools(zones), started, zones)
    client = _client(next(iter(urls.values())), "naive", counter)
    replicas = itertools.cycle(list(urls.values()))
    retrying = tenacity.AsyncRetrying(
        stop=tenacity.stop_after_attempt(3),
        wait=tenacity.wait_exponential(multiplier=0.1, max=2.0),
        retry=(
            tenacity.retry_if_exception_type(httpx.TransportError)
            | tenacity.retry_if_result(lambda response: response.status_code >= 500)
        ),
        reraise=True,
    )

    async def get(path: str) -> httpx.Response:
        url = next(replicas) + path  # round robin; the retries stay on this replica
        response: Any = await retrying.copy()(client.get, url)
        return response  # type: ignore[no-any-return]

    return client, get, counter


def protected_client(
    urls: dict[str, str], started: float
) -> tuple[httpx.AsyncClient, Get, CountingTransport]:
    zones = _zones(urls)
    counter = CountingTransport(ZonePools(zones), started, zones)
    replicas = EndpointGroup(
        [Endpoint(url, zone=zone) for zone, url in urls.items()], name="drill service"
    )
    transport = ResilientTransport(counter, policy=standard_policy(), endpoints=replicas)
    client = _client("http://drill-service", "protected", transport)

    async def get(path: str) -> httpx.Response:
        return await client.get(path)

    return client, get, counter
