"""asyncres.backoff: formulas, bounds, reproducibility, validation."""

from __future__ import annotations

import itertools
import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from asyncres import backoff

bases = st.floats(min_value=1e-4, max_value=10.0)
factors = st.floats(min_value=1.0, max_value=1000.0)
seeds = st.integers(min_value=0, max_value=2**32)
COUNT = 40


def take(
    strategy: backoff.Backoff, rng: random.Random | None = None, n: int = COUNT
) -> list[float]:
    return list(itertools.islice(strategy.delays(rng), n))


def test_constant_repeats_its_delay() -> None:
    """Constant yields the same wait forever."""
    assert take(backoff.Constant(0.25), n=5) == [0.25] * 5


def test_exponential_doubles_up_to_the_cap() -> None:
    """Exponential: base * 2**attempt, then exactly the cap."""
    assert take(backoff.Exponential(base=0.1, cap=1.0), n=6) == pytest.approx(
        [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    )
    assert take(backoff.Exponential(base=1, cap=100, multiplier=3), n=5) == [1, 3, 9, 27, 81]


@given(base=bases, factor=factors, seed=seeds)
def test_full_jitter_within_bounds(base: float, factor: float, seed: int) -> None:
    """Full jitter: 0 <= sleep <= min(cap, base * 2**attempt)."""
    cap = base * factor
    for attempt, sleep in enumerate(take(backoff.FullJitter(base, cap), random.Random(seed))):
        assert 0.0 <= sleep <= min(cap, base * 2.0**attempt)


@given(base=bases, factor=factors, seed=seeds)
def test_equal_jitter_within_bounds(base: float, factor: float, seed: int) -> None:
    """Equal jitter: t/2 <= sleep <= t where t = min(cap, base * 2**attempt)."""
    cap = base * factor
    for attempt, sleep in enumerate(take(backoff.EqualJitter(base, cap), random.Random(seed))):
        t = min(cap, base * 2.0**attempt)
        assert t / 2 - 1e-12 <= sleep <= t + 1e-12


@given(base=bases, factor=factors, seed=seeds)
def test_decorrelated_jitter_within_bounds(base: float, factor: float, seed: int) -> None:
    """Decorrelated: base <= sleep <= min(cap, 3 * previous sleep)."""
    cap = base * factor
    previous = base
    for sleep in take(backoff.DecorrelatedJitter(base, cap), random.Random(seed)):
        assert base <= sleep <= min(cap, previous * 3.0) + 1e-12
        previous = sleep


@given(seed=seeds)
def test_seeded_rng_gives_the_same_sequence(seed: int) -> None:
    """The same seed reproduces the same delays for every jittered strategy."""
    for strategy in (
        backoff.FullJitter(0.1, 10.0),
        backoff.EqualJitter(0.1, 10.0),
        backoff.DecorrelatedJitter(0.1, 10.0),
    ):
        assert take(strategy, random.Random(seed)) == take(strategy, random.Random(seed))


@pytest.mark.parametrize(
    ("strategy", "low", "high"),
    [
        (backoff.FullJitter(0.1, 2.0), 0.0, 2.0),
        (backoff.EqualJitter(0.1, 2.0), 1.0, 2.0),
        (backoff.DecorrelatedJitter(0.1, 2.0), 0.1, 2.0),
    ],
)
def test_jitter_keeps_its_spread_at_the_cap(
    strategy: backoff.Backoff, low: float, high: float
) -> None:
    """Past the cap, jittered delays stay spread out: they do not collapse onto the cap."""
    rng = random.Random(7)
    tail = [next(itertools.islice(strategy.delays(rng), 60, None)) for _ in range(500)]
    assert all(low <= d <= high for d in tail)
    at_cap = sum(1 for d in tail if d == high)
    assert at_cap < 5, "delays collapsed onto the cap"
    spread = max(tail) - min(tail)
    assert spread > 0.6 * (high - low)
    # The mean sits well inside the range, as for a uniform draw.
    assert low + 0.35 * (high - low) < sum(tail) / len(tail) < low + 0.65 * (high - low)


def test_exponential_does_not_overflow() -> None:
    """Thousands of attempts stay finite and capped."""
    delays = take(backoff.Exponential(base=1.0, cap=5.0), n=5000)
    assert delays[-1] == 5.0
    assert all(math.isfinite(d) for d in take(backoff.FullJitter(1.0, 5.0), n=5000))


@pytest.mark.parametrize(
    ("make", "parameter"),
    [
        (lambda: backoff.Constant(-1), "delay"),
        (lambda: backoff.Constant(math.nan), "delay"),
        (lambda: backoff.Constant(math.inf), "delay"),
        (lambda: backoff.Exponential(base=0, cap=1), "base"),
        (lambda: backoff.Exponential(base=-1, cap=1), "base"),
        (lambda: backoff.Exponential(base=1, cap=0.5), "cap"),
        (lambda: backoff.Exponential(base=1, cap=math.inf), "cap"),
        (lambda: backoff.Exponential(base=1, cap=2, multiplier=0.5), "multiplier"),
        (lambda: backoff.FullJitter(base=math.nan, cap=1), "base"),
        (lambda: backoff.FullJitter(base=2, cap=1), "cap"),
        (lambda: backoff.EqualJitter(base=1, cap=-1), "cap"),
        (lambda: backoff.DecorrelatedJitter(base=0, cap=1), "base"),
    ],
)
def test_bad_configuration_names_the_parameter(make: object, parameter: str) -> None:
    """Invalid strategies raise ValueError naming the offending parameter."""
    with pytest.raises(ValueError, match=f"`{parameter}`"):
        make()  # type: ignore[operator]


def test_strategies_are_frozen_and_compare_by_value() -> None:
    """Strategies are immutable values with readable reprs."""
    strategy = backoff.FullJitter(base=0.1, cap=10.0)
    assert strategy == backoff.FullJitter(base=0.1, cap=10.0)
    assert repr(strategy) == "FullJitter(base=0.1, cap=10.0)"
    with pytest.raises(AttributeError):
        strategy.base = 1.0  # type: ignore[misc]
    assert isinstance(strategy, backoff.Backoff)
    assert type(strategy).__module__ == "asyncres.backoff"
