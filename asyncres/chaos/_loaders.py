"""Schedules from plain data: the ``[[phases]]`` TOML (or JSON) format and its fault kinds.

`Schedule.from_dict` and `Schedule.from_toml` are thin doors into this module. It sits
above the fault modules (it builds their faults) and below `_schedule` (it returns the
phases; the schedule class builds itself from them), so nothing here imports a schedule.
"""

from __future__ import annotations

import builtins
import hashlib
import importlib
import os
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from ._http import HttpDisconnectFault, HttpLatencyFault, HttpStatusFault, HttpTruncateFault
from ._inject import InjectError, InjectLatency, InjectResult
from ._phase import Phase
from ._toxics import make_toxic
from ._units import parse_duration

__all__ = ["BUILTIN_MAKERS", "FAULT_KINDS", "ScheduleData", "load_schedule_data", "read_toml"]


class ScheduleData(NamedTuple):
    """What `load_schedule_data` read: the phases, and the options still to check."""

    phases: list[Phase]
    repeat: Any  # checked by Schedule()
    name: Any


def read_toml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The parsed TOML file at ``path``."""
    return tomllib.loads(Path(path).read_text(encoding="utf-8"))


def load_schedule_data(
    data: Mapping[str, Any],
    *,
    targets: Mapping[str, object] | None,
    makers: Mapping[str, Callable[..., object]] | None,
    seed: int | None,
) -> ScheduleData:
    """Check ``data`` and build its phases and faults (see `Schedule.from_dict`)."""
    if not isinstance(data, Mapping):
        raise ValueError(f"`data` must be a mapping, got {type(data).__name__}")
    unknown = set(data) - {"phases", "name", "repeat", "seed"}
    if unknown:
        raise ValueError(f"`data`: unknown keys {sorted(unknown)}")
    phases_data = data.get("phases")
    if not isinstance(phases_data, list) or not phases_data:
        raise ValueError("`data`: `phases` must be a non-empty list of tables")
    if seed is None:
        seed = data.get("seed")
    all_makers: dict[str, Callable[..., object]] = dict(BUILTIN_MAKERS)
    all_makers.update(makers or {})
    known = dict(targets or {})
    phases: list[Phase] = []
    for number, spec in enumerate(phases_data, start=1):
        if not isinstance(spec, Mapping):
            raise ValueError(f"phase {number}: must be a table, got {spec!r}")
        unknown = set(spec) - {"name", "seconds", "faults"}
        if unknown:
            raise ValueError(f"phase {number}: unknown keys {sorted(unknown)}")
        name = spec.get("name", f"phase {number}")
        if "seconds" not in spec:
            raise ValueError(f"phase {number} ({name}): `seconds` is required")
        seconds = parse_duration(spec["seconds"], "seconds")
        faults = [
            _build_fault(item, f"phase {number} ({name}) fault {i}", known, all_makers, seed)
            for i, item in enumerate(spec.get("faults", []), start=1)
        ]
        phases.append(Phase(name, seconds=seconds, faults=faults))
    return ScheduleData(phases, data.get("repeat", False), data.get("name"))


def _build_fault(
    item: object,
    where: str,
    targets: dict[str, object],
    makers: Mapping[str, Callable[..., object]],
    seed: object,
) -> object:
    if isinstance(item, str):
        if item not in targets:
            known = ", ".join(sorted(targets)) or "none"
            raise ValueError(f"{where}: unknown target {item!r} (known: {known})")
        return targets[item]
    if not isinstance(item, Mapping):
        raise ValueError(f"{where}: must be a target name or a table, got {item!r}")
    options = dict(item)
    kind = options.pop("kind", None)
    if kind not in makers:
        raise ValueError(f"{where}: `kind` must be one of {sorted(makers)}, got {kind!r}")
    attach = options.pop("attach", None)
    if seed is not None and kind in _SEEDED_KINDS and "seed" not in options:
        digest = hashlib.sha256(f"{seed}/{where}".encode()).digest()
        options["seed"] = int.from_bytes(digest[:8], "big")
    try:
        fault = makers[kind](**options)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where} ({kind}): {exc}") from None
    if attach is not None:
        target: Any = targets.get(attach)
        if target is None or not callable(getattr(target, "add", None)):
            raise ValueError(f"{where}: `attach` must name a target with add(), got {attach!r}")
        if hasattr(fault, "enabled"):
            fault.enabled = False
        target.add(fault)
    return fault


_SEEDED_KINDS = frozenset({"error", "latency", "result"})


def _resolve_exception(name: str) -> type[Exception]:
    if not isinstance(name, str):
        raise ValueError(f"`error` must name an exception type, got {name!r}")
    module_name, _, attr = name.rpartition(".")
    try:
        if module_name:
            value = getattr(importlib.import_module(module_name), attr)
        else:
            value = getattr(builtins, attr)
    except (ImportError, AttributeError):
        raise ValueError(f"`error`: cannot find an exception named {name!r}") from None
    if not (isinstance(value, type) and issubclass(value, Exception)):
        raise ValueError(f"`error` must name an Exception type, got {name!r}")
    return value


def _make_error(
    error: str = "ConnectionError", message: str | None = None, **options: Any
) -> InjectError:
    exc_type = _resolve_exception(error)
    if message is None:
        return InjectError(exc_type, **options)
    try:
        exc_type(message)
    except Exception as exc:
        raise ValueError(f"`message`: {error} cannot be built from a message ({exc})") from None
    return InjectError(lambda: exc_type(message), **options)


def _make_latency(seconds: str | float, jitter: str | float = 0.0, **options: Any) -> InjectLatency:
    return InjectLatency(
        parse_duration(seconds, "seconds"), jitter=parse_duration(jitter, "jitter"), **options
    )


def _make_result(value: object, **options: Any) -> InjectResult:
    return InjectResult(value, **options)


def _make_http_status(retry_after: str | float | None = None, **options: Any) -> HttpStatusFault:
    status = options.pop("status", 503)
    if isinstance(retry_after, str) and retry_after[:1].isdigit():
        retry_after = parse_duration(retry_after, "retry_after")
    return HttpStatusFault(status, retry_after=retry_after, **options)


def _make_http_latency(
    seconds: str | float, jitter: str | float = 0.0, **options: Any
) -> HttpLatencyFault:
    return HttpLatencyFault(
        parse_duration(seconds, "seconds"), jitter=parse_duration(jitter, "jitter"), **options
    )


#: The fault kinds `Schedule.from_dict` builds without help, and their makers.
BUILTIN_MAKERS: Mapping[str, Callable[..., object]] = {
    "error": _make_error,
    "http_disconnect": HttpDisconnectFault,
    "http_latency": _make_http_latency,
    "http_status": _make_http_status,
    "http_truncate": HttpTruncateFault,
    "latency": _make_latency,
    "result": _make_result,
    "toxic": make_toxic,
}

#: The names of the built-in fault kinds.
FAULT_KINDS: tuple[str, ...] = tuple(BUILTIN_MAKERS)
