"""The public surface: __all__ sorted and complete, public classes living in `asyncres`."""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys
from types import ModuleType
from typing import ParamSpec, TypeVar

import pytest

import asyncres
import asyncres.asgi
import asyncres.chaos
import asyncres.db
import asyncres.drill
import asyncres.events
import asyncres.httpx
import asyncres.otel
import asyncres.prometheus
import asyncres.sharding
import asyncres.testing
from asyncres import backoff

PUBLIC_MODULES = {
    module.__name__: module
    for module in (
        asyncres,
        backoff,
        asyncres.asgi,
        asyncres.chaos,
        asyncres.db,
        asyncres.drill,
        asyncres.events,
        asyncres.httpx,
        asyncres.otel,
        asyncres.prometheus,
        asyncres.sharding,
        asyncres.testing,
    )
}


@pytest.mark.parametrize("module_name", sorted(PUBLIC_MODULES))
def test_all_is_sorted_and_unique(module_name: str) -> None:
    """__all__ is sorted and has no duplicates."""
    names = PUBLIC_MODULES[module_name].__all__
    # ruff's isort-style order (RUF022): CONSTANTS, then Classes, then functions.
    kind = lambda name: 0 if name.isupper() else 1 if name[0].isupper() else 2  # noqa: E731
    assert list(names) == sorted(names, key=lambda name: (kind(name), name))
    assert len(set(names)) == len(names)


def _is_own_public(module: ModuleType, name: str, value: object) -> bool:
    """A public name the module offers (not a helper it imported, such as ``Any``).

    A package's ``__init__`` re-exports on purpose: any asyncres object counts. A module
    with code of its own (``asyncres.httpx``, ``asyncres.testing``) offers what it defines.
    """
    if name.startswith("_") or inspect.ismodule(value) or name in {"annotations", "TYPE_CHECKING"}:
        return False
    if isinstance(value, TypeVar | ParamSpec):
        return False
    origin = getattr(value, "__module__", None)
    if not isinstance(origin, str) or not (inspect.isclass(value) or callable(value)):
        return True  # constants
    if hasattr(module, "__path__"):
        return origin.split(".")[0] == "asyncres"
    return origin == module.__name__


@pytest.mark.parametrize("module_name", sorted(PUBLIC_MODULES))
def test_all_is_complete(module_name: str) -> None:
    """Every public attribute is listed in __all__, and every listed name exists."""
    module = PUBLIC_MODULES[module_name]
    public = {name for name, value in vars(module).items() if _is_own_public(module, name, value)}
    if module is asyncres:
        public |= {"backoff", "events"}  # the public submodules re-exported from the root
    assert public <= set(module.__all__), sorted(public - set(module.__all__))
    for name in module.__all__:
        assert hasattr(module, name)


@pytest.mark.parametrize("module_name", sorted(PUBLIC_MODULES))
def test_public_classes_report_the_public_module(module_name: str) -> None:
    """Public classes say they live in the public module, not a private one."""
    module = PUBLIC_MODULES[module_name]
    for name in module.__all__:
        value = getattr(module, name)
        if inspect.isclass(value):
            assert value.__module__ == module_name, name


def test_public_names_are_documented() -> None:
    """Every public class and function has a docstring."""
    for module in PUBLIC_MODULES.values():
        for name in module.__all__:
            value = getattr(module, name)
            if inspect.isclass(value) or inspect.isfunction(value):
                assert inspect.getdoc(value), f"{module.__name__}.{name} has no docstring"


def test_import_needs_only_anyio() -> None:
    """`import asyncres` pulls in no optional dependency."""
    code = (
        "import sys, asyncres, asyncres.backoff, asyncres.db\n"
        "bad = {'trio', 'httpx', 'aiosqlite', 'asyncpg', 'tenacity', 'rich'} & set(sys.modules)\n"
        "print(sorted(bad))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout
    assert out.strip() == "[]"


def test_testing_module_is_not_imported_by_the_package() -> None:
    """asyncres.testing is opt-in."""
    code = "import sys, asyncres; print('asyncres.testing' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout
    assert out.strip() == "False"
    assert importlib.import_module("asyncres.testing").set_testing


def test_version_is_a_string() -> None:
    """asyncres.__version__ is set."""
    assert isinstance(asyncres.__version__, str)
