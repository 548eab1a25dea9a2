"""`FaultProxy`: a TCP proxy on loopback that injects Toxiproxy's faults, on anyio."""

from __future__ import annotations

import logging
import math
import random
import socket
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING

import anyio
from anyio.abc import SocketAttribute, SocketListener, SocketStream, TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from .. import _validation
from .._clock import current_time
from .._setting import Setting
from ._inject import make_rng
from ._switch import Switch, check_bool
from ._toxics import (
    BandwidthToxic,
    LatencyToxic,
    LimitDataToxic,
    ResetPeerToxic,
    SlicerToxic,
    SlowCloseToxic,
    TimeoutToxic,
    Toxic,
)

if TYPE_CHECKING:
    from typing import Self

__all__ = ["FaultProxy", "FaultProxyStatistics", "parse_address"]

logger = logging.getLogger("asyncres.chaos")

_READ_SIZE = 65536
_QUEUE_CHUNKS = 16
# Bandwidth pacing sends slices worth this many seconds of the allowed rate.
_PACING_SECONDS = 0.02


@dataclass(frozen=True, slots=True)
class FaultProxyStatistics:
    """A snapshot of a `FaultProxy`'s counters."""

    __module__ = "asyncres.chaos"

    #: Client connections accepted since the proxy started.
    accepted: int
    #: Connections open now.
    active: int
    #: Accepted connections closed because the upstream could not be reached.
    upstream_failures: int
    #: Bytes delivered from clients to the upstream.
    bytes_upstream: int
    #: Bytes delivered from the upstream to clients.
    bytes_downstream: int


def parse_address(value: str | tuple[str, int], parameter: str) -> tuple[str, int]:
    """``"host:port"``, ``"[::1]:port"`` or ``(host, port)`` as a ``(host, port)`` pair."""
    if isinstance(value, tuple):
        if len(value) != 2 or not isinstance(value[0], str):
            raise ValueError(f"`{parameter}` must be (host, port), got {value!r}")
        host, port = value
    elif isinstance(value, str):
        host, sep, port_text = value.rpartition(":")
        if not sep or not host or not port_text.isdigit():
            raise ValueError(f"`{parameter}` must be HOST:PORT, got {value!r}")
        host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
        port = int(port_text)
    else:
        raise ValueError(f"`{parameter}` must be HOST:PORT or (host, port), got {value!r}")
    port = _validation.count(parameter, port, minimum=0)
    if port > 65535:
        raise ValueError(f"`{parameter}` port must be <= 65535, got {port}")
    return host, port


class FaultProxy:
    """A TCP proxy between any client and any server, injecting network faults.

    ::

        async with FaultProxy(upstream=("127.0.0.1", 5432)) as proxy:
            proxy.add(LatencyToxic(0.2))                  # +200 ms on every reply
            dsn = f"postgresql://app@127.0.0.1:{proxy.port}/app"
            ...
            proxy.enabled = False                         # down: refuse and drop all

    It listens on ``listen`` (default ``127.0.0.1`` on a free port; see `address`) and
    connects each client to ``upstream``. The toxics (`LatencyToxic`, `BandwidthToxic`,
    `SlowCloseToxic`, `TimeoutToxic`, `ResetPeerToxic`, `SlicerToxic`, `LimitDataToxic`)
    apply per direction and per connection with their ``toxicity``; `add`, `remove`
    and attribute changes reach live connections at once. ``enabled=False`` is Toxiproxy's
    "down": new connections are refused (the listening socket is closed) and open ones are
    closed; `outage` is the same as a switch for a `Schedule`.

    Use it as an async context manager (enter and exit in the same task); it works on
    asyncio and trio. ``seed`` replays the toxicity draws, jitter and slice sizes.

    What changes while it runs: the toxics (and their attributes), ``enabled`` and ``rng``;
    ``upstream``, ``connect_timeout`` and ``name`` are read-only.
    """

    __module__ = "asyncres.chaos"

    upstream: Setting[tuple[str, int]] = Setting()
    connect_timeout: Setting[float] = Setting()
    name: Setting[str | None] = Setting()

    def __init__(
        self,
        *,
        upstream: str | tuple[str, int],
        listen: str | tuple[str, int] = ("127.0.0.1", 0),
        toxics: Iterable[Toxic] = (),
        enabled: bool = True,
        connect_timeout: float = 10.0,
        seed: int | None = None,
        rng: random.Random | None = None,
        name: str | None = None,
    ) -> None:
        self._upstream = parse_address(upstream, "upstream")
        self._listen = parse_address(listen, "listen")
        self._connect_timeout = _validation.positive("connect_timeout", connect_timeout)
        self._rng = make_rng(seed, rng)
        self._name = name
        self._enabled = check_bool("enabled", enabled)
        self._toxics: tuple[Toxic, ...] = ()
        self._links: set[_Link] = set()
        for toxic in toxics:
            self.add(toxic)
        self._task_group: TaskGroup | None = None
        self._address: tuple[str, int] | None = None
        self._socket: socket.socket | None = None
        self._serve_scope: anyio.CancelScope | None = None
        self._accepted = 0
        self._upstream_failures = 0
        self._bytes = {"upstream": 0, "downstream": 0}
        self._outage = Switch(
            on=lambda: setattr(self, "enabled", False),
            off=lambda: setattr(self, "enabled", True),
            name="outage",
            enabled=not self._enabled,
        )

    def __repr__(self) -> str:
        listen = self._address or self._listen
        state = "" if self._enabled else " down"
        toxics = f" toxics={list(self._toxics)!r}" if self._toxics else ""
        return f"<FaultProxy {_format(listen)} -> {_format(self._upstream)}{state}{toxics}>"

    @property
    def outage(self) -> Switch:
        """The proxy's "down" as a switch: ``outage.enabled = True`` is ``enabled = False``."""
        return self._outage

    @property
    def rng(self) -> random.Random:
        """The generator for toxicity draws, jitter and slice sizes; settable (to reseed)."""
        return self._rng

    @rng.setter
    def rng(self, value: random.Random) -> None:
        self._rng = make_rng(None, value)

    # -- address -----------------------------------------------------------------------

    @property
    def address(self) -> tuple[str, int]:
        """``(host, port)`` clients connect to (known once the proxy has started)."""
        if self._address is None:
            raise RuntimeError("the proxy has not started: use `async with FaultProxy(...)`")
        return self._address

    @property
    def host(self) -> str:
        """The listening host."""
        return self.address[0]

    @property
    def port(self) -> int:
        """The listening port."""
        return self.address[1]

    # -- toxics --------------------------------------------------------------------------

    @property
    def toxics(self) -> tuple[Toxic, ...]:
        """The toxics, in the order they apply to each chunk."""
        return self._toxics

    def add(self, toxic: Toxic) -> Toxic:
        """Add a toxic (live connections included) and return it."""
        if not isinstance(toxic, Toxic):
            raise ValueError(f"`toxic` must be a Toxic, got {toxic!r}")
        if toxic not in self._toxics:
            self._toxics = (*self._toxics, toxic)
            toxic._attach(self)
            self._toxics_changed()
        return toxic

    def remove(self, toxic: Toxic | str) -> None:
        """Remove a toxic, given as the object or its name (``ValueError`` if absent)."""
        found = [t for t in self._toxics if t is toxic or t.name == toxic]
        if not found:
            raise ValueError(f"`toxic` {toxic!r} is not in this proxy")
        for t in found:
            t._detach(self)
        self._toxics = tuple(t for t in self._toxics if t not in found)
        self._toxics_changed()

    def clear(self) -> None:
        """Remove every toxic."""
        for toxic in self._toxics:
            toxic._detach(self)
        self._toxics = ()
        self._toxics_changed()

    def _toxics_changed(self) -> None:
        for link in list(self._links):
            link.refresh()

    # -- up / down -----------------------------------------------------------------------

    @property
    def enabled(self) -> bool:
        """False means down: connections are refused and open ones closed. Settable."""
        return self._enabled

    @enabled.setter
    def enabled(self, value: bool) -> None:
        value = check_bool("enabled", value)
        if value == self._enabled:
            return
        self._enabled = value
        self._outage._enabled = not value
        if self._task_group is None:
            return
        if value:
            self._start_serving()
        else:
            self._stop_serving()
            self.disconnect()

    def disable(self) -> None:
        """``enabled = False``."""
        self.enabled = False

    def enable(self) -> None:
        """``enabled = True``."""
        self.enabled = True

    def disconnect(self, *, reset: bool = False) -> None:
        """Close every open connection (with a TCP reset to both sides if ``reset``).

        The proxy keeps accepting new ones: a failover, a restarted load balancer.
        """
        for link in list(self._links):
            if reset:
                link.reset("both")
            else:
                link.close()

    @property
    def connections(self) -> int:
        """The number of open client connections."""
        return len(self._links)

    def statistics(self) -> FaultProxyStatistics:
        """Connection and byte counters."""
        return FaultProxyStatistics(
            accepted=self._accepted,
            active=len(self._links),
            upstream_failures=self._upstream_failures,
            bytes_upstream=self._bytes["upstream"],
            bytes_downstream=self._bytes["downstream"],
        )

    # -- lifecycle -----------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._task_group is not None:
            raise RuntimeError("a FaultProxy can be entered only once at a time")
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        self._task_group = task_group
        try:
            sock = self._bind()
            if self._enabled:
                self._serve(sock)
            else:
                sock.close()
        except BaseException as exc:
            self._task_group = None
            task_group.cancel_scope.cancel()
            await task_group.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        task_group = self._task_group
        assert task_group is not None
        self._stop_serving()
        self.disconnect()
        task_group.cancel_scope.cancel()
        try:
            return await task_group.__aexit__(exc_type, exc, tb)
        finally:
            self._task_group = None

    def _bind(self) -> socket.socket:
        host, port = self._address or self._listen
        family, kind, proto, _, sockaddr = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(sockaddr)
            sock.listen(128)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        self._address = (host, sock.getsockname()[1])
        return sock

    def _start_serving(self) -> None:
        try:
            sock = self._bind()
        except OSError:
            logger.exception("FaultProxy %s: cannot listen again on %s", self._name, self._address)
            return
        self._serve(sock)

    def _serve(self, sock: socket.socket) -> None:
        assert self._task_group is not None
        self._socket = sock
        scope = self._serve_scope = anyio.CancelScope()
        self._task_group.start_soon(self._accept_loop, sock, scope)

    def _stop_serving(self) -> None:
        sock, self._socket = self._socket, None
        if sock is not None:
            try:
                # Leaves the listening state at once (Linux): new connections are refused
                # now, not when the accept task next runs.
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._serve_scope is not None:
            self._serve_scope.cancel()
            self._serve_scope = None

    async def _accept_loop(self, sock: socket.socket, scope: anyio.CancelScope) -> None:
        listener: SocketListener | None = None
        try:
            with scope:
                listener = await SocketListener.from_socket(sock)
                while True:
                    try:
                        stream = await listener.accept()
                    except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
                        if self._socket is not sock:
                            return  # stopped
                        logger.exception("FaultProxy %s: accept failed", self._name)
                        await anyio.sleep(0.1)
                        continue
                    assert self._task_group is not None
                    self._task_group.start_soon(self._handle, stream)
        finally:
            with anyio.CancelScope(shield=True):
                if listener is not None:
                    await listener.aclose()
                else:
                    sock.close()

    async def _handle(self, client: SocketStream) -> None:
        if not self._enabled:  # accepted just before the proxy went down
            await client.aclose()
            return
        self._accepted += 1
        link = _Link(self, client)
        self._links.add(link)
        try:
            await link.run()
        except Exception:
            logger.debug("FaultProxy %s: connection ended with an error", self._name, exc_info=True)
        finally:
            self._links.discard(link)


def _format(address: tuple[str, int]) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class _ToxicState:
    """One toxic as one connection sees it: drawn or not, and its running counters."""

    __slots__ = ("applies", "count", "next_time", "version")

    def __init__(self, version: int, applies: bool) -> None:
        self.version = version
        self.applies = applies
        self.count = {"upstream": 0, "downstream": 0}
        self.next_time = {"upstream": -math.inf, "downstream": -math.inf}


_Chunk = tuple[float, bytes]


class _Link:
    """One client connection and its upstream connection: two pumps, each reader → writer."""

    __slots__ = (
        "_active",
        "_changed",
        "_states",
        "client",
        "proxy",
        "scope",
        "task_group",
        "upstream",
    )

    def __init__(self, proxy: FaultProxy, client: SocketStream) -> None:
        self.proxy = proxy
        self.client = client
        self.upstream: SocketStream | None = None
        self.scope = anyio.CancelScope()
        self.task_group: TaskGroup | None = None
        # Keyed by the toxic itself (not its id): a removed toxic's id may be reused.
        self._states: dict[Toxic, _ToxicState] = {}
        self._active: dict[str, tuple[Toxic, ...]] = {"upstream": (), "downstream": ()}
        self._changed = anyio.Event()

    def close(self) -> None:
        """Close both connections (FIN)."""
        self.scope.cancel()

    def reset(self, direction: str) -> None:
        """Reset (RST) the client (downstream), the upstream, or both, and close the link."""
        sides = []
        if direction in ("downstream", "both"):
            sides.append(self.client)
        if direction in ("upstream", "both") and self.upstream is not None:
            sides.append(self.upstream)
        for stream in sides:
            try:
                raw = stream.extra(SocketAttribute.raw_socket)
                raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except (OSError, anyio.TypedAttributeLookupError):
                pass
        self.close()

    def refresh(self) -> None:
        """Re-read the proxy's toxics: draw new or changed ones, start their timers."""
        rng = self.proxy._rng
        states: dict[Toxic, _ToxicState] = {}
        upstream: list[Toxic] = []
        downstream: list[Toxic] = []
        for toxic in self.proxy._toxics:
            if not toxic.enabled:
                continue
            state = self._states.get(toxic)
            if state is None or state.version != toxic._version:
                applies = toxic.toxicity >= 1.0 or rng.random() < toxic.toxicity
                state = _ToxicState(toxic._version, applies)
                if applies and isinstance(toxic, TimeoutToxic | ResetPeerToxic):
                    self._start_timer(toxic, state)
            states[toxic] = state
            if state.applies:
                if toxic.direction != "downstream":
                    upstream.append(toxic)
                if toxic.direction != "upstream":
                    downstream.append(toxic)
        self._states = states
        self._active = {"upstream": tuple(upstream), "downstream": tuple(downstream)}
        changed, self._changed = self._changed, anyio.Event()
        changed.set()

    def _start_timer(self, toxic: TimeoutToxic | ResetPeerToxic, state: _ToxicState) -> None:
        if isinstance(toxic, TimeoutToxic) and toxic.timeout == 0:
            return  # hold forever: no timer
        if self.task_group is not None:
            self.task_group.start_soon(self._timer, toxic, state)

    async def _timer(self, toxic: TimeoutToxic | ResetPeerToxic, state: _ToxicState) -> None:
        await anyio.sleep(toxic.timeout)
        if self._states.get(toxic) is not state:
            return  # removed, disabled or changed meanwhile
        if isinstance(toxic, ResetPeerToxic):
            self.reset(toxic.direction)
        else:
            self.close()

    async def run(self) -> None:
        proxy = self.proxy
        async with self.client:
            with self.scope:
                try:
                    with anyio.fail_after(proxy._connect_timeout):
                        self.upstream = await anyio.connect_tcp(*proxy._upstream)
                except (OSError, TimeoutError):
                    proxy._upstream_failures += 1
                    logger.debug("FaultProxy %s: upstream unreachable", proxy._name, exc_info=True)
                    return
                async with self.upstream, anyio.create_task_group() as task_group:
                    self.task_group = task_group
                    self._states = {}  # draw afresh, now that timers can start
                    self.refresh()
                    up_send, up_receive = anyio.create_memory_object_stream[_Chunk](_QUEUE_CHUNKS)
                    down_send, down_receive = anyio.create_memory_object_stream[_Chunk](
                        _QUEUE_CHUNKS
                    )
                    task_group.start_soon(self._read, self.client, up_send)
                    task_group.start_soon(self._write, up_receive, self.upstream, "upstream")
                    task_group.start_soon(self._read, self.upstream, down_send)
                    task_group.start_soon(self._write, down_receive, self.client, "downstream")
                self.task_group = None  # no timers once the pumps have stopped

    async def _read(self, source: SocketStream, queue: MemoryObjectSendStream[_Chunk]) -> None:
        async with queue:
            while True:
                try:
                    data = await source.receive(_READ_SIZE)
                except anyio.EndOfStream:
                    data = b""
                except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
                    self.close()
                    return
                try:
                    await queue.send((current_time(), data))
                except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                    return
                if not data:
                    return

    async def _write(
        self,
        queue: MemoryObjectReceiveStream[_Chunk],
        target: SocketStream,
        direction: str,
    ) -> None:
        try:
            async with queue:
                async for arrival, data in queue:
                    if not await self._pass_black_hole(direction):
                        continue  # dropped (the close too: only the timeout ends the link)
                    if not data:
                        await self._end(target, direction)
                        return
                    await self._delay(arrival, direction)
                    if not await self._deliver(data, target, direction):
                        self.close()
                        return
        except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
            self.close()

    async def _pass_black_hole(self, direction: str) -> bool:
        """Wait while a holding timeout toxic applies; False when the chunk is dropped."""
        while True:
            hole = next((t for t in self._active[direction] if isinstance(t, TimeoutToxic)), None)
            if hole is None:
                return True
            if hole.timeout > 0:
                return False
            await self._changed.wait()

    async def _delay(self, arrival: float, direction: str) -> None:
        rng = self.proxy._rng
        delay = 0.0
        for toxic in self._active[direction]:
            if isinstance(toxic, LatencyToxic):
                extra = toxic.latency
                if toxic.jitter:
                    extra += rng.uniform(-toxic.jitter, toxic.jitter)
                delay += max(0.0, extra)
        if delay > 0.0:
            wait = arrival + delay - current_time()
            if wait > 0.0:
                await anyio.sleep(wait)

    async def _deliver(self, data: bytes, target: SocketStream, direction: str) -> bool:
        """Send one chunk through slicer, limit and bandwidth; False when the link must close."""
        active = self._active[direction]
        slicer = next((t for t in active if isinstance(t, SlicerToxic)), None)
        pieces = [data] if slicer is None else _slice(data, slicer, self.proxy._rng)
        for number, piece in enumerate(pieces):
            if number and slicer is not None and slicer.delay:
                await anyio.sleep(slicer.delay)
            active = self._active[direction]
            keep_open = True
            for toxic in active:
                if isinstance(toxic, LimitDataToxic):
                    state = self._states[toxic]
                    room = toxic.bytes - state.count[direction]
                    if len(piece) >= room:
                        piece = piece[: max(room, 0)]
                        keep_open = False
                    state.count[direction] += len(piece)
            bandwidth = [t for t in active if isinstance(t, BandwidthToxic)]
            if bandwidth:
                toxic = min(bandwidth, key=lambda t: t.bytes_per_second)
                await self._paced_send(piece, target, direction, toxic)
            elif piece:
                await target.send(piece)
                self.proxy._bytes[direction] += len(piece)
            if not keep_open:
                return False
        return True

    async def _paced_send(
        self, data: bytes, target: SocketStream, direction: str, toxic: BandwidthToxic
    ) -> None:
        state = self._states[toxic]
        rate = toxic.bytes_per_second
        step = max(1, int(rate * _PACING_SECONDS))
        for start in range(0, len(data), step):
            piece = data[start : start + step]
            now = current_time()
            ready = state.next_time[direction]
            if ready > now:
                await anyio.sleep(ready - now)
                now = ready
            await target.send(piece)
            self.proxy._bytes[direction] += len(piece)
            state.next_time[direction] = now + len(piece) / rate

    async def _end(self, target: SocketStream, direction: str) -> None:
        """The sender closed: pass the close on (late, with a slow_close toxic)."""
        delay = sum(t.delay for t in self._active[direction] if isinstance(t, SlowCloseToxic))
        if delay:
            await anyio.sleep(delay)
        try:
            await target.send_eof()
        except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
            self.close()


def _slice(data: bytes, toxic: SlicerToxic, rng: random.Random) -> list[bytes]:
    pieces = []
    start = 0
    while start < len(data):
        size = toxic.average_size
        if toxic.size_variation:
            size += rng.randint(-toxic.size_variation, toxic.size_variation)
        size = max(1, size)
        pieces.append(data[start : start + size])
        start += size
    return pieces
