"""Toxics: the network faults of a `FaultProxy`, after Toxiproxy's.

Every toxic applies to one ``direction`` of a connection — ``"downstream"`` (server to
client, Toxiproxy's default), ``"upstream"`` (client to server) or ``"both"`` — and, with
probability ``toxicity``, to each connection (drawn per connection, again whenever the toxic
changes). Attributes can be changed while the proxy runs; the change reaches live
connections at once. Times are in seconds, sizes in bytes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar, Literal, Protocol

from .. import _validation
from ._switch import check_bool
from ._units import parse_duration, parse_size

__all__ = [
    "TOXIC_TYPES",
    "BandwidthToxic",
    "Direction",
    "LatencyToxic",
    "LimitDataToxic",
    "ResetPeerToxic",
    "SlicerToxic",
    "SlowCloseToxic",
    "TimeoutToxic",
    "Toxic",
    "ToxicOwner",
    "make_toxic",
    "parse_toxic",
]

Direction = Literal["upstream", "downstream", "both"]
_DIRECTIONS = ("upstream", "downstream", "both")


def _direction(name: str, value: Any) -> str:
    if value not in _DIRECTIONS:
        raise ValueError(f"`{name}` must be 'upstream', 'downstream' or 'both', got {value!r}")
    return str(value)


def _finite_non_negative(name: str, value: Any) -> float:
    checked = _validation.non_negative(name, value)
    if math.isinf(checked):
        raise ValueError(f"`{name}` must be finite, got inf")
    return checked


def _size(name: str, value: Any) -> int:
    return _validation.count(name, value, minimum=1)


def _limit(name: str, value: Any) -> int:
    return _validation.count(name, value, minimum=0)


class ToxicOwner(Protocol):
    """What a toxic needs from the proxy it is added to (a `FaultProxy`): word of a change.

    A Protocol, so that this module does not import the proxy that imports it.
    """

    def _toxics_changed(self) -> None:
        """A toxic of this owner changed: live connections must re-read the toxics."""


class Toxic:
    """Base class of the toxics; see the module docstring for the shared options."""

    __slots__ = ("_owners", "_version", "direction", "enabled", "name", "toxicity")

    __module__ = "asyncres.chaos"

    #: Toxiproxy's name for the toxic type (used by `make_toxic` and the command line).
    type: ClassVar[str] = ""
    #: The attribute a command-line ``type=value`` sets.
    _primary: ClassVar[str] = ""
    _checks: ClassVar[dict[str, Callable[[str, Any], Any]]] = {
        "direction": _direction,
        "toxicity": _validation.ratio,
        "enabled": check_bool,
    }

    direction: Direction
    toxicity: float
    enabled: bool
    name: str
    _owners: list[ToxicOwner]
    _version: int

    def __init__(
        self,
        *,
        direction: Direction = "downstream",
        toxicity: float = 1.0,
        enabled: bool = True,
        name: str | None = None,
    ) -> None:
        object.__setattr__(self, "_owners", [])
        object.__setattr__(self, "_version", 0)
        self.direction = direction
        self.toxicity = toxicity
        self.enabled = enabled
        self.name = name or f"{self.type}_{self.direction}"

    def __setattr__(self, attr: str, value: Any) -> None:
        check = self._checks.get(attr)
        if check is not None:
            value = check(attr, value)
        if attr != "name" and getattr(self, attr, _UNSET) == value:
            return
        object.__setattr__(self, attr, value)
        version = getattr(self, "_version", None)
        if version is None:
            return  # still in __init__
        object.__setattr__(self, "_version", version + 1)
        for owner in self._owners:
            owner._toxics_changed()

    def update(self, **attributes: Any) -> None:
        """Set several attributes at once (each validated; live connections follow)."""
        for attr in attributes:
            if attr not in self._checks and attr != "name":
                raise ValueError(f"{type(self).__name__} has no attribute `{attr}`")
        for attr, value in attributes.items():
            setattr(self, attr, value)

    def _attributes(self) -> dict[str, Any]:
        return {attr: getattr(self, attr) for attr in self._checks if attr not in Toxic._checks}

    def __repr__(self) -> str:
        parts = [f"{attr}={value!r}" for attr, value in self._attributes().items()]
        parts.append(f"direction={self.direction!r}")
        if self.toxicity != 1.0:
            parts.append(f"toxicity={self.toxicity!r}")
        if not self.enabled:
            parts.append("enabled=False")
        return f"{type(self).__name__}({', '.join(parts)})"

    def _attach(self, owner: ToxicOwner) -> None:
        if owner not in self._owners:
            self._owners.append(owner)

    def _detach(self, owner: ToxicOwner) -> None:
        if owner in self._owners:
            self._owners.remove(owner)


_UNSET: Any = object()


class LatencyToxic(Toxic):
    """Delay every chunk by ``latency`` ± ``jitter`` (uniform) seconds.

    Chunks keep their order and the delay is measured from each chunk's arrival, so a
    stream's throughput is kept: the one-way delay grows, as on a long link.
    """

    __slots__ = ("jitter", "latency")

    __module__ = "asyncres.chaos"

    type = "latency"
    _primary = "latency"
    _checks: ClassVar[dict[str, Callable[[str, Any], Any]]] = {
        **Toxic._checks,
        "latency": _finite_non_negative,
        "jitter": _finite_non_negative,
    }

    latency: float
    jitter: float

    def __init__(
        self,
        latency: float,
        /,
        *,
        jitter: float = 0.0,
        direction: Direction = "downstream",
        toxicity: float = 1.0,
        enabled: bool = True,
        name: str | None = None,
    ) -> None:
        self.latency = latency
        self.jitter = jitter
        super().__init__(direction=direction, toxicity=toxicity, enabled=enabled, name=name)


class BandwidthToxic(Toxic):
    """Cap the throughput at ``bytes_per_second`` (Toxiproxy's ``rate`` is in KB/s)."""

    __slots__ = ("bytes_per_second",)

    __module__ = "asyncres.chaos"

    type = "bandwidth"
    _primary = "bytes_per_second"
    _checks: ClassVar[dict[str, Callable[[str, Any], Any]]] = {
        **Toxic._checks,
        "bytes_per_second": _validation.finite_positive,
    }

    bytes_per_second: float

    def __init__(
        self,
        bytes_per_second: float,
        /,
        *,
        direction: Direction = "downstream",
        toxicity: float = 1.0,
        enabled: bool = True,
        name: str | None = None,
    ) -> None:
        self.bytes_per_second = bytes_per_second
        super().__init__(direction=direction, toxicity=toxicity, enabled=enabled, name=name)


class SlowCloseToxic(Toxic):
    """Delay the close (FIN) by ``delay`` seconds after the sender closed."""

    __slots__ = ("delay",)

    __module__ = "asyncres.chaos"

    type = "slow_close"
    _primary = "delay"
    _checks: ClassVar[dict[str, Callable[[str, Any], Any]]] = {
        **Toxic._checks,
        "delay": _finite_non_negative,
    }

    delay: float

    def __init__(
        self,
        delay: float,
        /,
        *,
        direction: Direction = "downstream",
        toxicity: float = 1.0,
        enabled: bool = True,
        name: str | None = None,
    ) -> None:
        self.delay = delay
        super().__init__(direction=direction, toxicity=toxicity, enabled=enabled, name=name)


class _AfterTimeout(Toxic):
    """A toxic whose one parameter is ``timeout``: seconds before it acts (0 = at once)."""

    __slots__ = ("timeout",)

    _primary = "timeout"
    _checks: ClassVar[dict[str, Callable[[str, Any], Any]]] = {
        **Toxic._checks,
        "timeout": _finite_non_negative,
    }

    timeout: float

    def __init__(
        self,
        timeout: float = 0.0,
        /,
        *,
        direction: Direction = "downstream",
        toxicity: float = 1.0,
        enabled: bool = True,
        name: str | None = None,
    ) -> None:
        self.timeout = timeout
        super().__init__(direction=direction, toxicity=toxicity, enabled=enabled, name=name)


class TimeoutToxic(_AfterTimeout):
    """A black hole: no data gets through; the connection is closed after ``timeout``.

    With ``timeout=0`` (default) the connection stays open and data is held back until the
    toxic is removed or disabled — only the client's own timeout ends the wait. With a
    ``timeout`` the data is dropped and the connection closed when it expires.
    """

    __slots__ = ()

    __module__ = "asyncres.chaos"

    type = "timeout"


class ResetPeerToxic(_AfterTimeout):
    """Reset the connection (TCP RST: "connection reset by peer") after ``timeout`` seconds.

    The reset goes to the client for ``"downstream"``, to the server for ``"upstream"``;
    ``timeout=0`` resets at once (a new connection is reset right after it is accepted).
    """

    __slots__ = ()

    __module__ = "asyncres.chaos"

    type = "reset_peer"


class SlicerToxic(Toxic):
    """Cut chunks into pieces of ``average_size`` ± ``size_variation`` bytes, ``delay`` apart.

    Every byte still arrives, in order; parsers that assume one read is one message break.
    """

    __slots__ = ("average_size", "delay", "size_variation")

    __module__ = "asyncres.chaos"

    type = "slicer"
    _primary = "average_size"
    _checks: ClassVar[dict[str, Callable[[str, Any], Any]]] = {
        **Toxic._checks,
        "average_size": _size,
        "size_variation": _limit,
        "delay": _finite_non_negative,
    }

    average_size: int
    size_variation: int
    delay: float

    def __init__(
        self,
        average_size: int,
        /,
        *,
        size_variation: int = 0,
        delay: float = 0.0,
        direction: Direction = "downstream",
        toxicity: float = 1.0,
        enabled: bool = True,
        name: str | None = None,
    ) -> None:
        self.average_size = average_size
        self.size_variation = size_variation
        self.delay = delay
        super().__init__(direction=direction, toxicity=toxicity, enabled=enabled, name=name)


class LimitDataToxic(Toxic):
    """Close the connection once ``bytes`` bytes went through in this direction."""

    __slots__ = ("bytes",)

    __module__ = "asyncres.chaos"

    type = "limit_data"
    _primary = "bytes"
    _checks: ClassVar[dict[str, Callable[[str, Any], Any]]] = {**Toxic._checks, "bytes": _limit}

    bytes: int

    def __init__(
        self,
        bytes: int,
        /,
        *,
        direction: Direction = "downstream",
        toxicity: float = 1.0,
        enabled: bool = True,
        name: str | None = None,
    ) -> None:
        self.bytes = bytes
        super().__init__(direction=direction, toxicity=toxicity, enabled=enabled, name=name)


#: Toxiproxy's type names, mapped to the toxic classes.
TOXIC_TYPES: dict[str, type[Toxic]] = {
    cls.type: cls
    for cls in (
        LatencyToxic,
        BandwidthToxic,
        SlowCloseToxic,
        TimeoutToxic,
        ResetPeerToxic,
        SlicerToxic,
        LimitDataToxic,
    )
}

_DURATIONS = {"latency", "jitter", "delay", "timeout"}
_SIZES = {"bytes_per_second", "average_size", "size_variation", "bytes"}


def make_toxic(type: str, **attributes: Any) -> Toxic:
    """Build a toxic from Toxiproxy-style data: ``make_toxic("latency", latency="200ms")``.

    Durations may be strings such as ``"200ms"``; sizes strings such as ``"64KB"``.
    """
    cls = TOXIC_TYPES.get(type)
    if cls is None:
        raise ValueError(f"`type` must be one of {sorted(TOXIC_TYPES)}, got {type!r}")
    options: dict[str, Any] = {}
    for attr, value in attributes.items():
        if attr in _DURATIONS:
            value = parse_duration(value, attr)
        elif attr in _SIZES:
            size = parse_size(value, attr)
            value = size if attr == "bytes_per_second" else int(size)
        elif attr == "toxicity" and isinstance(value, str):
            value = float(value)
        elif attr == "enabled" and isinstance(value, str):
            value = value.lower() in ("1", "true", "yes", "on")
        options[attr] = value
    primary = options.pop(cls._primary, _UNSET)
    factory: Any = cls
    try:
        if primary is _UNSET:
            return cls(**options)
        return factory(primary, **options)  # type: ignore[no-any-return]
    except TypeError as exc:
        raise ValueError(f"toxic {type!r}: {exc}") from None


def parse_toxic(spec: str) -> Toxic:
    """Build a toxic from a command-line spec: ``TYPE[=VALUE][,ATTR=VALUE...]``.

    ``latency=200ms,jitter=20ms,direction=both``, ``bandwidth=64KB``, ``timeout``,
    ``reset_peer=2s``, ``slicer=16,size_variation=8,delay=1ms``, ``limit_data=1000``,
    ``slow_close=500ms``; any toxic takes ``direction=``, ``toxicity=`` and ``name=``.
    """
    items = [item.strip() for item in spec.split(",") if item.strip()]
    if not items:
        raise ValueError("`toxic` must not be empty")
    head, _, value = items[0].partition("=")
    type_name = head.strip().replace("-", "_")
    cls = TOXIC_TYPES.get(type_name)
    if cls is None:
        raise ValueError(f"`toxic` type must be one of {sorted(TOXIC_TYPES)}, got {head!r}")
    attributes: dict[str, Any] = {}
    if value:
        attributes[cls._primary] = value.strip()
    for item in items[1:]:
        key, sep, val = item.partition("=")
        if not sep:
            raise ValueError(f"`toxic` attribute must be KEY=VALUE, got {item!r} in {spec!r}")
        attributes[key.strip().replace("-", "_")] = val.strip()
    return make_toxic(type_name, **attributes)
