"""asyncres.testing: testing mode for users' suites."""

from __future__ import annotations

import pytest

from asyncres import testing


def test_set_testing_toggles_and_restores() -> None:
    """set_testing switches the mode; as a context manager it restores the previous one."""
    assert not testing.is_testing()
    with testing.set_testing(True, attempts=3):
        assert testing.is_testing()
        with testing.set_testing(False):
            assert not testing.is_testing()
        assert testing.is_testing()
    assert not testing.is_testing()


def test_set_testing_validates_attempts() -> None:
    """attempts must be a positive integer."""
    with pytest.raises(ValueError, match="`attempts`"):
        testing.set_testing(True, attempts=0)
