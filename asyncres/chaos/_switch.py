"""The on/off switch every fault has: `Switchable`, the `Switch` handle, and its value check.

A leaf: it imports nothing from asyncres.chaos, so the proxy, the schedule and the fault
modules can all use a switch without importing one another.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

from .._setting import Setting

__all__ = ["Switch", "Switchable", "check_bool"]


def check_bool(name: str, value: object) -> bool:
    """``value`` if it is a bool; ``ValueError`` naming ``name`` otherwise (no truthiness)."""
    if not isinstance(value, bool):
        raise ValueError(f"`{name}` must be True or False, got {value!r}")
    return value


@runtime_checkable
class Switchable(Protocol):
    """Anything a `Schedule` can turn on and off: an object with a writable ``enabled``."""

    enabled: bool


Switchable.__module__ = "asyncres.chaos"


class Switch:
    """An on/off handle over two callbacks, for faults that are not objects of their own.

    ``Switch(on=proxy.disable, off=proxy.enable, name="outage")`` gives a `Schedule` an
    ``enabled`` attribute to set; the callbacks run only when the state changes.
    """

    __slots__ = ("_enabled", "_name", "_off", "_on")

    __module__ = "asyncres.chaos"

    name: Setting[str | None] = Setting()

    def __init__(
        self,
        *,
        on: Callable[[], object],
        off: Callable[[], object],
        name: str | None = None,
        enabled: bool = False,
    ) -> None:
        if not callable(on):
            raise ValueError(f"`on` must be callable, got {on!r}")
        if not callable(off):
            raise ValueError(f"`off` must be callable, got {off!r}")
        self._on = on
        self._off = off
        self._name = name
        self._enabled = check_bool("enabled", enabled)

    @property
    def enabled(self) -> bool:
        """The switch's state; setting it runs ``on`` or ``off`` when the state changes."""
        return self._enabled

    @enabled.setter
    def enabled(self, value: bool) -> None:
        value = check_bool("enabled", value)
        if value != self._enabled:
            self._enabled = value
            (self._on if value else self._off)()

    def __repr__(self) -> str:
        name = f"{self._name!r}, " if self._name else ""
        return f"Switch({name}enabled={self._enabled})"
