"""ResilientTransport against a real uvicorn server on 127.0.0.1 (real clocks, both backends)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import pytest
from flaky_app import FlakyApp
from servers import free_port, running_server

import asyncres
from asyncres import backoff
from asyncres.httpx import ResilientTransport, standard_policy

pytestmark = [pytest.mark.anyio, pytest.mark.real_clock]


@pytest.fixture(scope="module")
def app() -> FlakyApp:
    return FlakyApp()


@pytest.fixture(scope="module")
def base_url(app: FlakyApp) -> Iterator[str]:
    with running_server(app) as server:
        yield server.url


def key() -> str:
    return uuid.uuid4().hex


def quick_policy(**overrides: Any) -> Any:
    options: dict[str, Any] = {"backoff": backoff.Constant(0.01), "total_timeout": 10.0}
    options.update(overrides)
    return standard_policy(**options)


def make_client(base_url: str, **options: Any) -> httpx.AsyncClient:
    policy = options.pop("policy", None) or quick_policy()
    transport = ResilientTransport(policy=policy, **options)
    return httpx.AsyncClient(transport=transport, base_url=base_url)


async def test_failures_then_success(base_url: str, app: FlakyApp) -> None:
    """Two 503s, then 200: the caller sees only the 200; the server saw three requests."""
    k = key()
    async with make_client(base_url) as client:
        response = await client.get("/flaky", params={"key": k, "fail": 2})
    assert response.status_code == 200
    assert app.hits[k] == 3


async def test_retry_after_from_a_real_server(base_url: str, app: FlakyApp) -> None:
    """503 with Retry-After: 1 is retried after about a second."""
    k = key()
    async with make_client(base_url) as client:
        start = anyio.current_time()
        response = await client.get("/flaky", params={"key": k, "fail": 1, "retry_after": 1})
        elapsed = anyio.current_time() - start
    assert response.status_code == 200
    assert 0.95 <= elapsed < 5.0
    assert app.hits[k] == 2


async def test_exhausted_retries_return_the_real_last_response(base_url: str) -> None:
    """After the last attempt the caller holds the server's 503, body intact."""
    async with make_client(base_url) as client:
        response = await client.get("/flaky", params={"key": key(), "fail": 99})
    assert response.status_code == 503
    assert response.text == "unavailable"


async def test_post_is_not_retried_unless_idempotent(base_url: str, app: FlakyApp) -> None:
    """A POST hitting 503 reaches the server once; with an Idempotency-Key, it is retried."""
    plain, keyed, generated = key(), key(), key()
    async with make_client(base_url) as client:
        response = await client.post("/flaky", params={"key": plain, "fail": 1}, content=b"x")
        assert response.status_code == 503
        response = await client.post(
            "/flaky",
            params={"key": keyed, "fail": 1},
            content=b"x",
            headers={"Idempotency-Key": "order-7"},
        )
        assert response.status_code == 200
    async with make_client(base_url, idempotency_keys=True) as client:
        response = await client.post("/flaky", params={"key": generated, "fail": 2}, json={})
        assert response.status_code == 200
    assert app.hits[plain] == 1
    assert app.hits[keyed] == 2
    assert app.hits[generated] == 3
    assert len(set(app.idempotency_keys[generated])) == 1


async def test_connection_drop_mid_body_is_retried(base_url: str, app: FlakyApp) -> None:
    """A body cut short by a dropped connection is retried for GET."""
    k = key()
    async with make_client(base_url) as client:
        response = await client.get("/drop", params={"key": k, "fail": 1})
    assert response.status_code == 200
    assert response.text == "ok"
    assert app.hits[k] == 2


async def test_connection_drop_mid_body_is_not_retried_for_post(
    base_url: str, app: FlakyApp
) -> None:
    """For POST the dropped body surfaces as httpx's RemoteProtocolError, once."""
    k = key()
    async with make_client(base_url) as client:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.post("/drop", params={"key": k, "fail": 1}, content=b"x")
    assert app.hits[k] == 1


async def test_slow_responses_are_cut_by_the_attempt_timeout(base_url: str) -> None:
    """An attempt slower than attempt_timeout is abandoned; the caller gets a timeout."""
    policy = quick_policy(attempt_timeout=0.2, total_timeout=1.0, max_attempts=2)
    async with make_client(base_url, policy=policy) as client:
        start = anyio.current_time()
        with pytest.raises((asyncres.TimeoutExceededError, httpx.TimeoutException)):
            await client.get("/slow", params={"seconds": 3})
        elapsed = anyio.current_time() - start
    assert 0.3 <= elapsed < 1.5


async def test_server_sees_the_remaining_budget(base_url: str) -> None:
    """The Request-Timeout header tells the server how long the client will wait."""
    async with make_client(base_url) as client:
        with asyncres.timeout(2.0):
            response = await client.get("/echo")
    seen = float(json.loads(response.text)["headers"]["request-timeout"])
    assert 1.5 < seen <= 2.0


async def test_breaker_fails_fast_against_a_dead_server() -> None:
    """With nobody listening, the per-host breaker opens and later calls fail fast."""
    dead = f"http://127.0.0.1:{free_port()}"

    def breaker(host: str) -> asyncres.CircuitBreaker:
        return asyncres.CircuitBreaker(failure_threshold=3, recovery_time=60.0, name=host)

    policy = quick_policy(max_attempts=1, breaker=breaker)
    async with make_client(dead, policy=policy) as client:
        for _ in range(3):
            with pytest.raises(httpx.ConnectError):
                await client.get("/")
        with pytest.raises(asyncres.CircuitOpenError):
            await client.get("/")


async def test_no_connection_leaks_after_a_thousand_requests(base_url: str) -> None:
    """1,000 requests with retries leave no connection checked out of the inner pool."""
    inner = httpx.AsyncHTTPTransport(limits=httpx.Limits(max_connections=10))
    # Half the requests fail once: the breaker and the retry budget would (rightly) stop
    # that storm; this test is about leaks, so let every retry happen.
    policy = quick_policy(backoff=backoff.Constant(0), breaker=False, budget=lambda host: None)
    transport = ResilientTransport(inner, policy=policy)
    async with httpx.AsyncClient(transport=transport, base_url=base_url) as client:
        limiter = anyio.CapacityLimiter(20)

        async def one(i: int) -> None:
            async with limiter:
                response = await client.get("/flaky", params={"key": f"leak-{i}", "fail": i % 2})
                assert response.status_code == 200

        async with anyio.create_task_group() as tg:
            for i in range(1000):
                tg.start_soon(one, i)
        pool = inner._pool
        assert pool.connections, "the pool was used"
        assert all(connection.is_idle() for connection in pool.connections)
        assert len(pool.connections) <= 10
        assert not pool._requests  # nobody waiting for a connection
