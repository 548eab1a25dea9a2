"""ChaosTransport: HTTP faults around an inner transport (a MockTransport, virtual clock)."""

from __future__ import annotations

import email.utils
import random
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import pytest

import asyncres
from asyncres.chaos import (
    ChaosTransport,
    ChaosTransportStatistics,
    FaultInjected,
    HttpDisconnectFault,
    HttpLatencyFault,
    HttpStatusFault,
    HttpTruncateFault,
    Schedule,
)
from asyncres.testing import capture_events

pytestmark = pytest.mark.anyio

BODY = b"0123456789" * 10


class Backend:
    """A MockTransport handler that records when each request reached 'the server'."""

    def __init__(self, body: bytes = BODY) -> None:
        self.body = body
        self.seen: list[tuple[float, str]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append((anyio.current_time(), request.url.path))
        return httpx.Response(200, content=self.body)


def client(backend: Backend, *faults: Any, **options: Any) -> httpx.AsyncClient:
    transport = ChaosTransport(httpx.MockTransport(backend), faults=faults, **options)
    return httpx.AsyncClient(transport=transport, base_url="http://test")


async def test_no_fault_passes_requests_through() -> None:
    """Without faults (or disabled) the inner transport answers unchanged."""
    backend = Backend()
    async with client(backend) as c:
        response = await c.get("/a")
    assert (response.status_code, response.content) == (200, BODY)
    async with client(backend, HttpStatusFault(500), enabled=False) as c:
        assert (await c.get("/b")).status_code == 200
    assert [path for _, path in backend.seen] == ["/a", "/b"]


async def test_status_fault_answers_without_reaching_the_server() -> None:
    """A status fault answers at once with its code, Retry-After and body."""
    backend = Backend()
    fault = HttpStatusFault(503, retry_after=2, content="busy")
    async with client(backend, fault) as c:
        response = await c.get("/orders")
    assert response.status_code == 503
    assert response.headers["retry-after"] == "2"
    assert response.headers["content-type"].startswith("text/plain")
    assert response.text == "busy"
    assert backend.seen == []


async def test_retry_after_forms() -> None:
    """Fractions are sent as written; a string (an HTTP date) verbatim."""
    date = email.utils.formatdate(0, usegmt=True)
    assert HttpStatusFault(429, retry_after=0.5).response_headers() == [("Retry-After", "0.5")]
    assert HttpStatusFault(429, retry_after=3.0).response_headers() == [("Retry-After", "3")]
    assert HttpStatusFault(429, retry_after=date).response_headers() == [("Retry-After", date)]
    assert HttpStatusFault(500).response_headers() == []


@pytest.mark.parametrize(
    ("when", "error", "reached"),
    [
        ("connect", httpx.ConnectError, False),
        ("write", httpx.WriteError, False),
        ("read", httpx.ReadError, True),
        ("close", httpx.RemoteProtocolError, True),
    ],
)
async def test_disconnects_raise_what_a_real_transport_raises(
    when: Any, error: type[Exception], reached: bool
) -> None:
    """Each disconnect raises httpx's own error; read/close ones after the server did the work."""
    backend = Backend()
    async with client(backend, HttpDisconnectFault(when=when)) as c:
        with pytest.raises(error, match="injected") as info:
            await c.get("/pay")
    assert info.value.request.url.path == "/pay"  # type: ignore[attr-defined]
    assert isinstance(info.value, httpx.TransportError)
    assert bool(backend.seen) is reached


async def test_header_latency_delays_the_response_after_the_server_answered() -> None:
    """where='headers': the server answers at once, the client gets it `seconds` later."""
    backend = Backend()
    async with client(backend, HttpLatencyFault(1.5)) as c:
        start = anyio.current_time()
        response = await c.get("/slow")
        elapsed = anyio.current_time() - start
    assert response.content == BODY
    assert elapsed == pytest.approx(1.5)
    assert backend.seen[0][0] == pytest.approx(start)


async def test_latency_seconds_and_jitter_change_while_requests_flow() -> None:
    """Setting `seconds` and `jitter` on a live HTTP latency fault reaches the next request."""
    fault = HttpLatencyFault(1.0)
    async with client(Backend(), fault, seed=4) as c:

        async def took() -> float:
            start = anyio.current_time()
            await c.get("/")
            return anyio.current_time() - start

        assert await took() == pytest.approx(1.0)
        fault.seconds = 2.5
        assert await took() == pytest.approx(2.5)
        fault.jitter = 0.5
        spread = [await took() for _ in range(50)]
    assert 2.0 <= min(spread) < 2.2
    assert 2.8 < max(spread) <= 3.0
    with pytest.raises(ValueError, match="`seconds` must be >= 0"):
        fault.seconds = -1.0
    with pytest.raises(ValueError, match="`jitter` must be a number"):
        fault.jitter = float("nan")
    assert (fault.seconds, fault.jitter) == (2.5, 0.5)


async def test_body_latency_stalls_the_body_not_the_headers() -> None:
    """where='body': headers arrive at once, the first body byte `seconds` later."""
    async with client(Backend(), HttpLatencyFault(2.0, where="body")) as c:
        start = anyio.current_time()
        async with c.stream("GET", "/") as response:
            headers_at = anyio.current_time() - start
            body = await response.aread()
        body_at = anyio.current_time() - start
    assert body == BODY
    assert headers_at == pytest.approx(0.0)
    assert body_at == pytest.approx(2.0)


async def test_body_latency_can_stall_in_the_middle_of_the_body() -> None:
    """after=N: the first N body bytes arrive at once, the rest `seconds` later."""
    async with client(Backend(), HttpLatencyFault(3.0, where="body", after=30)) as c:
        start = anyio.current_time()
        async with c.stream("GET", "/") as response:
            pieces = [
                (round(anyio.current_time() - start, 6), chunk)
                async for chunk in response.aiter_raw()
            ]
    assert pieces == [(0.0, BODY[:30]), (3.0, BODY[30:])]
    with pytest.raises(ValueError, match="`after` applies to where='body' only"):
        HttpLatencyFault(1.0, after=10)


async def test_a_stall_and_a_truncation_combine() -> None:
    """A body can stall after 10 bytes and then be cut after 40."""
    faults = (HttpLatencyFault(1.0, where="body", after=10), HttpTruncateFault(after=40))
    async with client(Backend(), *faults) as c:
        start = anyio.current_time()
        async with c.stream("GET", "/") as response:
            got = b""
            with pytest.raises(httpx.RemoteProtocolError, match="received 40 bytes"):
                async for chunk in response.aiter_raw():
                    got += chunk
    assert got == BODY[:40]
    assert anyio.current_time() - start == pytest.approx(1.0)


async def test_body_latency_trips_a_read_timeout() -> None:
    """A stalled body makes httpx's own read timeout fire, as a real slow body would."""
    async with client(Backend(), HttpLatencyFault(5.0, where="body")) as c:
        with pytest.raises(asyncres.TimeoutExceededError):
            with asyncres.timeout(1.0):
                await c.get("/")


async def test_truncation_with_an_error() -> None:
    """error=True: the client gets RemoteProtocolError after `after` bytes."""
    async with client(Backend(), HttpTruncateFault(after=25)) as c:
        with pytest.raises(httpx.RemoteProtocolError, match="received 25 bytes, expected 100"):
            await c.get("/")
        async with c.stream("GET", "/") as response:
            got = b""
            with pytest.raises(httpx.RemoteProtocolError):
                async for chunk in response.aiter_bytes():
                    got += chunk
        assert got == BODY[:25]


async def test_truncation_without_an_error_ends_the_body_short() -> None:
    """error=False: a close-delimited body that simply ends early."""
    async with client(Backend(), HttpTruncateFault(after=10, error=False)) as c:
        response = await c.get("/")
    assert response.content == BODY[:10]
    assert "content-length" not in response.headers
    assert response.headers["connection"] == "close"


async def test_short_bodies_pass_a_truncation_whole() -> None:
    """A body no longer than `after` is not cut."""
    async with client(Backend(b"tiny"), HttpTruncateFault(after=100)) as c:
        assert (await c.get("/")).content == b"tiny"


async def test_match_limits_a_fault_to_some_requests() -> None:
    """Only requests the predicate accepts get the fault."""
    fault = HttpStatusFault(500, match=lambda r: r.url.path.startswith("/orders"))
    async with client(Backend(), fault) as c:
        assert (await c.get("/orders/1")).status_code == 500
        assert (await c.get("/users/1")).status_code == 200
    assert "match=<lambda>" in repr(fault)


async def test_match_changes_while_requests_flow() -> None:
    """A new predicate (or none) reaches the next request; a non-callable is refused."""
    fault = HttpStatusFault(500, match=lambda r: r.url.path == "/a")
    async with client(Backend(), fault) as c:
        assert [(await c.get(p)).status_code for p in ("/a", "/b")] == [500, 200]
        fault.match = lambda r: r.url.path == "/b"
        assert [(await c.get(p)).status_code for p in ("/a", "/b")] == [200, 500]
        fault.match = None
        assert [(await c.get(p)).status_code for p in ("/a", "/b")] == [500, 500]
        with pytest.raises(ValueError, match="`match` must be a predicate"):
            fault.match = "/a"  # type: ignore[assignment]
        assert fault.match is None


async def test_rates_are_drawn_from_the_seeded_generator() -> None:
    """The same seed (or generator) gives the same faulty requests; 0.25 hits a quarter."""

    async def statuses(seed: int) -> list[int]:
        async with client(Backend(), HttpStatusFault(503, rate=0.25), seed=seed) as c:
            return [(await c.get("/")).status_code for _ in range(400)]

    first, second, other = await statuses(1), await statuses(1), await statuses(2)
    assert first == second != other
    assert 0.2 < first.count(503) / 400 < 0.3
    fault = HttpStatusFault(503, rate=0.25)
    transport = ChaosTransport(httpx.MockTransport(Backend()), faults=[fault], seed=2)
    transport.rng = random.Random(1)  # reseeded: replays seed 1, not seed 2
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        reseeded = [(await c.get("/")).status_code for _ in range(400)]
    assert reseeded == first


async def test_faults_change_while_requests_flow() -> None:
    """add, remove, clear, rates and switches take effect on the next request."""
    transport = ChaosTransport(httpx.MockTransport(Backend()))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        assert (await c.get("/")).status_code == 200
        fault = transport.add(HttpStatusFault(502))
        assert (await c.get("/")).status_code == 502
        fault.enabled = False
        assert (await c.get("/")).status_code == 200
        fault.enabled = True
        transport.enabled = False
        assert (await c.get("/")).status_code == 200
        transport.enabled = True
        transport.remove(fault)
        assert (await c.get("/")).status_code == 200
        transport.add(HttpStatusFault(500))
        transport.clear()
        assert transport.faults == ()
    with pytest.raises(ValueError, match="is not in this transport"):
        transport.remove(fault)
    with pytest.raises(ValueError, match="`fault` must be an HttpFault"):
        transport.add("503")  # type: ignore[arg-type]


async def test_the_first_short_circuit_wins_and_others_compose() -> None:
    """Latency and truncation combine; a status listed first beats a later disconnect."""
    backend = Backend()
    async with client(backend, HttpLatencyFault(1.0), HttpTruncateFault(after=5, error=False)) as c:
        start = anyio.current_time()
        response = await c.get("/")
    assert response.content == BODY[:5]
    assert anyio.current_time() - start == pytest.approx(1.0)
    async with client(backend, HttpStatusFault(429), HttpDisconnectFault()) as c:
        assert (await c.get("/")).status_code == 429


async def test_statistics_and_events() -> None:
    """Counters and FaultInjected events say what fired."""
    transport = ChaosTransport(
        httpx.MockTransport(Backend()),
        faults=[HttpStatusFault(503, rate=0.5, name="burst")],
        seed=3,
        name="api",
    )
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        with capture_events() as events:
            codes = [(await c.get("/")).status_code for _ in range(20)]
    stats = transport.statistics()
    assert stats == ChaosTransportStatistics(requests=20, injected=codes.count(503))
    assert len(events) == codes.count(503)
    assert all(isinstance(e, FaultInjected) for e in events)
    assert {(e.name, e.fault, e.detail) for e in events} == {  # type: ignore[attr-defined]
        ("burst", "http_status", 503)
    }


async def test_cancelled_during_latency_closes_the_inner_response() -> None:
    """A caller cancelled while the response is held back releases the inner response."""
    closed: list[bool] = []

    class Body(httpx.AsyncByteStream):
        async def __aiter__(self) -> AsyncIterator[bytes]:
            yield b"x"

        async def aclose(self) -> None:
            closed.append(True)

    transport = ChaosTransport(
        httpx.MockTransport(lambda request: httpx.Response(200, stream=Body())),
        faults=[HttpLatencyFault(10.0)],
    )
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        with anyio.move_on_after(1.0) as scope:
            await c.get("/")
    assert scope.cancelled_caught
    assert closed == [True]


async def test_a_schedule_switches_http_faults() -> None:
    """HTTP faults are switchable: a Schedule turns them on during their phase only."""
    fault = HttpStatusFault(503)
    schedule = Schedule([(0, 1, None), (1, 2, fault)])
    codes = []
    async with client(Backend(), fault) as c, anyio.create_task_group() as tg:
        await tg.start(schedule.run)
        codes.append((await c.get("/")).status_code)
        await anyio.sleep(1.5)
        codes.append((await c.get("/")).status_code)
        await anyio.sleep(1.0)
        codes.append((await c.get("/")).status_code)
    assert codes == [200, 503, 200]


async def test_closing_closes_the_inner_transport() -> None:
    """aclose() (and leaving the client) closes the inner transport."""
    closed = []

    class Inner(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            return httpx.Response(200)

        async def aclose(self) -> None:
            closed.append(True)

    async with httpx.AsyncClient(transport=ChaosTransport(Inner())):
        pass
    assert closed == [True]


def test_validation_names_the_parameter() -> None:
    """Bad fault options raise ValueError naming the parameter."""
    with pytest.raises(ValueError, match="`status` must be an HTTP status code"):
        HttpStatusFault(700)
    with pytest.raises(ValueError, match="`retry_after` must be >= 0"):
        HttpStatusFault(503, retry_after=-1)
    with pytest.raises(ValueError, match="`where` must be 'headers' or 'body'"):
        HttpLatencyFault(1.0, where="trailers")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="`when` must be one of"):
        HttpDisconnectFault(when="later")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="`after` must be >= 0"):
        HttpTruncateFault(after=-1)
    with pytest.raises(ValueError, match="`rate` must be between 0 and 1"):
        HttpStatusFault(rate=2)
    with pytest.raises(ValueError, match="`inner` must be an async httpx transport"):
        ChaosTransport(object())  # type: ignore[arg-type]


def test_reprs() -> None:
    """Faults and the transport print what they do."""
    assert repr(HttpStatusFault(503, retry_after=1, rate=0.1)) == (
        "HttpStatusFault(503, retry_after=1.0, rate=0.1)"
    )
    assert repr(HttpLatencyFault(0.2, where="body", after=5)) == (
        "HttpLatencyFault(0.2, where='body', after=5, rate=1.0)"
    )
    assert repr(HttpDisconnectFault(when="read", enabled=False)) == (
        "HttpDisconnectFault(when='read', rate=1.0, enabled=False)"
    )
    assert repr(HttpTruncateFault(after=3, error=False)) == (
        "HttpTruncateFault(after=3, error=False, rate=1.0)"
    )


async def test_the_httpx2_fork_gets_its_own_exceptions_and_streams() -> None:
    """With the httpx2 fork, responses and errors come from httpx2's own classes."""
    httpx2: Any = pytest.importorskip("httpx2")
    transport = ChaosTransport(
        httpx2.MockTransport(lambda request: httpx2.Response(200, content=BODY)),  # type: ignore[arg-type]
        faults=[HttpTruncateFault(after=4)],
    )
    async with httpx2.AsyncClient(transport=transport, base_url="http://test") as c:
        with pytest.raises(httpx2.RemoteProtocolError):
            await c.get("/")
        transport.clear()
        transport.add(HttpDisconnectFault(when="connect"))
        with pytest.raises(httpx2.ConnectError):
            await c.get("/")
        transport.clear()
        transport.add(HttpLatencyFault(0.5, where="body"))
        assert (await c.get("/")).content == BODY
