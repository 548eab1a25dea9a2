"""The backend seam: anyio internals still have the shape it relies on, and nobody else uses them.

When one of these fails after an anyio upgrade, read asyncres/_backend.py's docstring: it
says why each internal is needed; fix the seam (or pin anyio), then widen `KNOWN_ANYIO`.
"""

from __future__ import annotations

import ast
import asyncio
import contextvars
import math
import re
import weakref
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest
import sniffio
from anyio._backends import _asyncio as anyio_asyncio

import asyncres
from asyncres import _backend

pytestmark = pytest.mark.anyio

PACKAGE = Path(asyncres.__file__).parent

#: Modules that may still import asyncio/trio/sniffio or anyio internals, and why.
#: The merge shrinks this list; it must never grow without a reason written next to it.
BACKEND_ALLOWLIST = {
    "_backend.py": "the seam itself",
    "db/_postgres.py": "asyncio-only adapter (asyncpg)",
    "db/_sqlite.py": "asyncio-only adapter (aiosqlite)",
    "drill/_service.py": "asyncio-only drill service",
}

#: Top-level modules that name a backend.
BACKEND_MODULES = {"asyncio", "trio", "sniffio"}

#: Attribute names that only anyio's internals have.
ANYIO_PRIVATE_ATTRIBUTES = {"_parent_scope", "_cancel_called", "_shield", "_task_states"}


def _internal(what: str) -> str:
    return (
        f"anyio {_backend.anyio_version()} changed an internal asyncres/_backend.py relies on: "
        f"{what} (the seam is tested with anyio{_backend.KNOWN_ANYIO})"
    )


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


def _in_range(version: str, spec: str) -> bool:
    """``version`` satisfies a spec of ``>=``/``<`` clauses such as ``">=4.0,<5"``."""
    have = _version_tuple(version)
    for clause in spec.split(","):
        clause = clause.strip()
        if clause.startswith(">="):
            if have < _version_tuple(clause[2:]):
                return False
        elif clause.startswith("<"):
            if have >= _version_tuple(clause[1:]):
                return False
        else:  # pragma: no cover - a typo in KNOWN_ANYIO
            raise AssertionError(f"KNOWN_ANYIO: cannot read the clause {clause!r}")
    return True


# -- the guard ---------------------------------------------------------------------------------


def test_installed_anyio_is_in_the_tested_range() -> None:
    """The installed anyio is a release whose internals this suite has verified."""
    version = _backend.anyio_version()
    assert _in_range(version, _backend.KNOWN_ANYIO), (
        f"anyio {version} is outside asyncres' tested range anyio{_backend.KNOWN_ANYIO}: "
        "run tests/test_backend.py, check every internal listed in asyncres/_backend.py, "
        "then widen KNOWN_ANYIO"
    )


def test_version_range_reader() -> None:
    """The range check accepts the bounds' inside and refuses their outside."""
    assert _in_range("4.0.0", ">=4.0,<5")
    assert _in_range("4.16.0", ">=4.0,<5")
    assert not _in_range("3.7.1", ">=4.0,<5")
    assert not _in_range("5.0.0rc1", ">=4.0,<5")


def test_anyio_task_states_has_the_expected_shape() -> None:
    """``_task_states`` is a WeakKeyDictionary of TaskState with a ``cancel_scope`` slot."""
    states = getattr(anyio_asyncio, "_task_states", None)
    assert isinstance(states, weakref.WeakKeyDictionary), _internal(
        f"anyio._backends._asyncio._task_states is a WeakKeyDictionary (got {type(states)})"
    )
    assert isinstance(getattr(states, "data", None), dict), _internal("WeakKeyDictionary.data")
    assert "cancel_scope" in getattr(anyio_asyncio.TaskState, "__slots__", ()), _internal(
        "anyio._backends._asyncio.TaskState has a `cancel_scope` slot"
    )


@pytest.mark.parametrize("anyio_backend", ["asyncio"], indirect=True)
async def test_the_task_lookup_finds_the_running_task_and_none_elsewhere() -> None:
    """The seam's ``asyncio_current_task`` answers as ``asyncio.current_task`` does."""
    loop = asyncio.get_running_loop()
    assert _backend.asyncio_current_task(loop) is asyncio.current_task()

    def from_a_callback() -> None:
        seen.append(_backend.asyncio_current_task(loop))

    seen: list[object] = []
    loop.call_soon(from_a_callback)
    await anyio.lowlevel.checkpoint()
    assert seen == [None]  # a plain callback runs in no task
    child: list[object] = []

    async def in_a_child() -> None:
        child.append(_backend.asyncio_current_task(loop))

    task = asyncio.ensure_future(in_a_child())
    await task
    assert child == [task]


@pytest.mark.parametrize("anyio_backend", ["asyncio"], indirect=True)
async def test_anyio_cancel_scope_internals_track_the_public_state() -> None:
    """On a real asyncio CancelScope, every private attribute the seam reads mirrors its state."""
    task = _backend.asyncio_current_task(asyncio.get_running_loop())
    assert task is not None
    with anyio.CancelScope() as outer:
        with anyio.CancelScope(deadline=anyio.current_time() + 5.0, shield=True) as inner:
            assert _backend.anyio_current_scope(task) is inner, _internal(
                "_task_states[task].cancel_scope is the innermost CancelScope"
            )
            for name in _backend.ANYIO_SCOPE_ATTRIBUTES:
                assert hasattr(inner, name), _internal(f"CancelScope.{name}")
            assert inner._parent_scope is outer, _internal("CancelScope._parent_scope")
            assert inner._deadline == inner.deadline, _internal("CancelScope._deadline")
            assert inner._shield is True, _internal("CancelScope._shield")
            inner.shield = False
            assert inner._shield is False, _internal("CancelScope._shield follows .shield")
            assert inner._cancel_called is False, _internal("CancelScope._cancel_called")
            inner.cancel()
            assert inner._cancel_called is True, _internal("CancelScope._cancel_called")
        assert _backend.anyio_current_scope(task) is outer, _internal(
            "_task_states[task].cancel_scope returns to the parent on exit"
        )


@pytest.mark.parametrize("anyio_backend", ["trio"], indirect=True)
async def test_trio_public_api_the_seam_uses() -> None:
    """On trio, anyio's scopes are trio's: trio's public API sees their deadline and shield."""
    trio = _backend.trio_module()
    assert _backend.running_loop() is None
    with anyio.CancelScope(deadline=anyio.current_time() + 5.0):
        assert trio.current_effective_deadline() == pytest.approx(anyio.current_time() + 5.0)
        with anyio.CancelScope(shield=True):
            assert trio.current_effective_deadline() == math.inf
    for name in ("CancelScope", "Event", "move_on_at", "current_time"):
        assert callable(getattr(trio, name, None)), f"trio.{name} is gone"
    assert _backend.current_task() is trio.lowlevel.current_task()


def test_seam_refuses_to_import_on_a_task_states_of_another_shape(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A `_task_states` that is not a WeakKeyDictionary raises ImportError naming it."""
    monkeypatch.setattr(anyio_asyncio, "_task_states", {})
    with pytest.raises(ImportError, match=r"anyio \S+ .*_task_states.*anyio>=4\.0,<5"):
        _backend._load_anyio_task_states()


def test_seam_refuses_to_import_on_a_cancel_scope_without_an_attribute(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A CancelScope missing an attribute the seam reads raises ImportError naming it."""

    class ShieldlessScope:
        def __init__(self) -> None:
            self._parent_scope = None
            self._deadline = math.inf
            self._cancel_called = False

    monkeypatch.setattr(anyio_asyncio, "CancelScope", ShieldlessScope)
    with pytest.raises(ImportError, match=r"CancelScope\._shield"):
        _backend._load_anyio_task_states()


def test_seam_refuses_to_import_on_a_task_state_without_cancel_scope(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A TaskState without a ``cancel_scope`` slot raises ImportError naming it."""

    class TaskState:
        __slots__ = ("parent_id",)

    monkeypatch.setattr(anyio_asyncio, "TaskState", TaskState)
    with pytest.raises(ImportError, match=r"TaskState\.cancel_scope"):
        _backend._load_anyio_task_states()


# -- the seam's functions ----------------------------------------------------------------------


@pytest.mark.parametrize("anyio_backend", ["asyncio"], indirect=True)
async def test_anyio_deadline_walks_out_to_the_first_shield() -> None:
    """`anyio_deadline` gives the tightest deadline up to a shield, and that shield."""
    task: Any = _backend.asyncio_current_task(asyncio.get_running_loop())
    assert _backend.anyio_deadline(task) == (math.inf, None)
    now = anyio.current_time()
    with anyio.CancelScope(deadline=now + 1.0):
        with anyio.CancelScope(deadline=now + 3.0, shield=True) as shield:
            with anyio.CancelScope(deadline=now + 5.0) as innermost:
                assert _backend.anyio_deadline(task) == (now + 3.0, shield)
                through = _backend.anyio_scopes_through(task, shield)
                assert through == {id(innermost), id(shield)}
                assert _backend.anyio_shielded_between(task, None)
                assert not _backend.anyio_shielded_between(task, shield)
        assert _backend.anyio_deadline(task) == (now + 1.0, None)
        assert not _backend.anyio_shielded_between(task, None)


@pytest.mark.parametrize("anyio_backend", ["asyncio"], indirect=True)
async def test_anyio_deadline_of_a_cancelled_scope_is_minus_infinity() -> None:
    """A cancelled scope on the way makes the deadline ``-inf`` (nothing left)."""
    task: Any = _backend.asyncio_current_task(asyncio.get_running_loop())
    with anyio.CancelScope() as scope:
        scope.cancel()
        assert _backend.anyio_deadline(task) == (-math.inf, None)


async def test_current_task_is_the_running_task() -> None:
    """`current_task()` names the running task on either backend."""
    task = _backend.current_task()
    assert task is not None
    if sniffio.current_async_library() == "asyncio":
        assert task is _backend.asyncio_current_task(asyncio.get_running_loop())
    else:
        assert task is _backend.trio_module().lowlevel.current_task()


def test_current_task_outside_any_loop_is_none() -> None:
    """Outside any event loop there is no current task."""
    assert _backend.running_loop() is None
    assert _backend.current_task() is None


# -- nobody else touches a backend -------------------------------------------------------------


def _backend_uses(tree: ast.AST) -> list[str]:
    """Each import of asyncio/trio/sniffio or of anyio internals, and each anyio-only attribute."""
    found: list[str] = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
            if node.module == "anyio":
                names += [f"anyio.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Attribute) and node.attr in ANYIO_PRIVATE_ATTRIBUTES:
            found.append(f"line {node.lineno}: .{node.attr}")
        for name in names:
            parts = name.split(".")
            private_anyio = parts[0] == "anyio" and any(p.startswith("_") for p in parts[1:])
            if parts[0] in BACKEND_MODULES or private_anyio:
                found.append(f"line {node.lineno}: import {name}")
    return found


def test_only_the_seam_and_the_allowlist_touch_a_backend() -> None:
    """No module outside the allowlist imports asyncio/trio/sniffio or uses anyio internals."""
    offenders: dict[str, list[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        if relative in BACKEND_ALLOWLIST:
            continue
        uses = _backend_uses(ast.parse(path.read_text(encoding="utf-8"), str(path)))
        if uses:
            offenders[relative] = uses
    assert not offenders, (
        "only asyncres/_backend.py may import asyncio/trio/sniffio or touch anyio internals; "
        f"ask the seam instead (or, for an asyncio-only adapter, allowlist it): {offenders}"
    )


def test_allowlist_names_only_modules_that_still_need_it() -> None:
    """Every allowlisted module exists and still uses a backend (so the list only shrinks)."""
    stale = []
    for relative in BACKEND_ALLOWLIST:
        path = PACKAGE / relative
        if not path.exists() or not _backend_uses(ast.parse(path.read_text(encoding="utf-8"))):
            stale.append(relative)
    assert not stale, f"drop these from BACKEND_ALLOWLIST, they no longer need it: {stale}"


def test_the_detector_sees_every_kind_of_backend_use() -> None:
    """The checker flags each way of reaching a backend, and leaves public anyio alone."""
    source = (
        "import asyncio\n"
        "import trio.lowlevel\n"
        "from sniffio import current_async_library\n"
        "from anyio._backends import _asyncio\n"
        "from anyio import _core\n"
        "x = scope._parent_scope\n"
        "import anyio, anyio.abc, anyio.lowlevel\n"
        "from anyio.abc import TaskGroup\n"
        "from anyio import CancelScope\n"
    )
    found = _backend_uses(ast.parse(source))
    assert sorted(int(entry.split()[1].rstrip(":")) for entry in found) == [1, 2, 3, 4, 5, 6]


# -- asyncio timers ---------------------------------------------------------------------


def _slots(handle: object) -> dict[str, object]:
    names = {
        name
        for cls in type(handle).__mro__
        for name in getattr(cls, "__slots__", ())
        if name != "__weakref__"
    }
    return {name: getattr(handle, name) for name in sorted(names)}


def _fired_and_cancelled(arm: Any, disarm: Any) -> tuple[list[str], int]:
    """Arm two timers, disarm the first; run past both: what fired, what the loop counted."""
    loop = asyncio.new_event_loop()
    fired: list[str] = []
    try:
        now = loop.time()
        first = arm(loop, now + 0.01, lambda: fired.append("first"))
        arm(loop, now + 0.02, lambda: fired.append("second"))
        disarm(first)
        counted = loop._timer_cancelled_count  # type: ignore[attr-defined]
        loop.run_until_complete(asyncio.sleep(0.05))
        return fired, counted
    finally:
        loop.close()


def test_this_pythons_timer_handle_has_the_slots_the_seam_fills() -> None:
    """Fails loudly on a Python whose TimerHandle changed (the seam then uses ``call_at``)."""
    assert _backend.timer_handle_slots() == _backend.TIMER_HANDLE_SLOTS, (
        "this Python's asyncio.TimerHandle has other slots than asyncres._backend.arm_timer "
        "fills: verify the new ones and update TIMER_HANDLE_SLOTS"
    )


def test_an_armed_timer_is_the_handle_call_at_would_make() -> None:
    """Every slot of `arm_timer`'s handle holds what ``loop.call_at`` puts there."""
    loop = asyncio.new_event_loop()
    try:
        context = contextvars.Context()

        def callback() -> None:
            pass

        ours = _backend.arm_timer(loop, 123.0, callback, context)
        theirs = loop.call_at(123.0, callback, context=context)
        assert type(ours) is type(theirs) is asyncio.TimerHandle
        assert _slots(ours) == _slots(theirs)
        assert ours in loop._scheduled  # type: ignore[attr-defined]
        _backend.disarm_timer(ours)
        theirs.cancel()
        assert _slots(ours) == _slots(theirs)  # cancelled alike
    finally:
        loop.close()


def test_disarming_does_what_cancel_does_and_the_loop_agrees() -> None:
    def public_arm(loop: Any, when: float, callback: Any) -> Any:
        return loop.call_at(when, callback)

    def seam_arm(loop: Any, when: float, callback: Any) -> Any:
        return _backend.arm_timer(loop, when, callback, contextvars.Context())

    public = _fired_and_cancelled(public_arm, lambda handle: handle.cancel())
    seam = _fired_and_cancelled(seam_arm, _backend.disarm_timer)
    assert public == seam == (["second"], 1)


def test_loops_that_schedule_their_own_way_get_the_public_calls() -> None:
    """A loop class overriding ``call_at``, or a loop in debug mode, is not bypassed."""
    calls: list[float] = []

    class Recording(asyncio.SelectorEventLoop):
        def call_at(self, when: float, callback: Any, *args: Any, **kwargs: Any) -> Any:
            calls.append(when)
            return super().call_at(when, callback, *args, **kwargs)

    for loop in (Recording(), asyncio.new_event_loop()):
        try:
            if not isinstance(loop, Recording):
                loop.set_debug(True)
            handle = _backend.arm_timer(loop, 5.0, lambda: None, contextvars.Context())
            _backend.disarm_timer(handle)
            assert handle.cancelled()
        finally:
            loop.close()
    assert calls == [5.0]


def test_disarming_a_plain_handle_cancels_it() -> None:
    """A deadline already due is a ``call_soon`` handle, not a timer: it is cancelled too."""
    loop = asyncio.new_event_loop()
    try:
        handle = loop.call_soon(lambda: None)
        _backend.disarm_timer(handle)
        assert handle.cancelled()
    finally:
        loop.close()


def test_an_unknown_timer_handle_shape_gets_the_public_calls(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Where TimerHandle's slots differ from the verified ones, every loop uses ``call_at``."""
    calls: list[float] = []

    class Recording(asyncio.SelectorEventLoop):
        pass

    def recording_call_at(self: Any, when: float, callback: Any, *args: Any, **kw: Any) -> Any:
        calls.append(when)
        return asyncio.BaseEventLoop.call_at(self, when, callback, *args, **kw)

    monkeypatch.setattr(_backend, "_KNOWN_TIMER_HANDLE", False)
    monkeypatch.setattr(_backend, "_plain_timer_loops", {})
    loop = Recording()
    try:
        # The class keeps BaseEventLoop's call_at: only the unknown shape sends it public.
        handle = _backend.arm_timer(loop, 7.0, lambda: None, contextvars.Context())
        assert _backend._plain_timer_loops == {Recording: False}
        monkeypatch.setattr(Recording, "call_at", recording_call_at, raising=False)
        _backend.arm_timer(loop, 8.0, lambda: None, contextvars.Context())
        _backend.disarm_timer(handle)
        assert handle.cancelled()
    finally:
        loop.close()
    assert calls == [8.0]
