"""The seam the tracing/metrics bridge (`asyncres.otel`) plugs into.

``hooks`` stays ``None`` until a bridge installs itself: an uninstrumented call pays one
module-attribute load to find that out, and nothing else. When hooks are installed, calls
take their policy's general path, where each attempt runs inside ``hooks.attempt(...)``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from typing import Any, Protocol, TypeVar

__all__ = ["Hooks", "hooks", "install", "observed"]

T = TypeVar("T")


class Hooks(Protocol):
    """What a bridge implements. ``kind`` is ``"retry"``, ``"hedge"`` or ``"pipeline"``;
    ``name`` is the policy's name (``None`` when it has none)."""

    def attempt(self, kind: str, name: str | None, number: int) -> AbstractContextManager[None]:
        """Around one attempt: a retry's ``number`` counts from 1, a hedge's is the extra
        attempt's (1 for the first hedge; the original attempt is the caller's own)."""

    def call(self, kind: str, name: str | None) -> AbstractContextManager[None]:
        """Around one whole call of a pipeline (``kind`` ``"pipeline"``)."""

    def http_attempt(self, request: Any, number: int) -> None:
        """The httpx adapter is about to send ``request`` for the ``number``-th time."""

    def event(self, event: Any) -> None:
        """An event was emitted (after the listeners got it)."""


hooks: Hooks | None = None


def install(new: Hooks | None) -> Hooks | None:
    """Install ``new`` (``None`` removes); return the hooks it replaces."""
    global hooks
    previous, hooks = hooks, new
    return previous


async def observed(
    current: Hooks,
    kind: str,
    name: str | None,
    number: int,
    fn: Callable[..., Awaitable[T]],
    *args: Any,
    **kwargs: Any,
) -> T:
    """``await fn(*args, **kwargs)`` as one observed attempt."""
    with current.attempt(kind, name, number):
        return await fn(*args, **kwargs)
