"""Prometheus metrics for every live asyncres policy, from their ``statistics()``.

::

    import prometheus_client
    import asyncres.prometheus

    asyncres.prometheus.register()          # into prometheus_client.REGISTRY
    prometheus_client.start_http_server(9464, addr="127.0.0.1")

Needs ``pip install 'asyncres[prometheus]'``. One collector reports every circuit breaker,
bulkhead, adaptive limit, retry budget, throttle, endpoint group and rate limit alive in
the process, labelled by the policy's ``name`` (unnamed ones get ``"<kind>-<n>"``: name the
ones you chart). Names follow Prometheus' conventions: ``asyncres_<kind>_<what>``, base
units (``_seconds``), totals ending in ``_total``. See the README's table.

The statistics are read on the event loop that runs the policies, also when a scrape
arrives on prometheus_client's own server thread: call `register` from that loop (an app's
startup), or before it starts, in which case the loop is the one that first scrapes or
runs an instrumented call. A scrape that finds no loop reports no policy series.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

try:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
    from prometheus_client.registry import REGISTRY as _DEFAULT_REGISTRY
    from prometheus_client.registry import Collector, CollectorRegistry
except ImportError as exc:  # pragma: no cover - the extra is installed in the tests
    raise ImportError(
        "asyncres.prometheus needs prometheus-client: pip install 'asyncres[prometheus]'"
    ) from exc

from . import _registry

__all__ = ["AsyncresCollector", "metric_name", "register"]


def metric_name(measure: _registry.Measure) -> str:
    """The Prometheus name of a measure (without the ``_total`` a counter's sample gets)."""
    unit = "_seconds" if measure.unit == "s" else ""
    return f"asyncres_{measure.kind}_{measure.name}{unit}"


class AsyncresCollector(Collector):
    """The collector `register` installs; ``registry.unregister(collector)`` removes it."""

    def __init__(self) -> None:
        _registry.bind()

    def describe(self) -> Iterator[Metric]:
        # Names only: registering must not sample (it may run outside the loop).
        for measure in _registry.MEASURES:
            yield self._family(measure, [])

    def collect(self) -> Iterator[Metric]:
        samples = _registry.sample()
        for measure in _registry.MEASURES:
            yield self._family(measure, samples)

    @staticmethod
    def _family(measure: _registry.Measure, samples: list[_registry.Sample]) -> Metric:
        labels = ["name", *measure.labels]
        family_type: Any = GaugeMetricFamily if measure.type == "gauge" else CounterMetricFamily
        family = family_type(metric_name(measure), measure.help, labels=labels)
        for sample in samples:
            if sample.kind != measure.kind:
                continue
            for extra, value in measure.read(sample.statistics):
                family.add_metric([sample.name, *(extra[label] for label in labels[1:])], value)
        return family  # type: ignore[no-any-return]


def register(registry: CollectorRegistry | None = None) -> AsyncresCollector:
    """Register one collector of every asyncres policy's state with ``registry``
    (default: ``prometheus_client.REGISTRY``) and return it."""
    collector = AsyncresCollector()
    (registry if registry is not None else _DEFAULT_REGISTRY).register(collector)
    return collector
