"""``asyncres drill``: a GameDay on one machine.

Starts a small real HTTP service backed by SQLite (through `asyncres.db`) on loopback, puts
a `asyncres.chaos.FaultProxy` in front of it, and drives the same open-loop traffic through
two clients side by side — a naive one (httpx + the usual tenacity retry) and one protected
by `asyncres.httpx.ResilientTransport` — while a fault schedule runs: steady, latency spike,
error burst with Retry-After, hard outage, slow database, recovery. It shows live numbers,
then writes a JSON report and a chart, and says whether the protected client won.

Needs the ``drill`` extra: ``pip install 'asyncres[drill]'``.
"""

from ._metrics import Recorder as Recorder
from ._run import DrillConfig as DrillConfig
from ._run import run_drill as run_drill
from ._scenario import Faults as Faults
from ._scenario import PhaseSpec as PhaseSpec
from ._scenario import Scenario as Scenario
from ._scenario import default_scenario as default_scenario
from ._scenario import load_scenario as load_scenario
from ._scenario import scenario_from_dict as scenario_from_dict

__all__ = [
    "DrillConfig",
    "Faults",
    "PhaseSpec",
    "Recorder",
    "Scenario",
    "default_scenario",
    "load_scenario",
    "run_drill",
    "scenario_from_dict",
]
