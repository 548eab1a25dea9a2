"""GuardedPool, split by concern.

- `_pool`: the public class: configuration, lifecycle, and the primitives that move a
  connection between states;
- `_checkout`: the lease (``pool.connection()``, ``pool.run``), waiting, release and reset;
- `_maintenance`: opening, keeping ``min_size``, retiring idle and old connections, shutdown;
- `_health`: ``pool.health(deep=...)``;
- `_state`: the pool's and each connection's state enums, the counters, `PoolStatistics`;
- `_defaults`: every default value, the default retry and breaker, `PoolOptions`.

The waiter queue is the shared `asyncres._waiters.WaiterQueue`.
"""

from ._defaults import PoolOptions as PoolOptions
from ._defaults import default_breaker as default_breaker
from ._defaults import default_retry as default_retry
from ._health import PoolHealth as PoolHealth
from ._pool import GuardedPool as GuardedPool
from ._state import ConnectionState as ConnectionState
from ._state import PoolState as PoolState
from ._state import PoolStatistics as PoolStatistics

__all__ = [
    "ConnectionState",
    "GuardedPool",
    "PoolHealth",
    "PoolOptions",
    "PoolState",
    "PoolStatistics",
    "default_breaker",
    "default_retry",
]
