"""Fault-injection policies: rates, switches, seeds, error forms, latency, results, events."""

from __future__ import annotations

import asyncio
import math
import random
from typing import Any

import anyio
import anyio.lowlevel
import pytest

import asyncres
from asyncres import backoff
from asyncres.chaos import FaultInjected, InjectError, InjectLatency, InjectResult
from asyncres.testing import capture_events

pytestmark = pytest.mark.anyio


class Calls:
    """An async callable that counts its calls and returns ``value``."""

    def __init__(self, value: Any = "real") -> None:
        self.value = value
        self.count = 0

    async def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.count += 1
        await anyio.lowlevel.checkpoint()
        return self.value


async def test_rate_one_always_injects_and_the_function_never_runs() -> None:
    """With the default rate of 1, every call raises the error and fn is not called."""
    fn = Calls()
    fault = InjectError(ConnectionError)
    for _ in range(3):
        with pytest.raises(ConnectionError, match="injected fault"):
            await fault.call(fn)
    assert fn.count == 0
    assert fault.statistics() == asyncres.chaos.InjectionStatistics(calls=3, injected=3)


async def test_rate_zero_and_disabled_never_inject() -> None:
    """Rate 0, or enabled=False, passes every call through."""
    fn = Calls()
    assert await InjectError(ConnectionError, rate=0.0).call(fn) == "real"
    disabled = InjectError(ConnectionError, enabled=False)
    assert await disabled.call(fn) == "real"
    assert fn.count == 2
    assert disabled.statistics().calls == 0  # a disabled fault does not even count


async def test_a_partial_rate_injects_about_that_fraction() -> None:
    """Rate 0.3 over 2000 calls injects close to 30 % of them."""
    fault = InjectResult("fake", rate=0.3, seed=1)
    fn = Calls()
    results = [await fault.call(fn) for _ in range(2000)]
    share = results.count("fake") / len(results)
    assert 0.27 < share < 0.33
    assert fn.count == results.count("real")
    assert fault.statistics().injected == results.count("fake")


async def test_the_same_seed_replays_the_same_faults() -> None:
    """Two faults with the same seed fire on exactly the same calls."""

    async def pattern(fault: InjectResult) -> list[Any]:
        return [await fault.call(Calls()) for _ in range(200)]

    first = await pattern(InjectResult("fake", rate=0.5, seed=42))
    second = await pattern(InjectResult("fake", rate=0.5, seed=42))
    third = await pattern(InjectResult("fake", rate=0.5, rng=random.Random(43)))
    assert first == second
    assert first != third


async def test_rate_and_switch_change_at_runtime() -> None:
    """Setting rate and enabled on a live fault takes effect on the next call."""
    fault = InjectResult("fake")
    fn = Calls()
    assert await fault.call(fn) == "fake"
    fault.enabled = False
    assert await fault.call(fn) == "real"
    fault.enabled = True
    fault.rate = 0.0
    assert await fault.call(fn) == "real"
    with pytest.raises(ValueError, match="`rate` must be between 0 and 1"):
        fault.rate = 1.5
    with pytest.raises(ValueError, match="`enabled` must be True or False"):
        fault.enabled = 1  # type: ignore[assignment]


async def test_an_error_instance_is_copied_for_each_injection() -> None:
    """An instance is raised as a fresh copy each time: notes and tracebacks do not pile up."""
    original = ConnectionError("refused")
    fault = InjectError(original)
    raised = []
    for _ in range(2):
        with pytest.raises(ConnectionError, match="refused") as info:
            await fault.call(Calls())
        info.value.add_note("seen")
        raised.append(info.value)
    assert raised[0] is not raised[1]
    assert raised[1].__notes__ == ["seen"]
    assert not hasattr(original, "__notes__")
    assert original.__traceback__ is None


async def test_an_error_factory_is_called_for_each_injection() -> None:
    """A factory builds each error; a factory returning a non-exception is a TypeError."""
    numbers = iter(range(10))
    fault = InjectError(lambda: TimeoutError(f"slow {next(numbers)}"))
    for n in range(2):
        with pytest.raises(TimeoutError, match=f"slow {n}"):
            await fault.call(Calls())
    bad = InjectError(lambda: "oops")  # type: ignore[arg-type,return-value]
    with pytest.raises(TypeError, match="must return an Exception"):
        await bad.call(Calls())


def test_cancellation_and_base_exceptions_are_never_injected() -> None:
    """BaseException types and instances are refused at construction."""
    with pytest.raises(ValueError, match="never injected"):
        InjectError(KeyboardInterrupt)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="never injected"):
        InjectError(asyncio.CancelledError("x"))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="`error` must be"):
        InjectError(42)  # type: ignore[arg-type]


def test_an_error_type_that_needs_arguments_is_refused_with_advice() -> None:
    """A type that cannot be built without arguments asks for an instance or a factory."""

    class Picky(Exception):
        def __init__(self, code: int, reason: str) -> None:
            super().__init__(code, reason)

    with pytest.raises(ValueError, match="pass an instance or a factory"):
        InjectError(Picky)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: InjectError(ValueError, rate=-0.1), "`rate` must be between 0 and 1"),
        (lambda: InjectLatency(-1.0), "`seconds` must be >= 0"),
        (lambda: InjectLatency(1.0, jitter=math.nan), "`jitter` must be a number"),
        (lambda: InjectResult(), "pass exactly one of them"),
        (lambda: InjectResult(1, factory=list), "pass exactly one of them"),
        (lambda: InjectResult(factory=3), "`factory` must be callable"),  # type: ignore[arg-type]
        (lambda: InjectResult(1, seed=1, rng=random.Random()), "exclusive"),
        (lambda: InjectResult(1, rng=3), "`rng` must be a random.Random"),  # type: ignore[arg-type]
        (lambda: InjectResult(1, enabled="yes"), "`enabled` must be True or False"),  # type: ignore[arg-type]
    ],
)
def test_options_are_validated_naming_the_parameter(make: Any, message: str) -> None:
    """Bad options raise ValueError naming the parameter."""
    with pytest.raises(ValueError, match=message):
        make()


async def test_latency_waits_then_runs_the_call() -> None:
    """InjectLatency sleeps the configured time (virtual clock), then returns fn's result."""
    fn = Calls()
    start = anyio.current_time()
    assert await InjectLatency(2.5).call(fn) == "real"
    assert anyio.current_time() - start == pytest.approx(2.5)
    assert fn.count == 1


async def test_latency_from_a_distribution_with_jitter() -> None:
    """A distribution is drawn per call from the fault's generator; jitter spreads it."""
    fault = InjectLatency(lambda rng: rng.uniform(1.0, 2.0), jitter=0.5, seed=3)
    delays = [fault.delay() for _ in range(500)]
    assert 0.5 <= min(delays) < 0.7
    assert 2.3 < max(delays) <= 2.5
    assert InjectLatency(0.1, jitter=1.0, seed=1).delay() >= 0.0  # never negative
    replay = InjectLatency(lambda rng: rng.uniform(1.0, 2.0), jitter=0.5, seed=3)
    assert [replay.delay() for _ in range(500)] == delays


async def test_latency_seconds_and_jitter_change_at_runtime() -> None:
    """Setting `seconds` and `jitter` on a live latency fault reaches the next call."""
    fault = InjectLatency(1.0, seed=2)
    fn = Calls()

    async def took() -> float:
        start = anyio.current_time()
        await fault.call(fn)
        return anyio.current_time() - start

    assert await took() == pytest.approx(1.0)
    fault.seconds = 3.0
    assert await took() == pytest.approx(3.0)
    fault.seconds = lambda rng: 0.5
    assert await took() == pytest.approx(0.5)
    fault.seconds = 2.0
    fault.jitter = 1.0
    delays = [fault.delay() for _ in range(200)]
    assert 1.0 <= min(delays) < 1.1
    assert 2.9 < max(delays) <= 3.0
    assert (fault.seconds, fault.jitter) == (2.0, 1.0)
    with pytest.raises(ValueError, match="`seconds` must be >= 0"):
        fault.seconds = -1.0
    with pytest.raises(ValueError, match="`jitter` must be >= 0"):
        fault.jitter = -0.5
    assert (fault.seconds, fault.jitter) == (2.0, 1.0)


async def test_latency_is_cut_short_by_an_enclosing_timeout() -> None:
    """A Timeout outside the latency fault fires as it would on a slow dependency."""
    fn = Calls()
    pipeline = asyncres.Pipeline(asyncres.Timeout(1.0), InjectLatency(5.0))
    start = anyio.current_time()
    with pytest.raises(asyncres.TimeoutExceededError):
        await pipeline.call(fn)
    assert anyio.current_time() - start == pytest.approx(1.0)
    assert fn.count == 0


async def test_cancellation_during_injected_latency_propagates() -> None:
    """Cancelling a call while the latency sleeps cancels it; nothing runs afterwards."""
    fn = Calls()
    fault = InjectLatency(10.0)
    outcome: list[BaseException] = []

    async def caller() -> None:
        try:
            await fault.call(fn)
        except BaseException as exc:
            outcome.append(exc)
            raise

    async with anyio.create_task_group() as tg:
        tg.start_soon(caller)
        await anyio.wait_all_tasks_blocked()
        tg.cancel_scope.cancel()
    assert isinstance(outcome[0], anyio.get_cancelled_exc_class())
    assert fn.count == 0


async def test_inject_result_value_and_factory() -> None:
    """InjectResult returns its value, or a fresh object from its factory on each call."""
    assert await InjectResult(None).call(Calls()) is None
    fault = InjectResult(factory=list)
    first, second = await fault.call(Calls()), await fault.call(Calls())
    assert first == second == []
    assert first is not second


async def test_injected_errors_are_retried_like_real_ones() -> None:
    """Innermost in a pipeline, an injected error is seen and retried by Retry."""
    fn = Calls()
    fault = InjectError(ConnectionError, rate=0.5, seed=7)
    pipeline = asyncres.Pipeline(
        # No budget: this is about injection; 50 % failures over 50 quiet calls would be
        # rationed by the default budget (tested in test_budget.py).
        asyncres.Retry(
            on=ConnectionError, max_attempts=10, backoff=backoff.Constant(0.1), budget=None
        ),
        fault,
    )
    results = [await pipeline.call(fn) for _ in range(50)]
    assert results == ["real"] * 50
    stats = fault.statistics()
    assert stats.calls == stats.injected + 50
    assert 20 < stats.injected < 90


async def test_the_three_faces_and_the_policy_protocol() -> None:
    """Each fault offers call, execute and the decorator, and is a Policy."""
    fault = InjectResult(7)

    @fault
    async def compute(x: int) -> int:
        return x

    assert await compute(1) == 7
    assert await fault.execute(lambda: compute(2)) == 7
    for policy in (fault, InjectError(OSError), InjectLatency(1.0)):
        assert isinstance(policy, asyncres.Policy)


async def test_injections_emit_fault_injected_events() -> None:
    """Each injection emits FaultInjected with its kind and detail; passes emit nothing."""
    error = InjectError(ConnectionError("x"), name="db")
    latency = InjectLatency(0.5, name="db-slow")
    with capture_events() as events:
        with pytest.raises(ConnectionError):
            await error.call(Calls())
        await latency.call(Calls())
        await InjectResult(1, rate=0.0).call(Calls())
    assert [(e.name, e.fault) for e in events] == [("db", "error"), ("db-slow", "latency")]
    assert isinstance(events[0], FaultInjected)
    assert isinstance(events[0].detail, ConnectionError)
    assert events[1].detail == 0.5  # type: ignore[attr-defined]


async def test_every_call_is_a_checkpoint_even_when_the_fault_fires() -> None:
    """An injected error or result still yields to the scheduler (checkpoint discipline)."""
    for fault in (InjectResult(1), InjectError(OSError)):
        reached = False
        with anyio.CancelScope() as scope:
            scope.cancel()
            try:
                await fault.call(Calls())
            except OSError:
                pass
            reached = True
        assert scope.cancelled_caught
        assert not reached


def test_reprs_are_readable() -> None:
    """The repr shows what is injected and how often."""
    assert repr(InjectError(ConnectionError, rate=0.5)) == "InjectError(ConnectionError, rate=0.5)"
    assert repr(InjectLatency(0.2, jitter=0.05, enabled=False, name="db")) == (
        "InjectLatency(0.2, jitter=0.05, rate=1.0, enabled=False, name='db')"
    )
    assert repr(InjectResult(None)) == "InjectResult(None, rate=1.0)"


async def test_the_decorator_injects_like_call() -> None:
    """The decorator face has its own fast path; it counts and injects the same way."""
    fault = InjectResult("fake", rate=0.5, seed=9)
    twin = InjectResult("fake", rate=0.5, seed=9)
    fn = Calls()
    decorated = fault(fn)
    via_decorator = [await decorated() for _ in range(100)]
    via_call = [await twin.call(fn) for _ in range(100)]
    assert via_decorator == via_call
    assert fault.statistics() == twin.statistics()


async def test_assigning_a_new_generator_reseeds() -> None:
    """Setting `rng` replaces the generator the draws come from."""
    fault = InjectResult("fake", rate=0.5, seed=1)
    first = [await fault.call(Calls()) for _ in range(50)]
    fault.rng = random.Random(1)
    assert [await fault.call(Calls()) for _ in range(50)] == first
