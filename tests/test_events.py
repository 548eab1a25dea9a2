"""Events: listeners per policy and process-wide, the logging default, safety."""

from __future__ import annotations

import dataclasses
import logging

import pytest

import asyncres
from asyncres._events import emit
from asyncres.testing import capture_events


def test_events_are_frozen_and_slotted() -> None:
    """Events are immutable value objects."""
    event = asyncres.events.RetryScheduled("svc", 1, 0.5, None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.wait = 2.0  # type: ignore[misc]
    assert not hasattr(event, "__dict__")
    assert event == asyncres.events.RetryScheduled("svc", 1, 0.5, None)


def test_str_is_compact_and_readable() -> None:
    """str(event) shows the fields, floats rounded, errors by type and message."""
    event = asyncres.events.RetryScheduled("svc", 2, 0.12345, ConnectionError("refused"))
    assert str(event) == (
        "RetryScheduled(name='svc', attempt=2, wait=0.123, error=ConnectionError('refused'))"
    )


def test_local_then_global_listeners_receive_events() -> None:
    """Each event goes to the policy's listeners, then to the process-wide ones."""
    order: list[str] = []
    previous = asyncres.events.set_listeners(lambda e: order.append("global"))
    try:
        emit([lambda e: order.append("local")], asyncres.events.TimeoutExpired("t", 1.0))
    finally:
        asyncres.events.set_listeners(*previous)
    assert order == ["local", "global"]


def test_set_listeners_returns_the_previous_ones() -> None:
    """set_listeners() hands back what it replaced, so callers can restore it."""
    original = asyncres.events.get_listeners()
    previous = asyncres.events.set_listeners(print)
    assert previous == original
    assert asyncres.events.set_listeners(*previous) == (print,)


def test_set_listeners_rejects_non_callables() -> None:
    """Listeners must be callables."""
    with pytest.raises(ValueError, match="`listeners`"):
        asyncres.events.set_listeners("not callable")  # type: ignore[arg-type]


def test_default_listener_logs_to_the_asyncres_logger(caplog: pytest.LogCaptureFixture) -> None:
    """log_event writes events to the 'asyncres' logger at the event's level."""
    caplog.set_level(logging.DEBUG, logger="asyncres")
    asyncres.events.log_event(asyncres.events.RetryGaveUp("svc", 3, None, "attempts"))
    assert caplog.records[-1].levelno == logging.WARNING
    assert "RetryGaveUp(name='svc'" in caplog.records[-1].getMessage()


def test_a_failing_listener_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    """A listener that raises cannot break the policy that emits."""
    caplog.set_level(logging.ERROR, logger="asyncres")

    def broken(event: asyncres.events.Event) -> None:
        raise RuntimeError("bug")

    with capture_events() as seen:
        emit([broken], asyncres.events.TimeoutExpired(None, 1.0))
    assert seen == [asyncres.events.TimeoutExpired(None, 1.0)]
    assert "listener" in caplog.records[-1].getMessage()


def test_capture_events_restores_the_listeners() -> None:
    """capture_events() only adds a collector for the duration of the block."""
    before = asyncres.events.get_listeners()
    with capture_events():
        assert len(asyncres.events.get_listeners()) == len(before) + 1
    assert asyncres.events.get_listeners() == before


@pytest.mark.parametrize("name", ["CircuitOpened", "RetryGaveUp", "set_listeners", "Listener"])
def test_root_names_of_events_are_deprecated_aliases(name: str) -> None:
    """``asyncres.<Event>`` still resolves, with a warning pointing at `asyncres.events`."""
    with pytest.warns(DeprecationWarning, match=rf"asyncres\.events\.{name}"):
        value = getattr(asyncres, name)
    assert value is getattr(asyncres.events, name)
    assert name not in asyncres.__all__
    with pytest.raises(AttributeError, match="no_such_name"):
        asyncres.no_such_name  # type: ignore[attr-defined]  # noqa: B018
