"""`Setting`: a configuration attribute that can be read but not assigned after construction.

A resilience knob that accepts an assignment and silently ignores it (the policy derived its
state from the value at construction) is a production incident waiting to happen. Every
public configuration attribute of a policy is therefore a `Setting`: reading it returns the
value given at construction; assigning it raises ``AttributeError`` naming the attribute and
saying what to do instead. A policy that supports changing a knob at run time does so on
purpose, through a method that says so, never through a plain attribute.

The value lives in the slot ``_<name>``; hot paths read that slot directly, so a `Setting`
costs nothing on the call path.
"""

from __future__ import annotations

from typing import Any, Generic, NoReturn, TypeVar, overload

__all__ = ["Setting"]

T = TypeVar("T")


class Setting(Generic[T]):
    """A read-only view of the slot ``_<name>`` (a data descriptor, so it cannot be shadowed)."""

    __slots__ = ("_private", "_public")

    def __init__(self) -> None:
        self._public = ""
        self._private = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self._public = name
        self._private = "_" + name

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> Setting[T]: ...

    @overload
    def __get__(self, obj: object, owner: type | None = None) -> T: ...

    def __get__(self, obj: object | None, owner: type | None = None) -> Any:
        if obj is None:
            return self
        return getattr(obj, self._private)

    def __set__(self, obj: object, value: T) -> NoReturn:
        cls = type(obj).__name__
        raise AttributeError(
            f"{cls}.{self._public} is read-only after construction (the policy's state is "
            f"derived from it): build a new {cls}(..., {self._public}=...) instead"
        )

    def __delete__(self, obj: object) -> NoReturn:
        raise AttributeError(f"{type(obj).__name__}.{self._public} cannot be deleted")
