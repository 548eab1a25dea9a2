"""Driver-independent error classification (`is_transient`, `is_connection_error`)."""

from __future__ import annotations

from ._driver import CONNECTION, TRANSIENT
from ._errors import ConnectTimeoutError
from ._postgres import classify_postgres
from ._sqlite import classify_sqlite

__all__ = ["is_connection_error", "is_transient"]


def _flags(exc: BaseException) -> int:
    if isinstance(exc, ConnectTimeoutError):
        return CONNECTION | TRANSIENT
    return classify_sqlite(exc) | classify_postgres(exc)


def is_transient(exc: BaseException) -> bool:
    """Whether retrying the transaction may succeed: the default retry's ``on=``.

    SQLite: busy / locked, a statement stopped by ``statement_timeout``. PostgreSQL:
    serialization failure (40001), deadlock (40P01), lock not available (55P03), statement
    timeout (57014). Both: every connection-level error (`is_connection_error`). The
    database rolled the transaction back in each case, so running it again is safe.
    Constraint violations, syntax errors and the like are not transient; cancellation
    never is. Usable as ``Retry(on=asyncres.db.is_transient)``.
    """
    return bool(_flags(exc) & TRANSIENT)


def is_connection_error(exc: BaseException) -> bool:
    """Whether the database or the connection to it is unusable: what trips the breaker.

    Refused, reset or timed-out connections, connections closed under us, PostgreSQL's
    connection exceptions (08xxx), admin / crash shutdown (57P01, 57P02), cannot connect
    now (57P03), too many connections (53300); SQLite's cannot-open and I/O errors.
    """
    return bool(_flags(exc) & CONNECTION)
