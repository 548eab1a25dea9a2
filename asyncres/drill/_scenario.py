"""The drill's fault schedule: named phases, each with the faults it turns on."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import _validation

__all__ = ["FAULT_KINDS", "Faults", "PhaseSpec", "Scenario", "default_scenario", "load_scenario"]

#: What a phase can turn on; each is applied identically to both clients' backends.
FAULT_KINDS = ("latency", "errors", "outage", "slow_db")


@dataclass(frozen=True, slots=True)
class Faults:
    """Faults active during a phase.

    - ``latency``: seconds added to every reply by the fault proxy (``jitter`` ± around it);
    - ``error_period``: the service answers 503 with ``Retry-After: retry_after`` during
      every other ``error_period`` seconds (brief unavailability, e.g. a rolling restart);
    - ``outage``: the fault proxy is down (connections refused, open ones dropped);
    - ``slow_db``: seconds every database statement takes (connections held meanwhile).
    """

    latency: float = 0.0
    jitter: float = 0.0
    error_period: float = 0.0
    retry_after: int = 1
    outage: bool = False
    slow_db: float = 0.0

    def describe(self) -> str:
        parts = []
        if self.latency:
            parts.append(f"+{self.latency * 1000:.0f}±{self.jitter * 1000:.0f} ms latency")
        if self.error_period:
            parts.append(
                f"503 + Retry-After: {self.retry_after} every other {self.error_period:g} s"
            )
        if self.outage:
            parts.append("backend unreachable")
        if self.slow_db:
            parts.append(f"database statements take {self.slow_db:g} s")
        return ", ".join(parts) or "no faults"


@dataclass(frozen=True, slots=True)
class PhaseSpec:
    name: str
    duration: float
    faults: Faults = field(default_factory=Faults)


@dataclass(frozen=True, slots=True)
class Scenario:
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


def default_scenario(*, quick: bool = False) -> Scenario:
    """steady → latency spike → error burst → hard outage → slow database → recovery.

    48 s of traffic (12 s with ``quick``).
    """
    durations = (1.5, 1.5, 2.5, 2.5, 1.5, 2.5) if quick else (6.0, 8.0, 10.0, 10.0, 8.0, 6.0)
    faults = (
        Faults(),
        Faults(latency=0.25, jitter=0.1),
        Faults(error_period=1.0, retry_after=1),
        Faults(outage=True),
        Faults(slow_db=1.5),
        Faults(),
    )
    names = ("steady", "latency spike", "error burst", "hard outage", "slow database", "recovery")
    return Scenario(
        tuple(PhaseSpec(n, d, f) for n, d, f in zip(names, durations, faults, strict=True))
    )


def load_scenario(path: str | Path) -> Scenario:
    """Read a TOML scenario::

        [[phase]]
        name = "steady"
        duration = 5

        [[phase]]
        name = "outage"
        duration = 8
        outage = true

    Fault keys: ``latency``, ``jitter`` (seconds), ``error_period`` (seconds),
    ``retry_after`` (whole seconds), ``outage`` (bool), ``slow_db`` (seconds).
    """
    with open(path, "rb") as file:
        data = tomllib.load(file)
    return scenario_from_dict(data)


def scenario_from_dict(data: dict[str, Any]) -> Scenario:
    phases = data.get("phase")
    if not isinstance(phases, list) or not phases:
        raise ValueError("`phase` must be a non-empty array of tables ([[phase]])")
    specs = []
    for index, raw in enumerate(phases):
        if not isinstance(raw, dict):
            raise ValueError(f"`phase[{index}]` must be a table")
        raw = dict(raw)
        name = raw.pop("name", f"phase {index + 1}")
        if not isinstance(name, str) or not name:
            raise ValueError(f"`phase[{index}].name` must be a non-empty string")
        duration = _validation.positive(f"phase[{index}].duration", raw.pop("duration", 0))
        unknown = set(raw) - {
            "latency",
            "jitter",
            "error_period",
            "retry_after",
            "outage",
            "slow_db",
        }
        if unknown:
            raise ValueError(f"`phase[{index}]` has unknown keys: {sorted(unknown)}")
        for key in ("latency", "jitter", "error_period", "slow_db"):
            if key in raw:
                _validation.non_negative(f"phase[{index}].{key}", raw[key])
        if "retry_after" in raw:
            _validation.count(f"phase[{index}].retry_after", raw["retry_after"], minimum=0)
        if "outage" in raw and not isinstance(raw["outage"], bool):
            raise ValueError(f"`phase[{index}].outage` must be true or false")
        specs.append(PhaseSpec(name, duration, Faults(**raw)))
    return Scenario(tuple(specs))
