"""RetryBudget: a token bucket that keeps retries a small fraction of traffic.

Per-request attempt limits alone let an outage triple the load on a dependency (Google SRE
book, "Handling Overload"). A budget shared by every call site of one dependency caps
retries at a fraction of recent requests instead.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass

import anyio

from . import _validation
from ._setting import Setting

__all__ = ["RetryBudget", "RetryBudgetStatistics"]

# Deposits are counted without reading the clock and folded into the time window every
# this many calls (and before every withdrawal). The clock read is what costs on the
# success path; the price is that at most this many deposits are dated late.
_FOLD_EVERY = 32
_SLICES = 10


@dataclass(frozen=True, slots=True)
class RetryBudgetStatistics:
    """A snapshot of a `RetryBudget`."""

    __module__ = "asyncres"

    #: Retries the budget would allow right now.
    available: float
    #: First attempts deposited during the last ``ttl`` seconds.
    deposits: int
    #: Retries withdrawn during the last ``ttl`` seconds.
    withdrawals: int
    #: Retries refused since the budget was created.
    refused: int


class RetryBudget:
    """Retries allowed: ``max(min_per_second * ttl, ratio * requests) - retries``, per ``ttl``.

    The token bucket of Finagle's ``RetryBudget`` (defaults ``ttl=10 s``, ``ratio=0.2``,
    ``min_per_second=10``): every first attempt deposits one token, every retry withdraws
    ``1 / ratio``, and both expire after ``ttl`` seconds (a sliding window of 10 slices).
    The reserve of ``min_per_second * ttl`` retries lets quiet clients retry at all.

    One deliberate difference: Finagle *adds* the reserve to the deposits; we take the
    larger of the two (Envoy's "20 % of requests, at least N"). A busy client therefore
    never exceeds ``1 + ratio`` times its offered load, even during a total outage.

    A retry that succeeds is refunded (`refund`): the budget bounds *failed* retries, the
    wasted work of an outage, and lets retries ride out brief, partial failures.

    Share one budget between every `Retry` that calls the same dependency. It is not
    thread-safe: use it from one event loop (as anyio primitives are).
    """

    __slots__ = (
        "_clock",
        "_deposit_total",
        "_deposits",
        "_min_per_second",
        "_pending",
        "_ratio",
        "_refused",
        "_slice",
        "_slice_seconds",
        "_ttl",
        "_withdraw_total",
        "_withdrawals",
    )

    __module__ = "asyncres"

    ratio: Setting[float] = Setting()
    min_per_second: Setting[float] = Setting()
    ttl: Setting[float] = Setting()

    def __init__(
        self,
        *,
        ratio: float = 0.2,
        min_per_second: float = 10.0,
        ttl: float = 10.0,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._ratio = _validation.ratio("ratio", ratio)
        self._min_per_second = _validation.non_negative("min_per_second", min_per_second)
        if math.isinf(self._min_per_second):
            raise ValueError("`min_per_second` must be finite, got inf")
        self._ttl = _validation.finite_positive("ttl", ttl)
        self._clock = clock or anyio.current_time
        self._slice_seconds = self._ttl / _SLICES
        self._deposits = [0] * _SLICES
        self._withdrawals = [0] * _SLICES
        self._deposit_total = 0
        self._withdraw_total = 0
        self._slice: int | None = None
        self._pending = 0
        self._refused = 0

    def __repr__(self) -> str:
        return (
            f"RetryBudget(ratio={self._ratio!r}, min_per_second={self._min_per_second!r}, "
            f"ttl={self._ttl!r})"
        )

    def deposit(self) -> None:
        """Record one first attempt (a request). Cheap: no clock read on most calls."""
        self._pending += 1
        if self._pending >= _FOLD_EVERY:
            self._advance()

    def try_withdraw(self) -> bool:
        """Take one retry from the budget; ``False`` (and nothing taken) when it is empty."""
        if self._available() >= 1.0:
            self._withdrawals[self._slice % _SLICES] += 1  # type: ignore[operator]
            self._withdraw_total += 1
            return True
        self._refused += 1
        return False

    def refund(self) -> None:
        """Give back one withdrawal: the retry it paid for succeeded.

        `Retry` calls this when an attempt after the first succeeds, so that the budget
        bounds the retries that *fail* (the wasted work an outage causes), while retries
        that ride out a brief blip cost nothing (gRPC's throttling credits successes too).
        """
        if self._withdraw_total <= 0:
            return  # the withdrawal has already left the window
        self._advance()
        self._withdrawals[self._slice % _SLICES] -= 1  # type: ignore[operator]
        self._withdraw_total -= 1

    def statistics(self) -> RetryBudgetStatistics:
        """Counts over the current window (reads the clock)."""
        available = self._available()
        return RetryBudgetStatistics(
            available=available,
            deposits=self._deposit_total,
            withdrawals=self._withdraw_total,
            refused=self._refused,
        )

    def _available(self) -> float:
        self._advance()
        allowance = max(self._min_per_second * self._ttl, self._ratio * self._deposit_total)
        return allowance - self._withdraw_total

    def _advance(self) -> None:
        """Expire slices older than ``ttl`` and fold pending deposits into the current one."""
        now_slice = int(self._clock() // self._slice_seconds)
        current = self._slice
        if current is None or now_slice < current or now_slice - current >= _SLICES:
            # First use, a clock that went backwards (a new event loop), or a long pause.
            self._deposits = [0] * _SLICES
            self._withdrawals = [0] * _SLICES
            self._deposit_total = self._withdraw_total = 0
        else:
            deposits, withdrawals = self._deposits, self._withdrawals
            for expired in range(current + 1, now_slice + 1):
                index = expired % _SLICES
                self._deposit_total -= deposits[index]
                self._withdraw_total -= withdrawals[index]
                deposits[index] = withdrawals[index] = 0
        self._slice = now_slice
        if self._pending:
            self._deposits[now_slice % _SLICES] += self._pending
            self._deposit_total += self._pending
            self._pending = 0
