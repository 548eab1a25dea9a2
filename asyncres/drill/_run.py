"""Run a drill: service, fault proxies, two clients, open-loop traffic, the schedule."""

from __future__ import annotations

import contextlib
import multiprocessing
import random
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import anyio
import httpx

import asyncres
from asyncres import chaos

from ._clients import Get, naive_client, protected_client
from ._metrics import FAILED, OK, REJECTED, UNFINISHED, Recorder, summarize, window
from ._scenario import Faults, Scenario
from ._service import CLIENTS, serve

__all__ = ["DrillConfig", "run_drill"]

#: The recovery time of the standard policy's breaker (asyncres.httpx defaults).
BREAKER_RECOVERY = 5.0


@dataclass(frozen=True)
class DrillConfig:
    scenario: Scenario
    rate: float = 40.0
    seed: int = 1
    grace: float = 8.0


class _ServiceProcess:
    """The drill service in a process of its own: one core for it, one for the clients."""

    def __init__(self, folder: str, seed: int) -> None:
        context = multiprocessing.get_context("spawn")
        self._receive, send = context.Pipe(duplex=False)
        self.process = context.Process(
            target=serve, args=(send, folder, seed), name="asyncres-drill-service", daemon=True
        )
        self.port = 0

    def __enter__(self) -> _ServiceProcess:
        self.process.start()
        if not self._receive.poll(60):  # bounded: start-up includes importing the service
            self.process.kill()
            raise RuntimeError("the drill service did not start within 60 s")
        self.port = int(self._receive.recv())
        return self

    def __exit__(self, *exc: object) -> None:
        self.process.terminate()  # uvicorn shuts down cleanly on SIGTERM
        self.process.join(15)
        if self.process.is_alive():  # pragma: no cover - a wedged service
            self.process.kill()
            self.process.join(5)


class _Admin:
    """The drill's control channel to the service (direct, not through the proxies)."""

    def __init__(self, port: int) -> None:
        self.client = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10.0)

    async def faults(self, faults: Faults, started: float | None = None) -> None:
        body: dict[str, Any] = {"faults": asdict(faults)}
        if started is not None:
            body["started"] = started
        response = await self.client.post("/_drill/faults", json=body)
        response.raise_for_status()

    async def stats(self) -> dict[str, dict[str, Any]]:
        response = await self.client.get("/_drill/stats")
        response.raise_for_status()
        data: dict[str, dict[str, Any]] = response.json()
        for counters in data.values():
            for key in ("reached", "abandoned"):
                counters[key] = Counter({int(k): v for k, v in counters[key].items()})
        return data


async def run_drill(
    config: DrillConfig,
    *,
    on_tick: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run the drill and return its report (a JSON-ready dict)."""
    with (
        tempfile.TemporaryDirectory(prefix="asyncres-drill-") as folder,
        _ServiceProcess(folder, config.seed) as service,
    ):
        upstream = ("127.0.0.1", service.port)
        admin = _Admin(service.port)
        async with (
            admin.client,
            chaos.FaultProxy(upstream=upstream, seed=config.seed, name="naive") as p1,
            chaos.FaultProxy(upstream=upstream, seed=config.seed, name="protected") as p2,
        ):
            return await _drive(config, admin, {"naive": p1, "protected": p2}, on_tick)


async def _drive(
    config: DrillConfig,
    admin: _Admin,
    proxies: dict[str, Any],
    on_tick: Callable[[dict[str, Any]], None] | None,
) -> dict[str, Any]:
    scenario = config.scenario
    started = time.monotonic()
    await admin.faults(Faults(), started)
    recorders = {name: Recorder(name) for name in CLIENTS}
    makers = {"naive": naive_client, "protected": protected_client}
    clients: dict[str, tuple[Any, Get]] = {}
    counters = {}
    for name in CLIENTS:
        client, get, counter = makers[name](f"http://127.0.0.1:{proxies[name].port}", started)
        clients[name] = (client, get)
        counters[name] = counter
    watcher = _BreakerWatcher(recorders["protected"], started, proxies["protected"].port)
    previous = asyncres.set_listeners(*asyncres.get_listeners(), watcher)
    phase_name = [scenario.phases[0].name]
    try:
        async with contextlib.AsyncExitStack() as stack:
            for client, _ in clients.values():
                await stack.enter_async_context(client)
            async with anyio.create_task_group() as tg:
                schedule_done = anyio.Event()
                tg.start_soon(
                    _schedule, scenario, admin, proxies, started, phase_name, schedule_done
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
                        admin,
                        phase_name,
                        started,
                        schedule_done,
                    )
    finally:
        asyncres.set_listeners(*previous)
    backend = await admin.stats()
    report = summarize(
        scenario,
        recorders,
        {name: counters[name].sent for name in CLIENTS},
        {name: backend[name]["reached"] for name in CLIENTS},
        {name: backend[name]["abandoned"] for name in CLIENTS},
        BREAKER_RECOVERY,
    )
    for name in CLIENTS:
        report["clients"][name]["totals"]["backend_max_in_flight"] = backend[name]["max_in_flight"]
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
        if not (event.name or "").endswith(self.suffix):
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
    admin: _Admin,
    proxies: dict[str, Any],
    started: float,
    phase_name: list[str],
    done: anyio.Event,
) -> None:
    try:
        for phase, _, end in scenario.boundaries():
            phase_name[0] = phase.name
            await _apply(phase.faults, admin, proxies)
            await anyio.sleep(max(0.0, started + end - time.monotonic()))
        await _apply(Faults(), admin, proxies)
    finally:
        done.set()


async def _apply(faults: Faults, admin: _Admin, proxies: dict[str, Any]) -> None:
    for proxy in proxies.values():
        proxy.clear()
        if faults.latency:
            proxy.add(chaos.LatencyToxic(faults.latency, jitter=faults.jitter))
        proxy.enabled = not faults.outage
    await admin.faults(faults)


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
    admin: _Admin,
    phase_name: list[str],
    started: float,
    schedule_done: anyio.Event,
) -> None:
    """Live numbers for the current phase, four times a second."""
    bounds = {p.name: (s, e) for p, s, e in scenario.boundaries()}
    while True:
        name = phase_name[0]
        start, end = bounds[name]
        try:
            backend = await admin.stats()
        except httpx.HTTPError:
            backend = {}
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
            counts = backend.get(client, {})
            snapshot["clients"][client] = {
                "done": len(samples),
                "in_flight": recorder.in_flight,
                "success_rate": ok / len(samples) if samples else None,
                "p50": latencies[len(latencies) // 2] if latencies else None,
                "p99": latencies[int(len(latencies) * 0.99)] if latencies else None,
                "sent": window(counters[client].sent, start, end),
                "reached": window(counts.get("reached", Counter()), start, end),
                "rejected": sum(1 for s in samples if s[2] == REJECTED),
                "breaker": recorder.breaker[-1][1] if recorder.breaker else "closed",
                "abandoned": window(counts.get("abandoned", Counter()), start, end),
            }
        on_tick(snapshot)
        if schedule_done.is_set() and all(r.in_flight == 0 for r in recorders.values()):
            return
        await anyio.sleep(0.25)
