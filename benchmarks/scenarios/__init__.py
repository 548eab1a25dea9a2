"""Resilience scenarios: asyncres and the peers a Python user would pick, on the same faults.

Run ``python -m benchmarks.scenarios`` (peers from ``pip install -e '.[bench]'``; a peer
that is not installed is left out). Each scenario runs every contender in one process
family, with seeded randomness, on a virtual clock, and returns a `ScenarioResult`; the
command writes them all to ``benchmarks/results/scenarios.md``.

1. Backoff under contention (Brooker's optimistic-concurrency simulation).
2. Outage amplification: attempts per request while a dependency is hard down.
3. Brownout: success and amplification while 20 % / 50 % of calls fail.
4. Slow dependency with a fixed-size pool: goodput, p99, fast vs slow failures.
5. Recovery: time to 99 % success after an outage, for circuit breakers.
6. Overload brownout: goodput and load when capacity drops to half the offered rate.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ._common import ScenarioResult, Table

__all__ = ["SCENARIOS", "ScenarioResult", "Table", "run_scenario"]


def _one(smoke: bool, seed: int | None, workers: int) -> ScenarioResult:
    from . import occ

    return occ.run(smoke=smoke, workers=workers, **_seed(seed))


def _two(smoke: bool, seed: int | None, workers: int) -> ScenarioResult:
    from . import amplification

    return amplification.run_outage(smoke=smoke, workers=workers, **_seed(seed))


def _three(smoke: bool, seed: int | None, workers: int) -> ScenarioResult:
    from . import amplification

    return amplification.run_brownout(smoke=smoke, workers=workers, **_seed(seed))


def _four(smoke: bool, seed: int | None, workers: int) -> ScenarioResult:
    from . import slow

    return slow.run(smoke=smoke, workers=workers, **_seed(seed))


def _five(smoke: bool, seed: int | None, workers: int) -> ScenarioResult:
    from . import recovery

    return recovery.run(smoke=smoke, workers=workers, **_seed(seed))


def _six(smoke: bool, seed: int | None, workers: int) -> ScenarioResult:
    from . import amplification

    return amplification.run_overload(smoke=smoke, workers=workers, **_seed(seed))


def _seed(seed: int | None) -> dict[str, Any]:
    return {} if seed is None else {"seed": seed}


SCENARIOS: dict[int, Callable[[bool, int | None, int], ScenarioResult]] = {
    1: _one,
    2: _two,
    3: _three,
    4: _four,
    5: _five,
    6: _six,
}


def run_scenario(
    number: int, *, smoke: bool = False, seed: int | None = None, workers: int = 1
) -> ScenarioResult:
    """Run scenario ``number`` (1..6); ``smoke`` shrinks it to a few seconds."""
    return SCENARIOS[number](smoke, seed, workers)
