"""WaiterQueue: callers waiting for a resource, served by direct hand-off.

The one queue behind the `Bulkhead` (permits) and the db `GuardedPool` (connections), and
later the adaptive limit. Its rules:

- Order: the highest ``priority`` is served first, FIFO within a priority.
- Hand-off: the owner releasing a resource while someone waits gives it straight to the next
  waiter (`hand_off`), so a newcomer can never barge past the queue and no wake-up is lost.
  The owner keeps its own count of free resources; the queue only holds waiters.
- Cancel-safety: a waiter whose caller gives up (cancelled, or any other exception) leaves
  the queue; one that was already handed a resource but had not resumed passes it back to
  the owner through the ``release`` callback, so nothing leaks.
- Bounded waits: `wait` takes an absolute deadline on the loop clock. A resource handed over
  in the same step as the deadline fires is kept (the caller can use it).
- Rejection: `reject_first`, `shed_lowest` and `close` end a wait with an error of the
  owner's choosing, which `wait` raises in the waiter's task.

All bookkeeping is synchronous (no ``await`` between reading and writing state), so the queue
is correct under concurrency without a lock. Not thread-safe: one event loop.
"""

from __future__ import annotations

import bisect
import math
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

import anyio

from ._deadline import AdvisoryExpired, DeadlineScope, advisory_bound, remaining
from ._events import CallRejected, Listener, emit
from ._exceptions import RejectedError, TimeoutExceededError

__all__ = [
    "GRANTED",
    "QUEUED",
    "REJECTED",
    "REJECTION_REASONS",
    "QueueOwner",
    "Waiter",
    "WaiterQueue",
    "wait_in_line",
]

T = TypeVar("T")

#: Why `wait_in_line` refused a caller: the rejection reasons of every queue owner.
REJECTION_REASONS = ("queue_full", "shed", "queue_timeout", "deadline")

# Waiter states.
QUEUED = 0
GRANTED = 1  # handed a resource: the owner counts it as in use
REJECTED = 2  # removed with an error (shed, closed, a failure the owner reports)


class Waiter(Generic[T]):
    """One queued caller: its priority, its state, what it was given, and its wake-up."""

    __slots__ = ("error", "event", "priority", "state", "value")

    def __init__(self, priority: int) -> None:
        self.priority = priority
        self.state = QUEUED
        self.value: T | None = None
        self.error: BaseException | None = None
        self.event = anyio.Event()


class WaiterQueue(Generic[T]):
    """Waiters for resources of type ``T``, highest priority first, FIFO within one.

    ``release(value)`` is the owner's way to take back a resource handed to a waiter whose
    caller gave up before it resumed (typically: hand it to the next waiter, or free it).

    ``waiting`` is the number of queued waiters, kept as a plain attribute so the owner's
    release path can test it with one attribute read; treat it as read-only.
    """

    __slots__ = ("_lanes", "_priorities", "_release", "waiting")

    def __init__(self, release: Callable[[T | None], None]) -> None:
        self._release = release
        self.waiting = 0
        # priority -> its waiters, oldest first; _priorities: those keys, ascending.
        self._lanes: dict[int, OrderedDict[Waiter[T], None]] = {}
        self._priorities: list[int] = []

    def __len__(self) -> int:
        return self.waiting

    def __repr__(self) -> str:
        return f"<WaiterQueue waiting={self.waiting} by_priority={self.by_priority()}>"

    def by_priority(self) -> dict[int, int]:
        """Waiters per priority, highest first (only priorities with waiters)."""
        return {p: len(self._lanes[p]) for p in reversed(self._priorities)}

    @property
    def lowest_priority(self) -> int | None:
        """The lowest priority with a waiter, or ``None`` when nobody waits."""
        priorities = self._priorities
        return priorities[0] if priorities else None

    # -- joining and waiting -------------------------------------------------------------

    def enqueue(self, priority: int = 0) -> Waiter[T]:
        """Put a new waiter at the back of its priority; `wait` on it next, in the same task."""
        waiter: Waiter[T] = Waiter(priority)
        lane = self._lanes.get(priority)
        if lane is None:
            lane = self._lanes[priority] = OrderedDict()
            bisect.insort(self._priorities, priority)
        lane[waiter] = None
        self.waiting += 1
        return waiter

    async def wait(self, waiter: Waiter[T], deadline: float = math.inf) -> bool:
        """Wait until ``waiter`` is served or ``deadline`` (loop clock) passes.

        Returns True when served: ``waiter.state`` is `GRANTED` (``waiter.value`` is the
        caller's now). Raises ``waiter.error`` when it was rejected. Returns False when the
        deadline passed first; the waiter has then left the queue. On cancellation (or any
        other exception) the waiter is withdrawn (see `withdraw`) and the exception
        propagates.
        """
        try:
            if deadline == math.inf:
                await waiter.event.wait()
            else:
                scope = DeadlineScope(None, deadline)
                try:
                    with scope:
                        await waiter.event.wait()
                except TimeoutExceededError:
                    if not scope.expired:  # pragma: no cover - nothing else raises it
                        raise
                    # Our deadline fired; the waiter may have been served meanwhile.
        except BaseException:
            self.withdraw(waiter)
            raise
        state = waiter.state
        if state == GRANTED:
            return True
        if state == REJECTED:
            error = waiter.error
            assert error is not None
            raise error
        self._remove(waiter)
        return False

    def withdraw(self, waiter: Waiter[T]) -> None:
        """The waiter's caller gave up: leave the queue, or give back what it was handed."""
        state = waiter.state
        if state == QUEUED:
            self._remove(waiter)
        elif state == GRANTED:
            value, waiter.value = waiter.value, None
            waiter.state = REJECTED  # withdrawn once: a second call must not release again
            self._release(value)
        # REJECTED: already out of the queue, never held anything.

    # -- serving -------------------------------------------------------------------------

    def hand_off(self, value: T | None) -> Waiter[T]:
        """Give ``value`` to the oldest waiter of the highest priority (someone must wait)."""
        waiter = self._pop_first()
        waiter.value = value
        waiter.state = GRANTED
        waiter.event.set()
        return waiter

    def reject_first(self, error: BaseException) -> Waiter[T]:
        """End the wait of the next waiter in line with ``error`` (someone must wait)."""
        waiter = self._pop_first()
        self._reject(waiter, error)
        return waiter

    def shed_lowest(self, error: BaseException) -> Waiter[T]:
        """Evict the newest waiter of the lowest priority with ``error`` (someone must wait)."""
        priority = self._priorities[0]
        lane = self._lanes[priority]
        victim, _ = lane.popitem(last=True)
        if not lane:
            del self._lanes[priority]
            del self._priorities[0]
        self.waiting -= 1
        self._reject(victim, error)
        return victim

    def close(self, error: BaseException) -> None:
        """Reject every waiter with ``error``, highest priority first (the queue stays usable)."""
        while self.waiting:
            self.reject_first(error)

    # -- internals -----------------------------------------------------------------------

    def _pop_first(self) -> Waiter[T]:
        priority = self._priorities[-1]
        lane = self._lanes[priority]
        waiter, _ = lane.popitem(last=False)
        if not lane:
            del self._lanes[priority]
            self._priorities.pop()
        self.waiting -= 1
        return waiter

    @staticmethod
    def _reject(waiter: Waiter[T], error: BaseException) -> None:
        waiter.state = REJECTED
        waiter.error = error
        waiter.event.set()

    def _remove(self, waiter: Waiter[T]) -> None:
        priority = waiter.priority
        lane = self._lanes[priority]
        del lane[waiter]
        if not lane:
            del self._lanes[priority]
            self._priorities.remove(priority)
        self.waiting -= 1


async def wait_in_line(
    queue: WaiterQueue[None],
    priority: int,
    *,
    max_queued: int,
    queue_timeout: float | None,
    refuse: Callable[[str], BaseException],
    evict: Callable[[str], BaseException],
    noted: Callable[[str], None],
) -> None:
    """Queue for a slot under the bounded-queue rules shared by `Bulkhead` and `AdaptiveLimit`.

    Returns once a slot was handed over. Otherwise raises ``refuse(reason)`` (the owner
    counts it): ``"queue_full"`` (full, and not outranking the lowest waiter), ``"deadline"``
    (the caller's deadline has already passed: it must not evict a waiter that can still
    use a slot) or ``"queue_timeout"``. A full queue that the caller outranks sheds its
    lowest-priority newest waiter with ``evict("shed")``, then ``noted("shed")`` runs (after
    the wake-up, so a listener may cancel the victim).
    """
    full = queue.waiting >= max_queued
    if full:
        lowest = queue.lowest_priority
        if lowest is None or priority <= lowest:
            raise refuse("queue_full")
    left = remaining()
    if left is not None and left <= 0.0:
        raise refuse("deadline")
    if full:
        queue.shed_lowest(evict("shed"))
        noted("shed")
    waiter = queue.enqueue(priority)
    deadline = math.inf if queue_timeout is None else anyio.current_time() + queue_timeout
    # An advisory deadline (a Pipeline's total timeout on trio) cancels nothing: the queue
    # must cut itself at it.
    advisory = advisory_bound() if left is not None else None
    if advisory is not None and advisory._deadline <= deadline:
        deadline = advisory._deadline
    else:
        advisory = None  # the queue timeout comes first
    if await queue.wait(waiter, deadline):
        return
    if advisory is not None:
        raise AdvisoryExpired(advisory)
    raise refuse("queue_timeout")


class QueueOwner:
    """The refusal bookkeeping of a slot owner with a bounded queue (`Bulkhead`,
    `AdaptiveLimit`): wait in line, count each refusal per reason, emit `CallRejected`.

    The owner keeps the attributes below and says what its refusal error is (`_error`).
    """

    __slots__ = ()

    _queue: WaiterQueue[None]
    _max_queued: int
    _queue_timeout: float | None
    _rejected: dict[str, int]
    _listeners: tuple[Listener, ...]
    _name: str | None

    def _error(self, reason: str) -> RejectedError:
        raise NotImplementedError

    async def _wait(self, priority: int) -> None:
        """Wait in the queue for a slot (none is free), or raise the owner's refusal."""
        await wait_in_line(
            self._queue,
            priority,
            max_queued=self._max_queued,
            queue_timeout=self._queue_timeout,
            refuse=self._reject,
            evict=self._error,
            noted=self._note_rejection,
        )

    def _reject(self, reason: str) -> RejectedError:
        self._note_rejection(reason)
        return self._error(reason)

    def _note_rejection(self, reason: str) -> None:
        self._rejected[reason] += 1
        emit(self._listeners, CallRejected(self._name, reason))
