"""The resilience scenarios run end to end in their reduced (smoke) form; no timing asserted."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

scenarios = pytest.importorskip("benchmarks.scenarios")


@pytest.fixture(scope="module")
def results() -> dict[int, Any]:
    """Every scenario's smoke run, once for the module."""
    return {n: scenarios.run_scenario(n, smoke=True) for n in scenarios.SCENARIOS}


def test_every_scenario_returns_tables_and_a_reading(results: dict[int, Any]) -> None:
    """Each scenario yields its number, a clock, non-empty tables and a reading."""
    assert sorted(results) == [1, 2, 3, 4, 5, 6]
    for number, result in results.items():
        assert result.number == number
        assert result.clock
        assert result.reading
        for table in result.tables:
            assert table.rows
            assert all(len(row) == len(table.headers) for row in table.rows)


def test_backoff_grid_covers_every_strategy(results: dict[int, Any]) -> None:
    """Scenario 1 reports calls and completion time for each strategy at each N."""
    data = results[1].data
    assert {"full", "equal", "decorrelated", "exponential", "none"} <= set(data["grid"])
    for per_n in data["grid"].values():
        assert set(per_n) == set(data["clients"])
        for calls, seconds in per_n.values():
            assert calls >= max(data["clients"][0], 1)
            assert seconds > 0


def test_outage_counts_attempts_for_asyncres_and_the_baseline(results: dict[int, Any]) -> None:
    """Scenario 2 follows the outage's requests: without retries, one attempt each."""
    main = results[2].data["main"]
    baseline = main["no retry (baseline)"]
    assert baseline.requests > 0
    assert baseline.amplification == 1.0
    ours = main["asyncres `Retry` defaults"]
    assert 1.0 <= ours.amplification <= 3.0
    assert ours.amplification == main["asyncres `Retry` defaults, on trio"].amplification


def test_brownout_success_rates_are_fractions(results: dict[int, Any]) -> None:
    """Scenario 3 reports a success rate in [0, 1] for each contender and failure fraction."""
    for main in results[3].data["results"].values():
        for outcome in main.values():
            assert 0.0 <= outcome.success_rate <= 1.0
            assert outcome.amplification >= 1.0


def test_slow_dependency_classifies_every_request(results: dict[int, Any]) -> None:
    """Scenario 4 puts each request in exactly one outcome bucket."""
    for outcome in results[4].data["results"].values():
        buckets = outcome.on_time + outcome.late + outcome.failed_fast + outcome.failed_slow
        assert buckets == outcome.requests > 0


def test_recovery_times_are_measured_for_each_breaker(results: dict[int, Any]) -> None:
    """Scenario 5 yields a non-negative recovery time per trial and breaker."""
    trials = results[5].data["results"]
    assert ("alike", "asyncres") in trials
    assert ("alike", "no breaker") in trials
    for ts in trials.values():
        for trial in ts:
            assert trial.recovery >= 0.0
            assert not math.isnan(trial.reached_during_outage)


def test_command_line_smoke_run_prints_markdown() -> None:
    """`python -m benchmarks.scenarios --smoke --only 2` prints a markdown section."""
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks.scenarios", "--smoke", "--only", "2"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert completed.returncode == 0, completed.stderr
    assert "## 2. Outage amplification" in completed.stdout
    assert "| contender |" in completed.stdout


def test_budget_arithmetic_matches_the_published_bounds() -> None:
    """The readings' bounds: 1.1 x in an outage at 100 req/s, 70 % at 1.4 x for p = 50 %."""
    import asyncres
    from benchmarks.scenarios import amplification

    budget = asyncres.RetryBudget()
    assert amplification._outage_bound(budget, 100.0) == pytest.approx(1.1)
    assert amplification._outage_bound(budget, 10.0) == pytest.approx(1.2)
    # A brownout where half the retries succeed earns 0.1 + 0.9 * 0.5 = 0.55.
    assert amplification._failed_allowed(budget, 100.0, retry_success=0.5) == pytest.approx(0.55)
    assert amplification._failed_needed(0.2) == pytest.approx(0.048)
    success, attempts = amplification._budget_bound(0.5, 0.2)
    assert (success, attempts) == (pytest.approx(0.70), pytest.approx(1.40))
    assert amplification._budget_bound(0.2, 0.2) == (
        pytest.approx(1 - 0.2**3),
        pytest.approx(1.24),
    )


def test_brownout_verdicts_follow_the_numbers() -> None:
    """Two success rates within two standard errors are level; otherwise one wins."""
    from benchmarks.scenarios import amplification
    from benchmarks.scenarios._load import Outcome

    ours = Outcome(requests=6000, attempts=7500, successes=5945)
    assert amplification.compare(ours, Outcome(6000, 7500, 5952)) == "is level with"
    assert amplification.compare(ours, Outcome(6000, 7560, 5999)) == "**loses to**"
    assert amplification.compare(Outcome(6000, 7560, 5999), ours) == "beats"


def test_rendered_results_are_computed_not_prototypes(results: dict[int, Any]) -> None:
    """The smoke markdown has a summary row per scenario, no prototype rows, and no history."""
    from benchmarks.scenarios._report import render

    text = render(list(results.values()), command="smoke", seconds=1.0, workers=1)
    assert "prototype" not in text.lower()
    assert "proposed fix" not in text.lower()
    summary = text.split("## Summary", 1)[1].split("## 1.", 1)[0]
    assert summary.count("\n| ") == 2 + 7  # header, rule, and one row per scenario (3 twice)
    assert "**Where asyncres still loses, in this run.**" in text
    # Earlier runs are compared only with full runs on their seeds.
    assert "What the scenarios changed in the library" not in text


def test_history_is_compared_only_on_the_same_seeds(results: dict[int, Any]) -> None:
    """The closing note's before/after needs a full run with the earlier run's seed."""
    import dataclasses

    from benchmarks.scenarios._report import BEFORE_FIXES, _comparable

    slow = results[4]
    assert not _comparable(slow, BEFORE_FIXES)  # a smoke run
    full = dataclasses.replace(slow, smoke=False)
    assert _comparable(full, BEFORE_FIXES)
    assert not _comparable(dataclasses.replace(full, seed=5), BEFORE_FIXES)


def test_brownout_has_the_tuned_budget_row(results: dict[int, Any]) -> None:
    """Scenario 3 runs `Retry` with `RetryBudget(ratio=0.5)` next to the defaults."""
    from benchmarks.scenarios._retriers import ASYNCRES_DEFAULTS, ASYNCRES_TUNED

    for main in results[3].data["results"].values():
        assert {ASYNCRES_DEFAULTS, ASYNCRES_TUNED} <= set(main)


def test_overload_scenario_measures_goodput_during_the_fault(results: dict[int, Any]) -> None:
    """Scenario 6: served calls during the fault never exceed the capacity; retry storms
    (many attempts) serve less than the capacity allows, and asyncres adds the least load."""
    data = results[6].data
    rate, capacity, main = data["rate"], data["capacity"], data["main"]
    assert capacity == 0.5 * rate
    for name, outcome in main.items():
        # A quarter second of burst at the start is all a bucket may add to its capacity.
        assert outcome.served_per_second <= capacity * 1.1, name
    from benchmarks.scenarios._retriers import ASYNCRES_DEFAULTS, is_peer

    ours = main[ASYNCRES_DEFAULTS].attempts_per_second
    peers = [o.attempts_per_second for n, o in main.items() if is_peer(n)]
    assert peers
    assert all(ours < theirs for theirs in peers)
