"""The drill's schedule: a `chaos.Schedule` whose phases switch the drill's fault kinds.

One model and one TOML format for the drill, the benchmarks and users::

    [[phases]]
    name = "steady"
    seconds = 6

    [[phases]]
    name = "latency spike"
    seconds = 8
    faults = [{ kind = "latency", seconds = "250ms", jitter = "100ms" }]

    [[phases]]
    name = "hard outage"
    seconds = 10
    faults = ["outage"]            # or { kind = "outage" }

The drill's kinds: ``latency`` (``seconds``, ``jitter``), ``error_burst`` (``period``,
``retry_after``), ``brownout`` (``rate``), ``overload`` (``share``), ``outage``, ``slow_db``
(``seconds``). The drill's former format
(``[[phase]]`` with ``duration`` and the fault keys in the phase) is still read, with a
`DeprecationWarning` that shows the same schedule in the new format.
"""

from __future__ import annotations

import json
import tomllib
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .. import _validation
from ..chaos import Phase, Schedule
from ._faults import (
    FAULT_KINDS,
    MAKERS,
    Brownout,
    DrillFault,
    ErrorBurst,
    Latency,
    Outage,
    Overload,
    SlowDatabase,
    ZoneOutage,
)

__all__ = ["check_schedule", "default_schedule", "load_schedule", "schedule_from_dict"]

#: The options each fault kind takes in a TOML table (besides ``kind``).
_OPTIONS: dict[str, frozenset[str]] = {
    "brownout": frozenset({"rate"}),
    "error_burst": frozenset({"period", "retry_after"}),
    "latency": frozenset({"seconds", "jitter"}),
    "outage": frozenset(),
    "overload": frozenset({"share"}),
    "slow_db": frozenset({"seconds"}),
    "zone_outage": frozenset({"zone"}),
}
_REQUIRED: dict[str, frozenset[str]] = {
    "brownout": frozenset(),
    "error_burst": frozenset({"period"}),
    "latency": frozenset({"seconds"}),
    "outage": frozenset(),
    "overload": frozenset(),
    "slow_db": frozenset({"seconds"}),
    "zone_outage": frozenset(),
}

#: The default schedule's phases: name, seconds (full, quick), faults.
_DEFAULT_PHASES: tuple[tuple[str, float, float, tuple[DrillFault, ...]], ...] = (
    ("steady", 4.0, 2.0, ()),
    ("latency spike", 6.0, 2.0, (Latency(0.25, jitter=0.1),)),
    ("zone outage", 6.0, 4.0, (ZoneOutage("c"),)),
    # Whole cycles of the burst (1 s of 503s, 1 s of service), so that it ends on a good
    # second: a burst cut in its error second would push its retries into the next phase.
    ("error burst", 8.0, 4.0, (ErrorBurst(1.0, retry_after=1),)),
    ("random brownout", 8.0, 5.0, (Brownout(0.5),)),
    ("overload brownout", 8.0, 5.0, (Overload(0.5),)),
    ("hard outage", 8.0, 5.0, (Outage(),)),
    ("slow database", 8.0, 5.0, (SlowDatabase(1.5),)),
    ("recovery", 6.0, 5.0, ()),
)


def default_schedule(*, quick: bool = False) -> Schedule:
    """steady → latency spike → zone outage → error burst → random brownout → overload
    brownout → hard outage → slow database → recovery.

    62 s of traffic, the same schedule as ``examples/drill_schedule.toml``; 37 s with
    ``quick``, whose faulted phases last 5 s (the error burst 4 s, whole cycles) so that a
    phase's first second, where the previous fault still echoes, is a fifth of it.
    """
    return Schedule(
        [
            Phase(name, seconds=quick_seconds if quick else seconds, faults=faults)
            for name, seconds, quick_seconds, faults in _DEFAULT_PHASES
        ],
        name="drill",
    )


def load_schedule(path: str | Path) -> Schedule:
    """Read a drill schedule from a TOML file (see the module docstring for the format)."""
    with open(path, "rb") as file:
        data = tomllib.load(file)
    return schedule_from_dict(data, _stacklevel=3)


def schedule_from_dict(data: Mapping[str, Any], *, _stacklevel: int = 2) -> Schedule:
    """Build a drill schedule from plain data (a parsed TOML or JSON file)."""
    if not isinstance(data, Mapping):
        raise ValueError(f"`data` must be a mapping, got {type(data).__name__}")
    if "phase" in data and "phases" not in data:
        data = _from_old_format(data)
        warnings.warn(
            "the drill's `[[phase]]` format (`duration` and fault keys in each phase) is "
            "deprecated and will be removed in asyncres 0.3; write the schedule as a "
            "chaos.Schedule TOML (`[[phases]]`, `seconds`, `faults = [...]`), here the "
            "same schedule:\n\n" + to_toml(data),
            DeprecationWarning,
            stacklevel=_stacklevel,
        )
    for key in ("seed", "repeat"):
        if key in data:
            raise ValueError(
                f"`{key}`: not used by the drill (its randomness comes from --seed and it "
                "runs the phases once)"
            )
    phases = data.get("phases")
    if isinstance(phases, list):
        for number, spec in enumerate(phases, start=1):
            if isinstance(spec, Mapping):
                _check_faults(spec, f"phase {number} ({spec.get('name', f'phase {number}')})")
    schedule = Schedule.from_dict(data, targets={"outage": Outage()}, makers=MAKERS, listeners=())
    check_schedule(schedule)
    return schedule


def _check_faults(spec: Mapping[str, Any], where: str) -> None:
    """Name the key at fault before `Schedule.from_dict` sees a kind it would accept."""
    faults = spec.get("faults", [])
    if not isinstance(faults, list):
        raise ValueError(f"{where}: `faults` must be a list, got {faults!r}")
    for index, item in enumerate(faults, start=1):
        at = f"{where} fault {index}"
        if isinstance(item, str):
            if item != "outage":
                raise ValueError(f"{at}: unknown target {item!r} (known: outage)")
            continue
        if not isinstance(item, Mapping):
            raise ValueError(f"{at}: must be a target name or a table, got {item!r}")
        kind = item.get("kind")
        if kind not in _OPTIONS:
            raise ValueError(f"{at}: `kind` must be one of {list(FAULT_KINDS)}, got {kind!r}")
        options = set(item) - {"kind"}
        unknown = options - _OPTIONS[kind]
        if unknown:
            raise ValueError(
                f"{at} ({kind}): unknown keys {sorted(unknown)} "
                f"(known: {sorted(_OPTIONS[kind]) or 'none'})"
            )
        missing = _REQUIRED[kind] - options
        if missing:
            raise ValueError(f"{at} ({kind}): `{sorted(missing)[0]}` is required")


def check_schedule(schedule: Schedule) -> Schedule:
    """Refuse a schedule the drill cannot run faithfully; return it."""
    if not isinstance(schedule, Schedule):
        raise ValueError(f"`schedule` must be a chaos.Schedule, got {schedule!r}")
    if schedule.repeat:
        raise ValueError("`schedule`: the drill runs its phases once (repeat=True)")
    if not schedule.duration < float("inf"):
        raise ValueError("`schedule`: every phase of a drill needs a finite `seconds`")
    names: set[str] = set()
    for _, _, phase in schedule.timeline:
        if phase.name in names:
            raise ValueError(f"`schedule`: phase names must be unique, {phase.name!r} repeats")
        names.add(phase.name)
        kinds: set[str] = set()
        for fault in phase.faults:
            if not isinstance(fault, DrillFault):
                raise ValueError(
                    f"phase {phase.name!r}: the drill applies only its own fault kinds "
                    f"{list(FAULT_KINDS)} to both backends, got {fault!r}"
                )
            if fault.kind in kinds:
                raise ValueError(f"phase {phase.name!r}: at most one `{fault.kind}` fault")
            kinds.add(fault.kind)
    return schedule


_OLD_FAULT_KEYS = ("latency", "jitter", "error_period", "retry_after", "outage", "slow_db")


def _from_old_format(data: Mapping[str, Any]) -> dict[str, Any]:
    """The drill's former ``[[phase]]`` data as `chaos.Schedule` data (same validation)."""
    phases = data.get("phase")
    if not isinstance(phases, list) or not phases:
        raise ValueError("`phase` must be a non-empty array of tables ([[phase]])")
    unknown_top = set(data) - {"phase"}
    if unknown_top:
        raise ValueError(f"`data`: unknown keys {sorted(unknown_top)}")
    converted = []
    for index, raw in enumerate(phases):
        if not isinstance(raw, Mapping):
            raise ValueError(f"`phase[{index}]` must be a table")
        raw = dict(raw)
        name = raw.pop("name", f"phase {index + 1}")
        if not isinstance(name, str) or not name:
            raise ValueError(f"`phase[{index}].name` must be a non-empty string")
        duration = _validation.positive(f"phase[{index}].duration", raw.pop("duration", 0))
        unknown = set(raw) - set(_OLD_FAULT_KEYS)
        if unknown:
            raise ValueError(f"`phase[{index}]` has unknown keys: {sorted(unknown)}")
        for key in ("latency", "jitter", "error_period", "slow_db"):
            if key in raw:
                _validation.non_negative(f"phase[{index}].{key}", raw[key])
        if "retry_after" in raw:
            _validation.count(f"phase[{index}].retry_after", raw["retry_after"], minimum=0)
        if "outage" in raw and not isinstance(raw["outage"], bool):
            raise ValueError(f"`phase[{index}].outage` must be true or false")
        faults: list[Any] = []
        if raw.get("latency"):
            faults.append({"kind": "latency", "seconds": raw["latency"]})
            if raw.get("jitter"):
                faults[-1]["jitter"] = raw["jitter"]
        if raw.get("error_period"):
            faults.append(
                {
                    "kind": "error_burst",
                    "period": raw["error_period"],
                    "retry_after": raw.get("retry_after", 1),
                }
            )
        if raw.get("outage"):
            faults.append("outage")
        if raw.get("slow_db"):
            faults.append({"kind": "slow_db", "seconds": raw["slow_db"]})
        phase: dict[str, Any] = {"name": name, "seconds": duration}
        if faults:
            phase["faults"] = faults
        converted.append(phase)
    return {"phases": converted}


def to_toml(data: Mapping[str, Any]) -> str:
    """Schedule data (``phases`` of ``name``, ``seconds``, ``faults``) written as TOML."""
    blocks = []
    for phase in data["phases"]:
        lines = ["[[phases]]", f"name = {json.dumps(phase['name'])}"]
        lines.append(f"seconds = {_value(phase['seconds'])}")
        if phase.get("faults"):
            items = []
            for fault in phase["faults"]:
                if isinstance(fault, str):
                    items.append(json.dumps(fault))
                else:
                    pairs = ", ".join(f"{key} = {_value(value)}" for key, value in fault.items())
                    items.append(f"{{ {pairs} }}")
            lines.append(f"faults = [{', '.join(items)}]")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value.is_integer():
            return str(int(value))
        if value < 1.0 and round(value * 1000, 6).is_integer():
            return json.dumps(f"{value * 1000:g}ms")
        return repr(value)
    return json.dumps(value)
