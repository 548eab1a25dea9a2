"""Shared machinery: virtual clocks, open-loop load, peer clock shims, statistics, tables."""

from __future__ import annotations

import contextlib
import inspect
import logging
import math
import random
import textwrap
import types
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import looptime
from trio.testing import MockClock

import asyncres

#: How each scenario's clock is named in the results file.
ASYNCIO_CLOCK = "asyncio on looptime's virtual clock (`looptime.new_event_loop(noop_cycles=2)`)"
TRIO_CLOCK = "trio on `trio.testing.MockClock(autojump_threshold=0)`"


# -- results ----------------------------------------------------------------------------


@dataclass
class Table:
    """A markdown table: a caption, headers and already formatted rows."""

    caption: str
    headers: list[str]
    rows: list[list[str]]

    def markdown(self) -> str:
        align = ["---" if i == 0 else "---:" for i in range(len(self.headers))]
        lines = [f"**{self.caption}**", ""] if self.caption else []
        lines.append("| " + " | ".join(self.headers) + " |")
        lines.append("| " + " | ".join(align) + " |")
        lines.extend("| " + " | ".join(row) + " |" for row in self.rows)
        return "\n".join(lines)


@dataclass
class ScenarioResult:
    """What one scenario measured, ready to be written as a section of the results file."""

    number: int
    title: str
    question: str
    clock: str
    setup: list[str]
    configs: list[tuple[str, str]]
    tables: list[Table]
    reading: list[str]
    #: Raw numbers keyed by contender (and variant), for tests and for the closing note.
    data: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    smoke: bool = False
    #: The scenario's seed (the closing note compares with earlier runs only on theirs).
    seed: int | None = None


def source_of(fn: Callable[..., Any]) -> str:
    """The source of a contender's factory, as shown in the results file."""
    return textwrap.dedent(inspect.getsource(fn)).strip()


# -- running on a virtual clock ---------------------------------------------------------


def _looptime_loop() -> Any:
    # Two idle cycles (not looptime's default 42) before each jump keep big runs fast.
    return looptime.new_event_loop(noop_cycles=2)


def run_virtual(fn: Callable[..., Awaitable[Any]], *args: Any, backend: str = "asyncio") -> Any:
    """Run ``fn(*args)`` on a virtual clock: asyncio + looptime, or trio + MockClock."""
    if backend == "asyncio":
        options: dict[str, Any] = {"loop_factory": _looptime_loop}
    else:
        options = {"clock": MockClock(autojump_threshold=0)}
    with quiet(), virtual_peer_clocks():
        return anyio.run(fn, *args, backend=backend, backend_options=options)


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """No logging and no global asyncres listeners while a contender runs (for all alike)."""
    previous = asyncres.events.set_listeners()
    logging.disable(logging.CRITICAL)
    hooks = _silence_stamina()
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)
        asyncres.events.set_listeners(*previous)
        if hooks is not None:
            import stamina.instrumentation

            stamina.instrumentation.set_on_retry_hooks(hooks)


def _silence_stamina() -> Any:
    try:
        import stamina.instrumentation
    except ImportError:  # pragma: no cover - peers are optional
        return None
    hooks = stamina.instrumentation.get_on_retry_hooks()
    stamina.instrumentation.set_on_retry_hooks([])
    return hooks


# Peers that read the wall clock (datetime.now, time.time, time.monotonic) would not see
# virtual time pass: their module's clock is pointed at the event loop's clock instead. The
# shims change nothing but the time source.

_EPOCH = datetime(2030, 1, 1)


class _VirtualDatetime(datetime):
    @classmethod
    def now(cls, tz: Any = None) -> datetime:  # type: ignore[override]
        base = _EPOCH.replace(tzinfo=tz) if tz is not None else _EPOCH
        return base + timedelta(seconds=anyio.current_time())

    @classmethod
    def utcnow(cls) -> datetime:  # type: ignore[override]
        return _EPOCH + timedelta(seconds=anyio.current_time())


def _virtual_time_module() -> types.SimpleNamespace:
    import time as real

    def now() -> float:
        return 1_900_000_000.0 + anyio.current_time()

    return types.SimpleNamespace(
        time=now, monotonic=anyio.current_time, perf_counter=real.perf_counter, sleep=real.sleep
    )


@contextlib.contextmanager
def virtual_peer_clocks() -> Iterator[None]:
    """Point pybreaker, aiobreaker, purgatory and tenacity at the loop's virtual clock."""
    patches: list[tuple[Any, str, Any]] = []
    targets = [
        ("pybreaker", "datetime", _VirtualDatetime),
        ("aiobreaker.state", "datetime", _VirtualDatetime),
        ("aiobreaker.circuitbreaker", "datetime", _VirtualDatetime),
        ("purgatory.domain.model", "time", _virtual_time_module()),
        ("tenacity", "time", _virtual_time_module()),
    ]
    for module_name, attribute, replacement in targets:
        try:
            module = __import__(module_name, fromlist=["_"])
        except ImportError:  # pragma: no cover - peers are optional
            continue
        patches.append((module, attribute, getattr(module, attribute)))
        setattr(module, attribute, replacement)
    try:
        yield
    finally:
        for module, attribute, original in reversed(patches):
            setattr(module, attribute, original)


_ = UTC  # pybreaker passes UTC to datetime.now(); the shim accepts any tzinfo.


# -- load and statistics ----------------------------------------------------------------


def poisson_arrivals(rate: float, seconds: float, rng: random.Random) -> list[float]:
    """Arrival times (seconds from 0) of a Poisson process of ``rate`` per second."""
    times: list[float] = []
    t = rng.expovariate(rate)
    while t < seconds:
        times.append(t)
        t += rng.expovariate(rate)
    return times


async def open_loop(arrivals: Sequence[float], handle: Callable[[int], Awaitable[None]]) -> None:
    """Start ``handle(i)`` at each arrival time, whatever the earlier requests are doing."""
    origin = anyio.current_time()
    async with anyio.create_task_group() as tg:
        for index, at in enumerate(arrivals):
            delay = origin + at - anyio.current_time()
            if delay > 0:
                await anyio.sleep(delay)
            tg.start_soon(handle, index)


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[rank - 1]


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def fmt(value: float, digits: int = 2, suffix: str = "") -> str:
    if isinstance(value, float) and math.isnan(value):
        return "—"
    return f"{value:,.{digits}f}{suffix}"


def pct(value: float, digits: int = 1) -> str:
    if math.isnan(value):
        return "—"
    return f"{100.0 * value:.{digits}f} %"


def span(low: str, high: str) -> str:
    """The range from ``low`` to ``high`` (an en dash), or one value when both read alike."""
    return low if low == high else f"{low}–{high}"


def seconds_or_ms(value: float) -> str:
    if math.isnan(value):
        return "—"
    if value < 1.0:
        return f"{value * 1000:,.0f} ms"
    return f"{value:,.2f} s"


def derive_seed(*parts: object) -> int:
    """A stable seed from the scenario seed and labels (not Python's salted ``hash``)."""
    text = "/".join(str(part) for part in parts)
    value = 1469598103934665603
    for byte in text.encode():
        value = ((value ^ byte) * 1099511628211) % (1 << 64)
    return value


# -- using both cores -------------------------------------------------------------------


def parallel(jobs: Sequence[tuple[Callable[..., Any], tuple[Any, ...]]], workers: int) -> list[Any]:
    """Run independent jobs (module-level functions) on ``workers`` processes, in order."""
    if workers <= 1 or len(jobs) <= 1:
        return [fn(*args) for fn, args in jobs]
    import concurrent.futures
    import multiprocessing

    context = multiprocessing.get_context("fork")
    with concurrent.futures.ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures = [pool.submit(fn, *args) for fn, args in jobs]
        return [future.result() for future in futures]
