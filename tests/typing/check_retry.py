"""Checked by mypy --strict (not run): decorators keep the wrapped signature."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, assert_type

import asyncres

retry = asyncres.Retry(on=OSError)
limit = asyncres.Timeout(1.0)


@retry
async def fetch(user_id: int, *, verbose: bool = False) -> str:
    return str(user_id)


@limit
async def ping(host: str) -> float:
    return 1.0


async def main() -> None:
    keeps_signature: Callable[[int], Coroutine[Any, Any, str]] = fetch
    assert_type(await keeps_signature(1), str)
    assert_type(await fetch(1, verbose=True), str)
    assert_type(await ping("db"), float)
    assert_type(await retry.call(fetch, 2), str)
    assert_type(await limit.execute(lambda: ping("x")), float)
    _: Coroutine[Any, Any, str] = fetch(3)
    await _
    async for attempt in retry.attempts():
        with attempt:
            assert_type(attempt.number, int)


async def misuse() -> None:
    await fetch("not an int")  # type: ignore[arg-type]
    await fetch(1, extra=True)  # type: ignore[call-arg]
    await retry.call(fetch, "x")  # type: ignore[arg-type]
