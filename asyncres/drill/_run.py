"""Run a drill: service, fault proxies, two clients, open-loop traffic, the schedule."""

from __future__ import annotations

import asyncio
import contextlib
import random
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

import asyncres
from asyncres import chaos

from ._clients import Get, naive_client, protected_client
from ._metrics import FAILED, OK, REJECTED, UNFINISHED, Recorder, _window, summarize
from ._scenario import Faults, Scenario
from ._service import Backend, DrillService, create_schema

__all__ = ["DrillConfig", "run_drill"]

#: The recovery time of the standard policy's breaker (asyncres.httpx defaults).
BREAKER_RECOVERY = 5.0
CLIENTS = ("naive", "protected")


@dataclass(frozen=True)
class DrillConfig:
    scenario: Scenario
    rate: float = 40.0
    seed: int = 1
    grace: float = 10.0
    backend: str = "asyncio"


class _ServiceThread:
    """uvicorn serving the drill service in a thread of its own (asyncio, aiosqlite)."""

    def __init__(self, backends: dict[str, Backend], seed: int) -> None:
        import uvicorn

        self.app = DrillService(backends, seed)
        self.backends = backends
        self.config = uvicorn.Config(
            self.app,
            host="127.0.0.1",
            port=0,
            log_level="critical",
            lifespan="off",
            access_log=False,
            timeout_keep_alive=30,
        )
        self.server = uvicorn.Server(self.config)
        self.ready = threading.Event()
        self.port = 0
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="asyncres-drill-service", daemon=True)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported to the drill's thread
            self.error = exc
            self.ready.set()

    async def _main(self) -> None:
        from asyncres import db

        async with contextlib.AsyncExitStack() as stack:
            for backend in self.backends.values():
                backend.pool = await stack.enter_async_context(
                    db.sqlite(
                        backend.database,
                        min_size=2,
                        max_size=8,
                        max_queued=16,
                        acquire_timeout=1.0,
                        name=f"drill {backend.name}",
                    )
                )
                await create_schema(backend.pool)
            config = self.config
            if not config.loaded:
                config.load()
            self.server.lifespan = config.lifespan_class(config)
            sockets = [config.bind_socket()]
            self.port = sockets[0].getsockname()[1]
            self.ready.set()
            await self.server.serve(sockets=sockets)

    def __enter__(self) -> _ServiceThread:
        self.thread.start()
        if not self.ready.wait(30) or self.error is not None:
            raise RuntimeError(f"the drill service did not start: {self.error!r}")
        for _ in range(3000):  # bounded: up to 30 s
            if self.server.started:
                break
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(30)


async def run_drill(
    config: DrillConfig,
    *,
    on_tick: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run the drill and return its report (a JSON-ready dict)."""
    with tempfile.TemporaryDirectory(prefix="asyncres-drill-") as tmp:
        backends = {name: Backend(name=name, database=Path(tmp) / f"{name}.db") for name in CLIENTS}
        with _ServiceThread(backends, config.seed) as service:
            upstream = ("127.0.0.1", service.port)
            async with (
                chaos.FaultProxy(upstream=upstream, seed=config.seed, name="naive") as p1,
                chaos.FaultProxy(upstream=upstream, seed=config.seed, name="protected") as p2,
            ):
                proxies = {"naive": p1, "protected": p2}
                return await _drive(config, backends, proxies, on_tick)


async def _drive(
    config: DrillConfig,
    backends: dict[str, Backend],
    proxies: dict[str, Any],
    on_tick: Callable[[dict[str, Any]], None] | None,
) -> dict[str, Any]:
    scenario = config.scenario
    started = time.monotonic()
    for backend in backends.values():
        backend.started = started
    recorders = {name: Recorder(name) for name in CLIENTS}
    clients = {}
    counters = {}
    makers = {"naive": naive_client, "protected": protected_client}
    for name in CLIENTS:
        proxy = proxies[name]
        client, get, counter = makers[name](f"http://127.0.0.1:{proxy.port}", started)
        clients[name] = (client, get)
        counters[name] = counter
    breaker_listener = _BreakerWatcher(recorders["protected"], started, proxies["protected"].port)
    previous = asyncres.set_listeners(*asyncres.get_listeners(), breaker_listener)
    phase_name = [scenario.phases[0].name]
    try:
        async with contextlib.AsyncExitStack() as stack:
            for client, _ in clients.values():
                await stack.enter_async_context(client)
            async with anyio.create_task_group() as tg:
                schedule_done = anyio.Event()
                tg.start_soon(
                    _schedule, scenario, backends, proxies, started, phase_name, schedule_done
                )
                for name in CLIENTS:
                    rng = random.Random(f"{config.seed}:{name}")
                    tg.start_soon(_traffic, clients[name][1], recorders[name], config, started, rng)
                if on_tick is not None:
                    tg.start_soon(
                        _ticker,
                        on_tick,
                        scenario,
                        recorders,
                        counters,
                        backends,
                        phase_name,
                        started,
                        schedule_done,
                    )
    finally:
        asyncres.set_listeners(*previous)
    report = summarize(
        scenario,
        recorders,
        {name: counters[name].sent for name in CLIENTS},
        {name: backends[name].reached for name in CLIENTS},
        {name: backends[name].abandoned for name in CLIENTS},
        BREAKER_RECOVERY,
    )
    report |= {
        "version": 1,
        "seed": config.seed,
        "rate_per_client": config.rate,
        "duration": scenario.duration,
        "phases": [
            {"name": p.name, "start": s, "end": e, "faults": p.faults.describe()}
            for p, s, e in scenario.boundaries()
        ],
    }
    return report


class _BreakerWatcher:
    """Records the protected client's breaker transitions for its backend host."""

    def __init__(self, recorder: Recorder, started: float, port: int) -> None:
        self.recorder = recorder
        self.started = started
        self.suffix = f":{port}"

    def __call__(self, event: asyncres.Event) -> None:
        name = event.name or ""
        if not name.endswith(self.suffix):
            return
        state = {
            asyncres.CircuitOpened: "open",
            asyncres.CircuitHalfOpened: "half_open",
            asyncres.CircuitClosed: "closed",
        }.get(type(event))
        if state is not None:
            self.recorder.breaker.append((time.monotonic() - self.started, state))


async def _schedule(
    scenario: Scenario,
    backends: dict[str, Backend],
    proxies: dict[str, Any],
    started: float,
    phase_name: list[str],
    done: anyio.Event,
) -> None:
    try:
        for phase, _, end in scenario.boundaries():
            phase_name[0] = phase.name
            _apply(phase.faults, backends, proxies)
            await anyio.sleep(max(0.0, started + end - time.monotonic()))
        _apply(Faults(), backends, proxies)
    finally:
        done.set()


def _apply(faults: Faults, backends: dict[str, Backend], proxies: dict[str, Any]) -> None:
    now = time.monotonic()
    for name, backend in backends.items():
        backend.faults = faults
        backend.phase_started = now
        proxy = proxies[name]
        proxy.clear()
        if faults.latency:
            proxy.add(chaos.LatencyToxic(faults.latency, jitter=faults.jitter))
        proxy.enabled = not faults.outage


async def _traffic(
    get: Get, recorder: Recorder, config: DrillConfig, started: float, rng: random.Random
) -> None:
    """Open loop: a request every 1/rate seconds, whatever happened to the earlier ones."""
    total = int(config.scenario.duration * config.rate)
    deadline = config.scenario.duration + config.grace
    async with anyio.create_task_group() as tg:
        for index in range(total):
            at = started + index / config.rate
            await anyio.sleep(max(0.0, at - time.monotonic()))
            tg.start_soon(_one, get, recorder, f"/item/{rng.randrange(1000)}", started, deadline)


async def _one(get: Get, recorder: Recorder, path: str, started: float, deadline: float) -> None:
    begin = time.monotonic()
    recorder.in_flight += 1
    recorder.max_in_flight = max(recorder.max_in_flight, recorder.in_flight)
    outcome = UNFINISHED
    try:
        with anyio.move_on_after(max(0.0, started + deadline - begin)):
            try:
                response = await get(path)
            except asyncres.RejectedError:
                outcome = REJECTED
            except Exception:
                outcome = FAILED
            else:
                outcome = OK if response.status_code == 200 else FAILED
    finally:
        recorder.in_flight -= 1
        recorder.add(begin - started, time.monotonic() - begin, outcome)


async def _ticker(
    on_tick: Callable[[dict[str, Any]], None],
    scenario: Scenario,
    recorders: dict[str, Recorder],
    counters: dict[str, Any],
    backends: dict[str, Backend],
    phase_name: list[str],
    started: float,
    schedule_done: anyio.Event,
) -> None:
    """Live numbers for the current phase, four times a second."""
    bounds = {p.name: (s, e) for p, s, e in scenario.boundaries()}
    while True:
        name = phase_name[0]
        start, end = bounds[name]
        snapshot: dict[str, Any] = {
            "t": time.monotonic() - started,
            "phase": name,
            "duration": scenario.duration,
            "clients": {},
        }
        for client, recorder in recorders.items():
            samples = [s for s in recorder.samples if start <= s[0] < end]
            ok = sum(1 for s in samples if s[2] == OK)
            latencies = sorted(s[1] for s in samples)
            sent = _window(counters[client].sent, start, end)
            snapshot["clients"][client] = {
                "done": len(samples),
                "in_flight": recorder.in_flight,
                "success_rate": ok / len(samples) if samples else None,
                "p50": latencies[len(latencies) // 2] if latencies else None,
                "p99": latencies[int(len(latencies) * 0.99)] if latencies else None,
                "sent": sent,
                "reached": _window(backends[client].reached, start, end),
                "rejected": sum(1 for s in samples if s[2] == REJECTED),
                "breaker": recorder.breaker[-1][1] if recorder.breaker else "closed",
                "abandoned": _window(backends[client].abandoned, start, end),
            }
        on_tick(snapshot)
        if schedule_done.is_set() and all(r.in_flight == 0 for r in recorders.values()):
            return
        await anyio.sleep(0.25)
