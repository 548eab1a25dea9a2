"""ResilientTransport over httpx.MockTransport: every branch, on virtual time, both backends."""

from __future__ import annotations

import dataclasses
import email.utils
import math
import time
from collections.abc import Callable
from typing import Any

import anyio
import httpx
import pytest

import asyncres
from asyncres import backoff
from asyncres.httpx import (
    HttpOptions,
    ResilientTransport,
    RetryableStatusError,
    is_retryable,
    parse_retry_after,
    standard_policy,
)
from asyncres.testing import capture_events

pytestmark = pytest.mark.anyio

Handler = Callable[[httpx.Request], Any]


class Script:
    """A MockTransport handler that plays a list of outcomes, then repeats the last."""

    def __init__(self, *outcomes: int | Exception | tuple[int, dict[str, str]]) -> None:
        self.outcomes = list(outcomes)
        self.requests: list[httpx.Request] = []
        self.times: list[float] = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        self.times.append(anyio.current_time())
        outcome = self.outcomes[min(len(self.requests), len(self.outcomes)) - 1]
        if isinstance(outcome, Exception):
            raise outcome
        status, headers = outcome if isinstance(outcome, tuple) else (outcome, {})
        return httpx.Response(status, headers=headers, content=b"body")


def client_for(script: Script, **options: Any) -> httpx.AsyncClient:
    policy = options.pop("policy", None) or standard_policy(
        backoff=backoff.Constant(0.5), breaker=False, bulkhead=False
    )
    transport = ResilientTransport(httpx.MockTransport(script), policy=policy, **options)
    return httpx.AsyncClient(transport=transport, base_url="http://svc.test")


def fast_policy(**overrides: Any) -> HttpOptions:
    options: dict[str, Any] = {
        "backoff": backoff.Constant(0.5),
        "breaker": False,
        "bulkhead": False,
    }
    options.update(overrides)
    return standard_policy(**options)


async def test_success_passes_through_untouched() -> None:
    """A 200 is returned as is, after one request."""
    script = Script(200)
    async with client_for(script) as client:
        response = await client.get("/a")
    assert response.status_code == 200
    assert response.text == "body"
    assert len(script.requests) == 1


@pytest.mark.parametrize("status", [408, 429, 502, 503, 504])
async def test_idempotent_requests_retry_retryable_statuses(status: int) -> None:
    """GET is retried on 408/429/502/503/504 until it succeeds."""
    script = Script(status, status, 200)
    async with client_for(script) as client:
        response = await client.get("/a")
    assert response.status_code == 200
    assert len(script.requests) == 3


@pytest.mark.parametrize("status", [400, 401, 404, 409, 500, 501])
async def test_other_statuses_are_not_retried(status: int) -> None:
    """4xx (but 408/429) and 500/501 come back at once."""
    script = Script(status, 200)
    async with client_for(script) as client:
        response = await client.get("/a")
    assert response.status_code == status
    assert len(script.requests) == 1


async def test_exhausted_retries_return_the_last_response() -> None:
    """When retries run out on a status, the caller gets the last response, readable."""
    script = Script(503)
    async with client_for(script) as client:
        response = await client.get("/a")
    assert response.status_code == 503
    assert response.text == "body"
    assert len(script.requests) == 3


@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"])
async def test_read_errors_are_retried_for_idempotent_methods(method: str) -> None:
    """A read error on an idempotent method is retried."""
    script = Script(httpx.ReadError("reset"), 200)
    async with client_for(script) as client:
        response = await client.request(method, "/a")
    assert response.status_code == 200
    assert len(script.requests) == 2


@pytest.mark.parametrize("method", ["POST", "PATCH"])
async def test_non_idempotent_methods_are_not_retried_after_sending(method: str) -> None:
    """POST/PATCH: read errors and 503 are not retried (the server may have acted)."""
    script = Script(httpx.ReadError("reset"), 200)
    async with client_for(script) as client:
        with pytest.raises(httpx.ReadError):
            await client.request(method, "/a", content=b"x")
    assert len(script.requests) == 1

    script = Script(503, 200)
    async with client_for(script) as client:
        response = await client.request(method, "/a", content=b"x")
    assert response.status_code == 503
    assert len(script.requests) == 1


@pytest.mark.parametrize(
    "error",
    [httpx.ConnectError("refused"), httpx.ConnectTimeout("slow"), httpx.PoolTimeout("full")],
)
async def test_never_sent_errors_are_retried_for_any_method(error: Exception) -> None:
    """Connect errors and connect/pool timeouts are safe to retry even for POST."""
    script = Script(error, 201)
    async with client_for(script) as client:
        response = await client.post("/a", content=b"order")
    assert response.status_code == 201
    assert len(script.requests) == 2
    assert script.requests[1].content == b"order"  # the body is replayed


async def test_idempotency_key_header_makes_post_retryable() -> None:
    """A POST carrying Idempotency-Key is retried like an idempotent request."""
    script = Script(503, 200)
    async with client_for(script) as client:
        response = await client.post("/a", content=b"x", headers={"Idempotency-Key": "k1"})
    assert response.status_code == 200
    assert len(script.requests) == 2


async def test_generated_idempotency_keys_are_stable_across_retries() -> None:
    """idempotency_keys=True adds one key per logical request, the same on each retry."""
    script = Script(httpx.ReadError("reset"), 503, 200)
    async with client_for(script, idempotency_keys=True) as client:
        response = await client.post("/a", json={"item": 1})
        other = await client.post("/b", json={"item": 2})
    assert response.status_code == 200
    keys = [r.headers["idempotency-key"] for r in script.requests]
    assert len(set(keys[:3])) == 1
    assert keys[3] != keys[0]
    assert other.status_code == 200


async def test_streaming_uploads_are_not_retried() -> None:
    """A body that cannot be replayed is sent once, whatever happens."""

    async def upload() -> Any:
        yield b"chunk"

    script = Script(httpx.ConnectError("refused"), 200)
    async with client_for(script) as client:
        with pytest.raises(httpx.ConnectError):
            await client.put("/a", content=upload())
    assert len(script.requests) == 1


async def test_retry_after_seconds_is_honoured() -> None:
    """Retry-After: 3 waits three seconds (more than the backoff) before the retry."""
    script = Script((503, {"Retry-After": "3"}), 200)
    async with client_for(script) as client:
        response = await client.get("/a")
    assert response.status_code == 200
    assert script.times[1] - script.times[0] == pytest.approx(3.0)


async def test_retry_after_http_date_is_honoured() -> None:
    """Retry-After as an HTTP date is turned into seconds from now."""
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    in_ten_seconds = email.utils.formatdate(time.time() + 10, usegmt=True)
    assert parse_retry_after(in_ten_seconds) == pytest.approx(10.0, abs=1.5)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("5", 5.0), (" 2.5 ", 2.5), ("-3", 0.0), ("soon", None), ("", None), (None, None)],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    """Retry-After parses seconds; nonsense gives None; the past gives 0."""
    assert parse_retry_after(value) == expected


async def test_retry_after_beyond_the_deadline_means_no_retry() -> None:
    """A Retry-After longer than the time left returns the response at once."""
    script = Script((503, {"Retry-After": "60"}), 200)
    async with client_for(script, policy=fast_policy(total_timeout=10.0)) as client:
        start = anyio.current_time()
        response = await client.get("/a")
    assert response.status_code == 503
    assert len(script.requests) == 1
    assert anyio.current_time() == pytest.approx(start)


async def test_retry_after_is_capped_by_max_retry_after() -> None:
    """An absurd Retry-After is capped by max_retry_after."""
    script = Script((503, {"Retry-After": "100000"}), 200)
    policy = fast_policy(total_timeout=None, max_retry_after=7.0)
    async with client_for(script, policy=policy) as client:
        response = await client.get("/a")
    assert response.status_code == 200
    assert script.times[1] - script.times[0] == pytest.approx(7.0)


async def test_discarded_responses_are_closed_before_retrying() -> None:
    """Each response replaced by a retry is closed (its connection goes back)."""
    closed: list[int] = []

    class Tracked(httpx.AsyncByteStream):
        def __init__(self, number: int) -> None:
            self.number = number

        async def __aiter__(self) -> Any:
            yield b"x"

        async def aclose(self) -> None:
            closed.append(self.number)

    count = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal count
        count += 1
        return httpx.Response(503 if count < 3 else 200, stream=Tracked(count))

    transport = ResilientTransport(httpx.MockTransport(handler), policy=fast_policy())
    async with httpx.AsyncClient(transport=transport) as client:
        response = await client.get("http://svc.test/")
    assert response.status_code == 200
    assert closed[:2] == [1, 2]


async def test_deadline_header_and_clamped_timeouts() -> None:
    """Each attempt carries the remaining budget and httpx timeouts no longer than it."""
    script = Script(200)
    async with client_for(script, policy=fast_policy(total_timeout=30.0)) as client:
        with asyncres.timeout(4.0):
            await client.get("/a", timeout=httpx.Timeout(10.0, connect=2.0))
    request = script.requests[0]
    assert float(request.headers["request-timeout"]) == pytest.approx(4.0, abs=0.01)
    timeouts = request.extensions["timeout"]
    assert timeouts["connect"] == 2.0
    assert timeouts["read"] == pytest.approx(4.0, abs=0.01)
    assert timeouts["pool"] == pytest.approx(4.0, abs=0.01)


async def test_attempt_timeout_bounds_the_header_and_the_attempt() -> None:
    """The per-attempt timeout is the budget an attempt announces, and it is retried."""
    calls = 0

    async def slow_then_fast(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            await anyio.sleep(100)
        return httpx.Response(200, headers={"seen": request.headers["request-timeout"]})

    policy = fast_policy(total_timeout=20.0, attempt_timeout=2.0)
    transport = ResilientTransport(httpx.MockTransport(slow_then_fast), policy=policy)
    async with httpx.AsyncClient(transport=transport) as client:
        start = anyio.current_time()
        response = await client.get("http://svc.test/")
    assert response.status_code == 200
    assert float(response.headers["seen"]) == pytest.approx(2.0, abs=0.01)
    assert anyio.current_time() - start == pytest.approx(2.5)  # 2 s timeout + 0.5 s backoff


async def test_custom_deadline_header_name_or_none() -> None:
    """The header name is configurable, and None sends no header."""
    script = Script(200)
    async with client_for(script, deadline_header="X-Budget") as client:
        await client.get("/a")
    assert "x-budget" in script.requests[0].headers
    assert "request-timeout" not in script.requests[0].headers
    script = Script(200)
    async with client_for(script, deadline_header=None) as client:
        await client.get("/a")
    assert "request-timeout" not in script.requests[0].headers


async def test_deadline_header_replaces_the_callers_own_on_every_attempt() -> None:
    """A deadline header the caller set is replaced, never doubled, also on retries."""
    script = Script(503, 200)
    async with client_for(script, policy=fast_policy(attempt_timeout=3.0)) as client:
        response = await client.get("/a", headers={"Request-Timeout": "99"})
    assert response.status_code == 200
    for request in script.requests:
        assert request.headers.get_list("request-timeout") == ["3.000"]
    script = Script(200)
    policy = fast_policy(attempt_timeout=3.0)
    async with client_for(script, policy=policy, deadline_header="X-Budget") as client:
        await client.get("/a", headers={"x-budget": "99"})
        await client.get("/b")
    first, second = script.requests
    assert first.headers.get_list("x-budget") == ["3.000"]
    assert second.headers.raw[-1] == (b"X-Budget", b"3.000")  # the configured spelling


async def test_total_timeout_bounds_everything() -> None:
    """The total timeout cuts a hanging request and raises TimeoutExceededError."""

    async def hang(request: httpx.Request) -> httpx.Response:
        await anyio.sleep(1000)
        raise AssertionError("unreachable")

    policy = fast_policy(total_timeout=3.0, attempt_timeout=None)
    transport = ResilientTransport(httpx.MockTransport(hang), policy=policy)
    async with httpx.AsyncClient(transport=transport) as client:
        start = anyio.current_time()
        with pytest.raises(asyncres.TimeoutExceededError):
            await client.get("http://svc.test/")
    assert anyio.current_time() - start == pytest.approx(3.0)


async def test_cancellation_is_not_retried() -> None:
    """A cancelled request propagates the cancellation: one attempt, no retry events."""
    script_calls = 0

    async def hang(request: httpx.Request) -> httpx.Response:
        nonlocal script_calls
        script_calls += 1
        await anyio.sleep(1000)
        raise AssertionError("unreachable")

    transport = ResilientTransport(httpx.MockTransport(hang), policy=fast_policy())
    async with httpx.AsyncClient(transport=transport) as client:
        with capture_events() as events:
            async with anyio.create_task_group() as tg:
                tg.start_soon(client.get, "http://svc.test/")
                await anyio.sleep(1)
                tg.cancel_scope.cancel()
    assert script_calls == 1
    assert events == []


async def test_events_name_the_host() -> None:
    """Retry events carry the host key, so logs say which dependency struggles."""
    script = Script(503, 200)
    async with client_for(script) as client:
        with capture_events() as events:
            await client.get("/a")
    scheduled = [e for e in events if isinstance(e, asyncres.events.RetryScheduled)]
    assert scheduled[0].name == "http http://svc.test:80"
    assert isinstance(scheduled[0].error, RetryableStatusError)


async def test_per_host_state_is_bounded() -> None:
    """Per-host state is created on demand and the least recently used host is dropped."""
    script = Script(200)
    transport = ResilientTransport(httpx.MockTransport(script), policy=fast_policy(), max_hosts=2)
    async with httpx.AsyncClient(transport=transport) as client:
        for host in ("a", "b", "a", "c"):
            await client.get(f"http://{host}.test/")
    assert [host.retry.name for host in transport._hosts.values()] == [
        "http http://a.test:80",
        "http http://c.test:80",
    ]


async def test_user_supplied_pipeline_sees_retryable_statuses() -> None:
    """With your own Pipeline, statuses arrive as RetryableStatusError for your Retry."""
    script = Script(503, 503, 200)
    pipeline = asyncres.Pipeline(
        asyncres.Timeout(10.0),
        asyncres.Retry(on=is_retryable, max_attempts=5, backoff=backoff.Constant(0.1)),
    )
    transport = ResilientTransport(httpx.MockTransport(script), policy=pipeline)
    async with httpx.AsyncClient(transport=transport) as client:
        response = await client.get("http://svc.test/")
    assert response.status_code == 200
    assert len(script.requests) == 3


async def test_aclose_closes_the_inner_transport() -> None:
    """aclose() (and leaving the client) closes the wrapped transport."""
    closed: list[bool] = []

    class Inner(httpx.MockTransport):
        async def aclose(self) -> None:
            closed.append(True)

    transport = ResilientTransport(Inner(Script(200)), policy=fast_policy())
    async with httpx.AsyncClient(transport=transport) as client:
        await client.get("http://svc.test/")
    assert closed == [True]


@pytest.mark.parametrize(
    ("make", "parameter"),
    [
        (lambda: standard_policy(total_timeout=-1), "total_timeout"),
        (lambda: standard_policy(attempt_timeout=math.nan), "attempt_timeout"),
        (lambda: standard_policy(total_timeout=1.0, attempt_timeout=2.0), "attempt_timeout"),
        (lambda: standard_policy(max_attempts=0), "max_attempts"),
        (lambda: standard_policy(max_retry_after=-1), "max_retry_after"),
        (lambda: standard_policy(retry_statuses=[99]), "retry_statuses"),
        (lambda: standard_policy(hedge_delay=-0.1), "hedge_delay"),
        (lambda: ResilientTransport(policy=object()), "policy"),  # type: ignore[arg-type]
        (lambda: ResilientTransport(max_hosts=0), "max_hosts"),
        (lambda: ResilientTransport(buffer_limit=-1), "buffer_limit"),
        (lambda: ResilientTransport(deadline_header=" "), "deadline_header"),
        (lambda: ResilientTransport(deadline_header="Frist-\u00e4"), "deadline_header"),
    ],
)
def test_bad_configuration_names_the_parameter(make: Callable[[], Any], parameter: str) -> None:
    """Invalid settings raise ValueError naming the parameter."""
    with pytest.raises(ValueError, match=f"`{parameter}`"):
        make()


async def test_hedging_answers_from_the_faster_attempt() -> None:
    """hedge_delay: a slow idempotent attempt is hedged; the first answer wins."""
    calls = 0

    async def first_slow(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            await anyio.sleep(10)
        return httpx.Response(200, content=f"attempt {calls}".encode())

    policy = fast_policy(hedge_delay=0.5)
    transport = ResilientTransport(httpx.MockTransport(first_slow), policy=policy)
    async with httpx.AsyncClient(transport=transport) as client:
        start = anyio.current_time()
        with capture_events() as events:
            response = await client.get("http://svc.test/")
    assert response.text == "attempt 2"
    assert anyio.current_time() - start == pytest.approx(0.5)
    assert any(isinstance(e, asyncres.events.HedgeLaunched) for e in events)


async def test_hedging_closes_the_losing_responses() -> None:
    """Parallel hedges that both answer: the loser's response is closed, the winner is not."""
    closed: list[int] = []

    class Tracked(httpx.AsyncByteStream):
        def __init__(self, number: int) -> None:
            self.number = number

        async def __aiter__(self) -> Any:
            yield b"x" * 10

        async def aclose(self) -> None:
            closed.append(self.number)

    count = 0
    answered: list[int] = []

    async def both_answer(request: httpx.Request) -> httpx.Response:
        nonlocal count
        count += 1
        number = count
        await anyio.sleep(1)
        answered.append(number)
        return httpx.Response(200, stream=Tracked(number))

    policy = fast_policy(hedge_delay=0.0)
    transport = ResilientTransport(httpx.MockTransport(both_answer), policy=policy, buffer_limit=0)
    async with httpx.AsyncClient(transport=transport) as client:
        async with client.stream("GET", "http://svc.test/") as response:
            closed_before_read = list(closed)
            assert await response.aread() == b"x" * 10
    assert count == 2
    # Every response that was produced is closed exactly once: a loser that answered before
    # it could be cancelled by the transport, the winner by the caller after reading it.
    assert len(closed_before_read) == len(answered) - 1
    assert sorted(closed) == sorted(answered)


async def test_post_is_never_hedged() -> None:
    """Hedging applies to idempotent requests only."""
    script = Script(200)
    async with client_for(script, policy=fast_policy(hedge_delay=0.0)) as client:
        await client.post("/a", content=b"x")
    assert len(script.requests) == 1


async def test_works_with_the_httpx2_fork() -> None:
    """The httpx2 fork (same API, other module) gets the same behaviour and its own errors."""
    httpx2: Any = pytest.importorskip("httpx2")
    calls = 0

    async def handler(request: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise httpx2.ConnectError("refused")
        if calls == 2:
            return httpx2.Response(503, headers={"Retry-After": "1"})
        return httpx2.Response(200, content=b"fork")

    transport = ResilientTransport(
        httpx2.MockTransport(handler), policy=fast_policy(max_attempts=3)
    )
    async with httpx2.AsyncClient(transport=transport) as client:
        response = await client.get("http://svc.test/")
    assert response.text == "fork"
    assert calls == 3


async def test_throttled_responses_do_not_trip_the_breaker() -> None:
    """A 503 with Retry-After is flow control: waited out by the retry, not a failure."""
    breakers: list[asyncres.CircuitBreaker] = []

    def breaker(host: str) -> asyncres.CircuitBreaker:
        breakers.append(asyncres.CircuitBreaker(failure_threshold=2, name=host))
        return breakers[-1]

    script = Script((503, {"Retry-After": "0"}))
    policy = fast_policy(breaker=breaker, max_attempts=3, backoff=backoff.Constant(0))
    async with client_for(script, policy=policy) as client:
        for _ in range(5):
            response = await client.get("/a")
            assert response.status_code == 503
    assert len(script.requests) == 15  # retried each time, never rejected
    stats = breakers[0].statistics()
    assert (stats.state, stats.failures) == (asyncres.CircuitState.CLOSED, 0)

    script = Script(503)  # the same status without Retry-After is a failure
    async with client_for(script, policy=fast_policy(breaker=breaker, max_attempts=1)) as client:
        for _ in range(2):
            await client.get("/a")
        with pytest.raises(asyncres.CircuitOpenError):
            await client.get("/a")


async def test_default_breaker_opens_after_twenty_consecutive_failures() -> None:
    """A hard outage trips the standard breaker within twenty failures, whatever came before."""
    policy = standard_policy(max_attempts=1, backoff=backoff.Constant(0))
    outcomes = [*([200] * 200), *([httpx.ConnectError("refused")] * 50)]
    script = Script(*outcomes)
    async with client_for(script, policy=policy) as client:
        for _ in range(200):
            await client.get("/a")
        for _ in range(20):
            with pytest.raises(httpx.ConnectError):
                await client.get("/a")
        with pytest.raises(asyncres.CircuitOpenError):
            await client.get("/a")
    assert len(script.requests) == 220


async def test_default_breaker_uses_a_slow_dependency_while_its_first_probe_is_out() -> None:
    """After an outage the dependency comes back slow (1.5 s a request, 8 at a time): the
    half-open breaker lets up to 10 probes go at once, so the dependency's capacity is used
    while the first probe is out — not one request per probe time."""
    down = True
    running = peak = 0
    sent: list[float] = []

    async def dependency(request: httpx.Request) -> httpx.Response:
        nonlocal running, peak
        if down:
            raise httpx.ConnectError("refused")
        sent.append(anyio.current_time())
        running += 1
        peak = max(peak, running)
        await anyio.sleep(1.5)
        running -= 1
        return httpx.Response(200)

    policy = standard_policy(max_attempts=1)
    transport = ResilientTransport(httpx.MockTransport(dependency), policy=policy)
    async with httpx.AsyncClient(transport=transport, base_url="http://svc.test") as client:
        for _ in range(20):
            with pytest.raises(httpx.ConnectError):
                await client.get("/a")
        with pytest.raises(asyncres.CircuitOpenError):
            await client.get("/a")
        down = False
        await anyio.sleep(2.0)  # past the recovery time: the next calls are probes
        statuses: list[int | str] = []

        async def call() -> None:
            try:
                statuses.append((await client.get("/a")).status_code)
            except asyncres.CircuitOpenError:
                statuses.append("rejected")

        start = anyio.current_time()
        async with anyio.create_task_group() as tg:
            for _ in range(40):  # 40 requests/s for one second
                tg.start_soon(call)
                await anyio.sleep(0.025)
    # The first ten calls all go out at once; beyond them, a probe pending for a whole
    # recovery delay (0.25 s after the first opening) lets one more through now and then.
    assert [round(t - start, 3) for t in sent[:10]] == [round(i * 0.025, 3) for i in range(10)]
    assert 10 <= peak <= 14, peak
    assert statuses.count(200) == len(sent)
    assert statuses.count("rejected") == 40 - len(sent)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("policy", None),
        ("deadline_header", "X-Other"),
        ("idempotency_keys", True),
        ("buffer_limit", 0),
        ("max_hosts", 1),
    ],
)
def test_transport_configuration_is_read_only(name: str, value: Any) -> None:
    """Assigning a public setting of ResilientTransport raises AttributeError naming it."""
    policy = fast_policy()
    transport = ResilientTransport(httpx.MockTransport(Script(200)), policy=policy)
    before = getattr(transport, name)
    with pytest.raises(AttributeError, match=name):
        setattr(transport, name, value)
    assert getattr(transport, name) == before
    assert transport.policy is policy
    assert (transport.deadline_header, transport.idempotency_keys) == ("Request-Timeout", False)
    assert (transport.buffer_limit, transport.max_hosts) == (1_048_576, 1024)


@pytest.mark.parametrize("name", [f.name for f in dataclasses.fields(HttpOptions)])
def test_http_options_are_frozen(name: str) -> None:
    """Every field of HttpOptions is read-only: assigning raises FrozenInstanceError."""
    options = standard_policy()
    before = getattr(options, name)
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(options, name, before)
    assert getattr(options, name) is before


def test_http_policy_is_a_deprecated_alias_of_http_options() -> None:
    """The old name HttpPolicy still works, with a DeprecationWarning naming HttpOptions."""
    import asyncres.httpx as module

    with pytest.warns(DeprecationWarning, match="HttpOptions"):
        alias = module.HttpPolicy
    assert alias is HttpOptions
    with pytest.raises(AttributeError):
        module.NoSuchName  # noqa: B018


async def test_attempt_timeout_bounds_the_bulkhead_queue() -> None:
    """Layer order: the attempt timeout wraps the bulkhead, so a queued attempt times out."""
    script = Script(200)
    bulkhead = asyncres.Bulkhead(max_concurrent=1, max_queued=5)
    policy = fast_policy(
        bulkhead=lambda host: bulkhead, attempt_timeout=2.0, total_timeout=3.0, max_attempts=1
    )
    async with client_for(script, policy=policy) as client:
        async with bulkhead:  # every permit is busy: the request must queue
            start = anyio.current_time()
            with pytest.raises(asyncres.TimeoutExceededError):
                await client.get("/queued")
            assert anyio.current_time() - start == pytest.approx(2.0)
    assert script.requests == []
