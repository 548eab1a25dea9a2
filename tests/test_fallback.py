"""Fallback: value or factory on matched errors and rejected results; never cancellation."""

from __future__ import annotations

from typing import Any

import anyio
import anyio.lowlevel
import pytest

import asyncres
from asyncres.testing import capture_events

pytestmark = pytest.mark.anyio


def failing(error: BaseException) -> Any:
    """An async function that checkpoints, then raises `error`."""

    async def fn(*args: Any, **kwargs: Any) -> Any:
        await anyio.lowlevel.checkpoint()
        raise error

    return fn


async def price(item: str, *, currency: str = "EUR") -> str:
    await anyio.lowlevel.checkpoint()
    return f"{item}: 10 {currency}"


async def test_success_passes_through_and_emits_nothing() -> None:
    """A successful call returns its own result; the factory is never called."""
    calls: list[Exception | None] = []

    async def factory(error: Exception) -> str:
        calls.append(error)
        return "cached"

    fallback = asyncres.Fallback(on=ConnectionError, factory=factory)
    with capture_events() as events:
        assert await fallback.call(price, "book", currency="USD") == "book: 10 USD"
    assert calls == []
    assert events == []


async def test_matched_error_returns_the_value_with_an_event() -> None:
    """An error matched by `on` is replaced by `value`; FallbackUsed carries the error."""
    error = ConnectionError("refused")
    fallback = asyncres.Fallback(on=ConnectionError, value="default", name="prices")
    with capture_events() as events:
        assert await fallback.call(failing(error)) == "default"
    assert events == [asyncres.events.FallbackUsed("prices", error)]


async def test_value_none_is_a_value() -> None:
    """value=None is a real substitute, not a missing one."""
    fallback = asyncres.Fallback(on=OSError, value=None)
    assert await fallback.call(failing(OSError())) is None


async def test_factory_is_awaited_with_the_error() -> None:
    """factory(error) is awaited and its result returned."""
    seen: list[Exception | None] = []

    async def from_cache(error: Exception) -> str:
        seen.append(error)
        await anyio.sleep(1)
        return "cached"

    error = TimeoutError("slow")
    fallback = asyncres.Fallback(on=(ConnectionError, TimeoutError), factory=from_cache)
    assert await fallback.call(failing(error)) == "cached"
    assert seen == [error]


async def test_unmatched_errors_propagate_untouched() -> None:
    """An error `on` does not match propagates as it is, with no event."""
    error = ValueError("bad input")
    fallback = asyncres.Fallback(on=ConnectionError, value="default")
    with capture_events() as events:
        with pytest.raises(ValueError) as info:
            await fallback.call(failing(error))
    assert info.value is error
    assert info.value.__cause__ is None
    assert events == []


async def test_on_accepts_a_predicate() -> None:
    """`on` may be a predicate on the exception."""
    fallback = asyncres.Fallback(on=lambda exc: "503" in str(exc), value="default")
    assert await fallback.call(failing(OSError("503"))) == "default"
    with pytest.raises(OSError, match="404"):
        await fallback.call(failing(OSError("404")))


async def test_cancellation_is_never_replaced() -> None:
    """A cancelled call propagates the cancellation: no substitute, no event."""
    called: list[Exception | None] = []

    async def factory(error: Exception) -> str:
        called.append(error)
        return "cached"

    fallback = asyncres.Fallback(on=lambda exc: True, factory=factory)
    with capture_events() as events:
        with anyio.move_on_after(1.0) as scope:
            await fallback.call(anyio.sleep, 10)
    assert scope.cancelled_caught
    assert called == []
    assert events == []


async def test_an_enclosing_deadline_is_not_replaced_but_an_inner_timeout_is() -> None:
    """An inner timeout's error is a fallback case; the caller's own deadline is not."""
    fallback = asyncres.Fallback(on=TimeoutError, value="stale")

    async def with_inner_timeout() -> str:
        with asyncres.timeout(1.0):
            await anyio.sleep(10)
        return "fresh"

    assert await fallback.call(with_inner_timeout) == "stale"

    with pytest.raises(asyncres.TimeoutExceededError) as info:
        with asyncres.timeout(1.0):
            await fallback.call(anyio.sleep, 10)
    assert info.value.timeout == 1.0


async def test_base_exceptions_are_never_replaced() -> None:
    """KeyboardInterrupt-like BaseExceptions pass through even an accept-all predicate."""

    class Stop(BaseException):
        pass

    fallback = asyncres.Fallback(on=lambda exc: True, value="default")
    with pytest.raises(Stop):
        await fallback.call(failing(Stop()))


async def test_factory_error_propagates_chained_from_the_original() -> None:
    """An error raised by the factory propagates with the original as its cause."""
    original = ConnectionError("primary down")

    async def broken_cache(error: Exception) -> str:
        raise LookupError("cache miss")

    fallback = asyncres.Fallback(on=ConnectionError, factory=broken_cache)
    with capture_events() as events:
        with pytest.raises(LookupError, match="cache miss") as info:
            await fallback.call(failing(original))
    assert info.value.__cause__ is original
    assert events == [asyncres.events.FallbackUsed(None, original)]


async def test_factory_may_re_raise_the_original() -> None:
    """A factory that decides not to substitute can re-raise the original error."""
    original = ConnectionError("down")

    async def only_when_cached(error: Exception) -> str:
        raise error

    fallback = asyncres.Fallback(on=ConnectionError, factory=only_when_cached)
    with pytest.raises(ConnectionError) as info:
        await fallback.call(failing(original))
    assert info.value is original
    assert info.value.__cause__ is None


async def test_factory_keeps_its_own_cause() -> None:
    """A factory error that already has a cause keeps it."""

    async def explicit(error: Exception) -> str:
        raise RuntimeError("wrapped") from KeyError("k")

    fallback = asyncres.Fallback(on=OSError, factory=explicit)
    with pytest.raises(RuntimeError) as info:
        await fallback.call(failing(OSError()))
    assert isinstance(info.value.__cause__, KeyError)


async def test_cancellation_inside_the_factory_propagates() -> None:
    """Cancelling while the factory runs cancels the call."""

    async def slow_cache(error: Exception) -> str:
        await anyio.sleep(10)
        return "cached"

    fallback = asyncres.Fallback(on=OSError, factory=slow_cache)
    with anyio.move_on_after(1.0) as scope:
        await fallback.call(failing(OSError()))
    assert scope.cancelled_caught


async def test_on_result_makes_a_result_a_failure() -> None:
    """on_result=True replaces the result; the factory then receives None."""
    seen: list[Exception | None] = []

    async def factory(error: Exception | None) -> int:
        seen.append(error)
        return 200

    async def status() -> int:
        return 503

    fallback = asyncres.Fallback(on=OSError, factory=factory, on_result=lambda code: code >= 500)
    with capture_events() as events:
        assert await fallback.call(status) == 200
    assert seen == [None]
    assert events == [asyncres.events.FallbackUsed(None, None)]

    async def ok() -> int:
        return 204

    assert await fallback.call(ok) == 204
    only_results = asyncres.Fallback(on=(), value=0, on_result=lambda code: code >= 500)
    assert await only_results.call(status) == 0
    with pytest.raises(OSError):
        await only_results.call(failing(OSError()))


async def test_decorator_keeps_the_signature_and_falls_back() -> None:
    """@fallback keeps the function's metadata and substitutes on failure."""
    fallback = asyncres.Fallback(on=KeyError, value="anonymous")

    @fallback
    async def user_name(user_id: int) -> str:
        """Look a user up."""
        return {1: "ada"}[user_id]

    assert user_name.__name__ == "user_name"
    assert user_name.__doc__ == "Look a user up."
    assert await user_name(1) == "ada"
    assert await user_name(2) == "anonymous"


async def test_decorator_honours_on_result_and_unmatched_errors() -> None:
    """The decorator's inlined path behaves like call()."""
    fallback = asyncres.Fallback(on=KeyError, value=-1, on_result=lambda v: v < 0)

    @fallback
    async def parse(text: str) -> int:
        if not text:
            raise ValueError("empty")
        return int(text)

    assert await parse("-5") == -1
    assert await parse("5") == 5
    with pytest.raises(ValueError, match="empty"):
        await parse("")


async def test_execute_is_the_policy_contract() -> None:
    """execute(fn) runs a zero-argument function under the fallback."""
    fallback = asyncres.Fallback(on=OSError, value="x")
    assert await fallback.execute(failing(OSError())) == "x"
    assert isinstance(fallback, asyncres.Policy)


@pytest.mark.parametrize(
    ("kwargs", "parameter"),
    [
        ({}, "value` or `factory"),
        ({"value": 1, "factory": lambda e: None}, "value` or `factory"),
        ({"factory": "not callable"}, "factory"),
        ({"value": 1, "on_result": 3}, "on_result"),
        ({"value": 1, "on": None}, "on"),
        ({"value": 1, "on": ()}, "on"),
        ({"value": 1, "on": KeyboardInterrupt}, "on"),
        ({"value": 1, "on": (ValueError, "x")}, "on"),
    ],
)
def test_bad_configuration_names_the_parameter(kwargs: dict[str, Any], parameter: str) -> None:
    """Invalid Fallback settings raise ValueError naming the parameter."""
    kwargs.setdefault("on", OSError)
    with pytest.raises(ValueError, match=f"`{parameter}`"):
        asyncres.Fallback(**kwargs)


def test_on_is_required() -> None:
    """There is no default for `on`: what to replace is always a decision."""
    with pytest.raises(TypeError):
        asyncres.Fallback(value=1)  # type: ignore[call-overload]


def test_repr_is_readable() -> None:
    """Fallback prints its configuration."""

    async def cached_price(error: Exception) -> float:
        return 0.0

    assert repr(asyncres.Fallback(on=OSError, value=0.0, name="price")) == (
        "Fallback(on=OSError, value=0.0, name='price')"
    )
    assert repr(asyncres.Fallback(on=OSError, factory=cached_price)) == (
        "Fallback(on=OSError, factory=test_repr_is_readable.<locals>.cached_price)"
    )
    assert repr(asyncres.Fallback(on=OSError, value=None, on_result=bool)) == (
        "Fallback(on=OSError, value=None, on_result=...)"
    )


@pytest.mark.parametrize(
    ("attribute", "value"),
    [("on", OSError), ("value", "other"), ("factory", None), ("on_result", bool), ("name", "x")],
)
async def test_configuration_is_read_only_after_construction(attribute: str, value: Any) -> None:
    """Assigning a configuration attribute raises instead of being silently ignored."""
    fallback = asyncres.Fallback(on=ConnectionError, value="cached", name="price")
    before = getattr(fallback, attribute)
    with pytest.raises(AttributeError, match=rf"Fallback\.{attribute} is read-only"):
        setattr(fallback, attribute, value)
    assert getattr(fallback, attribute) == before
    assert await fallback.call(failing(ConnectionError())) == "cached"
