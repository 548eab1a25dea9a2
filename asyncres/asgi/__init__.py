"""``asyncres.asgi``: the service side of the call, as pure ASGI 3 middleware.

`Deadline` runs each request inside the caller's deadline (``Request-Timeout``,
``grpc-timeout``), so work stops when the caller has given up. `Health` serves a shallow
``/healthz`` that touches nothing and a deep ``/readyz`` whose checks are cached and run
once for any number of concurrent probes. No framework dependency:
it wraps any ASGI app (Starlette, FastAPI, Litestar, a bare callable) on any ASGI server,
asyncio or trio.
"""

from ._deadline import ASGIApp as ASGIApp
from ._deadline import Deadline as Deadline
from ._deadline import DeadlineStatistics as DeadlineStatistics
from ._health import Health as Health
from ._health import HealthStatistics as HealthStatistics

__all__ = ["ASGIApp", "Deadline", "DeadlineStatistics", "Health", "HealthStatistics"]
