"""httpx adapter: `ResilientTransport`, resilience for every request of an ``AsyncClient``.

```python
client = httpx.AsyncClient(transport=asyncres.httpx.ResilientTransport())
```

Each request goes through the HTTP-tuned options built by `standard_policy()`, in this
order (outermost first)::

    total timeout → Retry → [Hedge] → per-host CircuitBreaker → attempt timeout
                  → per-host Bulkhead → the inner transport

The attempt timeout wraps the bulkhead on purpose: it bounds the wait in the bulkhead's
queue too, so no blocking step outlives the attempt (or the total) timeout.

httpx is imported when this module is imported (never by ``import asyncres``). The
``httpx2`` fork, which has the same API under another name, works too: pass one of its
transports as ``transport=`` (or ``httpx_module=httpx2``).
"""

from __future__ import annotations

import email.utils
import math
import time
import uuid
import warnings
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from types import ModuleType, TracebackType
from typing import TYPE_CHECKING, Any

try:
    import httpx
except ImportError:  # pragma: no cover - only the httpx2 fork is installed
    import httpx2 as httpx  # type: ignore[no-redef]

import anyio

from . import _telemetry, _validation
from ._backoff import Backoff, FullJitter
from ._breaker import CircuitBreaker, CircuitState
from ._budget import RetryBudget
from ._bulkhead import Bulkhead
from ._deadline import AdvisoryDeadline, DeadlineScope, remaining
from ._endpoints import Endpoint, EndpointGroup, Route
from ._events import Listener
from ._exceptions import CircuitOpenError, RejectedError, TimeoutExceededError
from ._hedge import Hedge
from ._policy import Policy
from ._retry import Retry
from ._setting import Setting

if TYPE_CHECKING:
    from typing import Self

__all__ = [
    "IDEMPOTENT_METHODS",
    "RETRY_STATUSES",
    "HttpOptions",
    "ResilientTransport",
    "RetryableStatusError",
    "is_retryable",
    "parse_retry_after",
    "standard_policy",
]

#: Methods that are safe to send twice (RFC 9110 §9.2.2).
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
#: Statuses worth retrying for idempotent requests.
RETRY_STATUSES = frozenset({408, 429, 502, 503, 504})

_MARK = "_asyncres_retryable"
_INF = math.inf


class RetryableStatusError(Exception):
    """A response whose status counts as a failure, carried through the policy layers.

    Raised inside the transport so that breakers count it and `Retry` can retry it; the
    transport turns it back into the response before the caller sees anything. With your
    own pipeline, include it in your Retry's ``on`` (or use `is_retryable`).
    ``retry_after`` is the server's ``Retry-After`` in seconds, if any.
    """

    __module__ = "asyncres.httpx"

    def __init__(self, response: Any, retry_after: float | None, url: object = None) -> None:
        self.response = response
        self.retry_after = retry_after
        where = f" from {url}" if url is not None else ""
        super().__init__(f"HTTP {response.status_code}{where}")


def is_retryable(exc: BaseException) -> bool:
    """Whether the adapter classified this failure as safe to retry for its request.

    Connect errors and connect/pool timeouts (the request never left) are retryable for any
    method; read errors and the statuses in ``retry_statuses`` only for idempotent requests
    (or any carrying ``Idempotency-Key``). Requests with a streaming body that cannot be
    replayed are never retried. Rejections by an open breaker or a full bulkhead are not
    retried either: the caller fails fast instead of waiting for a recovery.
    """
    return bool(getattr(exc, _MARK, False))


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """``Retry-After`` in seconds: delta-seconds or an HTTP date; ``None`` if absent or bad.

    Negative or past values give ``0.0``. ``now`` is the wall-clock time (for tests).
    """
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if math.isnan(seconds) or math.isinf(seconds):
        return None
    return max(0.0, seconds)


_DEFAULT_BACKOFF = FullJitter(base=0.5, cap=10.0)


def _default_breaker(host: str) -> CircuitBreaker:
    # For hard outages only: a brownout (some requests fail) is the retry budget's and the
    # throttle's to handle; a failure rate near the brownout's would open the circuit on
    # requests that a retry would have saved. Recovery: the core default (0.25 s, 0.5 s,
    # then a probe a second). Up to 10 probes at once (Resilience4j's default): a hard
    # outage refuses each in microseconds, so they rarely overlap, while a dependency that
    # came back slow (a database serving 1.5 s statements) gets its capacity used during
    # the first probe instead of one request per probe time.
    return CircuitBreaker(
        failure_threshold=20,
        failure_rate=0.9,
        window=10.0,
        min_calls=20,
        half_open_max_calls=10,
        name=f"http {host}",
    )


def _default_budget(host: str) -> RetryBudget:
    return RetryBudget(name=f"http {host}")


def _default_bulkhead(host: str) -> Bulkhead:
    return Bulkhead(max_concurrent=100, max_queued=200, name=f"http {host}")


@dataclass(frozen=True, slots=True)
class HttpOptions:
    """The HTTP-tuned options of a `ResilientTransport` (build them with `standard_policy`).

    Configuration, not a `Policy`: the transport builds its per-host policies from it.
    Frozen: assigning a field raises ``dataclasses.FrozenInstanceError``.

    Per-host objects (breaker, bulkhead, retry budget) are made on first use by the
    factories, which receive the host key (``"https://example.com:443"``).
    """

    __module__ = "asyncres.httpx"

    total_timeout: float | None = 30.0
    attempt_timeout: float | None = 10.0
    max_attempts: int = 3
    backoff: Backoff = _DEFAULT_BACKOFF
    budget: Callable[[str], RetryBudget | None] | None = field(default=_default_budget)
    breaker: Callable[[str], CircuitBreaker] | None = _default_breaker
    bulkhead: Callable[[str], Bulkhead] | None = _default_bulkhead
    retry_statuses: frozenset[int] = RETRY_STATUSES
    failure_statuses: frozenset[int] = frozenset({408, 429, *range(500, 600)})
    max_retry_after: float = 60.0
    hedge_delay: float | None = None
    listeners: tuple[Listener, ...] = ()

    def __post_init__(self) -> None:
        for name in ("total_timeout", "attempt_timeout"):
            value = getattr(self, name)
            if value is not None:
                _validation.positive(name, value)
        if (
            self.total_timeout is not None
            and self.attempt_timeout is not None
            and self.attempt_timeout > self.total_timeout
        ):
            raise ValueError(
                f"`attempt_timeout` ({self.attempt_timeout!r}) must not exceed "
                f"`total_timeout` ({self.total_timeout!r})"
            )
        _validation.count("max_attempts", self.max_attempts, minimum=1)
        _validation.non_negative("max_retry_after", self.max_retry_after)
        if self.hedge_delay is not None:
            _validation.non_negative("hedge_delay", self.hedge_delay)
        for name in ("retry_statuses", "failure_statuses"):
            statuses = getattr(self, name)
            if not all(isinstance(s, int) and 100 <= s <= 599 for s in statuses):
                raise ValueError(f"`{name}` must be HTTP status codes, got {statuses!r}")
        if not callable(getattr(self.backoff, "delays", None)):
            raise ValueError(f"`backoff` must have a delays() method, got {self.backoff!r}")


def standard_policy(
    *,
    total_timeout: float | None = 30.0,
    attempt_timeout: float | None = 10.0,
    max_attempts: int = 3,
    backoff: Backoff | None = None,
    budget: Callable[[str], RetryBudget | None] | None = None,
    breaker: Callable[[str], CircuitBreaker] | bool | None = True,
    bulkhead: Callable[[str], Bulkhead] | bool | None = True,
    retry_statuses: Iterable[int] = RETRY_STATUSES,
    failure_statuses: Iterable[int] | None = None,
    max_retry_after: float = 60.0,
    hedge_delay: float | None = None,
    listeners: Iterable[Listener] = (),
    attempts: int | None = None,
) -> HttpOptions:
    """Build the HTTP-tuned options; every argument has a documented default.

    ``attempts=`` is the deprecated name of ``max_attempts=`` (until 0.3).

    ``breaker`` / ``bulkhead``: ``True`` for the defaults, ``False``/``None`` to leave the
    layer out, or a factory ``(host) -> CircuitBreaker`` / ``(host) -> Bulkhead``.
    ``budget``: a factory ``(host) -> RetryBudget | None`` (default: one `RetryBudget()`
    per host). ``hedge_delay``: seconds after which an idempotent attempt is hedged.
    """
    if attempts is not None:
        warnings.warn(
            "standard_policy(attempts=...) is deprecated, use standard_policy(max_attempts=...)",
            DeprecationWarning,
            stacklevel=2,
        )
        max_attempts = attempts
    return HttpOptions(
        total_timeout=total_timeout,
        attempt_timeout=attempt_timeout,
        max_attempts=max_attempts,
        backoff=backoff if backoff is not None else _DEFAULT_BACKOFF,
        budget=budget if budget is not None else _default_budget,
        breaker=_default_breaker if breaker is True else (breaker or None),
        bulkhead=_default_bulkhead if bulkhead is True else (bulkhead or None),
        retry_statuses=frozenset(retry_statuses),
        failure_statuses=(
            frozenset(failure_statuses)
            if failure_statuses is not None
            else frozenset({408, 429, *range(500, 600)})
        ),
        max_retry_after=max_retry_after,
        hedge_delay=hedge_delay,
        listeners=tuple(listeners),
    )


class _Host:
    """Per-host state: the layers that keep state between requests."""

    __slots__ = ("breaker", "budget", "bulkhead", "hedge", "retry")

    def __init__(self, key: str, policy: HttpOptions, retryable: Callable[[Exception], bool]):
        self.hedge = (
            Hedge(delay=policy.hedge_delay, on=retryable, name=f"http {key}")
            if policy.hedge_delay is not None
            else None
        )
        self.breaker = policy.breaker(key) if policy.breaker is not None else None
        self.bulkhead = policy.bulkhead(key) if policy.bulkhead is not None else None
        self.budget = policy.budget(key) if policy.budget is not None else None
        self.retry = Retry(
            on=retryable,
            max_attempts=policy.max_attempts,
            backoff=policy.backoff,
            budget=self.budget,
            name=f"http {key}",
            listeners=policy.listeners,
        )


class _NoScope:
    """Stands in for the attempt's deadline scope when no deadline applies."""

    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc_info: object) -> None:
        return None


_NO_SCOPE = _NoScope()


class ResilientTransport(httpx.AsyncBaseTransport):
    """An httpx transport that wraps another with timeouts, retries, breakers, bulkheads.

    ``policy`` is an `HttpOptions` (default: `standard_policy()`) or any asyncres `Policy`
    (e.g. your own `Pipeline`), which then runs around each request as given: responses
    with a status in ``retry_statuses`` reach it as `RetryableStatusError` so your Retry
    can handle them (``on=asyncres.httpx.is_retryable``).

    ``deadline_header`` carries the remaining budget to the server (seconds, millisecond
    precision; ``None`` to send nothing). ``idempotency_keys=True`` adds an
    ``Idempotency-Key`` to POST/PATCH requests so that they become retryable. Response
    bodies whose ``Content-Length`` is at most ``buffer_limit`` bytes are read inside the
    attempt, so a connection dropped mid-body is retried like any read error; larger or
    chunked bodies stream through untouched (``0`` disables). ``max_hosts`` bounds the
    per-host state (least recently used hosts are forgotten).

    The configuration is read-only after construction: build a new transport to change it.
    """

    __module__ = "asyncres.httpx"

    policy: Setting[HttpOptions | Policy] = Setting()
    deadline_header: Setting[str | None] = Setting()
    idempotency_keys: Setting[bool] = Setting()
    buffer_limit: Setting[int] = Setting()
    max_hosts: Setting[int] = Setting()
    endpoints: Setting[EndpointGroup | None] = Setting()

    def __init__(
        self,
        transport: Any | None = None,
        *,
        policy: HttpOptions | Policy | None = None,
        deadline_header: str | None = "Request-Timeout",
        idempotency_keys: bool = False,
        buffer_limit: int = 1_048_576,
        max_hosts: int = 1024,
        endpoints: EndpointGroup | Iterable[Endpoint | str] | None = None,
        httpx_module: ModuleType | None = None,
    ) -> None:
        self._x = httpx_module or _module_of(transport) or httpx
        self._inner = transport if transport is not None else self._x.AsyncHTTPTransport()
        if policy is None:
            policy = standard_policy()
        elif not isinstance(policy, HttpOptions) and not callable(getattr(policy, "execute", None)):
            raise ValueError(f"`policy` must be an HttpOptions or a Policy, got {policy!r}")
        self._policy = policy
        # The HTTP-tuned options, or None for a user-supplied Policy (one test per request).
        self._options = policy if isinstance(policy, HttpOptions) else None
        if deadline_header is not None and (
            not isinstance(deadline_header, str)
            or not deadline_header.strip()
            or not deadline_header.isascii()
        ):
            raise ValueError(
                f"`deadline_header` must be an ASCII header name or None, got {deadline_header!r}"
            )
        self._deadline_header = deadline_header
        self._header_seconds = math.nan  # the last budget announced, and its text
        self._header_value = ""
        self._header_raw = (deadline_header or "").encode("ascii")
        self._header_key = self._header_raw.lower()
        self._header_entry = (self._header_raw, self._header_key, b"")
        # httpx keeps request headers as a list of (name, lowercased name, value) tuples.
        self._raw_headers = _raw_header_list(self._x)
        self._idempotency_keys = idempotency_keys
        self._buffer_limit = _validation.count("buffer_limit", buffer_limit, minimum=0)
        self._max_hosts = _validation.count("max_hosts", max_hosts, minimum=1)
        self._hosts: OrderedDict[tuple[str, bytes, int | None], _Host] = OrderedDict()
        x = self._x
        self._endpoints = _endpoint_group(endpoints)
        self._endpoint_urls: dict[str, Any] = {  # address -> parsed URL
            e.address: _endpoint_url(e, x)
            for e in (self._endpoints.endpoints if self._endpoints else ())
        }
        # Failures where the request certainly never reached the server.
        self._never_sent: tuple[type[BaseException], ...] = (
            x.ConnectError,
            x.ConnectTimeout,
            x.PoolTimeout,
        )
        # Failures after the request may have been (partly) processed.
        self._maybe_sent: tuple[type[BaseException], ...] = (
            x.ReadError,
            x.ReadTimeout,
            x.WriteError,
            x.WriteTimeout,
            x.RemoteProtocolError,
            TimeoutExceededError,
        )

    def __repr__(self) -> str:
        return f"ResilientTransport({self._inner!r}, policy={self._policy!r})"

    # -- httpx transport protocol ---------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self._inner.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc: BaseException | None = None,
        tb: TracebackType | None = None,
    ) -> None:
        await self._inner.__aexit__(exc_type, exc, tb)

    async def aclose(self) -> None:
        """Close the inner transport (and its connection pool)."""
        await self._inner.aclose()

    async def handle_async_request(self, request: Any) -> Any:
        """Send ``request`` through the policy; return the final response.

        The first attempt runs inline, in this one coroutine: the layers are entered in the
        order of the module docstring (breaker, attempt timeout, bulkhead, send) through
        their ``async with`` faces, and a success costs no retry loop and no advisory
        total deadline (the attempt's scope is never later than it). Any failure hands
        the request to the general path, which makes the same decisions `Retry.call`
        would after a failed first attempt.
        """
        method = request.method
        replayable = hasattr(request, "_content")  # in memory (read once by httpx)
        idempotent = method in IDEMPOTENT_METHODS or "idempotency-key" in request.headers
        if self._idempotency_keys and not idempotent and method in ("POST", "PATCH") and replayable:
            request.headers["Idempotency-Key"] = str(uuid.uuid4())
            idempotent = True
        options = self._options
        if self._endpoints is not None:
            return await self._handle_grouped(request, replayable, idempotent)
        if options is None:
            context = _RequestContext(self, request, replayable, idempotent)
            try:
                return await self._policy.execute(context.attempt_plain)  # type: ignore[union-attr]
            except RetryableStatusError as exc:
                return exc.response
        host = self._host(request.url)
        total = options.total_timeout
        if host.hedge is not None or _telemetry.hooks is not None:
            return await self._handle_hedged(request, host, options, replayable, idempotent)

        # The attempt's budget: the attempt timeout, cut to the total and to what the
        # caller has left.
        budget = options.attempt_timeout
        if total is not None and (budget is None or total < budget):
            budget = total
        left = remaining()
        if left is not None and (budget is None or left < budget):
            budget = left
        scope: DeadlineScope | _NoScope = (
            DeadlineScope(budget, _INF) if budget is not None else _NO_SCOPE
        )
        breaker = host.breaker
        bulkhead = host.bulkhead
        throttled = None
        try:
            if breaker is not None:
                await breaker.__aenter__()
            try:
                with scope:
                    if bulkhead is not None:
                        await bulkhead.__aenter__()
                    try:
                        if budget is not None:
                            if self._deadline_header is not None:
                                self._announce(request, budget)
                            _clamp_timeouts(request, budget)
                        response = await self._inner.handle_async_request(request)
                        if response.status_code in options.failure_statuses:
                            if "retry-after" not in response.headers:
                                raise await _RequestContext(
                                    self, request, replayable, idempotent
                                )._failure(
                                    response, options.retry_statuses, options.max_retry_after
                                )
                            throttled = response  # flow control: past the breaker, see `_send`
                        else:
                            limit = self._buffer_limit
                            if limit and not hasattr(response, "_content"):  # not read yet
                                length = response.headers.get("content-length")
                                if length is not None and length.isdigit() and int(length) <= limit:
                                    await _read_or_close(response)
                    finally:
                        if bulkhead is not None:
                            await bulkhead.__aexit__(None, None, None)
            except BaseException as exc:
                if breaker is not None:
                    await breaker.__aexit__(type(exc), exc, exc.__traceback__)
                raise
            if breaker is not None:
                await breaker.__aexit__(None, None, None)
            if throttled is not None:
                raise await _RequestContext(self, request, replayable, idempotent)._failure(
                    throttled, options.retry_statuses, options.max_retry_after
                )
        except Exception as exc:
            _RequestContext(self, request, replayable, idempotent)._classify(exc)
            error = exc
        else:
            budget_ = host.budget
            if budget_ is not None:
                budget_.deposit()
            return response
        # Outside the except block, so that later errors do not chain onto this one.
        context = _RequestContext(self, request, replayable, idempotent)
        try:
            if total is None:
                return await host.retry._retry_loop(
                    context.attempt, (host,), {}, _first=(error, None)
                )
            # The total timeout began with the first attempt: date it from that attempt's
            # scope (never later than the total), as if it had been entered before it.
            assert isinstance(scope, DeadlineScope)
            assert budget is not None
            advisory = AdvisoryDeadline(total)
            with advisory:
                advisory._deadline = scope.deadline - budget + total
                return await host.retry._retry_loop(
                    context.attempt, (host,), {}, _first=(error, None)
                )
        except RetryableStatusError as exc:
            # Retries ran out (or were not allowed): the caller gets the response itself.
            return exc.response

    async def _handle_hedged(
        self, request: Any, host: _Host, options: HttpOptions, replayable: bool, idempotent: bool
    ) -> Any:
        """The general path, for hosts whose attempts may be hedged, and under telemetry."""
        context = _RequestContext(self, request, replayable, idempotent)
        try:
            if options.total_timeout is None:
                return await host.retry.call(context.attempt, host)
            # The total timeout needs no timer of its own: each attempt's scope is cut
            # to what is left of it, and Retry never waits past it.
            with AdvisoryDeadline(options.total_timeout):
                return await host.retry.call(context.attempt, host)
        except RetryableStatusError as exc:
            return exc.response

    async def _handle_grouped(self, request: Any, replayable: bool, idempotent: bool) -> Any:
        """Each attempt to an endpoint of the group (retries and hedges to others)."""
        assert self._endpoints is not None
        grouped = _Grouped(self, request, replayable, idempotent, self._endpoints.route())
        options = self._options
        try:
            if options is None:
                return await self._policy.execute(grouped.attempt_plain)  # type: ignore[union-attr]
            host = self._host(request.url)  # the logical service: its retry, budget, hedge
            if options.total_timeout is None:
                return await host.retry.call(grouped.attempt, host)
            with AdvisoryDeadline(options.total_timeout):
                return await host.retry.call(grouped.attempt, host)
        except RetryableStatusError as exc:
            return exc.response

    # -- internals --------------------------------------------------------------------------

    def _announce(self, request: Any, budget: float) -> None:
        """Put the attempt's budget in the deadline header (replacing any already there)."""
        if budget != self._header_seconds:  # usually the attempt timeout: formatted once
            value = f"{budget:.3f}"
            self._header_value = value
            self._header_entry = (self._header_raw, self._header_key, value.encode("ascii"))
            self._header_seconds = budget
        headers = request.headers
        if self._raw_headers:
            entries = headers._list
            # httpx's own list of (name, lowercased name, value): appending skips the
            # public __setitem__'s encode-and-rescan when the name is not there yet.
            key = self._header_key
            for entry in entries:
                if entry[1] == key:
                    break
            else:
                entries.append(self._header_entry)
                return
        headers[self._deadline_header] = self._header_value

    def _endpoint_usable(self, endpoint: Endpoint) -> bool:
        """False while the endpoint's own breaker is open: the route picks another."""
        url = self._endpoint_urls.get(endpoint.address)
        if url is None:
            return True
        host = self._hosts.get((url.scheme, url.raw_host, url.port))
        breaker = host.breaker if host is not None else None
        return breaker is None or breaker.state is not CircuitState.OPEN

    def _host(self, url: Any) -> _Host:
        # Keyed by the raw parts: decoding the host (IDNA) is only needed for a new host.
        lookup = (url.scheme, url.raw_host, url.port)
        hosts = self._hosts
        host = hosts.get(lookup)
        if host is None:
            key = f"{url.scheme}://{url.host}:{url.port or _default_port(url.scheme)}"
            host = hosts[lookup] = _Host(key, self._options, is_retryable)  # type: ignore[arg-type]
            if len(hosts) > self._max_hosts:
                hosts.popitem(last=False)
        else:
            hosts.move_to_end(lookup)
        return host


class _RequestContext:
    """One logical request: what every attempt needs to know."""

    __slots__ = ("idempotent", "replayable", "request", "sent", "transport")

    def __init__(
        self, transport: ResilientTransport, request: Any, replayable: bool, idempotent: bool
    ) -> None:
        self.transport = transport
        self.request = request
        self.replayable = replayable
        self.idempotent = idempotent
        self.sent = 0  # counted only under telemetry

    async def attempt(self, host: _Host) -> Any:
        """One attempt, hedged for idempotent requests when the policy says so."""
        if host.hedge is None or not (self.idempotent and self.replayable):
            return await self._guarded(host)
        return await _hedged(host.hedge, self._guarded, host)

    async def _guarded(self, host: _Host, responses: list[Any] | None = None) -> Any:
        """One attempt through the per-host layers: breaker, then (timed) bulkhead and send."""
        try:
            if host.breaker is not None:
                response = await host.breaker.call(self._timed, host)
            else:
                response = await self._timed(host)
            policy = self.transport._options
            assert policy is not None
            if response.status_code in policy.failure_statuses:  # throttled: see `_send`
                raise await self._failure(response, policy.retry_statuses, policy.max_retry_after)
        except Exception as exc:
            self._classify(exc)
            raise
        if responses is not None:
            responses.append(response)
        return response

    async def attempt_plain(self) -> Any:
        """One attempt for a user-supplied policy."""
        try:
            return await self._send(None, remaining())
        except Exception as exc:
            self._classify(exc)
            raise

    async def _timed(self, host: _Host) -> Any:
        """The attempt's own deadline: the attempt timeout, cut to what the caller has left.

        It covers the bulkhead's queue too, so no blocking step outlives the total timeout.
        """
        policy = self.transport._options
        assert policy is not None
        budget = remaining()
        if policy.attempt_timeout is not None and (
            budget is None or policy.attempt_timeout < budget
        ):
            budget = policy.attempt_timeout
        bulkhead = host.bulkhead
        if budget is None:
            if bulkhead is not None:
                return await bulkhead.call(self._send, policy, None)
            return await self._send(policy, None)
        with DeadlineScope(budget, _INF):
            if bulkhead is not None:
                return await bulkhead.call(self._send, policy, budget)
            return await self._send(policy, budget)

    async def _send(self, policy: HttpOptions | None, left: float | None) -> Any:
        """Send once. ``left`` is this attempt's budget (announced and enforced)."""
        transport = self.transport
        request = self.request
        hooks = _telemetry.hooks
        if hooks is not None:
            self.sent += 1
            hooks.http_attempt(request, self.sent)
        if left is not None:
            if transport._deadline_header is not None:
                transport._announce(request, left)
            _clamp_timeouts(request, left)
        response = await transport._inner.handle_async_request(request)
        status = response.status_code
        if policy is None:
            if status not in RETRY_STATUSES:
                return await self._buffered(response)
            raise await self._failure(response, RETRY_STATUSES, _INF)
        if status not in policy.failure_statuses:
            return await self._buffered(response)
        if "retry-after" in response.headers:
            # Flow control, not failure: the server says when to come back. Returned past
            # the breaker (which must not count it), raised by `_guarded` for the retry.
            return response
        raise await self._failure(response, policy.retry_statuses, policy.max_retry_after)

    async def _failure(
        self, response: Any, retry_statuses: frozenset[int], max_retry_after: float
    ) -> RetryableStatusError:
        """The error that carries a failed response through the layers."""
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        if retry_after is not None and retry_after > max_retry_after:
            retry_after = max_retry_after
        failure = RetryableStatusError(response, retry_after, self.request.url)
        retryable = self.replayable and self.idempotent and response.status_code in retry_statuses
        setattr(failure, _MARK, retryable)
        if retryable:
            # Read the (small) error body and release the connection now, before any wait:
            # the response stays readable should it be the last one, returned to the caller.
            try:
                await response.aread()
            finally:
                with anyio.CancelScope(shield=True):
                    await response.aclose()
        return failure

    async def _buffered(self, response: Any) -> Any:
        """Read a small body now, inside the attempt, where a failure can still be retried."""
        limit = self.transport._buffer_limit
        length = response.headers.get("content-length")
        if limit and length is not None and length.isdigit() and int(length) <= limit:
            await _read_or_close(response)
        return response

    def _classify(self, exc: Exception) -> None:
        """Mark ``exc`` retryable for this request, or not (once: inner marks win)."""
        if hasattr(exc, _MARK):
            return
        transport = self.transport
        if not self.replayable:
            retryable = False
        elif isinstance(exc, transport._never_sent):
            retryable = True
        elif isinstance(exc, transport._maybe_sent):
            retryable = self.idempotent
        else:
            retryable = False
        try:
            setattr(exc, _MARK, retryable)
        except AttributeError:  # pragma: no cover - exceptions with __slots__
            pass


class _Grouped:
    """One logical request over an `EndpointGroup`: each attempt rewrites a copy of the
    request to the endpoint its route picks (the path, query and ``Host`` header stay)."""

    __slots__ = ("idempotent", "replayable", "request", "route", "transport")

    def __init__(
        self,
        transport: ResilientTransport,
        request: Any,
        replayable: bool,
        idempotent: bool,
        route: Route,
    ) -> None:
        self.transport = transport
        self.request = request
        self.replayable = replayable
        self.idempotent = idempotent
        self.route = route

    async def attempt(self, service: _Host) -> Any:
        """One attempt (the logical service's hedge sends its extra ones elsewhere)."""
        if service.hedge is None or not (self.idempotent and self.replayable):
            return await self._once(None)
        return await _hedged(service.hedge, self._once)

    async def attempt_plain(self) -> Any:
        return await self._once(None, plain=True)

    async def _once(self, responses: list[Any] | None, plain: bool = False) -> Any:
        transport = self.transport
        state = self.route._begin(usable=transport._endpoint_usable)
        request = self._rewritten(state.endpoint)
        context = _RequestContext(transport, request, self.replayable, self.idempotent)
        started = anyio.current_time()
        failed: bool | None = None
        try:
            if plain:
                response = await context.attempt_plain()
            else:
                response = await context._guarded(transport._host(request.url), responses)
            failed = False
            return response
        except Exception as exc:
            failed = _endpoint_failed(exc)
            raise
        finally:
            self.route._end(state, failed, anyio.current_time() - started)

    def _rewritten(self, endpoint: Endpoint) -> Any:
        original = self.request
        urls = self.transport._endpoint_urls
        target = urls.get(endpoint.address)
        if target is None:  # an address added by the group's update(): checked here
            target = urls[endpoint.address] = _endpoint_url(endpoint, self.transport._x)
        # Not copy.copy: httpx's pickling hooks would detach the body stream.
        request = object.__new__(type(original))
        request.__dict__.update(original.__dict__)
        request.url = original.url.copy_with(
            scheme=target.scheme, host=target.host, port=target.port
        )
        request.headers = original.headers.copy()  # each attempt announces its own budget
        extensions = dict(original.extensions)
        if target.scheme == "https" and "sni_hostname" not in extensions:
            extensions["sni_hostname"] = original.url.host  # the certificate's name
        request.extensions = extensions
        return request


async def _hedged(hedge: Hedge, attempt: Callable[..., Awaitable[Any]], *args: Any) -> Any:
    """``hedge.call(attempt, *args, responses)``: each attempt appends its response to
    ``responses``; those of attempts that lose the race are closed, not leaked."""
    responses: list[Any] = []
    winner = None
    try:
        winner = await hedge.call(attempt, *args, responses)
    finally:
        for response in responses:
            if response is not winner:  # a loser, or every one if the call failed
                with anyio.CancelScope(shield=True):
                    await response.aclose()
    return winner


def _endpoint_failed(exc: Exception) -> bool:
    """Whether an attempt's error counts against its endpoint (outlier detection)."""
    if isinstance(exc, RetryableStatusError):
        return int(exc.response.status_code) >= 500
    if isinstance(exc, CircuitOpenError):
        return True  # the endpoint's own breaker gave up on it
    return not isinstance(exc, RejectedError)  # transport errors and timeouts, not queues


def _endpoint_group(endpoints: Any) -> EndpointGroup | None:
    if endpoints is None:
        return None
    return endpoints if isinstance(endpoints, EndpointGroup) else EndpointGroup(endpoints)


def _endpoint_url(endpoint: Endpoint, x: ModuleType) -> Any:
    try:
        url = x.URL(endpoint.address)
    except Exception as exc:
        raise ValueError(f"`endpoints`: {endpoint.address!r} is not a URL ({exc})") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError(f"`endpoints`: {endpoint.address!r} must be an http:// or https:// URL")
    return url


async def _read_or_close(response: Any) -> None:
    """Read the body; on any failure free the connection (even if cancelled) and re-raise."""
    try:
        await response.aread()
    except BaseException:
        with anyio.CancelScope(shield=True):
            await response.aclose()
        raise


def _clamp_timeouts(request: Any, left: float) -> None:
    timeouts = request.extensions.get("timeout")
    if timeouts is None:
        request.extensions["timeout"] = {"connect": left, "read": left, "write": left, "pool": left}
        return
    for value in timeouts.values():
        if value is None or value > left:
            request.extensions["timeout"] = {
                k: (left if v is None or v > left else v) for k, v in timeouts.items()
            }
            return


def _raw_header_list(x: ModuleType) -> bool:
    """Does this httpx keep headers in ``Headers._list`` as (name, lowered name, value)?"""
    try:
        entries = x.Headers({"A-B": "c"})._list
    except Exception:
        return False
    return isinstance(entries, list) and entries == [(b"A-B", b"a-b", b"c")]


def _default_port(scheme: str) -> int:
    return 443 if scheme in ("https", "wss") else 80


def _module_of(transport: Any) -> ModuleType | None:
    if transport is None:
        return None
    import sys

    root = type(transport).__module__.split(".", 1)[0]
    module = sys.modules.get(root)
    if module is not None and hasattr(module, "AsyncBaseTransport"):
        return module
    return None


def __getattr__(name: str) -> Any:
    if name == "HttpPolicy":
        warnings.warn(
            "asyncres.httpx.HttpPolicy is deprecated (it is configuration, not a Policy): "
            "use asyncres.httpx.HttpOptions; the alias goes in 0.3",
            DeprecationWarning,
            stacklevel=2,
        )
        return HttpOptions
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
