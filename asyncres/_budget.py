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
from ._registry import track
from ._setting import Setting
from ._store import SharedWindow, Store, checked_store

__all__ = ["RetryBudget", "RetryBudgetStatistics"]

# Deposits are counted without reading the clock and folded into the time window every
# this many calls (and before every withdrawal). The clock read is what costs on the
# success path; the price is that at most this many deposits are dated late.
_FOLD_EVERY = 32
_SLICES = 10
# An overload signal holds the adaptive ratio at its floor for this share of the window (1 s
# of the default 10 s): while the dependency keeps asking for room, and briefly after.
_OVERLOAD_HOLD = 0.1
# What a budget shares with the fleet (`store=`), and the others' window when alone.
_FLEET_FIELDS = ("deposits", "withdrawals", "retries", "refunds", "overloads")
_ALONE = (0.0, 0.0, 0.0, 0.0, 0.0)


@dataclass(frozen=True, slots=True)
class RetryBudgetStatistics:
    """A snapshot of a `RetryBudget`."""

    __module__ = "asyncres"

    #: Retries the budget would allow right now.
    available: float
    #: First attempts deposited during the last ``ttl`` seconds.
    deposits: int
    #: Retries withdrawn and not refunded during the last ``ttl`` seconds.
    withdrawals: int
    #: Retries refused since the budget was created.
    refused: int
    #: The ratio in force right now (fixed, or the adaptive one).
    ratio: float = 0.0
    #: Share of the window's retries that succeeded (``None`` before the first retry).
    retry_success_rate: float | None = None
    #: Whether an overload signal was seen during the last tenth of ``ttl``.
    overloaded: bool = False
    #: Server-paced retries sent on an empty budget since it was created (`Retry` allows
    #: one per call: the retry a ``Retry-After`` scheduled).
    overdrawn: int = 0


class RetryBudget:
    """Failed retries allowed per ``ttl``: ``max(min_per_second * ttl, ratio * requests)``.

    The token bucket of Finagle's ``RetryBudget``: every first attempt deposits one token,
    every retry withdraws ``1 / ratio``, and both expire after ``ttl`` seconds (a sliding
    window of 10 slices). The reserve of ``min_per_second * ttl`` retries lets quiet clients
    retry at all. Finagle *adds* the reserve to the deposits; asyncres takes the larger of the
    two (Envoy's "20 % of requests, at least N"), so a busy client never exceeds
    ``1 + ratio`` times its offered load, even during a total outage.

    A retry that succeeds is refunded (`refund`): the budget bounds *failed* retries, the
    wasted work of an outage, and lets retries ride out brief, partial failures.

    **Adaptive ratio (the default).** Without ``ratio``, the ratio follows what retries
    achieve: ``min_ratio + (max_ratio - min_ratio) * s``, where ``s`` is the share of the
    window's retries that succeeded (or of the last two slices', when higher) — and
    ``min_ratio`` whenever the dependency showed an overload signal in the last tenth of
    the window (`signal_overload`: `Retry` sends it
    for an error with a ``retry_after`` hint, i.e. a 429/503 with ``Retry-After``, and for
    a `RejectedError`, i.e. local shedding). Random failures with capacity to spare
    (retries succeed about as often as first attempts) earn more retries; a total outage
    (no retry succeeds) or an overload shrinks the ratio to ``min_ratio``. The bound: in a
    total outage no retry is ever refunded, so failed retries stay below
    ``max(min_per_second * ttl, min_ratio * requests)`` per ``ttl`` — at most
    ``1 + max(min_ratio, min_per_second / rate)`` times the offered load: at most 1.2 times
    at every rate from 10 requests a second up with the defaults.

    With ``ratio`` given the budget is Finagle's fixed one.

    With ``store=`` (e.g. `asyncres.redis.RedisStore`) and a ``name=``, every process
    sharing the name shares one budget: each adds the others' deposits, withdrawals,
    retries and refunds over the window (as of the store's last sync) to its own, so the
    reserve of ``min_per_second * ttl`` and the ratio bound the fleet's retries, not each
    process's; an overload signal another process saw reaches this one at the next sync
    and holds its ratio at the floor as well. A lost store leaves each process its local
    budget.

    ``name`` labels it in telemetry (`asyncres.otel`, `asyncres.prometheus`); a `Retry`'s own
    default budget takes the retry's name.

    Share one budget between every `Retry` that calls the same dependency. It is not
    thread-safe: use it from one event loop (as anyio primitives are).
    """

    __slots__ = (
        "__weakref__",
        "_clock",
        "_deposit_total",
        "_deposits",
        "_fleet_overloads",
        "_max_ratio",
        "_min_per_second",
        "_min_ratio",
        "_now",
        "_overdrawn",
        "_overload_total",
        "_overloaded_until",
        "_overloads",
        "_pending",
        "_ratio",
        "_refund_total",
        "_refunds",
        "_refused",
        "_replica",
        "_retries",
        "_retry_total",
        "_slice",
        "_slice_seconds",
        "_ttl",
        "_withdraw_total",
        "_withdrawals",
    )

    __module__ = "asyncres"

    ratio: Setting[float | None] = Setting()
    min_ratio: Setting[float] = Setting()
    max_ratio: Setting[float] = Setting()
    min_per_second: Setting[float] = Setting()
    ttl: Setting[float] = Setting()

    def __init__(
        self,
        *,
        ratio: float | None = None,
        min_ratio: float = 0.1,
        max_ratio: float = 1.0,
        min_per_second: float = 2.0,
        ttl: float = 10.0,
        clock: Callable[[], float] | None = None,
        name: str | None = None,
        store: Store | None = None,
    ) -> None:
        if store is not None:
            checked_store(store, name, "budget")
        if ratio is not None:
            ratio = _validation.ratio("ratio", ratio)
            min_ratio = max_ratio = ratio
        else:
            min_ratio = _validation.ratio("min_ratio", min_ratio)
            max_ratio = _validation.ratio("max_ratio", max_ratio)
            if min_ratio > max_ratio:
                raise ValueError(
                    f"`min_ratio` must be <= `max_ratio`, got {min_ratio!r} > {max_ratio!r}"
                )
        self._ratio = ratio
        self._min_ratio = min_ratio
        self._max_ratio = max_ratio
        self._min_per_second = _validation.non_negative("min_per_second", min_per_second)
        if math.isinf(self._min_per_second):
            raise ValueError("`min_per_second` must be finite, got inf")
        self._ttl = _validation.finite_positive("ttl", ttl)
        self._clock = clock or anyio.current_time
        self._slice_seconds = self._ttl / _SLICES
        self._deposits = [0] * _SLICES
        self._withdrawals = [0] * _SLICES
        self._retries = [0] * _SLICES
        self._refunds = [0] * _SLICES
        self._overloads = [0] * _SLICES
        self._deposit_total = 0
        self._withdraw_total = 0
        self._retry_total = 0
        self._refund_total = 0
        self._overload_total = 0
        self._slice: int | None = None
        self._now = -math.inf
        self._overloaded_until = -math.inf
        self._pending = 0
        self._refused = 0
        self._overdrawn = 0
        self._replica: SharedWindow | None = None
        self._fleet_overloads = 0.0
        if store is not None:
            self._replica = SharedWindow(
                "budget", name or "", _FLEET_FIELDS, self._ttl, self._fleet_synced
            )
            store.attach(self._replica)
        track("retry_budget", self, name)

    def __repr__(self) -> str:
        if self._ratio is not None:
            ratio = f"ratio={self._ratio!r}"
        else:
            ratio = f"min_ratio={self._min_ratio!r}, max_ratio={self._max_ratio!r}"
        return f"RetryBudget({ratio}, min_per_second={self._min_per_second!r}, ttl={self._ttl!r})"

    def deposit(self) -> None:
        """Record one first attempt (a request). Cheap: no clock read on most calls."""
        self._pending += 1
        if self._pending >= _FOLD_EVERY:
            self._advance()

    def try_withdraw(self) -> bool:
        """Take one retry from the budget; ``False`` (and nothing taken) when it is empty."""
        if self._available() >= 1.0:
            self._record_withdrawal()
            return True
        self._refused += 1
        return False

    def _record_withdrawal(self) -> None:
        index = self._slice % _SLICES  # type: ignore[operator]
        self._withdrawals[index] += 1
        self._withdraw_total += 1
        self._retries[index] += 1
        self._retry_total += 1
        if self._replica is not None:
            self._replica.add(1)
            self._replica.add(2)

    def _overdraw(self) -> None:
        """Take a retry the server scheduled (``Retry-After``) that `try_withdraw` just
        refused: `Retry` sends one such retry per call on an empty budget. It counts in the
        window as any retry (it keeps later retries out; a success refunds it)."""
        self._refused -= 1  # not refused after all
        self._overdrawn += 1
        self._record_withdrawal()

    def refund(self) -> None:
        """Give back one withdrawal: the retry it paid for succeeded.

        `Retry` calls this when an attempt after the first succeeds, so that the budget
        bounds the retries that *fail* (the wasted work an outage causes), while retries
        that ride out a brief blip cost nothing (gRPC's throttling credits successes too).
        Refunds are also what raises the adaptive ratio.
        """
        if self._withdraw_total <= 0:
            return  # the withdrawal has already left the window
        self._advance()
        index = self._slice % _SLICES  # type: ignore[operator]
        self._withdrawals[index] -= 1
        self._withdraw_total -= 1
        self._refunds[index] += 1
        self._refund_total += 1
        if self._replica is not None:
            self._replica.add(1, -1.0)
            self._replica.add(3)

    def signal_overload(self) -> None:
        """Record that the dependency shows overload: the adaptive ratio drops to ``min_ratio``
        for the next tenth of the window (``ttl / 10`` seconds), so a dependency that keeps
        asking for room keeps it there, and one that stops gets its retries back quickly.

        `Retry` calls it for an error carrying a ``retry_after`` hint (a 429 or a 503 with
        ``Retry-After``, an open circuit) and for a `RejectedError` (local load shedding).
        """
        self._advance()
        self._overloads[self._slice % _SLICES] += 1  # type: ignore[operator]
        self._overload_total += 1
        self._overloaded_until = self._now + _OVERLOAD_HOLD * self._ttl
        if self._replica is not None:
            self._replica.add(4)

    def _fleet_synced(self) -> None:
        """The store synced: signals another process saw since the last sync (the others'
        window count grew) hold this budget at the floor too, as if seen here."""
        replica = self._replica
        assert replica is not None
        seen = replica.totals[4]
        if seen > self._fleet_overloads:
            until = self._clock() + _OVERLOAD_HOLD * self._ttl
            if until > self._overloaded_until:
                self._overloaded_until = until
        self._fleet_overloads = seen

    def statistics(self) -> RetryBudgetStatistics:
        """Counts over the current window (reads the clock)."""
        available = self._available()
        retries = self._retry_total
        return RetryBudgetStatistics(
            available=available,
            deposits=self._deposit_total,
            withdrawals=self._withdraw_total,
            refused=self._refused,
            ratio=self._current_ratio(),
            retry_success_rate=self._refund_total / retries if retries else None,
            overloaded=self._overloaded(),
            overdrawn=self._overdrawn,
        )

    def _overloaded(self) -> bool:
        """An overload signal in the last tenth of the window (the recent past only)."""
        return self._now < self._overloaded_until

    def _current_ratio(self) -> float:
        low = self._min_ratio
        _, _, other_retries, other_refunds, _ = self._others()
        retries = self._retry_total + other_retries
        if self._max_ratio == low or not retries or self._overloaded():
            return low
        share = (self._refund_total + other_refunds) / retries
        # The better of the window and its last two slices: failures that ended (a slow
        # database that recovered) stop holding the ratio down within two slices, as the
        # Throttle lets go. In an outage no retry succeeds in either, so the bound holds.
        slice_ = self._slice
        if slice_ is not None and share < 1.0:
            now, before = slice_ % _SLICES, (slice_ - 1) % _SLICES
            recent = self._retries[now] + self._retries[before]
            if recent:
                share = max(share, (self._refunds[now] + self._refunds[before]) / recent)
        return low + (self._max_ratio - low) * min(1.0, share)

    def _available(self) -> float:
        self._advance()
        deposits, withdrawals, _, _, _ = self._others()
        allowance = max(
            self._min_per_second * self._ttl,
            self._current_ratio() * (self._deposit_total + deposits),
        )
        return allowance - self._withdraw_total - withdrawals

    def _others(self) -> tuple[float, ...] | list[float]:
        """The other processes' window (deposits, withdrawals, retries, refunds)."""
        replica = self._replica
        return _ALONE if replica is None else replica.totals

    def _advance(self) -> None:
        """Expire slices older than ``ttl`` and fold pending deposits into the current one."""
        self._now = now = self._clock()
        now_slice = int(now // self._slice_seconds)
        current = self._slice
        counters = (
            self._deposits,
            self._withdrawals,
            self._retries,
            self._refunds,
            self._overloads,
        )
        if current is None or now_slice < current or now_slice - current >= _SLICES:
            # First use, a clock that went backwards (a new event loop), or a long pause.
            for counts in counters:
                counts[:] = [0] * _SLICES
            self._deposit_total = self._withdraw_total = 0
            self._retry_total = self._refund_total = self._overload_total = 0
        elif now_slice != current:
            deposits, withdrawals, retries, refunds, overloads = counters
            for expired in range(current + 1, now_slice + 1):
                index = expired % _SLICES
                self._deposit_total -= deposits[index]
                self._withdraw_total -= withdrawals[index]
                self._retry_total -= retries[index]
                self._refund_total -= refunds[index]
                self._overload_total -= overloads[index]
                deposits[index] = withdrawals[index] = retries[index] = 0
                refunds[index] = overloads[index] = 0
        self._slice = now_slice
        if self._pending:
            self._deposits[now_slice % _SLICES] += self._pending
            self._deposit_total += self._pending
            if self._replica is not None:
                self._replica.add(0, self._pending)
            self._pending = 0
