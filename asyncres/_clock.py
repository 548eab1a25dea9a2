"""The event loop's clock, read fast, so that virtual clocks in tests see the same time.

Reading the loop's clock through anyio costs about 1 µs and even
``asyncio.get_running_loop().time()`` about 0.3 µs on this machine class (finding the
running loop is the slow part). Hot paths that need the time on every call (time-window
circuit breakers) resolve a clock once with `resolve_clock()` and keep it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from ._backend import BaseEventLoop, trio_module
from ._backend import running_loop as _get_running_loop

__all__ = ["current_time", "resolve_clock", "resolve_duration_clock"]

Clock = Callable[[], float]


def current_time() -> float:
    """``anyio.current_time()`` without anyio's backend dispatch.

    asyncio: the running loop's ``time()`` (looptime patches it in tests); trio:
    ``trio.current_time()`` (``MockClock`` in tests).
    """
    loop = _get_running_loop()
    if loop is not None:
        return loop.time()
    return float(trio_module().current_time())


def resolve_clock() -> Clock:
    """The cheapest clock that always agrees with the running loop's, for later calls.

    - asyncio with a stock loop: ``time.monotonic`` itself (what ``BaseEventLoop.time``
      returns), valid for every later stock loop too;
    - trio: ``trio.current_time``, which follows whichever run is current;
    - any other loop (uvloop, looptime's virtual clock): `current_time`, which asks the
      running loop on each call.

    Must be called from inside a running loop.
    """
    loop = _get_running_loop()
    if loop is None:
        current: Clock = trio_module().current_time
        return current
    if type(loop).time is BaseEventLoop.time:
        return time.monotonic
    return current_time


def resolve_duration_clock() -> Clock:
    """The cheapest clock whose *differences* agree with the running loop's clock.

    For durations only (a call's round-trip time; a rate limit's arrival times, compared
    with each other and slept by difference): the same as `resolve_clock`, except on
    trio with its default clock, whose time is ``time.perf_counter()`` plus a fixed offset —
    there ``time.perf_counter`` (45 ns) replaces ``trio.current_time`` (140 ns). A
    ``MockClock`` (tests) or any other clock keeps ``trio.current_time``.

    Must be called from inside a running loop.
    """
    if _get_running_loop() is None:
        clock_type = type(trio_module().lowlevel.current_clock())
        if clock_type.__name__ == "SystemClock" and clock_type.__module__.startswith("trio."):
            return time.perf_counter
    return resolve_clock()
