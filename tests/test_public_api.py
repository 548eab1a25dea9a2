"""The public surface: __all__ sorted and complete, public classes living in `asyncres`."""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys

import pytest

import asyncres
import asyncres.db
from asyncres import backoff

PUBLIC_MODULES = {"asyncres": asyncres, "asyncres.backoff": backoff, "asyncres.db": asyncres.db}


@pytest.mark.parametrize("module_name", sorted(PUBLIC_MODULES))
def test_all_is_sorted_and_unique(module_name: str) -> None:
    """__all__ is sorted and has no duplicates."""
    names = PUBLIC_MODULES[module_name].__all__
    assert list(names) == sorted(names)
    assert len(set(names)) == len(names)


@pytest.mark.parametrize("module_name", sorted(PUBLIC_MODULES))
def test_all_is_complete(module_name: str) -> None:
    """Every public attribute is listed in __all__, and every listed name exists."""
    module = PUBLIC_MODULES[module_name]
    public = {
        name
        for name, value in vars(module).items()
        if (not name.startswith("_") and not inspect.ismodule(value)) or name == "backoff"
    }
    public -= {"annotations"}
    assert set(module.__all__) == public
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
