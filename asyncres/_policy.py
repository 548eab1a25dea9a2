"""The one contract every policy implements, and the faces built on top of it."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ParamSpec, Protocol, TypeVar, runtime_checkable

__all__ = ["Policy", "PolicyFaces"]

T = TypeVar("T")
P = ParamSpec("P")


@runtime_checkable
class Policy(Protocol):
    """Anything that can run a zero-argument async function under its rules.

    ``execute`` is the whole contract; `Pipeline` composes policies through it.
    """

    async def execute(self, fn: Callable[[], Awaitable[T]], /) -> T: ...


Policy.__module__ = "asyncres"


class PolicyFaces:
    """The three faces of a policy, from one ``call`` method.

    ``await policy.call(fn, *args, **kwargs)``, ``await policy.execute(fn)`` and the
    decorator ``@policy``, which keeps the wrapped signature for type checkers.
    """

    __slots__ = ()

    async def call(self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        raise NotImplementedError

    async def execute(self, fn: Callable[[], Awaitable[T]], /) -> T:
        """Run ``await fn()`` under this policy (the `Policy` contract)."""
        return await self.call(fn)

    def __call__(self, fn: Callable[P, Awaitable[T]], /) -> Callable[P, Coroutine[Any, Any, T]]:
        """Decorate an async function so every call runs under this policy."""
        call = self.call

        @functools.wraps(fn)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            return await call(fn, *args, **kwargs)

        return wrapper
