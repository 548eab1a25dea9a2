"""``asyncres.asgi``: the service side of the call, as pure ASGI 3 middleware.

`Deadline` runs each request inside the caller's deadline (``Request-Timeout``,
``grpc-timeout``), so work stops when the caller has given up. `Shedder` bounds the
requests running the app and sheds the excess before it queues (adaptive LIFO, CoDel,
RFC 9218 priority lanes). `Health` serves a shallow ``/healthz`` that touches nothing and a
deep ``/readyz`` whose checks are cached and run once for any number of concurrent probes.
`protect` puts the three around an app in the right order. No framework dependency: it
wraps any ASGI app (Starlette, FastAPI, Litestar, a bare callable) on any ASGI server,
asyncio or trio.
"""

from ._deadline import ASGIApp as ASGIApp
from ._deadline import Deadline as Deadline
from ._deadline import DeadlineStatistics as DeadlineStatistics
from ._health import Health as Health
from ._health import HealthStatistics as HealthStatistics
from ._protect import Protected as Protected
from ._protect import protect as protect
from ._shedder import SHED_REASONS as SHED_REASONS
from ._shedder import Shedder as Shedder
from ._shedder import ShedderStatistics as ShedderStatistics

__all__ = [
    "SHED_REASONS",
    "ASGIApp",
    "Deadline",
    "DeadlineStatistics",
    "Health",
    "HealthStatistics",
    "Protected",
    "Shedder",
    "ShedderStatistics",
    "protect",
]
