"""asyncres.asgi.Deadline: the caller's budget on the server, in process and on real servers."""

from __future__ import annotations

import math
import time
from typing import Any

import anyio
import httpx
import pytest
from asgi_calls import Message, call, headers, status
from servers import running_server

import asyncres
import asyncres.httpx
from asyncres.asgi import Deadline, Health
from asyncres.testing import capture_events

pytestmark = pytest.mark.anyio


class RecordingApp:
    """Answers 200 after ``work`` seconds; records what it saw of the deadline."""

    def __init__(self, work: float = 0.0, *, stream: bool = False) -> None:
        self.work = work
        self.stream = stream
        self.calls = 0
        self.remaining: list[float | None] = []
        self.cancelled = 0
        self.finished = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":  # a real server's start-up and shutdown
            while True:
                kind = (await receive())["type"].rpartition(".")[2]
                await send({"type": f"lifespan.{kind}.complete"})
                if kind == "shutdown":
                    return
        self.calls += 1
        self.remaining.append(asyncres.remaining())
        try:
            if self.stream:
                await send({"type": "http.response.start", "status": 200, "headers": []})
                await send({"type": "http.response.body", "body": b"part", "more_body": True})
            await anyio.sleep(self.work)
        except anyio.get_cancelled_exc_class():
            self.cancelled += 1
            raise
        self.finished += 1
        if not self.stream:
            await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


# -- the budget -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ([(b"request-timeout", b"2.500")], 2.5),
        ([(b"Request-Timeout", b" 1.25 ")], 1.25),
        ([(b"grpc-timeout", b"500m")], 0.5),
        ([(b"grpc-timeout", b"2S")], 2.0),
        ([(b"GRPC-Timeout", b"2S")], 2.0),  # a name not lowercased by the server
        ([(b"accept-encoding", b"1"), (b"grpc-timeout-x", b"1S")], 30.0),  # near misses
        ([(b"grpc-timeout", b"1M")], 30.0),  # capped by the server's maximum
        ([(b"request-timeout", b"1"), (b"grpc-timeout", b"5S")], 1.0),  # ours first
        ([(b"request-timeout", b"45")], 30.0),
        ([], 30.0),
        # Malformed: ignored, the server's maximum applies.
        ([(b"request-timeout", b"soon")], 30.0),
        ([(b"request-timeout", b"nan")], 30.0),
        ([(b"request-timeout", b"inf")], 30.0),
        ([(b"request-timeout", b"1e400")], 30.0),
        ([(b"request-timeout", b"\xff")], 30.0),
        ([(b"grpc-timeout", b"5x")], 30.0),
        ([(b"grpc-timeout", b"123456789S")], 30.0),  # more than 8 digits
        ([(b"request-timeout", b"bad"), (b"grpc-timeout", b"3S")], 3.0),
    ],
)
async def test_the_app_runs_inside_the_callers_budget_capped_by_the_server(
    headers: list[tuple[bytes, bytes]], expected: float
) -> None:
    app = RecordingApp()
    messages = await call(Deadline(app), headers)
    assert status(messages) == 200
    assert app.remaining[0] == pytest.approx(expected)


async def test_routes_set_the_servers_maximum_longest_prefix_first() -> None:
    app = RecordingApp()
    deadline = Deadline(app, max_timeout=10.0, routes={"/reports": 120.0, "/reports/q": 5.0})
    await call(deadline, path="/reports/2026")
    await call(deadline, path="/reports/quick")
    await call(deadline, path="/items/1")
    await call(deadline, [(b"request-timeout", b"60")], path="/reports/2026")
    assert app.remaining == pytest.approx([120.0, 5.0, 10.0, 60.0])
    assert deadline.server_max("/reports/q1") == 5.0


async def test_a_request_that_arrives_expired_gets_504_without_running_the_app() -> None:
    app = RecordingApp()
    deadline = Deadline(app)
    for value in (b"0", b"-3", b"0.000"):
        messages = await call(deadline, [(b"request-timeout", value)])
        assert status(messages) == 504
        assert b"before the request arrived" in messages[-1]["body"]
    assert app.calls == 0
    stats = deadline.statistics()
    assert (stats.requests, stats.with_budget, stats.expired_on_arrival) == (3, 3, 3)


async def test_the_deadline_firing_cancels_the_app_and_answers_504() -> None:
    app = RecordingApp(work=10.0)
    deadline = Deadline(app, name="items")
    start = anyio.current_time()
    with capture_events() as events:
        messages = await call(deadline, [(b"request-timeout", b"0.5")])
    assert anyio.current_time() - start == pytest.approx(0.5, abs=0.01)
    assert status(messages) == 504
    assert (app.cancelled, app.finished) == (1, 0)
    assert deadline.statistics().cancelled == 1
    assert events == [asyncres.events.TimeoutExpired("items", 0.5)]


async def test_a_started_response_is_not_replaced_only_ended() -> None:
    app = RecordingApp(work=10.0, stream=True)
    messages = await call(Deadline(app), [(b"request-timeout", b"0.5")])
    assert [m["type"] for m in messages] == ["http.response.start", "http.response.body"]
    assert status(messages) == 200
    assert messages[-1]["more_body"] is True  # the body never completes: the server aborts
    assert app.cancelled == 1


async def test_a_message_before_the_start_does_not_count_as_a_started_response() -> None:
    """An extension message (Starlette's templates send ``http.response.debug`` first) has
    not started the response: the deadline still answers 504."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.debug", "info": {}})
        await anyio.sleep(10.0)

    messages = await call(Deadline(app), [(b"request-timeout", b"0.5")])
    assert [m["type"] for m in messages] == [
        "http.response.debug",
        "http.response.start",
        "http.response.body",
    ]
    assert status(messages) == 504


async def test_the_apps_own_timeout_is_its_own_error() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        with asyncres.timeout(0.1):
            await anyio.sleep(1.0)

    with pytest.raises(asyncres.TimeoutExceededError):
        await call(Deadline(app), [(b"request-timeout", b"5")])


async def test_outer_cancellation_propagates_and_is_not_counted() -> None:
    app = RecordingApp(work=10.0)
    deadline = Deadline(app)
    with anyio.move_on_after(0.2):
        await call(deadline, [(b"request-timeout", b"5")])
    assert app.cancelled == 1
    assert deadline.statistics().cancelled == 0


async def test_other_scopes_pass_through_untouched() -> None:
    seen: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["type"])
        assert asyncres.remaining() is None

    deadline = Deadline(app)
    await deadline({"type": "lifespan"}, None, None)  # type: ignore[arg-type]
    await deadline({"type": "websocket", "headers": []}, None, None)  # type: ignore[arg-type]
    assert seen == ["lifespan", "websocket"]
    assert deadline.statistics().requests == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"app": 3}, "`app` must be an ASGI application"),
        ({"max_timeout": 0}, "`max_timeout` must be > 0"),
        ({"max_timeout": math.inf}, "`max_timeout` must be finite"),
        ({"max_timeout": math.nan}, "`max_timeout`"),
        ({"routes": {"reports": 1.0}}, "`routes` keys must be path prefixes"),
        ({"routes": {"/reports": -1.0}}, r"`routes\['/reports'\]` must be > 0"),
        ({"header": ""}, "`header` must be a non-empty ASCII header name"),
        ({"header": "délai"}, "`header` must be a non-empty ASCII header name"),
        ({"grpc": "yes"}, "`grpc` must be a bool"),
        ({"listeners": [1]}, "`listeners` must be callables"),
    ],
)
def test_bad_options_raise_value_errors_naming_the_parameter(
    kwargs: dict[str, Any], message: str
) -> None:
    app = kwargs.pop("app", RecordingApp())
    with pytest.raises(ValueError, match=message):
        Deadline(app, **kwargs)


# -- real servers: uvicorn (asyncio) and hypercorn (trio) ---------------------------------------


SERVERS = [
    pytest.param(("uvicorn", "asyncio"), id="uvicorn-asyncio"),
    pytest.param(("hypercorn", "trio"), id="hypercorn-trio"),
]


@pytest.mark.real_clock
@pytest.mark.parametrize("server", SERVERS)
async def test_the_callers_deadline_reaches_the_app_end_to_end(server: tuple[Any, Any]) -> None:
    """httpx over ResilientTransport with a 2 s total: the app sees it within 50 ms."""
    kind, loop = server
    app = RecordingApp(work=0.0)
    deadline = Deadline(app)
    with running_server(deadline, kind=kind, loop=loop) as running:
        policy = asyncres.httpx.standard_policy(total_timeout=2.0, attempt_timeout=2.0)
        transport = asyncres.httpx.ResilientTransport(policy=policy)
        async with httpx.AsyncClient(transport=transport, base_url=running.url) as client:
            sent_at = time.monotonic()
            response = await client.get("/items/1")
        assert response.status_code == 200
    seen = app.remaining[0]
    assert seen is not None
    # What the client had left when it sent, minus the network hop: within 50 ms.
    assert 2.0 - (time.monotonic() - sent_at) - 0.05 <= seen <= 2.0
    assert deadline.statistics().with_budget == 1


@pytest.mark.real_clock
@pytest.mark.parametrize("server", SERVERS)
async def test_real_servers_expired_and_cancelled_requests(server: tuple[Any, Any]) -> None:
    """An expired request gets 504 without the app; a slow one is cancelled at its deadline
    and answered 504, and no task of the app is left running."""
    kind, loop = server
    app = RecordingApp(work=5.0)
    deadline = Deadline(app)
    with running_server(deadline, kind=kind, loop=loop) as running:
        async with httpx.AsyncClient(base_url=running.url) as client:
            expired = await client.get("/items/1", headers={"Request-Timeout": "0"})
            assert expired.status_code == 504
            assert app.calls == 0
            start = time.monotonic()
            slow = await client.get("/items/1", headers={"Request-Timeout": "0.3"})
            elapsed = time.monotonic() - start
            malformed = await client.get(
                "/items/1", headers={"Request-Timeout": "later", "grpc-timeout": "300m"}
            )
    assert slow.status_code == 504
    assert 0.3 <= elapsed < 1.5
    assert malformed.status_code == 504  # the grpc-timeout applied, not a 500
    assert (app.calls, app.cancelled, app.finished) == (2, 2, 0)
    stats = deadline.statistics()
    assert (stats.requests, stats.expired_on_arrival, stats.cancelled) == (3, 1, 2)


# -- Health -----------------------------------------------------------------------------------


class Dependency:
    """A health check that counts its calls; ``answer`` is what it returns (or raises)."""

    def __init__(self, answer: Any = True, delay: float = 0.01) -> None:
        self.answer = answer
        self.delay = delay
        self.calls = 0

    async def __call__(self) -> Any:
        self.calls += 1
        await anyio.sleep(self.delay)
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def body(messages: list[Message]) -> Any:
    import json

    return json.loads(b"".join(m.get("body", b"") for m in messages if m["type"].endswith("body")))


async def test_shallow_health_touches_no_dependency_and_other_paths_reach_the_app() -> None:
    db, app = Dependency(), RecordingApp()
    health = Health(app, checks={"db": db})
    messages = await call(health, path="/healthz")
    assert status(messages) == 200
    assert body(messages) == {"status": "pass"}
    assert headers(messages)[b"content-type"] == b"application/health+json"
    assert db.calls == 0
    assert status(await call(health, path="/items/1")) == 200
    assert app.calls == 1
    assert health.statistics().shallow == 1


async def test_deep_health_runs_checks_concurrently_reports_each_and_caches() -> None:
    db, cache = Dependency(delay=0.5), Dependency(answer={"status": "degraded"}, delay=0.5)
    health = Health(RecordingApp(), checks={"db": db, "cache": cache}, ttl=5.0)
    start = anyio.current_time()
    messages = await call(health, path="/readyz")
    assert anyio.current_time() - start == pytest.approx(0.5, abs=0.01)  # concurrently
    assert status(messages) == 200
    report = body(messages)
    assert report["status"] == "warn"
    assert report["checks"]["db:responseTime"][0]["status"] == "pass"
    assert report["checks"]["cache:responseTime"][0]["status"] == "warn"
    assert report["checks"]["db:responseTime"][0]["observedValue"] == pytest.approx(0.5, abs=0.01)
    await anyio.sleep(4.0)
    await call(health, path="/readyz")  # within the ttl: from the cache
    assert (db.calls, cache.calls) == (1, 1)
    await anyio.sleep(1.0)
    await call(health, path="/readyz")  # expired: a new round
    assert (db.calls, cache.calls) == (2, 2)
    stats = health.statistics()
    assert (stats.deep, stats.rounds, stats.cached) == (3, 2, 1)


@pytest.mark.parametrize("ttl", [5.0, 0.0])
async def test_a_thousand_concurrent_probes_cost_one_round(ttl: float) -> None:
    db = Dependency(delay=0.2)
    health = Health(RecordingApp(), checks={"db": db}, ttl=ttl)
    statuses: list[int] = []

    async def probe() -> None:
        statuses.append(status(await call(health, path="/readyz")))

    async with anyio.create_task_group() as tg:
        for _ in range(1000):
            tg.start_soon(probe)
    assert statuses == [200] * 1000
    assert db.calls == 1


async def test_failures_timeouts_and_fail_open_for_shared_dependencies() -> None:
    checks = {
        "disk": Dependency(answer=False),
        "db": Dependency(answer=ConnectionRefusedError("db down")),
        "search": Dependency(delay=10.0),
    }
    health = Health(RecordingApp(), checks=checks, check_timeout=0.5, ttl=0.0)
    messages = await call(health, path="/readyz")
    assert status(messages) == 503
    report = body(messages)["checks"]
    assert report["disk:responseTime"][0]["status"] == "fail"
    assert report["db:responseTime"][0]["output"] == "ConnectionRefusedError: db down"
    assert report["search:responseTime"][0]["output"] == "timed out after 0.5 s"
    # The database and the search cluster are shared by every instance: fail open on them.
    shared = Health(RecordingApp(), checks=checks, check_timeout=0.5, warn_only=["db", "search"])
    messages = await call(shared, path="/readyz")
    assert status(messages) == 503  # the disk is this instance's own: still critical
    checks["disk"] = Dependency(answer=True)
    shared = Health(RecordingApp(), checks=checks, check_timeout=0.5, warn_only=["db", "search"])
    messages = await call(shared, path="/readyz")
    assert status(messages) == 200
    assert body(messages)["status"] == "warn"


async def test_a_pool_health_value_maps_to_the_health_status() -> None:
    from asyncres.asgi._health import _status_of

    class PoolHealthLike:
        def __init__(self, status: str, ok: bool) -> None:
            self.status, self.ok = status, ok

    assert _status_of(PoolHealthLike("healthy", True)) == "pass"
    assert _status_of(PoolHealthLike("degraded", True)) == "warn"
    assert _status_of(PoolHealthLike("unhealthy", False)) == "fail"
    assert _status_of({"status": "UP"}) == "pass"
    assert _status_of(None) == "fail"
    assert _status_of("yes") == "pass"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"checks": {"": Dependency()}}, "`checks` names must be non-empty strings"),
        ({"checks": {"db": 1}}, r"`checks\['db'\]` must be an async callable"),
        ({"shallow_path": "healthz"}, "`shallow_path` must be a path"),
        ({"deep_path": "/healthz"}, "must differ"),
        ({"check_timeout": 0}, "`check_timeout` must be > 0"),
        ({"ttl": -1}, "`ttl` must be >= 0"),
        ({"ttl": math.inf}, "`ttl` must be finite"),
        ({"warn_only": ["db"]}, r"`warn_only` names checks that do not exist: \['db'\]"),
    ],
)
def test_bad_health_options_raise_value_errors(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Health(RecordingApp(), **kwargs)


@pytest.mark.real_clock
@pytest.mark.parametrize("server", SERVERS)
async def test_health_answers_fast_while_the_app_is_saturated(server: tuple[Any, Any]) -> None:
    """50 requests stuck in a slow handler: /healthz still answers in well under 50 ms."""
    kind, loop = server
    app = RecordingApp(work=2.0)
    health = Health(Deadline(app), checks={"db": Dependency()})
    with running_server(health, kind=kind, loop=loop) as running:
        limits = httpx.Limits(max_connections=100)
        async with httpx.AsyncClient(base_url=running.url, limits=limits, timeout=10) as client:
            async with anyio.create_task_group() as tg:
                for _ in range(50):
                    tg.start_soon(client.get, "/items/1")
                for _ in range(500):  # bounded: at most 5 s
                    if app.calls >= 50:
                        break
                    await anyio.sleep(0.01)
                assert app.calls == 50
                timings = []
                for _ in range(5):
                    start = time.monotonic()
                    response = await client.get("/healthz")
                    timings.append(time.monotonic() - start)
                    assert response.status_code == 200
                ready = await client.get("/readyz")
                assert ready.json()["status"] == "pass"
    assert sorted(timings)[2] < 0.05, timings
