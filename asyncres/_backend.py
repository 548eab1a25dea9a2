"""The one seam between asyncres and the event loop underneath (asyncio or trio).

Everything that depends on which backend runs, and every use of anyio's private internals,
lives here; the rest of the package asks this module (anyio's *public* API is used freely
elsewhere). Like anyio's own ``_backends/``: one place to read when a backend changes.

**asyncio** names are re-exported as the very same objects (``running_loop`` is asyncio's C
``_get_running_loop``), so a hot path that binds them at import pays nothing for the seam.

**trio** is imported lazily (`trio_module`): it is optional, and an asyncio user should not
pay its import time.

**anyio internals** (asyncio backend only; on trio anyio's scopes *are* trio's and trio's
public API answers everything). asyncres' asyncio deadlines are loop timers, not anyio
scopes, so to agree with anyio's scopes they read anyio's per-task state:

- ``anyio._backends._asyncio._task_states``: a ``WeakKeyDictionary`` task -> ``TaskState``
  whose ``cancel_scope`` is the task's innermost anyio ``CancelScope``. Needed because anyio
  has no public "current cancel scope" (``anyio.current_effective_deadline()`` gives only
  the deadline, costs ~2 µs, and says nothing about shields).
- on that ``CancelScope``: ``_parent_scope`` (walk outwards), ``_deadline`` and
  ``_cancel_called`` (what `remaining()` reports) and ``_shield`` (a deadline timer must
  not ``task.cancel()`` through a shielded anyio scope, and `remaining()` must not see
  deadlines outside one). Public fallback for the deadline only:
  ``anyio.current_effective_deadline()``; there is none for the shield.

Decision: the shape of these internals is checked once, here, at import. When it does not
match, importing asyncres raises ``ImportError`` naming anyio's version and the missing
internal, rather than run with deadlines that silently pierce shields. `KNOWN_ANYIO` is the
range the test suite has verified (``tests/test_backend.py`` fails loudly outside it).

**asyncio timers** (`arm_timer`, `disarm_timer`): a deadline arms a loop timer on entry and
cancels it on exit, on every call. Through ``loop.call_at`` and ``TimerHandle.cancel`` that
is nine frames of asyncio's Python code; for a loop class that schedules exactly as
``BaseEventLoop`` does (``call_at`` and ``_timer_handle_cancelled`` not overridden: the
stock loops, looptime's) and is not in debug mode, these two do the same work on the same
private state in one frame each: a ``TimerHandle`` with every slot set as its
``__init__`` would, pushed onto ``loop._scheduled``; cancelling marks it as
``Handle.cancel`` does and counts it in ``loop._timer_cancelled_count``. Any other loop
(uvloop, a subclass that overrides either method, debug mode), and any Python whose
``TimerHandle`` slots differ from `TIMER_HANDLE_SLOTS` (checked at import), gets the public
calls. ``tests/test_backend.py`` checks the handle's slots against asyncio's own.
"""

from __future__ import annotations

import asyncio
import asyncio.tasks
import importlib.metadata
from asyncio import AbstractEventLoop, BaseEventLoop, CancelledError, Handle, Task, TimerHandle
from asyncio.events import _get_running_loop
from collections.abc import Callable
from contextvars import Context
from heapq import heappush
from types import BuiltinFunctionType, ModuleType
from typing import TYPE_CHECKING, Any
from weakref import WeakKeyDictionary
from weakref import ref as _weakref

if TYPE_CHECKING:
    # For annotations only (``from ._backend import TrioCancelScope`` under TYPE_CHECKING).
    from typing import TypeAlias

    import trio

    TrioCancelScope: TypeAlias = trio.CancelScope

__all__ = [
    "ANYIO_SCOPE_ATTRIBUTES",
    "KNOWN_ANYIO",
    "TIMER_HANDLE_SLOTS",
    "AbstractEventLoop",
    "BaseEventLoop",
    "CancelledError",
    "Handle",
    "Task",
    "TimerHandle",
    "anyio_current_scope",
    "anyio_deadline",
    "anyio_scopes_through",
    "anyio_shielded_between",
    "anyio_version",
    "arm_timer",
    "asyncio_current_task",
    "current_task",
    "disarm_timer",
    "running_loop",
    "timer_handle_slots",
    "trio_module",
]

#: The anyio releases whose internals the test suite has verified against this module.
KNOWN_ANYIO = ">=4.0,<5"

#: The private attributes of anyio's asyncio ``CancelScope`` this module reads.
ANYIO_SCOPE_ATTRIBUTES = ("_parent_scope", "_deadline", "_cancel_called", "_shield")

#: The running asyncio loop, or ``None`` (under trio, or outside any loop). Fast: a C call.
running_loop = _get_running_loop


def _task_lookup() -> Callable[[AbstractEventLoop], Task[Any] | None]:
    # Python 3.11's ``asyncio.current_task`` is Python code around a C dict lookup: call the
    # lookup itself. Where ``current_task`` is C already (3.12+), it is the lookup.
    current = asyncio.current_task
    tasks = getattr(asyncio.tasks, "_current_tasks", None)
    if not isinstance(current, BuiltinFunctionType) and isinstance(tasks, dict):
        return tasks.get
    return current


#: ``asyncio.current_task(loop)``, as directly as this Python allows (``loop`` required).
asyncio_current_task = _task_lookup()


# Loop class -> whether it schedules timers exactly as BaseEventLoop does.
_plain_timer_loops: dict[type, bool] = {}
_STOCK_TIMER_HANDLE_CANCELLED = getattr(BaseEventLoop, "_timer_handle_cancelled", None)
# A handle built slot by slot, as TimerHandle.__init__ would fill it (without its frames).
_new_timer_handle = object.__new__
#: The slots `arm_timer` fills: TimerHandle's (and Handle's) on the Pythons verified.
TIMER_HANDLE_SLOTS = frozenset(
    {
        "_args",
        "_callback",
        "_cancelled",
        "_context",
        "_loop",
        "_repr",
        "_scheduled",
        "_source_traceback",
        "_when",
    }
)
_LOOP_TIMER_STATE = ("_scheduled", "_timer_cancelled_count", "_debug")


def timer_handle_slots() -> frozenset[str]:
    """The slots of this Python's ``TimerHandle`` (``__weakref__`` aside)."""
    return frozenset(
        name
        for cls in TimerHandle.__mro__
        for name in getattr(cls, "__slots__", ())
        if name != "__weakref__"
    )


# Another Python's TimerHandle (a slot added or gone), or a BaseEventLoop without the
# cancellation hook the fast path stands in for, gets the public calls: never a handle with
# a slot left unset, nor a count nobody reads.
_KNOWN_TIMER_HANDLE = (
    timer_handle_slots() == TIMER_HANDLE_SLOTS and _STOCK_TIMER_HANDLE_CANCELLED is not None
)


def _schedules_plainly(loop: Any) -> bool:
    cls = loop.__class__
    plain = (
        _KNOWN_TIMER_HANDLE
        and getattr(cls, "call_at", None) is BaseEventLoop.call_at
        and getattr(cls, "_timer_handle_cancelled", None) is _STOCK_TIMER_HANDLE_CANCELLED
        and all(hasattr(loop, name) for name in _LOOP_TIMER_STATE)
    )
    _plain_timer_loops[cls] = plain
    return plain


def arm_timer(loop: Any, when: float, callback: Callable[[], object], context: Context) -> Any:
    """``loop.call_at(when, callback, context=context)``, the handle it returns."""
    plain = _plain_timer_loops.get(loop.__class__)
    if plain is None:
        plain = _schedules_plainly(loop)
    if not plain or loop._debug:
        return loop.call_at(when, callback, context=context)
    handle: Any = _new_timer_handle(TimerHandle)
    handle._context = context
    handle._loop = loop
    handle._callback = callback
    handle._args = ()
    handle._cancelled = False
    handle._repr = None
    handle._source_traceback = None
    handle._when = when
    handle._scheduled = True
    heappush(loop._scheduled, handle)
    return handle


def disarm_timer(handle: Any) -> None:
    """``handle.cancel()`` for a loop handle (`arm_timer`'s, or any other)."""
    loop = handle._loop
    kind = handle.__class__  # (not narrowing `handle`: its private slots are what we set)
    if kind is not TimerHandle or not _plain_timer_loops.get(loop.__class__) or loop._debug:
        handle.cancel()
    elif not handle._cancelled:
        if handle._scheduled:
            loop._timer_cancelled_count += 1
        handle._cancelled = True
        handle._callback = None
        handle._args = None


def anyio_version() -> str:
    """The installed anyio's version (for error messages)."""
    try:
        return importlib.metadata.version("anyio")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - vendored anyio
        return "unknown"


def _internals_mismatch(detail: str) -> ImportError:
    return ImportError(
        f"asyncres: anyio {anyio_version()} does not have the internal asyncres relies on: "
        f"{detail}. asyncres is tested with anyio{KNOWN_ANYIO}; install such a release, or "
        "report this (the seam is asyncres/_backend.py)."
    )


def _load_anyio_task_states() -> dict[Any, Any]:
    """The dict under anyio's ``_task_states``, after checking every internal we read."""
    try:
        from anyio._backends import _asyncio as anyio_asyncio
    except ImportError as exc:  # pragma: no cover - anyio internals moved
        raise _internals_mismatch(f"module anyio._backends._asyncio ({exc})") from None
    states = getattr(anyio_asyncio, "_task_states", None)
    if not isinstance(states, WeakKeyDictionary):
        raise _internals_mismatch(
            f"anyio._backends._asyncio._task_states as a WeakKeyDictionary, got {states!r}"
        )
    data = getattr(states, "data", None)
    if not isinstance(data, dict):  # pragma: no cover - CPython changed
        raise _internals_mismatch("WeakKeyDictionary.data (a dict)")
    state_class = getattr(anyio_asyncio, "TaskState", None)
    if "cancel_scope" not in getattr(state_class, "__slots__", ()):
        raise _internals_mismatch("anyio._backends._asyncio.TaskState.cancel_scope")
    scope = anyio_asyncio.CancelScope()
    for name in ANYIO_SCOPE_ATTRIBUTES:
        if not hasattr(scope, name):
            raise _internals_mismatch(f"anyio._backends._asyncio.CancelScope.{name}")
    return data


_anyio_states_data = _load_anyio_task_states()
_anyio_state_of = _anyio_states_data.get

# -- asyncio -------------------------------------------------------------------------------


def current_task() -> object:
    """The running task (asyncio or trio); ``None`` outside any task."""
    loop = _get_running_loop()
    if loop is not None:
        return asyncio.current_task(loop)
    try:
        return trio_module().lowlevel.current_task()
    except RuntimeError:
        return None


# -- trio ----------------------------------------------------------------------------------

_trio: ModuleType | None = None


def trio_module() -> ModuleType:
    """The ``trio`` module, imported on first use (RuntimeError when it is not installed)."""
    trio = _trio
    if trio is None:
        return _import_trio()
    return trio


def _import_trio() -> ModuleType:
    global _trio
    try:
        import trio
    except ImportError:  # pragma: no cover - trio is a test dependency
        raise RuntimeError("asyncres: no running asyncio task and trio is not installed") from None
    _trio = trio
    return trio


# -- anyio internals (asyncio backend) -----------------------------------------------------
# Each reads the task's anyio state through the WeakKeyDictionary's own dict: one C lookup
# instead of the Python-level WeakKeyDictionary.get.


def anyio_current_scope(task: Task[Any]) -> Any:
    """The task's innermost anyio cancel scope (``None`` when it is in none)."""
    state = _anyio_state_of(_weakref(task))
    return state.cancel_scope if state is not None else None


def anyio_deadline(task: Task[Any]) -> tuple[float, Any]:
    """``(deadline, shield)`` over the task's anyio scopes, walking out to the first shield.

    The deadline is ``-inf`` when a scope on the way is already cancelled; ``shield`` is the
    shielded scope that ended the walk, or ``None``.
    """
    state = _anyio_state_of(_weakref(task))
    if state is None:
        return _UNBOUNDED
    at = _INF
    scope = state.cancel_scope
    while scope is not None:
        if scope._cancel_called:
            return _CANCELLED
        if scope._deadline < at:
            at = scope._deadline
        if scope._shield:
            return at, scope
        scope = scope._parent_scope
    return (at, None) if at != _INF else _UNBOUNDED


def anyio_scopes_through(task: Task[Any], outer: Any) -> set[int]:
    """The ``id()`` of each anyio scope of the task from the innermost out to ``outer``."""
    ids: set[int] = set()
    scope = anyio_current_scope(task)
    while scope is not None:
        ids.add(id(scope))
        if scope is outer:
            break
        scope = scope._parent_scope
    return ids


def anyio_shielded_between(task: Task[Any], boundary: Any) -> bool:
    """Is the task inside a shielded anyio scope entered within the scope ``boundary``?"""
    scope = anyio_current_scope(task)
    while scope is not None and scope is not boundary:
        if scope._shield:
            return True
        scope = scope._parent_scope
    return False


_INF = float("inf")
# The common answers, made once: no allocation when nothing bounds the task.
_UNBOUNDED: tuple[float, Any] = (_INF, None)
_CANCELLED: tuple[float, Any] = (-_INF, None)
