"""Schedules: faults that turn on and off over time, in named phases.

A `Schedule` is a list of `Phase` objects, each lasting ``seconds`` and listing the faults that
are on during it. It drives faults in two ways, which can be combined:

- as a policy (innermost in a `Pipeline`): each call runs through the injection policies of
  the phase current at that moment (no task needed; virtual clocks work);
- with ``await schedule.run()`` (in a task group): at each phase boundary it sets
  ``enabled`` on every *switchable* fault of the schedule — an HTTP fault of a
  `ChaosTransport`, a toxic or the `outage` switch of a `FaultProxy`, any object with an
  ``enabled`` attribute — on for the current phase, off for the others, and off at the end.
"""

from __future__ import annotations

import bisect
import math
import os
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, ParamSpec, TypeVar

import anyio
from anyio.abc import TaskStatus

from .. import _validation
from .._clock import current_time, resolve_clock
from .._events import Listener, emit
from .._policy import PolicyFaces
from .._setting import Setting
from ._events import PhaseStarted
from ._loaders import load_schedule_data, read_toml
from ._phase import Phase
from ._switch import check_bool

__all__ = ["PhaseSpec", "Schedule"]

T = TypeVar("T")
P = ParamSpec("P")


PhaseSpec = Phase | tuple[float, float, object]


class Schedule(PolicyFaces):
    """Faults that turn on and off over time: phases, one after another.

    ``phases`` are `Phase` objects, each starting where the previous one ends, or
    ``(start, end, faults)`` tuples in seconds from the start (``faults``: one fault, a
    list, or ``None``); a gap between tuples becomes a quiet phase. The drill's story reads::

        Schedule([
            Phase("steady", seconds=5),
            Phase("latency spike", seconds=5, faults=[InjectLatency(0.2)]),
            Phase("error burst", seconds=5, faults=[http_503]),
            Phase("hard outage", seconds=8, faults=[proxy.outage]),
            Phase("recovery", seconds=10),
        ])

    Time starts at `start()`, or at the first call or `run()`. After the last phase no
    fault is on, unless ``repeat=True`` (the phases then loop forever). Emits
    `PhaseStarted` when a phase begins (noticed by `run()` or by the first call in it).
    """

    __slots__ = (
        "_announced",
        "_clock",
        "_ends",
        "_listeners",
        "_name",
        "_origin",
        "_phases",
        "_repeat",
        "_starts",
        "_switches",
        "_total",
        "_window_call",
        "_window_end",
        "_window_start",
    )

    __module__ = "asyncres.chaos"

    phases: Setting[tuple[Phase, ...]] = Setting()
    repeat: Setting[bool] = Setting()
    name: Setting[str | None] = Setting()

    def __init__(
        self,
        phases: Iterable[PhaseSpec],
        *,
        repeat: bool = False,
        name: str | None = None,
        listeners: Iterable[Listener] = (),
    ) -> None:
        self._phases = _build_phases(phases)
        if not self._phases:
            raise ValueError("`phases` must hold at least one phase")
        for phase in self._phases[:-1]:
            if math.isinf(phase._seconds):
                raise ValueError(f"`phases`: only the last phase may last forever ({phase!r})")
        self._repeat = check_bool("repeat", repeat)
        starts: list[float] = []
        ends: list[float] = []
        at = 0.0
        for phase in self._phases:
            starts.append(at)
            at += phase._seconds
            ends.append(at)
        if self._repeat and math.isinf(at):
            raise ValueError("`repeat`: a schedule with an endless phase cannot repeat")
        self._starts = tuple(starts)
        self._ends = tuple(ends)
        self._total = at
        switches: dict[int, object] = {}
        for phase in self._phases:
            for switch in phase._switches:
                switches.setdefault(id(switch), switch)
        self._switches = tuple(switches.values())
        self._name = name
        self._listeners = tuple(listeners)
        self._origin: float | None = None
        self._announced: tuple[int, int] | None = None
        self._clock: Callable[[], float] = current_time
        self._forget_window()

    def __repr__(self) -> str:
        repeat = ", repeat=True" if self._repeat else ""
        name = f", name={self._name!r}" if self._name else ""
        return f"Schedule({list(self._phases)!r}{repeat}{name})"

    @property
    def duration(self) -> float:
        """Seconds from the start to the end of the last phase (one round if repeating)."""
        return self._total

    @property
    def timeline(self) -> tuple[tuple[float, float, Phase], ...]:
        """``(start, end, phase)`` for each phase, in seconds from the start (for charts)."""
        return tuple(zip(self._starts, self._ends, self._phases, strict=True))

    @property
    def started(self) -> bool:
        """Whether the schedule's clock has started."""
        return self._origin is not None

    def start(self, at: float | None = None) -> None:
        """Start (or restart) the schedule's clock now, or at loop time ``at``.

        Several schedules started with the same ``at`` stay in step.
        """
        self._clock = resolve_clock()
        self._origin = self._clock() if at is None else float(at)
        self._announced = None
        self._forget_window()

    def _forget_window(self) -> None:
        # The loop-time window in which the phase found last is still in force.
        self._window_start = math.inf
        self._window_end = -math.inf
        self._window_call: Callable[..., Awaitable[Any]] | None = None

    def elapsed(self) -> float:
        """Seconds since the schedule started (0 before it has)."""
        if self._origin is None:
            return 0.0
        return current_time() - self._origin

    def phase_at(self, elapsed: float) -> Phase | None:
        """The phase in force ``elapsed`` seconds after the start (``None`` outside)."""
        located = self._locate(elapsed)
        return None if located is None else self._phases[located[1]]

    def current(self) -> Phase | None:
        """The phase in force now (``None`` before the start or after the last phase)."""
        if self._origin is None:
            return None
        return self.phase_at(current_time() - self._origin)

    def _locate(self, elapsed: float) -> tuple[int, int] | None:
        """``(round, index)`` of the phase at ``elapsed``, or ``None`` outside the schedule."""
        if elapsed < 0.0:
            return None
        rounds = 0.0
        if elapsed >= self._total:
            if not self._repeat:
                return None
            rounds, elapsed = divmod(elapsed, self._total)
        return int(rounds), bisect.bisect_right(self._ends, elapsed)

    def _announce(self, located: tuple[int, int]) -> None:
        if located != self._announced:
            self._announced = located
            index = located[1]
            emit(
                self._listeners,
                PhaseStarted(self._name, index, self._phases[index]._name, self._starts[index]),
            )

    async def call(self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``await fn(*args, **kwargs)`` through the current phase's injection policies."""
        now = self._clock()
        if self._window_start <= now < self._window_end:
            call = self._window_call
        else:
            call = self._enter_window(now)
        if call is None:
            return await fn(*args, **kwargs)
        result: T = await call(fn, *args, **kwargs)
        return result

    def _enter_window(self, now: float) -> Callable[..., Awaitable[Any]] | None:
        """Find the phase at loop time ``now``, announce it, and remember its time window."""
        if self._origin is None:
            self.start()
            now = self._clock()
        origin = self._origin
        assert origin is not None
        located = self._locate(now - origin)
        if located is None:
            if now < origin:
                self._window_start, self._window_end = -math.inf, origin
            else:
                self._window_start, self._window_end = origin + self._total, math.inf
            self._window_call = None
            return None
        rounds, index = located
        offset = origin + rounds * self._total
        self._window_start = offset + self._starts[index]
        self._window_end = offset + self._ends[index]
        self._window_call = self._phases[index]._call
        self._announce(located)
        return self._window_call

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Switch the schedule's switchable faults phase by phase; return after the last.

        Starts the clock if no call has. Every switchable fault is off before the first
        phase, on during its phases, and off again when the schedule ends or this task is
        cancelled. With ``repeat=True`` it runs until cancelled. In a task group,
        ``await tg.start(schedule.run)`` returns once the first phase is switched on.
        """
        if self._origin is None:
            self.start()
        origin = self._origin
        assert origin is not None
        switches = self._switches
        started = False
        try:
            for switch in switches:
                _set(switch, False)
            while True:
                now = current_time()
                located = self._locate(now - origin)
                if located is None and now - origin >= 0.0:
                    break  # past the last phase
                if located is None:
                    wake = origin  # not started yet
                    active: tuple[object, ...] = ()
                else:
                    rounds, index = located
                    wake = origin + rounds * self._total + self._ends[index]
                    active = self._phases[index]._switches
                self._switch(active)
                if located is not None:
                    self._announce(located)
                if not started:
                    started = True
                    task_status.started()
                await anyio.sleep(max(0.0, wake - current_time()))
        finally:
            for switch in switches:
                _set(switch, False)
        if not started:
            task_status.started()

    def _switch(self, active: tuple[object, ...]) -> None:
        on = {id(switch) for switch in active}
        for switch in self._switches:  # off first, so that faults never overlap
            if id(switch) not in on:
                _set(switch, False)
        for switch in active:
            _set(switch, True)

    @classmethod
    def from_dict(
        cls,
        data: Mapping[str, Any],
        *,
        targets: Mapping[str, object] | None = None,
        makers: Mapping[str, Callable[..., object]] | None = None,
        seed: int | None = None,
        listeners: Iterable[Listener] = (),
    ) -> Schedule:
        """Build a schedule from plain data (a parsed TOML or JSON document).

        ``data`` has ``phases`` (a list of tables with ``name``, ``seconds`` and ``faults``)
        and optionally ``name``, ``repeat`` and ``seed``. Durations are numbers of seconds
        or strings such as ``"200ms"``. Each fault is either

        - a string: the name of an object in ``targets`` (e.g. ``"outage"`` for a
          `FaultProxy`'s outage switch), or
        - a table with ``kind`` and that kind's options, built by ``makers[kind]``. Built
          in: ``error`` (``error = "ConnectionError"`` or a dotted name, ``message``),
          ``latency``, ``result`` (the injection policies), ``http_status``,
          ``http_latency``, ``http_disconnect``, ``http_truncate`` (the HTTP faults) and
          ``toxic`` (``type = "latency"`` etc., Toxiproxy's names); ``makers`` adds kinds.
          With ``attach = "<target>"`` the fault is added (switched off) to that target's
          ``add()`` — a `ChaosTransport` or a `FaultProxy` — and `run()` switches it.

        ``seed`` (or the data's ``seed``) seeds each built-in injection policy that has no
        seed of its own, differently per fault, so a schedule replays exactly.
        """
        loaded = load_schedule_data(data, targets=targets, makers=makers, seed=seed)
        return cls(loaded.phases, repeat=loaded.repeat, name=loaded.name, listeners=listeners)

    @classmethod
    def from_toml(
        cls,
        path: str | os.PathLike[str],
        *,
        targets: Mapping[str, object] | None = None,
        makers: Mapping[str, Callable[..., object]] | None = None,
        seed: int | None = None,
        listeners: Iterable[Listener] = (),
    ) -> Schedule:
        """`from_dict` on a TOML file (top-level ``[[phases]]`` tables)."""
        data = read_toml(path)
        return cls.from_dict(data, targets=targets, makers=makers, seed=seed, listeners=listeners)


def _set(switch: Any, enabled: bool) -> None:
    """Set ``enabled`` only when it changes (switches may have side effects)."""
    if switch.enabled != enabled:
        switch.enabled = enabled


def _build_phases(specs: Iterable[PhaseSpec]) -> tuple[Phase, ...]:
    if isinstance(specs, str | bytes | Mapping):
        raise ValueError(f"`phases` must be a list of phases, got {specs!r}")
    phases: list[Phase] = []
    at = 0.0
    for spec in specs:
        if isinstance(spec, Phase):
            phases.append(spec)
            at += spec._seconds
            continue
        if not (isinstance(spec, tuple) and len(spec) == 3):
            raise ValueError(f"`phases` items must be Phase or (start, end, faults), got {spec!r}")
        start, end, faults = spec
        start = _validation.non_negative("phases", start)
        end = _validation.non_negative("phases", end)
        if end <= start:
            raise ValueError(f"`phases`: {spec!r} ends before it starts")
        if start < at - 1e-9:
            raise ValueError(f"`phases`: {spec!r} starts before the previous phase ends ({at:g})")
        if start > at + 1e-9:
            phases.append(Phase(f"{at:g}-{start:g}s", seconds=start - at))
        if faults is None:
            items: tuple[object, ...] = ()
        elif isinstance(faults, list | tuple):
            items = tuple(faults)
        else:
            items = (faults,)
        phases.append(Phase(f"{start:g}-{end:g}s", seconds=end - start, faults=items))
        at = end
    return tuple(phases)
