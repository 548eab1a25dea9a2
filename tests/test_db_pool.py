"""GuardedPool logic over an in-memory driver: bounded waits, cancellation, healing, health.

Runs on asyncio and trio, on virtual clocks. The real drivers have their own test files.
"""

from __future__ import annotations

import random
import subprocess
import sys
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from fakedb import FakeConn, FakeDriver, LostConnection, PermanentError, TransientError

import asyncres
from asyncres import backoff
from asyncres.db import (
    CommitOutcomeUnknownError,
    ConnectionDiscarded,
    ConnectionFailed,
    ConnectionRecycled,
    ConnectTimeoutError,
    GuardedPool,
    PoolClosedError,
    PoolExhaustedError,
    StatementInterrupted,
)
from asyncres.db._pool import ConnectionState
from asyncres.testing import capture_events

pytestmark = pytest.mark.anyio


def make_pool(driver: FakeDriver | None = None, **options: Any) -> GuardedPool[FakeConn]:
    options.setdefault("min_size", 1)
    options.setdefault("max_size", 2)
    options.setdefault("ping_after", None)
    options.setdefault(
        "retry", asyncres.Retry(on=TransientError, max_attempts=3, backoff=backoff.Constant(0.1))
    )
    return GuardedPool(driver or FakeDriver(), **options)


async def settle(pool: GuardedPool[Any]) -> None:
    """Let background resets, opening and closing finish (virtual time, bounded)."""
    for _ in range(1000):
        await anyio.wait_all_tasks_blocked()
        stats = pool.statistics()
        if not (stats.resetting or stats.opening or pool._counts.closing) and stats.size >= min(
            stats.min_size, stats.size
        ):
            return
        await anyio.sleep(0.01)
    raise AssertionError(f"the pool did not settle: {pool!r}")


def assert_clean(pool: GuardedPool[FakeConn], driver: FakeDriver) -> None:
    """Every connection the pool owns is idle and clean; every other one is closed."""
    stats = pool.statistics()
    assert stats.in_use == 0
    assert stats.waiting == 0
    assert stats.resetting == 0
    assert stats.opening == 0
    assert stats.idle == stats.size
    assert {c.number for c in driver.open_connections} == {h.conn.number for h in pool._idle}
    assert {h.state for h in pool._idle} <= {ConnectionState.IDLE}
    for conn in driver.open_connections:
        assert not conn.in_tx
        assert conn.busy_until is None


# -- checkout and run -------------------------------------------------------------------


async def test_checkout_reuses_the_idle_connection() -> None:
    """Two checkouts in a row get the same connection; nothing else is opened."""
    driver = FakeDriver()
    async with make_pool(driver) as pool:
        async with pool.connection() as first:
            await first.execute()
        async with pool.connection() as second:
            await second.execute()
        assert first is second
        assert len(driver.connections) == 1
        assert pool.statistics().acquired == 2
    assert driver.open_connections == []


async def test_run_commits_and_returns_the_result() -> None:
    """run() begins, calls fn(conn, *args, **kwargs), commits, and returns its result."""
    driver = FakeDriver()

    async def work(conn: FakeConn, a: int, *, b: int) -> int:
        await conn.execute("INSERT")
        return a + b

    async with make_pool(driver) as pool:
        assert await pool.run(work, 1, b=2) == 3
        conn = driver.connections[0]
        assert conn.statements == ["BEGIN", "INSERT", "COMMIT"]
        assert not conn.in_tx
        assert_clean(pool, driver)


async def test_run_retries_transient_errors_after_releasing_the_connection() -> None:
    """A transient error rolls back and frees the connection before the backoff wait."""
    driver = FakeDriver()
    seen: list[tuple[int, bool]] = []
    calls = 0

    async def work(conn: FakeConn) -> str:
        nonlocal calls
        calls += 1
        await conn.execute("UPDATE")
        if calls < 3:
            raise TransientError("serialization failure")
        return "done"

    pools: list[GuardedPool[FakeConn]] = []

    def during_backoff(event: asyncres.events.Event) -> None:
        if isinstance(event, asyncres.events.RetryScheduled):
            stats = pools[0].statistics()
            seen.append((stats.in_use, driver.connections[0].in_tx))

    retry = asyncres.Retry(
        on=TransientError,
        max_attempts=3,
        backoff=backoff.Constant(0.1),
        listeners=[during_backoff],
    )
    async with make_pool(driver, retry=retry) as pool:
        pools.append(pool)
        assert await pool.run(work) == "done"
        assert calls == 3
        assert seen == [(0, False), (0, False)]
        assert driver.connections[0].rollbacks == 2
        assert_clean(pool, driver)


async def test_run_never_retries_other_errors() -> None:
    """A constraint violation propagates at once, rolled back, after one attempt."""
    driver = FakeDriver()
    calls = 0

    async def work(conn: FakeConn) -> None:
        nonlocal calls
        calls += 1
        await conn.execute("INSERT")
        raise PermanentError("duplicate key")

    async with make_pool(driver) as pool:
        with pytest.raises(PermanentError):
            await pool.run(work)
        assert calls == 1
        assert driver.connections[0].rollbacks == 1
        assert_clean(pool, driver)


async def test_default_retry_uses_the_drivers_classification() -> None:
    """Without `retry=`, run() retries what the driver calls transient, and nothing else."""
    driver = FakeDriver()
    pool = GuardedPool(driver, min_size=1, ping_after=None)
    assert pool.retry is not None
    assert pool.retry.max_attempts == 3
    assert "fake transient errors" in repr(pool.retry)
    failures = [TransientError("conflict"), TransientError("conflict")]

    async def work(conn: FakeConn) -> str:
        if failures:
            raise failures.pop()
        return "ok"

    async with pool:
        assert await pool.run(work) == "ok"
        with pytest.raises(PermanentError):
            await pool.run(_raise, PermanentError("no"))


async def _raise(conn: FakeConn, error: Exception) -> None:
    raise error


async def test_run_without_retry_makes_one_attempt() -> None:
    """retry=None: a transient error propagates after one attempt."""
    async with make_pool(retry=None) as pool:
        with pytest.raises(TransientError):
            await pool.run(_raise, TransientError("conflict"))


async def test_connection_lost_during_commit_is_reported_and_not_retried() -> None:
    """A connection that dies during COMMIT raises CommitOutcomeUnknownError, no retry."""
    driver = FakeDriver()
    calls = 0

    async def work(conn: FakeConn) -> None:
        nonlocal calls
        calls += 1
        driver.commit_error = LostConnection("server closed the connection")

    retry = asyncres.Retry(on=ConnectionError, max_attempts=3, backoff=backoff.Constant(0.1))
    async with make_pool(driver, retry=retry) as pool:
        with capture_events() as events, pytest.raises(CommitOutcomeUnknownError) as info:
            await pool.run(work)
        assert isinstance(info.value.__cause__, LostConnection)
        assert calls == 1
        assert [e.reason for e in events if isinstance(e, ConnectionDiscarded)] == ["broken"]


async def test_transaction_left_open_is_rolled_back_on_release() -> None:
    """A checkout that leaves a transaction open gets it rolled back before reuse."""
    driver = FakeDriver()
    async with make_pool(driver) as pool:
        async with pool.connection() as conn:
            await conn.execute("BEGIN")
            conn.in_tx = True
        assert conn.rollbacks == 1
        assert_clean(pool, driver)


# -- bounded waits ------------------------------------------------------------------------


async def test_acquire_timeout_raises_pool_exhausted() -> None:
    """A caller that waits acquire_timeout for a connection gets PoolExhaustedError."""
    async with make_pool(max_size=1, acquire_timeout=0.5) as pool, pool.connection():
        start = anyio.current_time()
        with capture_events() as events, pytest.raises(PoolExhaustedError) as info:
            async with pool.connection():
                pass
        assert anyio.current_time() - start == pytest.approx(0.5, abs=0.01)
        assert info.value.reason == "queue_timeout"
        assert info.value.waited == pytest.approx(0.5, abs=0.01)
        assert isinstance(info.value, asyncres.RejectedError)
        assert [e.reason for e in events if isinstance(e, asyncres.events.CallRejected)] == [
            "queue_timeout"
        ]
        stats = pool.statistics()
        assert (stats.timed_out, stats.waiting) == (1, 0)


async def test_a_full_queue_fails_fast() -> None:
    """Beyond max_queued waiters, a caller is refused at once: no wait at all."""
    async with make_pool(max_size=1, max_queued=1, acquire_timeout=5.0) as pool:
        async with anyio.create_task_group() as tg, pool.connection():

            async def waiter() -> None:
                async with pool.connection():
                    pass

            tg.start_soon(waiter)
            await anyio.wait_all_tasks_blocked()
            start = anyio.current_time()
            with pytest.raises(PoolExhaustedError) as info:
                async with pool.connection():
                    pass
            assert anyio.current_time() == start
            assert info.value.reason == "queue_full"
            assert (info.value.max_size, info.value.max_queued) == (1, 1)
        assert pool.statistics().rejected == 1


async def test_max_queued_zero_never_queues_when_all_connections_are_busy() -> None:
    """max_queued=0: with every connection busy, callers are refused immediately."""
    async with make_pool(max_size=1, max_queued=0) as pool, pool.connection():
        with pytest.raises(PoolExhaustedError):
            async with pool.connection():
                pass


async def test_callers_may_wait_for_connections_being_opened() -> None:
    """Below max_size, callers wait for new connections even with max_queued=0."""
    driver = FakeDriver()
    driver.connect_delay = 0.1
    async with make_pool(driver, min_size=0, max_size=3, max_queued=0) as pool:
        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(_hold, pool, 1.0)
        assert len(driver.connections) == 3
        assert pool.statistics().max_wait == pytest.approx(0.1, abs=0.01)


async def _hold(pool: GuardedPool[FakeConn], seconds: float) -> None:
    async with pool.connection() as conn:
        await conn.execute(duration=seconds)


async def test_acquire_wait_is_bounded_by_the_callers_deadline() -> None:
    """A waiter whose deadline fires leaves the queue; the deadline's own error propagates."""
    async with make_pool(max_size=1, acquire_timeout=10.0) as pool, pool.connection():
        start = anyio.current_time()
        with pytest.raises(asyncres.TimeoutExceededError), asyncres.timeout(0.3):
            async with pool.connection():
                pass
        assert anyio.current_time() - start == pytest.approx(0.3, abs=0.01)
        assert pool.statistics().waiting == 0


async def test_waiters_are_served_first_come_first_served() -> None:
    """Released connections go to waiters in arrival order."""
    order: list[int] = []
    async with make_pool(max_size=1) as pool:
        async with anyio.create_task_group() as tg:
            async with pool.connection():

                async def waiter(n: int) -> None:
                    async with pool.connection():
                        order.append(n)

                for n in range(4):
                    tg.start_soon(waiter, n)
                    await anyio.wait_all_tasks_blocked()
        assert order == [0, 1, 2, 3]


# -- cancellation -----------------------------------------------------------------------


async def test_cancelled_waiter_leaves_no_trace() -> None:
    """A waiter cancelled while queued is removed; the connection later goes idle."""
    driver = FakeDriver()
    async with make_pool(driver, max_size=1) as pool:
        async with anyio.create_task_group() as tg:
            async with pool.connection():
                scope = anyio.CancelScope()

                async def waiter() -> None:
                    with scope:
                        async with pool.connection():
                            raise AssertionError("never reached")

                tg.start_soon(waiter)
                await anyio.wait_all_tasks_blocked()
                assert pool.statistics().waiting == 1
                scope.cancel()
                await anyio.wait_all_tasks_blocked()
                assert pool.statistics().waiting == 0
        assert_clean(pool, driver)


async def test_waiter_cancelled_after_the_handoff_returns_the_connection() -> None:
    """A connection handed to a waiter that is cancelled before it resumes goes back."""
    driver = FakeDriver()
    async with make_pool(driver, max_size=1) as pool:
        scope = anyio.CancelScope()
        got: list[FakeConn] = []

        async def waiter() -> None:
            with scope:
                async with pool.connection() as conn:
                    got.append(conn)

        async with anyio.create_task_group() as tg:
            checkout = pool.connection()
            await checkout.__aenter__()
            tg.start_soon(waiter)
            await anyio.wait_all_tasks_blocked()
            # In one step: the waiter is cancelled, then handed the connection before it
            # gets to run again (it must give it back).
            scope.cancel()
            await checkout.__aexit__(None, None, None)
        assert got == []
        assert_clean(pool, driver)
        assert pool.statistics().idle == 1


async def test_cancel_mid_statement_returns_at_once_and_resets_in_background() -> None:
    """A timed-out caller leaves immediately; the pool interrupts, rolls back, reuses."""
    driver = FakeDriver()
    async with make_pool(driver, max_size=1) as pool:
        start = anyio.current_time()
        with capture_events() as events:
            with pytest.raises(asyncres.TimeoutExceededError), asyncres.timeout(0.2):
                async with pool.connection() as conn:
                    await conn.execute("BEGIN")
                    conn.in_tx = True
                    await conn.execute("SLOW", duration=100.0)
            assert anyio.current_time() - start == pytest.approx(0.2, abs=0.01)
            await settle(pool)
        assert conn.interrupts == 1
        assert conn.rollbacks == 1
        assert [type(e) for e in events if isinstance(e, StatementInterrupted)] == [
            StatementInterrupted
        ]
        assert pool.statistics().interrupted == 1
        assert_clean(pool, driver)
        async with pool.connection() as again:
            assert again is conn  # healthy, reused


async def test_cancel_mid_transaction_in_run_rolls_back() -> None:
    """Cancelling run() mid-transaction never commits and leaves the connection clean."""
    driver = FakeDriver()

    async def work(conn: FakeConn) -> None:
        await conn.execute("INSERT")
        await conn.execute("SLOW", duration=10.0)

    async with make_pool(driver) as pool:
        with anyio.move_on_after(1.0):
            await pool.run(work)
        await settle(pool)
        conn = driver.connections[0]
        assert "COMMIT" not in conn.statements
        assert conn.rollbacks == 1
        assert_clean(pool, driver)


async def test_reset_that_overruns_discards_and_replaces_the_connection() -> None:
    """A connection that cannot be rolled back within reset_timeout is discarded."""
    driver = FakeDriver()
    driver.reset_delay = 10.0
    async with make_pool(driver, reset_timeout=1.0) as pool:
        with capture_events() as events:
            with anyio.move_on_after(0.1):
                async with pool.connection() as conn:
                    await conn.execute(duration=5.0)
            await settle(pool)
            await anyio.sleep(0.1)
            await settle(pool)
        assert conn.closed
        assert [e.reason for e in events if isinstance(e, ConnectionDiscarded)] == ["reset_failed"]
        assert pool.statistics().size == 1  # min_size kept
        assert_clean(pool, driver)


async def test_cancelled_during_inline_rollback_moves_the_reset_to_background() -> None:
    """A caller cancelled while its error's rollback runs still leaks nothing."""
    driver = FakeDriver()
    driver.reset_delay = 1.0
    async with make_pool(driver) as pool:
        with anyio.move_on_after(0.5):
            await pool.run(_raise, PermanentError("x"))
        await settle(pool)
        assert_clean(pool, driver)
        assert driver.connections[0].rollbacks == 1


# -- healing ------------------------------------------------------------------------------


async def test_connection_errors_discard_and_min_size_is_restored() -> None:
    """A connection-level error throws the connection away; maintenance replaces it."""
    driver = FakeDriver()
    async with make_pool(driver, min_size=1) as pool:
        with capture_events() as events, pytest.raises(LostConnection):
            async with pool.connection() as conn:
                conn.closed = True
                await conn.execute()
        await settle(pool)
        assert [e.reason for e in events if isinstance(e, ConnectionDiscarded)] == ["broken"]
        assert len(driver.connections) == 2
        assert pool.statistics().size == 1
        assert_clean(pool, driver)


async def test_maintenance_backs_off_while_the_database_refuses_connections() -> None:
    """min_size is restored after an outage, with backoff between attempts."""
    driver = FakeDriver()
    async with make_pool(driver, min_size=2, max_size=2) as pool:
        driver.connect_failures = 4
        with capture_events() as events:
            for conn in list(driver.connections):
                conn.closed = True
            for _ in range(2):
                with pytest.raises(LostConnection):
                    async with pool.connection() as conn:
                        await conn.execute()
            for _ in range(200):
                await anyio.sleep(0.5)
                if pool.statistics().size == 2 and not pool.statistics().opening:
                    break
        failed = [e for e in events if isinstance(e, ConnectionFailed)]
        assert len(failed) == 4
        assert all(e.background for e in failed)
        assert pool.statistics().size == 2
        assert_clean(pool, driver)


async def test_a_waiter_gets_the_connect_error_instead_of_hanging() -> None:
    """When no connection can be opened, the waiting caller gets the error at once."""
    driver = FakeDriver()
    async with make_pool(driver, min_size=0, max_size=1, acquire_timeout=30.0) as pool:
        driver.connect_error = LostConnection("connection refused")
        start = anyio.current_time()
        with capture_events() as events, pytest.raises(LostConnection):
            async with pool.connection():
                pass
        assert anyio.current_time() == start
        assert [e.background for e in events if isinstance(e, ConnectionFailed)] == [False]
        health = await pool.health()
        assert health.status == "unhealthy"
        assert "cannot connect" in health.reason


async def test_slow_connects_time_out_as_connection_errors() -> None:
    """A connect that hangs fails after connect_timeout with ConnectTimeoutError."""
    driver = FakeDriver()
    async with make_pool(driver, min_size=0, connect_timeout=2.0) as pool:
        driver.connect_delay = 100.0
        with pytest.raises(ConnectTimeoutError) as info:
            async with pool.connection():
                pass
        assert isinstance(info.value, ConnectionError)
        assert isinstance(info.value, TimeoutError)
        assert pool._classify(info.value) == 3
        assert asyncres.db.is_transient(info.value)
        assert asyncres.db.is_connection_error(info.value)


async def test_opening_the_pool_fails_when_the_database_is_unreachable() -> None:
    """`async with pool` raises the connect error rather than starting half-open."""
    driver = FakeDriver()
    driver.connect_error = LostConnection("connection refused")
    with pytest.raises(LostConnection):
        async with make_pool(driver, min_size=2):
            raise AssertionError("not reached")
    assert driver.open_connections == []


async def test_idle_connections_are_pinged_before_reuse() -> None:
    """A connection idle longer than ping_after is pinged; a dead one is replaced silently."""
    driver = FakeDriver()
    async with make_pool(driver, ping_after=1.0) as pool:
        async with pool.connection() as conn:
            pass
        async with pool.connection():
            pass
        assert conn.pings == 0  # recently used: no ping
        await anyio.sleep(2.0)
        async with pool.connection() as again:
            pass
        assert again is conn
        assert conn.pings == 1
        await anyio.sleep(2.0)
        driver.ping_error = LostConnection("gone")
        with capture_events() as events:
            async with pool.connection() as fresh:
                assert fresh is not conn
        assert conn.closed
        assert [e.reason for e in events if isinstance(e, ConnectionDiscarded)] == ["ping_failed"]


async def test_a_ping_that_hangs_is_bounded_by_health_timeout() -> None:
    """A pre-ping that gets no answer within health_timeout discards the connection."""
    driver = FakeDriver()
    async with make_pool(driver, ping_after=0.5, health_timeout=0.2) as pool:
        await anyio.sleep(1.0)
        driver.ping_delay = 50.0
        start = anyio.current_time()
        async with pool.connection() as conn:
            assert conn is not driver.connections[0]
        assert anyio.current_time() - start < 0.5


async def test_idle_connections_above_min_size_are_closed_after_max_idle() -> None:
    """After a burst, the pool shrinks back to min_size once connections sit idle."""
    driver = FakeDriver()
    async with make_pool(driver, min_size=1, max_size=4, max_idle=10.0) as pool:
        async with anyio.create_task_group() as tg:
            for _ in range(4):
                tg.start_soon(_hold, pool, 1.0)
        assert pool.statistics().size == 4
        with capture_events() as events:
            await anyio.sleep(45.0)
            await settle(pool)
        assert pool.statistics().size == 1
        assert [e.reason for e in events if isinstance(e, ConnectionRecycled)] == ["idle"] * 3
        assert len(driver.open_connections) == 1


async def test_connections_are_recycled_after_max_lifetime() -> None:
    """Old connections are replaced, idle or in use, without disturbing callers."""
    driver = FakeDriver()
    async with make_pool(
        driver, min_size=1, max_size=1, max_lifetime=60.0, statement_timeout=None
    ) as pool:
        first = driver.connections[0]
        async with pool.connection() as conn:
            await conn.execute(duration=70.0)  # outlives its lifetime while in use
        await settle(pool)
        assert first.closed
        async with pool.connection() as conn:
            assert conn is not first
        await anyio.sleep(100.0)  # and now idle past its lifetime
        await settle(pool)
        assert driver.connections[1].closed
        assert pool.statistics().size == 1


# -- statement limits -----------------------------------------------------------------------


async def test_statement_limit_follows_the_remaining_deadline() -> None:
    """Each checkout tells the driver how much of the caller's deadline is left."""
    driver = FakeDriver()

    async def work(conn: FakeConn) -> None:
        await conn.execute()

    async with make_pool(driver, statement_timeout=30.0) as pool:
        assert driver.statement_timeout == 30.0
        async with pool.connection():
            pass
        with asyncres.timeout(2.0):
            async with pool.connection():
                pass
            await anyio.sleep(0.5)
            await pool.run(work)
        assert driver.prepared[0] is None
        assert driver.prepared[1] == pytest.approx(2.0, abs=0.01)
        assert driver.began == [pytest.approx(1.5, abs=0.01)]


# -- circuit breaker ------------------------------------------------------------------------


async def test_the_default_breaker_opens_on_connection_failures_and_recovers() -> None:
    """Five connection failures open the circuit: callers fail fast without touching the
    database; once it is back, a probe closes the circuit again."""
    driver = FakeDriver()
    async with make_pool(driver, min_size=0, max_size=2, retry=None) as pool:
        assert isinstance(pool.breaker, asyncres.CircuitBreaker)
        driver.connect_error = LostConnection("connection refused")
        with capture_events() as events:
            for _ in range(5):
                with pytest.raises(LostConnection):
                    async with pool.connection():
                        pass
            attempts = len(driver.connections) + pool.statistics().open_failures
            for _ in range(10):
                with pytest.raises(asyncres.CircuitOpenError) as info:
                    async with pool.connection():
                        pass
            assert len(driver.connections) + pool.statistics().open_failures == attempts
            assert 0.0 < info.value.retry_after <= 1.0
            assert (await pool.health()).status == "unhealthy"
            driver.connect_error = None
            await anyio.sleep(info.value.retry_after)
            async with pool.connection() as conn:  # the probe
                await conn.execute()
            async with pool.connection() as conn:
                await conn.execute()
        kinds = [type(e).__name__ for e in events if isinstance(e, asyncres.events.Event)]
        assert kinds.count("CircuitOpened") == 1
        assert kinds.count("CircuitHalfOpened") == 1
        assert kinds.count("CircuitClosed") == 1
        assert (await pool.health()).breaker == "closed"


async def test_other_errors_never_trip_the_breaker() -> None:
    """Constraint violations, conflicts, timeouts and cancellations leave it closed."""
    async with make_pool(retry=None) as pool:
        for _ in range(10):
            with pytest.raises(PermanentError):
                await pool.run(_raise, PermanentError("duplicate key"))
            with pytest.raises(TransientError):
                await pool.run(_raise, TransientError("deadlock"))
            async with anyio.create_task_group() as tg:
                tg.start_soon(_hold, pool, 1.0)
                await anyio.wait_all_tasks_blocked()
                tg.cancel_scope.cancel()
        assert pool.breaker is not None
        assert pool.breaker.state is asyncres.CircuitState.CLOSED  # type: ignore[attr-defined]


async def test_run_does_not_retry_an_open_circuit() -> None:
    """With the circuit open, run() fails at once with CircuitOpenError."""
    driver = FakeDriver()
    breaker = asyncres.CircuitBreaker(failure_threshold=1, recovery_time=30.0)
    async with make_pool(driver, min_size=0, breaker=breaker) as pool:
        driver.connect_error = LostConnection("refused")
        with pytest.raises(LostConnection):
            await pool.run(_raise, PermanentError("never reached"))
        start = anyio.current_time()
        with pytest.raises(asyncres.CircuitOpenError):
            await pool.run(_raise, PermanentError("never reached"))
        assert anyio.current_time() == start


async def test_any_breaker_object_can_be_plugged_in() -> None:
    """`breaker=` takes any object with the CircuitBreaker's `async with` face."""
    seen: list[str] = []

    class Recorder:
        async def __aenter__(self) -> None:
            seen.append("enter")

        async def __aexit__(self, *exc: object) -> None:
            seen.append(f"exit {type(exc[1]).__name__}")

    async with make_pool(breaker=Recorder()) as pool:
        async with pool.connection():
            pass
        with pytest.raises(PermanentError):
            await pool.run(_raise, PermanentError("x"))
        assert (await pool.health()).breaker is None
    assert seen == ["enter", "exit NoneType", "enter", "exit PermanentError"]


async def test_no_breaker_at_all() -> None:
    """breaker=None: connection failures reach every caller, nothing opens."""
    driver = FakeDriver()
    async with make_pool(driver, min_size=0, breaker=None, retry=None) as pool:
        driver.connect_error = LostConnection("refused")
        for _ in range(10):
            with pytest.raises(LostConnection):
                async with pool.connection():
                    pass


# -- health ---------------------------------------------------------------------------------


async def test_shallow_health_reflects_the_pools_state() -> None:
    """healthy when idle, degraded when callers wait, unhealthy once closed."""
    async with make_pool(max_size=1) as pool:
        health = await pool.health()
        assert (health.status, health.ok, health.deep) == ("healthy", True, False)
        async with anyio.create_task_group() as tg, pool.connection():
            tg.start_soon(_hold, pool, 0.0)
            await anyio.wait_all_tasks_blocked()
            health = await pool.health()
            assert health.status == "degraded"
            assert health.ok
            assert health.statistics.waiting == 1
    health = await pool.health()
    assert (health.status, health.ok) == ("unhealthy", False)
    assert health.as_dict()["pool"]["size"] == 0


async def test_deep_health_is_cached_and_shared() -> None:
    """Concurrent deep checks share one round trip; results are reused for health_ttl."""
    driver = FakeDriver()
    driver.ping_delay = 0.05
    async with make_pool(driver, health_ttl=2.0) as pool:
        conn = driver.connections[0]
        results = []

        async def check() -> None:
            results.append(await pool.health(deep=True))

        async with anyio.create_task_group() as tg:
            for _ in range(5):
                tg.start_soon(check)
        assert conn.pings == 1
        assert [r.cached for r in results].count(False) == 1
        assert all(r.status == "healthy" and r.deep for r in results)
        assert results[0].latency == pytest.approx(0.05, abs=0.01)
        await anyio.sleep(1.0)
        assert (await pool.health(deep=True)).cached
        assert conn.pings == 1
        await anyio.sleep(1.5)
        assert not (await pool.health(deep=True)).cached
        assert conn.pings == 2
        assert pool.statistics().in_use == 0


async def test_deep_health_is_time_bounded() -> None:
    """A deep check that gets no answer reports unhealthy after health_timeout."""
    driver = FakeDriver()
    async with make_pool(driver, health_timeout=0.5, health_ttl=0.0) as pool:
        driver.ping_delay = 60.0
        start = anyio.current_time()
        health = await pool.health(deep=True)
        assert anyio.current_time() - start == pytest.approx(0.5, abs=0.01)
        assert health.status == "unhealthy"
        assert "health_timeout" in (health.error or "")
        await settle(pool)
        driver.ping_delay = 0.0
        assert (await pool.health(deep=True)).status == "healthy"


async def test_deep_health_of_a_saturated_pool_is_degraded() -> None:
    """With every connection busy, the deep check reports degraded, not a hang."""
    async with make_pool(max_size=1, max_queued=0, health_ttl=0.0) as pool, pool.connection():
        health = await pool.health(deep=True)
        assert health.status == "degraded"
        assert "PoolExhaustedError" in (health.error or "")


# -- closing --------------------------------------------------------------------------------


async def test_closing_fails_waiters_and_closes_every_connection() -> None:
    """On exit, waiters get PoolClosedError and every connection is closed."""
    driver = FakeDriver()
    errors: list[BaseException] = []
    pool = make_pool(driver, max_size=1)
    async with anyio.create_task_group() as tg:
        async with pool:
            checkout = pool.connection()
            await checkout.__aenter__()

            async def waiter() -> None:
                try:
                    async with pool.connection():
                        pass
                except PoolClosedError as exc:
                    errors.append(exc)

            tg.start_soon(waiter)
            await anyio.wait_all_tasks_blocked()

            async def release_later() -> None:
                await anyio.sleep(1.0)
                await checkout.__aexit__(None, None, None)

            tg.start_soon(release_later)
    assert len(errors) == 1
    assert driver.open_connections == []
    with pytest.raises(PoolClosedError):
        async with pool.connection():
            pass
    with pytest.raises(RuntimeError, match="only once"):
        async with pool:
            pass


async def test_a_connection_returned_after_close_timeout_is_closed() -> None:
    """A checkout that outlives the pool's close_timeout is closed when it comes back."""
    driver = FakeDriver()
    pool = make_pool(driver, close_timeout=1.0)
    async with anyio.create_task_group() as tg:
        async with pool:

            async def straggler() -> None:
                async with pool.connection() as conn:
                    await conn.execute(duration=5.0)

            tg.start_soon(straggler)
            await anyio.wait_all_tasks_blocked()
        assert len(driver.open_connections) == 1  # still in use
    assert driver.open_connections == []
    assert pool.statistics().size == 0


# -- the 10,000 operations -----------------------------------------------------------------


async def test_ten_thousand_randomly_cancelled_operations_leak_nothing() -> None:
    """After 10,000 random operations, cancelled or timed out anywhere, the pool is whole."""
    rng = random.Random(20240611)
    driver = FakeDriver()
    outcomes = dict.fromkeys(["ok", "cancelled", "timeout", "exhausted", "error"], 0)
    outcomes["server_timeout"] = 0

    async def work(conn: FakeConn, duration: float, fail: bool) -> None:
        await conn.execute("INSERT", duration=duration)
        if fail:
            raise PermanentError("constraint")

    async def one(pool: GuardedPool[FakeConn], seed: int) -> None:
        local = random.Random(seed)
        duration = local.choice([0.0, 0.001, 0.01, 0.05, 0.2])
        fail = local.random() < 0.1
        limit = local.choice([0.0, 0.002, 0.02, 0.1, 1.0])
        kind = local.random()
        try:
            if kind < 0.4:
                with asyncres.timeout(limit):
                    await pool.run(work, duration, fail)
            elif kind < 0.8:
                with anyio.CancelScope() as scope:
                    scope.deadline = anyio.current_time() + limit
                    async with pool.connection() as conn:
                        await conn.execute("BEGIN")
                        conn.in_tx = local.random() < 0.5
                        await conn.execute("SELECT", duration=duration)
                    outcomes["ok"] += 1
                if scope.cancelled_caught:
                    outcomes["cancelled"] += 1
                return
            else:
                await pool.run(work, duration, fail)
            outcomes["ok"] += 1
        except asyncres.TimeoutExceededError:
            outcomes["timeout"] += 1
        except PoolExhaustedError:
            outcomes["exhausted"] += 1
            await anyio.sleep(local.uniform(0.0, 0.05))  # a client backing off
        except PermanentError:
            outcomes["error"] += 1
        except TimeoutError:
            outcomes["server_timeout"] += 1  # the fake server's own statement limit

    async with make_pool(
        driver, min_size=8, max_size=8, max_queued=16, acquire_timeout=0.05
    ) as pool:
        seeds = iter(range(10_000))
        async with anyio.create_task_group() as tg:

            async def worker() -> None:
                for seed in seeds:
                    await one(pool, rng.randrange(1 << 30) ^ seed)

            for _ in range(30):
                tg.start_soon(worker)
        await settle(pool)
        stats = pool.statistics()
        assert sum(outcomes.values()) >= 10_000
        assert all(outcomes[k] > 100 for k in outcomes if k != "server_timeout"), outcomes
        assert stats.interrupted > 100
        assert stats.size == 8
        assert_clean(pool, driver)
    assert driver.open_connections == []


# -- configuration --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("min_size", -1),
        ("max_size", 0),
        ("acquire_timeout", -1.0),
        ("max_queued", -1),
        ("statement_timeout", 0.0),
        ("connect_timeout", 0.0),
        ("ping_after", -1.0),
        ("health_timeout", 0.0),
        ("health_ttl", -1.0),
        ("max_idle", 0.0),
        ("max_lifetime", 0.0),
        ("reset_timeout", float("inf")),
        ("close_timeout", float("nan")),
        ("retry", "yes"),
        ("breaker", object()),
    ],
)
def test_bad_options_raise_value_error_naming_the_parameter(option: str, value: Any) -> None:
    """Every option is validated at construction, the message naming it."""
    with pytest.raises(ValueError, match=f"`{option}`"):
        GuardedPool(FakeDriver(), **{option: value})


def test_min_size_above_max_size_is_refused() -> None:
    """min_size may not exceed max_size."""
    with pytest.raises(ValueError, match="`min_size` must be <= `max_size`"):
        GuardedPool(FakeDriver(), min_size=5, max_size=2)


def test_defaults_and_repr() -> None:
    """The documented defaults, and a readable repr."""
    pool = GuardedPool(FakeDriver(), name="orders")
    assert (pool.min_size, pool.max_size, pool.max_queued) == (1, 10, 200)
    assert (pool.acquire_timeout, pool.statement_timeout, pool.connect_timeout) == (5.0, 30.0, 5.0)
    assert (pool.ping_after, pool.health_timeout, pool.health_ttl) == (1.0, 1.0, 1.0)
    assert (pool.max_idle, pool.max_lifetime, pool.reset_timeout) == (300.0, 1800.0, 2.0)
    assert repr(pool) == (
        "<GuardedPool 'orders' fake new size=0 idle=0 in_use=0 waiting=0 min_size=1 max_size=10>"
    )


CONFIGURATION = {
    "min_size": 2,
    "max_size": 4,
    "acquire_timeout": 3.0,
    "max_queued": 7,
    "statement_timeout": 9.0,
    "connect_timeout": 4.0,
    "retry": None,
    "breaker": None,
    "ping_after": 0.5,
    "health_timeout": 0.25,
    "health_ttl": 2.0,
    "max_idle": 60.0,
    "max_lifetime": 600.0,
    "reset_timeout": 1.5,
    "close_timeout": 3.5,
    "name": "ro",
}


@pytest.mark.parametrize("option", sorted(CONFIGURATION))
def test_configuration_is_read_only(option: str) -> None:
    """Assigning any configuration attribute raises AttributeError naming it; reading works."""
    pool = GuardedPool(FakeDriver(), **CONFIGURATION)  # type: ignore[arg-type]
    assert getattr(pool, option) == CONFIGURATION[option]
    with pytest.raises(AttributeError, match=f"GuardedPool.{option} is read-only"):
        setattr(pool, option, CONFIGURATION[option])
    with pytest.raises(AttributeError, match=f"GuardedPool.{option} cannot be deleted"):
        delattr(pool, option)
    assert getattr(pool, option) == CONFIGURATION[option]


async def test_assigning_max_size_is_refused_and_the_limit_stays() -> None:
    """A refused assignment changes nothing: the pool still opens at most max_size connections."""
    driver = FakeDriver()
    async with make_pool(driver, min_size=0, max_size=1, max_queued=0) as pool:
        with pytest.raises(AttributeError, match="max_size"):
            pool.max_size = 5  # type: ignore[misc]
        async with pool.connection():
            with pytest.raises(PoolExhaustedError, match="queue_full"):
                async with pool.connection():
                    pass
        assert len(driver.connections) == 1
        await settle(pool)
        assert_clean(pool, driver)


def test_recovery_timeout_is_a_deprecated_alias_of_reset_timeout() -> None:
    """The old option and attribute name still work, with a DeprecationWarning."""
    with pytest.warns(DeprecationWarning, match="reset_timeout"):
        pool = GuardedPool(FakeDriver(), recovery_timeout=0.75)
    assert pool.reset_timeout == 0.75
    with pytest.warns(DeprecationWarning, match="reset_timeout"):
        assert pool.recovery_timeout == 0.75
    deprecated = pytest.warns(DeprecationWarning, match="recovery_timeout")
    with deprecated, pytest.raises(ValueError, match="`reset_timeout`"):
        GuardedPool(FakeDriver(), reset_timeout=1.0, recovery_timeout=0.75)
    deprecated = pytest.warns(DeprecationWarning, match="recovery_timeout")
    with deprecated, pytest.raises(ValueError, match="`reset_timeout`"):
        GuardedPool(FakeDriver(), recovery_timeout=-1.0)


async def test_statistics_recovering_is_a_deprecated_alias_of_resetting() -> None:
    """PoolStatistics.recovering still reads the resetting gauge, with a DeprecationWarning."""
    driver = FakeDriver()
    driver.reset_delay = 5.0
    async with make_pool(driver, max_size=1) as pool:
        with anyio.move_on_after(1.0):
            async with pool.connection() as conn:
                await conn.execute("SLOW", duration=10.0)
        stats = pool.statistics()
        assert stats.resetting == 1
        with pytest.warns(DeprecationWarning, match="resetting"):
            assert stats.recovering == 1
        await settle(pool)
        assert_clean(pool, driver)


class OldNamesDriver(FakeDriver):
    """A driver written against the old method names (needs_recovery / recover)."""

    def __getattribute__(self, name: str) -> Any:
        if name in ("needs_reset", "reset"):
            raise AttributeError(name)
        return super().__getattribute__(name)

    def needs_recovery(self, conn: FakeConn) -> bool:
        return FakeDriver.needs_reset(self, conn)

    async def recover(self, conn: FakeConn, *, abandoned: bool) -> bool:
        return await FakeDriver.reset(self, conn, abandoned=abandoned)


async def test_a_driver_with_the_old_method_names_still_works() -> None:
    """needs_recovery()/recover() drivers are adapted, with a DeprecationWarning."""
    driver = OldNamesDriver()
    with pytest.warns(DeprecationWarning, match="needs_reset"):
        pool = make_pool(driver, max_size=1)
    async with pool:
        with anyio.move_on_after(1.0):
            async with pool.connection() as conn:
                await conn.execute("SLOW", duration=10.0)
        await settle(pool)
        assert pool.statistics().interrupted == 1
        assert driver.connections[0].interrupts == 1
        async with pool.connection() as conn:
            conn.in_tx = True  # a transaction left open: reset inline on release
        assert not driver.connections[0].in_tx
        assert driver.connections[0].rollbacks == 1
        assert_clean(pool, driver)


def test_errors_pickle_and_say_what_happened() -> None:
    """The pool's errors survive pickling and carry their details."""
    import pickle

    exhausted = PoolExhaustedError(
        "p", max_size=2, max_queued=3, reason="queue_timeout", waited=1.5
    )
    copy = pickle.loads(pickle.dumps(exhausted))
    assert (copy.name, copy.max_size, copy.max_queued, copy.reason, copy.waited) == (
        "p",
        2,
        3,
        "queue_timeout",
        1.5,
    )
    assert "queue_timeout" in str(copy)
    assert isinstance(pickle.loads(pickle.dumps(PoolClosedError("p"))), PoolClosedError)
    assert pickle.loads(pickle.dumps(ConnectTimeoutError(2.0))).timeout == 2.0


def test_import_does_not_import_the_drivers() -> None:
    """`import asyncres.db` imports neither aiosqlite nor asyncpg."""
    code = (
        "import sys, asyncres, asyncres.db\n"
        "print(sorted({'aiosqlite', 'asyncpg', 'sqlite3'} & set(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize(("factory", "extra"), [("sqlite", "sqlite"), ("postgres", "postgres")])
async def test_a_missing_driver_names_the_extra_to_install(
    factory: str, extra: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Opening a pool without its driver installed says which extra to install."""
    module = {"sqlite": "aiosqlite", "postgres": "asyncpg"}[factory]
    monkeypatch.setitem(sys.modules, module, None)
    pool = getattr(asyncres.db, factory)("x.db" if factory == "sqlite" else "postgresql://")
    with pytest.raises(ImportError, match=rf"asyncres\[{extra}\]"):
        async with pool:
            pass


@pytest.mark.parametrize("anyio_backend", ["trio"])
@pytest.mark.parametrize("factory", ["sqlite", "postgres"])
async def test_the_real_drivers_refuse_trio_clearly(factory: str) -> None:
    """aiosqlite and asyncpg are asyncio-only: opening under trio says so."""
    pool = getattr(asyncres.db, factory)("x.db" if factory == "sqlite" else "postgresql://")
    with pytest.raises(RuntimeError, match="asyncio only"):
        async with pool:
            pass


def test_public_names_live_in_asyncres_db() -> None:
    """asyncres.db's __all__ is sorted; its classes say they live in asyncres.db."""
    import inspect

    names = asyncres.db.__all__
    assert list(names) == sorted(names)
    for name in names:
        value = getattr(asyncres.db, name)
        assert inspect.getdoc(value), name
        if inspect.isclass(value):
            assert value.__module__ == "asyncres.db", name
