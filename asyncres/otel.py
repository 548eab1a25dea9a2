"""OpenTelemetry metrics and traces for every asyncres policy, in one line.

::

    import asyncres.otel

    asyncres.otel.instrument()  # the global meter and tracer providers

Needs ``pip install 'asyncres[otel]'`` (opentelemetry-api; the SDK and its exporters are the
application's choice). Once instrumented, process-wide:

- every `Retry` attempt and every extra `Hedge` attempt is a span, a child of the caller's
  current span (hedges, which run in other tasks, of the attempt that launched them), with
  the attempt number and the deadline left when it started; the httpx adapter adds
  ``http.request.resend_count`` and the request's method and server;
- events become span events on the current span (a breaker opening, a retry scheduled)
  and the ``asyncres.events`` counter; rejections also count in ``asyncres.rejections``;
- attempts and whole calls are timed in seconds (``asyncres.attempt.duration``,
  ``asyncres.call.duration``, with OpenTelemetry's HTTP duration buckets);
- every live breaker, bulkhead, adaptive limit, retry budget and throttle reports its
  state as observable instruments (``asyncres.circuit_breaker.state`` and the rest, see
  the README's table), sampled on the event loop that runs them.

The names follow Polly's telemetry (``resilience.polly.*``: events with ``event.name`` and
``event.severity``, attempt and pipeline durations) and OpenTelemetry's semantic conventions
(seconds, ``error.type``). `uninstrument` turns it all off again; without it, asyncres pays
one attribute load per call. A bridge failure is logged and never changes a call's outcome.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Iterable
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.trace import Status, StatusCode

from . import _registry, _telemetry
from ._deadline import remaining
from ._events import CallRejected, CircuitOpened, Event

__all__ = ["DURATION_BUCKETS", "instrument", "listener", "uninstrument"]

logger = logging.getLogger("asyncres")

#: The bucket boundaries of the duration histograms, in seconds (OpenTelemetry's advice
#: for ``http.client.request.duration``).
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)

_SCOPE = "asyncres"
_SEVERITY = {logging.DEBUG: "debug", logging.INFO: "information", logging.WARNING: "warning"}


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("asyncres")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0"


class _Events:
    """Events as metrics and span events: the part a per-policy listener also has."""

    def __init__(self, meter: metrics.Meter) -> None:
        self._events = meter.create_counter(
            "asyncres.events", unit="{event}", description="Events emitted by asyncres policies"
        )
        self._rejections = meter.create_counter(
            "asyncres.rejections",
            unit="{call}",
            description="Calls refused before they ran (RejectedError), by reason",
        )

    def __call__(self, event: Event) -> None:
        kind = type(event).__name__
        attributes: dict[str, Any] = {
            "event.name": kind,
            "event.severity": _SEVERITY.get(event.level, "information"),
        }
        if event.name is not None:
            attributes["asyncres.policy.name"] = event.name
        reason = getattr(event, "reason", None)
        if isinstance(reason, str) and not isinstance(event, _OPEN_REASONS):
            attributes["asyncres.reason"] = reason
        self._events.add(1, attributes)
        if isinstance(event, CallRejected):
            rejected = {"asyncres.reason": event.reason}
            if event.name is not None:
                rejected["asyncres.policy.name"] = event.name
            self._rejections.add(1, rejected)
        span = trace.get_current_span()
        if span.is_recording():
            span.add_event(f"asyncres.{_snake(kind)}", _event_attributes(event))


# A breaker's opening reason carries numbers ("failure rate 0.62 >= 0.5 over 40 calls"): as
# a metric attribute it would make a new series per opening, so only the span event has it.
_OPEN_REASONS = (CircuitOpened,)


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")


def _event_attributes(event: Event) -> dict[str, Any]:
    attributes: dict[str, Any] = {}
    for field in dataclasses.fields(event):
        value = getattr(event, field.name)
        if value is None:
            continue
        if isinstance(value, BaseException):
            attributes["error.type"] = _error_type(value)
        elif isinstance(value, str | int | float | bool):
            attributes[f"asyncres.{field.name}"] = value
    return attributes


def _error_type(error: BaseException) -> str:
    cls = type(error)
    return (
        cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    )


class _Attempt:
    """One attempt: its span (current inside it) and its metrics."""

    __slots__ = ("_attributes", "_bridge", "_span", "_start", "_token")

    def __init__(self, bridge: _Bridge, kind: str, name: str | None, number: int) -> None:
        self._bridge = bridge
        attributes: dict[str, Any] = {"asyncres.policy.kind": kind}
        if name is not None:
            attributes["asyncres.policy.name"] = name
        self._attributes = attributes
        span_attributes = dict(attributes)
        span_attributes["asyncres.attempt.number"] = number
        left = remaining()
        if left is not None:
            span_attributes["asyncres.deadline"] = max(left, 0.0)
        self._span = bridge.tracer.start_span(f"{kind} attempt", attributes=span_attributes)

    def __enter__(self) -> None:
        self._bridge.sampler.bind()
        self._token = otel_context.attach(trace.set_span_in_context(self._span))
        self._start = time.perf_counter()

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        elapsed = time.perf_counter() - self._start
        span = self._span
        try:
            otel_context.detach(self._token)
            if exc is not None and not isinstance(exc, Exception):
                span.set_attribute("asyncres.outcome", "cancelled")  # not counted
                return
            attributes = _outcome(self._attributes, exc)
            span.set_attribute("asyncres.outcome", attributes["asyncres.outcome"])
            if exc is not None:
                span.set_attribute("error.type", attributes["error.type"])
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            self._bridge.attempts.add(1, attributes)
            self._bridge.attempt_duration.record(elapsed, attributes)
        except Exception:  # telemetry never changes a call's outcome
            logger.exception("asyncres.otel failed to record an attempt")
        finally:
            span.end()


def _outcome(attributes: dict[str, Any], exc: BaseException | None) -> dict[str, Any]:
    result = dict(attributes)
    if exc is None:
        result["asyncres.outcome"] = "success"
    else:
        result["asyncres.outcome"] = "failure"
        result["error.type"] = _error_type(exc)
    return result


class _Call:
    """One whole call of a pipeline (or of a retry): its duration."""

    __slots__ = ("_attributes", "_bridge", "_start")

    def __init__(self, bridge: _Bridge, kind: str, name: str | None) -> None:
        self._bridge = bridge
        attributes: dict[str, Any] = {"asyncres.policy.kind": kind}
        if name is not None:
            attributes["asyncres.policy.name"] = name
        self._attributes = attributes

    def __enter__(self) -> None:
        self._start = time.perf_counter()

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if exc is not None and not isinstance(exc, Exception):
            return  # cancelled: not a call's outcome
        try:
            elapsed = time.perf_counter() - self._start
            self._bridge.call_duration.record(elapsed, _outcome(self._attributes, exc))
        except Exception:
            logger.exception("asyncres.otel failed to record a call")


class _Bridge:
    """The installed hooks (`asyncres._telemetry.Hooks`)."""

    def __init__(self, meter_provider: Any, tracer_provider: Any) -> None:
        version = _version()
        meter = (meter_provider or metrics.get_meter_provider()).get_meter(_SCOPE, version)
        self.tracer = (tracer_provider or trace.get_tracer_provider()).get_tracer(_SCOPE, version)
        self.sampler = _registry.Sampler()
        self.closed = False
        self.events = _Events(meter)
        self.attempts = meter.create_counter(
            "asyncres.attempts", unit="{attempt}", description="Attempts made, by outcome"
        )
        self.attempt_duration = meter.create_histogram(
            "asyncres.attempt.duration",
            unit="s",
            description="Duration of one attempt (a retry's or a hedge's)",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self.call_duration = meter.create_histogram(
            "asyncres.call.duration",
            unit="s",
            description="Duration of a whole call through a pipeline or a retry",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        for measure in _registry.MEASURES:
            create = (
                meter.create_observable_gauge
                if measure.type == "gauge"
                else meter.create_observable_counter
            )
            create(
                f"asyncres.{measure.kind}.{measure.name}",
                callbacks=[self._observer(measure)],
                unit=measure.unit,
                description=measure.help,
            )

    def _observer(self, measure: _registry.Measure) -> Any:
        def observe(options: CallbackOptions) -> Iterable[Observation]:
            if self.closed:
                return []
            observations = []
            for sample in self.sampler.sample((measure.kind,)):
                for labels, value in measure.read(sample.statistics):
                    attributes = {"asyncres.policy.name": sample.name}
                    attributes.update({f"asyncres.{k}": v for k, v in labels.items()})
                    observations.append(Observation(value, attributes))
            return observations

        return observe

    # -- the hooks --------------------------------------------------------------------

    def attempt(self, kind: str, name: str | None, number: int) -> _Attempt:
        return _Attempt(self, kind, name, number)

    def call(self, kind: str, name: str | None) -> _Call:
        return _Call(self, kind, name)

    def http_attempt(self, request: Any, number: int) -> None:
        span = trace.get_current_span()
        if not span.is_recording():
            return
        url = request.url
        span.set_attribute("http.request.method", request.method)
        span.set_attribute("server.address", url.host)
        if url.port is not None:
            span.set_attribute("server.port", url.port)
        if number > 1:
            span.set_attribute("http.request.resend_count", number - 1)

    def event(self, event: Event) -> None:
        self.events(event)


def instrument(meter_provider: Any = None, tracer_provider: Any = None) -> None:
    """Report every policy's attempts, calls, events and state to OpenTelemetry.

    Process-wide, for every policy already built and to come; ``None`` takes the global
    providers (``opentelemetry.metrics/trace.get_*_provider()``). Calling it again replaces
    the previous instrumentation. Call it from the event loop that runs the policies (an
    app's startup) or before it starts; the observable instruments sample the policies on
    the loop that first runs an instrumented call.
    """
    uninstrument()
    _telemetry.install(_Bridge(meter_provider, tracer_provider))


def uninstrument() -> None:
    """Undo `instrument`: the policies' calls stop reporting (already created observable
    instruments report nothing more)."""
    previous = _telemetry.install(None)
    if isinstance(previous, _Bridge):
        previous.closed = True


def listener(meter_provider: Any = None) -> Any:
    """A listener for one policy's ``listeners=``: its events as the ``asyncres.events`` and
    ``asyncres.rejections`` counters and as span events, without `instrument`'s spans::

        breaker = asyncres.CircuitBreaker(name="payments", listeners=[asyncres.otel.listener()])

    Use it or `instrument`, not both: instrumented, every event is already counted.
    """
    meter = (meter_provider or metrics.get_meter_provider()).get_meter(_SCOPE, _version())
    return _Events(meter)
