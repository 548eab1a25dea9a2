"""Deadlines: `timeout()`, `deadline()`, `remaining()` and the `Timeout` policy.

A deadline is a cancel scope, never a clock check between steps. The rule (anyio's
``fail_after``): a scope raises `TimeoutExceededError` only when *its own* deadline fired;
any other cancellation passes through untouched.

Each backend gets a native fast path, with the same semantics on both:

- asyncio: the mechanism of ``asyncio.timeout`` (a loop timer that cancels the task, and
  ``Task.uncancel()`` bookkeeping to tell our cancellation from anyone else's), entered as a
  plain sync context manager. A scope whose deadline is no earlier than an enclosing
  asyncres scope *of the same task* arms no timer at all: the enclosing one fires first.
  Scopes are linked through a context variable so that `remaining()` can see them.
- trio: a native ``trio.CancelScope``; trio itself tracks the effective deadline.
"""

from __future__ import annotations

import math
from asyncio import CancelledError, Handle, Task
from asyncio import current_task as _current_task
from asyncio.events import _get_running_loop
from collections.abc import Awaitable, Callable, Iterable
from contextvars import Context, ContextVar, Token
from types import ModuleType, TracebackType
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar
from weakref import WeakKeyDictionary
from weakref import ref as _weakref

import anyio

from . import _validation
from ._events import Listener, TimeoutExpired, emit
from ._exceptions import TimeoutExceededError
from ._policy import PolicyFaces

if TYPE_CHECKING:
    from typing import Self

    import trio as _trio_type

__all__ = ["Timeout", "deadline", "remaining", "timeout"]

T = TypeVar("T")
P = ParamSpec("P")

_INF = math.inf

# The innermost asyncres scope entered in this context (asyncio only).
_current_scope: ContextVar[DeadlineScope | AdvisoryDeadline | None] = ContextVar(
    "asyncres_deadline", default=None
)

_trio: ModuleType | None = None
_NO_CONTEXT = Context()

_anyio_task_states: Any
try:
    # anyio's per-task cancel-scope state on asyncio. A native task.cancel() would pierce
    # anyio's shielded scopes, so the timer consults it and waits for the shield to end.
    from anyio._backends._asyncio import _task_states as _anyio_task_states
except ImportError:  # pragma: no cover - anyio internals moved
    _anyio_task_states = None


def _anyio_state(task: Task[Any]) -> Any:
    """``_anyio_task_states.get(task)`` without the WeakKeyDictionary method's overhead."""
    return _anyio_states_data.get(_weakref(task))


if _anyio_task_states is not None and isinstance(_anyio_task_states, WeakKeyDictionary):
    _anyio_states_data = getattr(_anyio_task_states, "data")  # noqa: B009 - untyped internal
else:  # pragma: no cover - anyio internals changed shape
    _anyio_state = _anyio_task_states.get if _anyio_task_states is not None else None  # type: ignore[assignment]

# How often an expired deadline re-checks whether a shielded anyio scope has ended.
_SHIELD_POLL_SECONDS = 0.001


def _trio_module() -> ModuleType:
    global _trio
    if _trio is None:
        try:
            import trio
        except ImportError:  # pragma: no cover - trio is a test dependency
            raise RuntimeError(
                "asyncres: no running asyncio task and trio is not installed"
            ) from None
        _trio = trio
    return _trio


class DeadlineScope:
    """A sync context manager that cancels its body at a deadline.

    Made by `timeout()` and `deadline()`. After the block, `expired` says whether this
    scope's own deadline fired. A scope object is entered once.
    """

    __slots__ = (
        "_anyio_scope",
        "_cancelling",
        "_cover",
        "_deadline",
        "_expired",
        "_handle",
        "_parent",
        "_relative",
        "_task",
        "_token",
        "_trio_scope",
    )

    __module__ = "asyncres"

    # Only what every path reads is set here: this object is made on every call.
    _task: Task[Any] | None
    _handle: Handle | None
    _parent: DeadlineScope | AdvisoryDeadline | None
    _token: Token[DeadlineScope | AdvisoryDeadline | None] | None
    _trio_scope: _trio_type.CancelScope | None
    _cover: float
    _cancelling: int
    _anyio_scope: object

    def __init__(self, relative: float | None, at: float) -> None:
        self._relative = relative
        self._deadline = at
        self._expired = False
        self._task = None
        self._handle = None
        self._token = None
        self._trio_scope = None

    @property
    def deadline(self) -> float:
        """The absolute deadline on the event loop's clock (known once entered)."""
        if self._trio_scope is not None:
            return float(self._trio_scope.deadline)
        return self._deadline

    @property
    def expired(self) -> bool:
        """True when this scope's own deadline fired and cancelled the body."""
        return self._expired

    def __repr__(self) -> str:
        return (
            f"<DeadlineScope timeout={self._relative!r} deadline={self.deadline!r} "
            f"expired={self._expired}>"
        )

    def __enter__(self) -> Self:
        if self._task is not None or self._trio_scope is not None:
            raise RuntimeError("a deadline scope can be entered only once")
        loop = _get_running_loop()
        task = _current_task(loop) if loop is not None else None
        if task is None:
            return self._enter_trio()
        now = loop.time()  # type: ignore[union-attr]
        relative = self._relative
        if relative is not None:
            at = self._deadline = now + relative
        else:
            at = self._deadline
        parent = _current_scope.get()
        cover = parent._cover if parent is not None and parent._task is task else _INF
        if at < cover:
            # No enclosing scope of this task fires first: arm our own timer. A deadline
            # already due goes to the ready queue now, ahead of the body's next step.
            self._cancelling = task.cancelling()
            # An empty context: the callback needs none, and copying the caller's costs.
            if at > now:
                self._handle = loop.call_at(at, self._fire, context=_NO_CONTEXT)  # type: ignore[union-attr]
            else:
                self._handle = loop.call_soon(self._fire, context=_NO_CONTEXT)  # type: ignore[union-attr]
            cover = at
        if _anyio_task_states is not None:
            state = _anyio_state(task)
            self._anyio_scope = state.cancel_scope if state is not None else None
        self._cover = cover
        self._task = task
        self._parent = parent
        self._token = _current_scope.set(self)
        return self

    def _fire(self) -> None:
        task = self._task
        assert task is not None
        if self._inside_anyio_shield(task):
            loop = task.get_loop()
            self._handle = loop.call_at(loop.time() + _SHIELD_POLL_SECONDS, self._fire)
            return
        self._handle = None
        self._expired = True
        task.cancel()

    def _inside_anyio_shield(self, task: Task[Any]) -> bool:
        """Is the task inside a shielded anyio scope entered within this deadline scope?"""
        if _anyio_task_states is None:
            return False
        state = _anyio_state(task)
        if state is None:
            return False
        scope = state.cancel_scope
        boundary = self._anyio_scope
        while scope is not None and scope is not boundary:
            if scope._shield:
                return True
            scope = scope._parent_scope
        return False

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        token = self._token
        if token is None:
            self._exit_trio(exc_type, exc, tb)
            return
        self._token = None
        _current_scope.reset(token)
        handle = self._handle
        if handle is not None:
            handle.cancel()
            self._handle = None
        elif self._expired:
            # Our timer cancelled the task: if nobody else asked for a cancellation since we
            # entered, the CancelledError is ours to turn into TimeoutExceededError.
            if (
                self._task.uncancel() <= self._cancelling  # type: ignore[union-attr]
                and exc_type is not None
                and issubclass(exc_type, CancelledError)
            ):
                raise TimeoutExceededError(self._relative) from exc
            # The body swallowed our cancellation, or someone else cancelled too.
            self._expired = exc_type is not None and issubclass(exc_type, CancelledError)

    # trio ------------------------------------------------------------------------------

    def _enter_trio(self) -> Self:
        trio = _trio or _trio_module()
        if self._relative is not None:
            scope = trio.CancelScope(relative_deadline=self._relative)
        else:
            scope = trio.CancelScope(deadline=self._deadline)
        scope.__enter__()
        self._trio_scope = scope
        return self

    def _exit_trio(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        scope = self._trio_scope
        if scope is None:
            raise RuntimeError("this deadline scope was not entered")
        scope.__exit__(exc_type, exc, tb)
        if scope.cancelled_caught:
            # trio swallowed a Cancelled meant for our scope; nobody else holds the scope,
            # so only its deadline can have cancelled it.
            self._expired = True
            raise TimeoutExceededError(self._relative) from exc


class AdvisoryDeadline:
    """A deadline that every layer reads through `remaining()` but that cancels nothing.

    For callers whose blocking steps are all bounded by tighter scopes: the httpx adapter
    (its per-attempt scope is ``min(attempt timeout, what is left)``) and a `Pipeline` of
    ``Timeout`` > Retry / CircuitBreaker / Bulkhead > ``Timeout`` on trio, where the total
    timeout then costs no cancel scope of its own. Retry never waits past `remaining()`;
    a bulkhead queue and `Timeout._call_within_advisory` cut themselves at this deadline
    and, when that is what fires, raise `AdvisoryExpired`, which this scope turns into
    `TimeoutExceededError` on the way out, as a real scope would. Internal; not a
    substitute for `timeout()` in general.
    """

    __slots__ = (
        "_anyio_scope",
        "_cover",
        "_deadline",
        "_expired",
        "_parent",
        "_seconds",
        "_task",
        "_token",
    )

    _parent: DeadlineScope | AdvisoryDeadline | None
    _task: Task[Any] | None
    _token: Token[Any] | None
    _anyio_scope: object

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds
        self._token = None
        self._expired = False

    @property
    def expired(self) -> bool:
        """True when this deadline is what ended the block (with `TimeoutExceededError`)."""
        return self._expired

    def __enter__(self) -> Self:
        loop = _get_running_loop()
        task = _current_task(loop) if loop is not None else None
        parent = _current_scope.get()
        if task is None:
            trio = _trio or _trio_module()
            self._deadline = trio.current_time() + self._seconds
            self._cover = _INF
        else:
            self._deadline = loop.time() + self._seconds  # type: ignore[union-attr]
            # It fires nothing, so it covers nothing: inner scopes arm their own timers.
            self._cover = parent._cover if parent is not None and parent._task is task else _INF
            if _anyio_task_states is not None:
                state = _anyio_state(task)
                self._anyio_scope = state.cancel_scope if state is not None else None
        self._task = task
        self._parent = parent
        self._token = _current_scope.set(self)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._token is not None:
            _current_scope.reset(self._token)
            self._token = None
        if isinstance(exc, AdvisoryExpired) and exc.deadline is self:
            self._expired = True
            raise TimeoutExceededError(self._seconds) from None


class AdvisoryExpired(BaseException):
    """An `AdvisoryDeadline` passed while a step bounded by it was waiting.

    A BaseException, like the cancellation a real scope would deliver, so that no policy
    between the step and the deadline's owner counts it, retries it or swallows it.
    """

    def __init__(self, deadline: AdvisoryDeadline) -> None:
        super().__init__("advisory deadline reached")
        self.deadline = deadline


def _tightest_advisory() -> AdvisoryDeadline | None:
    """The earliest advisory deadline entered in this context and not yet left."""
    tightest: AdvisoryDeadline | None = None
    scope = _current_scope.get()
    while scope is not None:
        if (
            scope.__class__ is AdvisoryDeadline
            and scope._token is not None
            and (tightest is None or scope._deadline < tightest._deadline)
        ):
            tightest = scope
        scope = scope._parent
    return tightest


def advisory_bound() -> AdvisoryDeadline | None:
    """The tightest advisory deadline in force, when no real deadline comes before it.

    A wait that finds one must bound itself by it (and raise `AdvisoryExpired` when it
    fires): nothing else would.
    """
    tightest = _tightest_advisory()
    if tightest is None:
        return None
    loop = _get_running_loop()
    task = _current_task(loop) if loop is not None else None
    if task is None:
        real = (_trio or _trio_module()).current_effective_deadline()
    else:
        real = _asyncio_deadline(task, advisory=False)
    return tightest if tightest._deadline < real else None


def timeout(seconds: float) -> DeadlineScope:
    """Cancel the block after ``seconds``; raise `TimeoutExceededError` if that happens.

    ``with asyncres.timeout(2.0): await fetch()``. A sync context manager, like
    ``anyio.fail_after``; nesting works and the tightest deadline wins. Only the scope whose
    own deadline fired raises; an outer cancellation stays a cancellation. ``inf`` means no
    limit; negative or NaN raise ``ValueError``.
    """
    if seconds.__class__ is not float or not seconds >= 0.0:
        seconds = _validation.non_negative("seconds", seconds)
    return DeadlineScope(seconds, _INF)


def deadline(at: float) -> DeadlineScope:
    """Cancel the block at the absolute time ``at`` on the loop's clock.

    ``at`` is read against ``anyio.current_time()``; a time in the past cancels the block at
    its first checkpoint. Raises `TimeoutExceededError` (with ``timeout=None``) when it fires.
    """
    if isinstance(at, bool) or not isinstance(at, int | float) or math.isnan(at):
        raise ValueError(f"`at` must be a number, got {at!r}")
    return DeadlineScope(None, float(at))


def remaining() -> float | None:
    """Seconds left before the tightest enclosing deadline, or ``None`` when unbounded.

    Sees asyncres scopes and anyio/trio cancel scopes (``anyio.fail_after``,
    ``move_on_after``, task-group scopes). Returns ``0.0`` once a deadline has passed or the
    enclosing scope is already cancelled. Plain ``asyncio.timeout`` blocks are invisible:
    asyncio offers no way to find them.
    """
    loop = _get_running_loop()
    task = _current_task(loop) if loop is not None else None
    if task is not None:
        now = loop.time()  # type: ignore[union-attr]
        at = _asyncio_deadline(task)
    else:
        trio = _trio or _trio_module()
        now = trio.current_time()
        at = trio.current_effective_deadline()
        # On trio only advisory deadlines live in the context variable.
        scope = _current_scope.get()
        while scope is not None:
            if scope._token is not None and scope._deadline < at:
                at = scope._deadline
            scope = scope._parent
    if at == _INF:
        return None
    return max(0.0, at - now)


def _asyncio_deadline(task: Task[Any], advisory: bool = True) -> float:
    """The tightest deadline over this task's anyio scopes and asyncres scopes.

    ``advisory=False`` leaves out advisory deadlines: only those that cancel count.
    """
    if _anyio_task_states is None:  # pragma: no cover - anyio internals moved
        at = anyio.current_effective_deadline()
        shield = None
    else:
        # anyio's own chain, read directly (anyio.current_effective_deadline() is ~2 us).
        at = _INF
        shield = None
        state = _anyio_state(task)
        cancel_scope = state.cancel_scope if state is not None else None
        while cancel_scope is not None:
            if cancel_scope._cancel_called:
                return -_INF
            if cancel_scope._deadline < at:
                at = cancel_scope._deadline
            if cancel_scope._shield:
                shield = cancel_scope
                break
            cancel_scope = cancel_scope._parent_scope
    scope = _current_scope.get()
    if scope is None:
        return at
    visible: set[int] | None = None
    if shield is not None:
        # Only asyncres scopes entered inside the shield still apply.
        visible = set()
        inner = state.cancel_scope
        while inner is not None:
            visible.add(id(inner))
            if inner is shield:
                break
            inner = inner._parent_scope
    while scope is not None:
        if visible is not None and scope._task is task and id(scope._anyio_scope) not in visible:
            break  # entered outside the shield: hidden, as are all outer ones
        # A scope inherited by a task spawned from inside it may have ended already.
        if (
            scope._token is not None
            and scope._deadline < at
            and (advisory or scope.__class__ is DeadlineScope)
        ):
            at = scope._deadline
        scope = scope._parent
    return at


class Timeout(PolicyFaces):
    """A time limit as a policy: each call runs inside ``timeout(seconds)``.

    Use it per attempt (innermost) and for the whole call (outermost) in a `Pipeline`.
    Raises `TimeoutExceededError` and emits `TimeoutExpired` when its deadline fires.
    """

    __slots__ = ("_listeners", "name", "seconds")

    __module__ = "asyncres"

    def __init__(
        self,
        seconds: float,
        *,
        name: str | None = None,
        listeners: Iterable[Listener] = (),
    ) -> None:
        self.seconds = _validation.non_negative("seconds", seconds)
        self.name = name
        self._listeners = tuple(listeners)

    def __repr__(self) -> str:
        name = f", name={self.name!r}" if self.name else ""
        return f"Timeout({self.seconds!r}{name})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Timeout):
            return NotImplemented
        return (self.seconds, self.name, self._listeners) == (
            other.seconds,
            other.name,
            other._listeners,
        )

    def __hash__(self) -> int:
        return hash((Timeout, self.seconds, self.name))

    async def call(self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``await fn(*args, **kwargs)`` within this time limit."""
        scope = DeadlineScope(self.seconds, _INF)
        try:
            with scope:
                return await fn(*args, **kwargs)
        except TimeoutExceededError:
            if scope._expired:
                emit(self._listeners, TimeoutExpired(name=self.name, timeout=self.seconds))
            raise

    async def _call_within_advisory(
        self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """`call` on trio inside a `Pipeline` whose total timeout is an `AdvisoryDeadline`.

        One cancel scope serves both limits: this attempt's, cut to the total's. When the
        total is what fires, `AdvisoryExpired` goes up to the pipeline's advisory scope
        (which raises the total's `TimeoutExceededError`); otherwise the attempt timed out.
        """
        trio = _trio or _trio_module()
        at = trio.current_time() + self.seconds
        total = _tightest_advisory()
        if total is not None and total._deadline <= at:
            at = total._deadline
        else:
            total = None  # this attempt's own limit comes first
        cancel_scope = trio.CancelScope(deadline=at)
        with cancel_scope:
            result = await fn(*args, **kwargs)
        if cancel_scope.cancelled_caught:  # nobody else holds the scope: its deadline fired
            if total is not None:
                raise AdvisoryExpired(total)
            emit(self._listeners, TimeoutExpired(name=self.name, timeout=self.seconds))
            raise TimeoutExceededError(self.seconds)
        return result
