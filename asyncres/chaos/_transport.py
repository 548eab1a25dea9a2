"""`ChaosTransport`: HTTP-level faults injected between an httpx client and its transport."""

from __future__ import annotations

import random
import sys
from collections.abc import AsyncIterator, Iterable
from types import ModuleType
from typing import Any

import anyio
import anyio.lowlevel

from .._events import Listener, emit
from .._setting import Setting
from ._events import FaultInjected
from ._http import (
    DISCONNECTS,
    ChaosTransportStatistics,
    HttpDisconnectFault,
    HttpFault,
    HttpLatencyFault,
    HttpStatusFault,
    HttpTruncateFault,
)
from ._inject import make_rng
from ._switch import check_bool

try:
    import httpx
except ImportError:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "asyncres.chaos.ChaosTransport needs httpx: pip install 'asyncres[httpx]'"
    ) from None

__all__ = ["ChaosTransport"]


class ChaosTransport(httpx.AsyncBaseTransport):
    """An httpx transport that injects HTTP faults around a real inner transport.

    ::

        transport = ChaosTransport(
            httpx.AsyncHTTPTransport(),
            faults=[HttpStatusFault(503, retry_after=1, rate=0.2), HttpLatencyFault(0.3)],
            seed=7,
        )
        async with httpx.AsyncClient(transport=transport) as client: ...

    For each request every enabled fault whose ``match`` accepts the request draws against
    its ``rate`` (in list order, from the transport's generator, so ``seed`` replays a
    run). Then, of the faults that fired: the first `HttpStatusFault` or a
    `HttpDisconnectFault` on ``connect``/``write`` answers at once (the server never sees
    the request); otherwise the request goes to ``inner``, ``read``/``close`` disconnects
    discard its answer, latency faults hold it back, and a `HttpTruncateFault` cuts its
    body. Faults (`add`, `remove`, `clear`, and each fault's live knobs), the ``enabled``
    switch and the generator (``rng``) can change while requests flow; ``inner`` and
    ``name`` are read-only.

    The exceptions raised are those of the httpx module the request comes from, so the
    transport also serves the ``httpx2`` fork. ``inner`` defaults to
    ``httpx.AsyncHTTPTransport()``; closing this transport closes it.
    """

    __module__ = "asyncres.chaos"

    inner: Setting[httpx.AsyncBaseTransport] = Setting()
    name: Setting[str | None] = Setting()

    def __init__(
        self,
        inner: httpx.AsyncBaseTransport | None = None,
        /,
        *,
        faults: Iterable[HttpFault] = (),
        enabled: bool = True,
        seed: int | None = None,
        rng: random.Random | None = None,
        name: str | None = None,
        listeners: Iterable[Listener] = (),
    ) -> None:
        if inner is None:
            inner = httpx.AsyncHTTPTransport()
        elif not callable(getattr(inner, "handle_async_request", None)):
            raise ValueError(f"`inner` must be an async httpx transport, got {inner!r}")
        self._inner = inner
        self._faults: tuple[HttpFault, ...] = ()
        for fault in faults:
            self.add(fault)
        self._enabled = check_bool("enabled", enabled)
        self._rng = make_rng(seed, rng)
        self._name = name
        self._listeners = tuple(listeners)
        self._requests = 0
        self._injected = 0

    def __repr__(self) -> str:
        enabled = "" if self._enabled else ", enabled=False"
        return f"ChaosTransport({self._inner!r}, faults={list(self._faults)!r}{enabled})"

    @property
    def faults(self) -> tuple[HttpFault, ...]:
        """The faults, in the order they are drawn."""
        return self._faults

    def add(self, fault: HttpFault) -> HttpFault:
        """Add a fault (effective from the next request) and return it."""
        if not isinstance(fault, HttpFault):
            raise ValueError(f"`fault` must be an HttpFault, got {fault!r}")
        if fault not in self._faults:
            self._faults = (*self._faults, fault)
        return fault

    def remove(self, fault: HttpFault) -> None:
        """Remove a fault (``ValueError`` if it is not there)."""
        if fault not in self._faults:
            raise ValueError(f"`fault` {fault!r} is not in this transport")
        self._faults = tuple(f for f in self._faults if f is not fault)

    def clear(self) -> None:
        """Remove every fault."""
        self._faults = ()

    @property
    def rng(self) -> random.Random:
        """The generator the faults draw from; settable (to reseed a run)."""
        return self._rng

    @rng.setter
    def rng(self, value: random.Random) -> None:
        self._rng = make_rng(None, value)

    @property
    def enabled(self) -> bool:
        """When False the transport forwards every request untouched."""
        return self._enabled

    @enabled.setter
    def enabled(self, value: bool) -> None:
        self._enabled = check_bool("enabled", value)

    def statistics(self) -> ChaosTransportStatistics:
        """Requests seen while enabled, and how many got at least one fault."""
        return ChaosTransportStatistics(requests=self._requests, injected=self._injected)

    async def aclose(self) -> None:
        """Close the inner transport."""
        await self._inner.aclose()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` through the inner transport, injecting the faults that fire."""
        faults = self._faults
        if not self._enabled or not faults:
            return await self._inner.handle_async_request(request)
        self._requests += 1
        draw = self._rng.random
        fired = [
            fault
            for fault in faults
            if fault._enabled
            and (fault._match is None or fault._match(request))
            and (fault._rate >= 1.0 or draw() < fault._rate)
        ]
        if not fired:
            return await self._inner.handle_async_request(request)
        self._injected += 1
        module = _httpx_module(request)
        for fault in fired:
            if isinstance(fault, HttpStatusFault):
                self._emit(fault, fault._status)
                await anyio.lowlevel.checkpoint()
                return module.Response(  # type: ignore[no-any-return]
                    fault._status,
                    headers=fault.response_headers(),
                    content=fault._content,
                    request=request,
                )
            if isinstance(fault, HttpDisconnectFault) and not DISCONNECTS[fault._when][2]:
                self._emit(fault, fault._when)
                await anyio.lowlevel.checkpoint()
                raise _disconnect_error(module, fault._when)

        response = await self._inner.handle_async_request(request)
        try:
            for fault in fired:
                if isinstance(fault, HttpDisconnectFault):
                    self._emit(fault, fault._when)
                    raise _disconnect_error(module, fault._when)
            delay = 0.0
            body_delay = 0.0
            stall_at: int | None = None
            truncate: HttpTruncateFault | None = None
            for fault in fired:
                if isinstance(fault, HttpLatencyFault):
                    seconds = fault.delay(self._rng)
                    self._emit(fault, seconds)
                    if fault._where == "headers":
                        delay += seconds
                    else:
                        body_delay += seconds
                        after = fault._after
                        stall_at = after if stall_at is None else min(stall_at, after)
                elif isinstance(fault, HttpTruncateFault) and truncate is None:
                    self._emit(fault, fault._after)
                    truncate = fault
            if delay:
                await anyio.sleep(delay)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await response.aclose()
            raise
        if not body_delay and truncate is None:
            return response
        headers = response.headers
        expected = headers.get("content-length")
        if truncate is not None and not truncate._error:
            headers = headers.copy()
            for name in ("content-length", "transfer-encoding"):
                if name in headers:
                    del headers[name]
            headers["connection"] = "close"
        stream = _stream_class(module)(
            response.stream,
            module,
            body_delay,
            stall_at or 0,
            None if truncate is None else truncate._after,
            truncate is not None and truncate._error,
            expected,
        )
        return module.Response(  # type: ignore[no-any-return]
            response.status_code,
            headers=headers,
            stream=stream,
            extensions=response.extensions,
            request=request,
        )

    def _emit(self, fault: HttpFault, detail: object) -> None:
        emit(self._listeners, FaultInjected(fault._name or self._name, fault.kind, detail))


def _httpx_module(request: Any) -> ModuleType:
    """The httpx module (``httpx`` or the ``httpx2`` fork) that built ``request``."""
    module = sys.modules.get(type(request).__module__.partition(".")[0])
    if module is None or not hasattr(module, "AsyncByteStream"):
        return httpx
    return module


def _disconnect_error(module: ModuleType, when: str) -> Exception:
    name, message, _ = DISCONNECTS[when]
    error: Exception = getattr(module, name)(message)
    return error


_STREAM_CLASSES: dict[str, type[Any]] = {}


def _stream_class(module: ModuleType) -> type[Any]:
    """A stream wrapper deriving from ``module.AsyncByteStream`` (httpx checks the type)."""
    cls = _STREAM_CLASSES.get(module.__name__)
    if cls is None:
        cls = type("ChaosByteStream", (_ChaosStream, module.AsyncByteStream), {"__slots__": ()})
        _STREAM_CLASSES[module.__name__] = cls
    return cls


class _ChaosStream:
    """A response body that stalls once (before byte ``stall_at``) and/or stops after N bytes."""

    __slots__ = ("_after", "_delay", "_error", "_expected", "_inner", "_module", "_stall_at")

    def __init__(
        self,
        inner: Any,
        module: ModuleType,
        delay: float,
        stall_at: int,
        after: int | None,
        error: bool,
        expected: str | None,
    ) -> None:
        self._inner = inner
        self._module = module
        self._delay = delay
        self._stall_at = stall_at
        self._after = after
        self._error = error
        self._expected = expected

    async def __aiter__(self) -> AsyncIterator[bytes]:
        delay, stall_at, after = self._delay, self._stall_at, self._after
        stalled = not delay
        if not stalled and stall_at == 0:
            await anyio.sleep(delay)
            stalled = True
        received = 0
        cut = False
        # The inner body is always read to its end: leaving httpcore's generators half-way
        # would leak them (trio warns), and the pooled connection stays usable.
        async for chunk in self._inner:
            if cut:
                continue
            if after is not None and received + len(chunk) > after:
                chunk = chunk[: after - received]
                cut = True
            if not stalled and received + len(chunk) > stall_at:
                head = chunk[: stall_at - received]
                if head:
                    received += len(head)
                    yield head
                await anyio.sleep(delay)
                stalled = True
                chunk = chunk[len(head) :]
            if chunk:
                received += len(chunk)
                yield chunk
        if cut and self._error:
            expected = self._expected
            detail = (
                f"received {received} bytes, expected {expected}"
                if expected is not None
                else "incomplete chunked read"
            )
            raise self._module.RemoteProtocolError(
                f"peer closed connection without sending complete message body: {detail} (injected)"
            )

    async def aclose(self) -> None:
        await self._inner.aclose()
