"""Pipeline: list order is wrapping order; composition of the core policies."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
import pytest

import asyncres
from asyncres import backoff
from asyncres.testing import capture_events

pytestmark = pytest.mark.anyio

T = TypeVar("T")


class Recorder:
    """A policy that logs when it enters and leaves, to show the wrapping order."""

    def __init__(self, name: str, log: list[str]) -> None:
        self.name = name
        self.log = log

    async def execute(self, fn: Callable[[], Awaitable[T]], /) -> T:
        self.log.append(f"enter {self.name}")
        try:
            return await fn()
        finally:
            self.log.append(f"exit {self.name}")


async def test_list_order_is_wrapping_order() -> None:
    """The first policy is the outermost: it enters first and leaves last."""
    log: list[str] = []
    pipeline = asyncres.Pipeline(Recorder("a", log), Recorder("b", log), Recorder("c", log))

    async def work(x: int, *, y: int) -> int:
        log.append("work")
        return x + y

    assert await pipeline.call(work, 1, y=2) == 3
    assert log == ["enter a", "enter b", "enter c", "work", "exit c", "exit b", "exit a"]


async def test_pipeline_faces() -> None:
    """A pipeline offers execute, call and the decorator, and is a Policy."""
    pipeline = asyncres.Pipeline(asyncres.Timeout(5.0))

    @pipeline
    async def double(x: int) -> int:
        return 2 * x

    assert await double(4) == 8
    assert await pipeline.execute(lambda: double(5)) == 10
    assert isinstance(pipeline, asyncres.Policy)


def test_pipeline_is_immutable_and_inspectable() -> None:
    """`.policies` shows the layers; they cannot be changed."""
    timeout = asyncres.Timeout(1.0)
    retry = asyncres.Retry(on=OSError)
    pipeline = asyncres.Pipeline(retry, timeout)
    assert pipeline.policies == (retry, timeout)
    with pytest.raises(AttributeError):
        pipeline.policies = ()  # type: ignore[misc]
    with pytest.raises(AttributeError):
        pipeline.extra = 1  # type: ignore[attr-defined]
    assert repr(pipeline).startswith("Pipeline(Retry(on=OSError")
    assert pipeline == asyncres.Pipeline(retry, timeout)


async def test_nested_pipelines_flatten() -> None:
    """A pipeline inside a pipeline behaves as its layers in place."""
    log: list[str] = []
    inner = asyncres.Pipeline(Recorder("b", log), Recorder("c", log))
    outer = asyncres.Pipeline(Recorder("a", log), inner)
    assert outer.policies[1] is inner

    async def work() -> None:
        log.append("work")

    await outer.call(work)
    assert log[:4] == ["enter a", "enter b", "enter c", "work"]


@pytest.mark.parametrize(
    "policies",
    [(), (object(),), (asyncres.Timeout(1.0), asyncres.Timeout(2.0))],
    ids=["empty", "not-a-policy", "inner-timeout-longer"],
)
def test_bad_pipelines_name_the_parameter(policies: tuple[Any, ...]) -> None:
    """Empty pipelines, non-policies and impossible timeouts raise ValueError."""
    with pytest.raises(ValueError, match="`policies`"):
        asyncres.Pipeline(*policies)


async def test_per_attempt_timeout_is_retried_within_the_total() -> None:
    """Timeout(total) > Retry > Timeout(attempt): slow attempts are cut and retried."""
    calls: list[float] = []

    async def sometimes_slow() -> str:
        calls.append(anyio.current_time())
        if len(calls) < 3:
            await anyio.sleep(10)  # hangs: the per-attempt timeout cuts it
        return "ok"

    pipeline = asyncres.Pipeline(
        asyncres.Timeout(10.0),
        asyncres.Retry(
            on=asyncres.TimeoutExceededError, max_attempts=5, backoff=backoff.Constant(0.5)
        ),
        asyncres.Timeout(1.0),
    )
    start = anyio.current_time()
    assert await pipeline.call(sometimes_slow) == "ok"
    assert [t - start for t in calls] == pytest.approx([0.0, 1.5, 3.0])


async def test_total_timeout_is_not_retried() -> None:
    """When the outer deadline fires, the retry inside sees cancellation and stops."""
    calls = 0

    async def hang() -> None:
        nonlocal calls
        calls += 1
        await anyio.sleep(100)

    pipeline = asyncres.Pipeline(
        asyncres.Timeout(2.5),
        asyncres.Retry(
            on=asyncres.TimeoutExceededError, max_attempts=10, backoff=backoff.Constant(0)
        ),
        asyncres.Timeout(1.0),
    )
    start = anyio.current_time()
    with capture_events():
        with pytest.raises(asyncres.TimeoutExceededError) as info:
            await pipeline.call(hang)
    assert anyio.current_time() - start == pytest.approx(2.5)
    assert info.value.timeout == 2.5
    assert calls == 3


async def test_retry_gives_up_when_the_next_attempt_cannot_fit_the_total() -> None:
    """The retry reads the outer Timeout's deadline and stops before sleeping past it."""
    calls = 0

    async def fail() -> None:
        nonlocal calls
        calls += 1
        raise ConnectionError

    pipeline = asyncres.Pipeline(
        asyncres.Timeout(3.0),
        asyncres.Retry(on=ConnectionError, max_attempts=10, backoff=backoff.Constant(2.0)),
    )
    with pytest.raises(ConnectionError):
        await pipeline.call(fail)
    assert calls == 2  # t=0 and t=2; the wait to t=4 passes the deadline at t=3


# -- the canonical shape: on trio the two Timeouts share one cancel scope -------------------
# These tests hold both backends to the same behaviour; asyncio runs real scopes for both
# Timeouts and is the reference.


def _canonical(
    bulkhead: asyncres.Bulkhead, breaker: asyncres.CircuitBreaker, events: list[Any]
) -> asyncres.Pipeline:
    return asyncres.Pipeline(
        asyncres.Timeout(2.5, name="total", listeners=[events.append]),
        asyncres.Retry(
            on=asyncres.TimeoutExceededError, max_attempts=10, backoff=backoff.Constant(0)
        ),
        breaker,
        bulkhead,
        asyncres.Timeout(1.0, name="attempt", listeners=[events.append]),
    )


async def test_total_deadline_mid_attempt_is_not_counted_by_the_layers_inside() -> None:
    """Attempts cut by their own timeout count as failures; the one cut by the total does not."""
    events: list[Any] = []
    breaker = asyncres.CircuitBreaker(failure_threshold=3)
    bulkhead = asyncres.Bulkhead(max_concurrent=1)
    calls = 0

    async def hang() -> None:
        nonlocal calls
        calls += 1
        await anyio.sleep(100)

    start = anyio.current_time()
    with pytest.raises(asyncres.TimeoutExceededError) as info:
        await _canonical(bulkhead, breaker, events).call(hang)
    assert anyio.current_time() - start == pytest.approx(2.5)
    assert info.value.timeout == 2.5
    assert calls == 3
    assert [(e.name, e.timeout) for e in events] == [
        ("attempt", 1.0),
        ("attempt", 1.0),
        ("total", 2.5),
    ]
    stats = breaker.statistics()
    assert (stats.state, stats.failures, stats.calls) == (asyncres.CircuitState.CLOSED, 2, 2)
    assert bulkhead.statistics().in_use == 0


async def test_total_deadline_cuts_a_wait_in_the_bulkhead_queue() -> None:
    """A caller queued behind a stuck permit leaves the queue when the total runs out."""
    events: list[Any] = []
    breaker = asyncres.CircuitBreaker(failure_threshold=3)
    bulkhead = asyncres.Bulkhead(max_concurrent=1, max_queued=5)
    pipeline = _canonical(bulkhead, breaker, events)
    async with anyio.create_task_group() as tg:
        holding = anyio.Event()

        async def hold() -> None:
            async with bulkhead.acquire():
                holding.set()
                await anyio.sleep(100)

        tg.start_soon(hold)
        await holding.wait()
        start = anyio.current_time()
        with pytest.raises(asyncres.TimeoutExceededError) as info:
            await pipeline.call(anyio.sleep, 0)
        assert anyio.current_time() - start == pytest.approx(2.5)
        assert info.value.timeout == 2.5
        stats = bulkhead.statistics()
        assert (stats.in_use, stats.queued) == (1, 0)
        tg.cancel_scope.cancel()
    assert [(e.name, e.timeout) for e in events] == [("total", 2.5)]
    assert breaker.statistics().calls == 0
    assert bulkhead.statistics().in_use == 0


async def test_an_enclosing_deadline_keeps_its_own_error() -> None:
    """A tighter scope around the pipeline fires as itself; the pipeline's Timeouts stay quiet."""
    events: list[Any] = []
    pipeline = _canonical(asyncres.Bulkhead(max_concurrent=2), asyncres.CircuitBreaker(), events)
    with pytest.raises(asyncres.TimeoutExceededError) as info:
        with asyncres.timeout(0.5):
            await pipeline.call(anyio.sleep, 100)
    assert info.value.timeout == 0.5
    with anyio.move_on_after(0.7) as scope:
        await pipeline.call(anyio.sleep, 100)
    assert scope.cancelled_caught
    assert events == []


async def test_nested_pipelines_report_the_deadline_that_fired() -> None:
    """Inside an outer pipeline's shorter total, the inner pipeline's total never fires."""
    outer_events: list[Any] = []
    inner_events: list[Any] = []
    inner = asyncres.Pipeline(
        asyncres.Timeout(10.0, name="inner total", listeners=[inner_events.append]),
        asyncres.Retry(on=OSError),
        asyncres.Timeout(5.0, name="inner attempt", listeners=[inner_events.append]),
    )
    outer = asyncres.Pipeline(
        asyncres.Timeout(2.0, name="outer total", listeners=[outer_events.append]),
        asyncres.Retry(on=OSError),
        asyncres.Timeout(2.0, name="outer attempt", listeners=[outer_events.append]),
    )
    seen: list[float | None] = []

    async def deep() -> None:
        seen.append(asyncres.remaining())
        await anyio.sleep(100)

    start = anyio.current_time()
    with pytest.raises(asyncres.TimeoutExceededError) as info:
        await outer.call(inner.call, deep)
    assert anyio.current_time() - start == pytest.approx(2.0)
    assert info.value.timeout == 2.0
    assert seen == [pytest.approx(2.0)]
    assert inner_events == []
    assert [e.name for e in outer_events] == ["outer total"]


async def test_remaining_inside_an_attempt_is_the_tighter_of_the_two() -> None:
    """The attempt sees its own limit, then what is left of the total."""
    seen: list[float | None] = []

    async def flaky() -> None:
        seen.append(asyncres.remaining())
        await anyio.sleep(0.6)
        raise ConnectionError

    pipeline = asyncres.Pipeline(
        asyncres.Timeout(2.0),
        asyncres.Retry(on=ConnectionError, max_attempts=5, backoff=backoff.Constant(0.1)),
        asyncres.Timeout(1.0),
    )
    with pytest.raises(asyncres.TimeoutExceededError) as info:
        await pipeline.call(flaky)  # attempts at 0, 0.7 and 1.4 s; the total ends the third
    assert info.value.timeout == 2.0
    assert seen == [pytest.approx(1.0), pytest.approx(1.0), pytest.approx(0.6)]


async def test_cancelling_a_caller_queued_under_the_shared_deadline_leaks_nothing() -> None:
    """An outside cancellation while queued is a cancellation: no permit, no waiter, no event."""
    events: list[Any] = []
    breaker = asyncres.CircuitBreaker(failure_threshold=3)
    bulkhead = asyncres.Bulkhead(max_concurrent=1, max_queued=5)
    pipeline = _canonical(bulkhead, breaker, events)
    async with anyio.create_task_group() as tg:
        holding = anyio.Event()

        async def hold() -> None:
            async with bulkhead.acquire():
                holding.set()
                await anyio.sleep(100)

        tg.start_soon(hold)
        await holding.wait()
        with anyio.move_on_after(1.0) as scope:
            await pipeline.call(anyio.sleep, 0)
        assert scope.cancelled_caught
        assert bulkhead.statistics().queued == 0
        tg.cancel_scope.cancel()
    assert events == []
    assert bulkhead.statistics().in_use == 0
    assert breaker.statistics().calls == 0


async def test_pipeline_is_immutable() -> None:
    """A Pipeline's layers can be neither replaced nor extended after construction."""
    pipeline = asyncres.Pipeline(asyncres.Timeout(5.0), asyncres.Timeout(1.0))
    with pytest.raises(AttributeError, match="policies"):
        pipeline.policies = ()  # type: ignore[misc]
    with pytest.raises(AttributeError):
        pipeline.extra = 1  # type: ignore[attr-defined]
    assert pipeline.policies == (asyncres.Timeout(5.0), asyncres.Timeout(1.0))
    start = anyio.current_time()
    with pytest.raises(asyncres.TimeoutExceededError):
        await pipeline.call(anyio.sleep, 60)
    assert anyio.current_time() - start == pytest.approx(1.0)
