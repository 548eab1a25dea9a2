"""CircuitBreaker: trip rules, windows, recovery, probes, cancellation, faces, manual control."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Coroutine, Generator
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

import asyncres
from asyncres import CircuitState, backoff
from asyncres import _breaker_state as state_module
from asyncres._setting import Setting
from asyncres.testing import capture_events, force_closed, force_half_open, force_open

pytestmark = pytest.mark.anyio


class Service:
    """An async dependency whose behaviour the test sets: fail or not, and how slow."""

    def __init__(self) -> None:
        self.calls = 0
        self.error: Exception | None = None
        self.delay = 0.0

    async def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        error = self.error
        if self.delay:
            await anyio.sleep(self.delay)
        else:
            await anyio.lowlevel.checkpoint()
        if error is not None:
            raise error
        return ("ok", args, kwargs)


FACES = ["call", "with", "decorator"]


async def through(breaker: asyncres.CircuitBreaker, service: Service, face: str = "call") -> Any:
    """One call of ``service`` through ``breaker`` using the given face."""
    if face == "call":
        return await breaker.call(service)
    if face == "decorator":
        return await breaker(service)()
    async with breaker:
        return await service()


async def outcome(breaker: asyncres.CircuitBreaker, service: Service, face: str = "call") -> str:
    """Run one call and say how it ended: "ok", "error" or "rejected"."""
    try:
        await through(breaker, service, face)
    except asyncres.CircuitOpenError:
        return "rejected"
    except Exception:
        return "error"
    return "ok"


async def fail(breaker: asyncres.CircuitBreaker, times: int, face: str = "call") -> None:
    service = Service()
    service.error = ConnectionError("down")
    for _ in range(times):
        with pytest.raises(ConnectionError):
            await through(breaker, service, face)


async def succeed(breaker: asyncres.CircuitBreaker, times: int, face: str = "call") -> None:
    service = Service()
    for _ in range(times):
        await through(breaker, service, face)


def kinds(events: list[asyncres.events.Event]) -> list[str]:
    return [type(e).__name__ for e in events]


# -- closed ---------------------------------------------------------------------------------


async def test_closed_breaker_passes_arguments_and_results_and_emits_nothing() -> None:
    """While closed, calls run with their arguments, results come back, and no event fires."""
    breaker = asyncres.CircuitBreaker()
    service = Service()
    with capture_events() as events:
        assert await breaker.call(service, 1, key="v") == ("ok", (1,), {"key": "v"})
        assert await breaker.execute(lambda: service(2)) == ("ok", (2,), {})
        assert await breaker(service)(3) == ("ok", (3,), {})
        async with breaker:
            await service()
    assert service.calls == 4
    assert events == []
    assert breaker.state is CircuitState.CLOSED
    assert breaker.statistics().calls == 4


@pytest.mark.parametrize("face", FACES)
async def test_consecutive_failures_trip_and_open_rejects_without_calling(face: str) -> None:
    """failure_threshold consecutive failures open the circuit; then calls fail fast."""
    breaker = asyncres.CircuitBreaker(failure_threshold=3, recovery_time=30.0, name="db")
    service = Service()
    with capture_events() as events:
        await fail(breaker, 2, face)
        assert breaker.state is CircuitState.CLOSED
        await fail(breaker, 1, face)
        assert breaker.state is CircuitState.OPEN
        with pytest.raises(asyncres.CircuitOpenError) as info:
            await through(breaker, service, face)
        assert info.value.retry_after == pytest.approx(30.0)
        assert (info.value.name, info.value.reason) == ("db", "circuit_open")
        await anyio.sleep(10.0)
        with pytest.raises(asyncres.CircuitOpenError) as info:
            await through(breaker, service, face)
        assert info.value.retry_after == pytest.approx(20.0)
    assert service.calls == 0
    assert events[0] == asyncres.events.CircuitOpened("db", 30.0, "3 consecutive failures")
    assert events[1:] == [asyncres.events.CallRejected("db", "circuit_open")] * 2
    assert breaker.statistics().rejected == 2


async def test_a_success_resets_the_consecutive_count() -> None:
    """Failures must be consecutive: one success in between starts the count again."""
    breaker = asyncres.CircuitBreaker(failure_threshold=3)
    for _ in range(5):
        await fail(breaker, 2)
        await succeed(breaker, 1)
    assert breaker.state is CircuitState.CLOSED
    await fail(breaker, 3)
    assert breaker.state is CircuitState.OPEN


async def test_failure_rate_trips_only_once_the_window_holds_min_calls() -> None:
    """A high failure rate over fewer than min_calls calls does not trip."""
    breaker = asyncres.CircuitBreaker(
        failure_rate=0.5, min_calls=10, window=20, window_type="count", recovery_time=30.0
    )
    with capture_events() as events:
        await succeed(breaker, 4)
        await fail(breaker, 5)  # 5 of 9: above the rate, below min_calls
        assert breaker.state is CircuitState.CLOSED
        await fail(breaker, 1)
    assert breaker.state is CircuitState.OPEN
    assert events == [
        asyncres.events.CircuitOpened(None, 30.0, "failure rate 0.60 >= 0.5 over 10 calls")
    ]


async def test_default_trips_at_half_failures_over_twenty_calls() -> None:
    """With no trip rule given, a 50 % failure rate over at least 20 calls trips."""
    breaker = asyncres.CircuitBreaker()
    assert (breaker.failure_rate, breaker.failure_threshold, breaker.min_calls) == (0.5, 20, 20)
    await succeed(breaker, 10)
    await fail(breaker, 9)
    assert breaker.state is CircuitState.CLOSED
    await fail(breaker, 1)
    assert breaker.state is CircuitState.OPEN


async def test_default_trips_on_twenty_failures_in_a_row_despite_healthy_history() -> None:
    """A hard outage after a long healthy spell opens the default breaker within 20 calls."""
    breaker = asyncres.CircuitBreaker()
    await succeed(breaker, 1000)  # 1,000 healthy calls in the window: the rate needs 1,000 more
    await fail(breaker, 19)
    assert breaker.state is CircuitState.CLOSED
    await fail(breaker, 1)
    assert breaker.state is CircuitState.OPEN
    assert breaker.statistics().consecutive_failures == 20


async def test_default_recovery_probes_after_a_quarter_second_then_every_second() -> None:
    """The default recovery times: 0.25 s, 0.5 s, then 1 s per re-opening; reset on close."""
    breaker = asyncres.CircuitBreaker()
    assert breaker.recovery_time is None
    assert breaker.recovery_backoff == backoff.Exponential(0.25, 1.0)
    with capture_events() as events:
        await fail(breaker, 20)
        for _ in range(4):  # four failed probes, each as soon as it is admitted
            wait = breaker.statistics().retry_after
            assert wait is not None
            await anyio.sleep(wait)
            await fail(breaker, 1)
    opened = [e.retry_after for e in events if isinstance(e, asyncres.events.CircuitOpened)]
    assert opened == [0.25, 0.5, 1.0, 1.0, 1.0]
    await anyio.sleep(1.0)
    await succeed(breaker, 1)  # the probe succeeds: closed, and the schedule starts over
    assert breaker.state is CircuitState.CLOSED
    await fail(breaker, 20)
    assert breaker.statistics().retry_after == 0.25


async def test_default_breaker_closes_within_a_second_of_the_dependency_returning() -> None:
    """A long outage, then the dependency returns at a random moment: the first success
    comes within one recovery time (1 s) plus the next call, and a dead dependency sees
    one call a second."""
    breaker = asyncres.CircuitBreaker()
    down = True
    reached = 0

    async def dependency() -> str:
        nonlocal reached
        if down:
            reached += 1
            raise ConnectionError("refused")
        return "ok"

    async def one() -> bool:
        try:
            await breaker.call(dependency)
        except (ConnectionError, asyncres.CircuitOpenError):
            return False
        return True

    for _ in range(20):  # the trip
        await one()
    reached = 0
    for _ in range(6000):  # 60 s of outage at 100 calls/s
        await one()
        await anyio.sleep(0.01)
    assert reached <= 61  # one probe a second: 1 % of the traffic
    down = False
    back = anyio.current_time()
    for _ in range(200):  # bounded: 2 s of calls
        if await one():
            break
        await anyio.sleep(0.01)
    assert anyio.current_time() - back <= 1.02
    assert breaker.state is CircuitState.CLOSED


async def test_count_window_forgets_calls_beyond_its_size() -> None:
    """A count window holds the last `window` calls only."""
    breaker = asyncres.CircuitBreaker(failure_rate=0.75, min_calls=4, window=4, window_type="count")
    await fail(breaker, 2)
    await succeed(breaker, 4)  # the two failures leave the window
    stats = breaker.statistics()
    assert (stats.calls, stats.failures) == (4, 0)
    await fail(breaker, 2)
    assert breaker.state is CircuitState.CLOSED  # 2 of 4
    await fail(breaker, 1)
    assert breaker.state is CircuitState.OPEN  # 3 of 4


async def test_time_window_forgets_outcomes_older_than_the_window() -> None:
    """A time window holds the outcomes of the last `window` seconds only."""
    breaker = asyncres.CircuitBreaker(failure_rate=0.5, min_calls=4, window=10.0)
    await fail(breaker, 3)
    await anyio.sleep(11.0)
    await succeed(breaker, 3)
    await fail(breaker, 1)
    stats = breaker.statistics()
    assert (stats.calls, stats.failures, stats.failure_rate) == (4, 1, 0.25)
    assert breaker.state is CircuitState.CLOSED
    await anyio.sleep(11.0)
    assert breaker.statistics().calls == 0


async def test_slow_call_rate_trips() -> None:
    """Calls slower than slow_call_duration trip the breaker at slow_call_rate."""
    breaker = asyncres.CircuitBreaker(
        slow_call_duration=1.0,
        slow_call_rate=0.5,
        min_calls=4,
        window_type="count",
        window=10,
        recovery_time=30.0,
    )
    service = Service()
    with capture_events() as events:
        service.delay = 0.5
        await breaker.call(service)
        await breaker.call(service)
        service.delay = 2.0
        await breaker.call(service)
        assert breaker.state is CircuitState.CLOSED
        async with breaker:
            await service()
    assert breaker.state is CircuitState.OPEN
    stats = breaker.statistics()
    assert (stats.calls, stats.failures, stats.slow_calls, stats.slow_call_rate) == (4, 0, 2, 0.5)
    assert events == [
        asyncres.events.CircuitOpened(None, 30.0, "slow-call rate 0.50 >= 0.5 over 4 calls")
    ]


# -- recovery ---------------------------------------------------------------------------------


@pytest.mark.parametrize("face", FACES)
async def test_recovery_admits_one_probe_and_rejects_the_rest(face: str) -> None:
    """After recovery_time one probe runs; concurrent calls are rejected; its success closes."""
    breaker = asyncres.CircuitBreaker(failure_threshold=1, recovery_time=30.0, name="api")
    service = Service()
    with capture_events() as events:
        await fail(breaker, 1)
        await anyio.sleep(30.0)
        assert breaker.state is CircuitState.OPEN  # lazily: no call has come yet
        service.delay = 5.0
        async with anyio.create_task_group() as tg:
            tg.start_soon(through, breaker, service, face)
            await anyio.wait_all_tasks_blocked()
            assert breaker.state is CircuitState.HALF_OPEN
            assert breaker.statistics().probes_in_flight == 1
            with pytest.raises(asyncres.CircuitOpenError) as info:
                await through(breaker, service, face)
            assert info.value.retry_after == 30.0  # when the next probe may start
            assert info.value.reason == "half_open_full"
    assert service.calls == 1
    assert breaker.state is CircuitState.CLOSED
    assert events == [
        asyncres.events.CircuitOpened("api", 30.0, "1 consecutive failures"),
        asyncres.events.CircuitHalfOpened("api"),
        asyncres.events.CallRejected("api", "half_open_full"),
        asyncres.events.CircuitClosed("api"),
    ]
    assert breaker.statistics().calls == 0  # a fresh window


@pytest.mark.parametrize("face", FACES)
async def test_a_slow_probe_lets_another_through_after_one_recovery_delay(face: str) -> None:
    """A probe pending longer than the delay admits one more: one slow call never holds it shut.

    The slow-database case: the first probe takes 1.5 s; with a 0.25 s delay a second probe
    starts at 0.25 s and closes the circuit when the dependency answers it.
    """
    breaker = asyncres.CircuitBreaker(failure_threshold=1, recovery_time=0.25)
    await fail(breaker, 1)
    await anyio.sleep(0.25)
    slow, quick = Service(), Service()
    slow.delay = 1.5
    async with anyio.create_task_group() as tg:
        tg.start_soon(through, breaker, slow, face)
        await anyio.sleep(0.1)
        with pytest.raises(asyncres.CircuitOpenError) as info:
            await through(breaker, quick, face)
        assert info.value.retry_after == pytest.approx(0.15)
        await anyio.sleep(0.15)
        assert breaker.state is CircuitState.HALF_OPEN
        await through(breaker, quick, face)  # the second probe, while the first is pending
        assert breaker.state is CircuitState.CLOSED
    assert (slow.calls, quick.calls) == (1, 1)


async def test_failed_probes_reopen_with_growing_recovery_backoff_reset_on_close() -> None:
    """recovery_backoff gives each re-opening a longer wait; closing starts it over."""
    breaker = asyncres.CircuitBreaker(
        failure_threshold=1, recovery_backoff=backoff.Exponential(base=1.0, cap=4.0)
    )
    with capture_events() as events:
        await fail(breaker, 1)
        for wait in (1.0, 2.0, 4.0, 4.0):
            await anyio.sleep(wait - 0.01)
            assert await outcome(breaker, Service()) == "rejected"
            await anyio.sleep(0.01)
            await fail(breaker, 1)  # the probe fails
        await anyio.sleep(4.0)
        await succeed(breaker, 1)
        assert breaker.state is CircuitState.CLOSED
        await fail(breaker, 1)
    opened = [e for e in events if isinstance(e, asyncres.events.CircuitOpened)]
    assert [e.retry_after for e in opened] == [1.0, 2.0, 4.0, 4.0, 4.0, 1.0]
    assert [e.reason for e in opened[1:5]] == ["probe failed"] * 4
    assert breaker.statistics().times_opened == 6


async def test_jittered_recovery_backoff_is_reproducible_with_a_seeded_rng() -> None:
    """Finagle-style EqualJitter recovery times follow the injected rng."""
    import random

    waits = []
    for _ in range(2):
        breaker = asyncres.CircuitBreaker(
            failure_threshold=1,
            recovery_backoff=backoff.EqualJitter(5.0, 300.0),
            rng=random.Random(7),
        )
        with capture_events() as events:
            await fail(breaker, 1)
        waits.append(events[0].retry_after)  # type: ignore[attr-defined]
    assert waits[0] == waits[1]
    assert 2.5 <= waits[0] <= 5.0


async def test_success_threshold_needs_that_many_probe_successes() -> None:
    """With success_threshold=3 the circuit closes after the third probe success."""
    breaker = asyncres.CircuitBreaker(failure_threshold=1, recovery_time=1.0, success_threshold=3)
    await fail(breaker, 1)
    await anyio.sleep(1.0)
    await succeed(breaker, 2)
    assert breaker.state is CircuitState.HALF_OPEN
    await succeed(breaker, 1)
    assert breaker.state is CircuitState.CLOSED


async def test_half_open_admits_at_most_half_open_max_calls_concurrent_probes() -> None:
    """Only half_open_max_calls probes run at once; the other callers are rejected."""
    breaker = asyncres.CircuitBreaker(
        failure_threshold=1, recovery_time=1.0, half_open_max_calls=3, success_threshold=3
    )
    await fail(breaker, 1)
    await anyio.sleep(1.0)
    service = Service()
    service.delay = 1.0
    results: list[str] = []

    async def one() -> None:
        results.append(await outcome(breaker, service))

    async with anyio.create_task_group() as tg:
        for _ in range(5):
            tg.start_soon(one)
        await anyio.wait_all_tasks_blocked()
        assert breaker.statistics().probes_in_flight == 3
    assert sorted(results) == ["ok"] * 3 + ["rejected"] * 2
    assert service.calls == 3
    assert breaker.state is CircuitState.CLOSED


async def test_a_slow_probe_counts_as_failed() -> None:
    """A probe slower than slow_call_duration re-opens the circuit."""
    breaker = asyncres.CircuitBreaker(failure_threshold=1, recovery_time=1.0, slow_call_duration=2)
    await fail(breaker, 1)
    await anyio.sleep(1.0)
    service = Service()
    service.delay = 3.0
    with capture_events() as events:
        await breaker.call(service)
    assert breaker.state is CircuitState.OPEN
    assert events[-1] == asyncres.events.CircuitOpened(None, 1.0, "probe was slow")


async def test_calls_admitted_before_opening_do_not_count_as_probes() -> None:
    """A straggler from the closed period finishing during half-open is not a probe."""
    breaker = asyncres.CircuitBreaker(failure_threshold=1, recovery_time=1.0)
    straggler, probe = Service(), Service()
    straggler.delay = 1.5
    probe.delay = 2.0
    async with anyio.create_task_group() as tg:
        tg.start_soon(breaker.call, straggler)
        await anyio.wait_all_tasks_blocked()
        await fail(breaker, 1)  # opens at t=0; recovery at t=1
        await anyio.sleep(1.0)
        tg.start_soon(through, breaker, probe, "with")  # the probe, t=1..3
        await anyio.sleep(0.8)  # the straggler succeeds at t=1.5; the probe is 0.8 s old
        assert breaker.state is CircuitState.HALF_OPEN
        assert breaker.statistics().probes_in_flight == 1
        assert await outcome(breaker, Service()) == "rejected"
    assert breaker.state is CircuitState.CLOSED


# -- what counts --------------------------------------------------------------------------------


@pytest.mark.parametrize("face", FACES)
async def test_a_cancelled_call_is_neither_success_nor_failure(face: str) -> None:
    """Cancellation is not counted and does not reset the consecutive-failure count."""
    breaker = asyncres.CircuitBreaker(failure_threshold=2)
    service = Service()
    service.delay = 10.0
    await fail(breaker, 1, face)
    with anyio.move_on_after(1.0) as scope:
        await through(breaker, service, face)
    assert scope.cancelled_caught
    stats = breaker.statistics()
    assert (stats.calls, stats.failures, stats.consecutive_failures) == (1, 1, 1)
    await fail(breaker, 1, face)
    assert breaker.state is CircuitState.OPEN


@pytest.mark.parametrize("face", FACES)
async def test_a_cancelled_probe_frees_its_slot(face: str) -> None:
    """Cancelling a probe frees the slot; the next call is admitted as a probe."""
    breaker = asyncres.CircuitBreaker(failure_threshold=1, recovery_time=1.0)
    await fail(breaker, 1)
    await anyio.sleep(1.0)
    service = Service()
    service.delay = 10.0
    with anyio.move_on_after(1.0):
        await through(breaker, service, face)
    stats = breaker.statistics()
    assert (stats.state, stats.probes_in_flight) == (CircuitState.HALF_OPEN, 0)
    await succeed(breaker, 1, face)
    assert breaker.state is CircuitState.CLOSED


async def test_excluded_and_unmatched_errors_count_as_successes_and_pass_through() -> None:
    """Errors matched by exclude (or not by on) propagate unchanged and count as successes."""
    breaker = asyncres.CircuitBreaker(on=OSError, exclude=FileNotFoundError, failure_threshold=2)
    service = Service()
    for error in (FileNotFoundError("gone"), ValueError("bad")):
        await fail(breaker, 1)
        service.error = error
        with pytest.raises(type(error)) as info:
            await breaker.call(service)
        assert info.value is error
        async with anyio.create_task_group():  # the async-with face too
            with pytest.raises(type(error)):
                async with breaker:
                    raise error
    assert breaker.state is CircuitState.CLOSED
    stats = breaker.statistics()
    assert (stats.calls, stats.failures, stats.consecutive_failures) == (6, 2, 0)


async def test_on_accepts_a_predicate() -> None:
    """`on` may be a predicate on the exception."""
    breaker = asyncres.CircuitBreaker(on=lambda exc: "fatal" in str(exc), failure_threshold=1)
    service = Service()
    service.error = RuntimeError("benign")
    assert await outcome(breaker, service) == "error"
    assert breaker.state is CircuitState.CLOSED
    service.error = RuntimeError("fatal")
    assert await outcome(breaker, service) == "error"
    assert breaker.state is CircuitState.OPEN


async def test_inner_breaker_rejections_are_not_counted_by_the_outer() -> None:
    """CircuitOpenError from an inner breaker is neither a success nor a failure outside."""
    inner = asyncres.CircuitBreaker(name="inner")
    outer = asyncres.CircuitBreaker(failure_threshold=1, recovery_time=1.0, name="outer")
    inner.isolate()
    service = Service()
    with pytest.raises(asyncres.CircuitOpenError) as info:
        await outer.call(inner.call, service)
    assert info.value.name == "inner"
    stats = outer.statistics()
    assert (stats.state, stats.calls, stats.rejected) == (CircuitState.CLOSED, 0, 0)
    # As a probe, it frees the slot and leaves the outer breaker half-open.
    await fail(outer, 1)
    await anyio.sleep(1.0)
    with pytest.raises(asyncres.CircuitOpenError):
        async with outer:
            await inner.call(service)
    stats = outer.statistics()
    assert (stats.state, stats.probes_in_flight) == (CircuitState.HALF_OPEN, 0)
    assert service.calls == 0


async def test_inner_bulkhead_rejections_are_not_counted() -> None:
    """A full bulkhead inside the breaker says nothing about the dependency: not a failure."""
    breaker = asyncres.CircuitBreaker(failure_threshold=1, recovery_time=1.0)
    bulkhead = asyncres.Bulkhead(max_concurrent=1)
    service = Service()
    service.delay = 5.0
    async with anyio.create_task_group() as tg:
        tg.start_soon(breaker.call, bulkhead.call, service)
        await anyio.wait_all_tasks_blocked()
        for _ in range(3):
            with pytest.raises(asyncres.BulkheadFullError):
                await breaker.call(bulkhead.call, service)
    stats = breaker.statistics()
    assert (stats.state, stats.failures, stats.consecutive_failures) == (CircuitState.CLOSED, 0, 0)


# -- concurrency, faces -------------------------------------------------------------------------


@pytest.mark.parametrize("face", FACES)
async def test_concurrent_calls_do_not_wait_for_each_other(face: str) -> None:
    """No lock is held across the call: 50 one-second calls take one second together."""
    breaker = asyncres.CircuitBreaker()
    service = Service()
    service.delay = 1.0
    start = anyio.current_time()
    async with anyio.create_task_group() as tg:
        for _ in range(50):
            tg.start_soon(through, breaker, service, face)
    assert anyio.current_time() - start == pytest.approx(1.0)
    assert breaker.statistics().calls == 50


def test_decorator_keeps_the_name_and_signature() -> None:
    """@breaker keeps the wrapped function's name, docstring and signature."""
    breaker = asyncres.CircuitBreaker()

    async def fetch(user_id: int, *, verbose: bool = False) -> str:
        """Fetch a user."""
        return str(user_id)

    wrapped = breaker(fetch)
    assert wrapped.__name__ == "fetch"
    assert wrapped.__doc__ == "Fetch a user."
    assert inspect.signature(wrapped) == inspect.signature(fetch)
    assert inspect.iscoroutinefunction(wrapped)


async def test_the_decorator_works_on_methods_and_costs_no_extra_coroutine() -> None:
    """@breaker on a method binds self, and its wrapper is `call` itself, not a second frame."""
    breaker = asyncres.CircuitBreaker(failure_threshold=1)

    class Client:
        def __init__(self) -> None:
            self.seen: list[int] = []

        @breaker
        async def fetch(self, user_id: int) -> int:
            self.seen.append(user_id)
            return user_id * 2

    client = Client()
    coro = client.fetch(21)
    assert coro.cr_code is asyncres.CircuitBreaker.call.__code__
    assert await coro == 42
    assert client.seen == [21]
    assert inspect.iscoroutinefunction(Client.fetch)
    assert breaker.statistics().calls == 1


def test_the_rejection_reason_and_retry_after_survive_pickling() -> None:
    """CircuitOpenError pickles with its name, retry_after and reason."""
    import pickle

    error = asyncres.CircuitOpenError("db", retry_after=2.5, reason="half_open_full")
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.name, copy.retry_after, copy.reason) == ("db", 2.5, "half_open_full")
    assert asyncres.CircuitOpenError(retry_after=1.0).reason == "circuit_open"


async def test_retry_waits_for_the_breakers_retry_after() -> None:
    """A Retry around an open breaker waits retry_after, then the probe goes through."""
    breaker = asyncres.CircuitBreaker()
    retry = asyncres.Retry(on=asyncres.CircuitOpenError, backoff=backoff.Constant(0.0))
    force_open(breaker, retry_after=5.0)
    service = Service()
    start = anyio.current_time()
    assert (await retry.call(breaker.call, service))[0] == "ok"
    assert anyio.current_time() - start == pytest.approx(5.0)
    assert breaker.state is CircuitState.CLOSED


# -- manual control, statistics -------------------------------------------------------------------


async def test_isolate_rejects_everything_until_reset() -> None:
    """isolate() forces the circuit open with no recovery; reset() closes it."""
    breaker = asyncres.CircuitBreaker(recovery_time=5.0, name="pay")
    service = Service()
    with capture_events() as events:
        breaker.isolate()
        breaker.isolate()  # no second event
        await anyio.sleep(3600.0)
        with pytest.raises(asyncres.CircuitOpenError) as info:
            await breaker.call(service)
        assert info.value.retry_after == 5.0
        assert breaker.state is CircuitState.ISOLATED
        breaker.reset()
        await breaker.call(service)
    assert service.calls == 1
    assert events == [
        asyncres.events.CircuitOpened("pay", 5.0, "isolated"),
        asyncres.events.CallRejected("pay", "circuit_open"),
        asyncres.events.CircuitClosed("pay"),
    ]


async def test_disable_admits_every_call_and_keeps_recording() -> None:
    """disable() emits CircuitDisabled once, lets everything through, never trips, counts."""
    breaker = asyncres.CircuitBreaker(failure_threshold=1, name="pay")
    await fail(breaker, 1)
    with capture_events() as events:
        breaker.disable()
        breaker.disable()  # no second event
        await fail(breaker, 5)
        await succeed(breaker, 1)
    assert events == [asyncres.events.CircuitDisabled("pay")]
    stats = breaker.statistics()
    assert (stats.state, stats.calls, stats.failures, stats.opened_at) == (
        CircuitState.DISABLED,
        6,
        5,
        None,
    )
    with capture_events() as events:
        breaker.reset()
    assert events == [asyncres.events.CircuitClosed("pay")]
    assert breaker.statistics().calls == 0
    await fail(breaker, 1)
    assert breaker.state is CircuitState.OPEN


async def test_statistics_report_the_window_and_the_opening() -> None:
    """statistics() is a frozen snapshot of counts, rates and the current opening."""
    breaker = asyncres.CircuitBreaker(failure_rate=0.5, min_calls=4, recovery_time=10.0)
    await succeed(breaker, 2)
    await fail(breaker, 1)
    stats = breaker.statistics()
    assert stats == asyncres.CircuitBreakerStatistics(
        state=CircuitState.CLOSED,
        calls=3,
        failures=1,
        slow_calls=0,
        failure_rate=1 / 3,
        slow_call_rate=0.0,
        consecutive_failures=1,
        opened_at=None,
        retry_after=None,
        probes_in_flight=0,
        rejected=0,
        times_opened=0,
    )
    with pytest.raises(AttributeError):
        stats.calls = 0  # type: ignore[misc]
    await fail(breaker, 1)
    opened_at = anyio.current_time()
    await anyio.sleep(4.0)
    stats = breaker.statistics()
    assert (stats.state, stats.opened_at, stats.retry_after) == (
        CircuitState.OPEN,
        pytest.approx(opened_at),
        pytest.approx(6.0),
    )
    assert (stats.calls, stats.failures, stats.times_opened) == (4, 2, 1)


def test_manual_control_works_outside_an_event_loop() -> None:
    """isolate, reset, disable and statistics need no running event loop."""
    breaker = asyncres.CircuitBreaker(failure_threshold=1)
    breaker.isolate()
    assert breaker.statistics().state is CircuitState.ISOLATED
    breaker.disable()
    breaker.reset()
    assert breaker.statistics().state is CircuitState.CLOSED

    async def main() -> str:
        await fail(breaker, 1)
        return await outcome(breaker, Service())

    assert anyio.run(main, backend="trio") == "rejected"


def test_listeners_get_this_breakers_events_and_repr_is_readable() -> None:
    """Events go to the breaker's own listeners; repr shows name, state and rules."""
    seen: list[asyncres.events.Event] = []
    breaker = asyncres.CircuitBreaker(
        failure_threshold=5, recovery_time=30.0, name="db", listeners=[seen.append]
    )
    breaker.isolate()
    assert seen == [asyncres.events.CircuitOpened("db", 30.0, "isolated")]
    assert repr(breaker) == (
        "CircuitBreaker(name='db', state=isolated, failure_threshold=5, window=60.0s, "
        "min_calls=20, recovery_time=30.0)"
    )
    assert "window=100 calls" in repr(asyncres.CircuitBreaker(window_type="count"))
    assert repr(CircuitState.HALF_OPEN) == "CircuitState.HALF_OPEN"


@pytest.mark.parametrize(
    ("kwargs", "parameter"),
    [
        ({"failure_threshold": 0}, "failure_threshold"),
        ({"failure_threshold": 1.5}, "failure_threshold"),
        ({"failure_rate": 0.0}, "failure_rate"),
        ({"failure_rate": 1.5}, "failure_rate"),
        ({"window": 0.0}, "window"),
        ({"window": math.inf}, "window"),
        ({"window": 10.0, "window_type": "count"}, "window"),
        ({"window": 0, "window_type": "count"}, "window"),
        ({"window_type": "sliding"}, "window_type"),
        ({"min_calls": 0}, "min_calls"),
        ({"slow_call_duration": 0.0}, "slow_call_duration"),
        ({"slow_call_rate": 0.0}, "slow_call_rate"),
        ({"slow_call_rate": 2.0}, "slow_call_rate"),
        ({"recovery_time": -1.0}, "recovery_time"),
        ({"recovery_time": math.inf}, "recovery_time"),
        ({"recovery_backoff": 5.0}, "recovery_backoff"),
        ({"recovery_backoff": backoff.Constant(1.0), "recovery_time": 1.0}, "recovery_time"),
        ({"half_open_max_calls": 0}, "half_open_max_calls"),
        ({"success_threshold": 0}, "success_threshold"),
        ({"on": ()}, "on"),
        ({"on": KeyboardInterrupt}, "on"),
        ({"exclude": "ValueError"}, "exclude"),
        ({"listeners": [1]}, "listeners"),
        ({"clock": 1.0}, "clock"),
    ],
)
def test_bad_configuration_names_the_parameter(kwargs: dict[str, Any], parameter: str) -> None:
    """Invalid options raise ValueError naming the parameter."""
    with pytest.raises(ValueError, match=f"`{parameter}`"):
        asyncres.CircuitBreaker(**kwargs)


CONFIG_ATTRIBUTES = {
    "failure_threshold": 3,
    "failure_rate": 0.25,
    "window": 30.0,
    "window_type": "time",
    "min_calls": 7,
    "slow_call_duration": 2.0,
    "slow_call_rate": 0.5,
    "recovery_time": 9.0,
    "recovery_backoff": None,
    "half_open_max_calls": 2,
    "success_threshold": 2,
    "on": OSError,
    "exclude": FileNotFoundError,
    "name": "db",
    "rng": None,
}


@pytest.mark.parametrize("attribute", sorted(CONFIG_ATTRIBUTES))
def test_configuration_is_read_only(attribute: str) -> None:
    """Each public option reads back its value; assigning or deleting it raises AttributeError."""
    breaker = asyncres.CircuitBreaker(**CONFIG_ATTRIBUTES)
    value = CONFIG_ATTRIBUTES[attribute]
    assert getattr(breaker, attribute) == value
    with pytest.raises(AttributeError, match=f"CircuitBreaker.{attribute} is read-only"):
        setattr(breaker, attribute, value)
    with pytest.raises(AttributeError, match=attribute):
        delattr(breaker, attribute)
    assert getattr(breaker, attribute) == value


def test_every_public_option_is_a_setting() -> None:
    """The read-only test covers every constructor option that is a public attribute."""
    options = set(inspect.signature(asyncres.CircuitBreaker).parameters) - {
        "listeners",
        "clock",
        "store",
    }
    assert options == set(CONFIG_ATTRIBUTES)
    for name in options:
        assert isinstance(inspect.getattr_static(asyncres.CircuitBreaker, name), Setting)


def test_a_count_window_caps_min_calls_at_its_size() -> None:
    """min_calls larger than a count window would never trip: the window size is used."""
    breaker = asyncres.CircuitBreaker(window=5, window_type="count", clock=lambda: 0.0)
    for _ in range(5):
        with pytest.raises(ConnectionError):
            drive(breaker.call(raising(ConnectionError("down"))))
    assert breaker.state is CircuitState.OPEN


# -- dating successes without reading the clock ---------------------------------------------------


def drive(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine that never suspends, without an event loop."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value
    raise AssertionError("the coroutine suspended")


async def ok() -> str:
    return "ok"


def raising(error: Exception) -> Callable[[], Coroutine[Any, Any, None]]:
    async def fn() -> None:
        raise error

    return fn


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.reads = 0

    def __call__(self) -> float:
        self.reads += 1
        return self.now


def test_the_success_path_reads_the_clock_once_per_batch() -> None:
    """Successes are dated in batches: two clock reads per 64 successes."""
    clock = FakeClock()
    breaker = asyncres.CircuitBreaker(clock=clock)
    for _ in range(640):
        drive(breaker.call(ok))
    assert clock.reads == 20
    assert breaker.statistics().calls == 640


def test_a_batch_of_successes_is_spread_over_the_time_it_took() -> None:
    """Successes counted one every 10 s are dated across that span, not all at the end."""
    clock = FakeClock()
    breaker = asyncres.CircuitBreaker(clock=clock, window=60.0)
    for t in range(0, 130, 10):  # 13 successes at t = 0, 10, ..., 120
        clock.now = float(t)
        drive(breaker.call(ok))
    # The window at t=120 spans buckets [66, 126): the six successes at 70..120.
    assert breaker.statistics().calls == 6


def test_a_burst_after_a_long_idle_time_is_dated_at_the_burst() -> None:
    """Successes after an idle hour are not smeared over the hour (no spurious trip)."""
    clock = FakeClock()
    breaker = asyncres.CircuitBreaker(clock=clock, failure_rate=0.5, min_calls=20)
    drive(breaker.call(ok))
    breaker.statistics()
    clock.now = 3600.0
    for _ in range(30):
        drive(breaker.call(ok))
    clock.now = 3601.0
    for _ in range(25):
        with pytest.raises(ConnectionError):
            drive(breaker.call(raising(ConnectionError("down"))))
    stats = breaker.statistics()
    assert (stats.state, stats.calls, stats.failures) == (CircuitState.CLOSED, 55, 25)


def test_a_clock_that_goes_back_starts_a_fresh_window() -> None:
    """A new event loop's clock may restart lower: the window starts over, no crash."""
    clock = FakeClock()
    clock.now = 1000.0
    breaker = asyncres.CircuitBreaker(clock=clock, failure_threshold=1, recovery_time=5.0)
    for _ in range(3):
        drive(breaker.call(ok))
    assert breaker.statistics().calls == 3
    clock.now = 1.0
    assert breaker.statistics().calls == 0
    with pytest.raises(ConnectionError):
        drive(breaker.call(raising(ConnectionError("down"))))
    clock.now = 0.0  # earlier than the opening: the recovery time restarts now
    with pytest.raises(asyncres.CircuitOpenError) as info:
        drive(breaker.call(ok))
    assert info.value.retry_after == 5.0


# -- asyncres.testing helpers ---------------------------------------------------------------------


async def test_force_open_opens_as_if_tripped_and_recovers_on_its_own() -> None:
    """force_open rejects calls until the recovery time passes, then admits a probe."""
    breaker = asyncres.CircuitBreaker(recovery_time=10.0, name="x")
    with capture_events() as events:
        force_open(breaker)
        assert await outcome(breaker, Service()) == "rejected"
        await anyio.sleep(10.0)
        assert await outcome(breaker, Service()) == "ok"
    assert breaker.state is CircuitState.CLOSED
    assert events[0] == asyncres.events.CircuitOpened("x", 10.0, "forced")
    assert kinds(events[1:]) == ["CallRejected", "CircuitHalfOpened", "CircuitClosed"]


async def test_force_half_open_makes_the_next_call_a_probe() -> None:
    """force_half_open admits probes at once; a failed probe re-opens the circuit."""
    breaker = asyncres.CircuitBreaker(recovery_backoff=backoff.Exponential(1.0, 8.0))
    with capture_events() as events:
        force_half_open(breaker)
        assert breaker.state is CircuitState.HALF_OPEN
        await fail(breaker, 1)
        assert breaker.state is CircuitState.OPEN
        force_half_open(breaker)  # keeps the opening's recovery time
        assert breaker.statistics().retry_after == 2.0
        await succeed(breaker, 1)
    assert breaker.state is CircuitState.CLOSED
    assert kinds(events) == [
        "CircuitHalfOpened",
        "CircuitOpened",
        "CircuitHalfOpened",
        "CircuitClosed",
    ]


async def test_force_closed_closes_and_clears() -> None:
    """force_closed closes an open breaker and empties its window."""
    breaker = asyncres.CircuitBreaker(failure_threshold=2)
    await fail(breaker, 2)
    force_closed(breaker)
    stats = breaker.statistics()
    assert (stats.state, stats.calls, stats.consecutive_failures) == (CircuitState.CLOSED, 0, 0)


def test_force_open_works_outside_an_event_loop() -> None:
    """Forced open outside a loop, the recovery time starts at the first call."""
    breaker = asyncres.CircuitBreaker(recovery_time=10.0)
    force_open(breaker, retry_after=3.0)

    async def main() -> tuple[str, str]:
        first = await outcome(breaker, Service())
        await anyio.sleep(3.0)
        return first, await outcome(breaker, Service())

    assert anyio.run(main, backend="trio") == ("rejected", "ok")
    with pytest.raises(ValueError, match="`retry_after`"):
        force_open(breaker, retry_after=-1.0)


# -- the state machine against a reference model (hypothesis) ---------------------------------


class FakeCancelled(BaseException):
    """Stands in for the backend's cancellation (a BaseException) in synchronous driving."""


class Suspend:
    """An awaitable that suspends once and resumes with what the driver sends."""

    def __await__(self) -> Generator[str, str, str]:
        return (yield "suspended")


ERRORS: dict[str, Callable[[], Exception]] = {
    "fail": lambda: ConnectionError("down"),  # matched by on=OSError: a failure
    "excluded": lambda: FileNotFoundError("gone"),  # matched by exclude: a success
    "unmatched": lambda: ValueError("bad"),  # not matched by on: a success
    "inner_open": lambda: asyncres.CircuitOpenError("inner", retry_after=1.0),  # nothing
}
OUTCOMES = ["ok", "fail", "excluded", "unmatched", "inner_open", "cancel"]
# Weighted towards failures, so that the breaker trips, probes and re-opens often.
DRAWN_OUTCOMES = st.sampled_from([*OUTCOMES, "ok", "fail", "fail", "fail"])
TIME_WINDOW = 5.0  # 10 buckets of 0.5 s; every clock step is a multiple of 0.25 s
SLOW = 1.0
RECOVERY = 2.0


class Model:
    """The breaker's rules written plainly: a list of outcomes, no batching, no buckets."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.c = config
        self.rate = config["failure_rate"]
        if self.rate is None and config["failure_threshold"] is None:
            self.rate = 0.5
        self.min_calls = config["min_calls"]
        if config["window_type"] == "count":
            self.min_calls = min(self.min_calls, config["window"])
        self.now = 0.0
        self.state = "closed"
        self.outcomes: list[tuple[float, bool, bool]] = []  # (time, failed, slow)
        self.consecutive = 0
        self.epoch = 0
        self.probes = 0
        self.probe_admitted_at = 0.0
        self.probe_successes = 0
        self.opened_at: float | None = None
        self.delay = RECOVERY
        self.reopenings = 0  # index into the recovery backoff's delays
        self.rejected = 0
        self.times_opened = 0
        self.events: list[asyncres.events.Event] = []

    def window(self) -> list[tuple[float, bool, bool]]:
        if self.c["window_type"] == "count":
            return self.outcomes[-self.c["window"] :] if self.outcomes else []
        width = TIME_WINDOW / 10
        oldest = math.floor(self.now / width) - 9
        return [o for o in self.outcomes if math.floor(o[0] / width) >= oldest]

    def next_delay(self) -> float:
        if not self.c["backoff"]:
            return RECOVERY
        delay = min(4.0, 1.0 * 2.0**self.reopenings)
        self.reopenings += 1
        return delay

    def enter(self, state: str) -> None:
        self.state = state
        self.epoch += 1
        self.probes = 0
        self.probe_successes = 0

    def clear(self) -> None:
        self.outcomes = []
        self.consecutive = 0

    def open(self, reason: str, state: str = "open") -> None:
        self.enter(state)
        self.opened_at = self.now
        self.delay = self.next_delay()
        self.times_opened += 1
        self.events.append(asyncres.events.CircuitOpened("m", self.delay, reason))

    def close(self) -> None:
        was = self.state
        self.enter("closed")
        self.clear()
        self.opened_at = None
        self.reopenings = 0
        if was != "closed":
            self.events.append(asyncres.events.CircuitClosed("m"))

    def reject(self, reason: str, retry_after: float) -> tuple[str, float]:
        self.rejected += 1
        self.events.append(asyncres.events.CallRejected("m", reason))
        return (reason, retry_after)

    def admit(self) -> int | tuple[str, float]:
        """A probe epoch (or -1) for an admitted call, else (reason, retry_after)."""
        if self.state in ("closed", "disabled"):
            return -1
        if self.state == "half_open":
            wait = self.probe_admitted_at + self.delay - self.now
            if self.probes < self.c["half_open_max_calls"] or (wait <= 0 and self.delay > 0):
                self.probes += 1
                self.probe_admitted_at = self.now
                return self.epoch
            return self.reject("half_open_full", max(wait, 0.0))
        if self.state == "open":
            assert self.opened_at is not None
            if self.now >= self.opened_at + self.delay:
                self.enter("half_open")
                self.events.append(asyncres.events.CircuitHalfOpened("m"))
                self.probes = 1
                self.probe_admitted_at = self.now
                return self.epoch
            return self.reject("circuit_open", self.opened_at + self.delay - self.now)
        return self.reject("circuit_open", self.delay)

    def finish(self, probe: int, start: float, outcome: str) -> None:
        live = probe == self.epoch and self.state == "half_open"
        if outcome in ("cancel", "inner_open"):
            if live:
                self.probes -= 1
            return
        failed = outcome == "fail"
        slow = self.c["slow"] and self.now - start > SLOW
        if live:
            self.probes -= 1
            if failed or slow:
                self.open("probe failed" if failed else "probe was slow")
            else:
                self.probe_successes += 1
                if self.probe_successes >= self.c["success_threshold"]:
                    self.close()
            return
        if self.state not in ("closed", "disabled"):
            return
        self.outcomes.append((self.now, failed, slow))
        self.consecutive = self.consecutive + 1 if failed else 0
        if self.state != "closed":
            return
        threshold = self.c["failure_threshold"]
        if failed and threshold is not None and self.consecutive >= threshold:
            self.open(f"{self.consecutive} consecutive failures")
            return
        window = self.window()
        calls = len(window)
        if calls < self.min_calls:
            return
        failures = sum(1 for o in window if o[1])
        slows = sum(1 for o in window if o[2])
        if failed and self.rate is not None and failures / calls >= self.rate:
            self.open(f"failure rate {failures / calls:.2f} >= {self.rate:g} over {calls} calls")
        elif slow and slows / calls >= self.c["slow_call_rate"]:
            rate = self.c["slow_call_rate"]
            self.open(f"slow-call rate {slows / calls:.2f} >= {rate:g} over {calls} calls")

    def isolate(self) -> None:
        if self.state != "isolated":
            self.open("isolated", "isolated")

    def disable(self) -> None:
        if self.state == "disabled":
            return
        was = self.state
        self.enter("disabled")
        if was != "closed":
            self.clear()
        self.opened_at = None
        self.events.append(asyncres.events.CircuitDisabled("m"))


CONFIGS = st.fixed_dictionaries(
    {
        "window_type": st.sampled_from(["time", "count"]),
        "window": st.integers(1, 6),
        "failure_threshold": st.none() | st.integers(1, 4),
        "failure_rate": st.none() | st.sampled_from([0.25, 0.5, 1.0]),
        "min_calls": st.integers(1, 5),
        "slow": st.booleans(),
        "slow_call_rate": st.sampled_from([0.5, 1.0]),
        "backoff": st.booleans(),
        "half_open_max_calls": st.integers(1, 3),
        "success_threshold": st.integers(1, 3),
    }
)


class BreakerMachine(RuleBasedStateMachine):
    """Concurrent calls (both faces), outcomes, time and manual control, checked against Model.

    Calls are coroutines driven by hand on a fake clock: a call "in flight" is suspended
    inside the protected function, so probes overlap, stragglers outlive openings and
    cancellations hit calls at any point, with no event loop at all.
    """

    def __init__(self) -> None:
        super().__init__()
        self.inflight: list[tuple[Coroutine[Any, Any, Any], int, float, int]] = []
        self.current_task = 0
        self.next_id = 1
        self.saved_current_task = state_module.current_task
        state_module.current_task = lambda: self.current_task

    def teardown(self) -> None:
        for coro, _, _, task in self.inflight:
            self.current_task = task
            coro.close()
        state_module.current_task = self.saved_current_task

    @initialize(config=CONFIGS)
    def setup(self, config: dict[str, Any]) -> None:
        self.model = Model(config)
        self.events: list[asyncres.events.Event] = []
        window = TIME_WINDOW if config["window_type"] == "time" else config["window"]
        self.breaker = asyncres.CircuitBreaker(
            failure_threshold=config["failure_threshold"],
            failure_rate=config["failure_rate"],
            window=window,
            window_type=config["window_type"],
            min_calls=config["min_calls"],
            slow_call_duration=SLOW if config["slow"] else None,
            slow_call_rate=config["slow_call_rate"],
            recovery_time=None if config["backoff"] else RECOVERY,
            recovery_backoff=backoff.Exponential(1.0, 4.0) if config["backoff"] else None,
            half_open_max_calls=config["half_open_max_calls"],
            success_threshold=config["success_threshold"],
            on=OSError,
            exclude=FileNotFoundError,
            name="m",
            listeners=[self.events.append],
            clock=lambda: self.model.now,
        )

    def _coroutine(self, face: str) -> Coroutine[Any, Any, Any]:
        async def body() -> str:
            outcome = await Suspend()
            if outcome != "ok":
                raise ERRORS[outcome]()
            return "done"

        if face == "call":
            return self.breaker.call(body)

        async def block() -> str:
            async with self.breaker:
                return await body()

        return block()

    def _step(self, coro: Coroutine[Any, Any, Any], task: int, send: str | None) -> str:
        """Advance a call; say whether it is "suspended", "done", or raised what."""
        self.current_task = task
        try:
            if send == "cancel":
                coro.throw(FakeCancelled())
            else:
                coro.send(send)
        except StopIteration:
            return "done"
        except FakeCancelled:
            return "cancelled"
        except asyncres.CircuitOpenError as exc:
            return f"open:{exc.name}:{exc.reason}:{exc.retry_after!r}"
        except Exception as exc:
            return type(exc).__name__
        return "suspended"

    @precondition(lambda self: len(self.inflight) < 6)
    @rule(face=st.sampled_from(["call", "with"]))
    def start(self, face: str) -> None:
        task, self.next_id = self.next_id, self.next_id + 1
        coro = self._coroutine(face)
        admitted = self.model.admit()
        result = self._step(coro, task, None)
        if isinstance(admitted, tuple):
            reason, retry_after = admitted  # the same reason as the model's CallRejected
            assert result == f"open:m:{reason}:{retry_after!r}", (result, admitted)
        else:
            assert result == "suspended", result
            self.inflight.append((coro, admitted, self.model.now, task))

    @precondition(lambda self: self.inflight)
    @rule(data=st.data(), outcome=DRAWN_OUTCOMES)
    def finish(self, data: st.DataObject, outcome: str) -> None:
        index = data.draw(st.integers(0, len(self.inflight) - 1))
        coro, probe, start, task = self.inflight.pop(index)
        self.model.finish(probe, start, outcome)
        result = self._step(coro, task, outcome)
        expected = {
            "ok": "done",
            "cancel": "cancelled",
            "inner_open": f"open:inner:circuit_open:{1.0!r}",
        }.get(outcome, type(ERRORS.get(outcome, lambda: Exception())()).__name__)
        assert result == expected, (result, expected)

    @rule(
        outcome=DRAWN_OUTCOMES,
        face=st.sampled_from(["call", "with"]),
        after=st.sampled_from([0.0, 0.0, 0.0, 0.25, 1.0, 2.0]),
    )
    def quick_call(self, outcome: str, face: str, after: float) -> None:
        self.model.now += after
        self.start(face)
        if self.inflight and self.inflight[-1][3] == self.next_id - 1:
            coro, probe, start, task = self.inflight.pop()
            self.model.finish(probe, start, outcome)
            self._step(coro, task, outcome)

    @rule(seconds=st.sampled_from([0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.5]))
    def advance(self, seconds: float) -> None:
        self.model.now += seconds

    @rule(action=st.sampled_from(["isolate", "reset", "disable", "none", "none", "none"]))
    def manual(self, action: str) -> None:
        if action == "none":
            return
        if action == "isolate":
            self.model.isolate()
        elif action == "reset":
            self.model.close()
        else:
            self.model.disable()
        getattr(self.breaker, action)()

    @invariant()
    def agrees_with_the_model(self) -> None:
        if not hasattr(self, "model"):
            return
        model = self.model
        stats = self.breaker.statistics()
        window = model.window()
        if model.state == "open":
            assert model.opened_at is not None
            retry_after: float | None = max(0.0, model.opened_at + model.delay - model.now)
        elif model.state in ("half_open", "isolated"):
            retry_after = model.delay
        else:
            retry_after = None
        expected = asyncres.CircuitBreakerStatistics(
            state=CircuitState(model.state),
            calls=len(window),
            failures=sum(1 for o in window if o[1]),
            slow_calls=sum(1 for o in window if o[2]),
            failure_rate=stats.failure_rate,
            slow_call_rate=stats.slow_call_rate,
            consecutive_failures=model.consecutive,
            opened_at=model.opened_at,
            retry_after=retry_after,
            probes_in_flight=model.probes,
            rejected=model.rejected,
            times_opened=model.times_opened,
        )
        assert stats == expected
        assert self.events == model.events


TestBreakerMachine = BreakerMachine.TestCase
TestBreakerMachine.settings = settings(
    max_examples=300, stateful_step_count=50, deadline=None, suppress_health_check=list(HealthCheck)
)
