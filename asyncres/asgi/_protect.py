"""protect(): the three asgi pieces around an app, in the order that makes each one right."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .._events import Listener
from .._limit import AdaptiveLimit
from ._deadline import ASGIApp, Deadline, Receive, Scope, Send
from ._health import Check, Health
from ._shedder import Shedder

__all__ = ["Protected", "protect"]


class Protected:
    """An app wrapped by `protect`: ``Health(Deadline(Shedder(app)))``, as one ASGI app.

    The pieces stay reachable for their statistics: ``.health``, ``.deadline``, ``.shedder``.
    """

    __slots__ = ("_outer", "deadline", "health", "shedder")

    __module__ = "asyncres.asgi"

    health: Health
    deadline: Deadline
    shedder: Shedder

    def __init__(self, health: Health, deadline: Deadline, shedder: Shedder) -> None:
        self.health = health
        self.deadline = deadline
        self.shedder = shedder
        self._outer = health.__call__

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._outer(scope, receive, send)

    def statistics(self) -> dict[str, Any]:
        """The three pieces' snapshots: ``{"health": ..., "deadline": ..., "shedder": ...}``."""
        return {
            "health": self.health.statistics(),
            "deadline": self.deadline.statistics(),
            "shedder": self.shedder.statistics(),
        }

    def __repr__(self) -> str:
        return f"<Protected {self.health!r}>"


def protect(
    app: ASGIApp,
    *,
    checks: Mapping[str, Check] | None = None,
    warn_only: Iterable[str] = (),
    limit: int | AdaptiveLimit | None = None,
    max_queued: int = 256,
    target: float = 0.005,
    interval: float = 0.1,
    max_timeout: float = 30.0,
    routes: Mapping[str, float] | None = None,
    priority_header: str | None = None,
    shallow_path: str = "/healthz",
    deep_path: str = "/readyz",
    check_timeout: float = 2.0,
    ttl: float = 5.0,
    name: str | None = None,
    listeners: Iterable[Listener] = (),
) -> Protected:
    """Wrap ``app`` in `Health`, `Deadline` and `Shedder`, outermost first.

    Health first: its endpoints are never shed nor timed out, and while the Shedder is
    under pressure deep checks answer from cache. Deadline next: a request whose budget is
    spent is answered 504 before it takes a queue place, and the time a request waits in
    the queue counts against its caller's budget. The Shedder last, right around the app.
    Every option is the piece's own (same name, same default).
    """
    listeners = tuple(listeners)
    shedder = Shedder(
        app,
        limit=limit,
        max_queued=max_queued,
        target=target,
        interval=interval,
        priority_header=priority_header,
        exempt=(shallow_path, deep_path),
        name=name,
        listeners=listeners,
    )
    deadline = Deadline(
        shedder, max_timeout=max_timeout, routes=routes, name=name, listeners=listeners
    )
    health = Health(
        deadline,
        checks=checks,
        shallow_path=shallow_path,
        deep_path=deep_path,
        check_timeout=check_timeout,
        ttl=ttl,
        warn_only=warn_only,
        stale_when=shedder.under_pressure,
    )
    return Protected(health, deadline, shedder)
