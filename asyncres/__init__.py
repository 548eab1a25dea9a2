"""asyncres: an async-first resilience toolkit on anyio (asyncio and trio).

Deadlines on both sides, retries with jittered backoff and budgets, and (with the rest of
the core) circuit breakers, bulkheads, hedging and fallbacks, as small composable policies.
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
from ._events import CallRejected as CallRejected
from ._events import CircuitClosed as CircuitClosed
from ._events import CircuitDisabled as CircuitDisabled
from ._events import CircuitHalfOpened as CircuitHalfOpened
from ._events import CircuitOpened as CircuitOpened
from ._events import Event as Event
from ._events import FallbackUsed as FallbackUsed
from ._events import HedgeLaunched as HedgeLaunched
from ._events import Listener as Listener
from ._events import RetryBudgetExhausted as RetryBudgetExhausted
from ._events import RetryGaveUp as RetryGaveUp
from ._events import RetryScheduled as RetryScheduled
from ._events import TimeoutExpired as TimeoutExpired
from ._events import get_listeners as get_listeners
from ._events import log_event as log_event
from ._events import set_listeners as set_listeners
from ._exceptions import BulkheadFullError as BulkheadFullError
from ._exceptions import CircuitOpenError as CircuitOpenError
from ._exceptions import RejectedError as RejectedError
from ._exceptions import ResilienceError as ResilienceError
from ._exceptions import ThrottledError as ThrottledError
from ._exceptions import TimeoutExceededError as TimeoutExceededError
from ._fallback import Fallback as Fallback
from ._hedge import Hedge as Hedge
from ._pipeline import Pipeline as Pipeline
from ._policy import Policy as Policy
from ._retry import Attempt as Attempt
from ._retry import Retry as Retry
from ._throttle import Throttle as Throttle
from ._throttle import ThrottleStatistics as ThrottleStatistics

__version__ = "0.1.0.dev0"

__all__ = [
    "Attempt",
    "Bulkhead",
    "BulkheadFullError",
    "BulkheadLane",
    "BulkheadStatistics",
    "CallRejected",
    "CircuitBreaker",
    "CircuitBreakerStatistics",
    "CircuitClosed",
    "CircuitDisabled",
    "CircuitHalfOpened",
    "CircuitOpenError",
    "CircuitOpened",
    "CircuitState",
    "DeadlineScope",
    "Event",
    "Fallback",
    "FallbackUsed",
    "Hedge",
    "HedgeLaunched",
    "Listener",
    "Pipeline",
    "Policy",
    "RejectedError",
    "ResilienceError",
    "Retry",
    "RetryBudget",
    "RetryBudgetExhausted",
    "RetryBudgetStatistics",
    "RetryGaveUp",
    "RetryScheduled",
    "Throttle",
    "ThrottleStatistics",
    "ThrottledError",
    "Timeout",
    "TimeoutExceededError",
    "TimeoutExpired",
    "backoff",
    "deadline",
    "events",
    "get_listeners",
    "log_event",
    "remaining",
    "set_listeners",
    "timeout",
]
