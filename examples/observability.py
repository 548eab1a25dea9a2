"""Observability: OpenTelemetry spans and metrics, and a Prometheus endpoint, one line each.

Run: python examples/observability.py [asyncio|trio]
(needs ``pip install 'asyncres[otel,prometheus]' opentelemetry-sdk``)
"""

from __future__ import annotations

import sys

import anyio
import httpx
import prometheus_client
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import asyncres
import asyncres.otel
import asyncres.prometheus
from asyncres.backoff import Constant


async def main() -> None:
    # Your application's SDK set-up (here: in memory, so the example can print it).
    reader = InMemoryMetricReader()
    spans = InMemorySpanExporter()
    tracers = TracerProvider()
    tracers.add_span_processor(SimpleSpanProcessor(spans))

    asyncres.otel.instrument(MeterProvider(metric_readers=[reader]), tracers)
    registry = prometheus_client.CollectorRegistry()
    asyncres.prometheus.register(registry)
    server, thread = prometheus_client.start_http_server(0, addr="127.0.0.1", registry=registry)

    breaker = asyncres.CircuitBreaker(name="inventory", failure_threshold=3)
    pipeline = asyncres.Pipeline(
        asyncres.Retry(on=ConnectionError, backoff=Constant(0.01), name="inventory"),
        breaker,
        name="inventory",
    )
    failures = iter([ConnectionError("reset"), None])

    async def fetch() -> str:
        error = next(failures)
        if error is not None:
            raise error
        return "42 in stock"

    with tracers.get_tracer("shop").start_as_current_span("GET /basket"):
        print(await pipeline.call(fetch))

    for span in spans.get_finished_spans():
        if span.name == "retry attempt":  # children of "GET /basket"
            attributes = span.attributes or {}
            number, outcome = attributes["asyncres.attempt.number"], attributes["asyncres.outcome"]
            print(f"span {span.name!r}: attempt {number}, {outcome}")
    data = reader.get_metrics_data()
    assert data is not None
    names = sorted(
        metric.name
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
    )
    print("otel metrics:", ", ".join(n for n in names if n.startswith("asyncres.")))

    # Prometheus scrapes from its own thread; asyncres samples the policies on this loop.
    port = server.server_address[1]
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
    print(
        next(
            line for line in text.splitlines() if line.startswith("asyncres_circuit_breaker_state{")
        )
    )

    server.shutdown()
    server.server_close()
    thread.join()
    asyncres.otel.uninstrument()


if __name__ == "__main__":
    anyio.run(main, backend=sys.argv[1] if len(sys.argv) > 1 else "asyncio")
