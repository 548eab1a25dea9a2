"""Shared checks for constructor arguments: each raises ValueError naming the parameter."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TypeVar

T = TypeVar("T")


def non_negative(name: str, value: float) -> float:
    """Return ``value`` as a float, refusing NaN and negatives (``inf`` is allowed)."""
    value = _number(name, value)
    if not value >= 0.0:  # also catches NaN
        raise ValueError(f"`{name}` must be >= 0, got {value!r}")
    return value


def positive(name: str, value: float) -> float:
    """Return ``value`` as a float, refusing NaN, zero and negatives."""
    value = _number(name, value)
    if not value > 0.0:
        raise ValueError(f"`{name}` must be > 0, got {value!r}")
    return value


def finite_positive(name: str, value: float) -> float:
    value = positive(name, value)
    if math.isinf(value):
        raise ValueError(f"`{name}` must be finite, got {value!r}")
    return value


def optional_limit(name: str, value: float | None, *, zero_ok: bool = False) -> float | None:
    """An optional limit: ``None`` and ``inf`` both mean none; NaN and negatives (and zero,
    unless ``zero_ok``) are refused."""
    if value is None:
        return None
    value = non_negative(name, value) if zero_ok else positive(name, value)
    return None if math.isinf(value) else value


def ratio(name: str, value: float) -> float:
    """A fraction in 0..1 inclusive."""
    value = _number(name, value)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"`{name}` must be between 0 and 1, got {value!r}")
    return value


def count(name: str, value: int, *, minimum: int) -> int:
    """An integer (not a bool) no smaller than ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"`{name}` must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"`{name}` must be >= {minimum}, got {value!r}")
    return value


def listeners(value: Iterable[T]) -> tuple[T, ...]:
    """``listeners`` as a tuple, every one callable."""
    checked = tuple(value)
    for listener in checked:
        if not callable(listener):
            raise ValueError(f"`listeners` must be callables, got {listener!r}")
    return checked


def header_name(name: str, value: str) -> bytes:
    """An HTTP header name, lowercased ASCII bytes (how ASGI carries it)."""
    if not isinstance(value, str) or not value or not value.isascii():
        raise ValueError(f"`{name}` must be a non-empty ASCII header name, got {value!r}")
    return value.lower().encode("ascii")


def _number(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"`{name}` must be a number, got {value!r}")
    value = float(value)
    if math.isnan(value):
        raise ValueError(f"`{name}` must be a number, got nan")
    return value
