"""Retry: the three faces, what is retried, deadlines, hints, cancellation, events."""

from __future__ import annotations

import itertools
import math
import random
from typing import Any

import anyio
import anyio.lowlevel
import pytest

import asyncres
from asyncres import backoff
from asyncres.testing import capture_events, set_testing

pytestmark = pytest.mark.anyio


class Flaky:
    """An async callable that fails `failures` times, then returns `value`."""

    def __init__(self, failures: int, error: type[Exception] = ConnectionError, value: Any = "ok"):
        self.failures = failures
        self.error = error
        self.value = value
        self.calls: list[tuple[float, tuple[Any, ...], dict[str, Any]]] = []
        self.raised: list[Exception] = []

    async def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append((anyio.current_time(), args, kwargs))
        await anyio.lowlevel.checkpoint()
        if len(self.calls) <= self.failures:
            exc = self.error(f"failure {len(self.calls)}")
            self.raised.append(exc)
            raise exc
        return self.value


def constant_retry(**kwargs: Any) -> asyncres.Retry:
    kwargs.setdefault("on", ConnectionError)
    kwargs.setdefault("backoff", backoff.Constant(1.0))
    return asyncres.Retry(**kwargs)


async def test_success_first_time_calls_once_and_emits_nothing() -> None:
    """A call that succeeds at once runs once and creates no events."""
    flaky = Flaky(0)
    with capture_events() as events:
        assert await constant_retry().call(flaky, 1, key="v") == "ok"
    assert [c[1:] for c in flaky.calls] == [((1,), {"key": "v"})]
    assert events == []


async def test_retries_until_success_with_the_backoff_waits() -> None:
    """Failures are retried after the backoff's waits, with the same arguments."""
    flaky = Flaky(2)
    start = anyio.current_time()
    with capture_events() as events:
        result = await constant_retry(backoff=backoff.Exponential(base=1, cap=10)).call(
            flaky, "a", b=2
        )
    assert result == "ok"
    times = [t - start for t, _, _ in flaky.calls]
    assert times == pytest.approx([0.0, 1.0, 3.0])
    assert all(c[1:] == (("a",), {"b": 2}) for c in flaky.calls)
    assert [
        (e.attempt, e.wait) for e in events if isinstance(e, asyncres.events.RetryScheduled)
    ] == [
        (1, 1.0),
        (2, 2.0),
    ]
    assert [type(e.error) for e in events if isinstance(e, asyncres.events.RetryScheduled)] == [
        ConnectionError,
        ConnectionError,
    ]


async def test_gives_up_with_the_last_exception_unchanged_and_a_note() -> None:
    """When attempts run out, the last exception itself propagates, with a note."""
    flaky = Flaky(10)
    retry = constant_retry(max_attempts=3, name="db")
    with capture_events() as events:
        with pytest.raises(ConnectionError) as info:
            await retry.call(flaky)
    assert info.value is flaky.raised[-1]
    assert len(flaky.calls) == 3
    assert info.value.__notes__ == [
        "asyncres.Retry 'db': gave up after 3 attempts (no attempts left)"
    ]
    assert info.value.__context__ is None  # attempts do not chain onto each other
    assert events[-1] == asyncres.events.RetryGaveUp("db", 3, info.value, "attempts")


async def test_non_matching_errors_propagate_at_once_untouched() -> None:
    """An error `on` does not match is raised after one attempt, without a note."""
    flaky = Flaky(5, error=ValueError)
    with capture_events() as events:
        with pytest.raises(ValueError) as info:
            await constant_retry().call(flaky)
    assert len(flaky.calls) == 1
    assert not hasattr(info.value, "__notes__")
    assert events == []


async def test_on_accepts_tuples_and_predicates() -> None:
    """`on` may be a tuple of types or a predicate on the exception."""
    flaky = Flaky(2, error=TimeoutError)
    assert await constant_retry(on=(ConnectionError, TimeoutError)).call(flaky) == "ok"

    flaky = Flaky(2, error=ValueError)
    retry = constant_retry(on=lambda exc: "failure 1" in str(exc))
    with pytest.raises(ValueError, match="failure 2"):
        await retry.call(flaky)
    assert len(flaky.calls) == 2


async def test_on_result_retries_rejected_results_and_returns_the_last() -> None:
    """on_result makes results count as failures; the last one is returned at the end."""
    results = iter([503, 503, 200])

    async def status() -> int:
        return next(results)

    retry = constant_retry(on_result=lambda code: code >= 500)
    assert await retry.call(status) == 200

    async def always_503() -> int:
        return 503

    with capture_events() as events:
        assert await retry.call(always_503) == 503
    assert events[-1] == asyncres.events.RetryGaveUp(None, 3, None, "attempts")


async def test_cancellation_during_an_attempt_is_not_retried() -> None:
    """Cancelling a call mid-attempt propagates at once: no retry, no budget used."""
    budget = asyncres.RetryBudget(ratio=0.0, min_per_second=0.1, ttl=10.0)  # one retry
    calls = 0

    async def slow() -> None:
        nonlocal calls
        calls += 1
        await anyio.sleep(10)

    retry = constant_retry(budget=budget)
    with capture_events() as events:
        with anyio.move_on_after(1.0) as scope:
            await retry.call(slow)
    assert scope.cancelled_caught
    assert calls == 1
    assert events == []
    assert budget.statistics().withdrawals == 0


async def test_cancellation_during_the_backoff_sleep_stops_retrying() -> None:
    """Cancelling during the wait between attempts ends the call; no further attempt."""
    flaky = Flaky(5)
    outcome: list[BaseException] = []

    async def caller() -> None:
        try:
            await constant_retry(backoff=backoff.Constant(1.0), max_attempts=5).call(flaky)
        except BaseException as exc:
            outcome.append(exc)
            raise

    async with anyio.create_task_group() as tg:
        tg.start_soon(caller)
        await anyio.sleep(1.5)  # no deadline in sight: a plain cancel during the wait
        tg.cancel_scope.cancel()
    assert len(flaky.calls) == 2  # t=0 and t=1; cancelled while sleeping towards t=2
    assert isinstance(outcome[0], anyio.get_cancelled_exc_class())


async def test_never_sleeps_past_the_enclosing_deadline() -> None:
    """If the next wait ends after the deadline, the last error is raised right away."""
    flaky = Flaky(5)
    start = anyio.current_time()
    with capture_events() as events:
        with pytest.raises(ConnectionError) as info:
            with asyncres.timeout(2.5):
                await constant_retry(backoff=backoff.Constant(1.0), max_attempts=10).call(flaky)
    assert len(flaky.calls) == 3  # t=0, 1, 2; the wait to t=3 would pass t=2.5
    assert anyio.current_time() - start == pytest.approx(2.0)
    assert "could not start before the deadline" in info.value.__notes__[0]
    assert events[-1].reason == "deadline"  # type: ignore[attr-defined]


async def test_deadline_from_anyio_scope_is_honoured_too() -> None:
    """An anyio fail_after around the retry also bounds its waits."""
    flaky = Flaky(5)
    with pytest.raises(ConnectionError):
        with anyio.fail_after(1.5):
            await constant_retry(backoff=backoff.Constant(1.0), max_attempts=10).call(flaky)
    assert len(flaky.calls) == 2


async def test_total_timeout_bounds_attempts_and_sleeps() -> None:
    """Retry(timeout=...) gives up when a wait would cross it, before sleeping."""
    flaky = Flaky(10)
    start = anyio.current_time()
    retry = constant_retry(backoff=backoff.Constant(1.0), max_attempts=10, timeout=3.5)
    with pytest.raises(ConnectionError):
        await retry.call(flaky)
    assert len(flaky.calls) == 4  # t=0,1,2,3
    assert anyio.current_time() - start == pytest.approx(3.0)


async def test_total_timeout_cancels_a_hanging_attempt() -> None:
    """An attempt still running when the total timeout fires is cancelled."""

    async def hang() -> None:
        await anyio.sleep(100)

    start = anyio.current_time()
    with pytest.raises(asyncres.TimeoutExceededError):
        await constant_retry(timeout=5.0).call(hang)
    assert anyio.current_time() - start == pytest.approx(5.0)


class Throttled(Exception):
    def __init__(self, retry_after: float) -> None:
        super().__init__(f"retry after {retry_after}")
        self.retry_after = retry_after


async def test_retry_after_hint_lengthens_the_wait() -> None:
    """An error carrying retry_after waits max(hint, backoff)."""
    calls: list[float] = []

    async def throttled() -> str:
        calls.append(anyio.current_time())
        if len(calls) == 1:
            raise Throttled(7.0)
        return "ok"

    retry = constant_retry(on=Throttled, backoff=backoff.Constant(0.5))
    assert await retry.call(throttled) == "ok"
    assert calls[1] - calls[0] == pytest.approx(7.0)


async def test_retry_after_hint_beyond_the_deadline_gives_up_now() -> None:
    """A hint longer than the time left means: do not retry."""

    async def throttled() -> None:
        raise Throttled(30.0)

    start = anyio.current_time()
    with pytest.raises(Throttled):
        with asyncres.timeout(10):
            await constant_retry(on=Throttled).call(throttled)
    assert anyio.current_time() == pytest.approx(start)


async def test_circuit_open_error_is_waited_out_not_hammered() -> None:
    """CircuitOpenError's retry_after is honoured like any hint."""
    calls: list[float] = []

    async def guarded() -> str:
        calls.append(anyio.current_time())
        if len(calls) < 3:
            raise asyncres.CircuitOpenError("svc", retry_after=4.0)
        return "ok"

    retry = constant_retry(on=asyncres.RejectedError, backoff=backoff.Constant(0.1), max_attempts=5)
    assert await retry.call(guarded) == "ok"
    assert [b - a for a, b in itertools.pairwise(calls)] == pytest.approx([4.0, 4.0])


async def test_decorator_keeps_name_and_retries() -> None:
    """@retry keeps the function's metadata and retries its calls."""
    flaky = Flaky(1)

    @constant_retry()
    async def fetch(user_id: int, *, verbose: bool = False) -> str:
        """Fetch a user."""
        return str(await flaky(user_id, verbose=verbose))

    assert fetch.__name__ == "fetch"
    assert fetch.__doc__ == "Fetch a user."
    assert await fetch(7, verbose=True) == "ok"
    assert len(flaky.calls) == 2


async def test_decorator_with_timeout_and_on_result() -> None:
    """The decorator honours the total timeout and on_result like call()."""
    values = iter([1, 2, 3])

    @constant_retry(timeout=10.0, on_result=lambda v: v < 3)
    async def counter() -> int:
        return next(values)

    assert await counter() == 3


async def test_execute_runs_a_zero_argument_function() -> None:
    """execute(fn) is the Policy contract."""
    flaky = Flaky(1)
    assert await constant_retry().execute(flaky) == "ok"
    assert isinstance(constant_retry(), asyncres.Policy)


async def test_block_form_retries_the_block() -> None:
    """`async for attempt in retry.attempts(): with attempt:` re-runs a failing block."""
    flaky = Flaky(2)
    numbers = []
    async for attempt in constant_retry().attempts():
        with attempt:
            numbers.append(attempt.number)
            result = await flaky()
    assert result == "ok"
    assert numbers == [1, 2, 3]


async def test_block_form_gives_up_with_the_last_error() -> None:
    """The block form raises the last error, noted, when attempts run out."""
    flaky = Flaky(10)
    with pytest.raises(ConnectionError) as info:
        async for attempt in constant_retry(max_attempts=2).attempts():
            with attempt:
                await flaky()
    assert info.value is flaky.raised[-1]
    assert "gave up after 2 attempts" in info.value.__notes__[0]


async def test_block_form_does_not_retry_other_errors_or_cancellation() -> None:
    """Non-matching errors and cancellation leave the loop at once."""
    runs = 0
    with pytest.raises(KeyError):
        async for attempt in constant_retry().attempts():
            with attempt:
                runs += 1
                raise KeyError("x")
    assert runs == 1

    runs = 0
    with anyio.move_on_after(1) as scope:
        async for attempt in constant_retry().attempts():
            with attempt:
                runs += 1
                await anyio.sleep(10)
    assert scope.cancelled_caught
    assert runs == 1


async def test_block_form_total_timeout() -> None:
    """The block form's total timeout cancels a hanging attempt and bounds the waits."""
    start = anyio.current_time()
    with pytest.raises(asyncres.TimeoutExceededError):
        async for attempt in constant_retry(timeout=4.0).attempts():
            with attempt:
                await anyio.sleep(100)
    assert anyio.current_time() - start == pytest.approx(4.0)

    flaky = Flaky(10)
    with pytest.raises(ConnectionError) as info:
        async for attempt in constant_retry(timeout=2.5, max_attempts=10).attempts():
            with attempt:
                await flaky()
    assert len(flaky.calls) == 3
    assert "deadline" in info.value.__notes__[0]


async def test_budget_exhaustion_stops_retries_with_an_event() -> None:
    """An empty budget refuses the retry: the error propagates with a budget event."""
    budget = asyncres.RetryBudget(ratio=0.0, min_per_second=0.1, ttl=10.0)  # one retry
    retry = constant_retry(max_attempts=5, budget=budget, name="svc")
    flaky = Flaky(10)
    with capture_events() as events:
        with pytest.raises(ConnectionError) as info:
            await retry.call(flaky)
    assert len(flaky.calls) == 2
    assert "retry budget is exhausted" in info.value.__notes__[0]
    assert isinstance(events[-1], asyncres.events.RetryBudgetExhausted)
    assert isinstance(events[-1], asyncres.events.RetryGaveUp)
    assert events[-1].reason == "budget"


async def test_budget_none_disables_it() -> None:
    """budget=None: only attempts bound the retries."""
    retry = constant_retry(max_attempts=50, budget=None, backoff=backoff.Constant(0))
    flaky = Flaky(49)
    assert await retry.call(flaky) == "ok"


async def test_each_retry_gets_its_own_default_budget() -> None:
    """Without budget=, every Retry has a separate default RetryBudget."""
    a, b = constant_retry(), constant_retry()
    assert isinstance(a.budget, asyncres.RetryBudget)
    assert a.budget is not b.budget


async def test_base_exceptions_are_never_retried() -> None:
    """KeyboardInterrupt-like BaseExceptions pass straight through."""
    calls = 0

    async def interrupted() -> None:
        nonlocal calls
        calls += 1
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        await asyncres.Retry(on=lambda exc: True).call(interrupted)
    assert calls == 1


async def test_testing_mode_skips_waits_and_caps_attempts() -> None:
    """set_testing(True, attempts=2): two attempts, no waiting."""
    flaky = Flaky(10)
    start = anyio.current_time()
    with set_testing(True, attempts=2):
        with pytest.raises(ConnectionError):
            await constant_retry(backoff=backoff.Constant(100), max_attempts=5).call(flaky)
    assert len(flaky.calls) == 2
    assert anyio.current_time() == pytest.approx(start)


async def test_seeded_rng_makes_waits_reproducible() -> None:
    """Retry(rng=...) draws its jitter from the given generator."""

    async def waits(seed: int) -> list[float]:
        with capture_events() as events:
            with pytest.raises(ConnectionError):
                await asyncres.Retry(
                    on=ConnectionError, max_attempts=4, rng=random.Random(seed)
                ).call(Flaky(10))
        return [e.wait for e in events if isinstance(e, asyncres.events.RetryScheduled)]

    assert await waits(3) == await waits(3)
    assert await waits(3) != await waits(4)


async def test_listener_errors_do_not_change_the_outcome() -> None:
    """A failing listener is logged and ignored."""

    def broken(event: asyncres.events.Event) -> None:
        raise RuntimeError("listener bug")

    retry = constant_retry(listeners=[broken])
    assert await retry.call(Flaky(1)) == "ok"


@pytest.mark.parametrize(
    ("kwargs", "parameter"),
    [
        ({"max_attempts": 0}, "max_attempts"),
        ({"max_attempts": 1.5}, "max_attempts"),
        ({"max_attempts": True}, "max_attempts"),
        ({"timeout": -1}, "timeout"),
        ({"timeout": 0}, "timeout"),
        ({"timeout": math.nan}, "timeout"),
        ({"on": None}, "on"),
        ({"on": ()}, "on"),
        ({"on": (ValueError, "x")}, "on"),
        ({"on": KeyboardInterrupt}, "on"),
        ({"on": BaseException}, "on"),
        ({"backoff": 1.0}, "backoff"),
        ({"budget": 10}, "budget"),
        ({"on_result": 3}, "on_result"),
    ],
)
def test_bad_configuration_names_the_parameter(kwargs: dict[str, Any], parameter: str) -> None:
    """Invalid Retry settings raise ValueError naming the parameter."""
    kwargs.setdefault("on", ConnectionError)
    with pytest.raises(ValueError, match=f"`{parameter}`"):
        asyncres.Retry(**kwargs)


def test_on_is_required() -> None:
    """There is no default for `on`: what to retry is always a decision."""
    with pytest.raises(TypeError):
        asyncres.Retry()  # type: ignore[call-arg]


def test_repr_is_readable() -> None:
    """Retry prints its configuration."""
    assert repr(asyncres.Retry(on=OSError, name="api")) == (
        "Retry(on=OSError, max_attempts=3, timeout=None, "
        "backoff=FullJitter(base=0.1, cap=10.0), name='api')"
    )


@pytest.mark.parametrize(
    ("attribute", "value"),
    [
        ("on", OSError),
        ("max_attempts", 10),
        ("timeout", 5.0),
        ("backoff", backoff.Constant(0.0)),
        ("budget", None),
        ("on_result", bool),
        ("name", "other"),
        ("rng", random.Random(1)),
    ],
)
async def test_configuration_is_read_only_after_construction(attribute: str, value: Any) -> None:
    """Assigning a configuration attribute raises instead of being silently ignored."""
    retry = constant_retry(max_attempts=2, name="svc")
    before = getattr(retry, attribute)
    with pytest.raises(AttributeError, match=rf"Retry\.{attribute} is read-only"):
        setattr(retry, attribute, value)
    assert getattr(retry, attribute) is before
    flaky = Flaky(1)
    assert await retry.call(flaky) == "ok"
    assert len(flaky.calls) == 2  # still the configuration given at construction


async def test_the_old_attempts_parameter_still_works_with_a_deprecation_warning() -> None:
    """``Retry(attempts=n)``, the name before 0.2, warns and means ``max_attempts=n``."""
    with pytest.warns(DeprecationWarning, match="max_attempts"):
        retry = asyncres.Retry(on=ConnectionError, attempts=2, backoff=backoff.Constant(0))
    assert retry.max_attempts == 2
    flaky = Flaky(5)
    with pytest.raises(ConnectionError):
        await retry.call(flaky)
    assert len(flaky.calls) == 2
    with (
        pytest.warns(DeprecationWarning, match="max_attempts"),
        pytest.raises(ValueError, match="`attempts`"),
    ):
        asyncres.Retry(on=ConnectionError, attempts=0)


async def test_gave_up_event_names_attempts_made_and_keeps_the_old_name() -> None:
    """`RetryGaveUp.attempts_made` counts the attempts; ``.attempts`` is a deprecated alias."""
    with capture_events() as events, pytest.raises(ConnectionError):
        await constant_retry(max_attempts=3).call(Flaky(5))
    gave_up = events[-1]
    assert isinstance(gave_up, asyncres.events.RetryGaveUp)
    assert gave_up.attempts_made == 3
    with pytest.warns(DeprecationWarning, match="attempts_made"):
        assert gave_up.attempts == 3
