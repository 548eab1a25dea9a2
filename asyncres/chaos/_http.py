"""HTTP-level faults for `ChaosTransport` (this module does not import httpx).

Each fault has an injection ``rate``, an ``enabled`` switch and an optional ``match``
predicate on the request; all three can change while requests flow.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Literal

from .. import _validation
from ._inject import Distribution
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


class HttpFault:
    """Base class of the faults a `ChaosTransport` injects.

    ``rate``: the fraction of requests (0..1) on which the fault fires; ``enabled``: the
    switch a `Schedule` turns; ``match``: an optional predicate on the ``httpx.Request``
    (e.g. ``lambda r: r.url.path.startswith("/orders")``). All are settable at runtime.
    """

    __slots__ = ("_enabled", "_rate", "match", "name")

    __module__ = "asyncres.chaos"

    kind: ClassVar[str] = ""

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
        if match is not None and not callable(match):
            raise ValueError(f"`match` must be a predicate on the request, got {match!r}")
        self.match = match
        self.name = name

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
        if self.match is not None:
            parts.append(f"match={getattr(self.match, '__name__', self.match)!s}")
        if self.name:
            parts.append(f"name={self.name!r}")
        return f"{type(self).__name__}({', '.join(parts)})"


class HttpStatusFault(HttpFault):
    """Answer with ``status`` instead of sending the request (it never reaches the server).

    ``retry_after`` adds a ``Retry-After`` header: seconds (integers as the RFC wants;
    fractions are sent as written, handy in fast tests) or a string sent verbatim (an
    HTTP date). ``headers`` and ``content`` complete the response.
    """

    __slots__ = ("content", "headers", "retry_after", "status")

    __module__ = "asyncres.chaos"

    kind = "http_status"

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
        self.status = _validation.count("status", status, minimum=100)
        if self.status > 599:
            raise ValueError(f"`status` must be an HTTP status code (100..599), got {status!r}")
        if retry_after is not None and not isinstance(retry_after, str):
            retry_after = _validation.non_negative("retry_after", retry_after)
            if math.isinf(retry_after):
                raise ValueError("`retry_after` must be finite, got inf")
        self.retry_after = retry_after
        self.headers = dict(headers or {})
        self.content = content.encode() if isinstance(content, str) else bytes(content)

    def _describe(self) -> list[str]:
        parts = [repr(self.status)]
        if self.retry_after is not None:
            parts.append(f"retry_after={self.retry_after!r}")
        return parts

    def response_headers(self) -> list[tuple[str, str]]:
        """The headers of the injected response."""
        headers = list(self.headers.items())
        retry_after = self.retry_after
        if retry_after is not None:
            if isinstance(retry_after, float) and retry_after.is_integer():
                shown = str(int(retry_after))
            else:
                shown = str(retry_after)
            headers.append(("Retry-After", shown))
        if self.content and not any(k.lower() == "content-type" for k, _ in headers):
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

    __slots__ = ("after", "jitter", "seconds", "where")

    __module__ = "asyncres.chaos"

    kind = "http_latency"

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
        if not callable(seconds):
            seconds = _validation.non_negative("seconds", seconds)
        self.seconds: float | Distribution = seconds
        self.jitter = _validation.non_negative("jitter", jitter)
        if where not in ("headers", "body"):
            raise ValueError(f"`where` must be 'headers' or 'body', got {where!r}")
        self.where = where
        self.after = _validation.count("after", after, minimum=0)
        if self.after and where != "body":
            raise ValueError("`after` applies to where='body' only")

    def _describe(self) -> list[str]:
        seconds = self.seconds
        parts = [repr(seconds) if isinstance(seconds, float) else getattr(seconds, "__name__", "?")]
        if self.jitter:
            parts.append(f"jitter={self.jitter!r}")
        parts.append(f"where={self.where!r}")
        if self.after:
            parts.append(f"after={self.after!r}")
        return parts

    def delay(self, rng: random.Random) -> float:
        """Draw one delay in seconds (never negative)."""
        seconds = self.seconds
        delay = float(seconds(rng)) if callable(seconds) else seconds
        if self.jitter:
            delay += rng.uniform(-self.jitter, self.jitter)
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

    __slots__ = ("when",)

    __module__ = "asyncres.chaos"

    kind = "http_disconnect"

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
        self.when = when

    def _describe(self) -> list[str]:
        return [f"when={self.when!r}"]


class HttpTruncateFault(HttpFault):
    """Cut the response body after ``after`` bytes, as a server that dies mid-body.

    ``error=True`` (default): the client gets ``httpx.RemoteProtocolError`` while reading,
    as from a real connection closed before ``Content-Length`` bytes (or the last chunk)
    arrived. ``error=False``: the body just ends short, without ``Content-Length`` (a
    close-delimited body), which no client can detect. Bodies no longer than ``after`` pass
    whole. The server's whole body is still read (and the rest dropped), so the connection
    returns to the pool; do not truncate endless streams.
    """

    __slots__ = ("after", "error")

    __module__ = "asyncres.chaos"

    kind = "http_truncate"

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
        self.after = _validation.count("after", after, minimum=0)
        self.error = check_bool("error", error)

    def _describe(self) -> list[str]:
        error = "" if self.error else ", error=False"
        return [f"after={self.after!r}{error}"]
