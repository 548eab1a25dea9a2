"""Health metrics: a circuit breaker's sliding windows behind one record/snapshot interface.

`HealthMetrics` is the interface (Resilience4j's ``Metrics``, Polly's ``HealthMetrics``)::

    record(now, failed, slow)               one dated outcome
    record_successes(count, since, now)     a batch of successes spread evenly over [since, now]
    snapshot(now) -> HealthSnapshot         (total, failures, slow) of the window as of ``now``
    reset()                                 forget everything

It is the seam for shared state: the in-process windows here are the default, and the
Redis-backed store of the fleet issue (one breaker per downstream for the whole fleet)
implements the same four methods, fed by the same batches, so the breaker does not change.
An implementation decides *what* the window holds; the breaker decides what counts as a
failure or a slow call, and when to trip on a snapshot.

``now`` is the event loop's time read by the breaker (so virtual clocks in tests apply);
a window never reads a clock itself. Every update is O(1) (amortised for count windows):
time buckets and rings of failure positions, with subtract-on-evict.
"""

from __future__ import annotations

from collections import deque
from typing import NamedTuple, Protocol

__all__ = ["CountWindow", "HealthMetrics", "HealthSnapshot", "TimeWindow"]

#: Buckets of a time window (Polly, Hystrix: 10).
BUCKETS = 10


class HealthSnapshot(NamedTuple):
    """The outcomes in a window at one moment (a tuple: cheap to make on the failure path)."""

    #: Calls recorded (successes, failures, excluded errors).
    total: int
    #: Failures among them.
    failures: int
    #: Calls slower than the breaker's ``slow_call_duration`` among them.
    slow: int

    @property
    def failure_rate(self) -> float:
        """``failures / total`` (0.0 for an empty window)."""
        return self.failures / self.total if self.total else 0.0

    @property
    def slow_call_rate(self) -> float:
        """``slow / total`` (0.0 for an empty window)."""
        return self.slow / self.total if self.total else 0.0


class HealthMetrics(Protocol):
    """Where a breaker keeps the outcomes it trips on (in memory here; Redis later)."""

    def record(self, now: float, failed: bool, slow: bool) -> None:
        """Add one outcome that ended at ``now``."""

    def record_successes(self, count: int, since: float, now: float) -> None:
        """Add ``count`` successes that happened evenly over ``[since, now]``."""

    def snapshot(self, now: float | None) -> HealthSnapshot:
        """The window's counts as of ``now`` (``None``: as of the last update, no clock)."""

    def reset(self) -> None:
        """Forget every outcome (the circuit closed, or was reset)."""


class TimeWindow:
    """Outcomes of the last ``seconds``, in 10 buckets (the window slides a bucket at a time)."""

    __slots__ = ("_calls", "_current", "_failures", "_slows", "calls", "failures", "slows", "width")

    def __init__(self, seconds: float) -> None:
        self.width = seconds / BUCKETS
        self._calls = [0] * BUCKETS
        self._failures = [0] * BUCKETS
        self._slows = [0] * BUCKETS
        self._current: int | None = None
        self.calls = self.failures = self.slows = 0

    def reset(self) -> None:
        for counts in (self._calls, self._failures, self._slows):
            counts[:] = [0] * BUCKETS
        self._current = None
        self.calls = self.failures = self.slows = 0

    def snapshot(self, now: float | None) -> HealthSnapshot:
        if now is not None:
            self._advance(now)
        return HealthSnapshot(self.calls, self.failures, self.slows)

    def record_successes(self, count: int, since: float, now: float) -> None:
        bucket = self._advance(now)
        width = self.width
        first = int(since // width)
        if since >= now or first >= bucket:
            self._calls[bucket % BUCKETS] += count
            self.calls += count
            return
        span = now - since
        oldest = bucket - BUCKETS + 1
        if first < oldest:  # the part before the window is dropped
            first = oldest
            assigned = round(count * (first * width - since) / span)
        else:
            assigned = 0
        calls = self._calls
        for b in range(first, bucket + 1):
            upto = count if b == bucket else round(count * ((b + 1) * width - since) / span)
            calls[b % BUCKETS] += upto - assigned
            self.calls += upto - assigned
            assigned = upto

    def record(self, now: float, failed: bool, slow: bool) -> None:
        i = self._advance(now) % BUCKETS
        self._calls[i] += 1
        self.calls += 1
        if failed:
            self._failures[i] += 1
            self.failures += 1
        if slow:
            self._slows[i] += 1
            self.slows += 1

    def _advance(self, now: float) -> int:
        """Evict the buckets that left the window by ``now``; return ``now``'s bucket."""
        bucket = int(now // self.width)
        current = self._current
        if current is None or bucket < current or bucket - current >= BUCKETS:
            # First use, a long pause, or a clock that went backwards (a new event loop).
            if self.calls:
                self.reset()
        elif bucket > current:
            calls, failures, slows = self._calls, self._failures, self._slows
            for expired in range(current + 1, bucket + 1):
                i = expired % BUCKETS
                self.calls -= calls[i]
                self.failures -= failures[i]
                self.slows -= slows[i]
                calls[i] = failures[i] = slows[i] = 0
        self._current = bucket
        return bucket


class CountWindow:
    """Outcomes of the last ``size`` calls: a call counter and the positions of failures."""

    __slots__ = ("_failed", "_seq", "_slow", "size")

    def __init__(self, size: int) -> None:
        self.size = size
        self._seq = 0
        self._failed: deque[int] = deque()
        self._slow: deque[int] = deque()

    def reset(self) -> None:
        self._seq = 0
        self._failed.clear()
        self._slow.clear()

    def snapshot(self, now: float | None) -> HealthSnapshot:
        return HealthSnapshot(min(self._seq, self.size), len(self._failed), len(self._slow))

    def record_successes(self, count: int, since: float, now: float) -> None:
        self._seq += count
        self._evict()

    def record(self, now: float, failed: bool, slow: bool) -> None:
        self._seq = seq = self._seq + 1
        if failed:
            self._failed.append(seq)
        if slow:
            self._slow.append(seq)
        self._evict()

    def _evict(self) -> None:
        oldest = self._seq - self.size
        for positions in (self._failed, self._slow):
            while positions and positions[0] <= oldest:
                positions.popleft()
