"""Hedge: start a backup attempt when the first is slow or fails; the first success wins.

Replicas in parallel multiply unavailability: ``A = 1 - (1 - a)**n`` (two replicas at 99 %
give 99.99 %). A hedged call buys that at the price of extra load, and only when it is
needed: the backup starts after ``delay`` (or at once when an attempt fails).
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Generic, ParamSpec, TypeVar

import anyio
from anyio.abc import TaskGroup

from . import _telemetry, _validation
from ._backend import AbstractEventLoop, TimerHandle, trio_module
from ._backend import running_loop as _get_running_loop
from ._clock import current_time
from ._deadline import remaining
from ._events import HedgeLaunched, Listener, emit
from ._matching import ErrorFilter, matcher
from ._policy import PolicyFaces
from ._setting import Setting
from ._telemetry import observed

__all__ = ["Hedge"]

T = TypeVar("T")
P = ParamSpec("P")

_INF = math.inf


#: Polly's limit on extra attempts; more is almost always a load bug, not a policy.
_MAX_HEDGES = 10


class Hedge(PolicyFaces):
    """Start extra attempts of a slow or failed call; return the first success.

    The call starts at once. If it has no result after ``delay`` seconds, or fails with an
    error matched by ``on``, another attempt starts, up to ``max_hedges`` extra ones; each
    later hedge again waits ``delay`` after the previous one started (or starts at once
    when an attempt fails). The first success wins: the other attempts are cancelled *and
    awaited* (inside an anyio task group) before it is returned, so nothing outlives the
    call. A losing attempt's cancellation is not an error.

    - ``delay=0``: all attempts start together (parallel mode).
    - ``delay=math.inf``: the next attempt starts only when one fails (fallback mode);
      attempts then run one after the other, without a task group.

    When every attempt fails, the *first* attempt's error propagates, with a note. An
    error that ``on`` does not match ends the whole call at once: the other attempts are
    cancelled and it propagates untouched. Cancelling the caller cancels and awaits every
    attempt. An enclosing deadline (`asyncres.timeout`) bounds all attempts; when it
    leaves no more than ``delay`` at the start, no timer is armed at all.

    Hedge only idempotent operations: a losing attempt may have done its work before it
    was cancelled. `call_each` sends each attempt to a different replica.
    """

    __slots__ = ("_delay", "_listeners", "_match", "_max_hedges", "_name", "_on")

    __module__ = "asyncres"

    #: Seconds after an attempt starts before the next one does (``inf``: only on failure).
    delay: Setting[float] = Setting()
    #: The most extra attempts per call.
    max_hedges: Setting[int] = Setting()
    #: Which errors start the next attempt at once (others end the call).
    on: Setting[ErrorFilter] = Setting()
    #: The name given to events, or ``None``.
    name: Setting[str | None] = Setting()

    def __init__(
        self,
        *,
        delay: float,
        max_hedges: int = 1,
        on: ErrorFilter = Exception,
        name: str | None = None,
        listeners: Iterable[Listener] = (),
    ) -> None:
        self._delay = _validation.non_negative("delay", delay)
        self._max_hedges = _validation.count("max_hedges", max_hedges, minimum=1)
        if max_hedges > _MAX_HEDGES:
            raise ValueError(f"`max_hedges` must be <= {_MAX_HEDGES}, got {max_hedges!r}")
        self._match = matcher(on, "on")
        self._on = on
        self._name = name
        self._listeners = tuple(listeners)

    def __repr__(self) -> str:
        on = getattr(self._on, "__name__", None) or repr(self._on)
        name = f", name={self._name!r}" if self._name else ""
        return f"Hedge(delay={self._delay!r}, max_hedges={self._max_hedges}, on={on}{name})"

    def _delay_before(self, hedge: int) -> float:
        """Seconds to wait, after attempt ``hedge - 1`` started, before starting ``hedge``.

        The seam for an adaptive policy (Finagle's BackupRequestFilter sends the backup
        after a latency percentile from a sliding histogram): it only has to override this
        and feed the histogram. ``inf`` means: only when an attempt fails.
        """
        return self._delay

    async def call(self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``await fn(*args, **kwargs)``, hedged: every attempt calls the same function."""
        return await self._run(fn, args, kwargs, None)

    async def call_each(self, *fns: Callable[[], Awaitable[T]]) -> T:
        """Hedge across replicas: attempt ``k`` runs ``fns[k % len(fns)]()``.

        ``await hedge.call_each(primary.get, replica.get)`` sends the first attempt to the
        primary and the hedge to the replica; with fewer functions than attempts they are
        used in turn, with more the extra ones are never called. Bind arguments with a
        ``lambda`` or ``functools.partial``.
        """
        if not fns:
            raise TypeError("call_each() needs at least one function")
        return await self._run(fns[0], (), {}, fns)

    async def _run(
        self,
        fn: Callable[..., Awaitable[T]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        fns: Sequence[Callable[[], Awaitable[T]]] | None,
    ) -> T:
        first_delay = self._delay_before(1)
        if first_delay != _INF:
            left = remaining()
            if left is None or left > first_delay:
                return await self._race(_Race(self, fn, args, kwargs, fns), first_delay)
        # No timed hedge could start before the deadline, or none is configured: each
        # attempt starts when the previous one fails, in this task, without a task group.
        return await self._sequence(fn, args, kwargs, fns)

    async def _race(self, race: _Race[T], first_delay: float) -> T:
        """Attempt 0 runs in this task; the hedges are children of a task group."""
        try:
            async with anyio.create_task_group() as tg:
                race.tg = tg
                start = race.start = current_time()
                race.next_at = start + first_delay
                while race.launched < race.total and race.next_at <= start:
                    race.launch(start)  # parallel mode: no timer at all
                if race.launched < race.total:
                    race.start_timer()
                try:
                    result = await race.fn(*race.args, **race.kwargs)
                except Exception as exc:
                    race.failed(0, exc)
                except BaseException:
                    race.close()  # cancelled (or worse): launch nothing more
                    raise
                else:
                    race.succeeded(result)
        except BaseExceptionGroup as group:
            # Only a BaseException that is not cancellation gets here (attempts catch
            # Exception): hand it over alone, as an un-hedged call would raise it.
            if len(group.exceptions) == 1:
                raise group.exceptions[0] from None
            raise
        finally:
            race.close()  # no loop timer outlives the call, whatever happened
        return race.outcome()

    async def _sequence(
        self,
        fn: Callable[..., Awaitable[T]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        fns: Sequence[Callable[[], Awaitable[T]]] | None,
    ) -> T:
        """Fallback mode: attempt ``k + 1`` starts when attempt ``k`` fails."""
        start = current_time()  # only for the events' timestamps
        try:
            return await fn(*args, **kwargs)
        except Exception as exc:
            if not self._match(exc):
                raise
            error = exc
        race = _Race(self, fn, args, kwargs, fns)
        race.start = start
        race.record(0, error)
        for attempt in range(1, race.total):
            race.announce(attempt, current_time())
            try:
                return await race.invoke(attempt)
            except Exception as exc:
                if not self._match(exc):
                    raise
                race.record(attempt, exc)
        raise race.all_failed()


class _Race(Generic[T]):
    """The bookkeeping of one hedged call.

    Every method but the timers is synchronous: no ``await`` between reading the state and
    writing it, so attempts finishing in any order need no lock.

    The timer that starts hedges after their delay is, on asyncio, a loop timer (no task
    unless it fires: a call that succeeds before the delay spawns nothing); on trio, which
    has no timer callbacks, a child task sleeping with trio's own primitives.
    """

    __slots__ = (
        "_timing",
        "_wake",
        "args",
        "done",
        "error",
        "errors",
        "fn",
        "fns",
        "handle",
        "hedge",
        "kwargs",
        "launched",
        "loop",
        "next_at",
        "result",
        "running",
        "start",
        "tg",
        "total",
    )

    tg: TaskGroup
    start: float
    next_at: float
    result: T

    def __init__(
        self,
        hedge: Hedge,
        fn: Callable[..., Awaitable[T]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        fns: Sequence[Callable[[], Awaitable[T]]] | None,
    ) -> None:
        self.hedge = hedge
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.fns = fns
        self.total = hedge._max_hedges + 1
        self.launched = 1  # attempt 0 starts at once
        self.running = 1
        self.done = False
        self.error: Exception | None = None
        self.errors: list[Exception | None] | None = None
        self._timing = False
        self.loop: AbstractEventLoop | None = None  # asyncio: the loop timer's loop
        self.handle: TimerHandle | None = None  # asyncio: the armed loop timer
        self._wake: Any = None  # trio: the Event the sleeping timer task waits on

    def invoke(self, attempt: int) -> Awaitable[T]:
        fns = self.fns
        hooks = _telemetry.hooks
        if hooks is not None:  # a hedge's span: attempt 0 belongs to the caller's
            name = self.hedge._name
            if fns is None:
                return observed(hooks, "hedge", name, attempt, self.fn, *self.args, **self.kwargs)
            return observed(hooks, "hedge", name, attempt, fns[attempt % len(fns)])
        if fns is None:
            return self.fn(*self.args, **self.kwargs)
        return fns[attempt % len(fns)]()

    # -- starting attempts -------------------------------------------------------------

    def launch(self, now: float) -> None:
        """Start the next attempt now; arm the timer for the one after it."""
        attempt = self.launched
        self.launched = attempt + 1
        self.running += 1
        self.tg.start_soon(self._attempt, attempt)
        if attempt + 1 < self.total:
            self.next_at = now + self.hedge._delay_before(attempt + 1)
        else:
            self.next_at = _INF
        if self._timing:
            self._rearm()
        self.announce(attempt, now)

    def announce(self, attempt: int, now: float) -> None:
        hedge = self.hedge
        emit(hedge._listeners, HedgeLaunched(hedge._name, attempt, now - self.start))

    async def _attempt(self, attempt: int) -> None:
        try:
            result = await self.invoke(attempt)
        except Exception as exc:
            self.failed(attempt, exc)
        else:
            self.succeeded(result)

    # -- outcomes ----------------------------------------------------------------------

    def succeeded(self, result: T) -> None:
        if self.done:
            return  # a later finisher in the same tick: the first result already won
        self.result = result
        self.running -= 1
        self._finish()

    def failed(self, attempt: int, exc: Exception) -> None:
        if self.done:
            return
        self.running -= 1
        if not self.hedge._match(exc):
            self.error = exc
            self._finish()
            return
        self.record(attempt, exc)
        if self.launched < self.total:
            self.launch(current_time())  # a failure starts the next hedge at once
        elif self.running == 0:
            self.error = self.all_failed()
            self._finish()

    def _finish(self) -> None:
        self.done = True
        if self.running:
            self.tg.cancel_scope.cancel()  # the losers: cancelled, then awaited by the group
        self._disarm()

    def close(self) -> None:
        """The caller is cancelled, or leaving: start nothing more."""
        self.done = True
        self._disarm()

    def outcome(self) -> T:
        error = self.error
        if error is not None:
            self.error = self.errors = None  # no reference cycle through the traceback
            raise error
        return self.result

    def record(self, attempt: int, exc: Exception) -> None:
        errors = self.errors
        if errors is None:
            errors = self.errors = [None] * self.total
        errors[attempt] = exc

    def all_failed(self) -> Exception:
        """The first attempt's error, noted with what the others raised."""
        errors = self.errors
        assert errors is not None
        first = errors[0]
        assert first is not None
        self.errors = None  # no reference cycle through the traceback
        hedge = self.hedge
        label = f" {hedge._name!r}" if hedge._name else ""
        others = ", ".join(type(e).__name__ for e in errors[1:] if e is not None)
        first.add_note(
            f"asyncres.Hedge{label}: all {self.total} attempts failed; this is the first "
            f"attempt's error (the others: {others})"
        )
        return first

    # -- the timer ---------------------------------------------------------------------

    def start_timer(self) -> None:
        self._timing = True
        loop = _get_running_loop()
        if loop is not None:
            self.loop = loop
            self._rearm()
        else:
            self.tg.start_soon(self._trio_timer)

    def _rearm(self) -> None:
        """``next_at`` changed: make the timer honour it."""
        loop = self.loop
        if loop is not None:
            handle = self.handle
            if handle is not None:
                handle.cancel()
            at = self.next_at
            self.handle = loop.call_at(at, self._on_timer) if at != _INF else None
        else:
            self._wake_trio_timer()

    def _disarm(self) -> None:
        handle = self.handle
        if handle is not None:
            handle.cancel()
            self.handle = None
        elif self.loop is None:
            self._wake_trio_timer()  # it ends without a cancellation: the cheap path

    def _on_timer(self) -> None:
        # A loop callback: anyio can only spawn from a task, so hop into a tiny one.
        self.handle = None
        assert self.loop is not None
        self.loop.create_task(self._fire())

    async def _fire(self) -> None:
        if self.done or self.tg.cancel_scope.cancel_called:
            return
        now = current_time()
        # asyncio runs a timer up to its clock's resolution early (a virtual clock rounds
        # too): within a microsecond of `next_at` is on time, not a timer moved later.
        if now >= self.next_at - 1e-6:
            self.launch(now)
        elif self.handle is None:  # early by more: wait for the rest
            self._rearm()

    async def _trio_timer(self) -> None:
        trio = trio_module()
        while not self.done and self.launched < self.total:
            at = self.next_at
            now = current_time()
            if now < at:
                event = self._wake = trio.Event()
                with trio.move_on_at(at):
                    await event.wait()
                self._wake = None
                continue  # re-read: a failure may have started a hedge and moved next_at
            self.launch(now)

    def _wake_trio_timer(self) -> None:
        event = self._wake
        if event is not None:
            event.set()
