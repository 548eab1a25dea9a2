"""ResilientTransport(endpoints=...) over MockTransport: rewriting, failover, hedges, breakers."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import anyio
import httpx
import pytest

import asyncres
import asyncres.httpx
import asyncres.testing
from asyncres.backoff import Constant

pytestmark = pytest.mark.anyio

URLS = ["http://10.0.0.1:8000", "http://10.0.0.2:8000", "http://10.0.0.3:8000"]


def transport(handler: Any, **options: Any) -> asyncres.httpx.ResilientTransport:
    group = options.pop("group", None) or asyncres.EndpointGroup(URLS, rng=random.Random(2))
    policy = options.pop("policy", None) or asyncres.httpx.standard_policy(backoff=Constant(0.01))
    return asyncres.httpx.ResilientTransport(
        httpx.MockTransport(handler), endpoints=group, policy=policy, **options
    )


async def test_each_attempt_goes_to_an_endpoint_keeping_path_query_and_host() -> None:
    seen: list[tuple[str, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((str(request.url), request.headers["host"]))
        return httpx.Response(200, text="ok")

    async with httpx.AsyncClient(transport=transport(handler)) as client:
        for _ in range(30):
            response = await client.get("http://inventory.svc/items?id=7")
            assert response.status_code == 200
    hosts = Counter(url.split("/items")[0] for url, _ in seen)
    assert set(hosts) == set(URLS)  # light load spreads over all three
    assert all(url.endswith("/items?id=7") for url, _ in seen)
    assert {host for _, host in seen} == {"inventory.svc"}


async def test_a_failed_attempt_is_retried_on_another_endpoint() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.host)
        if request.url.host == "10.0.0.1":
            raise httpx.ConnectError("refused", request=request)
        if request.url.host == "10.0.0.2":
            return httpx.Response(503)
        return httpx.Response(200, text=request.url.host)

    group = asyncres.EndpointGroup(URLS, rng=random.Random(2), consecutive_failures=100)
    async with httpx.AsyncClient(transport=transport(handler, group=group)) as client:
        for _ in range(20):
            seen.clear()
            response = await client.get("http://inventory.svc/items")
            assert response.text == "10.0.0.3"
            assert len(seen) == len(set(seen))  # never the same endpoint twice in a request


async def test_a_hedge_goes_to_another_replica() -> None:
    seen: list[str] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.host)
        if len(seen) == 1:
            await anyio.sleep(5.0)
        return httpx.Response(200, text=request.url.host)

    policy = asyncres.httpx.standard_policy(hedge_delay=0.1)
    async with httpx.AsyncClient(transport=transport(handler, policy=policy)) as client:
        response = await client.get("http://inventory.svc/items")
    assert len(seen) == 2
    assert seen[0] != seen[1]
    assert response.text == seen[1]


async def test_an_endpoint_with_an_open_breaker_is_skipped() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.host)
        return httpx.Response(200)

    breakers: dict[str, asyncres.CircuitBreaker] = {}

    def breaker(host: str) -> asyncres.CircuitBreaker:
        breakers[host] = asyncres.CircuitBreaker(failure_threshold=1, name=host)
        return breakers[host]

    policy = asyncres.httpx.standard_policy(breaker=breaker, backoff=Constant(0.01))
    async with httpx.AsyncClient(transport=transport(handler, policy=policy)) as client:
        for _ in range(6):
            await client.get("http://inventory.svc/items")
        asyncres.testing.force_open(breakers["http://10.0.0.1:8000"], retry_after=60)
        seen.clear()
        for _ in range(30):
            assert (await client.get("http://inventory.svc/items")).status_code == 200
    assert "10.0.0.1" not in seen


async def test_https_endpoints_keep_the_services_name_for_tls() -> None:
    seen: list[Any] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.extensions.get("sni_hostname"))
        return httpx.Response(200)

    group = asyncres.EndpointGroup(["https://10.0.0.9:8443"])
    async with httpx.AsyncClient(transport=transport(handler, group=group)) as client:
        await client.get("https://api.example.internal/v1")
    assert seen == ["api.example.internal"]


async def test_a_user_policy_runs_each_attempt_on_an_endpoint() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.host)
        if len(seen) == 1:
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(200)

    retry = asyncres.Retry(on=httpx.ConnectError, backoff=Constant(0.01))
    async with httpx.AsyncClient(transport=transport(handler, policy=retry)) as client:
        assert (await client.get("http://inventory.svc/")).status_code == 200
    assert len(set(seen)) == 2


def test_endpoints_must_be_http_urls() -> None:
    with pytest.raises(ValueError, match="`endpoints`: 'db:5432' must be an http"):
        asyncres.httpx.ResilientTransport(endpoints=["db:5432"])
    with pytest.raises(ValueError, match="`endpoints`"):
        asyncres.httpx.ResilientTransport(endpoints=[])
    plain = asyncres.httpx.ResilientTransport(endpoints=URLS)
    assert plain.endpoints is not None
    assert [e.address for e in plain.endpoints.endpoints] == URLS
