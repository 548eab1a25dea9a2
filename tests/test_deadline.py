"""asyncres.timeout / deadline / remaining and the Timeout policy, on asyncio and trio."""

from __future__ import annotations

import math

import anyio
import anyio.lowlevel
import pytest

import asyncres
from asyncres.testing import capture_events

pytestmark = pytest.mark.anyio


async def test_timeout_cancels_the_body_and_raises_its_own_error() -> None:
    """A timeout that fires raises TimeoutExceededError, a TimeoutError with .timeout."""
    start = anyio.current_time()
    with pytest.raises(asyncres.TimeoutExceededError) as info:
        with asyncres.timeout(5.0):
            await anyio.sleep(60)
    assert anyio.current_time() - start == pytest.approx(5.0)
    assert isinstance(info.value, TimeoutError)
    assert isinstance(info.value, asyncres.ResilienceError)
    assert info.value.timeout == 5.0


async def test_body_that_finishes_in_time_is_untouched() -> None:
    """A body that completes before the deadline returns normally and is not expired."""
    with asyncres.timeout(5.0) as scope:
        await anyio.sleep(4.9)
    assert not scope.expired
    await anyio.sleep(10)  # no stray cancellation arrives later


async def test_expired_flag_is_set_when_the_scope_fires() -> None:
    """The scope object reports that its own deadline fired."""
    scope = asyncres.timeout(1.0)
    with pytest.raises(asyncres.TimeoutExceededError):
        with scope:
            await anyio.sleep(2)
    assert scope.expired


async def test_tighter_inner_timeout_wins() -> None:
    """Nested: the inner, tighter scope raises; the outer one stays quiet."""
    with asyncres.timeout(10.0) as outer:
        with pytest.raises(asyncres.TimeoutExceededError) as info:
            with asyncres.timeout(1.0):
                await anyio.sleep(5)
        assert info.value.timeout == 1.0
        await anyio.sleep(1)
    assert not outer.expired


async def test_tighter_outer_timeout_wins_and_inner_sees_cancellation() -> None:
    """Nested: when the outer deadline comes first, only the outer scope raises."""
    inner_saw: list[type[BaseException]] = []
    with pytest.raises(asyncres.TimeoutExceededError) as info:
        with asyncres.timeout(1.0):
            try:
                with asyncres.timeout(10.0) as inner:
                    await anyio.sleep(5)
            except BaseException as exc:
                inner_saw.append(type(exc))
                raise
    assert info.value.timeout == 1.0
    assert not inner.expired
    assert inner_saw == [anyio.get_cancelled_exc_class()]


async def test_outer_cancellation_passes_through_as_cancellation() -> None:
    """An enclosing anyio cancel scope's cancellation is not turned into a timeout."""
    with anyio.move_on_after(1.0) as outer:
        with asyncres.timeout(10.0) as scope:
            await anyio.sleep(5)
    assert outer.cancelled_caught
    assert not scope.expired


async def test_explicit_cancel_of_enclosing_task_group_is_not_a_timeout() -> None:
    """Cancelling the task group around a timeout cancels; no TimeoutExceededError."""
    errors: list[BaseException] = []

    async def worker() -> None:
        try:
            with asyncres.timeout(100.0):
                await anyio.sleep(50)
        except BaseException as exc:
            errors.append(exc)
            raise

    async with anyio.create_task_group() as tg:
        tg.start_soon(worker)
        await anyio.sleep(1)
        tg.cancel_scope.cancel()
    assert len(errors) == 1
    assert isinstance(errors[0], anyio.get_cancelled_exc_class())


async def test_children_of_a_task_group_inside_a_timeout_are_cancelled() -> None:
    """When the deadline fires, tasks started inside the block are cancelled too."""
    finished: list[str] = []

    async def child() -> None:
        await anyio.sleep(100)
        finished.append("child")

    with pytest.raises(asyncres.TimeoutExceededError):
        with asyncres.timeout(2.0):
            async with anyio.create_task_group() as tg:
                tg.start_soon(child)
                tg.start_soon(child)
    assert finished == []


async def test_deadline_at_absolute_time() -> None:
    """deadline(at) fires at the absolute loop time and reports timeout=None."""
    at = anyio.current_time() + 3.0
    with pytest.raises(asyncres.TimeoutExceededError) as info:
        with asyncres.deadline(at) as scope:
            assert scope.deadline == pytest.approx(at)
            await anyio.sleep(10)
    assert anyio.current_time() == pytest.approx(at)
    assert info.value.timeout is None


async def test_deadline_in_the_past_fires_at_the_first_checkpoint() -> None:
    """A deadline already passed cancels the block at its first await."""
    reached: list[str] = []
    with pytest.raises(asyncres.TimeoutExceededError):
        with asyncres.deadline(anyio.current_time() - 1.0):
            reached.append("before")
            await anyio.lowlevel.checkpoint()
            reached.append("after")
    assert reached == ["before"]


async def test_zero_timeout_fires_at_once() -> None:
    """timeout(0) cancels at the first checkpoint."""
    with pytest.raises(asyncres.TimeoutExceededError):
        with asyncres.timeout(0):
            await anyio.sleep(1)


async def test_infinite_timeout_never_fires() -> None:
    """timeout(inf) is unbounded and remaining() says so."""
    with asyncres.timeout(math.inf) as scope:
        assert asyncres.remaining() is None
        await anyio.sleep(86_000)
    assert not scope.expired


async def test_remaining_sees_asyncres_scopes() -> None:
    """remaining() reports the seconds left before the tightest asyncres deadline."""
    assert asyncres.remaining() is None
    with asyncres.timeout(10.0):
        assert asyncres.remaining() == pytest.approx(10.0)
        await anyio.sleep(4)
        assert asyncres.remaining() == pytest.approx(6.0)
        with asyncres.timeout(2.0):
            assert asyncres.remaining() == pytest.approx(2.0)
        with asyncres.timeout(100.0):
            assert asyncres.remaining() == pytest.approx(6.0)
    assert asyncres.remaining() is None


async def test_remaining_sees_anyio_scopes() -> None:
    """remaining() also honours anyio's fail_after / move_on_after deadlines."""
    with anyio.move_on_after(3.0):
        assert asyncres.remaining() == pytest.approx(3.0)
        with asyncres.timeout(5.0):
            assert asyncres.remaining() == pytest.approx(3.0)
            with anyio.fail_after(1.0):
                assert asyncres.remaining() == pytest.approx(1.0)


async def test_remaining_is_zero_once_cancelled() -> None:
    """Inside a scope that was already cancelled, remaining() is 0.0, never negative."""
    with anyio.CancelScope() as scope:
        scope.cancel()
        assert asyncres.remaining() == 0.0


async def test_remaining_in_a_task_spawned_from_inside_a_timeout() -> None:
    """A task spawned into an outer group outlives the scope: its deadline stops counting."""
    seen: list[float | None] = []

    async def background() -> None:
        await anyio.sleep(5)
        seen.append(asyncres.remaining())

    async with anyio.create_task_group() as tg:
        with asyncres.timeout(2.0):
            tg.start_soon(background)
            await anyio.sleep(1)
    assert seen == [None]


async def test_a_shield_inside_a_timeout_holds() -> None:
    """An anyio shielded scope inside a timeout finishes; the timeout fires after it."""
    done: list[float] = []
    with pytest.raises(asyncres.TimeoutExceededError):
        with asyncres.timeout(1.0):
            with anyio.CancelScope(shield=True):
                await anyio.sleep(3)
                done.append(anyio.current_time())
                assert asyncres.remaining() is None  # the shield hides the deadline
            await anyio.sleep(10)
    assert len(done) == 1


async def test_scope_cannot_be_entered_twice() -> None:
    """Re-entering a used scope is a programming error."""
    scope = asyncres.timeout(1.0)
    with scope:
        pass
    with pytest.raises(RuntimeError):
        with scope:
            pass


@pytest.mark.parametrize("bad", [-1.0, -0.001, math.nan, "1", None, True])
def test_bad_seconds_raise_value_error(bad: object) -> None:
    """Negative, NaN or non-numeric seconds raise ValueError naming the parameter."""
    with pytest.raises(ValueError, match="`seconds`"):
        asyncres.timeout(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="`seconds`"):
        asyncres.Timeout(bad)  # type: ignore[arg-type]


def test_bad_deadline_raises_value_error() -> None:
    """A NaN deadline raises ValueError naming the parameter."""
    with pytest.raises(ValueError, match="`at`"):
        asyncres.deadline(math.nan)


async def test_timeout_policy_call_execute_and_decorator() -> None:
    """The Timeout policy bounds call(), execute() and decorated functions alike."""
    policy = asyncres.Timeout(2.0)

    async def work(seconds: float, *, label: str) -> str:
        await anyio.sleep(seconds)
        return label

    assert await policy.call(work, 1.0, label="ok") == "ok"
    with pytest.raises(asyncres.TimeoutExceededError):
        await policy.call(work, 3.0, label="slow")
    assert await policy.execute(lambda: work(1.0, label="exec")) == "exec"

    decorated = policy(work)
    assert decorated.__name__ == "work"
    assert await decorated(0.5, label="deco") == "deco"
    with pytest.raises(asyncres.TimeoutExceededError):
        await decorated(5.0, label="slow")


async def test_timeout_policy_emits_timeout_expired_only_for_its_own_deadline() -> None:
    """TimeoutExpired is emitted when this policy fired, not when an inner one did."""
    seen: list[asyncres.events.Event] = []
    outer = asyncres.Timeout(10.0, name="outer", listeners=[seen.append])
    inner = asyncres.Timeout(1.0, name="inner", listeners=[seen.append])

    async def slow() -> None:
        await anyio.sleep(5)

    with capture_events() as captured:
        with pytest.raises(asyncres.TimeoutExceededError):
            await outer.call(inner.call, slow)
    assert seen == [asyncres.events.TimeoutExpired(name="inner", timeout=1.0)]
    assert captured == seen


def test_timeout_policy_prints_and_compares() -> None:
    """Timeout policies have a readable repr and compare by configuration."""
    assert repr(asyncres.Timeout(2.5)) == "Timeout(2.5)"
    assert asyncres.Timeout(2.5) == asyncres.Timeout(2.5)
    assert asyncres.Timeout(2.5) != asyncres.Timeout(3)
    assert isinstance(asyncres.Timeout(1), asyncres.Policy)


async def test_shielded_cleanup_after_expiry_completes() -> None:
    """Cleanup in a shielded scope after the deadline fired runs to completion."""
    cleaned: list[bool] = []
    with pytest.raises(asyncres.TimeoutExceededError):
        with asyncres.timeout(1.0):
            try:
                await anyio.sleep(5)
            finally:
                with anyio.CancelScope(shield=True):
                    await anyio.sleep(2)
                    cleaned.append(True)
    assert cleaned == [True]


async def test_many_sequential_timeouts_leave_no_pending_cancellation() -> None:
    """Thousands of scopes in a row leave neither timers nor cancellations behind."""
    for _ in range(2000):
        with asyncres.timeout(1.0):
            await anyio.lowlevel.checkpoint()
    await anyio.sleep(5)  # would raise if a stray cancellation were pending


@pytest.mark.parametrize(("attribute", "value"), [("seconds", 9.0), ("name", "other")])
async def test_timeout_configuration_is_read_only(attribute: str, value: object) -> None:
    """Assigning a Timeout's configuration raises AttributeError naming it; the limit holds."""
    policy = asyncres.Timeout(1.0, name="api")
    with pytest.raises(AttributeError, match=rf"Timeout\.{attribute} is read-only"):
        setattr(policy, attribute, value)
    with pytest.raises(AttributeError, match=rf"Timeout\.{attribute} cannot be deleted"):
        delattr(policy, attribute)
    assert (policy.seconds, policy.name) == (1.0, "api")
    start = anyio.current_time()
    with pytest.raises(asyncres.TimeoutExceededError):
        await policy.call(anyio.sleep, 60)
    assert anyio.current_time() - start == pytest.approx(1.0)
