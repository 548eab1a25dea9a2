"""The adapter contract between `GuardedPool` and a database driver."""

from __future__ import annotations

import warnings
from collections.abc import Awaitable
from typing import Any, Protocol, TypeVar, cast

__all__ = ["CONNECTION", "TRANSIENT", "Driver", "reset_capable"]

C = TypeVar("C")

#: `Driver.classify` flag: a retry may succeed (conflicts, busy, lost connections).
TRANSIENT = 1
#: `Driver.classify` flag: the connection or the server is unusable (counts for the breaker).
CONNECTION = 2


class Driver(Protocol[C]):
    """What `GuardedPool` needs from a driver; one adapter per driver (aiosqlite, asyncpg).

    Connections of type ``C`` are the driver's own objects, handed to users unwrapped.
    Every method except `connect` and `close` is called only on a connection the pool
    owns. Methods are awaited inside the pool's own time limits (cancel scopes): they
    need no timeouts of their own, and must let cancellation through.
    """

    #: Short name used in messages ("sqlite", "postgres").
    name: str

    def configure(self, *, statement_timeout: float | None) -> None:
        """Called once by the pool: each statement may run at most ``statement_timeout``."""
        ...

    def check_runtime(self) -> None:
        """Raise ``RuntimeError`` when the running event loop cannot drive this driver."""
        ...

    async def connect(self) -> C:
        """Open one connection (in autocommit mode: the pool issues BEGIN itself)."""
        ...

    async def close(self, conn: C, *, hard: bool) -> None:
        """Close ``conn``; ``hard`` means it may be mid-statement or broken: abort it."""
        ...

    def is_broken(self, conn: C) -> bool:
        """Cheap local check: is ``conn`` known to be closed or unusable?"""
        ...

    def needs_reset(self, conn: C) -> bool:
        """Cheap local check: is ``conn`` in a transaction or still finishing a statement?

        (Formerly ``needs_recovery``: a driver with the old names still works until 0.3,
        with a ``DeprecationWarning`` when the pool is built.)
        """
        ...

    def prepare(self, conn: C, left: float | None) -> Awaitable[None] | None:
        """Bound a checkout's statements by the caller's deadline, ``left`` seconds away.

        ``left`` is ``None`` without a deadline. The database should stop a statement that
        outlives ``min(statement_timeout, left)``. Returns an awaitable when that needs a
        round trip, else ``None`` (the fast path).
        """
        ...

    async def begin(self, conn: C, left: float | None) -> None:
        """`prepare` and start a transaction, in as few round trips as possible."""
        ...

    async def commit(self, conn: C) -> None:
        """Commit the transaction started by `begin`."""
        ...

    async def ping(self, conn: C) -> None:
        """One cheap round trip; raise when the connection does not answer properly."""
        ...

    def release(self, conn: C) -> None:
        """The checkout ended: drop its statement limit (synchronous, no I/O)."""
        ...

    async def reset(self, conn: C, *, abandoned: bool) -> bool:
        """Make ``conn`` clean again after a failed checkout: roll back; raise if unusable.

        (Formerly ``recover``.)

        ``abandoned`` means the caller was cancelled (or its deadline fired): a statement
        may still be running, and must be stopped rather than waited for. Returns whether
        a running statement had to be stopped.
        """
        ...

    def classify(self, exc: BaseException) -> int:
        """`TRANSIENT` and/or `CONNECTION` flags for an error, or 0."""
        ...


class _RenamedMethods:
    """A driver written against the old names (``needs_recovery``, ``recover``), adapted."""

    def __init__(self, driver: Any) -> None:
        self._wrapped = driver
        self.needs_reset = driver.needs_recovery
        self.reset = driver.recover

    def __getattr__(self, name: str) -> Any:
        return getattr(self._wrapped, name)

    def __repr__(self) -> str:
        return repr(self._wrapped)


def reset_capable(driver: Driver[C]) -> Driver[C]:
    """``driver`` itself, or an adapter when it still has the pre-0.2 method names."""
    if hasattr(driver, "reset") or not hasattr(driver, "recover"):
        return driver
    warnings.warn(
        f"{type(driver).__name__}: the Driver methods needs_recovery() and recover() are "
        "deprecated: rename them needs_reset() and reset()",
        DeprecationWarning,
        stacklevel=3,
    )
    return cast("Driver[C]", _RenamedMethods(driver))
