"""asyncres.otel against the real OpenTelemetry SDK (in-memory reader and exporter, no mocks)."""

from __future__ import annotations

import gc
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import anyio
import anyio.to_thread
import httpx
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

import asyncres
import asyncres.httpx
import asyncres.otel
from asyncres import _telemetry
from asyncres.backoff import Constant

pytestmark = pytest.mark.anyio


class Telemetry:
    def __init__(self) -> None:
        self.reader = InMemoryMetricReader()
        self.meters = MeterProvider(metric_readers=[self.reader])
        self.exporter = InMemorySpanExporter()
        self.tracers = TracerProvider()
        self.tracers.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracer = self.tracers.get_tracer("test")

    def spans(self, name: str | None = None) -> list[ReadableSpan]:
        spans = list(self.exporter.get_finished_spans())
        return [s for s in spans if name is None or s.name == name]

    def metrics(self) -> dict[str, Any]:
        """Every metric of the ``asyncres`` scope, by name."""
        data = self.reader.get_metrics_data()
        found: dict[str, Any] = {}
        if data is None:  # nothing recorded at all
            return found
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                if scope.scope.name == "asyncres":
                    for metric in scope.metrics:
                        found[metric.name] = metric
        return found


def points(metric: Any) -> list[tuple[dict[str, Any], Any]]:
    return [(dict(p.attributes), p) for p in metric.data.data_points]


def value_of(metric: Any, **attributes: Any) -> Any:
    matching = [
        p for attrs, p in points(metric) if all(attrs.get(k) == v for k, v in attributes.items())
    ]
    assert len(matching) == 1, (attributes, points(metric))
    point = matching[0]
    return getattr(point, "value", None) if hasattr(point, "value") else point


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    gc.collect()  # the policies of earlier tests leave the registry (their names recur)
    found = Telemetry()
    asyncres.otel.instrument(found.meters, found.tracers)
    try:
        yield found
    finally:
        asyncres.otel.uninstrument()


class Flaky:
    """Fails with ConnectionError ``failures`` times, then answers after ``latency`` s
    (``slow_once``: only the first successful-path call is slow)."""

    def __init__(self, failures: int, latency: float = 0.0, slow_once: bool = False) -> None:
        self.failures = failures
        self.latency = latency
        self.slow_once = slow_once
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionError(f"down {self.calls}")
        if self.latency and (not self.slow_once or self.calls == self.failures + 1):
            await anyio.sleep(self.latency)
        return "ok"


async def test_a_retried_hedged_pipeline_call_reports_spans_and_metrics(
    telemetry: Telemetry,
) -> None:
    """Parent span -> two retry attempts -> a hedge under the second; the documented
    instruments with the documented attributes."""
    breaker = asyncres.CircuitBreaker(name="db", failure_threshold=5)
    pipeline = asyncres.Pipeline(
        asyncres.Timeout(5.0),
        asyncres.Retry(on=ConnectionError, backoff=Constant(0.01), name="db-retry"),
        breaker,
        asyncres.Hedge(delay=0.05, on=TimeoutError, name="db-hedge"),  # failures: no hedge
        name="checkout",
    )
    # The first attempt fails; the second is slow (1 s), so a hedge starts after 50 ms and
    # wins, answering at once.
    work = Flaky(failures=1, latency=1.0, slow_once=True)
    with telemetry.tracer.start_as_current_span("request") as parent:
        assert await pipeline.execute(work) == "ok"

    attempts = sorted(
        telemetry.spans("retry attempt"), key=lambda s: s.attributes["asyncres.attempt.number"]
    )
    assert [s.attributes["asyncres.attempt.number"] for s in attempts] == [1, 2]
    assert all(
        s.parent is not None and s.parent.span_id == parent.context.span_id for s in attempts
    )
    first, second = attempts
    assert first.attributes["asyncres.outcome"] == "failure"
    assert first.attributes["error.type"] == "ConnectionError"
    assert first.status.status_code is StatusCode.ERROR
    assert [e.name for e in first.events] == ["exception"]
    # The retry is scheduled after the attempt ended: an event of the caller's span.
    assert "asyncres.retry_scheduled" in [e.name for e in telemetry.spans("request")[0].events]
    assert second.attributes["asyncres.outcome"] == "success"
    assert second.attributes["asyncres.policy.name"] == "db-retry"
    assert 4.9 < first.attributes["asyncres.deadline"] <= 5.0  # the Timeout's, left
    (hedge,) = telemetry.spans("hedge attempt")
    assert hedge.parent is not None
    assert hedge.parent.span_id == second.context.span_id
    assert hedge.attributes["asyncres.attempt.number"] == 1  # the first extra attempt
    assert hedge.attributes["asyncres.policy.name"] == "db-hedge"
    assert "asyncres.hedge_launched" in [e.name for e in second.events]

    metrics = telemetry.metrics()
    counted = metrics["asyncres.attempts"]
    assert counted.unit == "{attempt}"
    retry = {"asyncres.policy.kind": "retry", "asyncres.policy.name": "db-retry"}
    assert value_of(counted, **retry, **{"asyncres.outcome": "success"}) == 1
    assert value_of(counted, **retry, **{"error.type": "ConnectionError"}) == 1
    assert value_of(counted, **{"asyncres.policy.kind": "hedge"}) == 1
    duration = metrics["asyncres.attempt.duration"]
    assert duration.unit == "s"
    point = value_of(duration, **retry, **{"asyncres.outcome": "failure"})
    assert tuple(point.explicit_bounds) == asyncres.otel.DURATION_BUCKETS
    call = value_of(
        metrics["asyncres.call.duration"],
        **{"asyncres.policy.kind": "pipeline", "asyncres.policy.name": "checkout"},
    )
    assert call.count == 1
    events = metrics["asyncres.events"]
    assert (
        value_of(events, **{"event.name": "RetryScheduled", "asyncres.policy.name": "db-retry"})
        == 1
    )
    assert value_of(events, **{"event.name": "HedgeLaunched"}) == 1
    state = metrics["asyncres.circuit_breaker.state"]
    assert {a["asyncres.policy.name"] for a, _ in points(state)} >= {"db"}
    assert not any(a["asyncres.policy.name"] == "db#2" for a, _ in points(state))
    assert value_of(state, **{"asyncres.policy.name": "db", "asyncres.state": "closed"}) == 1
    assert value_of(state, **{"asyncres.policy.name": "db", "asyncres.state": "open"}) == 0


async def test_breaker_transitions_are_span_events_and_rejections_count(
    telemetry: Telemetry,
) -> None:
    breaker = asyncres.CircuitBreaker(name="pay", failure_threshold=2, recovery_time=10.0)
    with telemetry.tracer.start_as_current_span("request"):
        for _ in range(2):
            with pytest.raises(ConnectionError):
                await breaker.call(Flaky(failures=1))
        with pytest.raises(asyncres.CircuitOpenError):
            await breaker.call(Flaky(failures=0))
    (request,) = telemetry.spans("request")
    opened = [e for e in request.events if e.name == "asyncres.circuit_opened"]
    assert len(opened) == 1
    assert opened[0].attributes["asyncres.reason"] == "2 consecutive failures"
    assert opened[0].attributes["asyncres.retry_after"] == 10.0
    metrics = telemetry.metrics()
    rejected = {"asyncres.policy.name": "pay", "asyncres.reason": "circuit_open"}
    assert value_of(metrics["asyncres.rejections"], **rejected) == 1
    # The opening's reason carries numbers: not a metric attribute.
    opened_count = value_of(
        metrics["asyncres.events"], **{"event.name": "CircuitOpened", "asyncres.policy.name": "pay"}
    )
    assert opened_count == 1
    assert all(
        "asyncres.reason" not in attrs
        for attrs, _ in points(metrics["asyncres.events"])
        if attrs["event.name"] == "CircuitOpened"
    )
    pay = {"asyncres.policy.name": "pay"}
    state = metrics["asyncres.circuit_breaker.state"]
    assert value_of(state, **pay, **{"asyncres.state": "open"}) == 1
    assert value_of(metrics["asyncres.circuit_breaker.rejected"], **pay) == 1
    assert value_of(metrics["asyncres.circuit_breaker.opened"], **pay) == 1


async def test_policies_state_is_sampled_on_their_loop_from_an_exporter_thread(
    telemetry: Telemetry,
) -> None:
    """A periodic exporter collects on its own thread: the sample is taken on the loop."""
    tag = uuid.uuid4().hex[:8]  # policies of earlier tests may still be alive
    bulkhead = asyncres.Bulkhead(max_concurrent=2, max_queued=4, name=f"pool-{tag}")
    throttle = asyncres.Throttle(name=f"api-{tag}")
    limit = asyncres.AdaptiveLimit(name=f"limit-{tag}")
    budget = asyncres.RetryBudget(name=f"budget-{tag}")
    collected_on: list[int] = []
    loop_thread = threading.get_ident()
    release = anyio.Event()

    async def hold() -> None:
        await release.wait()

    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(bulkhead.call, hold)
        await anyio.sleep(0.01)
        await throttle.call(Flaky(failures=0))
        await asyncres.Retry(on=ConnectionError).call(Flaky(failures=0))  # binds the sampler

        def collect() -> dict[str, Any]:
            collected_on.append(threading.get_ident())
            return telemetry.metrics()

        metrics = await anyio.to_thread.run_sync(collect)
        release.set()
    assert collected_on
    assert collected_on[0] != loop_thread
    pool = {"asyncres.policy.name": f"pool-{tag}"}
    assert value_of(metrics["asyncres.bulkhead.in_use"], **pool) == 2
    assert value_of(metrics["asyncres.bulkhead.queued"], **pool) == 1
    assert value_of(metrics["asyncres.bulkhead.max_concurrent"], **pool) == 2
    assert (
        value_of(metrics["asyncres.bulkhead.rejected"], **pool, **{"asyncres.reason": "queue_full"})
        == 0
    )
    api = {"asyncres.policy.name": f"api-{tag}"}
    assert value_of(metrics["asyncres.throttle.reject_probability"], **api) == 0.0
    assert value_of(metrics["asyncres.throttle.requests"], **api) == 1
    assert (
        value_of(
            metrics["asyncres.adaptive_limit.limit"], **{"asyncres.policy.name": f"limit-{tag}"}
        )
        > 0
    )
    available = value_of(
        metrics["asyncres.retry_budget.available"], **{"asyncres.policy.name": f"budget-{tag}"}
    )
    assert available > 0
    del bulkhead, throttle, limit, budget


async def test_httpx_retried_attempts_carry_the_resend_count(telemetry: Telemetry) -> None:
    answers = iter([503, 200])

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(next(answers), request=request)

    policy = asyncres.httpx.standard_policy(backoff=Constant(0.01))
    transport = asyncres.httpx.ResilientTransport(httpx.MockTransport(handler), policy=policy)
    async with httpx.AsyncClient(transport=transport) as client:
        with telemetry.tracer.start_as_current_span("GET /items"):
            response = await client.get("http://127.0.0.1:8000/items")
    assert response.status_code == 200
    attempts = sorted(
        telemetry.spans("retry attempt"), key=lambda s: s.attributes["asyncres.attempt.number"]
    )
    assert len(attempts) == 2
    first, second = attempts
    assert "http.request.resend_count" not in first.attributes  # only on retried requests
    assert second.attributes["http.request.resend_count"] == 1
    for span in attempts:
        assert span.attributes["http.request.method"] == "GET"
        assert span.attributes["server.address"] == "127.0.0.1"
        assert span.attributes["server.port"] == 8000
        assert span.attributes["asyncres.policy.name"] == "http http://127.0.0.1:8000"
    assert first.attributes["asyncres.outcome"] == "failure"
    assert first.attributes["error.type"].endswith("RetryableStatusError")  # the 503
    assert second.attributes["asyncres.outcome"] == "success"


async def test_a_failing_bridge_or_listener_never_changes_a_call(
    telemetry: Telemetry, monkeypatch: pytest.MonkeyPatch
) -> None:
    bridge = _telemetry.hooks
    assert bridge is not None

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("exporter bug")

    monkeypatch.setattr(bridge, "attempt_duration", type("Broken", (), {"record": broken})())
    monkeypatch.setattr(bridge, "event", broken)

    def raising_listener(event: asyncres.events.Event) -> None:
        raise RuntimeError("listener bug")

    retry = asyncres.Retry(on=ConnectionError, backoff=Constant(0.01), listeners=[raising_listener])
    with telemetry.tracer.start_as_current_span("request"):
        assert await retry.call(Flaky(failures=1)) == "ok"
        with pytest.raises(ConnectionError, match="down 3"):
            await retry.call(Flaky(failures=5))
    assert len(telemetry.spans("retry attempt")) == 2 + 3  # the spans still ended


async def test_cancellation_is_neither_counted_nor_a_span_error(telemetry: Telemetry) -> None:
    retry = asyncres.Retry(on=ConnectionError, name="slow")
    with telemetry.tracer.start_as_current_span("request"), anyio.move_on_after(0.1):
        await retry.call(Flaky(failures=0, latency=10.0))
    (span,) = telemetry.spans("retry attempt")
    assert span.attributes["asyncres.outcome"] == "cancelled"
    assert span.status.status_code is StatusCode.UNSET
    metrics = telemetry.metrics()
    if "asyncres.attempts" in metrics:  # the observable counter, with nothing to report
        assert points(metrics["asyncres.attempts"]) == []
    assert "asyncres.attempt.duration" not in metrics


async def test_attempts_outside_a_trace_are_measured_but_make_no_spans(
    telemetry: Telemetry,
) -> None:
    """A root span per attempt would be noise (and ~20 us each): only metrics."""
    retry = asyncres.Retry(on=ConnectionError, backoff=Constant(0.01), name="bg")
    assert await retry.call(Flaky(failures=1)) == "ok"
    assert telemetry.spans() == []
    counted = telemetry.metrics()["asyncres.attempts"]
    assert value_of(counted, **{"asyncres.policy.name": "bg", "asyncres.outcome": "failure"}) == 1
    assert value_of(counted, **{"asyncres.policy.name": "bg", "asyncres.outcome": "success"}) == 1


async def test_uninstrument_stops_reporting() -> None:
    found = Telemetry()
    asyncres.otel.instrument(found.meters, found.tracers)
    asyncres.otel.uninstrument()
    assert _telemetry.hooks is None
    retry = asyncres.Retry(on=ConnectionError, backoff=Constant(0.01))
    assert await retry.call(Flaky(failures=1)) == "ok"
    assert found.spans() == []
    assert "asyncres.attempts" not in found.metrics()


async def test_a_per_policy_listener_counts_that_policys_events() -> None:
    found = Telemetry()
    breaker = asyncres.CircuitBreaker(
        name="solo", failure_threshold=1, listeners=[asyncres.otel.listener(found.meters)]
    )
    with pytest.raises(ConnectionError):
        await breaker.call(Flaky(failures=1))
    events = found.metrics()["asyncres.events"]
    assert value_of(events, **{"event.name": "CircuitOpened", "asyncres.policy.name": "solo"}) == 1
    assert _telemetry.hooks is None  # no process-wide instrumentation
