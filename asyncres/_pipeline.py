"""Pipeline: policies composed in list order, outermost first."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar

from . import _telemetry
from ._backend import running_loop as _get_running_loop
from ._breaker import CircuitBreaker
from ._bulkhead import Bulkhead
from ._deadline import AdvisoryDeadline, Timeout
from ._events import TimeoutExpired, emit
from ._exceptions import TimeoutExceededError
from ._policy import Policy, PolicyFaces
from ._retry import Retry

__all__ = ["Pipeline"]

T = TypeVar("T")
P = ParamSpec("P")


class Pipeline(PolicyFaces):
    """Compose policies: ``Pipeline(a, b, c).call(fn)`` runs ``a(b(c(fn)))``.

    List order is wrapping order, outermost first (Polly's builder, structlog's processor
    chain). The canonical order for a call to a dependency::

        Pipeline(
            Timeout(10.0),                                 # the whole call, retries included
            Retry(on=ConnectionError, max_attempts=4),     # sees each attempt's outcome
            CircuitBreaker(failure_rate=0.5, window=30.0), # counts every attempt
            Bulkhead(max_concurrent=20, max_queued=50),    # bounds attempts in flight
            Timeout(2.0),                                  # one attempt
        )

    ``name`` labels its calls in telemetry (``asyncres.call.duration``, `asyncres.otel`).
    A pipeline is itself a `Policy`, is immutable, and exposes its layers as
    `policies`; a pipeline nested in another is flattened. An inner `Timeout` longer than
    an outer one could never fire first and is refused (as .NET's standard resilience
    handler validates "attempt timeout <= total timeout").

    In the canonical shape, the two ``Timeout`` layers share one deadline mechanism on
    trio (where a cancel scope costs ~9 µs): the total becomes a deadline that every layer
    reads and the attempt's cancel scope is cut to, and nothing between them waits past it.
    """

    __slots__ = ("_calls", "_layers", "_name", "_policies", "_shared")

    __module__ = "asyncres"

    _layers: tuple[Policy, ...]
    _policies: tuple[Policy, ...]
    _calls: tuple[Callable[..., Awaitable[Any]], ...] | None
    # (the total Timeout, the call chain below it) when they can share a deadline.
    _shared: tuple[Timeout, tuple[Callable[..., Awaitable[Any]], ...]] | None

    def __init__(self, *policies: Policy, name: str | None = None) -> None:
        if not policies:
            raise ValueError("`policies` must name at least one policy")
        layers: list[Policy] = []
        for policy in policies:
            if isinstance(policy, Pipeline):
                layers.extend(policy._layers)
            elif callable(getattr(policy, "execute", None)):
                layers.append(policy)
            else:
                raise ValueError(f"`policies` must be policies (with execute()), got {policy!r}")
        _check_timeouts(layers)
        self._policies = tuple(policies)
        self._layers = tuple(layers)
        self._name = name
        # When every layer has the `call(fn, *args)` face, the chain needs no allocation per
        # layer: layer i calls layer i+1's `call` with the rest of the chain as arguments.
        calls = [getattr(layer, "call", None) for layer in layers]
        self._calls = tuple(calls) if all(callable(c) for c in calls) else None  # type: ignore[arg-type]
        self._shared = (
            _shared_deadline_calls(self._layers, self._calls) if self._calls is not None else None
        )

    @property
    def policies(self) -> tuple[Policy, ...]:
        """The policies as given, outermost first."""
        return self._policies

    @property
    def name(self) -> str | None:
        """The name telemetry reports the pipeline's calls under (`asyncres.otel`)."""
        return self._name

    def __repr__(self) -> str:
        return f"Pipeline({', '.join(map(repr, self._policies))})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Pipeline):
            return NotImplemented
        return self._layers == other._layers

    def __hash__(self) -> int:
        return hash(self._layers)

    async def call(self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``await fn(*args, **kwargs)`` through every layer."""
        if _telemetry.hooks is not None:  # one load when off (benchmarks/telemetry_seam.py)
            with _telemetry.hooks.call("pipeline", self._name):
                observed: T = await self._dispatch(fn, *args, **kwargs)
                return observed
        # `_dispatch` inlined: the path without telemetry saves a frame per call.
        calls = self._calls
        if calls is not None:
            shared = self._shared
            if shared is not None and _get_running_loop() is None:
                return await self._call_shared(shared, fn, *args, **kwargs)
            result: T = await calls[0](*calls[1:], fn, *args, **kwargs)
        else:
            result = await _Chain(self._layers, 0, lambda: fn(*args, **kwargs)).run()
        return result

    async def _dispatch(
        self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Through every layer: the call chain (with the shared-deadline shortcut where it
        applies), or layer by layer when some layer has no ``call`` face."""
        calls = self._calls
        if calls is None:
            chained: T = await _Chain(self._layers, 0, lambda: fn(*args, **kwargs)).run()
            return chained
        shared = self._shared
        if shared is not None and _get_running_loop() is None:
            return await self._call_shared(shared, fn, *args, **kwargs)
        result: T = await calls[0](*calls[1:], fn, *args, **kwargs)
        return result

    async def execute(self, fn: Callable[[], Awaitable[T]], /) -> T:
        """Run ``await fn()`` through every layer (the `Policy` contract)."""
        if _telemetry.hooks is not None:
            with _telemetry.hooks.call("pipeline", self._name):
                observed_: T = await self._dispatch(fn)
                return observed_
        calls = self._calls
        if calls is not None:
            shared = self._shared
            if shared is not None and _get_running_loop() is None:
                return await self._call_shared(shared, fn)
            result: T = await calls[0](*calls[1:], fn)
        else:
            result = await _Chain(self._layers, 0, fn).run()
        return result

    @staticmethod
    async def _call_shared(
        shared: tuple[Timeout, tuple[Callable[..., Awaitable[Any]], ...]],
        fn: Callable[P, Awaitable[T]],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """The layers under the first ``Timeout``, with that total as an advisory deadline."""
        total, calls = shared
        advisory = AdvisoryDeadline(total._seconds)
        try:
            with advisory:
                result: T = await calls[0](*calls[1:], fn, *args, **kwargs)
        except TimeoutExceededError:
            if advisory.expired:
                emit(total._listeners, TimeoutExpired(name=total._name, timeout=total._seconds))
            raise
        return result


class _Chain:
    """One call's walk through the layers; each layer executes the rest of the chain."""

    __slots__ = ("_fn", "_index", "_layers")

    def __init__(self, layers: tuple[Policy, ...], index: int, fn: Callable[[], Awaitable[Any]]):
        self._layers = layers
        self._index = index
        self._fn = fn

    async def run(self) -> Any:
        layers = self._layers
        index = self._index
        if index == len(layers) - 1:
            return await layers[index].execute(self._fn)
        return await layers[index].execute(_Chain(layers, index + 1, self._fn).run)


# The layers that never wait past `remaining()`: Retry sleeps only when the next attempt
# fits, a breaker never waits, a bulkhead queue bounds itself by an advisory deadline.
_BOUNDED_LAYERS = (Retry, CircuitBreaker, Bulkhead)


def _shared_deadline_calls(
    layers: tuple[Policy, ...], calls: tuple[Callable[..., Awaitable[Any]], ...]
) -> tuple[Timeout, tuple[Callable[..., Awaitable[Any]], ...]] | None:
    """The call chain below a total ``Timeout`` whose deadline can be advisory, if any.

    That is: the first layer is a ``Timeout``, a later one is a ``Timeout`` too, and every
    layer between them is one whose waits are bounded (`_BOUNDED_LAYERS`). The attempt's
    ``Timeout`` then cuts its own cancel scope to the total, and the total needs none.
    """
    total = layers[0]
    if total.__class__ is not Timeout:
        return None
    for index in range(1, len(layers)):
        layer = layers[index]
        if layer.__class__ is Timeout:
            shared = list(calls[1:])
            shared[index - 1] = layer._call_within_advisory
            return total, tuple(shared)
        if layer.__class__ not in _BOUNDED_LAYERS:
            return None
    return None


def _check_timeouts(layers: list[Policy]) -> None:
    outer: float | None = None
    for layer in layers:
        if isinstance(layer, Timeout):
            if outer is not None and layer.seconds > outer:
                raise ValueError(
                    f"`policies`: an inner Timeout({layer.seconds!r}) is longer than an outer "
                    f"Timeout({outer!r}) and could never fire first"
                )
            outer = layer.seconds
