"""RetryBudget: the token bucket, its window, and the outage amplification it bounds."""

from __future__ import annotations

import contextlib
import math
import random

import anyio
import anyio.lowlevel
import pytest

import asyncres


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def drain(budget: asyncres.RetryBudget) -> int:
    taken = 0
    while budget.try_withdraw():
        taken += 1
    return taken


def test_reserve_allows_min_per_second_times_ttl_retries_without_traffic() -> None:
    """With no requests at all, the reserve still allows min_per_second * ttl retries."""
    budget = asyncres.RetryBudget(min_per_second=2.0, ttl=5.0, clock=FakeClock())
    assert drain(budget) == 10
    assert budget.statistics().refused == 1


def test_busy_client_gets_ratio_of_its_requests() -> None:
    """Above the reserve, retries are limited to ratio x recent requests."""
    clock = FakeClock()
    budget = asyncres.RetryBudget(ratio=0.2, min_per_second=1.0, ttl=10.0, clock=clock)
    for _ in range(1000):
        budget.deposit()
    assert drain(budget) == 200  # max(10, 0.2 * 1000)


def test_reserve_and_ratio_do_not_add_up() -> None:
    """The allowance is the larger of reserve and ratio x requests, not their sum."""
    budget = asyncres.RetryBudget(ratio=0.1, min_per_second=10.0, ttl=10.0, clock=FakeClock())
    for _ in range(500):
        budget.deposit()
    assert drain(budget) == 100  # max(100, 50)


def test_deposits_and_withdrawals_expire_after_ttl() -> None:
    """After ttl seconds both old requests and old retries stop counting."""
    clock = FakeClock()
    budget = asyncres.RetryBudget(ratio=0.5, min_per_second=0.0, ttl=10.0, clock=clock)
    for _ in range(100):
        budget.deposit()
    assert drain(budget) == 50
    clock.now = 5.0
    assert drain(budget) == 0
    clock.now = 10.5  # the deposits (and the withdrawals) have expired
    assert drain(budget) == 0
    for _ in range(10):
        budget.deposit()
    assert drain(budget) == 5


def test_window_slides_slice_by_slice() -> None:
    """Deposits leave the window one slice (ttl/10) at a time."""
    clock = FakeClock()
    budget = asyncres.RetryBudget(ratio=1.0, min_per_second=0.0, ttl=10.0, clock=clock)
    for second in range(10):
        clock.now = second + 0.5
        for _ in range(64):
            budget.deposit()
    clock.now = 10.5  # the slice of second 0 has left the window
    assert budget.statistics().deposits == 9 * 64
    clock.now = 14.5
    assert budget.statistics().deposits == 5 * 64


def test_clock_going_backwards_resets_the_window() -> None:
    """A new event loop with an earlier clock does not corrupt the counts."""
    clock = FakeClock()
    clock.now = 1000.0
    budget = asyncres.RetryBudget(ratio=1.0, min_per_second=0.0, ttl=10.0, clock=clock)
    for _ in range(64):
        budget.deposit()
    clock.now = 3.0
    stats = budget.statistics()
    assert stats.deposits == 0
    assert stats.available == 0.0


def test_statistics_snapshot() -> None:
    """statistics() reports deposits, withdrawals, refusals and what is available."""
    budget = asyncres.RetryBudget(ratio=0.5, min_per_second=0.0, ttl=10.0, clock=FakeClock())
    for _ in range(4):
        budget.deposit()
    assert budget.try_withdraw()
    assert budget.try_withdraw()
    assert not budget.try_withdraw()
    assert budget.statistics() == asyncres.RetryBudgetStatistics(
        available=0.0,
        deposits=4,
        withdrawals=2,
        refused=1,
        ratio=0.5,
        retry_success_rate=0.0,
        overloaded=False,
    )


@pytest.mark.parametrize(
    ("kwargs", "parameter"),
    [
        ({"ratio": -0.1}, "ratio"),
        ({"ratio": 1.5}, "ratio"),
        ({"ratio": math.nan}, "ratio"),
        ({"min_per_second": -1}, "min_per_second"),
        ({"min_per_second": math.inf}, "min_per_second"),
        ({"ttl": 0}, "ttl"),
        ({"ttl": math.inf}, "ttl"),
        ({"min_ratio": math.nan}, "min_ratio"),
        ({"min_ratio": -0.1}, "min_ratio"),
        ({"max_ratio": 1.5}, "max_ratio"),
        ({"min_ratio": 0.5, "max_ratio": 0.2}, "min_ratio"),
    ],
)
def test_bad_configuration_names_the_parameter(kwargs: dict[str, float], parameter: str) -> None:
    """Invalid budgets raise ValueError naming the parameter."""
    with pytest.raises(ValueError, match=f"`{parameter}`"):
        asyncres.RetryBudget(**kwargs)


async def _outage(retry: asyncres.Retry, calls: int, window: float) -> int:
    """Offer `calls` evenly over `window` seconds to a dependency that always fails."""
    attempts = 0

    async def dependency() -> None:
        nonlocal attempts
        attempts += 1
        raise ConnectionError("down")

    async def one_call() -> None:
        try:
            await retry.call(dependency)
        except ConnectionError:
            pass

    interval = window / calls
    async with anyio.create_task_group() as tg:
        for _ in range(calls):
            tg.start_soon(one_call)
            await anyio.sleep(interval)
    return attempts


@pytest.mark.anyio
async def test_default_budget_bounds_outage_amplification() -> None:
    """10,000 calls in a 60 s outage: <= 1.25 x attempts with the budget, 3 x without."""
    with_budget = await _outage(asyncres.Retry(on=ConnectionError, max_attempts=3), 10_000, 60.0)
    without = await _outage(
        asyncres.Retry(on=ConnectionError, max_attempts=3, budget=None), 10_000, 60.0
    )
    assert without == 30_000
    assert 10_000 < with_budget <= 12_500, with_budget


@pytest.mark.anyio
async def test_shared_budget_spans_retry_objects() -> None:
    """One budget shared by two Retry objects is drained by both together."""
    budget = asyncres.RetryBudget(ratio=0.0, min_per_second=0.5, ttl=10.0)  # 5 retries
    first = asyncres.Retry(on=ConnectionError, max_attempts=10, budget=budget)
    second = asyncres.Retry(on=ConnectionError, max_attempts=10, budget=budget)
    attempts = 0

    async def down() -> None:
        nonlocal attempts
        attempts += 1
        raise ConnectionError

    for retry in (first, second):
        with pytest.raises(ConnectionError):
            await retry.call(down)
    assert attempts == 2 + 5  # two first attempts, five retries in all


def test_refund_returns_a_withdrawal() -> None:
    """A refunded retry is available again; refunds never go below zero."""
    budget = asyncres.RetryBudget(ratio=0.0, min_per_second=0.1, ttl=10.0, clock=FakeClock())
    assert budget.try_withdraw()
    assert not budget.try_withdraw()
    budget.refund()
    assert budget.try_withdraw()
    budget.refund()
    budget.refund()  # nothing left to refund: ignored
    assert budget.statistics().withdrawals == 0


@pytest.mark.anyio
async def test_successful_retries_are_refunded() -> None:
    """Retries that succeed cost no budget; only failed retries use it up."""
    budget = asyncres.RetryBudget(ratio=0.0, min_per_second=0.1, ttl=10.0)  # one retry
    retry = asyncres.Retry(on=ConnectionError, max_attempts=2, budget=budget)
    for _ in range(5):  # each call fails once and succeeds on its retry
        failed = False

        async def blip() -> str:
            nonlocal failed
            if not failed:
                failed = True
                raise ConnectionError
            return "ok"

        assert await retry.call(blip) == "ok"
    async for attempt in retry.attempts():
        with attempt:
            if attempt.number == 1:
                raise ConnectionError
    assert budget.statistics().withdrawals == 0


@pytest.mark.parametrize("attribute", ["ratio", "min_per_second", "ttl"])
def test_configuration_is_read_only_after_construction(attribute: str) -> None:
    """Assigning ``ratio``, ``min_per_second`` or ``ttl`` raises instead of being ignored."""
    budget = asyncres.RetryBudget(ratio=0.5, min_per_second=1.0, ttl=10.0, clock=FakeClock())
    before = getattr(budget, attribute)
    with pytest.raises(AttributeError, match=rf"RetryBudget\.{attribute} is read-only"):
        setattr(budget, attribute, 100.0)
    assert getattr(budget, attribute) == before
    assert drain(budget) == 10  # the reserve still comes from the construction values


class Overloaded(ConnectionError):
    """A refusal that asks the client to come back later (a 503 with ``Retry-After``)."""

    retry_after = 0.0


async def _brownout(
    retry: asyncres.Retry, *, rate: float, seconds: float, error: type[Exception], seed: int
) -> tuple[float, float]:
    """Offer ``rate`` calls/s to a dependency failing half the attempts at random.

    Returns (share of calls that succeeded, attempts per call).
    """
    rng = random.Random(seed)
    attempts = succeeded = 0

    async def dependency() -> str:
        nonlocal attempts
        attempts += 1
        await anyio.lowlevel.checkpoint()
        if rng.random() < 0.5:
            raise error("brownout")
        return "ok"

    async def one_call() -> None:
        nonlocal succeeded
        try:
            await retry.call(dependency)
        except ConnectionError:
            return
        succeeded += 1

    calls = round(rate * seconds)
    async with anyio.create_task_group() as tg:
        for _ in range(calls):
            tg.start_soon(one_call)
            await anyio.sleep(1 / rate)
    return succeeded / calls, attempts / calls


def _retry(budget: asyncres.RetryBudget | None = None) -> asyncres.Retry:
    return asyncres.Retry(
        on=ConnectionError,
        max_attempts=3,
        backoff=asyncres.backoff.Constant(0.05),
        budget=budget if budget is not None else asyncres.RetryBudget(),
    )


@pytest.mark.anyio
@pytest.mark.parametrize("rate", [10, 25, 50, 100, 200])
async def test_adaptive_budget_bounds_a_total_outage_at_every_rate(rate: int) -> None:
    """No retry ever succeeds in an outage: <= 1.25 x the offered load from 10 to 200 calls/s."""
    calls = rate * 30
    attempts = await _outage(_retry(), calls, 30.0)
    assert attempts / calls <= 1.25, attempts / calls


@pytest.mark.anyio
async def test_adaptive_budget_earns_retries_that_succeed() -> None:
    """Random 50 % failures with capacity to spare: >= 85 % success at <= 1.8 x attempts."""
    budget = asyncres.RetryBudget()
    success, amplification = await _brownout(
        _retry(budget), rate=100, seconds=30, error=ConnectionError, seed=1
    )
    assert success >= 0.85, success
    assert amplification <= 1.8, amplification
    stats = budget.statistics()
    assert stats.retry_success_rate == pytest.approx(0.5, abs=0.1)
    assert stats.ratio > 0.4
    assert not stats.overloaded
    # The same traffic under a fixed 10 % budget: the adaptation is what pays.
    fixed, _ = await _brownout(
        _retry(asyncres.RetryBudget(ratio=0.1)),
        rate=100,
        seconds=30,
        error=ConnectionError,
        seed=1,
    )
    assert fixed < success - 0.1, (fixed, success)


@pytest.mark.anyio
async def test_overload_signals_hold_the_ratio_at_the_floor() -> None:
    """Refusals carrying ``retry_after`` are overload: the ratio stays at ``min_ratio``."""
    budget = asyncres.RetryBudget()
    _, amplification = await _brownout(
        _retry(budget), rate=100, seconds=30, error=Overloaded, seed=1
    )
    stats = budget.statistics()
    assert stats.overloaded
    assert stats.ratio == 0.1
    assert amplification <= 1.25, amplification


def test_a_given_ratio_is_fixed() -> None:
    """``RetryBudget(ratio=r)`` is Finagle's fixed budget, whatever retries achieve."""
    clock = FakeClock()
    budget = asyncres.RetryBudget(ratio=0.2, min_per_second=0.0, clock=clock)
    for _ in range(100):
        budget.deposit()
    for _ in range(10):
        assert budget.try_withdraw()
        budget.refund()
    assert budget.statistics().ratio == 0.2
    assert budget.statistics().retry_success_rate == 1.0
    assert drain(budget) == 20
    assert budget.ratio == budget.min_ratio == budget.max_ratio == 0.2


def test_adaptive_ratio_follows_the_retry_success_rate_and_overload() -> None:
    """``min_ratio + (max_ratio - min_ratio) * success share``, the floor under overload."""
    clock = FakeClock()
    budget = asyncres.RetryBudget(min_ratio=0.1, max_ratio=0.9, min_per_second=0.0, clock=clock)
    assert budget.ratio is None
    for _ in range(1000):
        budget.deposit()
    assert budget.statistics().ratio == 0.1  # no retry yet: the floor
    for n in range(40):
        assert budget.try_withdraw()
        if n % 4 == 0:
            budget.refund()  # a quarter of the retries succeed
    assert budget.statistics().ratio == pytest.approx(0.1 + 0.8 * 0.25)
    budget.signal_overload()
    assert budget.statistics().ratio == 0.1
    assert budget.statistics().overloaded
    clock.now = 0.9  # the signal holds the floor for a tenth of the window...
    assert budget.statistics().overloaded
    assert budget.statistics().ratio == 0.1
    clock.now = 1.0  # ...then the retries' success counts again
    assert not budget.statistics().overloaded
    assert budget.statistics().ratio == pytest.approx(0.1 + 0.8 * 0.25)
    clock.now = 10.0  # the retries leave the window
    assert budget.statistics().ratio == 0.1
    assert not budget.statistics().overloaded
    assert budget.statistics().retry_success_rate is None


def test_the_ratio_follows_retries_that_succeed_again_within_two_slices() -> None:
    """Failures that ended stop holding the ratio down within two slices (2 s), not a ttl.

    The drill's recovery after a slow database: eight seconds of failed retries, then the
    dependency serves again; the window's share still says "retries fail" for 8 s more,
    the last two slices say they succeed.
    """
    clock = FakeClock()
    budget = asyncres.RetryBudget(min_per_second=0.0, clock=clock)
    for second in range(8):  # 40 requests/s, every retry fails
        clock.now = float(second)
        for _ in range(40):
            budget.deposit()
        for _ in range(4):
            budget.try_withdraw()
    assert budget.statistics().ratio == pytest.approx(0.1)
    for second in (8, 9):  # the dependency is back: retries succeed
        clock.now = float(second)
        for _ in range(40):
            budget.deposit()
        for _ in range(4):
            assert budget.try_withdraw()
            budget.refund()
    stats = budget.statistics()
    assert stats.retry_success_rate == pytest.approx(8 / 40)  # the window: mostly failures
    assert stats.ratio == pytest.approx(1.0)  # the last two slices: all succeed
    clock.now = 11.0  # two slices without retries: the window's share decides again
    assert budget.statistics().ratio < 1.0


class ComeBackIn(ConnectionError):
    """A 503 whose ``Retry-After`` asks for one second."""

    retry_after = 1.0


@pytest.mark.anyio
@pytest.mark.parametrize("form", ["call", "block"])
async def test_a_retry_after_retry_is_charged_when_it_is_sent(form: str) -> None:
    """The budget that pays for a ``Retry-After`` retry is the one of the moment it is sent:
    empty when the server said "come back in 1 s", it has room again 1 s later (the
    withdrawal left its 0.5 s window), so the retry goes out and succeeds."""
    budget = asyncres.RetryBudget(min_per_second=2.0, ttl=0.5, clock=anyio.current_time)
    assert drain(budget) == 1  # empty now
    calls: list[float] = []

    async def dependency() -> str:
        calls.append(anyio.current_time())
        if len(calls) == 1:
            raise ComeBackIn("busy")
        return "ok"

    retry = asyncres.Retry(on=ComeBackIn, max_attempts=2, budget=budget)
    start = anyio.current_time()
    if form == "call":
        assert await retry.call(dependency) == "ok"
    else:
        async for attempt in retry.attempts():
            with attempt:
                await dependency()
    assert [round(t - start, 3) for t in calls] == [0.0, 1.0]
    assert budget.statistics().refused == 1  # only the drain's probe above


@pytest.mark.anyio
@pytest.mark.parametrize("form", ["call", "block"])
async def test_a_retry_after_retry_on_an_empty_budget_overdraws_once_per_call(form: str) -> None:
    """Still no room when the wait is over: the first server-paced retry of the call goes out
    anyway (the server asked for it; counted as `overdrawn` and as a withdrawal), the second
    gives up with the server's error (noted, `RetryBudgetExhausted` emitted)."""
    budget = asyncres.RetryBudget(min_per_second=1.0, ttl=10.0, clock=anyio.current_time)
    drain(budget)
    refused = budget.statistics().refused
    events: list[asyncres.events.Event] = []
    calls = 0

    async def dependency() -> str:
        nonlocal calls
        calls += 1
        raise ComeBackIn("busy")

    retry = asyncres.Retry(on=ComeBackIn, max_attempts=3, budget=budget, listeners=[events.append])
    start = anyio.current_time()
    withdrawn = budget.statistics().withdrawals
    with pytest.raises(ComeBackIn) as caught:
        if form == "call":
            await retry.call(dependency)
        else:
            async for attempt in retry.attempts():
                with attempt:
                    await dependency()
    assert calls == 2
    assert anyio.current_time() - start == pytest.approx(2.0)
    assert "gave up after 2 attempts (the retry budget is exhausted)" in str(caught.value.__notes__)
    exhausted = [e for e in events if isinstance(e, asyncres.events.RetryBudgetExhausted)]
    assert len(exhausted) == 1
    assert exhausted[0].attempts_made == 2
    stats = budget.statistics()
    assert stats.overdrawn == 1
    assert stats.withdrawals == withdrawn + 1
    assert stats.refused == refused + 1  # the second one only


class BreakerSaysWait(asyncres.RejectedError):
    """A local rejection with a wait (as `CircuitOpenError`): no server asked for a retry."""

    retry_after = 1.0


@pytest.mark.anyio
async def test_a_local_rejections_wait_never_overdraws() -> None:
    budget = asyncres.RetryBudget(min_per_second=1.0, ttl=10.0, clock=anyio.current_time)
    drain(budget)
    calls = 0

    async def dependency() -> str:
        nonlocal calls
        calls += 1
        raise BreakerSaysWait("open")

    retry = asyncres.Retry(on=BreakerSaysWait, max_attempts=3, budget=budget)
    with pytest.raises(BreakerSaysWait):
        await retry.call(dependency)
    assert calls == 1
    assert budget.statistics().overdrawn == 0


@pytest.mark.anyio
@pytest.mark.parametrize("rate", [10, 50, 200])
async def test_an_outage_answering_retry_after_stays_within_twice_the_offered_load(
    rate: int,
) -> None:
    """The bound with server-paced retries: a dependency that answers every call "503,
    Retry-After: 1" for 30 s gets at most 2 x the offered load plus one window's allowance:
    the first attempts and one overdraft per call (the bound
    without Retry-After stays 1.2 x: nothing overdraws there)."""
    budget = asyncres.RetryBudget(clock=anyio.current_time)
    retry = asyncres.Retry(on=ComeBackIn, max_attempts=3, budget=budget)
    attempts = 0

    async def dependency() -> None:
        nonlocal attempts
        attempts += 1
        raise ComeBackIn("down")

    async def one() -> None:
        with contextlib.suppress(ComeBackIn):
            await retry.call(dependency)

    offered = 30 * rate
    async with anyio.create_task_group() as tg:
        for _ in range(offered):
            tg.start_soon(one)
            await anyio.sleep(1 / rate)
    # Every call: its first attempt and at most one overdraft; beyond that, one window's
    # allowance (overdrafts count as withdrawals, so they keep the budget spent after it).
    assert attempts <= 2 * offered + max(2.0 * 10.0, 0.1 * rate * 10.0)
    assert attempts / offered <= 2.07
    assert budget.statistics().overdrawn > 0
