"""Durations and sizes written the way people write them: ``200ms``, ``1.5s``, ``64KiB``.

Shared by the schedule loaders (TOML ``[[phases]]``) and the command line, so one spelling
works in both.
"""

from __future__ import annotations

import math
import re

__all__ = ["parse_duration", "parse_size"]

_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(us|µs|ms|s|m|h)?\s*$")
_DURATION_UNITS = {None: 1.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "m": 60.0, "h": 3600.0}

_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([kmg]i?b?|b)?\s*(/s)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "ki": 1024,
    "kib": 1024,
    "m": 1000**2,
    "mb": 1000**2,
    "mi": 1024**2,
    "mib": 1024**2,
    "g": 1000**3,
    "gb": 1000**3,
    "gi": 1024**3,
    "gib": 1024**3,
}


def parse_duration(value: str | float, parameter: str) -> float:
    """Seconds from a number (seconds) or a string such as ``"200ms"``, ``"1.5s"``, ``"2m"``."""
    if isinstance(value, bool):
        raise ValueError(f"`{parameter}` must be a duration, got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        match = _DURATION.match(value)
        if match is None:
            raise ValueError(
                f"`{parameter}` must be a duration such as 200ms, 1.5s or 2m, got {value!r}"
            )
        seconds = float(match.group(1)) * _DURATION_UNITS[match.group(2)]
    else:
        raise ValueError(f"`{parameter}` must be a duration, got {value!r}")
    if math.isnan(seconds) or seconds < 0:
        raise ValueError(f"`{parameter}` must be >= 0, got {value!r}")
    return seconds


def parse_size(value: str | float, parameter: str) -> float:
    """Bytes from a number or a string such as ``"512"``, ``"64KB"`` (1000) or ``"64KiB"``.

    A trailing ``/s`` is accepted, so a rate reads naturally: ``"100KB/s"``.
    """
    if isinstance(value, bool):
        raise ValueError(f"`{parameter}` must be a size in bytes, got {value!r}")
    if isinstance(value, int | float):
        size = float(value)
    elif isinstance(value, str):
        match = _SIZE.match(value)
        if match is None:
            raise ValueError(
                f"`{parameter}` must be a size such as 512, 64KB or 1MiB, got {value!r}"
            )
        size = float(match.group(1)) * _SIZE_UNITS[(match.group(2) or "").lower()]
    else:
        raise ValueError(f"`{parameter}` must be a size in bytes, got {value!r}")
    if math.isnan(size) or size < 0:
        raise ValueError(f"`{parameter}` must be >= 0, got {value!r}")
    return size
