"""RateLimit: at most ``rate`` calls per ``per`` seconds, with a burst, by GCRA.

The generic cell rate algorithm (the ATM standard, as in redis-cell and Envoy's token
bucket) keeps one number per key, the *theoretical arrival time* (TAT): the moment the key
would be back to a full burst. A call at ``now`` is admitted when ``TAT - now`` leaves room
for one more emission interval within the burst; admitting it moves TAT one interval
later. One float per key, no timer, no refill task: the state of an idle key is the same
as no state, so idle keys are forgotten first when ``max_keys`` is reached.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, NoReturn, ParamSpec, TypeVar

import anyio

from . import _validation
from ._clock import resolve_duration_clock
from ._deadline import remaining
from ._events import CallRejected, Listener, emit
from ._exceptions import RateLimitedError
from ._policy import PolicyFaces
from ._registry import track
from ._setting import Setting
from ._store import SharedRate, Store, checked_store

if TYPE_CHECKING:
    from typing import Self

__all__ = ["RateLimit", "RateLimitKey", "RateLimitStatistics"]

T = TypeVar("T")
P = ParamSpec("P")


@dataclass(frozen=True, slots=True)
class RateLimitStatistics:
    """Counts since the limit was built, and the shared key's room right now."""

    __module__ = "asyncres"

    #: Calls admitted at once, admitted after waiting, and refused.
    admitted: int
    waited: int
    rejected: int
    #: Calls of the shared key that would be admitted right now without waiting.
    available: float
    #: Keys with state (not back to a full burst), at most ``max_keys``.
    keys: int


class RateLimit(PolicyFaces):
    """Admit at most ``rate`` calls per ``per`` seconds, ``burst`` of them at once.

    ``burst`` (default: one period's worth, ``ceil(rate)``, as Resilience4j's
    ``limitForPeriod``) is how many calls an idle limit admits back to back; after that,
    calls are admitted one emission interval (``per / rate``) apart. A call that would
    exceed the rate waits for its turn when that is at most ``max_wait`` seconds away (and
    within the enclosing deadline), else is refused with `RateLimitedError` carrying
    ``retry_after``. A waiter that is cancelled gives its turn back.

    ``await limit.call(fn, *args)``, ``@limit``, ``await limit.execute(fn)`` and
    ``async with limit:`` share one key; ``limit.key("tenant-7")`` is a limit of the same
    rate for one key (a tenant, a client), at most ``max_keys`` of them remembered (the
    least recently used idle ones are dropped, which costs nothing: an idle key's state is
    a full burst).

    **Fleet.** With ``store=`` (e.g. `asyncres.redis.RedisStore`) and a ``name=``, the
    shared key is one limit for every process that shares the name: the store leases
    admissions from one GCRA on the server in small batches (an active member's fair share
    of one flush interval, at most ``burst``) and returns the unused ones at the next sync,
    so the fleet admits ``rate`` per ``per`` in total. A call with no leased admission left
    waits for the next lease within ``max_wait`` (and the deadline), else is refused. A
    member waking from idle, or one whose store is unreachable, limits itself to its share,
    ``rate / members`` (the members active at the last sync). ``key()`` views stay per
    process.

    Configuration is read-only after construction.
    """

    __slots__ = (
        "__weakref__",
        "_admitted",
        "_burst",
        "_clock",
        "_interval",
        "_lease_event",
        "_listeners",
        "_max_keys",
        "_max_wait",
        "_name",
        "_per",
        "_rate",
        "_rejected",
        "_replica",
        "_shared",
        "_tats",
        "_tolerance",
        "_waited",
    )

    __module__ = "asyncres"

    rate: Setting[float] = Setting()
    per: Setting[float] = Setting()
    burst: Setting[int] = Setting()
    max_wait: Setting[float] = Setting()
    max_keys: Setting[int] = Setting()
    name: Setting[str | None] = Setting()

    def __init__(
        self,
        rate: float,
        *,
        per: float = 1.0,
        burst: int | None = None,
        max_wait: float = 0.0,
        max_keys: int = 10_000,
        store: Store | None = None,
        name: str | None = None,
        listeners: Iterable[Listener] = (),
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._rate = _validation.finite_positive("rate", rate)
        self._per = _validation.finite_positive("per", per)
        if burst is None:
            burst = max(1, math.ceil(self._rate))
        self._burst = _validation.count("burst", burst, minimum=1)
        self._max_wait = _validation.non_negative("max_wait", max_wait)
        self._max_keys = _validation.count("max_keys", max_keys, minimum=1)
        if store is not None:
            checked_store(store, name, "rate limit")
        if clock is not None and not callable(clock):
            raise ValueError(f"`clock` must be callable, got {clock!r}")
        # Resolved on first use. GCRA needs only differences of times (TATs against now,
        # sleeps by duration), so a duration clock serves: time.monotonic on a stock asyncio
        # loop, time.perf_counter on trio's system clock (45 ns, where asking the running
        # loop or trio.current_time costs 300-450 ns, more than the rest of the call).
        self._clock: Callable[[], float] = clock or self._first_clock
        self._name = name
        self._listeners = tuple(listeners)
        self._interval = self._per / self._rate
        # TAT may run this far ahead of now and a call still be admitted (plus a nanosecond:
        # a caller that slept exactly until its turn must not miss it by a rounding).
        self._tolerance = self._interval * (self._burst - 1) + 1e-9
        self._shared = -math.inf  # the shared key's TAT
        self._tats: OrderedDict[str, float] = OrderedDict()
        self._admitted = 0
        self._waited = 0
        self._rejected = 0
        self._replica: SharedRate | None = None
        self._lease_event: anyio.Event | None = None
        if store is not None:
            self._replica = SharedRate(
                name or "", self._interval, self._burst, self._wake, self._max_keys
            )
            store.attach(self._replica)
        track("rate_limit", self, name)

    def __repr__(self) -> str:
        name = f", name={self._name!r}" if self._name else ""
        return (
            f"RateLimit({self._rate:g}, per={self._per:g}, burst={self._burst}, "
            f"max_wait={self._max_wait:g}{name})"
        )

    # -- faces ------------------------------------------------------------------------

    async def call(self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``await fn(*args, **kwargs)`` once the rate allows (shared key)."""
        if self._replica is not None:
            await self._acquire_fleet(self._replica)
            return await fn(*args, **kwargs)
        try:
            now = self._clock()
        except RuntimeError:  # resolved in another kind of loop (asyncio, then trio)
            now = self._first_clock()
        tat = self._shared
        if tat < now:
            tat = now
        if tat - now <= self._tolerance:  # the success path: admitted at once
            self._shared = tat + self._interval
            self._admitted += 1
            return await fn(*args, **kwargs)
        await self._wait_for_turn(None, now)
        return await fn(*args, **kwargs)

    async def __aenter__(self) -> Self:
        await self._acquire(None)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    def key(self, key: str) -> RateLimitKey:
        """This limit for one ``key``: the same rate and burst, counted separately."""
        if not isinstance(key, str):
            raise ValueError(f"`key` must be a string, got {key!r}")
        return RateLimitKey(self, key)

    def statistics(self) -> RateLimitStatistics:
        now = self._now()
        ahead = max(0.0, self._shared - now)
        available = max(0.0, (self._tolerance - ahead) / self._interval + 1.0)
        keys = sum(1 for tat in self._tats.values() if tat > now)
        if self._replica is not None:
            keys += len(self._replica.keys)  # fleet keys this process holds leases for
        return RateLimitStatistics(
            admitted=self._admitted,
            waited=self._waited,
            rejected=self._rejected,
            available=min(float(self._burst), available),
            keys=keys,
        )

    # -- the contended path -----------------------------------------------------------

    async def _acquire(self, key: str | None) -> None:
        replica = self._replica
        if replica is not None:
            await self._acquire_fleet(replica if key is None else replica.child(key), key)
            return
        now = self._now()
        tat = self._tat(key)
        if tat < now:
            tat = now
        if tat - now <= self._tolerance:
            self._set_tat(key, tat + self._interval)
            self._admitted += 1
            return
        await self._wait_for_turn(key, now)

    async def _wait_for_turn(self, key: str | None, now: float) -> None:
        """Reserve the key's next turn and sleep until it, or refuse when it is too far."""
        await self._take_turn(
            lambda: self._tat(key),
            lambda tat: self._set_tat(key, tat),
            now,
            self._interval,
            self._tolerance,
            key,
        )

    async def _take_turn(
        self,
        get_tat: Callable[[], float],
        set_tat: Callable[[float], None],
        now: float,
        interval: float,
        tolerance: float,
        key: str | None,
    ) -> None:
        """GCRA on one TAT (read and written through ``get_tat``/``set_tat``): admit now, or
        reserve the next turn and sleep until it, or refuse when it is too far away."""
        tat = max(get_tat(), now)
        wait = tat - tolerance - now
        if wait <= 0.0:
            set_tat(tat + interval)
            self._admitted += 1
            return
        left = remaining()
        if wait > self._max_wait or (left is not None and wait > left):
            self._refuse(key, wait)
        set_tat(tat + interval)  # the turn is ours while we wait
        try:
            await anyio.sleep(wait)
        except BaseException:
            # Cancelled: give the turn back (later waiters keep theirs, one interval early).
            set_tat(get_tat() - interval)
            raise
        self._waited += 1

    # -- the fleet (store=) -----------------------------------------------------------

    async def _acquire_fleet(self, replica: SharedRate, key: str | None = None) -> None:
        """Spend a leased admission, wait for the next lease, or refuse."""
        replica.wanted += 1
        if replica.tokens > 0:
            replica.tokens -= 1
            self._admitted += 1
            return
        if replica.cold:  # waking up from idle: the local share until the next lease
            await self._acquire_share(replica, key)
            return
        start = now = self._now()
        left = remaining()
        limit = self._max_wait if left is None else min(self._max_wait, left)
        while replica.live:
            if now - start >= limit:
                self._refuse(key, self._interval * replica.members)
            event = self._lease_event
            if event is None:
                event = self._lease_event = anyio.Event()
            with anyio.move_on_after(limit - (now - start)):
                await event.wait()
            if replica.tokens > 0:
                replica.tokens -= 1
                self._waited += 1
                return
            now = self._now()
        await self._acquire_share(replica, key)

    async def _acquire_share(self, replica: SharedRate, key: str | None) -> None:
        """No lease to spend (the store unreachable, or waking from idle): this process's
        share of the rate, ``rate / members`` with ``burst / members``, locally."""
        members = replica.members
        interval = self._interval * members
        burst = max(1, math.ceil(self._burst / members))

        def set_fallback(tat: float) -> None:
            replica.fallback_tat = tat

        await self._take_turn(
            lambda: replica.fallback_tat,
            set_fallback,
            self._now(),
            interval,
            interval * (burst - 1) + 1e-9,
            key,
        )

    def _wake(self) -> None:
        event, self._lease_event = self._lease_event, None
        if event is not None:
            event.set()

    def _refuse(self, key: str | None, retry_after: float) -> NoReturn:
        self._rejected += 1
        error = RateLimitedError(self._name, retry_after=retry_after, key=key)
        emit(self._listeners, CallRejected(name=self._name, reason=error.reason))
        raise error

    def _now(self) -> float:
        try:
            return self._clock()
        except RuntimeError:
            return self._first_clock()

    def _first_clock(self) -> float:
        clock = self._clock = resolve_duration_clock()
        return clock()

    def _tat(self, key: str | None) -> float:
        if key is None:
            return self._shared
        return self._tats.get(key, -math.inf)

    def _set_tat(self, key: str | None, tat: float) -> None:
        if key is None:
            self._shared = tat
            return
        tats = self._tats
        tats[key] = tat
        tats.move_to_end(key)
        if len(tats) > self._max_keys:
            self._forget(tats)

    def _forget(self, tats: OrderedDict[str, float]) -> None:
        """Drop an idle key among the 8 least recently used (its state is a full burst:
        nothing is lost), else the least recently used (it gets a fresh burst)."""
        now = self._now()
        for _, (old, tat) in zip(range(8), tats.items(), strict=False):
            if tat <= now:
                del tats[old]
                return
        tats.popitem(last=False)


class RateLimitKey(PolicyFaces):
    """A `RateLimit` for one key (``limit.key("tenant-7")``): ``call``, ``execute``, the
    decorator and ``async with`` as on the limit itself."""

    __slots__ = ("key", "limit")

    __module__ = "asyncres"

    limit: RateLimit
    key: str

    def __init__(self, limit: RateLimit, key: str) -> None:
        self.limit = limit
        self.key = key

    def __repr__(self) -> str:
        return f"<RateLimitKey {self.key!r} of {self.limit!r}>"

    async def call(self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        await self.limit._acquire(self.key)
        return await fn(*args, **kwargs)

    async def __aenter__(self) -> Self:
        await self.limit._acquire(self.key)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None
