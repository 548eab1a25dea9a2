"""Availability in parallel, measured: replicas through an EndpointGroup, and shuffle shards.

Run: ``python -m benchmarks.endpoints`` (``--markdown PATH`` writes the tables).

1. Availability. Each replica fails 1 % of calls on its own (`asyncres.chaos.InjectError`,
   seeded). Through an `EndpointGroup` of 1, 2 and 3 replicas, a call either retries on
   another replica (`Retry` over a `Route`, up to one attempt per replica) or hedges to all
   of them at once (`Hedge`, delay 0). Both should reach ``1 - (1 - A)^n``; the measured
   share is compared with it within its binomial 99 % interval.
2. A zone outage. Three replicas in three zones, 100 requests a second for 20 s; zone c
   goes dark (connections refused, or blackholed) from 5 s to 15 s. The protected client
   retries through an `EndpointGroup` route (the standard 3 attempts, 2 s attempt timeout);
   the naive one picks a replica round robin and retries tenacity-style on that same
   address (3 attempts, 0.1 s and 0.2 s waits, 5 s timeout each). A request succeeds when
   it is answered within 5 s (then the caller gives up). Measured: success through the
   dark phase, and the load on each surviving zone against its share before the outage
   (target: protected >= 99 % at <= 1.6 x share; the naive client loses about a third).
3. Shuffle sharding. 100,000 keys assigned by `asyncres.sharding.shuffle_shard`; one poison
   key takes its shard down. The share of the other keys fully affected (their whole shard
   is down) and partly affected should match `blast_radius`; plain sharding (fixed groups
   of ``k``) loses ``k / n`` of the keys with the poison one.

Virtual clocks (asyncio for 1 and 3, trio's MockClock for 2); every number is a count
over the run, nothing timed.
"""

from __future__ import annotations

import argparse
import math
import random
from pathlib import Path

import anyio

import asyncres
from asyncres import chaos
from asyncres.sharding import blast_radius, shuffle_shard

AVAILABILITY = 0.99
CALLS = 200_000


async def _availability(replicas: int, mode: str, calls: int, seed: int) -> int:
    """Failed calls out of ``calls``."""
    addresses = [f"replica-{i}" for i in range(replicas)]
    faults = {
        address: chaos.InjectError(ConnectionError, rate=1 - AVAILABILITY, seed=seed * 10 + i)
        for i, address in enumerate(addresses)
    }

    async def answer() -> str:
        return "ok"

    async def send(endpoint: asyncres.Endpoint) -> str:
        return await faults[endpoint.address].call(answer)

    # Outlier detection off: independent faults, no replica is worse than another.
    group = asyncres.EndpointGroup(addresses, consecutive_failures=10**9, rng=random.Random(seed))
    retry = asyncres.Retry(
        on=ConnectionError,
        max_attempts=replicas,
        backoff=asyncres.backoff.Constant(0.0),
        budget=None,
    )
    hedge = asyncres.Hedge(delay=0.0, max_hedges=max(1, replicas - 1), on=ConnectionError)
    failed = 0
    for _ in range(calls):
        route = group.route()
        try:
            if mode == "retry elsewhere" or replicas == 1:
                await retry.call(route, send)
            else:
                await hedge.call(route, send)
        except ConnectionError:
            failed += 1
    return failed


def _interval(failures: int, calls: int, z: float = 2.576) -> tuple[float, float]:
    """Wilson score interval of the success share (99 % by default)."""
    p = 1 - failures / calls
    centre = (p + z * z / (2 * calls)) / (1 + z * z / calls)
    spread = z * math.sqrt(p * (1 - p) / calls + z * z / (4 * calls * calls)) / (1 + z * z / calls)
    return centre - spread, centre + spread


def availability_table(calls: int = CALLS) -> str:
    rows = [
        "| replicas | mode | calls | failed | measured availability | 1 − (1 − A)ⁿ "
        "| 99 % interval | within |",
        "| ---: | --- | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for replicas in (1, 2, 3):
        for mode in ("retry elsewhere", "hedge") if replicas > 1 else ("single",):
            failed = anyio.run(_availability, replicas, mode, calls, replicas)
            expected = 1 - (1 - AVAILABILITY) ** replicas
            low, high = _interval(failed, calls)
            within = "yes" if low <= expected <= high else "**no**"
            rows.append(
                f"| {replicas} | {mode} | {calls:,} | {failed:,} | {1 - failed / calls:.6f} | "
                f"{expected:.6f} | {low:.6f} – {high:.6f} | {within} |"
            )
    return "\n".join(rows) + "\n"


ZONES = ("a", "b", "c")
CALLER_GIVES_UP = 5.0


async def _zone_outage(client: str, dark: str) -> dict[str, float]:
    """Success in the dark phase and the surviving zones' load against their share."""
    group = asyncres.EndpointGroup(
        [asyncres.Endpoint(f"replica-{z}", zone=z) for z in ZONES], rng=random.Random(4)
    )
    retry = asyncres.Retry(on=ConnectionError, max_attempts=3)
    attempts: dict[tuple[str, str], int] = {}  # (phase, zone) -> attempts sent
    outcomes: dict[str, list[bool]] = {"before": [], "dark": [], "after": []}
    start = anyio.current_time()

    def phase_at(t: float) -> str:
        return "before" if t < 5.0 else "dark" if t < 15.0 else "after"

    async def send(zone: str) -> str:
        phase = phase_at(anyio.current_time() - start)
        attempts[(phase, zone)] = attempts.get((phase, zone), 0) + 1
        if phase == "dark" and zone == "c":
            if dark == "blackholed":
                await anyio.sleep(30.0)  # cut by the attempt timeout
            raise ConnectionError("zone c is dark")
        await anyio.sleep(0.02)
        return "ok"

    async def protected_attempt(endpoint: asyncres.Endpoint) -> str:
        with anyio.fail_after(2.0):  # the standard policy's attempt timeout
            try:
                return await send(str(endpoint.zone))
            except TimeoutError:
                raise ConnectionError("attempt timed out") from None

    async def naive_request(zone: str) -> str:
        for attempt in range(3):
            try:
                with anyio.fail_after(5.0):  # the naive client's httpx timeout
                    return await send(zone)
            except (ConnectionError, TimeoutError):
                if attempt == 2:
                    raise
                await anyio.sleep(0.1 * 2**attempt)
        raise AssertionError("unreachable")

    async def one(i: int) -> None:
        phase = phase_at(anyio.current_time() - start)
        try:
            with asyncres.timeout(CALLER_GIVES_UP):  # both: the caller waits 5 s at most
                if client == "protected":
                    await retry.call(group.route(), protected_attempt)
                else:
                    await naive_request(ZONES[i % 3])
            outcomes[phase].append(True)
        except (ConnectionError, TimeoutError):
            outcomes[phase].append(False)

    async with anyio.create_task_group() as tg:
        for i in range(2000):  # 100 a second for 20 s, open loop
            tg.start_soon(one, i)
            await anyio.sleep(0.01)
    dark_outcomes = outcomes["dark"]
    before = {z: attempts.get(("before", z), 0) / 5.0 for z in ZONES}
    during = {z: attempts.get(("dark", z), 0) / 10.0 for z in ZONES}
    return {
        "success": sum(dark_outcomes) / len(dark_outcomes),
        "after": sum(outcomes["after"]) / len(outcomes["after"]),
        "share_a": during["a"] / before["a"],
        "share_b": during["b"] / before["b"],
    }


def zone_table() -> str:
    rows = [
        "| zone c | client | success while dark | success after | load on zone a ÷ before "
        "| on zone b ÷ before |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    from trio.testing import MockClock

    for dark in ("refused", "blackholed"):
        for client in ("naive", "protected"):
            found = anyio.run(
                _zone_outage,
                client,
                dark,
                backend="trio",
                backend_options={"clock": MockClock(autojump_threshold=0)},
            )
            rows.append(
                f"| {dark} | {client} | {found['success']:.1%} | {found['after']:.1%} | "
                f"{found['share_a']:.2f} × | {found['share_b']:.2f} × |"
            )
    return "\n".join(rows) + "\n"


def sharding_table(keys: int = 100_000) -> str:
    rows = [
        "| n | k | shards | fully affected (measured) | 1 / C(n, k) | partly affected "
        "(measured) | formula | plain sharding loses |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for n, k in ((8, 2), (12, 3), (16, 2)):
        workers = [f"w{i}" for i in range(n)]
        poison = set(shuffle_shard("poison-key", workers, k))
        fully = partly = 0
        for i in range(keys):
            shard = set(shuffle_shard(f"key-{i}", workers, k))
            overlap = len(shard & poison)
            fully += overlap == k
            partly += overlap > 0
        radius = blast_radius(n, k)
        rows.append(
            f"| {n} | {k} | {radius.shards:,} | {fully / keys:.4%} | {radius.share_all:.4%} | "
            f"{partly / keys:.2%} | {radius.share_any:.2%} | {k / n:.1%} |"
        )
    return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=CALLS, help="calls per availability row")
    parser.add_argument("--markdown", type=Path, help="write the tables here")
    parser.add_argument("--zones-only", action="store_true", help="only the zone outage table")
    args = parser.parse_args(argv)
    if args.zones_only:
        print(zone_table(), end="")
        return 0
    text = (
        "# Endpoint groups and shuffle sharding\n\n"
        "Regenerate: `python -m benchmarks.endpoints --markdown benchmarks/results/endpoints.md`"
        ".\n\n## Availability of 1 % failing replicas through an EndpointGroup\n\n"
        + availability_table(args.calls)
        + "\n## One zone of three goes dark for 10 s (100 requests/s)\n\n"
        + zone_table()
        + "\n## One poison key takes its shard down (100,000 keys)\n\n"
        + sharding_table()
    )
    print(text, end="")
    if args.markdown:
        args.markdown.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
