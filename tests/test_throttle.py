"""Throttle: the SRE book's formula, overload, outage and recovery, what counts, the faces."""

from __future__ import annotations

import math
import pickle
import random
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.lowlevel
import pytest

import asyncres
from asyncres.testing import capture_events

pytestmark = pytest.mark.anyio


class Overloaded(Exception):
    """The dependency refused the call (think HTTP 503)."""


class NeverBelow(random.Random):
    """An rng whose draws never fall below the cap: the throttle never rejects."""

    def random(self) -> float:
        return 0.999


class Dependency:
    """A fake dependency: up, down, or serving at most ``capacity`` calls per second."""

    def __init__(self) -> None:
        self.up = True
        self.capacity: float | None = None
        self.calls: list[float] = []
        self.served: list[float] = []
        self._tokens = 0.0
        self._refilled = 0.0

    async def __call__(self) -> str:
        now = anyio.current_time()
        self.calls.append(now)
        await anyio.lowlevel.checkpoint()
        if not self.up:
            raise Overloaded("down")
        if self.capacity is not None:
            self._tokens = min(self.capacity, self._tokens + (now - self._refilled) * self.capacity)
            self._refilled = now
            if self._tokens < 1.0:
                raise Overloaded("over capacity")
            self._tokens -= 1.0
        self.served.append(now)
        return "ok"


async def offer(
    throttle: asyncres.Throttle, fn: Callable[[], Awaitable[str]], seconds: float, rate: float
) -> list[tuple[float, str]]:
    """Call through the throttle at ``rate`` per second; return (time, outcome) pairs."""
    outcomes: list[tuple[float, str]] = []
    start = anyio.current_time()
    for i in range(round(seconds * rate)):
        now = anyio.current_time()
        try:
            await throttle.call(fn)
        except asyncres.ThrottledError:
            outcomes.append((now, "throttled"))
        except Overloaded:
            outcomes.append((now, "failed"))
        else:
            outcomes.append((now, "ok"))
        await anyio.sleep(max(0.0, start + (i + 1) / rate - anyio.current_time()))
    return outcomes


def between(calls: list[float], start: float, end: float) -> int:
    return sum(1 for t in calls if start <= t < end)


async def test_healthy_dependency_passes_everything_and_emits_nothing() -> None:
    """While every call is served the probability stays 0 and no event is emitted."""
    throttle = asyncres.Throttle()
    dependency = Dependency()
    with capture_events() as events:
        outcomes = await offer(throttle, dependency, seconds=5, rate=100)
    assert {outcome for _, outcome in outcomes} == {"ok"}
    assert events == []
    stats = throttle.statistics()
    assert stats.requests == stats.accepts == 500
    assert stats.reject_probability == 0.0
    assert stats.rejected == 0


async def test_probability_is_the_sre_formula() -> None:
    """Inside one bucket: ``(requests - k * accepts) / (requests + 1)``, engaged once."""
    throttle = asyncres.Throttle(rng=NeverBelow())
    dependency = Dependency()
    with capture_events() as events:
        dependency.up = False
        for _ in range(7):
            with pytest.raises(Overloaded):
                await throttle.call(dependency)
        dependency.up = True
        for _ in range(3):
            await throttle.call(dependency)
    stats = throttle.statistics()
    assert (stats.requests, stats.accepts) == (10, 3)
    assert stats.reject_probability == pytest.approx((10 - 2 * 3) / 11)
    engaged = [e for e in events if isinstance(e, asyncres.events.ThrottleEngaged)]
    assert len(engaged) == 1
    assert engaged[0].reject_probability == pytest.approx(1 / 2)  # after the first failure
    assert not any(isinstance(e, asyncres.events.ThrottleReleased) for e in events)


async def test_probability_never_exceeds_the_cap() -> None:
    """A dead dependency still receives about 1 - max_reject_probability of the calls."""
    throttle = asyncres.Throttle(rng=random.Random(7))
    dependency = Dependency()
    dependency.up = False
    with capture_events() as events:
        outcomes = await offer(throttle, dependency, seconds=20, rate=100)
    assert throttle.statistics().reject_probability == pytest.approx(0.9)
    reached = between(dependency.calls, 1.0, math.inf) / (19 * 100)
    assert 0.06 <= reached <= 0.14
    rejected = [e for e in events if isinstance(e, asyncres.events.CallRejected)]
    assert len(rejected) == sum(1 for _, o in outcomes if o == "throttled") > 1500
    assert {e.reason for e in rejected} == {"throttled"}


async def test_overloaded_dependency_receives_about_k_times_its_capacity() -> None:
    """Capacity 20/s, offered 100/s: the dependency sees about k * 20 = 40 calls a second."""
    throttle = asyncres.Throttle(rng=random.Random(3))
    dependency = Dependency()
    dependency.capacity = 20.0
    await offer(throttle, dependency, seconds=60, rate=100)
    start = dependency.calls[0]
    sent = between(dependency.calls, start + 30, start + 60) / 30
    served = between(dependency.served, start + 30, start + 60) / 30
    assert 30 <= sent <= 50, sent
    assert served == pytest.approx(20, rel=0.1)


async def test_follows_a_recovery_within_a_few_buckets() -> None:
    """After a 20 s outage: a first success within 1 s and every call passing within 5 s."""
    throttle = asyncres.Throttle(rng=random.Random(11))
    dependency = Dependency()
    dependency.up = False
    await offer(throttle, dependency, seconds=20, rate=100)
    dependency.up = True
    back = anyio.current_time()
    with capture_events() as events:
        outcomes = await offer(throttle, dependency, seconds=10, rate=100)
    assert dependency.served[0] - back <= 1.0
    late = [o for t, o in outcomes if t >= back + 5]
    assert late
    assert set(late) == {"ok"}
    assert any(isinstance(e, asyncres.events.ThrottleReleased) for e in events)
    per_second = [
        sum(1 for t, o in outcomes if o == "ok" and back + s <= t < back + s + 1) for s in range(5)
    ]
    assert per_second == sorted(per_second)  # a ramp, not a cliff


async def test_cancellation_and_inner_rejections_are_not_counted() -> None:
    """A cancelled call and a `RejectedError` from an inner layer count as nothing."""
    throttle = asyncres.Throttle()

    async def slow() -> None:
        await anyio.sleep(10)

    async def rejected() -> None:
        await anyio.lowlevel.checkpoint()
        raise asyncres.CircuitOpenError("inner", retry_after=1.0)

    with anyio.move_on_after(1) as scope:
        await throttle.call(slow)
    assert scope.cancelled_caught
    with pytest.raises(asyncres.CircuitOpenError):
        await throttle.call(rejected)
    stats = throttle.statistics()
    assert (stats.requests, stats.accepts, stats.reject_probability) == (0, 0, 0.0)


async def test_what_counts_as_served() -> None:
    """Unmatched and excluded errors were served; ``on_result`` marks a result as refused."""

    class NotFound(Exception):
        pass

    throttle = asyncres.Throttle(
        on=(Overloaded, ValueError),
        exclude=ValueError,
        on_result=lambda status: status == 503,
        rng=NeverBelow(),
    )

    def raising(error: Exception) -> Callable[[], Awaitable[int]]:
        async def fn() -> int:
            await anyio.lowlevel.checkpoint()
            raise error

        return fn

    async def status(code: int) -> int:
        await anyio.lowlevel.checkpoint()
        return code

    for error in (NotFound(), ValueError(), Overloaded()):
        with pytest.raises(type(error)):
            await throttle.call(raising(error))
    assert await throttle.call(status, 503) == 503  # returned as it is, counted as refused
    assert await throttle.call(status, 200) == 200
    stats = throttle.statistics()
    assert (stats.requests, stats.accepts) == (5, 3)


async def test_async_with_and_decorator_faces() -> None:
    """``async with`` and the decorator count and reject like ``call``."""
    throttle = asyncres.Throttle(max_reject_probability=1.0, rng=random.Random(0))

    @throttle
    async def fetch(ok: bool) -> str:
        await anyio.lowlevel.checkpoint()
        if not ok:
            raise Overloaded
        return "ok"

    assert await fetch(True) == "ok"
    async with throttle:
        await anyio.lowlevel.checkpoint()
    for _ in range(50):
        with pytest.raises((Overloaded, asyncres.ThrottledError)):
            async with throttle:
                await fetch.__wrapped__(False)  # type: ignore[attr-defined]
    with pytest.raises(asyncres.ThrottledError):
        for _ in range(50):
            await fetch(True)
    stats = throttle.statistics()
    assert stats.accepts >= 2
    assert stats.rejected > 0


async def test_pipeline_layer_with_retry_outside() -> None:
    """In a Pipeline a throttled attempt is a `RejectedError` the outer Retry may retry."""
    throttle = asyncres.Throttle(rng=random.Random(5))
    retry = asyncres.Retry(
        on=asyncres.RejectedError, max_attempts=2, backoff=asyncres.backoff.Constant(0)
    )
    pipeline = asyncres.Pipeline(retry, throttle)
    dependency = Dependency()
    dependency.up = False
    errors: set[type[BaseException]] = set()
    for _ in range(200):
        try:
            await pipeline.call(dependency)
        except (Overloaded, asyncres.ThrottledError) as exc:
            errors.add(type(exc))
        await anyio.sleep(0.01)
    assert errors == {Overloaded, asyncres.ThrottledError}
    assert throttle.statistics().rejected > 100


@pytest.mark.parametrize(
    ("kwargs", "parameter"),
    [
        ({"k": 1.0}, "k"),
        ({"k": 0.5}, "k"),
        ({"k": math.nan}, "k"),
        ({"k": math.inf}, "k"),
        ({"window": 0}, "window"),
        ({"window": -1.0}, "window"),
        ({"window": math.nan}, "window"),
        ({"buckets": 1}, "buckets"),
        ({"buckets": 2.5}, "buckets"),
        ({"max_reject_probability": 0.0}, "max_reject_probability"),
        ({"max_reject_probability": 1.5}, "max_reject_probability"),
        ({"on": BaseException}, "on"),
        ({"on_result": 3}, "on_result"),
    ],
)
def test_bad_configuration_names_the_parameter(kwargs: dict[str, Any], parameter: str) -> None:
    """Every bad option raises ValueError naming it."""
    with pytest.raises(ValueError, match=f"`{parameter}`"):
        asyncres.Throttle(**kwargs)


@pytest.mark.parametrize(
    "attribute", ["k", "window", "buckets", "max_reject_probability", "on", "name", "rng"]
)
def test_configuration_is_read_only_after_construction(attribute: str) -> None:
    """Assigning a configuration attribute raises instead of being silently ignored."""
    throttle = asyncres.Throttle(name="api")
    before = getattr(throttle, attribute)
    with pytest.raises(AttributeError, match=rf"Throttle\.{attribute} is read-only"):
        setattr(throttle, attribute, 3)
    assert getattr(throttle, attribute) == before


def test_throttled_error_is_a_rejection_and_pickles() -> None:
    """`ThrottledError` is a `RejectedError` with reason and probability, and pickles."""
    error = asyncres.ThrottledError("api", reject_probability=0.25)
    assert isinstance(error, asyncres.RejectedError)
    assert error.reason == "throttled"
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.name, copy.reject_probability, str(copy)) == ("api", 0.25, str(error))
    assert "25%" in str(error)
