"""Bulkhead: a concurrency limit with a bounded, prioritised waiting queue.

A bulkhead caps how many calls run at once (``max_concurrent``) so that one slow dependency
cannot take every task, connection or thread with it. Calls beyond the limit wait in a queue
of at most ``max_queued`` waiters; beyond that they are rejected at once with
`BulkheadFullError`. There is never an unbounded queue.

Load shedding follows the Amazon Builders' Library ("Using load shedding to avoid
overload"): shed early and cheaply, low priority first; bound queues; drop queued work whose
caller's deadline has passed.

- Priorities: higher ``priority`` is served first, FIFO within a priority. When the queue is
  full, an arriving waiter of higher priority than the lowest queued one evicts the newest
  waiter of that lowest priority (reason ``"shed"``); otherwise the arrival is rejected
  (reason ``"queue_full"``).
- Deadlines: a waiter is cancelled with its caller, so the enclosing deadline
  (`asyncres.remaining()`) bounds every wait; a caller whose deadline has already passed is
  rejected without queueing (reason ``"deadline"``) and so never evicts anyone.
  ``queue_timeout`` bounds the wait further (reason ``"queue_timeout"``).
- Hand-off: a released permit goes straight to the next waiter, so a newcomer can never
  barge past the queue and no wake-up is lost. A waiter cancelled after it was handed a
  permit, before it resumed, passes the permit on. The queue is the shared `WaiterQueue`
  (``asyncres/_waiters.py``); the bulkhead keeps only the count of free permits.

All bookkeeping is synchronous (no ``await`` between reading and writing state), so the
bulkhead is correct under concurrency without a lock. Like anyio primitives it is not
thread-safe: use it from one event loop.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, ParamSpec, TypeVar

from . import _validation
from ._events import Listener
from ._exceptions import BulkheadFullError
from ._policy import PolicyFaces
from ._registry import track
from ._setting import Setting
from ._waiters import REJECTION_REASONS, QueueOwner, WaiterQueue

__all__ = ["Bulkhead", "BulkheadLane", "BulkheadStatistics"]

T = TypeVar("T")
P = ParamSpec("P")

# Lanes a bulkhead keeps for reuse (priorities are usually a handful of constants).
_CACHED_LANES = 32


@dataclass(frozen=True, slots=True)
class BulkheadStatistics:
    """A snapshot of a `Bulkhead` (the dictionaries are copies)."""

    __module__ = "asyncres"

    #: The configured limits.
    max_concurrent: int
    max_queued: int
    #: Permits held right now (including ones handed to waiters that have not resumed yet).
    in_use: int
    #: Waiters in the queue, in total and per priority (only priorities with waiters).
    queued: int
    queued_by_priority: dict[int, int]
    #: Calls refused since the bulkhead was created, per reason: ``"queue_full"``,
    #: ``"shed"``, ``"queue_timeout"`` and ``"deadline"`` (every key is present).
    rejected: dict[str, int]


def _check_priority(priority: int) -> int:
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise ValueError(f"`priority` must be an integer, got {priority!r}")
    return priority


class Bulkhead(QueueOwner, PolicyFaces):
    """Run at most ``max_concurrent`` calls at once; queue at most ``max_queued`` more.

    ``await bulkhead.call(fn, *args)``, ``@bulkhead``, ``await bulkhead.execute(fn)`` and
    ``async with bulkhead:`` use priority 0. ``bulkhead.lane(priority)`` (also spelled
    ``bulkhead.acquire(priority=p)`` for ``async with``) is a view with the same faces at
    another priority, sharing this bulkhead's permits and queue.

    A call that finds no free permit waits in the queue; when the queue is full it is
    rejected at once with `BulkheadFullError` (``reason="queue_full"``), unless it
    outranks the lowest-priority waiter, which is then shed instead (``reason="shed"``).
    A waiter gives up after ``queue_timeout`` seconds (``reason="queue_timeout"``) and is
    cancelled with its caller, so the enclosing deadline bounds the wait; a caller whose
    deadline has already passed is refused without queueing (``reason="deadline"``).
    ``max_queued=0`` (the default, as Resilience4j's wait of 0) rejects whenever every
    permit is busy. Each rejection emits `CallRejected`.

    Acquiring a free permit is a few attribute operations and, like ``asyncio.Semaphore``,
    **not a checkpoint**: the guarded body provides the checkpoints. Waiting is.
    """

    __slots__ = (
        "__weakref__",
        "_free",
        "_listeners",
        "_max_concurrent",
        "_max_queued",
        "_name",
        "_queue",
        "_queue_timeout",
        "_rejected",
        "_views",
    )

    __module__ = "asyncres"

    #: The configuration, read-only after construction (a new limit needs a new Bulkhead).
    max_concurrent: Setting[int] = Setting()
    max_queued: Setting[int] = Setting()
    queue_timeout: Setting[float | None] = Setting()
    name: Setting[str | None] = Setting()

    def __init__(
        self,
        *,
        max_concurrent: int,
        max_queued: int = 0,
        queue_timeout: float | None = None,
        name: str | None = None,
        listeners: Iterable[Listener] = (),
    ) -> None:
        self._max_concurrent = _validation.count("max_concurrent", max_concurrent, minimum=1)
        self._max_queued = _validation.count("max_queued", max_queued, minimum=0)
        self._queue_timeout = _validation.optional_limit("queue_timeout", queue_timeout)
        self._name = name
        track("bulkhead", self, name)
        listeners = _validation.listeners(listeners)
        self._listeners = listeners
        # Free permits. Invariant: _free > 0 only when the queue is empty (a release hands
        # its permit to the first waiter instead), so the fast path cannot barge.
        self._free = self._max_concurrent
        self._queue: WaiterQueue[None] = WaiterQueue(self._pass_on)
        self._rejected = dict.fromkeys(REJECTION_REASONS, 0)
        self._views: dict[int, BulkheadLane] = {}

    def __repr__(self) -> str:
        name = f", name={self.name!r}" if self.name else ""
        return (
            f"Bulkhead(max_concurrent={self.max_concurrent}, max_queued={self.max_queued}, "
            f"queue_timeout={self.queue_timeout!r}{name})"
        )

    # -- faces at priority 0 ------------------------------------------------------------
    # The fast paths are inlined on purpose: a free permit costs two attribute operations.

    async def call(self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``await fn(*args, **kwargs)`` holding a permit (priority 0)."""
        if self._free:
            self._free -= 1
        else:
            await self._wait(0)
        try:
            return await fn(*args, **kwargs)
        finally:
            if self._queue.waiting:
                self._queue.hand_off(None)
            else:
                self._free += 1

    def __call__(self, fn: Callable[P, Awaitable[T]], /) -> Callable[P, Coroutine[Any, Any, T]]:
        """Decorate an async function: every call holds a permit (priority 0)."""
        return _decorate(self, 0, fn)

    async def __aenter__(self) -> None:
        if self._free:
            self._free -= 1
        else:
            await self._wait(0)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._queue.waiting:
            self._queue.hand_off(None)
        else:
            self._free += 1

    # -- priorities ---------------------------------------------------------------------

    def lane(self, priority: int) -> BulkheadLane:
        """A view of this bulkhead whose calls wait at ``priority`` (higher is served first).

        The lane shares this bulkhead's permits, queue and statistics and has the same
        faces: ``await lane.call(fn, *args)``, ``@lane``, ``lane.execute(fn)``,
        ``async with lane:``. Lanes hold no state of their own; the bulkhead keeps the
        first few it makes, so asking again costs a dictionary lookup.
        """
        view = self._views.get(priority)
        if view is None or priority.__class__ is not int:  # True == 1 would find lane 1
            view = BulkheadLane(self, priority)
            if len(self._views) < _CACHED_LANES:
                self._views[priority] = view
        return view

    def acquire(self, *, priority: int = 0) -> BulkheadLane:
        """Hold a permit for a block: ``async with bulkhead.acquire(priority=1): ...``.

        The same as ``bulkhead.lane(priority)``.
        """
        view = self._views.get(priority)
        if view is None or priority.__class__ is not int:
            return self.lane(priority)
        return view

    def statistics(self) -> BulkheadStatistics:
        """A snapshot of permits in use, waiters per priority and rejections per reason."""
        return BulkheadStatistics(
            max_concurrent=self._max_concurrent,
            max_queued=self._max_queued,
            in_use=self._max_concurrent - self._free,
            queued=self._queue.waiting,
            queued_by_priority=self._queue.by_priority(),
            rejected=dict(self._rejected),
        )

    # -- the contended path -------------------------------------------------------------

    def _pass_on(self, _permit: None) -> None:
        """Take back a permit from a waiter that gave up: the next waiter's, or free."""
        if self._queue.waiting:
            self._queue.hand_off(None)
        else:
            self._free += 1

    def _error(self, reason: str) -> BulkheadFullError:
        return BulkheadFullError(
            self._name,
            max_concurrent=self._max_concurrent,
            max_queued=self._max_queued,
            reason=reason,
        )


class BulkheadLane(PolicyFaces):
    """A `Bulkhead` seen at one priority: made by ``bulkhead.lane(p)`` or ``acquire(priority=p)``.

    Its calls share the bulkhead's permits and queue; when they must wait, higher priorities
    are served first and shed last. Immutable; ``call``, ``execute``, the decorator and
    ``async with`` work as on the bulkhead itself. Priority is a separate view rather than a
    ``call(..., priority=)`` keyword so that ``call`` keeps its exact ``fn(*args, **kwargs)``
    signature (PEP 612) and never takes a keyword away from ``fn``.
    """

    __slots__ = ("bulkhead", "priority")

    __module__ = "asyncres"

    bulkhead: Bulkhead
    priority: int

    def __init__(self, bulkhead: Bulkhead, priority: int) -> None:
        if not isinstance(bulkhead, Bulkhead):
            raise ValueError(f"`bulkhead` must be a Bulkhead, got {bulkhead!r}")
        object.__setattr__(self, "bulkhead", bulkhead)
        object.__setattr__(self, "priority", _check_priority(priority))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __repr__(self) -> str:
        return f"<BulkheadLane priority={self.priority} of {self.bulkhead!r}>"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BulkheadLane):
            return NotImplemented
        return self.bulkhead is other.bulkhead and self.priority == other.priority

    def __hash__(self) -> int:
        return hash((id(self.bulkhead), self.priority))

    async def call(self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``await fn(*args, **kwargs)`` holding a permit, waiting at this priority."""
        bulkhead = self.bulkhead
        if bulkhead._free:
            bulkhead._free -= 1
        else:
            await bulkhead._wait(self.priority)
        try:
            return await fn(*args, **kwargs)
        finally:
            if bulkhead._queue.waiting:
                bulkhead._queue.hand_off(None)
            else:
                bulkhead._free += 1

    def __call__(self, fn: Callable[P, Awaitable[T]], /) -> Callable[P, Coroutine[Any, Any, T]]:
        """Decorate an async function: every call holds a permit, waiting at this priority."""
        return _decorate(self.bulkhead, self.priority, fn)

    async def __aenter__(self) -> None:
        bulkhead = self.bulkhead
        if bulkhead._free:
            bulkhead._free -= 1
        else:
            await bulkhead._wait(self.priority)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        bulkhead = self.bulkhead
        if bulkhead._queue.waiting:
            bulkhead._queue.hand_off(None)
        else:
            bulkhead._free += 1


def _decorate(
    bulkhead: Bulkhead, priority: int, fn: Callable[P, Awaitable[T]]
) -> Callable[P, Coroutine[Any, Any, T]]:
    """The decorator of a bulkhead or lane, with the fast path inlined (one coroutine)."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        if bulkhead._free:
            bulkhead._free -= 1
        else:
            await bulkhead._wait(priority)
        try:
            return await fn(*args, **kwargs)
        finally:
            if bulkhead._queue.waiting:
                bulkhead._queue.hand_off(None)
            else:
                bulkhead._free += 1

    return wrapper
