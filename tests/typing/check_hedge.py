"""Checked by mypy --strict (not run): Hedge keeps signatures and result types."""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine
from typing import Any, assert_type

import asyncres

hedge = asyncres.Hedge(delay=0.05, max_hedges=2, on=ConnectionError)


@hedge
async def fetch(user_id: int, *, replica: str = "primary") -> str:
    return f"{user_id}@{replica}"


async def main() -> None:
    keeps_signature: Callable[[int], Coroutine[Any, Any, str]] = fetch
    assert_type(await keeps_signature(1), str)
    assert_type(await fetch(1, replica="b"), str)
    assert_type(await hedge.call(fetch, 2), str)
    assert_type(await hedge.execute(lambda: fetch(3)), str)
    assert_type(
        await hedge.call_each(
            functools.partial(fetch, 4, replica="a"), functools.partial(fetch, 4, replica="b")
        ),
        str,
    )


async def misuse() -> None:
    await fetch("not an int")  # type: ignore[arg-type]
    await hedge.call(fetch, 1, extra=True)  # type: ignore[call-arg]
    await hedge.call_each(fetch)  # type: ignore[arg-type]
