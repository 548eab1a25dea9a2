"""Events of `asyncres.db` pools (delivered like every asyncres event, see `asyncres.events.Event`).

A pool also emits the core `asyncres.events.CallRejected` when it refuses an operation, with
``reason`` ``"queue_full"``, ``"queue_timeout"`` or ``"closed"``: the same string as the
``reason`` of the `PoolExhaustedError` / `PoolClosedError` it raises.
"""

import logging
from dataclasses import dataclass
from typing import ClassVar

from .._events import Event

__all__ = [
    "ConnectionDiscarded",
    "ConnectionFailed",
    "ConnectionRecycled",
    "StatementInterrupted",
]


@dataclass(frozen=True, slots=True)
class ConnectionFailed(Event):
    """Opening a new connection failed with ``error``.

    ``background`` is true when the pool's maintenance task was topping up ``min_size``
    (it retries with backoff) and false when a waiting caller needed the connection (that
    caller gets the error).
    """

    __module__ = "asyncres.db"

    level: ClassVar[int] = logging.WARNING

    error: BaseException
    background: bool


@dataclass(frozen=True, slots=True)
class ConnectionDiscarded(Event):
    """A connection was thrown away because it could not be trusted any more.

    ``reason``: ``"broken"`` (a connection-level error), ``"ping_failed"`` (the pre-ping
    on checkout failed), ``"reset_failed"`` (it could not be reset, i.e. rolled back, in
    time after a failure or cancellation) or ``"closed"`` (the driver reports it closed).
    The pool replaces it as needed.
    """

    __module__ = "asyncres.db"

    level: ClassVar[int] = logging.WARNING

    reason: str
    error: BaseException | None


@dataclass(frozen=True, slots=True)
class ConnectionRecycled(Event):
    """A healthy connection was closed by maintenance: ``"idle"`` or ``"lifetime"``."""

    __module__ = "asyncres.db"

    level: ClassVar[int] = logging.DEBUG

    reason: str


@dataclass(frozen=True, slots=True)
class StatementInterrupted(Event):
    """A statement whose caller was cancelled or timed out was stopped in the database.

    asyncpg sends the server a cancel request; SQLite interrupts the statement. The
    connection was then rolled back and returned (or discarded, see `ConnectionDiscarded`).
    """

    __module__ = "asyncres.db"

    level: ClassVar[int] = logging.INFO
