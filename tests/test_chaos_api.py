"""The public surface of asyncres.chaos: exports, module names, docstrings, lazy httpx."""

from __future__ import annotations

import inspect
import subprocess
import sys

import pytest

import asyncres.chaos as chaos


def test_all_is_sorted_and_complete() -> None:
    """__all__ is sorted, unique, and lists every public name (ChaosTransport included)."""
    assert chaos.ChaosTransport  # resolve the lazy name first
    names = chaos.__all__
    assert list(names) == sorted(names)
    assert len(set(names)) == len(names)
    public = {
        name
        for name, value in vars(chaos).items()
        if not name.startswith("_") and not inspect.ismodule(value)
    }
    assert set(names) == public


def test_public_classes_live_in_asyncres_chaos_and_are_documented() -> None:
    """Every public class reports the public module and has a docstring."""
    for name in chaos.__all__:
        value = getattr(chaos, name)
        if inspect.isclass(value):
            assert value.__module__ == "asyncres.chaos", name
        if inspect.isclass(value) or inspect.isfunction(value):
            assert inspect.getdoc(value), f"asyncres.chaos.{name} has no docstring"


def test_import_needs_only_anyio() -> None:
    """`import asyncres.chaos` imports neither httpx nor trio; ChaosTransport brings httpx."""
    code = (
        "import sys, asyncres.chaos\n"
        "print(sorted({'httpx', 'httpx2', 'trio', 'asyncpg'} & set(sys.modules)))\n"
        "asyncres.chaos.ChaosTransport\n"
        "print('httpx' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout
    assert out.split("\n")[:2] == ["[]", "True"]


def test_unknown_attributes_still_raise() -> None:
    """The lazy loader only knows ChaosTransport."""
    with pytest.raises(AttributeError, match="NoSuchThing"):
        _ = chaos.NoSuchThing  # type: ignore[attr-defined]
