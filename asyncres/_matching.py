"""Which exceptions a policy handles: a type, a tuple of types, or a predicate."""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

__all__ = ["ErrorFilter", "matcher"]

ErrorFilter = type[BaseException] | tuple[type[BaseException], ...] | Callable[[Exception], bool]


def matcher(spec: ErrorFilter, parameter: str) -> Callable[[Exception], bool]:
    """Turn an ``on=``-style filter into a predicate, validating it.

    Only ``Exception`` subclasses may be named: cancellation and other ``BaseException``s
    are never handled by a policy. An empty tuple matches nothing (useful for ``exclude``).
    """
    if isinstance(spec, type) and issubclass(spec, BaseException):
        types: tuple[type[BaseException], ...] = (spec,)
    elif isinstance(spec, tuple):
        if not all(isinstance(t, type) and issubclass(t, BaseException) for t in spec):
            raise ValueError(f"`{parameter}` must be exception types or a predicate, got {spec!r}")
        types = spec
    elif callable(spec):
        return cast(Callable[[Exception], bool], spec)
    else:
        raise ValueError(f"`{parameter}` must be exception types or a predicate, got {spec!r}")
    if any(not issubclass(t, Exception) for t in types):
        raise ValueError(
            f"`{parameter}` must not include BaseException types: cancellation is never handled"
        )

    def matches(exc: Exception) -> bool:
        return isinstance(exc, types)

    return matches
