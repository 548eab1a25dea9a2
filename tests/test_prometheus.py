"""asyncres.prometheus: a real prometheus_client HTTP endpoint on 127.0.0.1, scraped and
parsed from the exposition format."""

from __future__ import annotations

import gc
import socket
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import prometheus_client
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

import asyncres
import asyncres.prometheus
from asyncres import _registry

pytestmark = pytest.mark.real_clock


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def endpoint() -> Iterator[tuple[str, prometheus_client.CollectorRegistry]]:
    gc.collect()
    registry = prometheus_client.CollectorRegistry()
    port = free_port()
    server, thread = prometheus_client.start_http_server(port, addr="127.0.0.1", registry=registry)
    try:
        yield f"http://127.0.0.1:{port}/metrics", registry
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


async def scrape(url: str) -> dict[str, Any]:
    async with httpx.AsyncClient() as client:
        response = await client.get(url, timeout=5.0)
    assert response.status_code == 200
    return {family.name: family for family in text_string_to_metric_families(response.text)}


def sample_value(family: Any, **labels: str) -> float:
    found = [
        s.value for s in family.samples if all(s.labels.get(k) == v for k, v in labels.items())
    ]
    assert len(found) == 1, (labels, family.samples)
    value: float = found[0]
    return value


@pytest.mark.anyio
async def test_every_documented_metric_is_scraped_with_its_type(
    endpoint: tuple[str, prometheus_client.CollectorRegistry],
) -> None:
    url, registry = endpoint
    tag = uuid.uuid4().hex[:8]
    breaker = asyncres.CircuitBreaker(name=f"db-{tag}", failure_threshold=1, recovery_time=30.0)
    bulkhead = asyncres.Bulkhead(max_concurrent=1, max_queued=0, name=f"pool-{tag}")
    limit = asyncres.AdaptiveLimit(name=f"limit-{tag}")
    budget = asyncres.RetryBudget(name=f"budget-{tag}")
    throttle = asyncres.Throttle(name=f"api-{tag}")
    asyncres.prometheus.register(registry)  # on this loop: scrapes sample here

    async def fail() -> None:
        raise ConnectionError("down")

    with pytest.raises(ConnectionError):
        await breaker.call(fail)
    with pytest.raises(asyncres.CircuitOpenError):
        await breaker.call(fail)
    release = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(bulkhead.call, release.wait)
        await anyio.sleep(0.01)
        with pytest.raises(asyncres.BulkheadFullError):
            await bulkhead.call(release.wait)
        families = await scrape(url)  # the server's thread asks this loop for the sample
        release.set()

    expected = {
        asyncres.prometheus.metric_name(m): "gauge" if m.type == "gauge" else "counter"
        for m in _registry.MEASURES
    }
    for name, kind in expected.items():
        assert name in families, name
        assert families[name].type == kind, (name, families[name].type)
    assert "asyncres_adaptive_limit_rtt_seconds" in families  # base unit in the name
    db = {"name": f"db-{tag}"}
    state = families["asyncres_circuit_breaker_state"]
    assert sample_value(state, **db, state="open") == 1
    assert sample_value(state, **db, state="closed") == 0
    rejected = families["asyncres_circuit_breaker_rejected"]
    assert [s.name for s in rejected.samples if s.labels == db] == [
        "asyncres_circuit_breaker_rejected_total"
    ]
    assert sample_value(rejected, **db) == 1
    assert sample_value(families["asyncres_circuit_breaker_opened"], **db) == 1
    assert sample_value(families["asyncres_circuit_breaker_failure_rate"], **db) == 1.0
    pool = {"name": f"pool-{tag}"}
    assert sample_value(families["asyncres_bulkhead_in_use"], **pool) == 1
    assert sample_value(families["asyncres_bulkhead_max_concurrent"], **pool) == 1
    bulkhead_rejected = families["asyncres_bulkhead_rejected"]
    assert sample_value(bulkhead_rejected, **pool, reason="queue_full") == 1
    assert sample_value(bulkhead_rejected, **pool, reason="shed") == 0
    assert sample_value(families["asyncres_adaptive_limit_limit"], name=f"limit-{tag}") > 0
    assert sample_value(families["asyncres_retry_budget_available"], name=f"budget-{tag}") > 0
    assert sample_value(families["asyncres_throttle_reject_probability"], name=f"api-{tag}") == 0
    del breaker, bulkhead, limit, budget, throttle


@pytest.mark.anyio
async def test_a_policy_nobody_holds_leaves_the_scrape(
    endpoint: tuple[str, prometheus_client.CollectorRegistry],
) -> None:
    url, registry = endpoint
    name = f"gone-{uuid.uuid4().hex[:8]}"
    breaker: asyncres.CircuitBreaker | None = asyncres.CircuitBreaker(name=name)
    twin = asyncres.CircuitBreaker(name=name)  # same name: a distinct series, never a duplicate
    asyncres.prometheus.register(registry)
    families = await scrape(url)
    names = {s.labels["name"] for s in families["asyncres_circuit_breaker_state"].samples}
    assert {name, f"{name}#2"} <= names
    breaker = None
    gc.collect()
    families = await scrape(url)
    names = {s.labels["name"] for s in families["asyncres_circuit_breaker_state"].samples}
    assert name in names
    assert f"{name}#2" not in names
    del twin, breaker


def test_registering_outside_a_loop_samples_once_a_loop_is_seen(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Registered at import time: until a loop has been seen, a scrape from another thread
    has nowhere safe to read the policies and reports none; then it reads them there."""
    monkeypatch.setattr(_registry, "_home", None)  # as in a fresh process
    registry = prometheus_client.CollectorRegistry()
    keep = asyncres.CircuitBreaker(name=f"early-{uuid.uuid4().hex[:8]}")
    collector = asyncres.prometheus.register(registry)
    assert keep.name is not None

    def scrape_from_a_thread() -> str:
        found: list[str] = []
        thread = threading.Thread(
            target=lambda: found.append(prometheus_client.generate_latest(registry).decode())
        )
        thread.start()
        thread.join(10)
        return found[0]

    text = scrape_from_a_thread()
    assert "asyncres_circuit_breaker_state" in text  # the families, without policy series
    assert keep.name not in text

    async def serve() -> str:
        asyncres.CircuitBreaker()  # built on the loop: the loop becomes the policies' home
        return await anyio.to_thread.run_sync(scrape_from_a_thread)

    text = trio.run(serve)
    assert f'name="{keep.name}",state="closed"}} 1.0' in text
    registry.unregister(collector)
