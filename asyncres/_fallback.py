"""Fallback: degrade gracefully, replacing a failed call's outcome with a substitute."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any, ParamSpec, TypeVar, cast, overload

from ._events import FallbackUsed, Listener, emit
from ._matching import ErrorFilter, matcher
from ._policy import PolicyFaces
from ._setting import Setting

__all__ = ["Fallback"]

T = TypeVar("T")
P = ParamSpec("P")

_MISSING: Any = object()


class Fallback(PolicyFaces):
    """Return a substitute when a call fails with an error matched by ``on``.

    Exactly one of ``value`` (returned as it is) or ``factory`` (an async callable, awaited
    with the error: ``await factory(error)``) gives the substitute. ``on`` (required) picks
    the errors to replace: a type, a tuple of types, or a predicate; others propagate
    untouched, and so do cancellation and every other ``BaseException``. ``on_result``
    makes a result count as a failure too (the factory then receives ``None``).

    An error raised by the factory propagates, chained from the original
    (``__cause__``). Every substitution emits `FallbackUsed`.

    Type checkers cannot see that the substitute has the wrapped function's result type:
    keep them compatible (``value=None`` only for functions returning an ``Optional``).
    """

    __slots__ = ("_factory", "_listeners", "_match", "_name", "_on", "_on_result", "_value")

    __module__ = "asyncres"

    on: Setting[ErrorFilter] = Setting()
    value: Setting[object] = Setting()
    factory: Setting[Callable[[Any], Awaitable[object]] | None] = Setting()
    on_result: Setting[Callable[[Any], bool] | None] = Setting()
    name: Setting[str | None] = Setting()

    @overload
    def __init__(
        self,
        *,
        on: ErrorFilter,
        value: object,
        on_result: Callable[[Any], bool] | None = None,
        name: str | None = None,
        listeners: Iterable[Listener] = (),
    ) -> None: ...

    @overload
    def __init__(
        self,
        *,
        on: ErrorFilter,
        factory: Callable[[Exception], Awaitable[object]],
        name: str | None = None,
        listeners: Iterable[Listener] = (),
    ) -> None: ...

    @overload
    def __init__(
        self,
        *,
        on: ErrorFilter,
        factory: Callable[[Exception | None], Awaitable[object]],
        on_result: Callable[[Any], bool],
        name: str | None = None,
        listeners: Iterable[Listener] = (),
    ) -> None: ...

    def __init__(
        self,
        *,
        on: ErrorFilter,
        value: object = _MISSING,
        factory: Callable[[Any], Awaitable[object]] | None = None,
        on_result: Callable[[Any], bool] | None = None,
        name: str | None = None,
        listeners: Iterable[Listener] = (),
    ) -> None:
        if (value is _MISSING) == (factory is None):
            raise ValueError("exactly one of `value` or `factory` must be given")
        if factory is not None and not callable(factory):
            raise ValueError(f"`factory` must be an async callable, got {factory!r}")
        if on_result is not None and not callable(on_result):
            raise ValueError(f"`on_result` must be callable, got {on_result!r}")
        if on == () and on_result is None:
            raise ValueError("`on` must name at least one exception type")
        self._match = matcher(on, "on")
        self._on = on
        self._value = None if value is _MISSING else value
        self._factory = factory
        self._on_result = on_result
        self._name = name
        self._listeners = tuple(listeners)

    def __repr__(self) -> str:
        on = getattr(self.on, "__name__", None) or repr(self.on)
        if self.factory is not None:
            factory = self.factory
            substitute = f"factory={getattr(factory, '__qualname__', None) or repr(factory)}"
        else:
            substitute = f"value={self.value!r}"
        on_result = ", on_result=..." if self.on_result is not None else ""
        name = f", name={self.name!r}" if self.name else ""
        return f"Fallback(on={on}, {substitute}{on_result}{name})"

    async def call(self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``await fn(*args, **kwargs)``; on a matched failure, return the substitute."""
        try:
            result = await fn(*args, **kwargs)
        except Exception as exc:
            if not self._match(exc):
                raise
            error: Exception | None = exc
        else:
            on_result = self._on_result
            if on_result is None or not on_result(result):
                return result
            error = None
        # Outside the except block, so that a factory's error is not implicitly chained.
        return cast(T, await self._substitute(error))

    def __call__(self, fn: Callable[P, Awaitable[T]], /) -> Callable[P, Coroutine[Any, Any, T]]:
        """Decorate an async function: a matched failure returns the substitute."""
        match = self._match
        on_result = self._on_result
        substitute = self._substitute

        # call()'s body, inlined: the success path is one await in a try.
        @functools.wraps(fn)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            try:
                result = await fn(*args, **kwargs)
            except Exception as exc:
                if not match(exc):
                    raise
                error: Exception | None = exc
            else:
                if on_result is None or not on_result(result):
                    return result
                error = None
            return cast(T, await substitute(error))

        return wrapper

    async def _substitute(self, error: Exception | None) -> object:
        emit(self._listeners, FallbackUsed(self._name, error))
        factory = self._factory
        if factory is None:
            return self._value
        try:
            return await factory(error)
        except Exception as exc:
            if exc is not error and exc.__cause__ is None:
                exc.__cause__ = error
            raise
