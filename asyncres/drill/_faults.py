"""The drill's fault kinds: switchable faults applied identically to both clients' backends.

Each is a fault a `chaos.Schedule` can switch (it has an ``enabled`` attribute). It does
nothing by itself: while a drill runs, the drill listens to its switch and applies it to the
two fault proxies (latency, outage) and to the two backends of the service (error burst,
slow database, brownouts). In a schedule's TOML they are the kinds ``latency``,
``error_burst``, ``brownout``, ``overload``, ``outage``, ``zone_outage`` and ``slow_db``
(`MAKERS`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar

from .. import _validation
from .._setting import Setting
from ..chaos._units import parse_duration  # the one spelling of durations ("200ms")

__all__ = [
    "FAULT_KINDS",
    "MAKERS",
    "ZONES",
    "Brownout",
    "DrillFault",
    "ErrorBurst",
    "Latency",
    "Outage",
    "Overload",
    "SlowDatabase",
    "ZoneOutage",
    "describe_faults",
]

#: The drill's zones: each client reaches the service through one fault proxy per zone.
ZONES = ("a", "b", "c")


class DrillFault:
    """Base of the drill's faults: an ``enabled`` switch the drill listens to."""

    __slots__ = ("_enabled", "_on_change")

    __module__ = "asyncres.drill"

    #: The fault's ``kind`` in a schedule's TOML.
    kind: ClassVar[str] = ""

    def __init__(self, *, enabled: bool = False) -> None:
        if not isinstance(enabled, bool):
            raise ValueError(f"`enabled` must be True or False, got {enabled!r}")
        self._enabled = enabled
        # Set by a running drill; called after each change of ``enabled``.
        self._on_change: Callable[[], None] | None = None

    @property
    def enabled(self) -> bool:
        """Whether the fault is on; a `chaos.Schedule` sets it phase by phase."""
        return self._enabled

    @enabled.setter
    def enabled(self, value: bool) -> None:
        if not isinstance(value, bool):
            raise ValueError(f"`enabled` must be True or False, got {value!r}")
        if value != self._enabled:
            self._enabled = value
            if self._on_change is not None:
                self._on_change()

    def _options(self) -> tuple[tuple[str, float], ...]:
        return ()

    def describe(self) -> str:
        """What the fault does, in words (for reports)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        options = ", ".join(f"{key}={value!r}" for key, value in self._options())
        return f"{type(self).__name__}({options})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DrillFault):
            return NotImplemented
        return type(self) is type(other) and self._options() == other._options()

    def __hash__(self) -> int:
        return hash((type(self), self._options()))


class Latency(DrillFault):
    """``seconds`` (± ``jitter``, uniform) added to every reply by the fault proxies."""

    __slots__ = ("_jitter", "_seconds")

    __module__ = "asyncres.drill"

    kind = "latency"
    seconds: Setting[float] = Setting()
    jitter: Setting[float] = Setting()

    def __init__(self, seconds: float, *, jitter: float = 0.0, enabled: bool = False) -> None:
        super().__init__(enabled=enabled)
        self._seconds = _finite("seconds", _validation.positive("seconds", seconds))
        self._jitter = _finite("jitter", _validation.non_negative("jitter", jitter))

    def _options(self) -> tuple[tuple[str, float], ...]:
        return (("seconds", self._seconds), ("jitter", self._jitter))

    def describe(self) -> str:
        return f"+{self._seconds * 1000:.0f}±{self._jitter * 1000:.0f} ms latency"


class ErrorBurst(DrillFault):
    """The service answers 503 with ``Retry-After`` during every other ``period`` seconds.

    A brief unavailability such as a rolling restart: the first ``period`` after the fault
    turns on fails, the next succeeds, and so on. ``retry_after`` is whole seconds (HTTP).
    """

    __slots__ = ("_period", "_retry_after")

    __module__ = "asyncres.drill"

    kind = "error_burst"
    period: Setting[float] = Setting()
    retry_after: Setting[int] = Setting()

    def __init__(self, period: float, *, retry_after: int = 1, enabled: bool = False) -> None:
        super().__init__(enabled=enabled)
        self._period = _finite("period", _validation.positive("period", period))
        self._retry_after = _validation.count("retry_after", retry_after, minimum=0)

    def _options(self) -> tuple[tuple[str, float], ...]:
        return (("period", self._period), ("retry_after", self._retry_after))

    def describe(self) -> str:
        return f"503 + Retry-After: {self._retry_after} every other {self._period:g} s"


class Brownout(DrillFault):
    """A random brownout: the service answers 503 *without* ``Retry-After`` to a seeded
    random ``rate`` of the requests, however many there are (capacity to spare).

    The case where a retry helps most: each attempt fails independently of the load.
    """

    __slots__ = ("_rate",)

    __module__ = "asyncres.drill"

    kind = "brownout"
    rate: Setting[float] = Setting()

    def __init__(self, rate: float = 0.5, *, enabled: bool = False) -> None:
        super().__init__(enabled=enabled)
        rate = _validation.ratio("rate", rate)
        if rate == 0.0:
            raise ValueError("`rate` must be > 0 (0 fails nothing), got 0.0")
        self._rate = rate

    def _options(self) -> tuple[tuple[str, float], ...]:
        return (("rate", self._rate),)

    def describe(self) -> str:
        return f"{self._rate:.0%} of requests get 503 (no Retry-After)"


class Overload(DrillFault):
    """An overload brownout: the service's capacity drops to ``share`` of the offered rate.

    The service then serves at most ``share * rate`` requests a second (a token bucket with
    a quarter second of burst) and refuses the rest with 503, without ``Retry-After``.
    Refusing is cheaper than serving but not free (parsing, routing, the error reply: the
    SRE book's point in "Handling Overload"): each refusal costs a fifth of a served
    request's capacity (`REFUSAL_COST`). So extra attempts make it worse: a client that
    retries every refusal takes capacity from its own first attempts.
    """

    __slots__ = ("_share",)

    __module__ = "asyncres.drill"

    kind = "overload"
    share: Setting[float] = Setting()

    def __init__(self, share: float = 0.5, *, enabled: bool = False) -> None:
        super().__init__(enabled=enabled)
        share = _validation.ratio("share", share)
        if share == 0.0 or share == 1.0:
            raise ValueError(f"`share` must be between 0 and 1 (exclusive), got {share!r}")
        self._share = share

    def _options(self) -> tuple[tuple[str, float], ...]:
        return (("share", self._share),)

    def describe(self) -> str:
        return f"capacity {self._share:.0%} of the offered rate, 503 beyond"


#: What refusing a request costs an overloaded service, in served requests (`Overload`).
REFUSAL_COST = 0.2
#: Seconds of capacity an overloaded service can serve in a burst (`Overload`).
OVERLOAD_BURST = 0.25


class CapacityBucket:
    """An overloaded service's capacity: a token bucket of ``capacity`` requests a second.

    `admit` serves a request while a token is left; otherwise it refuses and the refusal
    still costs `REFUSAL_COST` of a request — a debt bounded by one second of capacity, so
    a retry storm starves the service without making it dead for ever. Starts full (a
    burst of `OVERLOAD_BURST` seconds). The drill's service and the scenario benchmarks
    share it.
    """

    __slots__ = ("_burst", "_capacity", "_refilled", "_tokens")

    def __init__(self, capacity: float, now: float) -> None:
        self._capacity = capacity
        self._burst = max(1.0, capacity * OVERLOAD_BURST)
        self._tokens = self._burst
        self._refilled = now

    def admit(self, now: float) -> bool:
        capacity = self._capacity
        self._tokens = min(self._burst, self._tokens + (now - self._refilled) * capacity)
        self._refilled = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        self._tokens = max(-capacity, self._tokens - REFUSAL_COST)
        return False


class Outage(DrillFault):
    """The fault proxies are down: new connections refused, open ones dropped."""

    __slots__ = ()

    __module__ = "asyncres.drill"

    kind = "outage"

    def describe(self) -> str:
        return "backend unreachable"


class ZoneOutage(DrillFault):
    """One zone's fault proxies are down (both clients'): the other zones still serve."""

    __slots__ = ("_zone",)

    __module__ = "asyncres.drill"

    kind = "zone_outage"
    zone: Setting[str] = Setting()

    def __init__(self, zone: str = "c", *, enabled: bool = False) -> None:
        super().__init__(enabled=enabled)
        if zone not in ZONES:
            raise ValueError(f"`zone` must be one of {list(ZONES)}, got {zone!r}")
        self._zone = zone

    def _options(self) -> tuple[tuple[str, Any], ...]:
        return (("zone", self._zone),)

    def describe(self) -> str:
        return f"zone {self._zone} unreachable (of {len(ZONES)})"


class SlowDatabase(DrillFault):
    """Every database statement takes ``seconds`` (its connection stays checked out)."""

    __slots__ = ("_seconds",)

    __module__ = "asyncres.drill"

    kind = "slow_db"
    seconds: Setting[float] = Setting()

    def __init__(self, seconds: float, *, enabled: bool = False) -> None:
        super().__init__(enabled=enabled)
        self._seconds = _finite("seconds", _validation.positive("seconds", seconds))

    def _options(self) -> tuple[tuple[str, float], ...]:
        return (("seconds", self._seconds),)

    def describe(self) -> str:
        return f"database statements take {self._seconds:g} s"


def _finite(name: str, value: float) -> float:
    if math.isinf(value):
        raise ValueError(f"`{name}` must be finite, got {value!r}")
    return value


def describe_faults(faults: tuple[object, ...]) -> str:
    """A phase's faults in words: ``"no faults"`` when there are none."""
    return ", ".join(f.describe() for f in faults if isinstance(f, DrillFault)) or "no faults"


def _whole_seconds(value: Any, name: str) -> int:
    seconds = parse_duration(value, name)
    if seconds != int(seconds):
        raise ValueError(f"`{name}` must be whole seconds (HTTP Retry-After), got {value!r}")
    return int(seconds)


def _make_latency(seconds: Any, jitter: Any = 0.0) -> Latency:
    return Latency(parse_duration(seconds, "seconds"), jitter=parse_duration(jitter, "jitter"))


def _make_error_burst(period: Any, retry_after: Any = 1) -> ErrorBurst:
    return ErrorBurst(
        parse_duration(period, "period"), retry_after=_whole_seconds(retry_after, "retry_after")
    )


def _make_brownout(rate: Any = 0.5) -> Brownout:
    return Brownout(_fraction(rate, "rate"))


def _make_overload(share: Any = 0.5) -> Overload:
    return Overload(_fraction(share, "share"))


def _fraction(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"`{name}` must be a number between 0 and 1, got {value!r}")
    return float(value)


def _make_outage() -> Outage:
    return Outage()


def _make_zone_outage(zone: Any = "c") -> ZoneOutage:
    return ZoneOutage(zone)


def _make_slow_db(seconds: Any) -> SlowDatabase:
    return SlowDatabase(parse_duration(seconds, "seconds"))


#: The ``makers=`` the drill passes to `chaos.Schedule.from_dict`: its fault kinds.
MAKERS: dict[str, Callable[..., DrillFault]] = {
    "brownout": _make_brownout,
    "error_burst": _make_error_burst,
    "latency": _make_latency,
    "outage": _make_outage,
    "overload": _make_overload,
    "slow_db": _make_slow_db,
    "zone_outage": _make_zone_outage,
}

#: The fault kinds a drill schedule may use.
FAULT_KINDS = tuple(sorted(MAKERS))
