"""The drill's former scenario model, kept until asyncres 0.3 behind deprecated names.

`Scenario` / `PhaseSpec` / `Faults` were the drill's own copy of what `chaos.Schedule` /
`chaos.Phase` / the drill's fault kinds now express. They still build, and convert both ways
(`Scenario.to_schedule`, `Scenario.from_schedule`), so old code keeps running; the module
``__getattr__`` of `asyncres.drill` warns on each access.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..chaos import Phase, Schedule
from ._faults import (
    Brownout,
    DrillFault,
    ErrorBurst,
    Latency,
    Outage,
    Overload,
    SlowDatabase,
    ZoneOutage,
)
from ._run import DrillOptions
from ._schedule import default_schedule, load_schedule, schedule_from_dict

__all__ = [
    "Faults",
    "PhaseSpec",
    "Scenario",
    "drill_config",
    "legacy_default_scenario",
    "legacy_load_scenario",
    "legacy_scenario_from_dict",
]


@dataclass(frozen=True, slots=True)
class Faults:
    """Deprecated: the faults of a phase as fields; use the drill's fault kinds instead."""

    latency: float = 0.0
    jitter: float = 0.0
    error_period: float = 0.0
    retry_after: int = 1
    outage: bool = False
    slow_db: float = 0.0
    brownout: float = 0.0
    overload: float = 0.0
    zone_outage: str = ""  # the dark zone ("a", "b" or "c"); kept so the schedule round-trips

    def describe(self) -> str:
        from ._faults import describe_faults

        return describe_faults(self.to_faults())

    def to_faults(self) -> tuple[DrillFault, ...]:
        """The same faults as the drill's switchable fault objects."""
        faults: list[DrillFault] = []
        if self.latency:
            faults.append(Latency(self.latency, jitter=self.jitter))
        if self.error_period:
            faults.append(ErrorBurst(self.error_period, retry_after=self.retry_after))
        if self.outage:
            faults.append(Outage())
        if self.slow_db:
            faults.append(SlowDatabase(self.slow_db))
        if self.brownout:
            faults.append(Brownout(self.brownout))
        if self.overload:
            faults.append(Overload(self.overload))
        if self.zone_outage:
            faults.append(ZoneOutage(self.zone_outage))
        return tuple(faults)

    @classmethod
    def from_faults(cls, faults: tuple[object, ...]) -> Faults:
        values: dict[str, Any] = {}
        for fault in faults:
            if isinstance(fault, Latency):
                values["latency"] = values.get("latency", 0.0) + fault.seconds
                values["jitter"] = values.get("jitter", 0.0) + fault.jitter
            elif isinstance(fault, ErrorBurst):
                values["error_period"] = fault.period
                values["retry_after"] = fault.retry_after
            elif isinstance(fault, Outage):
                values["outage"] = True
            elif isinstance(fault, SlowDatabase):
                values["slow_db"] = fault.seconds
            elif isinstance(fault, Brownout):
                values["brownout"] = fault.rate
            elif isinstance(fault, Overload):
                values["overload"] = fault.share
            elif isinstance(fault, ZoneOutage):
                values["zone_outage"] = fault.zone
        return cls(**values)


@dataclass(frozen=True, slots=True)
class PhaseSpec:
    """Deprecated: use `chaos.Phase`."""

    name: str
    duration: float
    faults: Faults = field(default_factory=Faults)


@dataclass(frozen=True, slots=True)
class Scenario:
    """Deprecated: use `chaos.Schedule` (see `asyncres.drill.default_schedule`)."""

    phases: tuple[PhaseSpec, ...]

    @property
    def duration(self) -> float:
        return sum(p.duration for p in self.phases)

    def boundaries(self) -> list[tuple[PhaseSpec, float, float]]:
        out = []
        start = 0.0
        for phase in self.phases:
            out.append((phase, start, start + phase.duration))
            start += phase.duration
        return out

    def to_schedule(self) -> Schedule:
        """The same phases as a `chaos.Schedule` of the drill's fault kinds."""
        return Schedule(
            [Phase(p.name, seconds=p.duration, faults=p.faults.to_faults()) for p in self.phases],
            name="drill",
        )

    @classmethod
    def from_schedule(cls, schedule: Schedule) -> Scenario:
        return cls(
            tuple(
                PhaseSpec(phase.name, phase.seconds, Faults.from_faults(phase.faults))
                for _, _, phase in schedule.timeline
            )
        )


def legacy_default_scenario(*, quick: bool = False) -> Scenario:
    """Deprecated: `default_schedule`."""
    return Scenario.from_schedule(default_schedule(quick=quick))


def legacy_load_scenario(path: str | Path) -> Scenario:
    """Deprecated: `load_schedule` (reads both formats)."""
    return Scenario.from_schedule(load_schedule(path))


def legacy_scenario_from_dict(data: dict[str, Any]) -> Scenario:
    """Deprecated: `schedule_from_dict` (reads both formats)."""
    return Scenario.from_schedule(schedule_from_dict(data, _stacklevel=3))


def drill_config(
    scenario: Scenario | Schedule,
    rate: float = 40.0,
    seed: int = 1,
    grace: float = 8.0,
) -> DrillOptions:
    """Deprecated: `DrillOptions` (its first field is now ``schedule``)."""
    schedule = scenario.to_schedule() if isinstance(scenario, Scenario) else scenario
    return DrillOptions(schedule, rate=rate, seed=seed, grace=grace)
