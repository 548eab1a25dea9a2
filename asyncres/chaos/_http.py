"""HTTP-level faults for `ChaosTransport` (this module does not import httpx).

Each fault has an injection ``rate``, an ``enabled`` switch and an optional ``match``
predicate on the request; all three — and a latency's ``seconds`` and ``jitter`` — can change
while requests flow. The other options are read-only after construction.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Literal

from .. import _validation
from .._setting import Setting
from ._inject import Distribution, check_latency
from ._switch import check_bool

if TYPE_CHECKING:
    import random

    import httpx

__all__ = [
    "ChaosTransportStatistics",
    "HttpDisconnectFault",
    "HttpFault",
    "HttpLatencyFault",
    "HttpStatusFault",
    "HttpTruncateFault",
]


@dataclass(frozen=True, slots=True)
class ChaosTransportStatistics:
    """A snapshot of a `ChaosTransport`'s counters."""

    __module__ = "asyncres.chaos"

    #: Requests that went through the transport while it was enabled.
    requests: int
    #: Requests on which at least one fault fired.
    injected: int


def _predicate(
    match: Callable[[httpx.Request], bool] | None,
) -> Callable[[httpx.Request], bool] | None:
    if match is not None and not callable(match):
        raise ValueError(f"`match` must be a predicate on the request, got {match!r}")
    return match


class HttpFault:
    """Base class of the faults a `ChaosTransport` injects.

    ``rate``: the fraction of requests (0..1) on which the fault fires; ``enabled``: the
    switch a `Schedule` turns; ``match``: an optional predicate on the ``httpx.Request``
    (e.g. ``lambda r: r.url.path.startswith("/orders")``). All three are settable at
    runtime; ``name`` is read-only.
    """

    __slots__ = ("_enabled", "_match", "_name", "_rate")

    __module__ = "asyncres.chaos"

    kind: ClassVar[str] = ""

    name: Setting[str | None] = Setting()

    def __init__(
        self,
        *,
        rate: float = 1.0,
        enabled: bool = True,
        match: Callable[[httpx.Request], bool] | None = None,
        name: str | None = None,
    ) -> None:
        self._rate = _validation.ratio("rate", rate)
        self._enabled = check_bool("enabled", enabled)
        self._match = _predicate(match)
        self._name = name

    @property
    def match(self) -> Callable[[httpx.Request], bool] | None:
        """The predicate a request must pass for the fault to draw (``None``: every request)."""
        return self._match

    @match.setter
    def match(self, value: Callable[[httpx.Request], bool] | None) -> None:
        self._match = _predicate(value)

    @property
    def rate(self) -> float:
        """The fraction of requests on which the fault fires."""
        return self._rate

    @rate.setter
    def rate(self, value: float) -> None:
        self._rate = _validation.ratio("rate", value)

    @property
    def enabled(self) -> bool:
        """Whether the fault may fire at all."""
        return self._enabled

    @enabled.setter
    def enabled(self, value: bool) -> None:
        self._enabled = check_bool("enabled", value)

    def _describe(self) -> list[str]:
        return []

    def __repr__(self) -> str:
        parts = self._describe()
        parts.append(f"rate={self._rate!r}")
        if not self._enabled:
            parts.append("enabled=False")
        if self._match is not None:
            parts.append(f"match={getattr(self._match, '__name__', self._match)!s}")
        if self._name:
            parts.append(f"name={self._name!r}")
        return f"{type(self).__name__}({', '.join(parts)})"


class HttpStatusFault(HttpFault):
    """Answer with ``status`` instead of sending the request (it never reaches the server).

    ``retry_after`` adds a ``Retry-After`` header: seconds (integers as the RFC wants;
    fractions are sent as written, handy in fast tests) or a string sent verbatim (an
    HTTP date). ``headers`` and ``content`` complete the response.
    """

    __slots__ = ("_content", "_headers", "_retry_after", "_status")

    __module__ = "asyncres.chaos"

    kind = "http_status"

    status: Setting[int] = Setting()
    retry_after: Setting[float | str | None] = Setting()
    headers: Setting[dict[str, str]] = Setting()
    content: Setting[bytes] = Setting()

    def __init__(
        self,
        status: int = 503,
        /,
        *,
        retry_after: float | str | None = None,
        headers: Mapping[str, str] | None = None,
        content: bytes | str = b"",
        rate: float = 1.0,
        enabled: bool = True,
        match: Callable[[httpx.Request], bool] | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(rate=rate, enabled=enabled, match=match, name=name)
        self._status = _validation.count("status", status, minimum=100)
        if self._status > 599:
            raise ValueError(f"`status` must be an HTTP status code (100..599), got {status!r}")
        if retry_after is not None and not isinstance(retry_after, str):
            retry_after = _validation.non_negative("retry_after", retry_after)
            if math.isinf(retry_after):
                raise ValueError("`retry_after` must be finite, got inf")
        self._retry_after = retry_after
        self._headers = dict(headers or {})
        self._content = content.encode() if isinstance(content, str) else bytes(content)

    def _describe(self) -> list[str]:
        parts = [repr(self._status)]
        if self._retry_after is not None:
            parts.append(f"retry_after={self._retry_after!r}")
        return parts

    def response_headers(self) -> list[tuple[str, str]]:
        """The headers of the injected response."""
        headers = list(self._headers.items())
        retry_after = self._retry_after
        if retry_after is not None:
            if isinstance(retry_after, float) and retry_after.is_integer():
                shown = str(int(retry_after))
            else:
                shown = str(retry_after)
            headers.append(("Retry-After", shown))
        if self._content and not any(k.lower() == "content-type" for k, _ in headers):
            headers.append(("Content-Type", "text/plain; charset=utf-8"))
        return headers


class HttpLatencyFault(HttpFault):
    """Hold the response back: before its headers reach the client, or inside its body.

    ``where="headers"`` (default): the request reaches the server, which answers; the
    client gets the response ``seconds`` later (a slow server: work done, time lost).
    ``where="body"``: headers arrive on time, the body stalls ``seconds`` after its first
    ``after`` bytes (default 0: before its first byte); a read timeout, not a connect or
    first-byte timeout, catches it. A body no longer than ``after`` is not held. ``seconds``
    is a number or a distribution drawn from the transport's generator; ``jitter`` adds
    ``uniform(-jitter, +jitter)``.
    """

    __slots__ = ("_after", "_jitter", "_seconds", "_where")

    __module__ = "asyncres.chaos"

    kind = "http_latency"

    where: Setting[Literal["headers", "body"]] = Setting()
    after: Setting[int] = Setting()

    def __init__(
        self,
        seconds: float | Distribution,
        /,
        *,
        jitter: float = 0.0,
        where: Literal["headers", "body"] = "headers",
        after: int = 0,
        rate: float = 1.0,
        enabled: bool = True,
        match: Callable[[httpx.Request], bool] | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(rate=rate, enabled=enabled, match=match, name=name)
        self._seconds = check_latency("seconds", seconds)
        self._jitter = _validation.non_negative("jitter", jitter)
        if where not in ("headers", "body"):
            raise ValueError(f"`where` must be 'headers' or 'body', got {where!r}")
        self._where: Literal["headers", "body"] = where
        self._after = _validation.count("after", after, minimum=0)
        if self._after and where != "body":
            raise ValueError("`after` applies to where='body' only")

    @property
    def seconds(self) -> float | Distribution:
        """The delay (or its distribution); settable while requests flow."""
        return self._seconds

    @seconds.setter
    def seconds(self, value: float | Distribution) -> None:
        self._seconds = check_latency("seconds", value)

    @property
    def jitter(self) -> float:
        """The uniform spread around ``seconds``; settable while requests flow."""
        return self._jitter

    @jitter.setter
    def jitter(self, value: float) -> None:
        self._jitter = _validation.non_negative("jitter", value)

    def _describe(self) -> list[str]:
        seconds = self._seconds
        parts = [repr(seconds) if isinstance(seconds, float) else getattr(seconds, "__name__", "?")]
        if self._jitter:
            parts.append(f"jitter={self._jitter!r}")
        parts.append(f"where={self._where!r}")
        if self._after:
            parts.append(f"after={self._after!r}")
        return parts

    def delay(self, rng: random.Random) -> float:
        """Draw one delay in seconds (never negative)."""
        seconds = self._seconds
        delay = float(seconds(rng)) if callable(seconds) else seconds
        jitter = self._jitter
        if jitter:
            delay += rng.uniform(-jitter, jitter)
        return delay if delay > 0.0 else 0.0


#: What the client sees for each ``when`` of `HttpDisconnectFault`, and whether the
#: server got the request: (exception name, message, request reaches the server).
DISCONNECTS: dict[str, tuple[str, str, bool]] = {
    "connect": ("ConnectError", "[Errno 111] Connection refused (injected)", False),
    "write": ("WriteError", "[Errno 32] Broken pipe (injected)", False),
    "read": ("ReadError", "[Errno 104] Connection reset by peer (injected)", True),
    "close": (
        "RemoteProtocolError",
        "Server disconnected without sending a response. (injected)",
        True,
    ),
}


class HttpDisconnectFault(HttpFault):
    """Fail the request with the connection error a real transport raises.

    ``when`` picks the moment, and so the exception and whether the server saw the request:

    ====================  =================================  ===================
    ``when``              the client gets                    server got request
    ====================  =================================  ===================
    ``"connect"``         ``httpx.ConnectError``             no
    ``"write"``           ``httpx.WriteError``               no
    ``"read"``            ``httpx.ReadError`` (reset)        yes, and answered
    ``"close"``           ``httpx.RemoteProtocolError``      yes, and answered
    ====================  =================================  ===================

    ``"read"`` and ``"close"`` are the dangerous ones: the work was done, the answer lost,
    so only idempotent requests may be retried.
    """

    __slots__ = ("_when",)

    __module__ = "asyncres.chaos"

    kind = "http_disconnect"

    when: Setting[Literal["connect", "write", "read", "close"]] = Setting()

    def __init__(
        self,
        *,
        when: Literal["connect", "write", "read", "close"] = "connect",
        rate: float = 1.0,
        enabled: bool = True,
        match: Callable[[httpx.Request], bool] | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(rate=rate, enabled=enabled, match=match, name=name)
        if when not in DISCONNECTS:
            raise ValueError(f"`when` must be one of {sorted(DISCONNECTS)}, got {when!r}")
        self._when: Literal["connect", "write", "read", "close"] = when

    def _describe(self) -> list[str]:
        return [f"when={self._when!r}"]


class HttpTruncateFault(HttpFault):
    """Cut the response body after ``after`` bytes, as a server that dies mid-body.

    ``error=True`` (default): the client gets ``httpx.RemoteProtocolError`` while reading,
    as from a real connection closed before ``Content-Length`` bytes (or the last chunk)
    arrived. ``error=False``: the body just ends short, without ``Content-Length`` (a
    close-delimited body), which no client can detect. Bodies no longer than ``after`` pass
    whole. The server's whole body is still read (and the rest dropped), so the connection
    returns to the pool; do not truncate endless streams.
    """

    __slots__ = ("_after", "_error")

    __module__ = "asyncres.chaos"

    kind = "http_truncate"

    after: Setting[int] = Setting()
    error: Setting[bool] = Setting()

    def __init__(
        self,
        *,
        after: int = 0,
        error: bool = True,
        rate: float = 1.0,
        enabled: bool = True,
        match: Callable[[httpx.Request], bool] | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(rate=rate, enabled=enabled, match=match, name=name)
        self._after = _validation.count("after", after, minimum=0)
        self._error = check_bool("error", error)

    def _describe(self) -> list[str]:
        error = "" if self._error else ", error=False"
        return [f"after={self._after!r}{error}"]
