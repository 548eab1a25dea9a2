"""asyncres drill: its chaos.Schedule (fault kinds, TOML, the old format), end to end."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import struct
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from asyncres import chaos, drill
from asyncres.drill import (
    Brownout,
    DrillOptions,
    ErrorBurst,
    Latency,
    Outage,
    Overload,
    SlowDatabase,
    ZoneOutage,
    default_schedule,
    load_schedule,
    schedule_from_dict,
)
from asyncres.drill._metrics import judged_until
from asyncres.drill._run import _FaultBoard, _run_schedule
from asyncres.drill._service import ServiceFaults

ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args: str, timeout: float = 90) -> tuple[subprocess.CompletedProcess[str], float]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    start = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "asyncres.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=ROOT,
    )
    return result, time.monotonic() - start


def assert_png(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG file"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert width > 300
    assert height > 300
    assert data.rstrip(b"\x00").endswith(b"IEND\xaeB`\x82")
    return width, height


def phase_faults(schedule: chaos.Schedule) -> list[tuple[str, float, tuple[object, ...]]]:
    return [(phase.name, phase.seconds, phase.faults) for _, _, phase in schedule.timeline]


def test_default_schedules_fit_the_time_limits() -> None:
    """The full drill's traffic fits 70 s with its grace period, --quick fits 40 s."""
    full, quick = default_schedule(), default_schedule(quick=True)
    assert isinstance(full, chaos.Schedule)
    names = [phase.name for _, _, phase in full.timeline]
    assert names == [
        "steady",
        "latency spike",
        "zone outage",
        "error burst",
        "random brownout",
        "overload brownout",
        "hard outage",
        "slow database",
        "recovery",
    ]
    assert [phase.name for _, _, phase in quick.timeline] == names
    assert full.duration == 62.0
    assert quick.duration == 37.0
    assert full.duration + 8.0 <= 70.0
    assert quick.duration + 2.0 <= 40.0
    assert full.timeline[2][:2] == (10.0, 16.0)
    assert full.phases[1].faults == (Latency(0.25, jitter=0.1),)
    assert full.phases[2].faults == (ZoneOutage("c"),)
    assert full.phases[3].faults == (ErrorBurst(1.0, retry_after=1),)
    assert full.phases[4].faults == (Brownout(0.5),)
    assert full.phases[5].faults == (Overload(0.5),)
    assert full.phases[6].faults == (Outage(),)
    assert full.phases[7].faults == (SlowDatabase(1.5),)
    assert full.phases[0].faults == full.phases[8].faults == ()


def test_example_schedule_file_is_the_default_schedule() -> None:
    """examples/drill_schedule.toml reads back as exactly the built-in schedule."""
    loaded = load_schedule(ROOT / "examples" / "drill_schedule.toml")
    assert phase_faults(loaded) == phase_faults(default_schedule())
    assert loaded.timeline == default_schedule().timeline


def test_schedule_files_use_the_chaos_format(tmp_path: Path) -> None:
    """A drill schedule is a chaos.Schedule TOML with the drill's fault kinds."""
    path = tmp_path / "gameday.toml"
    path.write_text(
        '[[phases]]\nname = "calm"\nseconds = 2\n\n'
        '[[phases]]\nname = "down"\nseconds = "3s"\nfaults = ["outage"]\n\n'
        '[[phases]]\nname = "down again"\nseconds = 1\nfaults = [{ kind = "outage" }]\n\n'
        '[[phases]]\nname = "slow"\nseconds = "1500ms"\n'
        'faults = [{ kind = "latency", seconds = "200ms", jitter = "50ms" },\n'
        '  { kind = "error_burst", period = "500ms", retry_after = 2 },\n'
        '  { kind = "slow_db", seconds = 0.25 }]\n'
    )
    schedule = load_schedule(path)
    assert schedule.duration == 7.5
    assert phase_faults(schedule) == [
        ("calm", 2.0, ()),
        ("down", 3.0, (Outage(),)),
        ("down again", 1.0, (Outage(),)),
        (
            "slow",
            1.5,
            (Latency(0.2, jitter=0.05), ErrorBurst(0.5, retry_after=2), SlowDatabase(0.25)),
        ),
    ]
    # The same file through chaos.Schedule's own loader and the drill's makers.
    from asyncres.drill._faults import MAKERS

    same = chaos.Schedule.from_toml(path, makers=MAKERS, targets={"outage": Outage()})
    assert phase_faults(same) == phase_faults(schedule)
    faults = [fault for _, _, phase in schedule.timeline for fault in phase.faults]
    assert all(isinstance(fault, drill.DrillFault) and not fault.enabled for fault in faults)


def _one_phase(*faults: object, **phase: Any) -> dict[str, Any]:
    return {"phases": [{"name": "p", "seconds": 1, **phase, "faults": list(faults)}]}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({}, "`phases` must be a non-empty list"),
        ({"phases": [{"name": "p"}]}, "`seconds` is required"),
        ({"phases": [{"name": "p", "seconds": "soon"}]}, "`seconds` must be a duration"),
        ({"phases": [{"name": "p", "seconds": -1}]}, "`seconds` must be >= 0"),
        ({"phases": [{"name": "p", "seconds": 1, "bogus": 1}]}, r"unknown keys \['bogus'\]"),
        ({"phases": [{"name": "p", "seconds": 1}], "seed": 3}, "`seed`"),
        ({"phases": [{"name": "p", "seconds": 1}], "repeat": True}, "`repeat`"),
        (
            _one_phase({"kind": "jam"}),
            r"fault 1: `kind` must be one of \['brownout', 'error_burst'",
        ),
        (_one_phase({"seconds": 1}), "`kind` must be one of"),
        (_one_phase({"kind": "http_status", "status": 503}), "`kind` must be one of"),
        (_one_phase({"kind": "latency"}), r"\(latency\): `seconds` is required"),
        (_one_phase({"kind": "latency", "seconds": "fast"}), "`seconds` must be a duration"),
        (_one_phase({"kind": "latency", "seconds": 0}), "`seconds` must be > 0"),
        (_one_phase({"kind": "latency", "seconds": 1, "jitter": "x"}), "`jitter` must be a"),
        (_one_phase({"kind": "latency", "seconds": 1, "seed": 1}), r"unknown keys \['seed'\]"),
        (_one_phase({"kind": "error_burst"}), "`period` is required"),
        (_one_phase({"kind": "error_burst", "period": "0s"}), "`period` must be > 0"),
        (_one_phase({"kind": "error_burst", "period": 1, "retry_after": "1.5s"}), "`retry_after`"),
        (_one_phase({"kind": "slow_db", "seconds": -2}), "`seconds` must be >= 0"),
        (_one_phase({"kind": "outage", "seconds": 1}), r"\(outage\): unknown keys"),
        (_one_phase("proxy"), "unknown target 'proxy'"),
        (_one_phase(7), "must be a target name or a table"),
        (_one_phase("outage", {"kind": "outage"}), "at most one `outage`"),
        (
            {"phases": [{"name": "p", "seconds": 1}, {"name": "p", "seconds": 1}]},
            "phase names must be unique",
        ),
    ],
)
def test_bad_schedules_raise_value_errors_naming_the_key(
    data: dict[str, Any], message: str
) -> None:
    """Mistakes in a schedule raise ValueError naming the key (and the phase) at fault."""
    with pytest.raises(ValueError, match=message):
        schedule_from_dict(data)


def test_old_format_still_reads_with_a_warning_showing_the_new_toml(tmp_path: Path) -> None:
    """A `[[phase]]` file still loads; the warning holds the same schedule in the new format."""
    path = tmp_path / "old.toml"
    path.write_text(
        '[[phase]]\nname = "calm"\nduration = 2\n\n'
        '[[phase]]\nname = "down"\nduration = 3\noutage = true\n\n'
        '[[phase]]\nname = "slow"\nduration = 1.5\nlatency = 0.2\njitter = 0.05\n'
        "error_period = 1\nretry_after = 2\nslow_db = 0.5\n\n"
        '[[phase]]\nname = "quiet"\nduration = 1\nlatency = 0\noutage = false\n'
    )
    with pytest.warns(DeprecationWarning, match=r"\[\[phase\]\]. format .* deprecated") as caught:
        schedule = load_schedule(path)
    assert phase_faults(schedule) == [
        ("calm", 2.0, ()),
        ("down", 3.0, (Outage(),)),
        (
            "slow",
            1.5,
            (Latency(0.2, jitter=0.05), ErrorBurst(1.0, retry_after=2), SlowDatabase(0.5)),
        ),
        ("quiet", 1.0, ()),
    ]
    message = str(caught[0].message)
    assert caught[0].filename == __file__  # points at the caller
    new_toml = message[message.index("\n\n[[phases]]") :]
    assert "duration" not in new_toml
    assert 'faults = ["outage"]' in new_toml
    converted = tmp_path / "new.toml"
    converted.write_text(new_toml)
    assert phase_faults(load_schedule(converted)) == phase_faults(schedule)  # no warning now


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"phase": []}, "`phase` must be a non-empty array"),
        ({"phase": [{"name": "x"}]}, "phase[0].duration"),
        ({"phase": [{"duration": -1}]}, "phase[0].duration"),
        ({"phase": [{"duration": 1, "latency": -0.1}]}, "phase[0].latency"),
        ({"phase": [{"duration": 1, "retry_after": 1.5}]}, "phase[0].retry_after"),
        ({"phase": [{"duration": 1, "outage": "yes"}]}, "phase[0].outage"),
        ({"phase": [{"duration": 1, "bogus": 1}]}, "unknown keys"),
        ({"phase": [{"name": "", "duration": 1}]}, "phase[0].name"),
    ],
)
def test_old_format_mistakes_still_name_the_key(data: dict[str, Any], message: str) -> None:
    """The old format keeps its validation: the offending key is in the message."""
    with pytest.raises(ValueError, match=re.escape(message)):
        schedule_from_dict(data)


@pytest.mark.parametrize(
    "name",
    [
        "DrillConfig",
        "Faults",
        "PhaseSpec",
        "Scenario",
        "default_scenario",
        "load_scenario",
        "scenario_from_dict",
    ],
)
def test_old_names_warn_on_access(name: str) -> None:
    """Each old public name of asyncres.drill still resolves, with a DeprecationWarning."""
    with pytest.warns(DeprecationWarning, match=f"asyncres.drill.{name} is deprecated.*0.3"):
        value = getattr(drill, name)
    assert callable(value)
    assert name not in drill.__all__
    with pytest.raises(AttributeError, match="no attribute 'nonsense'"):
        getattr(drill, "nonsense")  # noqa: B009


def old_name(name: str) -> Any:
    with pytest.warns(DeprecationWarning, match=f"asyncres.drill.{name} is deprecated"):
        return getattr(drill, name)


def test_old_scenario_objects_still_work_and_convert(tmp_path: Path) -> None:
    """Scenario/PhaseSpec/Faults and the old functions keep working on top of the schedule."""
    default_scenario, load_scenario = old_name("default_scenario"), old_name("load_scenario")
    scenario_class, phase_class = old_name("Scenario"), old_name("PhaseSpec")
    faults_class, drill_config = old_name("Faults"), old_name("DrillConfig")
    old = default_scenario()
    assert isinstance(old, scenario_class)
    assert old.duration == 62.0
    assert old.phases[4].faults.brownout == 0.5
    assert old.phases[5].faults.overload == 0.5
    assert old.phases[6].faults.outage
    assert old.phases[3].faults.error_period == 1.0
    assert old.phases[1].faults.describe() == "+250±100 ms latency"
    assert [(p.name, s, e) for p, s, e in old.boundaries()][:2] == [
        ("steady", 0.0, 4.0),
        ("latency spike", 4.0, 10.0),
    ]
    assert phase_faults(old.to_schedule()) == phase_faults(default_schedule())
    made = scenario_class(
        (phase_class("calm", 1.0), phase_class("down", 2.0, faults_class(outage=True)))
    )
    options = drill_config(made, rate=10.0)
    assert isinstance(options, DrillOptions)
    assert options.rate == 10.0
    assert phase_faults(options.schedule) == [("calm", 1.0, ()), ("down", 2.0, (Outage(),))]
    path = tmp_path / "old.toml"
    path.write_text('[[phase]]\nname = "down"\nduration = 2\noutage = true\n')
    with pytest.warns(DeprecationWarning, match="format"):
        loaded = load_scenario(path)
    assert loaded == scenario_class((phase_class("down", 2.0, faults_class(outage=True)),))


@pytest.mark.parametrize(
    ("fault", "attributes"),
    [
        (Latency(0.25, jitter=0.1), {"seconds": 0.25, "jitter": 0.1}),
        (ErrorBurst(2.0, retry_after=3), {"period": 2.0, "retry_after": 3}),
        (SlowDatabase(1.5), {"seconds": 1.5}),
    ],
)
def test_fault_settings_are_read_only(fault: drill.DrillFault, attributes: dict[str, Any]) -> None:
    """A fault's configuration reads back and refuses assignment, naming the attribute."""
    for name, value in attributes.items():
        assert getattr(fault, name) == value
        with pytest.raises(AttributeError, match=rf"{type(fault).__name__}\.{name} is read-only"):
            setattr(fault, name, value)
        assert getattr(fault, name) == value
    assert type(fault).__module__ == "asyncres.drill"
    assert fault.enabled is False
    fault.enabled = True
    assert fault.enabled is True
    with pytest.raises(ValueError, match="`enabled`"):
        fault.enabled = 1  # type: ignore[assignment]
    assert isinstance(fault, chaos.Switchable)


def test_fault_objects_validate_and_describe() -> None:
    """Bad fault options raise ValueError naming the parameter; describe() reads well."""
    builds: list[tuple[Callable[[], object], str]] = [
        (lambda: Latency(-1), "`seconds` must be > 0"),
        (lambda: Latency(1, jitter=-1), "`jitter` must be >= 0"),
        (lambda: Latency(float("inf")), "`seconds` must be finite"),
        (lambda: ErrorBurst(0), "`period` must be > 0"),
        (lambda: ErrorBurst(1, retry_after=-1), "`retry_after` must be >= 0"),
        (lambda: ErrorBurst(1, retry_after=1.5), "`retry_after` must be an integer"),  # type: ignore[arg-type]
        (lambda: SlowDatabase(0), "`seconds` must be > 0"),
        (lambda: Outage(enabled="yes"), "`enabled`"),  # type: ignore[arg-type]
    ]
    for build, message in builds:
        with pytest.raises(ValueError, match=message):
            build()
    assert Latency(0.25, jitter=0.1).describe() == "+250±100 ms latency"
    assert ErrorBurst(1.0).describe() == "503 + Retry-After: 1 every other 1 s"
    assert Outage().describe() == "backend unreachable"
    assert SlowDatabase(1.5).describe() == "database statements take 1.5 s"
    assert repr(ErrorBurst(1.0)) == "ErrorBurst(period=1.0, retry_after=1)"
    assert Latency(1) != Latency(2)
    assert len({Outage(), Outage(), SlowDatabase(1)}) == 2


def test_drill_options_refuse_what_the_drill_cannot_run() -> None:
    """DrillOptions checks its schedule and traffic, naming the parameter; it is frozen."""
    chaos_fault = chaos.Schedule([chaos.Phase("p", seconds=1, faults=[chaos.InjectLatency(1)])])
    endless = chaos.Schedule([chaos.Phase("p", seconds=float("inf"))])
    looping = chaos.Schedule([chaos.Phase("p", seconds=1)], repeat=True)
    twice = chaos.Schedule([chaos.Phase("p", seconds=1, faults=[Outage(), Outage()])])
    for schedule, message in [
        (chaos_fault, "only its own fault kinds"),
        (endless, "finite `seconds`"),
        (looping, "repeat"),
        (twice, "at most one `outage`"),
        ("default", "`schedule` must be a chaos.Schedule"),
    ]:
        with pytest.raises(ValueError, match=message):
            DrillOptions(schedule)  # type: ignore[arg-type]
    bad_options: list[tuple[dict[str, Any], str]] = [
        ({"rate": 0}, "`rate`"),
        ({"rate": float("inf")}, "`rate`"),
        ({"grace": -1}, "`grace`"),
        ({"seed": "x"}, "`seed`"),
    ]
    for options, message in bad_options:
        with pytest.raises(ValueError, match=message):
            DrillOptions(default_schedule(), **options)
    frozen = DrillOptions(default_schedule(quick=True))
    with pytest.raises(dataclasses.FrozenInstanceError):
        frozen.rate = 1.0  # type: ignore[misc]
    assert frozen.rate == 40.0


class FakeProxy:
    """Records what the board sets on a fault proxy."""

    def __init__(self) -> None:
        self.toxics: list[chaos.LatencyToxic] = []
        self.enabled = True

    def clear(self) -> None:
        self.toxics.clear()

    def add(self, toxic: chaos.LatencyToxic) -> None:
        self.toxics.append(toxic)


class FakeAdmin:
    """Records, with their time, the faults the board sends to the service."""

    def __init__(self) -> None:
        self.sent: list[tuple[float, ServiceFaults]] = []

    async def faults(self, faults: ServiceFaults, started: float | None = None) -> None:
        await anyio.sleep(0.01)  # a round trip to the service
        self.sent.append((anyio.current_time() - ORIGIN[0], faults))


ORIGIN = [0.0]


@pytest.mark.anyio
async def test_schedule_applies_each_phase_to_both_backends_identically() -> None:
    """Running the schedule switches its faults; both clients' proxies and backends follow."""
    schedule = default_schedule(quick=True)  # 2, 2, 4, 4, then 5 s each
    proxies = [(zone, FakeProxy()) for _client in range(2) for zone in "abc"]
    admin = FakeAdmin()
    seen: list[tuple[str, list[tuple[float, float]], str]] = []
    done = anyio.Event()
    ORIGIN[0] = anyio.current_time()
    schedule.start()
    with _FaultBoard(schedule, admin, proxies) as board:  # type: ignore[arg-type]
        async with anyio.create_task_group() as tg:
            tg.start_soon(_run_schedule, schedule, board, done)
            for start, end, phase in schedule.timeline:
                await anyio.sleep(ORIGIN[0] + (start + end) / 2 - anyio.current_time())
                states = {
                    (tuple((t.latency, t.jitter) for t in p.toxics), p.enabled, zone)
                    for zone, p in proxies
                }
                assert len(states) == 3, states  # both clients' zones alike
                toxics = {toxic for toxic, _, _ in states}
                assert len(toxics) == 1, toxics  # latency reaches every zone
                up = "".join(sorted(zone for _, enabled, zone in states if enabled))
                seen.append((phase.name, list(toxics.pop()), up))
            await done.wait()
        assert all(fault._on_change == board.apply for fault in board.faults)
    assert all(fault._on_change is None for fault in board.faults)
    assert seen == [
        ("steady", [], "abc"),
        ("latency spike", [(0.25, 0.1)], "abc"),
        ("zone outage", [], "ab"),
        ("error burst", [], "abc"),
        ("random brownout", [], "abc"),
        ("overload brownout", [], "abc"),
        ("hard outage", [], ""),
        ("slow database", [], "abc"),
        ("recovery", [], "abc"),
    ]
    assert [(round(t, 2), faults) for t, faults in admin.sent] == [
        (8.01, ServiceFaults(error_period=1.0, retry_after=1)),
        (12.01, ServiceFaults(brownout=0.5)),
        (17.01, ServiceFaults(capacity=20.0)),  # half the default 40 requests/s
        (22.01, ServiceFaults()),
        (27.01, ServiceFaults(slow_db=1.5)),
        (32.01, ServiceFaults()),
    ]
    assert all(not fault.enabled for fault in board.faults)
    assert all(p.enabled and not p.toxics for _, p in proxies)


def test_quick_drill_end_to_end(tmp_path: Path) -> None:
    """`asyncres drill --quick` runs in 40 s, writes its report and chart, and judges every phase.

    The exit status and the last line follow the verdict: 0 and "won every phase", or 3 and
    the phases it lost. What protection reliably wins is asserted outright: the error
    burst, the overload brownout and recovery, failing fast in the outage and the first
    success within a second of its end.
    """
    result, elapsed = run_cli("drill", "--quick", "--no-live", "--output", str(tmp_path))
    assert result.returncode in (0, 3), result.stdout + result.stderr
    assert elapsed < 50.0  # 33 s of drill, plus interpreter and server start-up
    assert str(tmp_path.resolve()) in result.stdout

    report = json.loads((tmp_path / "report.json").read_text())
    assert report["version"] == 1
    names = [p["name"] for p in report["phases"]]
    assert names == [phase.name for _, _, phase in default_schedule(quick=True).timeline]
    for name in ("naive", "protected"):
        client = report["clients"][name]
        assert set(client) == {"phases", "timeline", "totals", "breaker"}
        assert set(client["phases"]) == set(names)
        steady = client["phases"]["steady"]
        assert steady["success_rate"] == 1.0
        for key in ("offered", "succeeded", "p50_ms", "p99_ms", "amplification", "sent_to_backend"):
            assert key in steady
        assert client["timeline"]
    verdict = report["verdict"]
    checks = verdict["checks"]
    assert set(checks) == {f"phase {name}" for name in names} | {
        "drill_kept_pace",
        "outage_fails_fast",
        "recovers_after_outage",
        "zone_outage_absorbed",
    }
    strict = {name for name, check in checks.items() if check.get("strict")}
    assert strict == {
        "phase zone outage",
        "phase error burst",
        "phase overload brownout",
        "phase recovery",
    }
    lost = [name for name, check in checks.items() if not check["passed"]]
    assert verdict["protected_wins"] is (not lost)
    if lost:
        assert result.returncode == 3
        assert f"The protected client did NOT win: it lost {', '.join(lost)}." in result.stdout
        for name in lost:
            assert f"FAIL {name}: LOST by" in result.stdout
    else:
        assert result.returncode == 0
        assert "The protected client won every phase." in result.stdout
    # The recovery after the slow database is judged (strictly) in the verdict but not
    # asserted here: it ties or loses in some runs (issue 12's slow-database edge).
    for name in (
        "drill_kept_pace",  # else the numbers measure the harness, not the faults
        "phase error burst",
        "phase overload brownout",
        "outage_fails_fast",
    ):
        assert checks[name]["passed"], checks[name]
    assert checks["recovers_after_outage"]["passed"], checks["recovers_after_outage"]
    protected, naive = report["clients"]["protected"], report["clients"]["naive"]
    assert protected["phases"]["hard outage"]["amplification"] <= 1.25
    assert naive["phases"]["hard outage"]["amplification"] > 1.25  # the naive one piles on
    # The protected backend runs behind asyncres.asgi.protect and says what fired; the
    # naive one is the plain service.
    assert sum(row["backend_shed"] for row in protected["phases"].values()) > 0
    for key in ("shed", "expired", "cancelled"):
        assert all(row[f"backend_{key}"] == 0 for row in naive["phases"].values())
    for start, end, phase in default_schedule(quick=True).timeline:
        assert protected["phases"][phase.name]["judged_until"] == judged_until(start, end)
    states = [event["state"] for event in protected["breaker"]]
    assert "open" in states
    assert states[-1] == "closed"
    assert_png(Path(report["chart"]))


def test_drill_with_a_schedule_file(tmp_path: Path) -> None:
    """--schedule runs a user's chaos.Schedule TOML instead of the default schedule."""
    schedule = tmp_path / "short.toml"
    schedule.write_text(
        '[[phases]]\nname = "calm"\nseconds = 1\n\n'
        '[[phases]]\nname = "outage"\nseconds = "1.5s"\nfaults = ["outage"]\n'
    )
    out = tmp_path / "out"
    result, _ = run_cli(
        "drill", "--schedule", str(schedule), "--no-live", "--rate", "20", "--output", str(out)
    )
    # No error burst, and recovery cannot be seen within 2.5 s: the exit status may be 3.
    assert result.returncode in (0, 3), result.stdout + result.stderr
    assert "deprecated" not in result.stderr
    report = json.loads((out / "report.json").read_text())
    assert [p["name"] for p in report["phases"]] == ["calm", "outage"]
    assert [(p["start"], p["end"], p["faults"]) for p in report["phases"]] == [
        (0.0, 1.0, "no faults"),
        (1.0, 2.5, "backend unreachable"),
    ]
    assert report["clients"]["naive"]["phases"]["calm"]["offered"] == 20
    checks = report["verdict"]["checks"]
    assert set(checks) == {
        "phase calm",
        "phase outage",
        "drill_kept_pace",
        "outage_fails_fast",
        "recovers_after_outage",
    }
    assert checks["phase calm"]["strict"] is False  # no fault before it: a tie is enough


def test_old_scenario_option_and_format_still_run(tmp_path: Path) -> None:
    """--scenario with an old `[[phase]]` file still runs; stderr says how to convert both."""
    scenario = tmp_path / "old.toml"
    scenario.write_text(
        '[[phase]]\nname = "calm"\nduration = 1\n\n'
        '[[phase]]\nname = "burst"\nduration = 1.5\nerror_period = 0.5\n'
    )
    out = tmp_path / "out"
    result, _ = run_cli(
        "drill", "--scenario", str(scenario), "--no-live", "--rate", "20", "--output", str(out)
    )
    assert result.returncode in (0, 3), result.stdout + result.stderr
    assert "--scenario is deprecated" in result.stderr
    assert "use --schedule FILE" in result.stderr
    assert "`[[phase]]` format" in result.stderr
    new_toml = result.stderr[result.stderr.index("\n\n[[phases]]") :]
    assert tomllib.loads(new_toml)["phases"][1] == {
        "name": "burst",
        "seconds": 1.5,
        "faults": [{"kind": "error_burst", "period": "500ms", "retry_after": 1}],
    }
    report = json.loads((out / "report.json").read_text())
    assert [p["name"] for p in report["phases"]] == ["calm", "burst"]
    assert report["phases"][1]["faults"] == "503 + Retry-After: 1 every other 0.5 s"
    assert {"phase calm", "phase burst"} <= set(report["verdict"]["checks"])
    assert report["verdict"]["checks"]["phase burst"]["strict"] is True


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--rate", "0"), "--rate"),
        (("--schedule", "/nonexistent/drill.toml"), "No such file"),
    ],
)
def test_bad_arguments_exit_with_usage_errors(args: tuple[str, ...], message: str) -> None:
    """A bad rate or a missing schedule file is refused before anything starts."""
    result, elapsed = run_cli("drill", *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert elapsed < 20


def test_bad_schedule_file_names_the_key(tmp_path: Path) -> None:
    """A schedule file with a mistake exits with status 2 and the key at fault."""
    path = tmp_path / "bad.toml"
    path.write_text('[[phases]]\nname = "x"\nseconds = 1\nfaults = [{ kind = "jam" }]\n')
    result, _ = run_cli("drill", "--schedule", str(path))
    assert result.returncode == 2
    assert f"asyncres drill: {path}: phase 1 (x) fault 1: `kind` must be one of" in result.stderr


def test_drill_serves_prometheus_metrics_and_reports_breaker_transitions(tmp_path: Path) -> None:
    """--metrics-port serves the policies' state during the run (scraped here, from outside
    the drill's process); the printed report lists the breaker's transitions."""
    schedule = tmp_path / "outage.toml"
    schedule.write_text(
        '[[phases]]\nname = "calm"\nseconds = 2\n\n'
        '[[phases]]\nname = "outage"\nseconds = 2\nfaults = ["outage"]\n\n'
        '[[phases]]\nname = "after"\nseconds = 2\n'
    )
    out = tmp_path / "out"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    args = ["drill", "--schedule", str(schedule), "--no-live", "--output", str(out)]
    process = subprocess.Popen(
        [sys.executable, "-m", "asyncres.cli", *args, "--metrics-port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    try:
        assert process.stdout is not None
        url = None
        for _ in range(50):  # the banner, then the metrics line
            line = process.stdout.readline()
            match = re.search(r"metrics: (http://127\.0\.0\.1:\d+/metrics)", line)
            if match:
                url = match.group(1)
                break
        assert url is not None
        scraped = ""
        for _ in range(100):  # until the protected client's per-host breaker exists
            time.sleep(0.1)
            scraped = httpx.get(url, timeout=5.0).text
            if 'asyncres_circuit_breaker_state{name="http http://127.0.0.1:' in scraped:
                break
        stdout, stderr = process.communicate(timeout=90)
    finally:
        process.kill()
        process.wait()
    assert process.returncode in (0, 3), stdout + stderr
    assert "# TYPE asyncres_circuit_breaker_state gauge" in scraped
    assert re.search(
        r'asyncres_circuit_breaker_state\{name="http http://127\.0\.0\.1:\d+",'
        r'state="closed"\} 1\.0',
        scraped,
    ), scraped
    assert "asyncres_retry_budget_available{" in scraped
    report = json.loads((out / "report.json").read_text())
    transitions = report["clients"]["protected"]["breaker"]
    assert transitions
    assert transitions[0]["state"] == "open"
    assert {item["zone"] for item in transitions} <= {"a", "b", "c"}
    assert "Protected client's breakers (one per zone, " in stdout
    assert re.search(r"transitions\) — outage: [abc] \(?open", stdout), stdout


def test_breaker_line_groups_transitions_by_phase_and_zone() -> None:
    """One breaker per zone: the report groups their transitions per phase, cycles folded."""
    from asyncres.drill._report import breaker_line

    phases = [
        {"name": "calm", "start": 0.0, "end": 2.0},
        {"name": "down", "start": 2.0, "end": 4.0},
    ]
    states = ["open", "half_open", "open", "half_open", "open", "half_open", "closed"]
    transitions = [{"t": 2.1 + i * 0.1, "state": s, "zone": "a"} for i, s in enumerate(states)]
    transitions.append({"t": 2.5, "state": "open", "zone": "c"})
    transitions.append({"t": 5.0, "state": "closed", "zone": "c"})
    report = {"phases": phases, "clients": {"protected": {"breaker": transitions}}}
    assert breaker_line(report) == (
        "Protected client's breakers (one per zone, 9 transitions) — "
        "down: a (open > half_open) x3 > closed, c open; after the schedule: c closed"
    )
    report["clients"]["protected"]["breaker"] = []
    assert breaker_line(report) == "Protected client's breakers: stayed closed."


class ZoneCounter:
    """What the zone-outage check reads: attempts per (tick, zone)."""

    def __init__(self, per_second: dict[str, float], seconds: float) -> None:
        from collections import Counter

        from asyncres.drill._service import TICKS

        self.by_zone: Counter[tuple[int, str]] = Counter()
        for tick in range(int(seconds * TICKS)):
            for zone, rate in per_second.items():
                self.by_zone[tick, zone] = round(rate / TICKS)


@pytest.mark.parametrize(
    ("success", "per_second", "passed"),
    [
        (1.0, {"a": 20.0, "b": 20.0, "c": 0.0}, True),  # 1.5 x each: absorbed
        (0.98, {"a": 20.0, "b": 20.0, "c": 0.0}, False),  # requests lost
        (1.0, {"a": 30.0, "b": 30.0, "c": 0.0}, False),  # 2.25 x: a retry storm on survivors
        (1.0, {"a": 30.0, "b": 10.0, "c": 0.0}, False),  # one zone takes it all: not noise
    ],
)
def test_zone_outage_check_judges_success_load_and_balance(
    success: float, per_second: dict[str, float], passed: bool
) -> None:
    """zone_outage_absorbed: success, the survivors' average load, and an even split."""
    from asyncres.drill import ZoneOutage
    from asyncres.drill._run import _judge_zone_outage

    schedule = chaos.Schedule(
        [
            chaos.Phase("calm", seconds=2.0),
            chaos.Phase("dark", seconds=6.0, faults=[ZoneOutage("c")]),
        ]
    )
    report: dict[str, Any] = {
        "clients": {"protected": {"phases": {"dark": {"success_rate": success}}}},
        "verdict": {"checks": {}, "protected_wins": True},
    }
    _judge_zone_outage(report, schedule, ZoneCounter(per_second, 8.0), 40.0)
    check = report["verdict"]["checks"]["zone_outage_absorbed"]
    assert check["passed"] is passed, check["detail"]
    assert report["verdict"]["protected_wins"] is passed
    assert set(check["loads"]) == {"a", "b"}


@pytest.mark.parametrize(
    ("offered", "passed"),
    [
        ((40, 160), True),  # every scheduled request started in its phase
        ((39, 153), True),  # within 5 %: a start that slipped past a boundary
        ((40, 120), False),  # the process fell a second behind: the harness, not the fault
    ],
)
def test_drill_kept_pace_fails_a_run_whose_own_process_fell_behind(
    offered: tuple[int, int], passed: bool
) -> None:
    """drill_kept_pace: the open-loop load holds rate x seconds requests per judged phase;
    fewer means the drill's process saturated (as httpcore's pool scan once did), and the
    run is failed with the phase named rather than judged on the harness's latencies."""
    from asyncres.drill._metrics import verdict

    schedule = chaos.Schedule([chaos.Phase("calm", seconds=1.0), chaos.Phase("late", seconds=5.0)])
    rows = {
        "calm": {"start": 0.0, "judged_until": 1.0, "offered": offered[0]},
        "late": {"start": 1.0, "judged_until": 5.0, "offered": offered[1]},
    }
    common = {"success_rate": 1.0, "amplification": 1.0}
    clients = {
        name: {"phases": {phase: row | common for phase, row in rows.items()}}
        for name in ("naive", "protected")
    }
    result = verdict(schedule, {}, clients, 40.0)
    check = result["checks"]["drill_kept_pace"]
    assert check["passed"] is passed, check["detail"]
    assert result["protected_wins"] is passed
    if not passed:
        assert "naive late 120 of 160" in check["detail"]
        assert "protected late 120 of 160" in check["detail"]
