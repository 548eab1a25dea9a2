"""asyncres: an async-first resilience toolkit on anyio (asyncio and trio).

Deadlines on both sides, retries with jittered backoff and adaptive budgets, circuit
breakers, bulkheads, adaptive concurrency limits, client-side throttling, hedging and
fallbacks, as small composable policies.
"""

from . import backoff as backoff
from . import events as events
from ._breaker import CircuitBreaker as CircuitBreaker
from ._breaker import CircuitBreakerStatistics as CircuitBreakerStatistics
from ._breaker import CircuitState as CircuitState
from ._budget import RetryBudget as RetryBudget
from ._budget import RetryBudgetStatistics as RetryBudgetStatistics
from ._bulkhead import Bulkhead as Bulkhead
from ._bulkhead import BulkheadLane as BulkheadLane
from ._bulkhead import BulkheadStatistics as BulkheadStatistics
from ._deadline import DeadlineScope as DeadlineScope
from ._deadline import Timeout as Timeout
from ._deadline import deadline as deadline
from ._deadline import remaining as remaining
from ._deadline import timeout as timeout
from ._endpoints import Endpoint as Endpoint
from ._endpoints import EndpointGroup as EndpointGroup
from ._endpoints import EndpointGroupStatistics as EndpointGroupStatistics
from ._endpoints import EndpointStatistics as EndpointStatistics
from ._endpoints import Route as Route
from ._exceptions import BulkheadFullError as BulkheadFullError
from ._exceptions import CircuitOpenError as CircuitOpenError
from ._exceptions import LimitExceededError as LimitExceededError
from ._exceptions import RateLimitedError as RateLimitedError
from ._exceptions import RejectedError as RejectedError
from ._exceptions import ResilienceError as ResilienceError
from ._exceptions import ThrottledError as ThrottledError
from ._exceptions import TimeoutExceededError as TimeoutExceededError
from ._fallback import Fallback as Fallback
from ._hedge import Hedge as Hedge
from ._limit import AdaptiveLimit as AdaptiveLimit
from ._limit import AdaptiveLimitLane as AdaptiveLimitLane
from ._limit import LimitStatistics as LimitStatistics
from ._pipeline import Pipeline as Pipeline
from ._policy import Policy as Policy
from ._rate_limit import RateLimit as RateLimit
from ._rate_limit import RateLimitKey as RateLimitKey
from ._rate_limit import RateLimitStatistics as RateLimitStatistics
from ._retry import Attempt as Attempt
from ._retry import Retry as Retry
from ._throttle import Throttle as Throttle
from ._throttle import ThrottleStatistics as ThrottleStatistics

# Names that moved to `asyncres.events` in 0.2: still importable from the root until 0.3.
_MOVED_TO_EVENTS = frozenset(
    {
        "CallRejected",
        "CircuitClosed",
        "CircuitDisabled",
        "CircuitHalfOpened",
        "CircuitOpened",
        "Event",
        "FallbackUsed",
        "HedgeLaunched",
        "Listener",
        "RetryBudgetExhausted",
        "RetryGaveUp",
        "RetryScheduled",
        "ThrottleEngaged",
        "ThrottleReleased",
        "TimeoutExpired",
        "get_listeners",
        "log_event",
        "set_listeners",
    }
)


def __getattr__(name: str) -> object:
    if name in _MOVED_TO_EVENTS:
        import warnings

        warnings.warn(
            f"asyncres.{name} is deprecated, use asyncres.events.{name}",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(events, name)
    raise AttributeError(f"module 'asyncres' has no attribute {name!r}")


__version__ = "0.1.0.dev0"

__all__ = [
    "AdaptiveLimit",
    "AdaptiveLimitLane",
    "Attempt",
    "Bulkhead",
    "BulkheadFullError",
    "BulkheadLane",
    "BulkheadStatistics",
    "CircuitBreaker",
    "CircuitBreakerStatistics",
    "CircuitOpenError",
    "CircuitState",
    "DeadlineScope",
    "Endpoint",
    "EndpointGroup",
    "EndpointGroupStatistics",
    "EndpointStatistics",
    "Fallback",
    "Hedge",
    "LimitExceededError",
    "LimitStatistics",
    "Pipeline",
    "Policy",
    "RateLimit",
    "RateLimitKey",
    "RateLimitStatistics",
    "RateLimitedError",
    "RejectedError",
    "ResilienceError",
    "Retry",
    "RetryBudget",
    "RetryBudgetStatistics",
    "Route",
    "Throttle",
    "ThrottleStatistics",
    "ThrottledError",
    "Timeout",
    "TimeoutExceededError",
    "backoff",
    "deadline",
    "events",
    "remaining",
    "timeout",
]
