"""Availability in parallel, measured: replicas through an EndpointGroup, and shuffle shards.

Run: ``python -m benchmarks.endpoints`` (``--markdown PATH`` writes the tables).

1. Availability. Each replica fails 1 % of calls on its own (`asyncres.chaos.InjectError`,
   seeded). Through an `EndpointGroup` of 1, 2 and 3 replicas, a call either retries on
   another replica (`Retry` over a `Route`, up to one attempt per replica) or hedges to all
   of them at once (`Hedge`, delay 0). Both should reach ``1 - (1 - A)^n``; the measured
   share is compared with it within its binomial 99 % interval.
2. Shuffle sharding. 100,000 keys assigned by `asyncres.sharding.shuffle_shard`; one poison
   key takes its shard down. The share of the other keys fully affected (their whole shard
   is down) and partly affected should match `blast_radius`; plain sharding (fixed groups
   of ``k``) loses ``k / n`` of the keys with the poison one.

Virtual clock, asyncio; every number is a count over the run, nothing timed.
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
    args = parser.parse_args(argv)
    text = (
        "# Endpoint groups and shuffle sharding\n\n"
        "Regenerate: `python -m benchmarks.endpoints --markdown benchmarks/results/endpoints.md`"
        ".\n\n## Availability of 1 % failing replicas through an EndpointGroup\n\n"
        + availability_table(args.calls)
        + "\n## One poison key takes its shard down (100,000 keys)\n\n"
        + sharding_table()
    )
    print(text, end="")
    if args.markdown:
        args.markdown.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
