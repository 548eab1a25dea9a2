"""WaiterQueue: order, hand-off, deadlines, rejection, and cancel-safety on both backends."""

from __future__ import annotations

import math

import anyio
import anyio.lowlevel
import pytest

from asyncres._waiters import GRANTED, QUEUED, REJECTED, WaiterQueue

pytestmark = pytest.mark.anyio


class Owner:
    """A resource owner: values given back by withdrawn waiters land in ``returned``."""

    def __init__(self) -> None:
        self.returned: list[str | None] = []
        self.queue: WaiterQueue[str] = WaiterQueue(self.returned.append)


def assert_empty(queue: WaiterQueue[str]) -> None:
    """Nobody waits and no lane is left behind."""
    assert (len(queue), queue.waiting, queue.by_priority()) == (0, 0, {})
    assert (queue._lanes, queue._priorities, queue.lowest_priority) == ({}, [], None)


def test_highest_priority_first_fifo_within_one() -> None:
    """hand_off serves the oldest waiter of the highest priority."""
    owner = Owner()
    queue = owner.queue
    a, b, c, d = (queue.enqueue(p) for p in (0, 2, 0, 2))
    assert (len(queue), queue.by_priority(), queue.lowest_priority) == (4, {2: 2, 0: 2}, 0)
    served = [queue.hand_off(str(n)) for n in range(4)]
    assert served == [b, d, a, c]
    assert [w.value for w in served] == ["0", "1", "2", "3"]
    assert all(w.state == GRANTED and w.event.is_set() for w in served)
    assert_empty(queue)


def test_shed_lowest_evicts_the_newest_of_the_lowest_priority() -> None:
    """shed_lowest rejects the newest waiter of the lowest priority with the given error."""
    queue = Owner().queue
    old, new, high = queue.enqueue(0), queue.enqueue(0), queue.enqueue(5)
    error = RuntimeError("shed")
    assert queue.shed_lowest(error) is new
    assert (new.state, new.error, new.event.is_set()) == (REJECTED, error, True)
    assert (old.state, high.state, len(queue)) == (QUEUED, QUEUED, 2)
    queue.close(RuntimeError("closed"))
    assert (old.state, high.state) == (REJECTED, REJECTED)
    assert_empty(queue)


async def test_wait_returns_true_when_handed_a_value() -> None:
    """A waiter handed a value resumes with it."""
    queue = Owner().queue
    waiter = queue.enqueue()
    async with anyio.create_task_group() as tg:
        tg.start_soon(anyio.lowlevel.checkpoint)
        queue.hand_off("conn")
        assert await queue.wait(waiter)
    assert waiter.value == "conn"
    assert_empty(queue)


async def test_wait_raises_the_rejection_error() -> None:
    """A rejected waiter raises the error the owner chose."""
    queue = Owner().queue
    waiter = queue.enqueue()
    queue.reject_first(LookupError("down"))
    with pytest.raises(LookupError, match="down"):
        await queue.wait(waiter)
    assert_empty(queue)


async def test_wait_until_the_deadline_removes_the_waiter() -> None:
    """Past its deadline the wait returns False, exactly then, and the waiter has left."""
    queue = Owner().queue
    waiter = queue.enqueue()
    start = anyio.current_time()
    assert not await queue.wait(waiter, start + 2.0)
    assert anyio.current_time() - start == pytest.approx(2.0)
    assert waiter.state == QUEUED
    assert_empty(queue)


async def test_a_cancelled_waiter_leaves_the_queue() -> None:
    """Cancellation propagates and removes the queued waiter; the others keep their places."""
    owner = Owner()
    queue = owner.queue
    first, second = queue.enqueue(), queue.enqueue()
    with anyio.move_on_after(1.0) as scope:
        await queue.wait(first, math.inf)
    assert scope.cancelled_caught
    assert (len(queue), owner.returned) == (1, [])
    assert queue.hand_off("x") is second
    assert_empty(queue)


async def test_a_value_handed_to_a_cancelled_waiter_goes_back_to_the_owner() -> None:
    """Handed a value, then cancelled before resuming: the value is released, once."""
    owner = Owner()
    queue = owner.queue
    waiter = queue.enqueue()
    with anyio.CancelScope() as scope:
        scope.cancel()  # the cancellation is pending when the value arrives
        queue.hand_off("conn")
        await queue.wait(waiter)
    assert owner.returned == ["conn"]
    assert (waiter.state, waiter.value) == (REJECTED, None)
    queue.withdraw(waiter)  # a second withdrawal must not release it again
    assert owner.returned == ["conn"]
    assert_empty(queue)


async def test_a_value_handed_as_the_deadline_fires_is_kept() -> None:
    """A hand-off in the same step as the deadline wins: the waiter keeps the value."""
    owner = Owner()
    queue = owner.queue
    waiter = queue.enqueue()
    deadline = anyio.current_time() + 1.0

    kept: list[str] = []

    async def hand_off_at_the_deadline() -> None:
        await anyio.sleep_until(deadline)
        if queue.waiting:  # as an owner does: hand off, or keep the value free
            queue.hand_off("conn")
        else:
            kept.append("conn")

    async with anyio.create_task_group() as tg:
        tg.start_soon(hand_off_at_the_deadline)
        served = await queue.wait(waiter, deadline)
    # Either order is legal at one instant; whichever it was, nothing leaked.
    if served:
        assert (waiter.value, owner.returned, kept) == ("conn", [], [])
    else:
        assert (waiter.value, owner.returned, kept) == (None, [], ["conn"])
    assert_empty(queue)


def test_hand_off_to_an_empty_queue_is_a_bug() -> None:
    """The owner must check ``waiting`` first: an empty queue has nobody to serve."""
    queue = Owner().queue
    with pytest.raises(IndexError):
        queue.hand_off("x")
    queue.close(RuntimeError("closed"))  # closing an empty queue is fine
    assert_empty(queue)
