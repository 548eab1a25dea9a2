"""The pool's books: its lifecycle, each connection's state, and the counters.

A connection moves ``IDLE -> IN_USE -> IDLE`` on the fast path; a failed or abandoned
checkout takes it through ``RESETTING``; ``CLOSED`` is final (discarded, recycled or closed
with the pool). Connections being opened have no object yet: the ``opening`` counter holds
them. At every await point ``size == idle + in_use + opening + resetting``.
"""

from __future__ import annotations

import enum
import warnings
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

__all__ = ["Connection", "ConnectionState", "Counters", "PoolState", "PoolStatistics"]

C = TypeVar("C")


class PoolState(enum.Enum):
    """The pool's lifecycle: ``NEW -> OPEN -> CLOSING -> CLOSED`` (opened once)."""

    NEW = "new"
    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


class ConnectionState(enum.Enum):
    """Where one pooled connection is (httpcore keeps a state per connection likewise)."""

    IDLE = "idle"
    IN_USE = "in_use"  # checked out, or handed to a waiter that has not resumed yet
    RESETTING = "resetting"  # being rolled back in the background after a failed checkout
    CLOSED = "closed"


# Module-level aliases: the hot paths compare against these without an enum lookup.
NEW = PoolState.NEW
OPEN = PoolState.OPEN
CLOSING = PoolState.CLOSING
CLOSED = PoolState.CLOSED
IDLE = ConnectionState.IDLE
IN_USE = ConnectionState.IN_USE
RESETTING = ConnectionState.RESETTING
GONE = ConnectionState.CLOSED


class Connection(Generic[C]):
    """One pooled connection (the driver's object, unwrapped) and its bookkeeping."""

    __slots__ = ("conn", "created", "expires", "last_used", "state")

    def __init__(self, conn: C, now: float, expires: float) -> None:
        self.conn = conn
        self.created = now
        self.last_used = now
        self.expires = expires
        self.state = IDLE

    def __repr__(self) -> str:
        return f"<Connection {self.state.value} {self.conn!r}>"


class Counters:
    """The pool's gauges (connections per state) and its counters since it opened.

    Idle connections and waiters are counted by their containers, not here.
    """

    __slots__ = (
        "acquired",
        "closing",
        "discarded",
        "in_use",
        "interrupted",
        "max_wait",
        "open_failures",
        "opened",
        "opening",
        "recycled",
        "rejected",
        "resetting",
        "size",
        "timed_out",
        "waited",
    )

    def __init__(self) -> None:
        # Gauges.
        self.size = 0
        self.in_use = 0
        self.opening = 0
        self.resetting = 0
        self.closing = 0  # connections being closed in the background (not in size)
        # Counters.
        self.acquired = 0
        self.waited = 0
        self.max_wait = 0.0
        self.rejected = 0
        self.timed_out = 0
        self.opened = 0
        self.open_failures = 0
        self.discarded = 0
        self.recycled = 0
        self.interrupted = 0

    def move(self, connection: Connection[Any], state: ConnectionState) -> None:
        """The one transition off the fast path: ``connection`` goes to ``state``.

        Updates the gauges of the old and the new state (``CLOSED`` leaves ``size``). The
        caller puts the connection in the idle list itself when the new state is ``IDLE``.
        """
        old = connection.state
        if old is IN_USE:
            self.in_use -= 1
        elif old is RESETTING:
            self.resetting -= 1
        if state is IN_USE:
            self.in_use += 1
        elif state is RESETTING:
            self.resetting += 1
        elif state is GONE:
            self.size -= 1
        connection.state = state

    def note_wait(self, waited: float) -> None:
        self.waited += 1
        if waited > self.max_wait:
            self.max_wait = waited


@dataclass(frozen=True, slots=True)
class PoolStatistics:
    """A snapshot of a `GuardedPool`: its connections now, and counters since it opened.

    ``size`` counts every connection the pool owns or is opening:
    ``size == idle + in_use + opening + resetting``.
    """

    __module__ = "asyncres.db"

    #: Connections owned, including those being opened.
    size: int
    #: Connections ready in the pool.
    idle: int
    #: Connections checked out (or handed to a waiter that has not resumed yet).
    in_use: int
    #: Connections being opened.
    opening: int
    #: Connections being reset (rolled back) after a failure or cancellation, in the background.
    resetting: int
    #: Callers waiting for a connection.
    waiting: int
    min_size: int
    max_size: int
    max_queued: int
    #: Successful checkouts.
    acquired: int
    #: Checkouts that had to wait for a connection.
    waited: int
    #: The longest time a checkout waited, in seconds.
    max_wait: float
    #: Callers refused at once because ``max_queued`` callers were already waiting.
    rejected: int
    #: Callers that waited ``acquire_timeout`` in vain.
    timed_out: int
    #: Connections opened, and attempts to open one that failed.
    opened: int
    open_failures: int
    #: Connections thrown away as untrustworthy, and healthy ones closed by maintenance.
    discarded: int
    recycled: int
    #: Checkouts abandoned by a cancelled or timed-out caller, cleaned up in the background.
    interrupted: int

    @property
    def recovering(self) -> int:
        """Deprecated alias of `resetting` (until 0.3)."""
        warnings.warn(
            "PoolStatistics.recovering is deprecated: use PoolStatistics.resetting",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.resetting
