"""Run an async test on a fresh, plain asyncio loop in real time (for asyncio-only drivers).

aiosqlite and asyncpg run on asyncio only and do real I/O in real time, so their tests get
neither trio nor a virtual clock. Each test runs in an ``asyncio.Runner``: a loop of its own,
closed afterwards, invisible to the virtual-clock plugins of the rest of the suite.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec

P = ParamSpec("P")


def asyncio_test(fn: Callable[P, Coroutine[Any, Any, None]]) -> Callable[P, None]:
    """Decorate an async test function; pytest sees a plain test with the same fixtures."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> None:
        # With a loop factory, the runner leaves the policy's current loop alone (another
        # plugin may have parked one there; replacing it would orphan it).
        with asyncio.Runner(loop_factory=asyncio.new_event_loop) as runner:
            runner.run(fn(*args, **kwargs))

    return wrapper
