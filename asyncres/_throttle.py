"""Throttle: client-side adaptive throttling, rejecting locally what the dependency would refuse.

The Google SRE book ("Handling Overload", client-side throttling): over a sliding window,
each client counts its ``requests`` and the ``accepts`` — the outcomes the dependency served —
and rejects a new request locally with probability::

    max(0, (requests - k * accepts) / (requests + 1))

While the dependency serves everything, ``requests == accepts`` and the probability is 0.
When it refuses more than ``1 - 1/k`` of the traffic (half, with the default ``k = 2``), the
client sheds the excess itself, cheaply, before it reaches the struggling dependency: an
overloaded dependency that can serve ``C`` calls a second receives about ``k * C`` from each
client, not the whole offered load. Local rejections count as requests, so the rule
regulates itself.

Two additions make it follow a recovery quickly (the book's formula alone, over a 30 s
window, keeps rejecting for tens of seconds after the dependency is back, until the old
failures leave the window):

- the probability is capped at ``max_reject_probability`` (0.9; Envoy's admission control
  caps at 0.8): a share of the traffic always reaches the dependency, so the throttle sees it
  serve again;
- the probability is the *smaller* of the formula over the whole window and the formula over
  the last two buckets (the current one and the one before it): the window decides how hard
  to throttle while the dependency refuses work, the recent buckets how fast to let go when
  it serves again. After a total outage the pass share roughly doubles every bucket (10 %,
  20 %, 40 %, 80 %, all), so a throttle with 1 s buckets is fully open about 4 s after the
  dependency returns, and the ramp itself protects a dependency that comes back cold.

Cost. While the probability is 0 the success path reads no clock: accepted calls are counted
and folded into the window every `_FOLD_EVERY` calls (and whenever an outcome is not
accepted), as `RetryBudget` does. While the throttle is engaged each call reads the clock
once and draws one random number.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, ParamSpec, TypeVar

from . import _validation
from ._clock import Clock, current_time
from ._events import CallRejected, Listener, ThrottleEngaged, ThrottleReleased, emit
from ._exceptions import RejectedError, ThrottledError
from ._matching import ErrorFilter, matcher
from ._policy import PolicyFaces
from ._registry import track
from ._setting import Setting
from ._store import SharedWindow, Store, checked_store

__all__ = ["Throttle", "ThrottleStatistics"]

T = TypeVar("T")
P = ParamSpec("P")

#: Accepted calls counted before they are dated and folded into the window.
_FOLD_EVERY = 32


@dataclass(frozen=True, slots=True)
class ThrottleStatistics:
    """A snapshot of a `Throttle` over its current window."""

    __module__ = "asyncres"

    #: Requests in the window: calls that reached the dependency plus local rejections.
    requests: int
    #: Outcomes in the window that the dependency served.
    accepts: int
    #: The probability that the next call is rejected locally.
    reject_probability: float
    #: Calls rejected locally since the throttle was created.
    rejected: int


class Throttle(PolicyFaces):
    """Reject calls locally, with the SRE book's probability, while a dependency refuses work.

    **What counts.** A call that returns is an accept, unless ``on_result(result)`` is true
    (e.g. an HTTP 503 response). A call that raises an exception matched by ``on`` and not by
    ``exclude`` was not served; any other exception was served (the dependency answered,
    e.g. "not found") and counts as an accept. A `RejectedError` from an inner layer counts
    as nothing (the call never reached the dependency) and neither does cancellation.

    **Probability.** ``max(0, (requests - k * accepts) / (requests + 1))`` over the window of
    ``window`` seconds in ``buckets`` buckets (defaults: ``k = 2``, 30 s in 1 s buckets, the
    SRE book's values and Envoy admission control's window), but no more than the same
    formula over the last two buckets (so that it lets go within a few buckets when the
    dependency serves again) and no more than ``max_reject_probability``.

    **Rejection.** A rejected call raises `ThrottledError` (a `RejectedError`, with
    ``reject_probability``), emits `CallRejected` (reason ``"throttled"``) and counts as a
    request. `ThrottleEngaged` is emitted when the probability leaves 0, `ThrottleReleased`
    when it returns to 0.

    **Faces.** ``await throttle.call(fn, *args, **kwargs)``, ``await throttle.execute(fn)``,
    ``@throttle`` and ``async with throttle: ...`` (there ``on_result`` does not apply).

    **Fleet.** With ``store=`` (e.g. `asyncres.redis.RedisStore`) and a ``name=``, the
    window's formula runs on the fleet's requests and accepts (the others' as of the
    store's last sync added to this process's), so a process that just started throttles as
    the fleet does; the release over the last two buckets still follows local evidence.

    Bookkeeping is synchronous, so a throttle is correct under concurrency without a lock.
    Not thread-safe: use it from one event loop (as anyio primitives).
    """

    __slots__ = (
        "__weakref__",
        "_accepts",
        "_accepts_total",
        "_bucket_seconds",
        "_buckets",
        "_clock",
        "_current",
        "_engaged",
        "_exclude",
        "_exclude_match",
        "_k",
        "_listeners",
        "_match",
        "_max_reject_probability",
        "_name",
        "_on",
        "_on_result",
        "_pending",
        "_probability",
        "_rejected",
        "_replica",
        "_requests",
        "_requests_total",
        "_rng",
        "_window",
    )

    __module__ = "asyncres"

    k: Setting[float] = Setting()
    window: Setting[float] = Setting()
    buckets: Setting[int] = Setting()
    max_reject_probability: Setting[float] = Setting()
    on: Setting[ErrorFilter] = Setting()
    exclude: Setting[ErrorFilter] = Setting()
    on_result: Setting[Callable[[Any], bool] | None] = Setting()
    name: Setting[str | None] = Setting()
    rng: Setting[random.Random | None] = Setting()

    def __init__(
        self,
        *,
        k: float = 2.0,
        window: float = 30.0,
        buckets: int = 30,
        max_reject_probability: float = 0.9,
        on: ErrorFilter = Exception,
        exclude: ErrorFilter = (),
        on_result: Callable[[Any], bool] | None = None,
        name: str | None = None,
        listeners: Iterable[Listener] = (),
        clock: Clock | None = None,
        rng: random.Random | None = None,
        store: Store | None = None,
    ) -> None:
        if store is not None:
            checked_store(store, name, "throttle")
        k = _validation.finite_positive("k", k)
        if k <= 1.0:
            raise ValueError(f"`k` must be > 1 (k <= 1 rejects healthy traffic), got {k!r}")
        self._k = k
        self._window = _validation.finite_positive("window", window)
        self._buckets = _validation.count("buckets", buckets, minimum=2)
        cap = _validation.ratio("max_reject_probability", max_reject_probability)
        if cap == 0.0:
            raise ValueError("`max_reject_probability` must be > 0 (0 never throttles), got 0.0")
        self._max_reject_probability = cap
        self._match = matcher(on, "on")
        self._exclude_match = matcher(exclude, "exclude")
        self._on = on
        self._exclude = exclude
        if on_result is not None and not callable(on_result):
            raise ValueError(f"`on_result` must be callable, got {on_result!r}")
        self._on_result = on_result
        self._name = name
        track("throttle", self, name)
        self._listeners = tuple(listeners)
        if clock is not None and not callable(clock):
            raise ValueError(f"`clock` must be callable, got {clock!r}")
        self._clock: Clock = clock or current_time
        self._rng = rng
        self._bucket_seconds = self._window / self._buckets
        self._requests = [0] * self._buckets
        self._accepts = [0] * self._buckets
        self._requests_total = 0
        self._accepts_total = 0
        self._current: int | None = None
        self._pending = 0
        self._probability = 0.0
        self._engaged = False
        self._rejected = 0
        self._replica: SharedWindow | None = None
        if store is not None:
            self._replica = SharedWindow(
                "throttle", name or "", ("requests", "accepts"), self._window, self._fold
            )
            store.attach(self._replica)

    def __repr__(self) -> str:
        name = f", name={self._name!r}" if self._name else ""
        return f"Throttle(k={self._k!r}, window={self._window!r}{name})"

    # -- the success path ----------------------------------------------------------------

    async def call(self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``await fn(*args, **kwargs)`` unless the throttle rejects it locally."""
        if self._engaged:
            self._admit()
        try:
            result = await fn(*args, **kwargs)
        except Exception as exc:
            self._record_error(exc)
            raise
        on_result = self._on_result
        if on_result is not None and on_result(result):
            self._record(served=False)
            return result
        pending = self._pending + 1
        self._pending = pending
        if pending >= _FOLD_EVERY:
            self._fold()
        return result

    async def __aenter__(self) -> Throttle:
        if self._engaged:
            self._admit()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            pending = self._pending + 1
            self._pending = pending
            if pending >= _FOLD_EVERY:
                self._fold()
        elif isinstance(exc, Exception):
            self._record_error(exc)

    # -- bookkeeping -----------------------------------------------------------------------

    def statistics(self) -> ThrottleStatistics:
        """Requests, accepts and the reject probability over the current window (reads the
        clock: call it from the event loop, or give the throttle a ``clock``)."""
        self._fold()
        return ThrottleStatistics(
            requests=self._requests_total,
            accepts=self._accepts_total,
            reject_probability=self._probability,
            rejected=self._rejected,
        )

    def _admit(self) -> None:
        """The engaged path: reject with the current probability, or let the call pass."""
        self._fold()
        probability = self._probability
        if probability <= 0.0:
            return
        draw = (self._rng or random).random()
        if draw >= probability:
            return
        self._rejected += 1
        self._record(served=False)
        emit(self._listeners, CallRejected(self._name, "throttled"))
        raise ThrottledError(self._name, reject_probability=probability)

    def _record_error(self, exc: Exception) -> None:
        if isinstance(exc, RejectedError):
            return  # an inner layer refused it: the dependency never saw the call
        self._record(served=not self._match(exc) or self._exclude_match(exc))

    def _record(self, *, served: bool) -> None:
        """Count one request (and its accept when ``served``), then update the probability."""
        index = self._advance()
        self._requests[index] += 1
        self._requests_total += 1
        if served:
            self._accepts[index] += 1
            self._accepts_total += 1
        replica = self._replica
        if replica is not None:
            replica.add(0)
            if served:
                replica.add(1)
        self._update()

    def _fold(self) -> None:
        self._advance()
        self._update()

    def _advance(self) -> int:
        """Expire old buckets and fold the pending accepts in; return the current bucket."""
        bucket = int(self._clock() // self._bucket_seconds)
        size = self._buckets
        current = self._current
        requests, accepts = self._requests, self._accepts
        if current is None or bucket < current or bucket - current >= size:
            # First use, a long pause, or a clock that went backwards (a new event loop).
            requests[:] = [0] * size
            accepts[:] = [0] * size
            self._requests_total = self._accepts_total = 0
        else:
            for expired in range(current + 1, bucket + 1):
                i = expired % size
                self._requests_total -= requests[i]
                self._accepts_total -= accepts[i]
                requests[i] = accepts[i] = 0
        self._current = bucket
        index = bucket % size
        pending = self._pending
        if pending:
            self._pending = 0
            requests[index] += pending
            accepts[index] += pending
            self._requests_total += pending
            self._accepts_total += pending
            if self._replica is not None:
                self._replica.add(0, pending)
                self._replica.add(1, pending)
        return index

    def _update(self) -> None:
        k = self._k
        requests: float = self._requests_total
        accepts: float = self._accepts_total
        replica = self._replica
        if replica is not None:  # the fleet's window: the others' counts added
            requests += replica.totals[0]
            accepts += replica.totals[1]
        probability = (requests - k * accepts) / (requests + 1)
        if probability > 0.0:
            current = self._current
            assert current is not None
            now, before = current % self._buckets, (current - 1) % self._buckets
            recent = self._requests[now] + self._requests[before]
            served = self._accepts[now] + self._accepts[before]
            if recent or replica is None:  # a fleet's view stands until local evidence
                probability = min(probability, (recent - k * served) / (recent + 1))
            probability = min(max(probability, 0.0), self._max_reject_probability)
        else:
            probability = 0.0
        self._probability = probability
        engaged = probability > 0.0
        if engaged != self._engaged:
            self._engaged = engaged
            if engaged:
                emit(self._listeners, ThrottleEngaged(self._name, probability))
            else:
                emit(self._listeners, ThrottleReleased(self._name))
