"""FaultProxy for real: TCP on 127.0.0.1, real clocks, httpx against a real ASGI server.

Every toxic is measured on the wire: latency adds its delay, bandwidth caps throughput,
reset_peer resets, timeout black-holes, limit_data cuts, slicer keeps every byte, down
refuses. Delays are kept short (50-200 ms) and every test is bounded.
"""

from __future__ import annotations

import random
import socket
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import anyio
import httpx
import pytest
from anyio.abc import SocketStream
from servers import pattern, running_server

from asyncres.chaos import (
    BandwidthToxic,
    ChaosTransport,
    FaultProxy,
    FaultProxyStatistics,
    HttpDisconnectFault,
    HttpTruncateFault,
    LatencyToxic,
    LimitDataToxic,
    Phase,
    ResetPeerToxic,
    Schedule,
    SlicerToxic,
    SlowCloseToxic,
    TimeoutToxic,
    make_toxic,
    parse_toxic,
)

if TYPE_CHECKING:
    from servers import RunningServer

pytestmark = [pytest.mark.anyio, pytest.mark.real_clock]


Handler = Callable[[SocketStream], Awaitable[None]]


async def echo(stream: SocketStream) -> None:
    async with stream:
        try:
            while True:
                await stream.send(await stream.receive())
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass


@asynccontextmanager
async def tcp_server(handler: Handler = echo) -> AsyncIterator[tuple[str, int]]:
    """A TCP server on 127.0.0.1 in this test's own loop."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, handler)
        try:
            yield ("127.0.0.1", port)
        finally:
            tg.cancel_scope.cancel()


async def round_trip(stream: SocketStream, data: bytes = b"ping") -> float:
    start = time.perf_counter()
    await stream.send(data)
    got = b""
    while len(got) < len(data):
        got += await stream.receive()
    assert got == data
    return time.perf_counter() - start


async def read_all(stream: SocketStream) -> bytes:
    got = b""
    try:
        while True:
            got += await stream.receive()
    except anyio.EndOfStream:
        return got


def caused_by(exc: BaseException | None, kind: type[BaseException]) -> bool:
    """Whether ``kind`` is somewhere in the exception's cause/context chain."""
    while exc is not None:
        if isinstance(exc, kind):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def proxied(proxy: FaultProxy, **options: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=f"http://{proxy.host}:{proxy.port}", **options)


async def test_passes_http_through_untouched(http_server: RunningServer) -> None:
    """Without toxics, a real HTTP exchange through the proxy is byte for byte the same."""
    with anyio.fail_after(10):
        async with FaultProxy(upstream=http_server.address) as proxy, proxied(proxy) as client:
            response = await client.get("/bytes", params={"n": 300_000})
            echoed = await client.post("/echo", content=b"x" * 100_000)
            stats = proxy.statistics()
    assert response.content == pattern(300_000)
    assert echoed.content == b"x" * 100_000
    assert stats.accepted == 1  # one keep-alive connection
    assert stats.bytes_downstream > 400_000
    assert stats.bytes_upstream > 100_000


async def test_latency_adds_its_delay_to_every_response(http_server: RunningServer) -> None:
    """A 100 ms downstream latency makes each request about 100 ms slower."""
    with anyio.fail_after(10):
        async with FaultProxy(upstream=http_server.address) as proxy, proxied(proxy) as client:
            await client.get("/ok")  # connect outside the measurement

            async def timed() -> float:
                start = time.perf_counter()
                await client.get("/ok")
                return time.perf_counter() - start

            base = statistics.median([await timed() for _ in range(5)])
            toxic = proxy.add(LatencyToxic(0.1))
            slow = [await timed() for _ in range(5)]
            toxic.update(latency=0.05, direction="both")  # live change: 50 ms each way
            both = [await timed() for _ in range(3)]
            proxy.remove(toxic)
            after = statistics.median([await timed() for _ in range(3)])
    assert all(0.1 <= s < 0.1 + base + 0.1 for s in slow), (base, slow)
    assert all(0.1 <= s < 0.1 + base + 0.1 for s in both), (base, both)
    assert after < 0.05


async def test_latency_jitter_stays_within_its_band() -> None:
    """latency ± jitter: every delay lands in the band, and they differ."""
    toxic = LatencyToxic(0.06, jitter=0.03)
    with anyio.fail_after(10):
        async with (
            tcp_server() as upstream,
            FaultProxy(upstream=upstream, toxics=[toxic], seed=5) as proxy,
        ):
            assert proxy.toxics == (toxic,)
            async with await anyio.connect_tcp(*proxy.address) as stream:
                delays = [await round_trip(stream) for _ in range(8)]
    assert all(0.03 <= d < 0.09 + 0.1 for d in delays), delays
    assert max(delays) - min(delays) > 0.01


async def test_latency_keeps_the_throughput_of_a_stream() -> None:
    """Chunks are delayed from their own arrival: a stream is late, not slow."""
    with anyio.fail_after(10):
        async with tcp_server() as upstream, FaultProxy(upstream=upstream) as proxy:
            proxy.add(LatencyToxic(0.05))
            async with await anyio.connect_tcp(*proxy.address) as stream:
                start = time.perf_counter()
                for _ in range(20):  # 20 sends spread over ~100 ms, each echoed back
                    await stream.send(b"x" * 1000)
                    await anyio.sleep(0.005)
                got = 0
                while got < 20_000:
                    got += len(await stream.receive())
                elapsed = time.perf_counter() - start
    assert 0.05 <= elapsed < 0.6  # not 20 x 50 ms = 1 s


async def test_bandwidth_caps_the_throughput(http_server: RunningServer) -> None:
    """200 kB through a 1 MB/s bandwidth toxic take about 200 ms."""
    with anyio.fail_after(10):
        async with FaultProxy(upstream=http_server.address) as proxy, proxied(proxy) as client:
            await client.get("/ok")
            proxy.add(BandwidthToxic(1_000_000))
            start = time.perf_counter()
            response = await client.get("/bytes", params={"n": 200_000})
            elapsed = time.perf_counter() - start
    assert response.content == pattern(200_000)
    assert 0.17 <= elapsed < 0.6, elapsed


async def test_reset_peer_resets_the_client_connection(http_server: RunningServer) -> None:
    """reset_peer sends a TCP RST: httpx reports a connection reset, a raw socket too."""
    with anyio.fail_after(10):
        async with FaultProxy(upstream=http_server.address) as proxy, proxied(proxy) as client:
            proxy.add(ResetPeerToxic(0.1))
            start = time.perf_counter()
            with pytest.raises(httpx.ReadError) as info:
                await client.get("/slow", params={"seconds": 2})
            elapsed = time.perf_counter() - start
    assert 0.1 <= elapsed < 0.5
    assert caused_by(info.value, ConnectionResetError)

    with anyio.fail_after(10):
        async with tcp_server() as upstream, FaultProxy(upstream=upstream) as proxy:
            proxy.add(ResetPeerToxic())  # at once, on every new connection
            async with await anyio.connect_tcp(*proxy.address) as stream:
                with pytest.raises(anyio.BrokenResourceError) as raw:
                    await round_trip(stream)
    assert caused_by(raw.value, ConnectionResetError)


async def test_timeout_toxic_black_holes_until_the_client_gives_up(
    http_server: RunningServer,
) -> None:
    """timeout=0 holds the data: only the client's own timeout ends the wait."""
    with anyio.fail_after(10):
        async with FaultProxy(upstream=http_server.address) as proxy, proxied(proxy) as client:
            await client.get("/ok")
            hits = http_server.app.paths["/echo"]
            proxy.add(TimeoutToxic(direction="upstream"))
            start = time.perf_counter()
            with pytest.raises(httpx.ReadTimeout):
                await client.post("/echo", content=b"lost", timeout=0.2)
            elapsed = time.perf_counter() - start
    assert 0.2 <= elapsed < 0.5
    assert http_server.app.paths["/echo"] == hits  # the request never reached the server


async def test_timeout_toxic_with_a_timeout_drops_data_then_closes() -> None:
    """timeout=0.1 drops what is sent and closes the connection after 100 ms."""
    with anyio.fail_after(10):
        async with tcp_server() as upstream, FaultProxy(upstream=upstream) as proxy:
            proxy.add(TimeoutToxic(0.1))
            async with await anyio.connect_tcp(*proxy.address) as stream:
                start = time.perf_counter()
                await stream.send(b"into the void")
                assert await read_all(stream) == b""
                elapsed = time.perf_counter() - start
    assert 0.1 <= elapsed < 0.4


async def test_removing_a_holding_timeout_lets_the_data_through() -> None:
    """Data held by a timeout=0 toxic flows again when the toxic is removed."""
    with anyio.fail_after(10):
        async with tcp_server() as upstream, FaultProxy(upstream=upstream) as proxy:
            hole = proxy.add(TimeoutToxic())
            async with await anyio.connect_tcp(*proxy.address) as stream:
                await stream.send(b"held")
                with anyio.move_on_after(0.1) as scope:
                    await stream.receive()
                assert scope.cancelled_caught
                proxy.remove(hole.name)
                assert await stream.receive() == b"held"


async def test_limit_data_closes_after_n_bytes(http_server: RunningServer) -> None:
    """limit_data forwards exactly N bytes and closes: a raw client gets N bytes, httpx an error."""
    with anyio.fail_after(10):
        async with tcp_server() as upstream, FaultProxy(upstream=upstream) as proxy:
            proxy.add(LimitDataToxic(10))
            async with await anyio.connect_tcp(*proxy.address) as stream:
                await stream.send(b"0123456789abcdefghij")
                assert await read_all(stream) == b"0123456789"
        async with FaultProxy(upstream=http_server.address) as proxy, proxied(proxy) as client:
            proxy.add(LimitDataToxic(200))
            with pytest.raises(httpx.RemoteProtocolError):
                await client.get("/bytes", params={"n": 5000})


async def test_slicer_delivers_every_byte_in_many_pieces(http_server: RunningServer) -> None:
    """Sliced into ~7-byte pieces, a response still arrives whole and correct."""
    with anyio.fail_after(10):
        async with FaultProxy(upstream=http_server.address) as proxy, proxied(proxy) as client:
            proxy.add(SlicerToxic(7, size_variation=3, delay=0.0005))
            response = await client.get("/bytes", params={"n": 3000})
        assert response.content == pattern(3000)
        async with tcp_server() as upstream, FaultProxy(upstream=upstream) as proxy:
            proxy.add(SlicerToxic(5, delay=0.002))
            async with await anyio.connect_tcp(*proxy.address) as stream:
                await stream.send(b"abcdefghijklmnopqrstuvwxyz")
                reads = []
                while sum(map(len, reads)) < 26:
                    reads.append(await stream.receive())
    assert b"".join(reads) == b"abcdefghijklmnopqrstuvwxyz"
    assert len(reads) >= 4  # arrived in pieces


async def test_slow_close_delays_the_end_of_the_stream() -> None:
    """The server's close reaches the client `delay` late; the data itself is on time."""

    async def say_bye(stream: SocketStream) -> None:
        async with stream:
            await stream.send(b"bye")

    with anyio.fail_after(10):
        async with tcp_server(say_bye) as upstream, FaultProxy(upstream=upstream) as proxy:
            proxy.add(SlowCloseToxic(0.2))
            async with await anyio.connect_tcp(*proxy.address) as stream:
                start = time.perf_counter()
                assert await stream.receive() == b"bye"
                data_at = time.perf_counter() - start
                assert await read_all(stream) == b""
                closed_at = time.perf_counter() - start
    assert data_at < 0.15
    assert 0.2 <= closed_at < 0.6


async def test_down_refuses_new_and_drops_open_connections(http_server: RunningServer) -> None:
    """enabled=False refuses connections and closes open ones; enabled=True serves again."""
    with anyio.fail_after(10):
        async with FaultProxy(upstream=http_server.address) as proxy, proxied(proxy) as client:
            port = proxy.port
            assert (await client.get("/ok")).status_code == 200
            proxy.enabled = False
            await anyio.wait_all_tasks_blocked()  # the kept-alive connection is closed now
            with pytest.raises(httpx.ConnectError):
                await client.get("/ok")
            with pytest.raises(OSError):
                await anyio.connect_tcp("127.0.0.1", port)
            proxy.outage.enabled = False  # the same switch, seen from a schedule
            assert proxy.enabled
            assert proxy.port == port
            assert (await client.get("/ok")).status_code == 200
            async with await anyio.connect_tcp(*proxy.address) as raw:
                await anyio.wait_all_tasks_blocked()
                proxy.disable()
                assert await read_all(raw) == b""  # dropped with a clean close
            proxy.enable()
            assert (await client.get("/ok")).status_code == 200


async def test_disconnect_closes_or_resets_open_connections_only() -> None:
    """disconnect() drops open connections (reset=True with an RST) and keeps listening."""
    with anyio.fail_after(10):
        async with tcp_server() as upstream, FaultProxy(upstream=upstream) as proxy:
            async with await anyio.connect_tcp(*proxy.address) as first:
                await round_trip(first)
                proxy.disconnect()
                assert await read_all(first) == b""
            async with await anyio.connect_tcp(*proxy.address) as second:
                await round_trip(second)
                proxy.disconnect(reset=True)
                with pytest.raises(anyio.BrokenResourceError) as info:
                    await read_all(second)
            assert caused_by(info.value, ConnectionResetError)
            async with await anyio.connect_tcp(*proxy.address) as third:
                await round_trip(third)


async def test_a_proxy_can_start_down() -> None:
    """enabled=False at the start: the address is known, connections refused until enabled."""
    with anyio.fail_after(10):
        async with tcp_server() as upstream, FaultProxy(upstream=upstream, enabled=False) as p:
            assert p.outage.enabled
            with pytest.raises(OSError):
                await anyio.connect_tcp(*p.address)
            p.enabled = True
            async with await anyio.connect_tcp(*p.address) as stream:
                await round_trip(stream)


async def test_a_schedule_drives_an_outage_and_a_latency_spike(
    http_server: RunningServer,
) -> None:
    """A Schedule switches the proxy's toxic and its outage phase by phase."""
    with anyio.fail_after(10):
        async with FaultProxy(upstream=http_server.address) as proxy, proxied(proxy) as client:
            spike = proxy.add(LatencyToxic(0.1, enabled=False))
            schedule = Schedule(
                [
                    Phase("steady", seconds=0.3),
                    Phase("spike", seconds=0.3, faults=[spike]),
                    Phase("outage", seconds=0.3, faults=[proxy.outage]),
                    Phase("recovery", seconds=0.3),
                ]
            )
            outcomes: list[tuple[str, str]] = []
            async with anyio.create_task_group() as tg:
                await tg.start(schedule.run)
                for at in (0.1, 0.4, 0.75, 1.05):
                    await anyio.sleep(max(0.0, at - schedule.elapsed()))
                    phase = schedule.current()
                    start = time.perf_counter()
                    try:
                        await client.get("/ok", timeout=1.0)
                        took = time.perf_counter() - start
                        outcomes.append((phase.name, "slow" if took >= 0.1 else "fast"))  # type: ignore[union-attr]
                    except httpx.ConnectError:
                        outcomes.append((phase.name, "refused"))  # type: ignore[union-attr]
    assert outcomes == [
        ("steady", "fast"),
        ("spike", "slow"),
        ("outage", "refused"),
        ("recovery", "fast"),
    ]
    assert proxy.toxics == (spike,)
    assert spike.enabled is False


async def test_toxicity_picks_connections_at_random_reproducibly() -> None:
    """toxicity=0.5 resets about half the connections; the seed (or a new rng) replays them."""

    async def reset_pattern(seed: int, *, reseed: bool = False) -> list[bool]:
        outcome = []
        start = 99 if reseed else seed
        async with tcp_server() as upstream, FaultProxy(upstream=upstream, seed=start) as proxy:
            if reseed:
                proxy.rng = random.Random(seed)  # a live knob: the draws follow it
            proxy.add(ResetPeerToxic(toxicity=0.5))
            for _ in range(30):
                async with await anyio.connect_tcp(*proxy.address) as stream:
                    try:
                        await round_trip(stream)
                        outcome.append(False)
                    except anyio.BrokenResourceError:
                        outcome.append(True)
        return outcome

    with anyio.fail_after(20):
        first, second = await reset_pattern(3), await reset_pattern(3)
        reseeded = await reset_pattern(3, reseed=True)
    assert first == second == reseeded
    assert 7 <= sum(first) <= 23


async def test_upstream_direction_delays_the_request_only() -> None:
    """An upstream latency delays what the client sends; the round trip shows it once."""
    with anyio.fail_after(10):
        async with tcp_server() as upstream, FaultProxy(upstream=upstream) as proxy:
            proxy.add(LatencyToxic(0.08, direction="upstream"))
            async with await anyio.connect_tcp(*proxy.address) as stream:
                delay = await round_trip(stream)
    assert 0.08 <= delay < 0.08 + 0.1


async def test_an_unreachable_upstream_closes_the_client() -> None:
    """When the upstream refuses, the client's connection is closed and counted."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = sock.getsockname()  # bound, not listening: connections are refused
        with anyio.fail_after(10):
            async with FaultProxy(upstream=dead) as proxy:
                async with await anyio.connect_tcp(*proxy.address) as stream:
                    assert await read_all(stream) == b""
                stats = proxy.statistics()
    assert stats == FaultProxyStatistics(
        accepted=1, active=0, upstream_failures=1, bytes_upstream=0, bytes_downstream=0
    )


async def test_leaving_the_block_closes_every_connection() -> None:
    """Exiting the proxy closes its listener and open connections; nothing keeps running."""
    with anyio.fail_after(10):
        async with tcp_server() as upstream:
            async with FaultProxy(upstream=upstream) as proxy:
                stream = await anyio.connect_tcp(*proxy.address)
                await round_trip(stream)
                address = proxy.address
            async with stream:
                assert await read_all(stream) == b""
            with pytest.raises(OSError):
                await anyio.connect_tcp(*address)


async def test_ipv6_loopback() -> None:
    """The proxy listens on ::1 as well as on 127.0.0.1."""
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback")
    with anyio.fail_after(10):
        async with tcp_server() as upstream, FaultProxy(upstream=upstream, listen="[::1]:0") as p:
            assert p.host == "::1"
            async with await anyio.connect_tcp("::1", p.port) as stream:
                await round_trip(stream)
            assert "[::1]:" in repr(p)


async def test_hypercorn_upstream_on_trio() -> None:
    """The proxy works in front of hypercorn running its own loop on trio."""
    with running_server(kind="hypercorn", loop="trio") as server, anyio.fail_after(10):
        async with FaultProxy(upstream=server.address) as proxy, proxied(proxy) as client:
            proxy.add(SlicerToxic(100))
            response = await client.get("/bytes", params={"n": 10_000})
    assert response.content == pattern(10_000)
    assert server.app.requests == 1


async def test_chaos_transport_against_a_real_server(http_server: RunningServer) -> None:
    """With a real server: a 'read' disconnect loses an answer the server did send;
    a truncation cuts a real body."""
    transport = ChaosTransport(
        httpx.AsyncHTTPTransport(), faults=[HttpDisconnectFault(when="read")]
    )
    with anyio.fail_after(10):
        async with httpx.AsyncClient(transport=transport, base_url=http_server.url) as client:
            before = http_server.app.paths["/echo"]
            with pytest.raises(httpx.ReadError):
                await client.post("/echo", content=b"pay 10 EUR")
            assert http_server.app.paths["/echo"] == before + 1  # the work was done
            transport.clear()
            transport.add(HttpTruncateFault(after=1000))
            with pytest.raises(httpx.RemoteProtocolError, match="expected 5000"):
                await client.get("/bytes", params={"n": 5000})
            transport.clear()
            assert (await client.get("/bytes", params={"n": 5000})).content == pattern(5000)


def test_toxic_specs_and_validation() -> None:
    """Command-line specs and Toxiproxy-style data build validated toxics."""
    latency = parse_toxic("latency=200ms,jitter=20ms,direction=both,toxicity=0.5")
    assert isinstance(latency, LatencyToxic)
    assert (latency.latency, latency.jitter, latency.direction, latency.toxicity) == (
        0.2,
        0.02,
        "both",
        0.5,
    )
    assert parse_toxic("bandwidth=64KiB/s").bytes_per_second == 65536  # type: ignore[attr-defined]
    assert parse_toxic("timeout").timeout == 0.0  # type: ignore[attr-defined]
    assert parse_toxic("reset-peer=2s").timeout == 2.0  # type: ignore[attr-defined]
    slicer = parse_toxic("slicer=16,size_variation=8,delay=1ms")
    assert (slicer.average_size, slicer.size_variation, slicer.delay) == (16, 8, 0.001)  # type: ignore[attr-defined]
    assert parse_toxic("limit_data=1KB").bytes == 1000  # type: ignore[attr-defined]
    assert make_toxic("slow_close", delay="1.5s").delay == 1.5  # type: ignore[attr-defined]
    assert repr(latency) == (
        "LatencyToxic(latency=0.2, jitter=0.02, direction='both', toxicity=0.5)"
    )
    for spec, message in [
        ("jam=1", "`toxic` type must be one of"),
        ("latency=soon", "`latency` must be a duration"),
        ("latency=1s,sideways", "must be KEY=VALUE"),
        ("latency=1s,direction=sideways", "`direction` must be 'upstream'"),
        ("bandwidth=0", "`bytes_per_second` must be > 0"),
        ("latency=1s,colour=red", "unexpected keyword argument"),
    ]:
        with pytest.raises(ValueError, match=message):
            parse_toxic(spec)
    with pytest.raises(ValueError, match="`toxicity` must be between 0 and 1"):
        LatencyToxic(0.1).toxicity = 2
    with pytest.raises(ValueError, match="has no attribute `rate`"):
        BandwidthToxic(10).update(rate=5)
    with pytest.raises(ValueError, match="`upstream` must be HOST:PORT"):
        FaultProxy(upstream="localhost")
    with pytest.raises(RuntimeError, match="has not started"):
        _ = FaultProxy(upstream="127.0.0.1:1").address
