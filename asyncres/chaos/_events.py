"""Events of the chaos toolkit: which fault fired, and which phase of a schedule began."""

import logging
from dataclasses import dataclass
from typing import ClassVar

from .._events import Event

__all__ = ["FaultInjected", "PhaseStarted"]


@dataclass(frozen=True, slots=True)
class FaultInjected(Event):
    """A fault fired on one call or request.

    ``fault`` names the kind (``"error"``, ``"latency"``, ``"result"``, ``"http_status"``,
    ``"http_latency"``, ``"http_disconnect"``, ``"http_truncate"``); ``detail`` is what was
    injected: the exception, the delay in seconds, the result, the status code, ...
    Logged at DEBUG: during a drill faults fire on many calls.
    """

    __module__ = "asyncres.chaos"

    level: ClassVar[int] = logging.DEBUG

    fault: str
    detail: object


@dataclass(frozen=True, slots=True)
class PhaseStarted(Event):
    """Schedule ``name`` entered phase number ``index`` (from 0), called ``phase``,
    ``at`` seconds after the schedule started (for ``repeat=True``: in the current round)."""

    __module__ = "asyncres.chaos"

    index: int
    phase: str
    at: float
