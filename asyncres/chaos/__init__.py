"""Fault injection: break things on purpose, in tests and in GameDay drills.

- Policies for any `Pipeline` (innermost): `InjectError`, `InjectLatency`, `InjectResult`;
  a `Schedule` of `Phase` objects turns faults on and off over time.
- `ChaosTransport` (needs httpx, imported on first use): HTTP faults between an httpx client
  and its real transport — `HttpStatusFault`, `HttpLatencyFault`, `HttpDisconnectFault`,
  `HttpTruncateFault`.
- `FaultProxy`: a TCP proxy on loopback with Toxiproxy's toxics — `LatencyToxic`,
  `BandwidthToxic`, `SlowCloseToxic`, `TimeoutToxic`, `ResetPeerToxic`, `SlicerToxic`,
  `LimitDataToxic` — and "down" (``proxy.enabled = False``).

Every fault has a rate (or toxicity), an ``enabled`` switch and a seedable generator.
Only anyio is needed, except by `ChaosTransport`.
"""

import typing

from ._events import FaultInjected as FaultInjected
from ._events import PhaseStarted as PhaseStarted
from ._http import ChaosTransportStatistics as ChaosTransportStatistics
from ._http import HttpDisconnectFault as HttpDisconnectFault
from ._http import HttpFault as HttpFault
from ._http import HttpLatencyFault as HttpLatencyFault
from ._http import HttpStatusFault as HttpStatusFault
from ._http import HttpTruncateFault as HttpTruncateFault
from ._inject import Distribution as Distribution
from ._inject import InjectError as InjectError
from ._inject import InjectionStatistics as InjectionStatistics
from ._inject import InjectLatency as InjectLatency
from ._inject import InjectResult as InjectResult
from ._phase import Phase as Phase
from ._proxy import FaultProxy as FaultProxy
from ._proxy import FaultProxyStatistics as FaultProxyStatistics
from ._schedule import Schedule as Schedule
from ._switch import Switch as Switch
from ._switch import Switchable as Switchable
from ._toxics import BandwidthToxic as BandwidthToxic
from ._toxics import Direction as Direction
from ._toxics import LatencyToxic as LatencyToxic
from ._toxics import LimitDataToxic as LimitDataToxic
from ._toxics import ResetPeerToxic as ResetPeerToxic
from ._toxics import SlicerToxic as SlicerToxic
from ._toxics import SlowCloseToxic as SlowCloseToxic
from ._toxics import TimeoutToxic as TimeoutToxic
from ._toxics import Toxic as Toxic
from ._toxics import make_toxic as make_toxic
from ._toxics import parse_toxic as parse_toxic

if typing.TYPE_CHECKING:
    from ._transport import ChaosTransport as ChaosTransport
else:

    def __getattr__(name: str) -> object:
        # ChaosTransport subclasses httpx's transport: import httpx only when asked for.
        if name == "ChaosTransport":
            from ._transport import ChaosTransport

            globals()["ChaosTransport"] = ChaosTransport
            return ChaosTransport
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "BandwidthToxic",
    "ChaosTransport",
    "ChaosTransportStatistics",
    "Direction",
    "Distribution",
    "FaultInjected",
    "FaultProxy",
    "FaultProxyStatistics",
    "HttpDisconnectFault",
    "HttpFault",
    "HttpLatencyFault",
    "HttpStatusFault",
    "HttpTruncateFault",
    "InjectError",
    "InjectLatency",
    "InjectResult",
    "InjectionStatistics",
    "LatencyToxic",
    "LimitDataToxic",
    "Phase",
    "PhaseStarted",
    "ResetPeerToxic",
    "Schedule",
    "SlicerToxic",
    "SlowCloseToxic",
    "Switch",
    "Switchable",
    "TimeoutToxic",
    "Toxic",
    "make_toxic",
    "parse_toxic",
]
