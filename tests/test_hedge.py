"""Hedge: timed and failure-started hedges, the first success wins, cancellation, deadlines."""

from __future__ import annotations

import asyncio
import gc
import math
from typing import Any

import anyio
import anyio.lowlevel
import pytest
import sniffio

import asyncres
from asyncres.testing import capture_events

pytestmark = pytest.mark.anyio


class Replica:
    """An async callable taking `latency` seconds, then returning `value` or raising `error`.

    It records when each call started and how it ended ("ok", "error", "cancelled").
    """

    def __init__(
        self, latency: float, value: Any = "ok", error: Exception | None = None, label: str = ""
    ) -> None:
        self.latency = latency
        self.value = value
        self.error = error
        self.label = label
        self.started: list[float] = []
        self.ended: list[str] = []
        self.tasks: list[int] = []

    async def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.started.append(anyio.current_time())
        self.tasks.append(anyio.get_current_task().id)
        try:
            await anyio.sleep(self.latency)
        except BaseException:
            self.ended.append("cancelled")
            raise
        if self.error is not None:
            self.ended.append("error")
            raise self.error
        self.ended.append("ok")
        return self.value


class Sequence_:
    """One async callable whose calls behave like the given replicas, in turn."""

    def __init__(self, *replicas: Replica) -> None:
        self.replicas = replicas
        self.calls = 0

    async def __call__(self) -> Any:
        replica = self.replicas[self.calls]
        self.calls += 1
        return await replica()


def _on_asyncio() -> bool:
    return sniffio.current_async_library() == "asyncio"


def asyncio_loop() -> asyncio.AbstractEventLoop:
    return asyncio.get_running_loop()


def launches(events: list[asyncres.events.Event]) -> list[tuple[int, float]]:
    return [
        (e.hedge, round(e.delay, 6)) for e in events if isinstance(e, asyncres.events.HedgeLaunched)
    ]


async def test_success_before_the_delay_runs_once_and_emits_nothing() -> None:
    """A call answering before `delay` is never hedged and creates no events."""
    replica = Replica(0.5)
    seen: list[tuple[Any, ...]] = []

    async def fetch(*args: Any, **kwargs: Any) -> Any:
        seen.append((args, kwargs))
        return await replica()

    with capture_events() as events:
        assert await asyncres.Hedge(delay=1.0).call(fetch, 1, key="v") == "ok"
    assert seen == [((1,), {"key": "v"})]
    assert replica.ended == ["ok"]
    assert events == []
    await anyio.sleep(5)  # no hedge starts later either
    assert len(replica.started) == 1


async def test_slow_attempt_is_hedged_after_the_delay_and_the_hedge_wins() -> None:
    """After `delay` a hedge starts; it answers first and the slow attempt is cancelled."""
    slow, fast = Replica(10.0, "slow"), Replica(0.5, "fast")
    start = anyio.current_time()
    with capture_events() as events:
        result = await asyncres.Hedge(delay=1.0, name="api").call_each(slow, fast)
    assert result == "fast"
    assert anyio.current_time() - start == pytest.approx(1.5)
    assert [t - start for t in fast.started] == pytest.approx([1.0])
    assert slow.ended == ["cancelled"]  # already over when call() returned
    assert events == [asyncres.events.HedgeLaunched("api", 1, pytest.approx(1.0))]


async def test_first_attempt_can_still_win_after_a_hedge_started() -> None:
    """The original attempt winning cancels the hedge in flight."""
    first, hedge = Replica(1.5, "first"), Replica(5.0, "hedge")
    start = anyio.current_time()
    assert await asyncres.Hedge(delay=1.0).call_each(first, hedge) == "first"
    assert anyio.current_time() - start == pytest.approx(1.5)
    assert hedge.ended == ["cancelled"]


async def test_each_hedge_waits_the_delay_after_the_previous_one() -> None:
    """With max_hedges=3 the hedges start at delay, 2 x delay and 3 x delay."""
    hang = Replica(100.0)
    winner = Replica(0.25, "last")
    with capture_events() as events:
        result = await asyncres.Hedge(delay=1.0, max_hedges=3).call_each(hang, hang, hang, winner)
    assert result == "last"
    assert launches(events) == [(1, 1.0), (2, 2.0), (3, 3.0)]
    assert hang.ended == ["cancelled"] * 3


async def test_a_failure_starts_the_next_hedge_at_once() -> None:
    """A handled failure starts a hedge immediately; the next waits `delay` from there."""
    failing = Replica(0.25, error=ConnectionError("refused"))
    hang = Replica(100.0)
    winner = Replica(0.5, "third")
    start = anyio.current_time()
    with capture_events() as events:
        result = await asyncres.Hedge(delay=1.0, max_hedges=2).call_each(failing, hang, winner)
    assert result == "third"
    assert launches(events) == [(1, 0.25), (2, 1.25)]
    assert anyio.current_time() - start == pytest.approx(1.75)
    assert failing.ended == ["error"]
    assert hang.ended == ["cancelled"]


async def test_a_failure_before_the_first_checkpoint_starts_a_hedge_too() -> None:
    """An attempt that raises at once (no await) is hedged at once."""
    winner = Replica(0.5, "second")

    async def refuse() -> str:
        raise ConnectionError("refused")

    with capture_events() as events:
        assert await asyncres.Hedge(delay=1.0).call_each(refuse, winner) == "second"
    assert launches(events) == [(1, 0.0)]


async def test_every_attempt_gets_the_same_arguments() -> None:
    """call(fn, *args, **kwargs) passes the arguments to every attempt."""
    seen: list[tuple[Any, ...]] = []

    async def fetch(*args: Any, **kwargs: Any) -> str:
        seen.append((args, kwargs))
        await anyio.sleep(10 if len(seen) == 1 else 0.5)
        return "ok"

    assert await asyncres.Hedge(delay=1.0).call(fetch, 1, key="v") == "ok"
    assert seen == [((1,), {"key": "v"})] * 2


async def test_all_attempts_failing_raise_the_first_attempts_error_with_a_note() -> None:
    """When every attempt fails, the first attempt's own error propagates, noted."""
    first_error = ConnectionError("first")
    first = Replica(3.0, error=first_error)  # fails last, still the one raised
    second = Replica(0.5, error=TimeoutError("second"))
    third = Replica(0.5, error=ConnectionError("third"))
    hedge = asyncres.Hedge(delay=1.0, max_hedges=2, name="db")
    with pytest.raises(ConnectionError) as info:
        await hedge.call_each(first, second, third)
    assert info.value is first_error
    assert info.value.__notes__ == [
        "asyncres.Hedge 'db': all 3 attempts failed; this is the first attempt's error "
        "(the others: TimeoutError, ConnectionError)"
    ]
    assert info.value.__context__ is None


async def test_an_error_not_matched_by_on_ends_the_call_at_once() -> None:
    """An unhandled error cancels the other attempts and propagates untouched."""
    hang = Replica(100.0)
    broken = Replica(0.5, error=ValueError("bad request"))
    start = anyio.current_time()
    with capture_events() as events:
        with pytest.raises(ValueError, match="bad request") as info:
            await asyncres.Hedge(delay=1.0, max_hedges=3, on=ConnectionError).call_each(
                hang, broken, hang
            )
    assert anyio.current_time() - start == pytest.approx(1.5)
    assert hang.ended == ["cancelled"]
    assert len(hang.started) == 1  # no further hedge after the fatal error
    assert not hasattr(info.value, "__notes__")
    assert launches(events) == [(1, 1.0)]


async def test_on_accepts_a_predicate() -> None:
    """`on` may be a predicate: only the errors it accepts start a hedge."""
    retryable = Replica(0.1, error=ConnectionError("503"))
    winner = Replica(0.1, "ok")
    hedge = asyncres.Hedge(delay=math.inf, on=lambda exc: "503" in str(exc))
    assert await hedge.call_each(retryable, winner) == "ok"

    fatal = Replica(0.1, error=ConnectionError("404"))
    with pytest.raises(ConnectionError, match="404"):
        await hedge.call_each(fatal, winner)


async def test_empty_on_hedges_on_latency_only() -> None:
    """on=(): no error starts a hedge; every error ends the call."""
    failing = Replica(0.1, error=ConnectionError("x"))
    other = Replica(0.1)
    with pytest.raises(ConnectionError):
        await asyncres.Hedge(delay=1.0, on=()).call_each(failing, other)
    assert other.started == []


async def test_zero_delay_starts_every_attempt_together() -> None:
    """delay=0 is parallel mode: all attempts start at once and the fastest wins."""
    a, b, c = Replica(3.0, "a"), Replica(1.0, "b"), Replica(2.0, "c")
    start = anyio.current_time()
    with capture_events() as events:
        assert await asyncres.Hedge(delay=0, max_hedges=2).call_each(a, b, c) == "b"
    assert [r.started[0] - start for r in (a, b, c)] == pytest.approx([0.0, 0.0, 0.0])
    assert launches(events) == [(1, 0.0), (2, 0.0)]
    assert a.ended == c.ended == ["cancelled"]


async def test_simultaneous_successes_return_one_result() -> None:
    """Two attempts finishing in the same instant: one result wins, nothing raises."""
    a, b = Replica(1.0, "a"), Replica(1.0, "b")
    assert await asyncres.Hedge(delay=0).call_each(a, b) in {"a", "b"}


async def test_infinite_delay_starts_the_next_attempt_only_after_a_failure() -> None:
    """delay=inf is fallback mode: attempts run one after another, in the caller's task."""
    first = Replica(5.0, error=ConnectionError("down"))
    second = Replica(1.0, "backup")
    start = anyio.current_time()
    with capture_events() as events:
        result = await asyncres.Hedge(delay=math.inf).call_each(first, second)
    assert result == "backup"
    assert [second.started[0] - start] == pytest.approx([5.0])
    assert launches(events) == [(1, 5.0)]
    caller = anyio.get_current_task().id
    assert first.tasks == second.tasks == [caller]


async def test_infinite_delay_raises_the_first_error_when_all_fail() -> None:
    """In fallback mode too, the first attempt's error propagates when all fail."""
    flaky = Sequence_(
        Replica(0.1, error=ConnectionError("one")), Replica(0.1, error=OSError("two"))
    )
    with pytest.raises(ConnectionError, match="one") as info:
        await asyncres.Hedge(delay=math.inf).call(flaky)
    assert "all 2 attempts failed" in info.value.__notes__[0]
    assert info.value.__context__ is None


async def test_call_each_cycles_through_the_replicas() -> None:
    """Attempt k runs fns[k % len(fns)]; extra functions are never called."""
    hang = Replica(100.0)
    winner = Replica(0.5, "ok")
    hedge = asyncres.Hedge(delay=1.0, max_hedges=2)
    assert await hedge.call_each(hang, Replica(100.0), winner) == "ok"

    one = Replica(100.0)
    with anyio.move_on_after(2.5):
        await hedge.call_each(one)
    assert len(one.started) == 3  # one replica, three attempts

    unused = Replica(0.1)
    assert await hedge.call_each(Replica(0.1, "first"), unused, unused, unused) == "first"
    assert unused.started == []


async def test_call_each_needs_a_function() -> None:
    """call_each() with nothing to call is a TypeError."""
    with pytest.raises(TypeError):
        await asyncres.Hedge(delay=1.0).call_each()


async def test_cancelling_the_caller_cancels_and_awaits_every_attempt() -> None:
    """A cancelled caller leaves no attempt running: each is over before it returns."""
    replicas = [Replica(100.0) for _ in range(3)]
    before = len(anyio.get_running_tasks())
    outcome: list[BaseException] = []

    async def caller() -> None:
        try:
            await asyncres.Hedge(delay=1.0, max_hedges=2).call_each(*replicas)
        except BaseException as exc:
            outcome.append(exc)
            # Every attempt already finished when the cancellation reached the caller.
            assert [r.ended for r in replicas] == [["cancelled"]] * 3
            raise

    async with anyio.create_task_group() as tg:
        tg.start_soon(caller)
        await anyio.sleep(2.5)  # both hedges are running
        assert len(anyio.get_running_tasks()) == before + 3  # caller + 2 hedges
        tg.cancel_scope.cancel()
    assert isinstance(outcome[0], anyio.get_cancelled_exc_class())
    assert len(anyio.get_running_tasks()) == before
    await anyio.sleep(10)
    assert [len(r.started) for r in replicas] == [1, 1, 1]  # the timer died too


async def test_cancelling_the_caller_before_the_delay_starts_no_hedge() -> None:
    """A caller cancelled while the first attempt runs leaves no timer behind."""
    loop_errors: list[dict[str, Any]] = []
    if _on_asyncio():
        asyncio_loop().set_exception_handler(lambda loop, context: loop_errors.append(context))
    replicas = [Replica(100.0), Replica(0.1)]
    with capture_events() as events:
        async with anyio.create_task_group() as tg:
            tg.start_soon(asyncres.Hedge(delay=1.0).call_each, *replicas)
            await anyio.sleep(0.5)  # not a deadline: the timer is armed
            tg.cancel_scope.cancel()
        assert replicas[0].ended == ["cancelled"]
        await anyio.sleep(5)
        gc.collect()  # a stray timer's failed task would be reported now
    assert replicas[1].started == []
    assert events == []
    assert loop_errors == []


async def test_a_cancelled_loser_is_not_an_error() -> None:
    """The losers' cancellations are swallowed by the hedge, never reported."""
    slow = Replica(10.0)
    with capture_events() as events:
        assert await asyncres.Hedge(delay=1.0).call_each(slow, Replica(0.1, "win")) == "win"
    assert slow.ended == ["cancelled"]
    assert all(isinstance(e, asyncres.events.HedgeLaunched) for e in events)


async def test_a_deadline_around_the_hedge_bounds_every_attempt() -> None:
    """asyncres.timeout around a hedged call cancels all attempts when it fires."""
    replicas = [Replica(100.0) for _ in range(3)]
    start = anyio.current_time()
    with capture_events() as events:
        with pytest.raises(asyncres.TimeoutExceededError):
            with asyncres.timeout(2.5):
                await asyncres.Hedge(delay=1.0, max_hedges=2).call_each(*replicas)
    assert anyio.current_time() - start == pytest.approx(2.5)
    assert [r.ended for r in replicas] == [["cancelled"]] * 3
    assert launches(events) == [(1, 1.0), (2, 2.0)]


async def test_a_deadline_firing_while_only_hedges_run_is_still_a_timeout() -> None:
    """The deadline fires after attempt 0 failed, while the caller awaits the hedges."""
    failing = Replica(0.1, error=ConnectionError("x"))
    hang = Replica(100.0)
    start = anyio.current_time()
    with pytest.raises(asyncres.TimeoutExceededError):
        with asyncres.timeout(3.0):
            await asyncres.Hedge(delay=1.0, max_hedges=2).call_each(failing, hang, hang)
    assert anyio.current_time() - start == pytest.approx(3.0)
    assert hang.ended == ["cancelled", "cancelled"]


async def test_no_timed_hedge_when_the_deadline_is_nearer_than_the_delay() -> None:
    """With less than `delay` left, no timer is armed, but a failure still starts a hedge."""
    first = Replica(100.0)
    with pytest.raises(asyncres.TimeoutExceededError):
        with asyncres.timeout(0.5):
            await asyncres.Hedge(delay=1.0).call_each(first, Replica(0.1))
    assert first.ended == ["cancelled"]

    failing = Replica(0.1, error=ConnectionError("x"))
    backup = Replica(0.1, "backup")
    with anyio.fail_after(0.5):
        assert await asyncres.Hedge(delay=1.0).call_each(failing, backup) == "backup"
    caller = anyio.get_current_task().id
    assert backup.tasks == [caller]  # fallback mode: no task group was opened


async def test_attempts_see_the_enclosing_deadline() -> None:
    """asyncres.remaining() inside every attempt sees the deadline around the hedge."""
    seen: list[float | None] = []

    async def fetch() -> str:
        seen.append(asyncres.remaining())
        await anyio.sleep(100)
        return "never"

    with anyio.move_on_after(10.0):
        await asyncres.Hedge(delay=1.0, max_hedges=2).call(fetch)
    assert seen == pytest.approx([10.0, 9.0, 8.0])

    seen.clear()
    with pytest.raises(asyncres.TimeoutExceededError):
        with asyncres.timeout(10.0):
            await asyncres.Hedge(delay=1.0).call(fetch)
    assert seen == pytest.approx([10.0, 9.0])


async def test_a_base_exception_from_an_attempt_propagates_alone() -> None:
    """A non-cancellation BaseException ends the call, not wrapped in a group."""

    class Stop(BaseException):
        pass

    async def stop_later() -> None:
        await anyio.sleep(0.5)
        raise Stop

    hang = Replica(100.0)
    with pytest.raises(Stop):
        await asyncres.Hedge(delay=1.0, on=lambda exc: True).call_each(stop_later)
    with pytest.raises(Stop):
        await asyncres.Hedge(delay=0.25).call_each(hang, stop_later)
    assert hang.ended == ["cancelled"]


async def test_a_fallback_catches_a_hedge_whose_attempts_all_failed() -> None:
    """Policies compose: the hedge's error (the first attempt's) reaches the fallback."""
    hedge = asyncres.Hedge(delay=0.5, max_hedges=2)
    fallback = asyncres.Fallback(on=ConnectionError, value="cached")
    down = Replica(0.1, error=ConnectionError("down"))
    assert await fallback.call(hedge.call, down) == "cached"
    assert len(down.started) == 3


async def test_decorator_keeps_the_signature_and_hedges() -> None:
    """@hedge keeps the function's metadata; every call is hedged."""
    calls: list[float] = []

    @asyncres.Hedge(delay=1.0)
    async def fetch(user_id: int) -> str:
        """Fetch a user."""
        calls.append(anyio.current_time())
        await anyio.sleep(10 if len(calls) == 1 else 0.5)
        return f"user {user_id}"

    assert fetch.__name__ == "fetch"
    assert fetch.__doc__ == "Fetch a user."
    assert await fetch(7) == "user 7"
    assert len(calls) == 2


async def test_execute_is_the_policy_contract() -> None:
    """execute(fn) runs a zero-argument function, hedged."""
    hedge = asyncres.Hedge(delay=1.0)
    assert await hedge.execute(Replica(0.1, "ok")) == "ok"
    assert isinstance(hedge, asyncres.Policy)


async def test_listener_errors_do_not_change_the_outcome() -> None:
    """A failing listener is logged and ignored."""

    def broken(event: asyncres.events.Event) -> None:
        raise RuntimeError("listener bug")

    hedge = asyncres.Hedge(delay=1.0, listeners=[broken])
    assert await hedge.call_each(Replica(10.0), Replica(0.1, "ok")) == "ok"


@pytest.mark.parametrize(
    ("kwargs", "parameter"),
    [
        ({"delay": -1}, "delay"),
        ({"delay": math.nan}, "delay"),
        ({"delay": "1s"}, "delay"),
        ({"delay": True}, "delay"),
        ({"max_hedges": 0}, "max_hedges"),
        ({"max_hedges": 11}, "max_hedges"),
        ({"max_hedges": 1.5}, "max_hedges"),
        ({"on": None}, "on"),
        ({"on": KeyboardInterrupt}, "on"),
        ({"on": (ValueError, "x")}, "on"),
    ],
)
def test_bad_configuration_names_the_parameter(kwargs: dict[str, Any], parameter: str) -> None:
    """Invalid Hedge settings raise ValueError naming the parameter."""
    kwargs.setdefault("delay", 1.0)
    with pytest.raises(ValueError, match=f"`{parameter}`"):
        asyncres.Hedge(**kwargs)


def test_delay_is_required() -> None:
    """There is no default delay: when to hedge depends on the callee's latency."""
    with pytest.raises(TypeError):
        asyncres.Hedge()  # type: ignore[call-arg]


def test_repr_is_readable() -> None:
    """Hedge prints its configuration."""
    assert repr(asyncres.Hedge(delay=0.05, max_hedges=2, on=OSError, name="api")) == (
        "Hedge(delay=0.05, max_hedges=2, on=OSError, name='api')"
    )
    assert repr(asyncres.Hedge(delay=math.inf)) == "Hedge(delay=inf, max_hedges=1, on=Exception)"


@pytest.mark.parametrize(
    ("attribute", "value"),
    [("delay", 0.0), ("max_hedges", 5), ("on", ValueError), ("name", "other")],
)
async def test_configuration_is_read_only(attribute: str, value: object) -> None:
    """Assigning a Hedge's configuration raises AttributeError naming it; calls keep the old one."""
    hedge = asyncres.Hedge(delay=1.0, max_hedges=2, on=OSError, name="api")
    with pytest.raises(AttributeError, match=rf"Hedge\.{attribute} is read-only"):
        setattr(hedge, attribute, value)
    assert (hedge.delay, hedge.max_hedges, hedge.on, hedge.name) == (1.0, 2, OSError, "api")
    slow = Replica(latency=10.0)
    start = anyio.current_time()
    with capture_events() as events:
        assert await hedge.call(slow) == "ok"
    assert slow.started == [pytest.approx(start + t) for t in (0.0, 1.0, 2.0)]
    assert [e.hedge for e in events if isinstance(e, asyncres.events.HedgeLaunched)] == [1, 2]


async def test_a_hedge_timer_that_fires_a_hair_early_still_launches_the_hedge() -> None:
    """asyncio runs timers up to its clock resolution early and a virtual clock rounds: a
    retried attempt (started at 0.01 s, hedge due at 0.06 s) once waited its whole second
    because the timer saw `now` a rounding below `next_at` and launched nothing."""
    calls: list[float] = []

    async def work() -> str:
        calls.append(anyio.current_time())
        if len(calls) == 1:
            raise ConnectionError("down")
        if len(calls) == 2:
            await anyio.sleep(1.0)
        return "ok"

    pipeline = asyncres.Pipeline(
        asyncres.Retry(on=ConnectionError, backoff=asyncres.backoff.Constant(0.01)),
        asyncres.Hedge(delay=0.05, on=TimeoutError),
    )
    start = anyio.current_time()
    assert await pipeline.execute(work) == "ok"
    assert len(calls) == 3
    assert anyio.current_time() - start == pytest.approx(0.06, abs=1e-3)
