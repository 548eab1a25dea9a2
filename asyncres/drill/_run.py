"""Run a drill: service, fault proxies, two clients, open-loop traffic, the schedule."""

from __future__ import annotations

import contextlib
import math
import multiprocessing
import random
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from types import TracebackType
from typing import Any

import anyio
import httpx

import asyncres
from asyncres import chaos

from .. import _validation
from ._clients import Get, naive_client, protected_client
from ._faults import (
    ZONES,
    Brownout,
    DrillFault,
    ErrorBurst,
    Latency,
    Outage,
    Overload,
    SlowDatabase,
    ZoneOutage,
    describe_faults,
)
from ._metrics import (
    FAILED,
    OK,
    REJECTED,
    UNFINISHED,
    Recorder,
    judged_until,
    summarize,
    window,
)
from ._schedule import check_schedule
from ._service import CLIENTS, PROTECTIONS, ServiceFaults, serve

__all__ = ["DrillOptions", "run_drill"]


@dataclass(frozen=True, slots=True)
class DrillOptions:
    """How to run a drill: the `chaos.Schedule` of faults and the traffic.

    ``schedule`` holds only the drill's fault kinds (`Latency`, `ErrorBurst`, `Brownout`,
    `Overload`, `Outage`, `SlowDatabase`), each phase at most one of each kind, every
    phase finite and named uniquely; ``rate`` requests per second per client; ``grace``
    seconds for requests still in flight after the last phase. Read-only (a frozen
    dataclass).
    """

    schedule: chaos.Schedule
    rate: float = 40.0
    seed: int = 1
    grace: float = 8.0

    __module__ = "asyncres.drill"

    def __post_init__(self) -> None:
        check_schedule(self.schedule)
        _validation.finite_positive("rate", self.rate)
        _validation.count("seed", self.seed, minimum=-(2**63))
        _validation.non_negative("grace", self.grace)


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

    async def faults(self, faults: ServiceFaults, started: float | None = None) -> None:
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
            for key in ("reached", *PROTECTIONS):
                counters[key] = Counter({int(k): v for k, v in counters[key].items()})
        return data


async def run_drill(
    options: DrillOptions,
    *,
    on_tick: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run the drill and return its report (a JSON-ready dict)."""
    if not isinstance(options, DrillOptions):
        raise ValueError(f"`options` must be DrillOptions, got {options!r}")
    with (
        tempfile.TemporaryDirectory(prefix="asyncres-drill-") as folder,
        _ServiceProcess(folder, options.seed) as service,
    ):
        upstream = ("127.0.0.1", service.port)
        admin = _Admin(service.port)
        async with admin.client, contextlib.AsyncExitStack() as stack:
            # One proxy per client and zone: the service's three "replicas" (one process,
            # reached through three doors that fail independently).
            proxies = {
                name: {
                    zone: await stack.enter_async_context(
                        chaos.FaultProxy(
                            upstream=upstream, seed=options.seed, name=f"{name} zone {zone}"
                        )
                    )
                    for zone in ZONES
                }
                for name in CLIENTS
            }
            return await _drive(options, admin, proxies, on_tick)


async def _drive(
    options: DrillOptions,
    admin: _Admin,
    proxies: dict[str, dict[str, Any]],
    on_tick: Callable[[dict[str, Any]], None] | None,
) -> dict[str, Any]:
    schedule = options.schedule
    started = time.monotonic()
    schedule.start()  # in step with ``started``: the schedule counts on the loop's clock
    await admin.faults(ServiceFaults(), started)
    recorders = {name: Recorder(name) for name in CLIENTS}
    makers = {"naive": naive_client, "protected": protected_client}
    clients: dict[str, tuple[Any, Get]] = {}
    counters = {}
    for name in CLIENTS:
        urls = {zone: f"http://127.0.0.1:{proxy.port}" for zone, proxy in proxies[name].items()}
        client, get, counter = makers[name](urls, started)
        clients[name] = (client, get)
        counters[name] = counter
    watcher = _BreakerWatcher(
        recorders["protected"],
        started,
        {proxy.port: zone for zone, proxy in proxies["protected"].items()},
    )
    previous = asyncres.events.set_listeners(*asyncres.events.get_listeners(), watcher)
    try:
        async with contextlib.AsyncExitStack() as stack:
            for client, _ in clients.values():
                await stack.enter_async_context(client)
            board = stack.enter_context(
                _FaultBoard(
                    schedule,
                    admin,
                    [(zone, p) for per in proxies.values() for zone, p in per.items()],
                    rate=options.rate,
                )
            )
            async with anyio.create_task_group() as tg:
                schedule_done = anyio.Event()
                tg.start_soon(_run_schedule, schedule, board, schedule_done)
                for name in CLIENTS:
                    rng = random.Random(f"{options.seed}:{name}")
                    tg.start_soon(
                        _traffic, clients[name][1], recorders[name], options, started, rng
                    )
                if on_tick is not None:
                    tg.start_soon(
                        _ticker,
                        on_tick,
                        schedule,
                        recorders,
                        counters,
                        admin,
                        started,
                        schedule_done,
                    )
    finally:
        asyncres.events.set_listeners(*previous)
    backend = await admin.stats()
    report = summarize(
        schedule,
        recorders,
        {name: counters[name].sent for name in CLIENTS},
        {name: backend[name]["reached"] for name in CLIENTS},
        {name: {key: backend[name][key] for key in PROTECTIONS} for name in CLIENTS},
        options.rate,
    )
    for name in CLIENTS:
        report["clients"][name]["totals"]["backend_max_in_flight"] = backend[name]["max_in_flight"]
    _judge_zone_outage(report, schedule, counters["protected"], options.rate)
    report |= {
        "version": 1,
        "seed": options.seed,
        "rate_per_client": options.rate,
        "duration": schedule.duration,
        "phases": [
            {
                "name": phase.name,
                "start": start,
                "end": end,
                "faults": describe_faults(phase.faults),
            }
            for start, end, phase in schedule.timeline
        ],
    }
    return report


#: A zone outage: the protected client keeps this much success, the surviving zones carry
#: the traffic at most this many times their share before on average (two of three zones
#: carrying it all is 1.5 x), split between them evenly within `ZONE_SIGMAS` binomial
#: standard deviations (a few hundred requests: a fixed bound per zone would judge noise).
ZONE_SUCCESS = 0.99
ZONE_LOAD = 1.6
ZONE_SIGMAS = 3.0


def _judge_zone_outage(
    report: dict[str, Any], schedule: chaos.Schedule, counter: Any, rate: float
) -> None:
    """The check the generic phase rule cannot make: the other zones absorb the lost one."""
    found = next(
        (
            (start, end, phase, fault)
            for start, end, phase in schedule.timeline
            for fault in phase.faults
            if isinstance(fault, ZoneOutage)
        ),
        None,
    )
    if found is None:
        return
    start, end, phase, fault = found
    until = judged_until(start, end)
    share = rate / len(ZONES) * (until - start)  # a zone's requests without faults
    sent = {
        zone: window(_only(counter.by_zone, zone), start, until)
        for zone in ZONES
        if zone != fault.zone
    }
    total = sum(sent.values())
    mean_load = total / len(sent) / share
    # Each surviving zone's count if the attempts spread evenly: Binomial(total, 1/k).
    p = 1.0 / len(sent)
    spread = ZONE_SIGMAS * math.sqrt(total * p * (1.0 - p))
    worst = max((abs(n - total * p) for n in sent.values()), default=0.0)
    success = report["clients"]["protected"]["phases"][phase.name]["success_rate"] or 0.0
    passed = success >= ZONE_SUCCESS and mean_load <= ZONE_LOAD and worst <= spread
    shown = ", ".join(f"zone {zone} {n / share:.2f}x" for zone, n in sent.items())
    checks = report["verdict"]["checks"]
    checks["zone_outage_absorbed"] = {
        "passed": passed,
        "detail": (
            f"protected: {success:.1%} success with zone {fault.zone} dark; surviving zones "
            f"offered {shown} their share, {mean_load:.2f}x on average, off an even split "
            f"by {worst:.0f} requests (need >= {ZONE_SUCCESS:.0%}, <= {ZONE_LOAD:g}x on "
            f"average, within {spread:.0f} = {ZONE_SIGMAS:g} sigma)"
        ),
        "loads": {zone: round(n / share, 3) for zone, n in sent.items()},
    }
    report["verdict"]["protected_wins"] = all(c["passed"] for c in checks.values())


def _only(by_zone: Counter[tuple[int, str]], zone: str) -> Counter[int]:
    return Counter({tick: n for (tick, z), n in by_zone.items() if z == zone})


def _breakers_now(transitions: list[tuple[float, str, str]]) -> str:
    """The live table's cell: "closed", or which zones' breakers are not closed."""
    last = {zone: state for _, state, zone in transitions}
    shown = [f"{zone} {state}" for zone, state in sorted(last.items()) if state != "closed"]
    return ", ".join(shown) or "closed"


class _BreakerWatcher:
    """Records the transitions of the protected client's per-replica breakers."""

    def __init__(self, recorder: Recorder, started: float, zones: dict[int, str]) -> None:
        self.recorder = recorder
        self.started = started
        self.zones = {f":{port}": zone for port, zone in zones.items()}

    def __call__(self, event: asyncres.events.Event) -> None:
        name = event.name or ""
        zone = next((z for suffix, z in self.zones.items() if name.endswith(suffix)), None)
        if zone is None:
            return
        state = {
            asyncres.events.CircuitOpened: "open",
            asyncres.events.CircuitHalfOpened: "half_open",
            asyncres.events.CircuitClosed: "closed",
        }.get(type(event))
        if state is not None:
            self.recorder.breaker.append((time.monotonic() - self.started, state, zone))


class _FaultBoard:
    """Applies the schedule's drill faults, as it switches them, to both clients' backends.

    Latency and outage go to the two fault proxies at once (synchronously, inside the
    schedule's switch); error bursts and the slow database go to the service's two backends
    over its control endpoint, from `push_forever` (the latest state wins). ``rate``
    (requests per second per client) turns an `Overload`'s share into a capacity.
    """

    def __init__(
        self,
        schedule: chaos.Schedule,
        admin: _Admin,
        proxies: list[tuple[str, Any]],
        *,
        rate: float = 40.0,
    ) -> None:
        self.rate = rate
        seen: dict[int, DrillFault] = {}
        for _, _, phase in schedule.timeline:
            for fault in phase.faults:
                if isinstance(fault, DrillFault):
                    seen.setdefault(id(fault), fault)
        self.faults = tuple(seen.values())
        self.admin = admin
        self.proxies = proxies
        self.wanted = ServiceFaults()
        self.sent = ServiceFaults()
        self.wake = anyio.Event()

    def __enter__(self) -> _FaultBoard:
        for fault in self.faults:
            if fault._on_change is not None:
                raise RuntimeError(f"{fault!r} is already switched by a running drill")
            fault._on_change = self.apply
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for fault in self.faults:
            fault._on_change = None

    def apply(self) -> None:
        on = [fault for fault in self.faults if fault.enabled]
        dark = {fault.zone for fault in on if isinstance(fault, ZoneOutage)}
        down = any(isinstance(fault, Outage) for fault in on)
        for zone, proxy in self.proxies:
            proxy.clear()
            for fault in on:
                if isinstance(fault, Latency):
                    proxy.add(chaos.LatencyToxic(fault.seconds, jitter=fault.jitter))
            proxy.enabled = not down and zone not in dark
        changes: dict[str, Any] = {}
        for fault in on:
            if isinstance(fault, ErrorBurst):
                changes |= {"error_period": fault.period, "retry_after": fault.retry_after}
            elif isinstance(fault, SlowDatabase):
                changes["slow_db"] = fault.seconds
            elif isinstance(fault, Brownout):
                changes["brownout"] = fault.rate
            elif isinstance(fault, Overload):
                changes["capacity"] = fault.share * self.rate
        service = ServiceFaults(**changes)
        if service != self.wanted:
            self.wanted = service
            self.wake.set()

    async def push(self) -> None:
        """Send the service the latest wanted faults until it has them."""
        while self.sent != self.wanted:
            wanted = self.wanted
            await self.admin.faults(wanted)
            self.sent = wanted

    async def push_forever(self) -> None:
        while True:
            await self.wake.wait()
            self.wake = anyio.Event()
            await self.push()


async def _run_schedule(schedule: chaos.Schedule, board: _FaultBoard, done: anyio.Event) -> None:
    """`Schedule.run` switches the faults; the board applies them; all off at the end."""
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(board.push_forever)
            await schedule.run()
            tg.cancel_scope.cancel()
        await board.push()
    finally:
        done.set()


async def _traffic(
    get: Get, recorder: Recorder, options: DrillOptions, started: float, rng: random.Random
) -> None:
    """Open loop: a request every 1/rate seconds, whatever happened to the earlier ones."""
    total = int(options.schedule.duration * options.rate)
    deadline = options.schedule.duration + options.grace
    async with anyio.create_task_group() as tg:
        for index in range(total):
            at = started + index / options.rate
            await anyio.sleep(max(0.0, at - time.monotonic()))
            # ``n`` numbers the request alike for both clients: the service draws its random
            # faults per (n, attempt), so both clients' n-th requests meet the same ones.
            path = f"/item/{rng.randrange(1000)}?n={index}"
            tg.start_soon(_one, get, recorder, path, started, deadline)


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
    schedule: chaos.Schedule,
    recorders: dict[str, Recorder],
    counters: dict[str, Any],
    admin: _Admin,
    started: float,
    schedule_done: anyio.Event,
) -> None:
    """Live numbers for the current phase, four times a second."""
    timeline = schedule.timeline
    while True:
        elapsed = time.monotonic() - started
        start, end, phase = next((entry for entry in timeline if elapsed < entry[1]), timeline[-1])
        try:
            backend = await admin.stats()
        except httpx.HTTPError:
            backend = {}
        snapshot: dict[str, Any] = {
            "t": elapsed,
            "phase": phase.name,
            "duration": schedule.duration,
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
                "breaker": _breakers_now(recorder.breaker),
                **{key: window(counts.get(key, Counter()), start, end) for key in PROTECTIONS},
            }
        on_tick(snapshot)
        if schedule_done.is_set() and all(r.in_flight == 0 for r in recorders.values()):
            return
        await anyio.sleep(0.25)
