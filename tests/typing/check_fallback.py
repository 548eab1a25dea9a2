"""Checked by mypy --strict (not run): Fallback keeps signatures; factories are checked."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, assert_type

import asyncres

fallback = asyncres.Fallback(on=ConnectionError, value=0.0)


async def from_cache(error: Exception) -> float:
    return 1.0


async def from_cache_or_result(error: Exception | None) -> float:
    return 1.0


@fallback
async def price(item: str, *, currency: str = "EUR") -> float:
    return 2.0


with_factory = asyncres.Fallback(on=OSError, factory=from_cache)
on_results = asyncres.Fallback(on=OSError, factory=from_cache_or_result, on_result=lambda p: p < 0)
# A factory for rejected results must accept None.
wrong = asyncres.Fallback(on=OSError, factory=from_cache, on_result=bool)  # type: ignore[arg-type]
both = asyncres.Fallback(on=OSError, value=1, factory=from_cache)  # type: ignore[call-overload]


async def main() -> None:
    keeps_signature: Callable[[str], Coroutine[Any, Any, float]] = price
    assert_type(await keeps_signature("book"), float)
    assert_type(await price("book", currency="USD"), float)
    assert_type(await with_factory.call(price, "pen"), float)
    assert_type(await on_results.execute(lambda: price("ink")), float)


async def misuse() -> None:
    await price(1)  # type: ignore[arg-type]
    await fallback.call(price, "x", colour="red")  # type: ignore[call-arg]
