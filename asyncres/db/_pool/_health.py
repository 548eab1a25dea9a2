"""`GuardedPool.health`: a shallow look at the pool's own state, or a deep round trip."""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import anyio

from .._errors import PoolExhaustedError
from ._state import OPEN, Connection, PoolStatistics

if TYPE_CHECKING:
    from ._pool import GuardedPool

__all__ = ["PoolHealth", "check"]

C = TypeVar("C")


@dataclass(frozen=True, slots=True)
class PoolHealth:
    """The answer of `GuardedPool.health`.

    ``status`` is ``"healthy"``, ``"degraded"`` (serving, but saturated or below
    ``min_size``) or ``"unhealthy"`` (closed, circuit open, cannot connect, or the deep
    check failed); ``ok`` is true unless unhealthy (use it for readiness probes).
    ``latency`` is the deep check's round trip in seconds; ``checked_at`` its time on the
    loop clock; ``cached`` says the deep result came from the cache (``health_ttl``).
    """

    __module__ = "asyncres.db"

    status: str
    reason: str
    statistics: PoolStatistics
    breaker: str | None = None
    deep: bool = False
    latency: float | None = None
    error: str | None = None
    checked_at: float | None = None
    cached: bool = False

    @property
    def ok(self) -> bool:
        """True unless the status is ``"unhealthy"``."""
        return self.status != "unhealthy"

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (for a health endpoint)."""
        stats = self.statistics
        return {
            "status": self.status,
            "ok": self.ok,
            "reason": self.reason,
            "breaker": self.breaker,
            "deep": self.deep,
            "latency": self.latency,
            "error": self.error,
            "cached": self.cached,
            "pool": {f: getattr(stats, f) for f in stats.__dataclass_fields__},
        }


@dataclass(frozen=True, slots=True)
class DeepResult:
    at: float
    latency: float | None
    error: str | None
    status: str


class HealthCache:
    """The last deep result, and the check in flight that concurrent callers share."""

    __slots__ = ("result", "running")

    def __init__(self) -> None:
        self.result: DeepResult | None = None
        self.running: anyio.Event | None = None


_RANK = {"healthy": 0, "degraded": 1, "unhealthy": 2}
_BREAKER_DOWN = frozenset({"open", "isolated"})


async def check(pool: GuardedPool[Any], deep: bool) -> PoolHealth:
    """The body of `GuardedPool.health` (see there)."""
    if not deep:
        return shallow(pool)
    cache = pool._health
    result = cache.result
    now = anyio.current_time()
    cached = True
    if result is None or now - result.at >= pool._health_ttl:
        running = cache.running
        if running is not None:
            await running.wait()
        else:
            cache.running = anyio.Event()
            try:
                cache.result = await _deep_check(pool)
            finally:
                event, cache.running = cache.running, None
                event.set()
            cached = False
        result = cache.result
        assert result is not None
    quick = shallow(pool)
    if result.status == "healthy" or _RANK[quick.status] > _RANK[result.status]:
        status, reason = quick.status, quick.reason
    else:
        status, reason = result.status, f"deep check: {result.error}"
    return PoolHealth(
        status=status,
        reason=reason,
        statistics=quick.statistics,
        breaker=quick.breaker,
        deep=True,
        latency=result.latency,
        error=result.error,
        checked_at=result.at,
        cached=cached,
    )


async def _deep_check(pool: GuardedPool[C]) -> DeepResult:
    started = anyio.current_time()
    error: str | None = None
    status = "healthy"
    try:
        with anyio.fail_after(pool._health_timeout):
            connection = await pool._acquire()
            await _release_after(pool, connection, pool._driver.ping(connection.conn))
    except PoolExhaustedError as exc:
        status, error = "degraded", f"{type(exc).__name__}: {exc}"
    except Exception as exc:
        status = "unhealthy"
        if type(exc) is TimeoutError:  # our own fail_after, not a driver's timeout
            error = f"no answer within health_timeout={pool._health_timeout:g}s"
        else:
            error = f"{type(exc).__name__}: {exc}"
    latency = anyio.current_time() - started if status == "healthy" else None
    return DeepResult(started, latency, error, status)


async def _release_after(
    pool: GuardedPool[C], connection: Connection[C], step: Awaitable[None]
) -> None:
    try:
        await step
    except BaseException as exc:
        await pool._release(connection, exc)
        raise
    await pool._release(connection, None)


def shallow(pool: GuardedPool[Any]) -> PoolHealth:
    """The health from the pool's own state alone (no I/O)."""
    stats = pool.statistics()
    breaker_state = _breaker_state(pool._breaker)
    if pool._state is not OPEN:
        status, reason = "unhealthy", f"pool is {pool._state.value}"
    elif breaker_state in _BREAKER_DOWN:
        status, reason = "unhealthy", f"circuit breaker is {breaker_state}"
    elif stats.size == 0 and pool._last_connect_error is not None:
        error = pool._last_connect_error
        status = "unhealthy"
        reason = f"cannot connect: {type(error).__name__}: {error}"
    elif stats.waiting:
        status, reason = "degraded", f"saturated: {stats.waiting} callers waiting"
    elif stats.size < pool._min_size:
        status, reason = "degraded", f"{stats.size} connections, below min_size"
    else:
        status, reason = "healthy", "ok"
    return PoolHealth(status=status, reason=reason, statistics=stats, breaker=breaker_state)


def _breaker_state(breaker: object) -> str | None:
    """The breaker's state as a word (``"closed"``, ``"open"``, ``"half_open"``...)."""
    if breaker is None:
        return None
    state = getattr(breaker, "state", None)
    if state is None:
        return None
    value = getattr(state, "value", state)
    return str(value).lower()
