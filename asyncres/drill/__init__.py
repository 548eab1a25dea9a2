"""``asyncres drill``: a GameDay on one machine.

Starts a small real HTTP service backed by SQLite (through `asyncres.db`) on loopback, puts
a `asyncres.chaos.FaultProxy` in front of it, and drives the same open-loop traffic through
two clients side by side — a naive one (httpx + the usual tenacity retry) and one protected
by `asyncres.httpx.ResilientTransport` — while a `chaos.Schedule` of faults runs: steady,
latency spike, error burst with Retry-After, random brownout, overload brownout, hard outage,
slow database, recovery. It shows live numbers, then writes a JSON report and a chart, and
judges every phase: the protected client must match the naive one's success (within 2
percentage points) at no more load everywhere, and beat it where protection is the point.

The schedule's faults are the drill's kinds — `Latency`, `ErrorBurst`, `Brownout`,
`Overload`, `Outage`, `ZoneOutage`, `SlowDatabase` — applied identically to both clients' backends;
`load_schedule` reads them from a `chaos.Schedule` TOML file (``[[phases]]`` tables).

Needs the ``drill`` extra: ``pip install 'asyncres[drill]'``.
"""

import typing
import warnings

from ._faults import Brownout as Brownout
from ._faults import DrillFault as DrillFault
from ._faults import ErrorBurst as ErrorBurst
from ._faults import Latency as Latency
from ._faults import Outage as Outage
from ._faults import Overload as Overload
from ._faults import SlowDatabase as SlowDatabase
from ._faults import ZoneOutage as ZoneOutage
from ._metrics import Recorder as Recorder
from ._run import DrillOptions as DrillOptions
from ._run import run_drill as run_drill
from ._schedule import default_schedule as default_schedule
from ._schedule import load_schedule as load_schedule
from ._schedule import schedule_from_dict as schedule_from_dict

__all__ = [
    "Brownout",
    "DrillFault",
    "DrillOptions",
    "ErrorBurst",
    "Latency",
    "Outage",
    "Overload",
    "Recorder",
    "SlowDatabase",
    "ZoneOutage",
    "default_schedule",
    "load_schedule",
    "run_drill",
    "schedule_from_dict",
]

#: Deprecated names (until asyncres 0.3): name -> (attribute of ._legacy, what to use instead).
_DEPRECATED = {
    "DrillConfig": ("drill_config", "DrillOptions(schedule, ...)"),
    "Faults": ("Faults", "the fault kinds Latency, ErrorBurst, Outage, SlowDatabase"),
    "PhaseSpec": ("PhaseSpec", "asyncres.chaos.Phase"),
    "Scenario": ("Scenario", "asyncres.chaos.Schedule"),
    "default_scenario": ("legacy_default_scenario", "default_schedule()"),
    "load_scenario": ("legacy_load_scenario", "load_schedule(path)"),
    "scenario_from_dict": ("legacy_scenario_from_dict", "schedule_from_dict(data)"),
}

if not typing.TYPE_CHECKING:

    def __getattr__(name: str) -> object:
        if name in _DEPRECATED:
            attribute, instead = _DEPRECATED[name]
            warnings.warn(
                f"asyncres.drill.{name} is deprecated and will be removed in asyncres 0.3: "
                f"use {instead}; the drill runs on asyncres.chaos.Schedule",
                DeprecationWarning,
                stacklevel=2,
            )
            from . import _legacy

            return getattr(_legacy, attribute)
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
