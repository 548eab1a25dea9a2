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
    assert sorted(results) == [1, 2, 3, 4, 5]
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
