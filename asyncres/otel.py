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
- every live breaker, bulkhead, adaptive limit, retry budget, throttle, endpoint group and
  rate limit reports its state as observable instruments (``asyncres.circuit_breaker.state``
  and the rest, see the README's table), sampled on the event loop that runs them.

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

try:
    from opentelemetry import context as otel_context
    from opentelemetry import metrics, trace
    from opentelemetry.metrics import CallbackOptions, Observation
    from opentelemetry.trace import Status, StatusCode
except ImportError as exc:  # pragma: no cover - the extra is installed in the tests
    raise ImportError(
        "asyncres.otel needs opentelemetry-api: pip install 'asyncres[otel]'"
    ) from exc

from . import _registry, _telemetry
from ._deadline import remaining
from ._events import CallRejected, CircuitOpened, Event

__all__ = ["DURATION_BUCKETS", "instrument", "listener", "uninstrument"]

_logger = logging.getLogger("asyncres")

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


class _LocalCounter:
    """A counter kept in a dict and observed by the SDK at collection time.

    An SDK counter costs ~9 us an ``add`` (attribute cleaning and hashing), more than a whole
    pipeline call; a dict increment costs ~0.1 us and reports the same totals. Each distinct
    ``key`` builds its attributes once.
    """

    __slots__ = ("_attributes", "_counts", "closed")

    def __init__(self, meter: metrics.Meter, name: str, unit: str, description: str) -> None:
        self._counts: dict[Any, int] = {}
        self._attributes: dict[Any, dict[str, Any]] = {}
        self.closed = False
        meter.create_observable_counter(
            name, callbacks=[self._observe], unit=unit, description=description
        )

    def add(self, key: Any, build: Any, *args: Any) -> dict[str, Any]:
        """Count one ``key``; return its attributes (``build(*args)`` the first time)."""
        attributes = self._attributes.get(key)
        if attributes is None:  # before the count: a collection may run in between
            attributes = self._attributes[key] = build(*args)
        counts = self._counts
        counts[key] = counts.get(key, 0) + 1
        return attributes

    def _observe(self, options: CallbackOptions) -> Iterable[Observation]:
        if self.closed:
            return []
        counts = list(self._counts.items())  # one C-level copy: safe beside the loop
        return [Observation(count, self._attributes[key]) for key, count in counts]


class _Events:
    """Events as metrics and span events: the part a per-policy listener also has."""

    def __init__(self, meter: metrics.Meter) -> None:
        self.events = _LocalCounter(
            meter, "asyncres.events", "{event}", "Events emitted by asyncres policies"
        )
        self.rejections = _LocalCounter(
            meter,
            "asyncres.rejections",
            "{call}",
            "Calls refused before they ran (RejectedError), by reason",
        )

    def __call__(self, event: Event) -> None:
        kind = type(event)
        reason = getattr(event, "reason", None)
        if not isinstance(reason, str) or isinstance(event, _OPEN_REASONS):
            reason = None
        self.events.add((kind, event.name, reason), _event_metric_attributes, event, reason)
        if isinstance(event, CallRejected):
            self.rejections.add((event.name, event.reason), _rejection_attributes, event)
        span = trace.get_current_span()
        if span.is_recording():
            span.add_event(f"asyncres.{_snake(kind.__name__)}", _event_attributes(event))


def _event_metric_attributes(event: Event, reason: str | None) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "event.name": type(event).__name__,
        "event.severity": _SEVERITY.get(event.level, "information"),
    }
    if event.name is not None:
        attributes["asyncres.policy.name"] = event.name
    if reason is not None:
        attributes["asyncres.reason"] = reason
    return attributes


def _rejection_attributes(event: CallRejected) -> dict[str, Any]:
    attributes: dict[str, Any] = {"asyncres.reason": event.reason}
    if event.name is not None:
        attributes["asyncres.policy.name"] = event.name
    return attributes


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
    """One attempt: its span (current inside it, when the caller's span records) and its
    metrics."""

    __slots__ = ("_bridge", "_key", "_span", "_start", "_token")

    def __init__(self, bridge: _Bridge, kind: str, name: str | None, number: int) -> None:
        self._bridge = bridge
        self._key = (kind, name)
        self._span: Any = None
        if trace.get_current_span().is_recording():
            # A child of the caller's span only: outside a trace (or one sampled out) an
            # attempt span would be a root of its own, noise at the SDK's ~20 us a span.
            attributes: dict[str, Any] = {
                "asyncres.policy.kind": kind,
                "asyncres.attempt.number": number,
            }
            if name is not None:
                attributes["asyncres.policy.name"] = name
            left = remaining()
            if left is not None:
                attributes["asyncres.deadline"] = max(left, 0.0)
            self._span = bridge.tracer.start_span(f"{kind} attempt", attributes=attributes)

    def __enter__(self) -> None:
        _registry.bind()
        if self._span is not None:
            self._token = otel_context.attach(trace.set_span_in_context(self._span))
        self._start = time.perf_counter()

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        elapsed = time.perf_counter() - self._start
        span = self._span
        try:
            if span is not None:
                otel_context.detach(self._token)
            if exc is not None and not isinstance(exc, Exception):
                if span is not None:
                    span.set_attribute("asyncres.outcome", "cancelled")  # not counted
                return
            attributes = self._bridge.attempted(self._key, exc)
            self._bridge.attempt_duration.record(elapsed, attributes)
            if span is not None:
                span.set_attribute("asyncres.outcome", attributes["asyncres.outcome"])
                if exc is not None:
                    span.set_attribute("error.type", attributes["error.type"])
                    span.record_exception(exc)
                    span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
        except Exception:  # telemetry never changes a call's outcome
            _logger.exception("asyncres.otel failed to record an attempt")
        finally:
            if span is not None:
                span.end()


def _attributes(kind: str, name: str | None, exc: BaseException | None) -> dict[str, Any]:
    attributes: dict[str, Any] = {"asyncres.policy.kind": kind}
    if name is not None:
        attributes["asyncres.policy.name"] = name
    if exc is None:
        attributes["asyncres.outcome"] = "success"
    else:
        attributes["asyncres.outcome"] = "failure"
        attributes["error.type"] = _error_type(exc)
    return attributes


class _Call:
    """One whole call of a pipeline: its duration."""

    __slots__ = ("_bridge", "_key", "_start")

    def __init__(self, bridge: _Bridge, kind: str, name: str | None) -> None:
        self._bridge = bridge
        self._key = (kind, name)

    def __enter__(self) -> None:
        self._start = time.perf_counter()

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if exc is not None and not isinstance(exc, Exception):
            return  # cancelled: not a call's outcome
        try:
            elapsed = time.perf_counter() - self._start
            bridge = self._bridge
            bridge.call_duration.record(elapsed, bridge.outcome(self._key, exc))
        except Exception:
            _logger.exception("asyncres.otel failed to record a call")


class _Bridge:
    """The installed hooks (`asyncres._telemetry.Hooks`)."""

    def __init__(self, meter_provider: Any, tracer_provider: Any) -> None:
        version = _version()
        meter = (meter_provider or metrics.get_meter_provider()).get_meter(_SCOPE, version)
        self.tracer = (tracer_provider or trace.get_tracer_provider()).get_tracer(_SCOPE, version)
        _registry.bind()
        self.closed = False
        self.events = _Events(meter)
        self.attempts = _LocalCounter(
            meter, "asyncres.attempts", "{attempt}", "Attempts made, by outcome"
        )
        self._outcomes: dict[tuple[Any, ...], dict[str, Any]] = {}
        self.attempt_duration = meter.create_histogram(
            "asyncres.attempt.duration",
            unit="s",
            description="Duration of one attempt (a retry's or a hedge's)",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self.call_duration = meter.create_histogram(
            "asyncres.call.duration",
            unit="s",
            description="Duration of a whole call through a pipeline",
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

    def outcome(self, key: tuple[str, str | None], exc: BaseException | None) -> dict[str, Any]:
        """The attributes of an outcome, built once per distinct outcome."""
        full = (*key, None if exc is None else type(exc))
        attributes = self._outcomes.get(full)
        if attributes is None:
            attributes = self._outcomes[full] = _attributes(*key, exc)
        return attributes

    def attempted(self, key: tuple[str, str | None], exc: BaseException | None) -> dict[str, Any]:
        """Count one attempt; return its outcome's attributes."""
        full = (*key, None if exc is None else type(exc))
        return self.attempts.add(full, self.outcome, key, exc)

    def close(self) -> None:
        self.closed = self.attempts.closed = True
        self.events.events.closed = self.events.rejections.closed = True

    def _observer(self, measure: _registry.Measure) -> Any:
        def observe(options: CallbackOptions) -> Iterable[Observation]:
            if self.closed:
                return []
            observations = []
            for sample in _registry.sample((measure.kind,)):
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
        previous.close()


def listener(meter_provider: Any = None) -> Any:
    """A listener for one policy's ``listeners=``: its events as the ``asyncres.events`` and
    ``asyncres.rejections`` counters and as span events, without `instrument`'s spans::

        breaker = asyncres.CircuitBreaker(name="payments", listeners=[asyncres.otel.listener()])

    Use it or `instrument`, not both: instrumented, every event is already counted.
    """
    meter = (meter_provider or metrics.get_meter_provider()).get_meter(_SCOPE, _version())
    return _Events(meter)
