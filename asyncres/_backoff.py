"""Delay strategies for retries (public as `asyncres.backoff`).

Each strategy is a frozen, validated dataclass whose ``delays(rng)`` returns an infinite
iterator of seconds: the first item is the wait before the first retry. Formulas follow
Marc Brooker, "Exponential Backoff And Jitter" (AWS Architecture Blog, 2015), with one
deliberate change: jittered strategies cap the *range* before drawing, so clients that
reach the cap keep their spread instead of all sleeping exactly ``cap`` and synchronising
again (the trap of capping after jitter, seen in Polly's ``MaxDelay`` and Resilience4j).

Randomness is injectable: pass a seeded ``random.Random`` for reproducible sequences.
"""

import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from . import _validation

__all__ = [
    "Backoff",
    "Constant",
    "DecorrelatedJitter",
    "EqualJitter",
    "Exponential",
    "FullJitter",
]

_MODULE = "asyncres.backoff"


@runtime_checkable
class Backoff(Protocol):
    """Anything with ``delays(rng)``: an infinite iterator of waits in seconds."""

    def delays(self, rng: random.Random | None = None) -> Iterator[float]: ...


Backoff.__module__ = _MODULE


def _check_base_cap(base: float, cap: float) -> None:
    _validation.finite_positive("base", base)
    _validation.finite_positive("cap", cap)
    if cap < base:
        raise ValueError(f"`cap` must be >= `base` ({base!r}), got {cap!r}")


@dataclass(frozen=True, slots=True)
class Constant:
    """The same wait every time: ``sleep = delay``.

    No jitter: prefer a jittered strategy wherever many clients may retry together.
    """

    __module__ = _MODULE

    delay: float

    def __post_init__(self) -> None:
        _validation.non_negative("delay", self.delay)
        if self.delay == float("inf"):
            raise ValueError("`delay` must be finite, got inf")

    def delays(self, rng: random.Random | None = None) -> Iterator[float]:
        delay = float(self.delay)
        while True:
            yield delay


@dataclass(frozen=True, slots=True)
class Exponential:
    """Exponential growth without jitter: ``sleep = min(cap, base * multiplier**attempt)``.

    ``attempt`` counts from 0. Brooker's simulation shows this is the clear loser under
    contention (clients stay synchronised); use it only where one client retries alone.
    """

    __module__ = _MODULE

    base: float
    cap: float
    multiplier: float = 2.0

    def __post_init__(self) -> None:
        _check_base_cap(self.base, self.cap)
        _validation.finite_positive("multiplier", self.multiplier)
        if self.multiplier < 1.0:
            raise ValueError(f"`multiplier` must be >= 1, got {self.multiplier!r}")

    def delays(self, rng: random.Random | None = None) -> Iterator[float]:
        cap = float(self.cap)
        delay = float(self.base)
        while delay < cap:
            yield delay
            delay *= self.multiplier
        while True:
            yield cap


@dataclass(frozen=True, slots=True)
class FullJitter:
    """Full jitter: ``sleep = uniform(0, min(cap, base * 2**attempt))``.

    The default of `Retry` (``base=0.1, cap=10.0``): in Brooker's simulation it does the
    least work of all strategies. At the cap the spread stays ``uniform(0, cap)``.
    """

    __module__ = _MODULE

    base: float
    cap: float

    def __post_init__(self) -> None:
        _check_base_cap(self.base, self.cap)

    def delays(self, rng: random.Random | None = None) -> Iterator[float]:
        uniform = (rng or random).uniform
        cap = float(self.cap)
        ceiling = float(self.base)
        while ceiling < cap:
            yield uniform(0.0, ceiling)
            ceiling *= 2.0
        while True:
            yield uniform(0.0, cap)


@dataclass(frozen=True, slots=True)
class EqualJitter:
    """Equal jitter: ``t = min(cap, base * 2**attempt); sleep = t/2 + uniform(0, t/2)``.

    Never waits less than half the exponential delay; the slowest of the jittered strategies
    in Brooker's simulation. At the cap the spread stays ``uniform(cap/2, cap)``.
    """

    __module__ = _MODULE

    base: float
    cap: float

    def __post_init__(self) -> None:
        _check_base_cap(self.base, self.cap)

    def delays(self, rng: random.Random | None = None) -> Iterator[float]:
        uniform = (rng or random).uniform
        cap = float(self.cap)
        ceiling = float(self.base)
        while True:
            t = ceiling if ceiling < cap else cap
            half = t / 2.0
            yield half + uniform(0.0, half)
            if ceiling < cap:
                ceiling *= 2.0


@dataclass(frozen=True, slots=True)
class DecorrelatedJitter:
    """Decorrelated jitter: ``sleep = uniform(base, min(cap, prev_sleep * 3))``.

    ``prev_sleep`` starts at ``base``. Brooker writes ``min(cap, uniform(base, prev * 3))``,
    which collapses to exactly ``cap`` for most draws once ``prev * 3`` passes the cap; we
    cap the range instead, so sleeps stay spread over ``[base, cap]``. It finishes slightly
    sooner than full jitter at the price of more calls.
    """

    __module__ = _MODULE

    base: float
    cap: float

    def __post_init__(self) -> None:
        _check_base_cap(self.base, self.cap)

    def delays(self, rng: random.Random | None = None) -> Iterator[float]:
        uniform = (rng or random).uniform
        base = float(self.base)
        cap = float(self.cap)
        sleep = base
        while True:
            upper = sleep * 3.0
            sleep = uniform(base, upper if upper < cap else cap)
            yield sleep
