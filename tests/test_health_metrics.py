"""The breaker's windows behind the HealthMetrics record/snapshot interface (no event loop)."""

from __future__ import annotations

import pytest

from asyncres._health_metrics import CountWindow, HealthMetrics, HealthSnapshot, TimeWindow


def windows() -> list[HealthMetrics]:
    return [TimeWindow(10.0), CountWindow(10)]


@pytest.mark.parametrize("metrics", windows(), ids=["time", "count"])
def test_record_and_snapshot_count_outcomes(metrics: HealthMetrics) -> None:
    """Recorded outcomes show up in the snapshot with their rates; reset forgets them."""
    assert metrics.snapshot(0.0) == HealthSnapshot(0, 0, 0)
    assert metrics.snapshot(0.0).failure_rate == 0.0
    metrics.record_successes(5, 0.0, 1.0)
    metrics.record(1.0, True, False)
    metrics.record(1.5, True, True)
    metrics.record(2.0, False, True)
    snapshot = metrics.snapshot(2.0)
    assert snapshot == HealthSnapshot(total=8, failures=2, slow=2)
    assert (snapshot.failure_rate, snapshot.slow_call_rate) == (0.25, 0.25)
    assert metrics.snapshot(None) == snapshot
    metrics.reset()
    assert metrics.snapshot(2.0) == HealthSnapshot(0, 0, 0)


def test_a_time_window_evicts_outcomes_older_than_its_length() -> None:
    """A 10 s window in 1 s buckets forgets a failure once its bucket leaves the window."""
    window = TimeWindow(10.0)
    window.record(0.5, True, False)
    window.record(5.5, False, False)
    assert window.snapshot(9.9) == HealthSnapshot(2, 1, 0)
    assert window.snapshot(10.0) == HealthSnapshot(1, 0, 0)
    assert window.snapshot(None) == HealthSnapshot(1, 0, 0)  # as of the last update
    assert window.snapshot(100.0) == HealthSnapshot(0, 0, 0)


def test_a_count_window_keeps_only_the_last_calls() -> None:
    """A window of 3 calls forgets the oldest outcome on each new one."""
    window = CountWindow(3)
    window.record(0.0, True, True)
    window.record_successes(2, 0.0, 0.0)
    assert window.snapshot(0.0) == HealthSnapshot(3, 1, 1)
    window.record(0.0, False, False)
    assert window.snapshot(0.0) == HealthSnapshot(3, 0, 0)
