"""Four worker processes (two on asyncio, two on trio) share policies through one real
redis-server: the fleet behaves as one breaker, one budget, one rate limit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from local_redis import RedisServer, start_redis

HERE = Path(__file__).resolve().parent
WORKERS = 4


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    server = start_redis()
    try:
        yield server
    finally:
        server.stop()


def run_fleet(server: RedisServer, scenario: str) -> list[dict[str, Any]]:
    server.flush()
    start_at = time.time() + 3.0  # after every worker's interpreter and store are up
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parent), str(HERE)])}
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                str(HERE / "fleet_worker.py"),
                scenario,
                server.url,
                f"fleet-{scenario}",
                "asyncio" if i % 2 == 0 else "trio",
                str(start_at),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for i in range(WORKERS)
    ]
    results = []
    for worker in workers:
        out, err = worker.communicate(timeout=60)
        assert worker.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def test_the_fleet_opens_after_the_fleets_failures_not_four_times_them(
    redis_server: RedisServer,
) -> None:
    """failure_threshold=20 over 4 processes failing at 20/s each: the fleet's circuit opens
    after about 20 failures in all (4 x 20 = 80 with a breaker per process), and in every
    process within a second of the first."""
    results = run_fleet(redis_server, "breaker")
    reached = sum(r["reached"] for r in results)
    assert 20 <= reached <= 40, results  # 20 plus what arrives during one flush interval
    opened = [r["opened_at"] for r in results]
    assert all(opened), results
    assert max(opened) - min(opened) <= 1.0, opened


def test_the_fleets_retries_stay_within_its_budget(redis_server: RedisServer) -> None:
    """A total outage: 4 x 10 requests/s, 3 attempts each. One shared budget keeps every
    attempt within 1.25 x the fleet's offered load (a budget per process: 1.6 x, each
    spending its own reserve of 20)."""
    results = run_fleet(redis_server, "budget")
    attempts = sum(r["attempts"] for r in results)
    offered = sum(r["offered"] for r in results)
    assert offered >= WORKERS * 25
    assert attempts <= 1.25 * offered, (attempts, offered)
    assert attempts > offered  # the reserve was used: retries did happen


def test_a_shared_rate_limit_admits_its_rate_across_the_fleet(redis_server: RedisServer) -> None:
    """RateLimit(100/s) in 4 processes each offering 60/s: 100/s +- 5 % in total, measured
    over the steady 3 s after the first second."""
    results = run_fleet(redis_server, "rate")
    times = sorted(t for r in results for t in r["admitted"])
    start = min(times)
    steady = [t for t in times if start + 1.0 <= t < start + 4.0]
    shares = [len(r["admitted"]) for r in results]
    print(f"fleet rate limit: {len(steady) / 3.0:.1f}/s admitted of 100/s, per process {shares}")
    assert 285 <= len(steady) <= 315, len(steady)
    assert all(len(r["admitted"]) > 60 for r in results)  # each got a fair share (~100)
    # Redis commands per process: one script call per flush interval (10/s), not per call.
    rates = [r["commands_per_second"] for r in results]
    assert all(rate <= 13.0 for rate in rates), rates  # syncs 0.08-0.1 s apart
