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
        asyncres.Retry(on=asyncres.TimeoutExceededError, attempts=5, backoff=backoff.Constant(0.5)),
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
        asyncres.Retry(on=asyncres.TimeoutExceededError, attempts=10, backoff=backoff.Constant(0)),
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
        asyncres.Retry(on=ConnectionError, attempts=10, backoff=backoff.Constant(2.0)),
    )
    with pytest.raises(ConnectionError):
        await pipeline.call(fail)
    assert calls == 2  # t=0 and t=2; the wait to t=4 passes the deadline at t=3
