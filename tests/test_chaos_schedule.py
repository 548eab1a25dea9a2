"""Schedule and Phase: faults over time, as a policy and as a switchboard; schedule files."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest

import asyncres
from asyncres.chaos import (
    FaultProxy,
    HttpStatusFault,
    InjectError,
    InjectLatency,
    InjectResult,
    LatencyToxic,
    Phase,
    PhaseStarted,
    Schedule,
    Switch,
)
from asyncres.testing import capture_events

pytestmark = pytest.mark.anyio


async def real() -> str:
    await anyio.lowlevel.checkpoint()
    return "real"


class Lamp:
    """A switchable object that records every change of its ``enabled`` flag."""

    def __init__(self) -> None:
        self.enabled = True
        self.log: list[tuple[float, bool]] = []

    def __setattr__(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)
        if name == "enabled" and hasattr(self, "log"):
            self.log.append((round(anyio.current_time(), 6), value))


def drill_schedule(spike: InjectLatency, burst: InjectResult) -> Schedule:
    return Schedule(
        [
            Phase("steady", seconds=5),
            Phase("latency spike", seconds=5, faults=[spike]),
            Phase("error burst", seconds=5, faults=[burst]),
            Phase("recovery", seconds=5),
        ]
    )


async def test_as_a_policy_each_call_meets_the_current_phase() -> None:
    """Calls run through the faults of the phase in force at that moment, then none."""
    schedule = drill_schedule(InjectLatency(0.5), InjectResult("503"))
    start = anyio.current_time()
    seen: list[tuple[float, str, float]] = []
    for at in (0, 4, 6, 11, 14, 16, 25):
        await anyio.sleep(start + at - anyio.current_time())
        before = anyio.current_time()
        result = await schedule.call(real)
        seen.append((at, result, round(anyio.current_time() - before, 3)))
    assert seen == [
        (0, "real", 0.0),
        (4, "real", 0.0),
        (6, "real", 0.5),
        (11, "503", 0.0),
        (14, "503", 0.0),
        (16, "real", 0.0),
        (25, "real", 0.0),  # after the last phase: no fault
    ]


async def test_phase_lookup_and_timeline() -> None:
    """phase_at, current, duration and timeline describe the plan."""
    schedule = drill_schedule(InjectLatency(0.5), InjectResult("503"))
    assert schedule.duration == 20.0
    assert [(a, b, p.name) for a, b, p in schedule.timeline] == [
        (0.0, 5.0, "steady"),
        (5.0, 10.0, "latency spike"),
        (10.0, 15.0, "error burst"),
        (15.0, 20.0, "recovery"),
    ]
    assert schedule.phase_at(-1) is None
    assert schedule.phase_at(5.0).name == "latency spike"  # type: ignore[union-attr]
    assert schedule.phase_at(20.0) is None
    assert schedule.current() is None
    assert not schedule.started
    schedule.start()
    await anyio.sleep(7)
    assert schedule.current().name == "latency spike"  # type: ignore[union-attr]
    assert schedule.elapsed() == pytest.approx(7.0)


async def test_tuples_with_gaps_become_quiet_phases() -> None:
    """(start, end, faults) tuples are absolute; a gap becomes a phase without faults."""
    error = InjectError(ConnectionError)
    schedule = Schedule([(0, 5, None), (5, 10, InjectLatency(0.2)), (12, 15, [error])])
    assert [(p.name, p.seconds, len(p.faults)) for p in schedule.phases] == [
        ("0-5s", 5.0, 0),
        ("5-10s", 5.0, 1),
        ("10-12s", 2.0, 0),
        ("12-15s", 3.0, 1),
    ]
    with pytest.raises(ValueError, match="starts before the previous phase ends"):
        Schedule([(0, 5, None), (4, 6, None)])
    with pytest.raises(ValueError, match="ends before it starts"):
        Schedule([(3, 3, None)])


async def test_repeat_loops_the_phases() -> None:
    """With repeat=True the schedule starts over after its last phase."""
    schedule = Schedule(
        [Phase("calm", seconds=1), Phase("storm", seconds=1, faults=[InjectResult("x")])],
        repeat=True,
    )
    start = anyio.current_time()
    results = []
    for at in (0.5, 1.5, 2.5, 3.5, 100.5, 101.5):
        await anyio.sleep(start + at - anyio.current_time())
        results.append(await schedule.call(real))
    assert results == ["real", "x", "real", "x", "real", "x"]


async def test_phase_started_events_once_per_phase() -> None:
    """Each phase is announced once, when the first call (or run) notices it."""
    schedule = Schedule(
        [Phase("a", seconds=1), Phase("b", seconds=1), Phase("c", seconds=1)], name="drill"
    )
    with capture_events() as events:
        for _ in range(3):
            await schedule.call(real)
        await anyio.sleep(2.5)
        await schedule.call(real)
    assert events == [PhaseStarted("drill", 0, "a", 0.0), PhaseStarted("drill", 2, "c", 2.0)]


async def test_run_switches_faults_phase_by_phase_and_off_at_the_end() -> None:
    """run() turns each switchable on during its phases only, and everything off after."""
    lamp_a, lamp_b = Lamp(), Lamp()
    schedule = Schedule(
        [
            Phase("quiet", seconds=2),
            Phase("a", seconds=2, faults=[lamp_a]),
            Phase("a+b", seconds=2, faults=[lamp_a, lamp_b]),
            Phase("b", seconds=2, faults=[lamp_b]),
        ]
    )
    start = anyio.current_time()
    with capture_events() as events:
        await schedule.run()
    assert anyio.current_time() - start == pytest.approx(8.0)
    relative_a = [(round(t - start, 6), on) for t, on in lamp_a.log]
    relative_b = [(round(t - start, 6), on) for t, on in lamp_b.log]
    assert relative_a == [(0.0, False), (2.0, True), (6.0, False)]
    assert relative_b == [(0.0, False), (4.0, True), (8.0, False)]
    assert [e.phase for e in events] == ["quiet", "a", "a+b", "b"]  # type: ignore[attr-defined]


async def test_run_cancelled_turns_everything_off() -> None:
    """Cancelling run() mid-phase switches its faults off; the cancellation propagates."""
    lamp = Lamp()
    schedule = Schedule([Phase("on", seconds=10, faults=[lamp])])
    async with anyio.create_task_group() as tg:
        await tg.start(schedule.run)
        assert lamp.enabled is True
        await anyio.sleep(3)
        tg.cancel_scope.cancel()
    assert lamp.enabled is False


async def test_run_and_call_share_the_clock() -> None:
    """A schedule used as a policy and run() at once agree on the phase."""
    fault = InjectResult("fake")
    schedule = Schedule([Phase("calm", seconds=1), Phase("fault", seconds=1, faults=[fault])])
    results = []
    async with anyio.create_task_group() as tg:
        await tg.start(schedule.run)
        assert fault.enabled is False  # run() switched it off for the calm phase
        results.append(await schedule.call(real))
        await anyio.sleep(1.5)
        assert fault.enabled is True
        results.append(await schedule.call(real))
    assert results == ["real", "fake"]
    assert fault.enabled is False


async def test_switch_runs_callbacks_only_on_change() -> None:
    """A Switch calls on/off when its state changes, not when set to the same value."""
    log: list[str] = []
    switch = Switch(on=lambda: log.append("on"), off=lambda: log.append("off"), name="x")
    switch.enabled = False
    switch.enabled = True
    switch.enabled = True
    switch.enabled = False
    assert log == ["on", "off"]
    assert repr(switch) == "Switch('x', enabled=False)"


def test_phase_and_schedule_validation() -> None:
    """Bad phases are refused with the parameter named."""
    with pytest.raises(ValueError, match="`seconds` must be > 0"):
        Phase("x", seconds=0)
    with pytest.raises(ValueError, match="`name` must be a non-empty string"):
        Phase("", seconds=1)
    with pytest.raises(ValueError, match="`faults` must be policies or objects"):
        Phase("x", seconds=1, faults=[42])
    with pytest.raises(ValueError, match="only the last phase may last forever"):
        Schedule([Phase("x", seconds=math.inf), Phase("y", seconds=1)])
    with pytest.raises(ValueError, match="`phases` must hold at least one phase"):
        Schedule([])
    with pytest.raises(ValueError, match="cannot repeat"):
        Schedule([Phase("x", seconds=math.inf)], repeat=True)


async def test_an_endless_last_phase_stays_on() -> None:
    """A last phase of infinite length keeps its faults for good."""
    schedule = Schedule(
        [Phase("warm-up", seconds=1), Phase("broken", seconds=math.inf, faults=[InjectResult("x")])]
    )
    await schedule.call(real)
    await anyio.sleep(10_000)
    assert await schedule.call(real) == "x"


SCHEDULE_TOML = """
name = "checkout drill"
seed = 7

[[phases]]
name = "steady"
seconds = "2s"

[[phases]]
name = "latency spike"
seconds = 2
faults = [{ kind = "latency", seconds = "200ms", jitter = "50ms" }]

[[phases]]
name = "error burst"
seconds = "2s"
faults = [
    { kind = "http_status", status = 503, retry_after = "1s", rate = 0.5, attach = "http" },
    { kind = "error", error = "ConnectionError", message = "boom", rate = 0.5 },
]

[[phases]]
name = "slow network"
seconds = "2s"
faults = [{ kind = "toxic", type = "latency", latency = "100ms", attach = "db" }]

[[phases]]
name = "hard outage"
seconds = "2s"
faults = ["outage"]

[[phases]]
name = "recovery"
seconds = "2s"
"""


class Collector:
    """A target with add(), like ChaosTransport and FaultProxy."""

    def __init__(self) -> None:
        self.added: list[Any] = []

    def add(self, fault: Any) -> Any:
        self.added.append(fault)
        return fault


async def test_from_toml_builds_the_drill_story(tmp_path: Path) -> None:
    """A TOML schedule becomes phases of real faults, attached to their targets."""
    path = tmp_path / "drill.toml"
    path.write_text(SCHEDULE_TOML)
    http = Collector()
    proxy = FaultProxy(upstream=("127.0.0.1", 9))
    schedule = Schedule.from_toml(path, targets={"http": http, "db": proxy, "outage": proxy.outage})
    assert schedule.name == "checkout drill"
    assert [p.name for p in schedule.phases] == [
        "steady",
        "latency spike",
        "error burst",
        "slow network",
        "hard outage",
        "recovery",
    ]
    assert schedule.duration == 12.0
    spike = schedule.phases[1].faults[0]
    assert isinstance(spike, InjectLatency)
    assert (spike.seconds, spike.jitter) == (0.2, 0.05)
    status, error = schedule.phases[2].faults
    assert isinstance(status, HttpStatusFault)
    assert (status.status, status.retry_after, status.rate) == (503, 1.0, 0.5)
    assert http.added == [status]
    assert status.enabled is False  # attached switched off
    assert isinstance(error, InjectError)
    toxic = schedule.phases[3].faults[0]
    assert isinstance(toxic, LatencyToxic)
    assert proxy.toxics == (toxic,)
    assert schedule.phases[4].faults == (proxy.outage,)


async def test_a_seeded_schedule_replays_exactly() -> None:
    """Two schedules from the same data and seed inject the same faults on the same calls."""
    data = {
        "phases": [
            {
                "name": "burst",
                "seconds": 10,
                "faults": [{"kind": "result", "value": "x", "rate": 0.5}],
            }
        ]
    }

    async def outcomes(schedule: Schedule) -> list[str]:
        return [await schedule.call(real) for _ in range(100)]

    first = await outcomes(Schedule.from_dict(data, seed=11))
    second = await outcomes(Schedule.from_dict(data, seed=11))
    other = await outcomes(Schedule.from_dict(data, seed=12))
    assert first == second != other


def test_from_dict_reports_mistakes_with_their_place() -> None:
    """Unknown kinds, targets and options are refused, saying which phase and fault."""
    with pytest.raises(ValueError, match=r"phase 1 \(a\) fault 1: `kind` must be one of"):
        Schedule.from_dict({"phases": [{"name": "a", "seconds": 1, "faults": [{"kind": "x"}]}]})
    with pytest.raises(ValueError, match="unknown target 'db' \\(known: none\\)"):
        Schedule.from_dict({"phases": [{"seconds": 1, "faults": ["db"]}]})
    with pytest.raises(ValueError, match="phase 1 \\(phase 1\\) fault 1 \\(latency\\):"):
        Schedule.from_dict({"phases": [{"seconds": 1, "faults": [{"kind": "latency", "secs": 1}]}]})
    with pytest.raises(ValueError, match="`seconds` is required"):
        Schedule.from_dict({"phases": [{"name": "a"}]})
    with pytest.raises(ValueError, match="unknown keys \\['rate'\\]"):
        Schedule.from_dict({"phases": [{"seconds": 1}], "rate": 3})
    with pytest.raises(ValueError, match="cannot find an exception named 'NoSuchError'"):
        Schedule.from_dict(
            {"phases": [{"seconds": 1, "faults": [{"kind": "error", "error": "NoSuchError"}]}]}
        )
    with pytest.raises(ValueError, match="`attach` must name a target with add"):
        Schedule.from_dict(
            {"phases": [{"seconds": 1, "faults": [{"kind": "http_status", "attach": "nope"}]}]}
        )


def test_from_dict_accepts_custom_makers_and_dotted_exception_names() -> None:
    """makers= adds fault kinds; error= may name any importable exception."""
    made: list[dict[str, Any]] = []

    def make_db_slowdown(**options: Any) -> InjectLatency:
        made.append(options)
        return InjectLatency(options["seconds"])

    schedule = Schedule.from_dict(
        {
            "phases": [
                {
                    "seconds": 1,
                    "faults": [
                        {"kind": "db_slow", "seconds": 0.3},
                        {"kind": "error", "error": "asyncres.RejectedError", "message": "no"},
                    ],
                }
            ]
        },
        makers={"db_slow": make_db_slowdown},
    )
    assert made == [{"seconds": 0.3}]
    error = schedule.phases[0].faults[1]
    assert isinstance(error, InjectError)
    assert isinstance(error._make(), asyncres.RejectedError)
    assert str(error._make()) == "no"
    with pytest.raises(ValueError, match="cannot be built from a message"):
        Schedule.from_dict(
            {
                "phases": [
                    {
                        "seconds": 1,
                        "faults": [
                            {"kind": "error", "error": "asyncres.CircuitOpenError", "message": "x"}
                        ],
                    }
                ]
            }
        )


async def test_restarting_forgets_the_phase_found_last() -> None:
    """start() again begins a new run from the first phase, announced again."""
    schedule = Schedule(
        [Phase("calm", seconds=1), Phase("storm", seconds=1, faults=[InjectResult("x")])]
    )
    with capture_events() as events:
        assert await schedule.call(real) == "real"
        await anyio.sleep(1.5)
        assert await schedule.call(real) == "x"
        schedule.start()
        assert await schedule.call(real) == "real"
    phases = [e.phase for e in events if isinstance(e, PhaseStarted)]
    assert phases == ["calm", "storm", "calm"]


async def test_a_schedule_started_in_the_future_is_quiet_until_then() -> None:
    """start(at=later): calls before that moment meet no fault."""
    schedule = Schedule([Phase("storm", seconds=1, faults=[InjectResult("x")])])
    schedule.start(at=anyio.current_time() + 5)
    assert await schedule.call(real) == "real"
    assert schedule.current() is None
    await anyio.sleep(5.5)
    assert await schedule.call(real) == "x"
    await anyio.sleep(1)
    assert await schedule.call(real) == "real"


async def test_several_policies_in_one_phase_run_in_list_order() -> None:
    """A phase with two policies wraps them like a Pipeline, first outermost."""
    schedule = Schedule(
        [Phase("both", seconds=10, faults=[InjectLatency(1.0), InjectResult("late")])]
    )
    start = anyio.current_time()
    assert await schedule.call(real) == "late"
    assert anyio.current_time() - start == pytest.approx(1.0)
