"""Health: cheap shallow checks and cached, single-flight deep checks, as ASGI middleware.

``GET /healthz`` (shallow) answers from the process alone: no dependency is touched, so it
stays as fast as the event loop under any load. ``GET /readyz`` (deep) runs the registered
checks concurrently, each with its own timeout, and caches the result for ``ttl`` seconds;
while a round runs, every other probe waits for that round instead of starting one (a
thousand probes cost one round). Responses follow the IETF draft "Health Check Response
Format for HTTP APIs": ``application/health+json``, ``status`` ``pass``/``warn``/``fail``
and per-check details; HTTP 200 unless the status is ``fail`` (503).

**Fail open on shared dependencies.** A check listed in ``warn_only`` can only warn: when
the database every instance shares is down, each instance's readiness failing at once
would take the whole fleet out of the load balancer — worse than serving errors for a
while. List there the checks of dependencies the instances share; leave critical the ones
that are the instance's own (its disk, its connection pool's configuration).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import anyio

from .. import _validation
from ._deadline import ASGIApp, Receive, Scope, Send, checked_app, reply

__all__ = ["Health", "HealthStatistics"]

Check = Callable[[], Awaitable[Any]]

_STATUS_WORDS = {
    "pass": "pass",
    "ok": "pass",
    "up": "pass",
    "healthy": "pass",
    "warn": "warn",
    "degraded": "warn",
    "fail": "fail",
    "down": "fail",
    "unhealthy": "fail",
}
_RANK = {"pass": 0, "warn": 1, "fail": 2}


@dataclass(frozen=True, slots=True)
class HealthStatistics:
    """A snapshot of a `Health` middleware's counters since it was created."""

    __module__ = "asyncres.asgi"

    #: Shallow and deep probes answered.
    shallow: int
    deep: int
    #: Rounds of deep checks run (each runs every check once), and deep answers from cache.
    rounds: int
    cached: int


def _status_of(value: Any) -> str:
    """A check's outcome as pass/warn/fail: a ``status`` word, an ``ok`` flag, or truthiness."""
    status = getattr(value, "status", None)
    if status is None and isinstance(value, Mapping):
        status = value.get("status")
    if isinstance(status, str) and status.lower() in _STATUS_WORDS:
        return _STATUS_WORDS[status.lower()]
    ok = getattr(value, "ok", None)
    if isinstance(ok, bool):
        return "pass" if ok else "fail"
    return "pass" if value else "fail"


class Health:
    """Serve ``shallow_path`` and ``deep_path`` health endpoints in front of ``app``.

    ``checks`` maps a name to an ``async def`` (a pool's ``health``, an HTTP ping, anything)
    whose result passes when truthy (or whose ``status``/``ok`` says so) and fails when it
    is falsy, raises, or takes longer than ``check_timeout``. Every other request goes to
    ``app`` unchanged. ``stale_when`` (`protect` passes the `Shedder`'s ``under_pressure``):
    while it returns True, deep probes answer from the last round however old ("prioritise
    shallow checks during hard times"); a round runs only when none ever did.
    """

    __slots__ = (
        "_app",
        "_cached",
        "_cached_at",
        "_check_timeout",
        "_checks",
        "_counts",
        "_deep_path",
        "_round",
        "_shallow_path",
        "_stale_when",
        "_ttl",
        "_warn_only",
    )

    __module__ = "asyncres.asgi"

    def __init__(
        self,
        app: ASGIApp,
        *,
        checks: Mapping[str, Check] | None = None,
        shallow_path: str = "/healthz",
        deep_path: str = "/readyz",
        check_timeout: float = 2.0,
        ttl: float = 5.0,
        warn_only: Iterable[str] = (),
        stale_when: Callable[[], bool] | None = None,
    ) -> None:
        self._app = checked_app(app)
        checks = dict(checks or {})
        for name, check in checks.items():
            if not isinstance(name, str) or not name:
                raise ValueError(f"`checks` names must be non-empty strings, got {name!r}")
            if not callable(check):
                raise ValueError(f"`checks[{name!r}]` must be an async callable, got {check!r}")
        self._checks = checks
        for label, path in (("shallow_path", shallow_path), ("deep_path", deep_path)):
            if not isinstance(path, str) or not path.startswith("/"):
                raise ValueError(f"`{label}` must be a path starting with '/', got {path!r}")
        if shallow_path == deep_path:
            raise ValueError("`shallow_path` and `deep_path` must differ")
        self._shallow_path = shallow_path
        self._deep_path = deep_path
        self._check_timeout = _validation.finite_positive("check_timeout", check_timeout)
        self._ttl = _validation.non_negative("ttl", ttl)
        if math.isinf(self._ttl):
            raise ValueError("`ttl` must be finite, got inf")
        warn_only = frozenset(warn_only)
        unknown = sorted(warn_only - set(checks))
        if unknown:
            raise ValueError(f"`warn_only` names checks that do not exist: {unknown}")
        self._warn_only = warn_only
        if stale_when is not None and not callable(stale_when):
            raise ValueError(f"`stale_when` must be a callable, got {stale_when!r}")
        self._stale_when = stale_when
        self._cached: tuple[int, bytes] | None = None
        self._cached_at = -math.inf
        self._round: tuple[anyio.Event, list[tuple[int, bytes]]] | None = None
        self._counts = {"shallow": 0, "deep": 0, "rounds": 0, "cached": 0}

    def __repr__(self) -> str:
        return f"Health({self._app!r}, checks={sorted(self._checks)})"

    def statistics(self) -> HealthStatistics:
        return HealthStatistics(**self._counts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("method", "GET") in ("GET", "HEAD"):
            path = scope.get("path")
            if path == self._shallow_path:
                self._counts["shallow"] += 1
                await _reply(send, 200, _SHALLOW_BODY)
                return
            if path == self._deep_path:
                self._counts["deep"] += 1
                status, body = await self.deep()
                await _reply(send, status, body)
                return
        await self._app(scope, receive, send)

    async def deep(self) -> tuple[int, bytes]:
        """The deep answer (HTTP status, health+json body): cached, or one shared round."""
        while True:
            cached = self._cached
            if cached is not None and (
                anyio.current_time() - self._cached_at < self._ttl
                or (self._stale_when is not None and self._stale_when())
            ):
                self._counts["cached"] += 1
                return cached
            running = self._round
            if running is None:
                break
            theirs, their_answer = running
            await theirs.wait()  # someone is running the checks: share their round
            if their_answer:
                self._counts["cached"] += 1
                return their_answer[0]
            # Their round was cancelled before it finished: run one ourselves.
        box: list[tuple[int, bytes]] = []
        event = anyio.Event()
        self._round = (event, box)
        try:
            answer = await self._run_round()
            box.append(answer)
            self._cached, self._cached_at = answer, anyio.current_time()
            return answer
        finally:
            self._round = None
            event.set()

    async def _run_round(self) -> tuple[int, bytes]:
        self._counts["rounds"] += 1
        results: dict[str, dict[str, Any]] = {}

        async def run(name: str, check: Check) -> None:
            started = anyio.current_time()
            detail: dict[str, Any] = {"componentId": name}
            with anyio.move_on_after(self._check_timeout) as scope:
                try:
                    status = _status_of(await check())
                except Exception as exc:  # a failing check is an answer, not a crash
                    status = "fail"
                    detail["output"] = f"{type(exc).__name__}: {exc}"
            if scope.cancelled_caught:
                status = "fail"
                detail["output"] = f"timed out after {self._check_timeout:g} s"
            if status == "fail" and name in self._warn_only:
                status = "warn"  # a shared dependency: fail open
            detail["status"] = status
            detail["observedValue"] = round(anyio.current_time() - started, 6)
            detail["observedUnit"] = "s"
            detail["time"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            results[name] = detail

        async with anyio.create_task_group() as tg:
            for name, check in self._checks.items():
                tg.start_soon(run, name, check)
        overall = max(
            (d["status"] for d in results.values()), key=_RANK.__getitem__, default="pass"
        )
        body = {
            "status": overall,
            "checks": {f"{name}:responseTime": [results[name]] for name in sorted(results)},
        }
        return (503 if overall == "fail" else 200), json.dumps(body).encode()


_SHALLOW_BODY = json.dumps({"status": "pass"}).encode()


async def _reply(send: Send, status: int, body: bytes) -> None:
    await reply(send, status, body, b"application/health+json", (b"cache-control", b"no-store"))
