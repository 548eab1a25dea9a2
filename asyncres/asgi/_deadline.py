"""Deadline: the backend side of the caller's timeout, as ASGI 3 middleware.

The caller's remaining budget arrives in ``Request-Timeout`` (seconds, what
`asyncres.httpx.ResilientTransport` sends) or ``grpc-timeout`` (gRPC's ``<digits><unit>``).
The app runs inside an asyncres deadline of ``min(caller's budget, the server's maximum for
the route)``, so `asyncres.remaining()` and the `asyncres.db` guard's statement timeouts see
it. A request that arrives with no budget left is answered 504 without running the app;
when the deadline fires mid-request the app is cancelled (its database statement with it)
and, if no response has started, the client gets a 504. A malformed header is ignored: the
server's maximum applies, never a 500.
"""

from __future__ import annotations

import math
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any

from .. import _validation
from .._deadline import DeadlineScope
from .._events import Listener, TimeoutExpired, emit
from .._exceptions import TimeoutExceededError

__all__ = ["ASGIApp", "Deadline", "DeadlineStatistics"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Header = tuple[bytes, bytes]

_GRPC_TIMEOUT = re.compile(rb"^([0-9]{1,8})([HMSmun])$")
_GRPC_UNITS = {b"H": 3600.0, b"M": 60.0, b"S": 1.0, b"m": 1e-3, b"u": 1e-6, b"n": 1e-9}
# Longer than any budget a caller could mean: a header beyond it is a mistake, not a wish.
_MAX_HEADER_SECONDS = 10.0 * 365 * 24 * 3600


@dataclass(frozen=True, slots=True)
class DeadlineStatistics:
    """A snapshot of a `Deadline` middleware's counters since it was created."""

    __module__ = "asyncres.asgi"

    #: HTTP requests seen.
    requests: int
    #: Requests that carried a budget (a valid ``Request-Timeout`` or ``grpc-timeout``).
    with_budget: int
    #: Requests answered 504 at once: their budget was spent before they arrived.
    expired_on_arrival: int
    #: Requests whose deadline fired while the app ran: the app was cancelled.
    cancelled: int


class Deadline:
    """Run each HTTP request inside the caller's deadline (ASGI 3 middleware).

    ``Deadline(app, max_timeout=30.0, routes={"/reports": 120.0})``: the budget is the
    caller's (``header``, default ``Request-Timeout``; then ``grpc-timeout`` when
    ``grpc=True``), capped by the server's maximum for the longest matching route prefix in
    ``routes``, else ``max_timeout``. Lifespan and websocket scopes pass through untouched.
    Emits `TimeoutExpired` (``name``, the budget) when a request's deadline fires.
    """

    __slots__ = (
        "_app",
        "_cancelled",
        "_expired",
        "_grpc",
        "_header",
        "_listeners",
        "_max_timeout",
        "_name",
        "_requests",
        "_routes",
        "_with_budget",
    )

    __module__ = "asyncres.asgi"

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_timeout: float = 30.0,
        routes: Mapping[str, float] | None = None,
        header: str = "Request-Timeout",
        grpc: bool = True,
        name: str | None = None,
        listeners: Iterable[Listener] = (),
    ) -> None:
        self._app = checked_app(app)
        self._max_timeout = _validation.finite_positive("max_timeout", max_timeout)
        checked: list[tuple[str, float]] = []
        for prefix, seconds in (routes or {}).items():
            if not isinstance(prefix, str) or not prefix.startswith("/"):
                raise ValueError(
                    f"`routes` keys must be path prefixes starting with '/', got {prefix!r}"
                )
            checked.append((prefix, _validation.finite_positive(f"routes[{prefix!r}]", seconds)))
        # Longest prefix first: the most specific route wins.
        self._routes = tuple(sorted(checked, key=lambda item: len(item[0]), reverse=True))
        self._header = _validation.header_name("header", header)
        if not isinstance(grpc, bool):
            raise ValueError(f"`grpc` must be a bool, got {grpc!r}")
        self._grpc = grpc
        self._name = name
        listeners = _validation.listeners(listeners)
        self._listeners = listeners
        self._requests = self._with_budget = self._expired = self._cancelled = 0

    def __repr__(self) -> str:
        return f"Deadline({self._app!r}, max_timeout={self._max_timeout!r})"

    def statistics(self) -> DeadlineStatistics:
        return DeadlineStatistics(
            requests=self._requests,
            with_budget=self._with_budget,
            expired_on_arrival=self._expired,
            cancelled=self._cancelled,
        )

    def server_max(self, path: str) -> float:
        """The server's maximum for ``path``: the longest matching route prefix's, or
        ``max_timeout``."""
        for prefix, seconds in self._routes:
            if path.startswith(prefix):
                return seconds
        return self._max_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        self._requests += 1
        budget = self.server_max(scope.get("path", "/")) if self._routes else self._max_timeout
        caller = self._caller_budget(scope.get("headers", ()))
        if caller is not None:
            self._with_budget += 1
            if caller <= 0.0:
                self._expired += 1
                await _reply_504(send, "deadline expired before the request arrived")
                return
            if caller < budget:
                budget = caller
        started = False

        # A plain function handing back the server's awaitable: no coroutine of its own
        # per message. (Not any message: extensions such as `http.response.debug` may
        # come before the start.)
        def watched_send(message: Message) -> Awaitable[None]:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            return send(message)

        scope_ = DeadlineScope(budget, math.inf)  # `budget` is checked: skip timeout()'s check
        try:
            with scope_:
                await self._app(scope, receive, watched_send)
        except TimeoutExceededError:
            if not scope_.expired:
                raise  # the app's own timeout: its error to answer
            self._cancelled += 1
            emit(self._listeners, TimeoutExpired(self._name, budget))
            if not started:
                await _reply_504(send, "deadline exceeded while serving the request")
            # A started response cannot change its status: ending here lets the server
            # close the connection, which tells the client the body is incomplete.

    def _caller_budget(self, headers: Iterable[tuple[bytes, bytes]]) -> float | None:
        wanted = self._header
        size = len(wanted)
        grpc = self._grpc
        grpc_value: bytes | None = None
        for key, value in headers:
            # Servers send names lowercased (ASGI asks them to): compare as is first, and
            # lowercase only a name of the right length.
            if key == wanted or (len(key) == size and key.lower() == wanted):
                parsed = _seconds(value)
                if parsed is not None:
                    return parsed
            elif grpc and len(key) == 12 and key.lower() == b"grpc-timeout":
                grpc_value = value
        if grpc_value is not None:
            match = _GRPC_TIMEOUT.match(grpc_value.strip())
            if match:
                return int(match.group(1)) * _GRPC_UNITS[match.group(2)]
        return None


def checked_app(app: ASGIApp) -> ASGIApp:
    """``app``, refused with a ValueError unless it can be called as an ASGI app."""
    if not callable(app):
        raise ValueError(f"`app` must be an ASGI application (callable), got {app!r}")
    return app


def _seconds(value: bytes) -> float | None:
    """A ``Request-Timeout`` value in seconds, or ``None`` when it is not one."""
    try:
        seconds = float(value)  # bytes: ASCII only, surrounding whitespace allowed
    except ValueError:
        return None
    if math.isnan(seconds) or seconds > _MAX_HEADER_SECONDS:
        return None
    return max(seconds, 0.0)


async def reply(send: Send, status: int, body: bytes, content_type: bytes, *extra: Header) -> None:
    """Send a whole response: status, ``content-type``, ``content-length``, the body."""
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": [*headers, *extra]})
    await send({"type": "http.response.body", "body": body})


async def _reply_504(send: Send, detail: str) -> None:
    await reply(send, 504, detail.encode(), b"text/plain; charset=utf-8")
