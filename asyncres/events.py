"""Events: frozen facts about state changes, and the listeners that receive them.

Every policy takes ``listeners=`` (called for its own events) and every event also goes to
the process-wide listeners set with `set_listeners`; by default that is `log_event`, which
logs through the stdlib logger ``"asyncres"``. Events are emitted only off the success path:
a call that succeeds first time creates none.

::

    from asyncres import events

    def on_event(event: events.Event) -> None:
        if isinstance(event, events.CircuitOpened):
            page_someone(event.name, event.reason)

    events.set_listeners(events.log_event, on_event)

This module is the public home of every event class; the policies' names stay in the root
``asyncres`` namespace.
"""

from ._events import CallRejected as CallRejected
from ._events import CircuitClosed as CircuitClosed
from ._events import CircuitDisabled as CircuitDisabled
from ._events import CircuitHalfOpened as CircuitHalfOpened
from ._events import CircuitOpened as CircuitOpened
from ._events import EndpointEjected as EndpointEjected
from ._events import EndpointReadmitted as EndpointReadmitted
from ._events import Event as Event
from ._events import FallbackUsed as FallbackUsed
from ._events import HedgeLaunched as HedgeLaunched
from ._events import LimitChanged as LimitChanged
from ._events import Listener as Listener
from ._events import RetryBudgetExhausted as RetryBudgetExhausted
from ._events import RetryGaveUp as RetryGaveUp
from ._events import RetryScheduled as RetryScheduled
from ._events import StoreRecovered as StoreRecovered
from ._events import StoreUnavailable as StoreUnavailable
from ._events import ThrottleEngaged as ThrottleEngaged
from ._events import ThrottleReleased as ThrottleReleased
from ._events import TimeoutExpired as TimeoutExpired
from ._events import get_listeners as get_listeners
from ._events import log_event as log_event
from ._events import set_listeners as set_listeners

__all__ = [
    "CallRejected",
    "CircuitClosed",
    "CircuitDisabled",
    "CircuitHalfOpened",
    "CircuitOpened",
    "EndpointEjected",
    "EndpointReadmitted",
    "Event",
    "FallbackUsed",
    "HedgeLaunched",
    "LimitChanged",
    "Listener",
    "RetryBudgetExhausted",
    "RetryGaveUp",
    "RetryScheduled",
    "StoreRecovered",
    "StoreUnavailable",
    "ThrottleEngaged",
    "ThrottleReleased",
    "TimeoutExpired",
    "get_listeners",
    "log_event",
    "set_listeners",
]
