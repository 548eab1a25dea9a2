"""Bulkhead: limits, the bounded priority queue, shedding, deadlines, cancellation, faces."""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.lowlevel
import pytest

import asyncres
from asyncres import _waiters
from asyncres._deadline import DeadlineScope
from asyncres.testing import capture_events

pytestmark = pytest.mark.anyio


def assert_idle(bulkhead: asyncres.Bulkhead) -> None:
    """No permit held, nobody queued, no leftover queue structure."""
    stats = bulkhead.statistics()
    assert stats.in_use == 0
    assert stats.queued == 0
    assert stats.queued_by_priority == {}
    assert bulkhead._queue._lanes == {}
    assert bulkhead._queue._priorities == []


def rejections(events: list[asyncres.events.Event]) -> list[str]:
    return [e.reason for e in events if isinstance(e, asyncres.events.CallRejected)]


class Holders:
    """Tasks that each hold a permit until told to let go, recording the order they ran in."""

    def __init__(self, bulkhead: asyncres.Bulkhead) -> None:
        self.bulkhead = bulkhead
        self.entered: list[str] = []
        self.outcomes: dict[str, object] = {}
        self.gates: dict[str, anyio.Event] = {}
        self.scopes: dict[str, anyio.CancelScope] = {}
        self.tasks: dict[str, asyncio.Task[Any]] = {}

    def start(self, tg: anyio.abc.TaskGroup, label: str, priority: int = 0) -> None:
        """Start a task that waits at ``priority`` for a permit and holds it until released."""
        scope = self.scopes[label] = anyio.CancelScope()
        gate = self.gates[label] = anyio.Event()

        async def run() -> None:
            try:
                self.tasks[label] = asyncio.current_task()  # type: ignore[assignment]
            except RuntimeError:
                pass  # trio
            try:
                with scope:
                    async with self.bulkhead.acquire(priority=priority):
                        self.entered.append(label)
                        await gate.wait()
            except asyncres.BulkheadFullError as exc:
                self.outcomes[label] = exc
            except asyncio.CancelledError:
                # Native asyncio cancellation (cancel_now): this task stands for a caller
                # whose cancellation ends here.
                self.outcomes[label] = "cancelled"
            else:
                self.outcomes[label] = "cancelled" if scope.cancelled_caught else "done"

        tg.start_soon(run)

    def release(self, label: str) -> None:
        self.gates[label].set()

    def cancel(self, label: str) -> None:
        self.scopes[label].cancel()

    def cancel_now(self, label: str) -> None:
        """Cancel at once: natively on asyncio (anyio would wait for a pending wake-up)."""
        task = self.tasks.get(label)
        if task is not None:
            task.cancel()
        else:
            self.scopes[label].cancel()


# -- construction ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_concurrent": 0}, "`max_concurrent` must be >= 1, got 0"),
        ({"max_concurrent": True}, "`max_concurrent` must be an integer"),
        ({"max_concurrent": 2.0}, "`max_concurrent` must be an integer"),
        ({"max_concurrent": 1, "max_queued": -1}, "`max_queued` must be >= 0, got -1"),
        ({"max_concurrent": 1, "queue_timeout": 0}, "`queue_timeout` must be > 0"),
        ({"max_concurrent": 1, "queue_timeout": -1.0}, "`queue_timeout` must be > 0"),
        ({"max_concurrent": 1, "queue_timeout": math.nan}, "`queue_timeout` must be a number"),
        ({"max_concurrent": 1, "listeners": [42]}, "`listeners` must be callables"),
    ],
)
def test_bad_options_raise_value_error_naming_the_parameter(
    kwargs: dict[str, Any], message: str
) -> None:
    """Invalid construction arguments raise ValueError naming the parameter."""
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        asyncres.Bulkhead(**kwargs)


@pytest.mark.parametrize("priority", [True, 1.5, "high", None])
def test_priority_must_be_an_integer(priority: Any) -> None:
    """A lane's priority is an integer; anything else raises ValueError."""
    bulkhead = asyncres.Bulkhead(max_concurrent=1)
    bulkhead.lane(1)  # a cached lane must not let True or 1.0 through
    with pytest.raises(ValueError, match="`priority` must be an integer"):
        bulkhead.lane(priority)
    with pytest.raises(ValueError, match="`priority` must be an integer"):
        bulkhead.acquire(priority=priority)


def test_options_are_stored_and_printed() -> None:
    """The bulkhead keeps its options, prints them, and infinite queue_timeout means none."""
    bulkhead = asyncres.Bulkhead(max_concurrent=4, max_queued=8, queue_timeout=2.5, name="db")
    assert (bulkhead.max_concurrent, bulkhead.max_queued, bulkhead.queue_timeout) == (4, 8, 2.5)
    assert repr(bulkhead) == (
        "Bulkhead(max_concurrent=4, max_queued=8, queue_timeout=2.5, name='db')"
    )
    assert asyncres.Bulkhead(max_concurrent=1, queue_timeout=math.inf).queue_timeout is None


@pytest.mark.parametrize("option", ["max_concurrent", "max_queued", "queue_timeout", "name"])
def test_configuration_is_read_only(option: str) -> None:
    """Assigning a configuration attribute raises AttributeError naming it; reading works."""
    bulkhead = asyncres.Bulkhead(max_concurrent=2, max_queued=3, queue_timeout=1.5, name="b")
    before = getattr(bulkhead, option)
    with pytest.raises(AttributeError, match=f"Bulkhead.{option} is read-only"):
        setattr(bulkhead, option, before)
    with pytest.raises(AttributeError, match=f"Bulkhead.{option} cannot be deleted"):
        delattr(bulkhead, option)
    assert getattr(bulkhead, option) == before
    expected = {"max_concurrent": 2, "max_queued": 3, "queue_timeout": 1.5, "name": "b"}
    assert before == expected[option]


async def test_assigning_max_concurrent_changes_nothing_it_is_refused() -> None:
    """The rejected assignment leaves the limit in force: a third caller is still refused."""
    bulkhead = asyncres.Bulkhead(max_concurrent=2)
    with pytest.raises(AttributeError, match="max_concurrent"):
        bulkhead.max_concurrent = 3  # type: ignore[misc]
    async with bulkhead, bulkhead:
        with pytest.raises(asyncres.BulkheadFullError, match="queue_full"):
            await bulkhead.call(anyio.sleep, 0)
    assert_idle(bulkhead)


def test_statistics_start_empty() -> None:
    """A new bulkhead reports its limits, nothing in use and zero rejections per reason."""
    stats = asyncres.Bulkhead(max_concurrent=3, max_queued=5).statistics()
    assert stats == asyncres.BulkheadStatistics(
        max_concurrent=3,
        max_queued=5,
        in_use=0,
        queued=0,
        queued_by_priority={},
        rejected={"queue_full": 0, "shed": 0, "queue_timeout": 0, "deadline": 0},
    )


def test_lanes_are_immutable_equal_and_reused() -> None:
    """lane() and acquire() return the same immutable view per priority."""
    bulkhead = asyncres.Bulkhead(max_concurrent=1)
    lane = bulkhead.lane(2)
    assert bulkhead.acquire(priority=2) is lane
    assert lane == asyncres.BulkheadLane(bulkhead, 2)
    assert hash(lane) == hash(asyncres.BulkheadLane(bulkhead, 2))
    assert lane != bulkhead.lane(3)
    assert lane != asyncres.Bulkhead(max_concurrent=1).lane(2)
    assert (lane.bulkhead, lane.priority) == (bulkhead, 2)
    assert repr(lane) == f"<BulkheadLane priority=2 of {bulkhead!r}>"
    with pytest.raises(AttributeError):
        lane.priority = 5  # type: ignore[misc]
    with pytest.raises(ValueError, match="`bulkhead` must be a Bulkhead"):
        asyncres.BulkheadLane(object(), 1)  # type: ignore[arg-type]


def test_lane_cache_is_bounded() -> None:
    """Arbitrary priorities still work, but only a few lanes are kept for reuse."""
    bulkhead = asyncres.Bulkhead(max_concurrent=1)
    lanes = [bulkhead.lane(p) for p in range(1000)]
    assert [lane.priority for lane in lanes] == list(range(1000))
    assert len(bulkhead._views) <= 32


# -- the faces -------------------------------------------------------------------------


async def test_call_passes_arguments_and_returns_the_result() -> None:
    """call(fn, *args, **kwargs) runs fn with its arguments and returns its result."""
    bulkhead = asyncres.Bulkhead(max_concurrent=1)

    async def add(a: int, b: int, *, scale: int) -> int:
        assert bulkhead.statistics().in_use == 1
        return (a + b) * scale

    assert await bulkhead.call(add, 1, 2, scale=10) == 30
    assert await bulkhead.lane(5).call(add, 1, 1, scale=2) == 4
    assert_idle(bulkhead)


async def test_execute_and_decorators_hold_a_permit() -> None:
    """execute(), @bulkhead and @lane run the function holding a permit."""
    bulkhead = asyncres.Bulkhead(max_concurrent=1)
    seen: list[int] = []

    async def probe() -> str:
        seen.append(bulkhead.statistics().in_use)
        return "ok"

    @bulkhead
    async def decorated(x: int) -> int:
        """Doubles x."""
        seen.append(bulkhead.statistics().in_use)
        return 2 * x

    @bulkhead.lane(3)
    async def urgent() -> str:
        seen.append(bulkhead.statistics().in_use)
        return "urgent"

    assert await bulkhead.execute(probe) == "ok"
    assert await bulkhead.lane(1).execute(probe) == "ok"
    assert await decorated(21) == 42
    assert await urgent() == "urgent"
    assert decorated.__name__ == "decorated"
    assert decorated.__doc__ == "Doubles x."
    assert seen == [1, 1, 1, 1]
    assert_idle(bulkhead)


async def test_async_with_faces_hold_a_permit() -> None:
    """`async with bulkhead:`, `.acquire(priority=)` and a lane hold a permit for the block."""
    bulkhead = asyncres.Bulkhead(max_concurrent=2)
    async with bulkhead:
        assert bulkhead.statistics().in_use == 1
        async with bulkhead.acquire(priority=7):
            assert bulkhead.statistics().in_use == 2
    async with bulkhead.lane(-1):
        assert bulkhead.statistics().in_use == 1
    assert_idle(bulkhead)


async def test_errors_from_the_body_propagate_unchanged_and_free_the_permit() -> None:
    """An exception from the guarded call is not wrapped, and its permit is returned."""
    bulkhead = asyncres.Bulkhead(max_concurrent=1)
    error = ValueError("boom")

    async def fail() -> None:
        raise error

    faces: list[Callable[[], Awaitable[None]]] = [
        lambda: bulkhead.call(fail),
        lambda: bulkhead.lane(1).call(fail),
        bulkhead(fail),
        bulkhead.lane(2)(fail),
    ]
    for face in faces:
        with pytest.raises(ValueError) as info:
            await face()
        assert info.value is error
        assert_idle(bulkhead)
    with pytest.raises(ValueError):
        async with bulkhead:
            raise error
    assert_idle(bulkhead)


async def test_uncontended_acquire_is_not_a_checkpoint() -> None:
    """A free permit is taken without a checkpoint (like asyncio.Semaphore): no cancel there."""
    bulkhead = asyncres.Bulkhead(max_concurrent=1)
    entered = False
    with anyio.CancelScope() as scope:
        scope.cancel()
        async with bulkhead:
            entered = True
            assert bulkhead.statistics().in_use == 1
        await anyio.lowlevel.checkpoint()  # the cancellation lands here
    assert entered
    assert scope.cancelled_caught
    assert_idle(bulkhead)


# -- the limit and the queue -------------------------------------------------------------


async def test_concurrency_never_exceeds_the_limit() -> None:
    """Of many calls through every face, at most max_concurrent run at once; the rest wait."""
    bulkhead = asyncres.Bulkhead(max_concurrent=3, max_queued=100)
    running = peak = 0
    done = 0

    async def work() -> None:
        nonlocal running, peak, done
        running += 1
        peak = max(peak, running)
        await anyio.sleep(1)
        running -= 1
        done += 1

    async def with_block() -> None:
        async with bulkhead.acquire(priority=1):
            await work()

    faces = [bulkhead.call, bulkhead.lane(2).call, bulkhead(work), bulkhead.lane(3)(work)]
    start = anyio.current_time()
    async with anyio.create_task_group() as tg:
        for i in range(12):
            if i % 3 == 0:
                tg.start_soon(with_block)
            elif i % 3 == 1:
                tg.start_soon(faces[i % 2], work)  # call() on the bulkhead or a lane
            else:
                tg.start_soon(faces[2 + i % 2])  # the decorators
    assert (peak, done) == (3, 12)
    assert anyio.current_time() - start == pytest.approx(4.0)
    assert_idle(bulkhead)


async def test_max_queued_zero_rejects_at_once_when_every_permit_is_busy() -> None:
    """With no queue, a call finding every permit busy fails immediately without running."""
    bulkhead = asyncres.Bulkhead(max_concurrent=1, name="db")
    ran = False

    async def work() -> None:
        nonlocal ran
        ran = True

    with capture_events() as events:
        async with bulkhead:
            start = anyio.current_time()
            with pytest.raises(asyncres.BulkheadFullError) as info:
                await bulkhead.call(work)
            assert anyio.current_time() == start
    assert not ran
    error = info.value
    assert isinstance(error, asyncres.RejectedError)
    assert (error.name, error.max_concurrent, error.max_queued, error.reason) == (
        "db",
        1,
        0,
        "queue_full",
    )
    assert events == [asyncres.events.CallRejected("db", "queue_full")]
    assert bulkhead.statistics().rejected["queue_full"] == 1
    assert_idle(bulkhead)


async def test_full_queue_rejects_an_arrival_of_equal_or_lower_priority() -> None:
    """When the queue is full, an arrival that outranks nobody queued is rejected."""
    bulkhead = asyncres.Bulkhead(max_concurrent=1, max_queued=2)
    holders = Holders(bulkhead)
    async with anyio.create_task_group() as tg:
        holders.start(tg, "holder")
        await anyio.wait_all_tasks_blocked()
        holders.start(tg, "a", priority=1)
        await anyio.wait_all_tasks_blocked()
        holders.start(tg, "b", priority=2)
        await anyio.wait_all_tasks_blocked()
        for priority in (0, 1):
            with pytest.raises(asyncres.BulkheadFullError) as info:
                await bulkhead.lane(priority).call(anyio.sleep, 0)
            assert info.value.reason == "queue_full"
        assert bulkhead.statistics().queued_by_priority == {2: 1, 1: 1}
        for label in ("holder", "a", "b"):
            holders.release(label)
    assert holders.entered == ["holder", "b", "a"]
    assert bulkhead.statistics().rejected["queue_full"] == 2
    assert_idle(bulkhead)


async def test_higher_priority_first_fifo_within_a_priority() -> None:
    """Waiters are served highest priority first, and in arrival order within a priority."""
    bulkhead = asyncres.Bulkhead(max_concurrent=1, max_queued=10)
    holders = Holders(bulkhead)
    order = [("low1", 0), ("high1", 5), ("mid1", 1), ("low2", 0), ("high2", 5), ("mid2", 1)]
    async with anyio.create_task_group() as tg:
        holders.start(tg, "holder")
        await anyio.wait_all_tasks_blocked()
        for label, priority in order:
            holders.start(tg, label, priority)
            await anyio.wait_all_tasks_blocked()  # arrival order is the start order
        assert bulkhead.statistics().queued_by_priority == {5: 2, 1: 2, 0: 2}
        for label in ["holder", "high1", "high2", "mid1", "mid2", "low1", "low2"]:
            holders.release(label)
            await anyio.wait_all_tasks_blocked()
    assert holders.entered == ["holder", "high1", "high2", "mid1", "mid2", "low1", "low2"]
    assert_idle(bulkhead)


async def test_released_permit_is_handed_to_the_waiter_no_barging() -> None:
    """A release hands its permit straight to the first waiter: a newcomer queues behind it."""
    bulkhead = asyncres.Bulkhead(max_concurrent=1, max_queued=5)
    holders = Holders(bulkhead)
    async with anyio.create_task_group() as tg:
        async with bulkhead:
            holders.start(tg, "waiter")
            await anyio.wait_all_tasks_blocked()
        # Released without a checkpoint: the waiter holds the permit but has not resumed.
        assert bulkhead.statistics().in_use == 1
        assert bulkhead.statistics().queued == 0
        holders.release("waiter")
        async with bulkhead:  # would barge in here if the permit had been put back
            holders.entered.append("releaser")
            assert holders.entered == ["waiter", "releaser"]
    assert holders.entered == ["waiter", "releaser"]
    assert_idle(bulkhead)


async def test_no_wake_up_is_lost_when_many_permits_are_released_at_once() -> None:
    """Releasing several permits in one step wakes exactly as many waiters, none twice."""
    bulkhead = asyncres.Bulkhead(max_concurrent=3, max_queued=10)
    holders = Holders(bulkhead)
    async with anyio.create_task_group() as tg:
        for i in range(3):
            holders.start(tg, f"h{i}")
        await anyio.wait_all_tasks_blocked()
        for i in range(6):
            holders.start(tg, f"w{i}")
            await anyio.wait_all_tasks_blocked()
        for i in range(3):
            holders.release(f"h{i}")
        await anyio.wait_all_tasks_blocked()
        assert sorted(holders.entered[3:]) == ["w0", "w1", "w2"]  # the three oldest
        assert bulkhead.statistics().in_use == 3
        assert bulkhead.statistics().queued == 3
        for i in range(6):
            holders.release(f"w{i}")
    assert len(holders.entered) == 9
    assert_idle(bulkhead)


# -- shedding --------------------------------------------------------------------------


async def test_higher_priority_arrival_sheds_the_newest_lowest_priority_waiter() -> None:
    """A full queue makes room for a higher priority by evicting the newest of the lowest."""
    bulkhead = asyncres.Bulkhead(max_concurrent=1, max_queued=3, name="api")
    holders = Holders(bulkhead)
    with capture_events() as events:
        async with anyio.create_task_group() as tg:
            holders.start(tg, "holder")
            await anyio.wait_all_tasks_blocked()
            for label, priority in [("low-old", 0), ("low-new", 0), ("mid", 1)]:
                holders.start(tg, label, priority)
                await anyio.wait_all_tasks_blocked()
            holders.start(tg, "high", 2)
            await anyio.wait_all_tasks_blocked()
            assert bulkhead.statistics().queued_by_priority == {2: 1, 1: 1, 0: 1}
            for label in ["holder", "high", "mid", "low-old"]:
                holders.release(label)
    shed = holders.outcomes["low-new"]
    assert isinstance(shed, asyncres.BulkheadFullError)
    assert (shed.name, shed.reason) == ("api", "shed")
    assert holders.entered == ["holder", "high", "mid", "low-old"]
    assert events == [asyncres.events.CallRejected("api", "shed")]
    assert bulkhead.statistics().rejected["shed"] == 1
    assert_idle(bulkhead)


async def test_shed_waiter_cancelled_before_it_resumes_leaks_nothing(
    anyio_backend_name: str,
) -> None:
    """A waiter evicted and cancelled in the same step leaves no trace in the bulkhead."""
    bulkhead = asyncres.Bulkhead(max_concurrent=1, max_queued=1)
    holders = Holders(bulkhead)

    def cancel_the_victim(event: asyncres.events.Event) -> None:
        # Runs synchronously inside the eviction, before the victim can resume.
        if isinstance(event, asyncres.events.CallRejected) and event.reason == "shed":
            holders.cancel_now("low")

    bulkhead._listeners = (cancel_the_victim,)
    async with anyio.create_task_group() as tg:
        holders.start(tg, "holder")
        await anyio.wait_all_tasks_blocked()
        holders.start(tg, "low", 0)
        await anyio.wait_all_tasks_blocked()
        holders.start(tg, "high", 1)
        await anyio.wait_all_tasks_blocked()
        assert bulkhead.statistics().queued_by_priority == {1: 1}
        holders.release("holder")
        holders.release("high")
    low = holders.outcomes["low"]
    if anyio_backend_name == "asyncio":
        assert low == "cancelled"  # the cancellation beat the wake-up
    else:
        # trio delivers a wake-up already scheduled: the waiter sees it was shed.
        assert isinstance(low, asyncres.BulkheadFullError)
        assert low.reason == "shed"
    assert holders.entered == ["holder", "high"]
    assert bulkhead.statistics().rejected["shed"] == 1
    assert_idle(bulkhead)


# -- cancellation ----------------------------------------------------------------------


async def test_waiter_cancelled_while_queued_leaves_the_queue() -> None:
    """A cancelled waiter leaves the queue and never holds a permit."""
    bulkhead = asyncres.Bulkhead(max_concurrent=1, max_queued=5)
    holders = Holders(bulkhead)
    async with anyio.create_task_group() as tg:
        holders.start(tg, "holder")
        await anyio.wait_all_tasks_blocked()
        holders.start(tg, "gone", 3)
        await anyio.wait_all_tasks_blocked()
        holders.start(tg, "next")
        await anyio.wait_all_tasks_blocked()
        assert bulkhead.statistics().queued == 2
        holders.cancel("gone")
        await anyio.wait_all_tasks_blocked()
        assert bulkhead.statistics().queued_by_priority == {0: 1}
        holders.release("holder")
        holders.release("next")
    assert holders.outcomes["gone"] == "cancelled"
    assert holders.entered == ["holder", "next"]
    assert_idle(bulkhead)


async def test_waiter_cancelled_after_the_hand_off_passes_the_permit_on(
    anyio_backend_name: str,
) -> None:
    """A waiter handed a permit but cancelled before resuming gives it to the next waiter."""
    bulkhead = asyncres.Bulkhead(max_concurrent=1, max_queued=5)
    holders = Holders(bulkhead)
    async with anyio.create_task_group() as tg:
        async with bulkhead:
            holders.start(tg, "first")
            await anyio.wait_all_tasks_blocked()  # trio may run a batch in either order
            holders.start(tg, "second")
            await anyio.wait_all_tasks_blocked()
        holders.cancel_now("first")  # the permit is "first"'s now; it has not resumed yet
        assert bulkhead.statistics().in_use == 1
        await anyio.wait_all_tasks_blocked()
        assert "second" in holders.entered
        assert bulkhead.statistics().in_use == 1
        holders.release("second")
    assert holders.outcomes["first"] == "cancelled"
    if anyio_backend_name == "asyncio":
        assert holders.entered == ["second"]  # the cancellation beat the wake-up
    else:
        # trio delivers a wake-up already scheduled; the cancellation lands in the body.
        assert holders.entered == ["first", "second"]
    assert_idle(bulkhead)


async def test_waiter_cancelled_then_handed_a_permit_in_the_same_step_passes_it_on() -> None:
    """A permit handed to a waiter already cancelled (not yet resumed) goes to the next one."""
    bulkhead = asyncres.Bulkhead(max_concurrent=1, max_queued=5)
    holders = Holders(bulkhead)
    async with anyio.create_task_group() as tg:
        async with bulkhead:
            holders.start(tg, "first")
            await anyio.wait_all_tasks_blocked()
            holders.start(tg, "second")
            await anyio.wait_all_tasks_blocked()
            holders.cancel("first")  # cancelled, still queued: it cannot run before...
        # ...this release, which hands it the permit. It must pass the permit on.
        assert bulkhead.statistics().in_use == 1
        await anyio.wait_all_tasks_blocked()
        assert holders.entered == ["second"]
        holders.release("second")
    assert holders.outcomes["first"] == "cancelled"
    assert_idle(bulkhead)


async def test_waiter_cancelled_then_handed_the_last_permit_frees_it() -> None:
    """With nobody else queued, a permit handed to a cancelled waiter becomes free again."""
    bulkhead = asyncres.Bulkhead(max_concurrent=1, max_queued=5)
    holders = Holders(bulkhead)
    async with anyio.create_task_group() as tg:
        async with bulkhead:
            holders.start(tg, "only")
            await anyio.wait_all_tasks_blocked()
            holders.cancel("only")
        await anyio.wait_all_tasks_blocked()
        assert_idle(bulkhead)
        async with bulkhead:  # the permit is really free: no waiting
            pass
    assert holders.outcomes["only"] == "cancelled"
    assert holders.entered == []
    assert_idle(bulkhead)


async def test_holder_cancelled_in_the_body_releases_its_permit() -> None:
    """Cancelling a task inside the guarded body returns its permit to the next waiter."""
    bulkhead = asyncres.Bulkhead(max_concurrent=1, max_queued=1)
    holders = Holders(bulkhead)
    async with anyio.create_task_group() as tg:
        holders.start(tg, "holder")
        await anyio.wait_all_tasks_blocked()
        holders.start(tg, "waiter")
        await anyio.wait_all_tasks_blocked()
        holders.cancel("holder")
        await anyio.wait_all_tasks_blocked()
        assert holders.entered == ["holder", "waiter"]
        holders.release("waiter")
    assert holders.outcomes["holder"] == "cancelled"
    assert_idle(bulkhead)


async def test_cancellation_is_never_counted_as_a_rejection() -> None:
    """A cancelled waiter adds to no rejection count and emits no event."""
    bulkhead = asyncres.Bulkhead(max_concurrent=1, max_queued=1, queue_timeout=10)
    with capture_events() as events:
        async with bulkhead:
            with anyio.move_on_after(1):
                await bulkhead.call(anyio.sleep, 0)
    assert events == []
    assert set(bulkhead.statistics().rejected.values()) == {0}
    assert_idle(bulkhead)


# -- time limits -------------------------------------------------------------------------


async def test_queue_timeout_rejects_only_the_waiter_that_waited_too_long() -> None:
    """After queue_timeout seconds a waiter gets BulkheadFullError; others keep waiting."""
    bulkhead = asyncres.Bulkhead(max_concurrent=1, max_queued=5, queue_timeout=3.0, name="q")
    holders = Holders(bulkhead)
    with capture_events() as events:
        async with anyio.create_task_group() as tg:
            holders.start(tg, "holder")
            await anyio.wait_all_tasks_blocked()
            start = anyio.current_time()
            holders.start(tg, "early")
            await anyio.sleep(2)
            holders.start(tg, "late")
            await anyio.sleep(1.5)
            assert bulkhead.statistics().queued_by_priority == {0: 1}
            holders.release("holder")
            holders.release("late")
    early = holders.outcomes["early"]
    assert isinstance(early, asyncres.BulkheadFullError)
    assert early.reason == "queue_timeout"
    assert holders.entered == ["holder", "late"]
    assert events == [asyncres.events.CallRejected("q", "queue_timeout")]
    assert bulkhead.statistics().rejected["queue_timeout"] == 1
    assert anyio.current_time() - start == pytest.approx(3.5)
    assert_idle(bulkhead)


async def test_queue_timeout_raises_after_exactly_that_long() -> None:
    """A waiter that never gets a permit fails queue_timeout seconds after it queued."""
    bulkhead = asyncres.Bulkhead(max_concurrent=1, max_queued=1, queue_timeout=2.0)
    async with bulkhead:
        start = anyio.current_time()
        with pytest.raises(asyncres.BulkheadFullError, match="queue_timeout") as info:
            await bulkhead.call(anyio.sleep, 0)
        assert anyio.current_time() - start == pytest.approx(2.0)
    assert info.value.__context__ is None  # no internal timeout chained onto it
    assert_idle(bulkhead)


async def test_permit_arriving_as_the_queue_timeout_fires_is_kept(
    anyio_backend_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A waiter handed a permit after its queue timeout fired, before it resumed, keeps it."""
    expired: list[bool] = []

    class Spy(DeadlineScope):
        def __exit__(self, *exc_info: Any) -> None:
            try:
                super().__exit__(*exc_info)
            finally:
                expired.append(self.expired)

    monkeypatch.setattr(_waiters, "DeadlineScope", Spy)
    bulkhead = asyncres.Bulkhead(max_concurrent=1, max_queued=2, queue_timeout=1.0)
    outcome: list[str] = []

    async def waiter() -> None:
        try:
            await bulkhead.call(anyio.sleep, 0.5)
            outcome.append("ran")
        except asyncres.BulkheadFullError as exc:
            outcome.append(exc.reason)

    def release() -> None:
        # Drive the release synchronously from a loop callback (it never suspends).
        with pytest.raises(StopIteration):
            bulkhead.__aexit__(None, None, None).send(None)

    async with anyio.create_task_group() as tg:
        await bulkhead.__aenter__()
        tg.start_soon(waiter)
        await anyio.wait_all_tasks_blocked()
        if anyio_backend_name == "asyncio":
            # Runs right after the queue timeout's timer (same time, armed later): the
            # waiter is cancelled but has not resumed when the permit is handed to it.
            loop = asyncio.get_running_loop()
            loop.call_at(loop.time() + 1.0, release)
        else:
            # trio wakes both at the same deadline in either order: either outcome is fine.
            await anyio.sleep(1.0)
            release()
    if anyio_backend_name == "asyncio":
        assert (outcome, expired) == (["ran"], [True])
    else:
        assert outcome in (["ran"], ["queue_timeout"])
    assert_idle(bulkhead)


async def test_enclosing_timeout_bounds_the_wait_and_removes_the_waiter() -> None:
    """`with asyncres.timeout(1):` around a queued call raises TimeoutExceededError at 1 s."""
    bulkhead = asyncres.Bulkhead(max_concurrent=1, max_queued=5, queue_timeout=30)
    with capture_events() as events:
        async with bulkhead:
            start = anyio.current_time()
            with pytest.raises(asyncres.TimeoutExceededError):
                with asyncres.timeout(1):
                    await bulkhead.call(anyio.sleep, 0)
            assert anyio.current_time() - start == pytest.approx(1.0)
            assert bulkhead.statistics().queued == 0
            with pytest.raises(asyncres.TimeoutExceededError):
                with asyncres.timeout(1):
                    async with bulkhead.acquire(priority=4):
                        pytest.fail("must not get a permit")
    assert events == []
    assert_idle(bulkhead)


async def test_anyio_deadline_bounds_the_wait_too() -> None:
    """An anyio cancel scope's deadline cancels a queued waiter, which leaves the queue."""
    bulkhead = asyncres.Bulkhead(max_concurrent=1, max_queued=5)
    async with bulkhead:
        with anyio.move_on_after(2) as scope:
            await bulkhead.call(anyio.sleep, 0)
        assert scope.cancelled_caught
        assert bulkhead.statistics().queued == 0
    assert_idle(bulkhead)


async def test_expired_deadline_is_rejected_without_queueing_or_shedding() -> None:
    """A caller whose deadline has passed is refused at once and evicts nobody."""
    bulkhead = asyncres.Bulkhead(max_concurrent=1, max_queued=1, name="d")
    holders = Holders(bulkhead)
    with capture_events() as events:
        async with anyio.create_task_group() as tg:
            holders.start(tg, "holder")
            await anyio.wait_all_tasks_blocked()
            holders.start(tg, "low", 0)
            await anyio.wait_all_tasks_blocked()
            with pytest.raises(asyncres.BulkheadFullError) as info:
                with asyncres.timeout(0):
                    await bulkhead.lane(9).call(anyio.sleep, 0)
            assert info.value.reason == "deadline"
            assert bulkhead.statistics().queued_by_priority == {0: 1}
            holders.release("holder")
            holders.release("low")
    assert holders.entered == ["holder", "low"]
    assert events == [asyncres.events.CallRejected("d", "deadline")]
    assert bulkhead.statistics().rejected == {
        "queue_full": 0,
        "shed": 0,
        "queue_timeout": 0,
        "deadline": 1,
    }
    assert_idle(bulkhead)


async def test_free_permit_is_taken_even_with_an_expired_deadline() -> None:
    """The deadline is read only when waiting: a free permit is taken without a clock read."""
    bulkhead = asyncres.Bulkhead(max_concurrent=1)
    with anyio.move_on_after(0):
        async with bulkhead:
            assert bulkhead.statistics().in_use == 1
    assert_idle(bulkhead)


# -- events and statistics -----------------------------------------------------------------


async def test_own_listeners_receive_rejections() -> None:
    """Listeners given to the bulkhead see its CallRejected events."""
    seen: list[asyncres.events.Event] = []
    bulkhead = asyncres.Bulkhead(max_concurrent=1, name="x", listeners=[seen.append])
    async with bulkhead:
        with pytest.raises(asyncres.BulkheadFullError):
            await bulkhead.call(anyio.sleep, 0)
    assert seen == [asyncres.events.CallRejected("x", "queue_full")]


async def test_statistics_report_use_queue_and_rejections() -> None:
    """statistics() counts permits in use, waiters per priority and rejections by reason."""
    bulkhead = asyncres.Bulkhead(max_concurrent=2, max_queued=3)
    holders = Holders(bulkhead)
    async with anyio.create_task_group() as tg:
        for label, priority in [("a", 0), ("b", 0), ("c", 0), ("d", 4), ("e", 4)]:
            holders.start(tg, label, priority)
            await anyio.wait_all_tasks_blocked()
        with pytest.raises(asyncres.BulkheadFullError):
            await bulkhead.call(anyio.sleep, 0)
        stats = bulkhead.statistics()
        assert (stats.in_use, stats.queued) == (2, 3)
        assert stats.queued_by_priority == {4: 2, 0: 1}
        assert list(stats.queued_by_priority) == [4, 0]  # highest first
        assert stats.rejected["queue_full"] == 1
        stats.rejected["queue_full"] = 99  # a copy: the bulkhead is unaffected
        assert bulkhead.statistics().rejected["queue_full"] == 1
        for label in "abdec":
            holders.release(label)
            await anyio.wait_all_tasks_blocked()
    assert holders.entered == ["a", "b", "d", "e", "c"]
    assert_idle(bulkhead)


# -- everything at once --------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(3))
async def test_stress_random_priorities_timeouts_and_cancellations(seed: int) -> None:
    """Hundreds of callers with random priorities, deadlines and cancellations leak nothing."""
    rng = random.Random(seed)
    bulkhead = asyncres.Bulkhead(max_concurrent=5, max_queued=20, queue_timeout=3.0)
    running = peak = 0
    outcomes: dict[str, int] = {}

    def count(what: str) -> None:
        outcomes[what] = outcomes.get(what, 0) + 1

    async def work(duration: float) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        try:
            await anyio.sleep(duration)
        finally:
            running -= 1

    async def caller(scope: anyio.CancelScope, priority: int, limit: float | None) -> None:
        await anyio.sleep(rng.uniform(0, 20))
        lane = bulkhead.lane(priority)
        with scope:
            try:
                if limit is None:
                    await lane.call(work, rng.expovariate(2.0))
                else:
                    with asyncres.timeout(limit):
                        await lane.call(work, rng.expovariate(2.0))
            except asyncres.BulkheadFullError as exc:
                count(exc.reason)
                return
            except asyncres.TimeoutExceededError:
                count("timeout")
                return
            count("ok")
        if scope.cancelled_caught:
            count("cancelled")

    async with anyio.create_task_group() as tg:
        scopes = []
        for _ in range(400):
            scope = anyio.CancelScope()
            scopes.append(scope)
            limit = rng.choice([None, None, 0.0, 0.5, 2.0])
            tg.start_soon(caller, scope, rng.choice([0, 0, 1, 2]), limit)
        for _ in range(150):
            await anyio.sleep(rng.uniform(0, 0.15))
            rng.choice(scopes).cancel()
            assert running <= 5
            stats = bulkhead.statistics()
            assert stats.in_use <= 5
            assert stats.queued <= 20
            assert stats.queued == sum(stats.queued_by_priority.values())
    assert peak == 5
    assert sum(outcomes.values()) == 400
    assert outcomes["ok"] > 50
    rejected = bulkhead.statistics().rejected
    for reason in ("queue_full", "shed", "queue_timeout", "deadline"):
        # A shed or timed-out waiter that was cancelled too reports the cancellation.
        assert outcomes.get(reason, 0) <= rejected[reason]
    assert running == 0
    assert_idle(bulkhead)
