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
from collections.abc import Awaitable, Callable, Iterable
from contextvars import Context, ContextVar, Token
from types import TracebackType
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from . import _validation
from ._backend import CancelledError, Handle, Task, trio_module
from ._backend import anyio_current_scope as _anyio_current_scope
from ._backend import anyio_deadline as _anyio_deadline
from ._backend import anyio_scopes_through as _anyio_scopes_through
from ._backend import anyio_shielded_between as _anyio_shielded_between
from ._backend import arm_timer as _arm_timer
from ._backend import asyncio_current_task as _current_task
from ._backend import disarm_timer as _disarm_timer
from ._backend import running_loop as _get_running_loop
from ._events import Listener, TimeoutExpired, emit
from ._exceptions import TimeoutExceededError
from ._policy import PolicyFaces
from ._setting import Setting

if TYPE_CHECKING:
    from typing import Self

    from ._backend import TrioCancelScope

__all__ = ["Timeout", "deadline", "remaining", "timeout"]

T = TypeVar("T")
P = ParamSpec("P")

_INF = math.inf

# The innermost asyncres scope entered in this context (asyncio only).
_current_scope: ContextVar[DeadlineScope | AdvisoryDeadline | None] = ContextVar(
    "asyncres_deadline", default=None
)

_NO_CONTEXT = Context()

# How often an expired deadline re-checks whether a shielded anyio scope has ended.
_SHIELD_POLL_SECONDS = 0.001


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
    _trio_scope: TrioCancelScope | None
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
                self._handle = _arm_timer(loop, at, self._fire, _NO_CONTEXT)
            else:
                self._handle = loop.call_soon(self._fire, context=_NO_CONTEXT)  # type: ignore[union-attr]
            cover = at
        self._anyio_scope = _anyio_current_scope(task)
        self._cover = cover
        self._task = task
        self._parent = parent
        self._token = _current_scope.set(self)
        return self

    def _fire(self) -> None:
        task = self._task
        assert task is not None
        if _anyio_shielded_between(task, self._anyio_scope):
            loop = task.get_loop()
            self._handle = loop.call_at(loop.time() + _SHIELD_POLL_SECONDS, self._fire)
            return
        self._handle = None
        self._expired = True
        task.cancel()

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
            _disarm_timer(handle)
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
        trio = trio_module()
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
            trio = trio_module()
            self._deadline = trio.current_time() + self._seconds
            self._cover = _INF
        else:
            self._deadline = loop.time() + self._seconds  # type: ignore[union-attr]
            # It fires nothing, so it covers nothing: inner scopes arm their own timers.
            self._cover = parent._cover if parent is not None and parent._task is task else _INF
            self._anyio_scope = _anyio_current_scope(task)
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
        real = trio_module().current_effective_deadline()
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
        trio = trio_module()
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
    # anyio's own chain, read directly (anyio.current_effective_deadline() is ~2 us).
    at, shield = _anyio_deadline(task)
    scope = _current_scope.get()
    if scope is None:
        return at
    visible: set[int] | None = None
    if shield is not None:
        # Only asyncres scopes entered inside the shield still apply.
        visible = _anyio_scopes_through(task, shield)
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

    __slots__ = ("_listeners", "_name", "_seconds")

    __module__ = "asyncres"

    #: The time limit of each call, in seconds.
    seconds: Setting[float] = Setting()
    #: The name given to events, or ``None``.
    name: Setting[str | None] = Setting()

    def __init__(
        self,
        seconds: float,
        *,
        name: str | None = None,
        listeners: Iterable[Listener] = (),
    ) -> None:
        self._seconds = _validation.non_negative("seconds", seconds)
        self._name = name
        self._listeners = tuple(listeners)

    def __repr__(self) -> str:
        name = f", name={self._name!r}" if self._name else ""
        return f"Timeout({self._seconds!r}{name})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Timeout):
            return NotImplemented
        return (self._seconds, self._name, self._listeners) == (
            other._seconds,
            other._name,
            other._listeners,
        )

    def __hash__(self) -> int:
        return hash((Timeout, self._seconds, self._name))

    async def call(self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``await fn(*args, **kwargs)`` within this time limit."""
        scope = DeadlineScope(self._seconds, _INF)
        try:
            with scope:
                return await fn(*args, **kwargs)
        except TimeoutExceededError:
            if scope._expired:
                emit(self._listeners, TimeoutExpired(name=self._name, timeout=self._seconds))
            raise

    async def _call_within_advisory(
        self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """`call` on trio inside a `Pipeline` whose total timeout is an `AdvisoryDeadline`.

        One cancel scope serves both limits: this attempt's, cut to the total's. When the
        total is what fires, `AdvisoryExpired` goes up to the pipeline's advisory scope
        (which raises the total's `TimeoutExceededError`); otherwise the attempt timed out.
        """
        trio = trio_module()
        at = trio.current_time() + self._seconds
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
            emit(self._listeners, TimeoutExpired(name=self._name, timeout=self._seconds))
            raise TimeoutExceededError(self._seconds)
        return result
