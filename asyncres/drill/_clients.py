"""The two clients of the drill: a naive one and one protected by asyncres.

- naive: plain httpx (5 s timeout) with the retry most services copy from tenacity's docs:
  3 attempts, exponential waits (0.1 s, 0.2 s), retrying transport errors and 5xx; no
  budget, no breaker, no deadline propagation, ``Retry-After`` ignored.
- protected: httpx over `asyncres.httpx.ResilientTransport` with the standard policy,
  unchanged.

Both send through a `CountingTransport`, which counts what actually leaves the client
towards the backend: the load the backend is offered (and the amplification).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any

import httpx
import tenacity

from ..httpx import ResilientTransport, standard_policy
from ._service import TICKS

__all__ = ["CountingTransport", "naive_client", "protected_client"]

Get = Callable[[str], Awaitable[httpx.Response]]


class CountingTransport(httpx.AsyncBaseTransport):
    """Counts the requests sent through it, per tenth of a second since ``started``."""

    def __init__(self, inner: httpx.AsyncBaseTransport, started: float) -> None:
        self.inner = inner
        self.started = started
        self.sent: Counter[int] = Counter()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.sent[int((time.monotonic() - self.started) * TICKS)] += 1
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


def _client(base_url: str, name: str, transport: httpx.AsyncBaseTransport) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=base_url,
        transport=transport,
        timeout=5.0,
        headers={"X-Drill-Client": name},
    )


def naive_client(base_url: str, started: float) -> tuple[httpx.AsyncClient, Get, CountingTransport]:
    counter = CountingTransport(httpx.AsyncHTTPTransport(), started)
    client = _client(base_url, "naive", counter)
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
        response: Any = await retrying.copy()(client.get, path)
        return response  # type: ignore[no-any-return]

    return client, get, counter


def protected_client(
    base_url: str, started: float
) -> tuple[httpx.AsyncClient, Get, CountingTransport]:
    counter = CountingTransport(httpx.AsyncHTTPTransport(), started)
    transport = ResilientTransport(counter, policy=standard_policy())
    client = _client(base_url, "protected", transport)

    async def get(path: str) -> httpx.Response:
        return await client.get(path)

    return client, get, counter
