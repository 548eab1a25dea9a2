"""Fault-injection policies: `InjectError`, `InjectLatency`, `InjectResult`.

Each is a policy (``call``, ``execute``, decorator) to place innermost in a `Pipeline`, so the
resilience layers outside it see the injected fault exactly as they would see a real one.
Each has an injection ``rate`` (0..1), an ``enabled`` switch and its own random generator
(``seed=`` or ``rng=``) so that a run can be replayed. Those three — and a latency's
``seconds`` and ``jitter`` — can change while calls flow (a schedule or an operator turns
them); the other options are read-only after construction.
"""

from __future__ import annotations

import copy
import functools
import random
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar, cast

import anyio
import anyio.lowlevel

from .. import _validation
from .._events import Listener, emit
from .._policy import PolicyFaces
from .._setting import Setting
from ._events import FaultInjected
from ._switch import check_bool

__all__ = [
    "Distribution",
    "InjectError",
    "InjectLatency",
    "InjectResult",
    "InjectionStatistics",
    "check_latency",
    "make_rng",
]

T = TypeVar("T")
P = ParamSpec("P")

#: A latency distribution: given the fault's random generator, return seconds to wait.
Distribution = Callable[[random.Random], float]

_MISSING: Any = object()


@dataclass(frozen=True, slots=True)
class InjectionStatistics:
    """A snapshot of a fault-injection policy's counters."""

    __module__ = "asyncres.chaos"

    #: Calls that went through the policy while it was enabled.
    calls: int
    #: Calls on which the fault fired.
    injected: int


def make_rng(seed: int | None, rng: random.Random | None) -> random.Random:
    """The generator for ``seed=`` / ``rng=`` options (at most one of them)."""
    if seed is not None and rng is not None:
        raise ValueError("`seed` and `rng` are exclusive: pass one of them")
    if rng is not None:
        if not isinstance(rng, random.Random):
            raise ValueError(f"`rng` must be a random.Random, got {rng!r}")
        return rng
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int | str | bytes)):
        raise ValueError(f"`seed` must be an integer, got {seed!r}")
    return random.Random(seed)


def check_latency(name: str, value: float | Distribution) -> float | Distribution:
    """A delay in seconds (>= 0) or a distribution: a callable drawing seconds from a rng."""
    return value if callable(value) else _validation.non_negative(name, value)


class _Injection(PolicyFaces):
    """Rate, switch, generator, statistics and events shared by the injection policies."""

    __slots__ = (
        "_calls",
        "_enabled",
        "_injected",
        "_listeners",
        "_name",
        "_random",
        "_rate",
        "_rng",
    )

    _kind = ""

    name: Setting[str | None] = Setting()

    def __init__(
        self,
        *,
        rate: float,
        enabled: bool,
        seed: int | None,
        rng: random.Random | None,
        name: str | None,
        listeners: Iterable[Listener],
    ) -> None:
        self._rate = _validation.ratio("rate", rate)
        self._enabled = check_bool("enabled", enabled)
        self._rng = make_rng(seed, rng)
        self._random = self._rng.random
        self._name = name
        self._listeners = tuple(listeners)
        self._calls = 0
        self._injected = 0

    @property
    def rng(self) -> random.Random:
        """The generator that decides which calls get the fault; settable (to reseed)."""
        return self._rng

    @rng.setter
    def rng(self, value: random.Random) -> None:
        self._rng = make_rng(None, value)
        self._random = self._rng.random

    @property
    def rate(self) -> float:
        """The fraction of calls (0..1) on which the fault fires; settable at runtime."""
        return self._rate

    @rate.setter
    def rate(self, value: float) -> None:
        self._rate = _validation.ratio("rate", value)

    @property
    def enabled(self) -> bool:
        """Whether the fault may fire at all; settable at runtime (a `Schedule` does)."""
        return self._enabled

    @enabled.setter
    def enabled(self, value: bool) -> None:
        self._enabled = check_bool("enabled", value)

    def statistics(self) -> InjectionStatistics:
        """Calls seen while enabled, and how many of them got the fault."""
        return InjectionStatistics(calls=self._calls, injected=self._injected)

    def _options_repr(self) -> str:
        parts = [f"rate={self._rate!r}"]
        if not self._enabled:
            parts.append("enabled=False")
        if self._name:
            parts.append(f"name={self._name!r}")
        return ", ".join(parts)

    async def call(self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``await fn(*args, **kwargs)``, or inject the fault (with probability ``rate``)."""
        if self._enabled:
            self._calls += 1
            rate = self._rate
            if rate >= 1.0 or self._random() < rate:
                self._injected += 1
                return cast(T, await self._inject(fn, args, kwargs))
        return await fn(*args, **kwargs)

    def __call__(self, fn: Callable[P, Awaitable[T]], /) -> Callable[P, Coroutine[Any, Any, T]]:
        """Decorate an async function: each call may get the fault."""
        inject = self._inject

        @functools.wraps(fn)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            if self._enabled:
                self._calls += 1
                rate = self._rate
                if rate >= 1.0 or self._random() < rate:
                    self._injected += 1
                    return cast(T, await inject(fn, args, kwargs))
            return await fn(*args, **kwargs)

        return wrapper

    async def _inject(
        self, fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        raise NotImplementedError

    def _emit(self, detail: object) -> None:
        emit(self._listeners, FaultInjected(self._name, self._kind, detail))


class InjectError(_Injection):
    """Raise ``error`` instead of running the call, on a fraction ``rate`` of calls.

    ``error`` is an exception type (instantiated with the message ``"injected fault"``), an
    exception instance (a shallow copy is raised each time, so tracebacks and notes do not
    pile up across calls), or a zero-argument callable returning a fresh exception. Only
    ``Exception`` subclasses: cancellation is never injected. The wrapped function does not
    run when the fault fires.
    """

    __slots__ = ("_error", "_make")

    __module__ = "asyncres.chaos"

    _kind = "error"

    error: Setting[type[Exception] | Exception | Callable[[], Exception]] = Setting()

    def __init__(
        self,
        error: type[Exception] | Exception | Callable[[], Exception],
        /,
        *,
        rate: float = 1.0,
        enabled: bool = True,
        seed: int | None = None,
        rng: random.Random | None = None,
        name: str | None = None,
        listeners: Iterable[Listener] = (),
    ) -> None:
        super().__init__(
            rate=rate, enabled=enabled, seed=seed, rng=rng, name=name, listeners=listeners
        )
        self._error = error
        self._make = _error_factory(error)

    def __repr__(self) -> str:
        error = self._error
        shown = error.__name__ if isinstance(error, type) else repr(error)
        return f"InjectError({shown}, {self._options_repr()})"

    async def _inject(
        self, fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        error = self._make()
        if not isinstance(error, Exception):
            raise TypeError(
                f"InjectError: the error factory must return an Exception, got {error!r}"
            )
        self._emit(error)
        await anyio.lowlevel.checkpoint()  # a call always checkpoints, faulty or not
        raise error


def _error_factory(
    error: type[Exception] | Exception | Callable[[], Exception],
) -> Callable[[], Exception]:
    if isinstance(error, type):
        if not issubclass(error, Exception):
            raise ValueError(
                f"`error` must be an Exception type, got {error.__name__}: "
                "cancellation and other BaseExceptions are never injected"
            )
        exc_type = error

        def make_from_type() -> Exception:
            try:
                return exc_type("injected fault")
            except TypeError:
                return exc_type()

        try:
            make_from_type()
        except Exception as exc:
            raise ValueError(
                f"`error`: {error.__name__} cannot be built without arguments ({exc}); "
                "pass an instance or a factory"
            ) from None
        return make_from_type
    if isinstance(error, BaseException):
        if not isinstance(error, Exception):
            raise ValueError(
                f"`error` must be an Exception, got {error!r}: "
                "cancellation and other BaseExceptions are never injected"
            )
        instance = error
        try:
            copy.copy(instance)
        except Exception as exc:
            raise ValueError(
                f"`error`: {error!r} cannot be copied ({exc}); pass a factory instead"
            ) from None
        return lambda: copy.copy(instance)
    if callable(error):
        return error
    raise ValueError(f"`error` must be an exception type, instance or factory, got {error!r}")


class InjectLatency(_Injection):
    """Wait before running the call, on a fraction ``rate`` of calls.

    ``seconds`` is a fixed delay or a distribution: a callable taking the fault's
    ``random.Random`` and returning seconds, e.g.
    ``lambda rng: rng.lognormvariate(math.log(0.05), 0.5)``. ``jitter`` adds a uniform
    offset in ``[-jitter, +jitter]`` (Toxiproxy's latency toxic); a delay below zero waits
    zero. The wait is an ordinary ``anyio.sleep``: an enclosing `Timeout` or deadline
    cancels it as it would cancel a slow dependency.
    """

    __slots__ = ("_jitter", "_seconds")

    __module__ = "asyncres.chaos"

    _kind = "latency"

    def __init__(
        self,
        seconds: float | Distribution,
        /,
        *,
        jitter: float = 0.0,
        rate: float = 1.0,
        enabled: bool = True,
        seed: int | None = None,
        rng: random.Random | None = None,
        name: str | None = None,
        listeners: Iterable[Listener] = (),
    ) -> None:
        super().__init__(
            rate=rate, enabled=enabled, seed=seed, rng=rng, name=name, listeners=listeners
        )
        self._seconds = check_latency("seconds", seconds)
        self._jitter = _validation.non_negative("jitter", jitter)

    @property
    def seconds(self) -> float | Distribution:
        """The delay (or its distribution); settable at runtime, as a spike grows or eases."""
        return self._seconds

    @seconds.setter
    def seconds(self, value: float | Distribution) -> None:
        self._seconds = check_latency("seconds", value)

    @property
    def jitter(self) -> float:
        """The uniform spread around ``seconds``; settable at runtime."""
        return self._jitter

    @jitter.setter
    def jitter(self, value: float) -> None:
        self._jitter = _validation.non_negative("jitter", value)

    def __repr__(self) -> str:
        seconds = self._seconds
        shown = repr(seconds) if isinstance(seconds, float) else getattr(seconds, "__name__", "?")
        jitter = f", jitter={self._jitter!r}" if self._jitter else ""
        return f"InjectLatency({shown}{jitter}, {self._options_repr()})"

    def delay(self) -> float:
        """Draw the next delay in seconds (never negative)."""
        seconds = self._seconds
        rng = self._rng
        delay = float(seconds(rng)) if callable(seconds) else seconds
        if self._jitter:
            delay += rng.uniform(-self._jitter, self._jitter)
        return delay if delay > 0.0 else 0.0

    async def _inject(
        self, fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        delay = self.delay()
        self._emit(delay)
        await anyio.sleep(delay)
        return await fn(*args, **kwargs)


class InjectResult(_Injection):
    """Return ``value`` instead of running the call, on a fraction ``rate`` of calls.

    Pass ``factory=`` instead of a value when each call needs a fresh object (an HTTP
    response, a mutable list). The wrapped function does not run when the fault fires.
    """

    __slots__ = ("_factory", "_value")

    __module__ = "asyncres.chaos"

    _kind = "result"

    value: Setting[object] = Setting()

    def __init__(
        self,
        value: object = _MISSING,
        /,
        *,
        factory: Callable[[], object] | None = None,
        rate: float = 1.0,
        enabled: bool = True,
        seed: int | None = None,
        rng: random.Random | None = None,
        name: str | None = None,
        listeners: Iterable[Listener] = (),
    ) -> None:
        super().__init__(
            rate=rate, enabled=enabled, seed=seed, rng=rng, name=name, listeners=listeners
        )
        if (value is _MISSING) == (factory is None):
            raise ValueError("`value` and `factory`: pass exactly one of them")
        if factory is not None and not callable(factory):
            raise ValueError(f"`factory` must be callable, got {factory!r}")
        self._value = None if value is _MISSING else value
        self._factory = factory

    def __repr__(self) -> str:
        shown = f"factory={self._factory!r}" if self._factory is not None else repr(self._value)
        return f"InjectResult({shown}, {self._options_repr()})"

    async def _inject(
        self, fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        result = self._factory() if self._factory is not None else self._value
        self._emit(result)
        await anyio.lowlevel.checkpoint()
        return result
