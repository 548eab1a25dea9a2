"""The public surface of asyncres.chaos: exports, module names, docstrings, lazy httpx,
read-only configuration and the knobs that are live on purpose."""

from __future__ import annotations

import inspect
import random
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import httpx
import pytest

import asyncres.chaos as chaos
from asyncres._setting import Setting


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


# -- configuration: read-only after construction, live only on purpose -------------------


def _surface(obj: object) -> tuple[set[str], set[str]]:
    """The public `Setting`s and the public settable properties of ``obj``'s class."""
    settings: set[str] = set()
    live: set[str] = set()
    for klass in type(obj).__mro__:
        for attr, value in vars(klass).items():
            if attr.startswith("_"):
                continue
            if isinstance(value, Setting):
                settings.add(attr)
            elif isinstance(value, property) and value.fset is not None:
                live.add(attr)
    return settings, live


def _noop() -> None:
    """A switch callback that does nothing."""


def _configured() -> list[Any]:
    injection = chaos.InjectResult("x", name="r")
    phase = chaos.Phase("p", seconds=2, faults=[injection])
    inner = httpx.MockTransport(lambda request: httpx.Response(200))
    injections = {"rate", "enabled", "rng"}
    http = {"rate", "enabled", "match"}
    return [
        # (object, its read-only settings and their values, its live knobs)
        (chaos.Switch(on=_noop, off=_noop, name="s"), {"name": "s"}, {"enabled"}),
        (phase, {"name": "p", "seconds": 2.0, "faults": (injection,)}, set()),
        (
            chaos.Schedule([phase], repeat=True, name="s"),
            {"phases": (phase,), "repeat": True, "name": "s"},
            set(),
        ),
        (chaos.InjectError(ValueError, name="e"), {"error": ValueError, "name": "e"}, injections),
        (chaos.InjectLatency(0.1), {"name": None}, injections | {"seconds", "jitter"}),
        (injection, {"value": "x", "name": "r"}, injections),
        (
            chaos.HttpStatusFault(503, retry_after=1, headers={"X": "y"}, content="c", name="h"),
            {
                "status": 503,
                "retry_after": 1.0,
                "headers": {"X": "y"},
                "content": b"c",
                "name": "h",
            },
            http,
        ),
        (
            chaos.HttpLatencyFault(0.1, where="body", after=3),
            {"where": "body", "after": 3, "name": None},
            http | {"seconds", "jitter"},
        ),
        (chaos.HttpDisconnectFault(when="read"), {"when": "read", "name": None}, http),
        (
            chaos.HttpTruncateFault(after=5, error=False),
            {"after": 5, "error": False, "name": None},
            http,
        ),
        (chaos.ChaosTransport(inner, name="t"), {"inner": inner, "name": "t"}, {"enabled", "rng"}),
        (
            chaos.FaultProxy(upstream="127.0.0.1:1", connect_timeout=2, name="p"),
            {"upstream": ("127.0.0.1", 1), "connect_timeout": 2.0, "name": "p"},
            {"enabled", "rng"},
        ),
    ]


@pytest.mark.parametrize("cls", [type(case[0]).__name__ for case in _configured()])
def test_configuration_is_read_only_and_live_knobs_are_the_chosen_ones(cls: str) -> None:
    """Each setting reads back and refuses assignment; only the chosen knobs are settable."""
    [(obj, values, expected_live)] = [c for c in _configured() if type(c[0]).__name__ == cls]
    settings, live = _surface(obj)
    assert settings == set(values), cls
    assert live == expected_live, cls
    assert not [k for k in getattr(obj, "__dict__", {}) if not k.startswith("_")], cls
    for attr, value in values.items():
        assert getattr(obj, attr) == value, f"{cls}.{attr}"
        with pytest.raises(AttributeError, match=rf"{cls}\.{attr} is read-only"):
            setattr(obj, attr, value)
        with pytest.raises(AttributeError, match=rf"{cls}\.{attr} cannot be deleted"):
            delattr(obj, attr)
        assert getattr(obj, attr) == value, f"{cls}.{attr}"


def test_a_proxys_outage_switch_cannot_be_replaced() -> None:
    """`FaultProxy.outage` is the proxy's own switch: replacing it would cut the link."""
    proxy = chaos.FaultProxy(upstream="127.0.0.1:1")
    outage = proxy.outage
    with pytest.raises(AttributeError, match="outage"):
        proxy.outage = chaos.Switch(on=_noop, off=_noop)  # type: ignore[misc]
    assert proxy.outage is outage
    proxy.enabled = False
    assert outage.enabled is True


@pytest.mark.parametrize(
    "make",
    [
        lambda: chaos.InjectResult("x"),
        lambda: chaos.ChaosTransport(httpx.MockTransport(lambda request: httpx.Response(200))),
        lambda: chaos.FaultProxy(upstream="127.0.0.1:1"),
    ],
    ids=["InjectResult", "ChaosTransport", "FaultProxy"],
)
def test_a_new_generator_is_checked_and_used(make: Callable[[], Any]) -> None:
    """Assigning ``rng`` reseeds (the very generator is kept); a non-generator is refused."""
    obj = make()
    generator = random.Random(5)
    obj.rng = generator
    assert obj.rng is generator
    with pytest.raises(ValueError, match=r"`rng` must be a random\.Random"):
        obj.rng = 5
    assert obj.rng is generator
