"""The simulated dependency and the open-loop harness shared by scenarios 2 and 3."""

from __future__ import annotations

import math
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio

from asyncres._policy import PolicyFaces
from asyncres.chaos import InjectError, InjectLatency, Schedule
from asyncres.drill._faults import CapacityBucket

from ._common import derive_seed, open_loop, percentile, poisson_arrivals

HEALTHY_LATENCY = 0.020
HEALTHY_SD = 0.005


class TransientError(Exception):
    """A failure worth retrying: every contender is told to retry this (and only this)."""


class ConnectionRefused(TransientError):
    """The dependency is down: the connection is refused (about 1 ms)."""


class ServiceUnavailable(TransientError):
    """HTTP 503 from the dependency (load shed at once)."""


@dataclass(frozen=True)
class Timeline:
    """Healthy for ``warmup`` s, then the fault for ``fault`` s, then healthy for ``after`` s."""

    warmup: float
    fault: float
    after: float

    @property
    def total(self) -> float:
        return self.warmup + self.fault + self.after

    @property
    def fault_window(self) -> tuple[float, float]:
        return self.warmup, self.warmup + self.fault


class Dependency:
    """A dependency whose faults follow an `asyncres.chaos.Schedule`; it counts attempts.

    Healthy calls take ``|Normal(20 ms, 5 ms)|``. ``fault`` is the list of chaos policies in
    force during the fault window (the same objects, seeded alike, for every contender).
    """

    def __init__(self, requests: int, timeline: Timeline, faults: list[Any], seed: int) -> None:
        start, end = timeline.fault_window
        self.schedule = Schedule([(start, end, faults)])
        self.attempts = [0] * requests
        self.attempt_times: list[float] = []
        self.served_times: list[float] = []
        self._latency = random.Random(derive_seed(seed, "latency"))
        self._origin = 0.0

    def start(self) -> None:
        self._origin = anyio.current_time()
        self.schedule.start(at=self._origin)

    async def call(self, request: int) -> str:
        """One attempt of ``request``: the unit every contender retries."""
        self.attempts[request] += 1
        self.attempt_times.append(anyio.current_time() - self._origin)
        return await self.schedule.call(self._serve)

    async def _serve(self) -> str:
        self.served_times.append(anyio.current_time() - self._origin)
        await anyio.sleep(abs(self._latency.gauss(HEALTHY_LATENCY, HEALTHY_SD)))
        return "ok"


def outage_faults(seed: int) -> list[Any]:
    """A hard-down dependency: every connection refused after 1 ms."""
    return [InjectLatency(0.001, seed=seed), InjectError(ConnectionRefused, seed=seed)]


def brownout_faults(rate: float, seed: int) -> list[Any]:
    """A brownout: a fraction ``rate`` of the calls get a 503 at once."""
    return [InjectError(ServiceUnavailable, rate=rate, seed=derive_seed(seed, "503"))]


class Overload(PolicyFaces):
    """An overload brownout: the dependency serves at most ``capacity`` calls a second.

    The drill's `CapacityBucket` (a quarter second of burst; each refusal still costs 0.2
    of a call, a debt of at most a second of capacity): beyond it a call gets a 503 at
    once, and extra attempts eat the capacity the first attempts need. A policy for an
    `asyncres.chaos.Schedule` phase: the schedule calls it only during the fault.
    """

    def __init__(self, capacity: float) -> None:
        self.capacity = capacity
        self._bucket: CapacityBucket | None = None

    async def call(self, fn: Callable[..., Awaitable[Any]], /, *args: Any, **kwargs: Any) -> Any:
        now = anyio.current_time()
        if self._bucket is None:
            self._bucket = CapacityBucket(self.capacity, now)
        if not self._bucket.admit(now):
            raise ServiceUnavailable("overloaded")
        return await fn(*args, **kwargs)


def overload_faults(capacity: float, seed: int) -> list[Any]:
    """An overload brownout at ``capacity`` calls a second (no randomness: ``seed`` unused)."""
    return [Overload(capacity)]


# -- HTTP: the same dependency behind an httpx transport ----------------------------------


def http_transport(dependency: Dependency) -> Any:
    """An ``httpx.MockTransport`` in front of ``dependency``: 503s and refused connections."""
    import httpx

    async def handler(request: httpx.Request) -> httpx.Response:
        try:
            await dependency.call(int(request.url.path.lstrip("/")))
        except ConnectionRefused:
            raise httpx.ConnectError("connection refused", request=request) from None
        except ServiceUnavailable:
            return httpx.Response(503, text="unavailable")
        return httpx.Response(200, text="ok")

    return httpx.MockTransport(handler)


# -- contenders ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Contender:
    """A retrying client. ``build`` gets the dependency (or, for HTTP, its transport)."""

    name: str
    build: Callable[[Any], Any]
    http: bool = False
    backend: str = "asyncio"
    note: str = ""


@dataclass
class Outcome:
    """What happened to the requests offered during the fault window."""

    requests: int
    attempts: int
    successes: int
    durations: list[float] = field(default_factory=list)
    attempts_per_second: float = 0.0
    #: Calls the dependency served per second during the fault window.
    served_per_second: float = 0.0

    @property
    def amplification(self) -> float:
        return self.attempts / self.requests if self.requests else math.nan

    @property
    def success_rate(self) -> float:
        return self.successes / self.requests if self.requests else math.nan

    @property
    def p50(self) -> float:
        return percentile(self.durations, 50)

    @property
    def p99(self) -> float:
        return percentile(self.durations, 99)


async def run_contender(
    contender: Contender,
    timeline: Timeline,
    rate: float,
    faults: Callable[[int], list[Any]],
    seed: int,
) -> Outcome:
    """Offer ``rate`` requests/s along ``timeline`` to ``contender``; measure the fault window."""
    arrivals = poisson_arrivals(rate, timeline.total, random.Random(derive_seed(seed, "arrivals")))
    dependency = Dependency(len(arrivals), timeline, faults(seed), seed)
    random.seed(derive_seed(seed, "contender"))  # peers draw jitter from the module generator
    ok = [False] * len(arrivals)
    durations = [math.nan] * len(arrivals)
    client = None
    if contender.http:
        client = contender.build(http_transport(dependency))

        async def attempt(index: int) -> None:
            assert client is not None
            response = await client.get(f"http://dependency/{index}")
            if response.status_code != 200:
                raise ServiceUnavailable(response.status_code)

        call: Callable[[int], Awaitable[Any]] = attempt
    else:
        call = contender.build(dependency)

    async def handle(index: int) -> None:
        started = anyio.current_time()
        try:
            await call(index)
        except Exception:
            pass
        else:
            ok[index] = True
        durations[index] = anyio.current_time() - started

    dependency.start()
    try:
        await open_loop(arrivals, handle)
    finally:
        if client is not None:
            await client.aclose()

    start, end = timeline.fault_window
    chosen = [i for i, at in enumerate(arrivals) if start <= at < end]
    in_window = sum(1 for t in dependency.attempt_times if start <= t < end)
    served = sum(1 for t in dependency.served_times if start <= t < end)
    return Outcome(
        requests=len(chosen),
        attempts=sum(dependency.attempts[i] for i in chosen),
        successes=sum(ok[i] for i in chosen),
        durations=[durations[i] for i in chosen],
        attempts_per_second=in_window / (end - start),
        served_per_second=served / (end - start),
    )
