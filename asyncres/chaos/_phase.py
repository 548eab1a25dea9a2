"""`Phase`: one named span of time in a `Schedule`, with the faults it turns on."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from .. import _validation
from .._pipeline import Pipeline
from .._policy import Policy
from .._setting import Setting

__all__ = ["Phase"]


class Phase:
    """One step of a `Schedule`: ``name``, how long it lasts, and the faults on during it.

    ``faults`` holds injection policies (used when the schedule runs as a policy) and/or
    switchable objects (turned on by `Schedule.run`). Only the last phase of a schedule may
    last forever (``seconds=math.inf``). The three are read-only: a schedule derives its
    timeline from them.
    """

    __slots__ = ("_call", "_faults", "_name", "_seconds", "_switches")

    __module__ = "asyncres.chaos"

    name: Setting[str] = Setting()
    seconds: Setting[float] = Setting()
    faults: Setting[tuple[object, ...]] = Setting()

    def __init__(self, name: str, *, seconds: float, faults: Iterable[object] = ()) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"`name` must be a non-empty string, got {name!r}")
        self._name = name
        self._seconds = _validation.positive("seconds", seconds)
        self._faults = tuple(faults)
        policies: list[Policy] = []
        switches: list[object] = []
        for fault in self._faults:
            is_policy = callable(getattr(fault, "execute", None))
            is_switch = hasattr(fault, "enabled")
            if not (is_policy or is_switch):
                raise ValueError(
                    f"`faults` must be policies or objects with an `enabled` switch, got {fault!r}"
                )
            if is_policy:
                policies.append(fault)  # type: ignore[arg-type]
            if is_switch:
                switches.append(fault)
        # One policy with a call() is used directly (no pipeline walk): the common case.
        self._call: Callable[..., Awaitable[Any]] | None = None
        if len(policies) == 1 and callable(getattr(policies[0], "call", None)):
            self._call = policies[0].call  # type: ignore[attr-defined]
        elif policies:
            self._call = Pipeline(*policies).call
        self._switches = tuple(switches)

    def __repr__(self) -> str:
        faults = f", faults={list(self._faults)!r}" if self._faults else ""
        return f"Phase({self._name!r}, seconds={self._seconds!r}{faults})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Phase):
            return NotImplemented
        return (self._name, self._seconds, self._faults) == (
            other._name,
            other._seconds,
            other._faults,
        )

    def __hash__(self) -> int:
        return hash((self._name, self._seconds, len(self._faults)))
