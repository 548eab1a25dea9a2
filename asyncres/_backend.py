"""The one seam between asyncres and the event loop underneath (asyncio or trio).

Everything that depends on which backend runs, and every use of anyio's private internals,
lives here; the rest of the package asks this module.
"""

from __future__ import annotations

import asyncio
from asyncio.events import _get_running_loop

__all__ = ["current_task", "running_loop"]

#: The running asyncio loop, or ``None`` (under trio, or outside any loop). Fast: a C call.
running_loop = _get_running_loop


def current_task() -> object:
    """The running task (asyncio or trio); ``None`` outside any task."""
    loop = _get_running_loop()
    if loop is not None:
        return asyncio.current_task(loop)
    try:
        import trio

        return trio.lowlevel.current_task()
    except (ImportError, RuntimeError):
        return None
