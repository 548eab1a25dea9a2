"""EndpointGroup: three replicas in three zones, one zone lost; shuffle shards per tenant.

Run: python examples/endpoints.py [asyncio|trio]
"""

from __future__ import annotations

import sys
from collections import Counter

import anyio

import asyncres
from asyncres.sharding import blast_radius

DOWN: set[str] = set()


async def fetch(endpoint: asyncres.Endpoint, item: str) -> str:
    """Stands in for an HTTP or database call to one replica."""
    await anyio.sleep(0.01)
    if endpoint.zone in DOWN:
        raise ConnectionError(f"{endpoint.address} unreachable")
    return f"{item} from {endpoint.address}"


async def main() -> None:
    replicas = asyncres.EndpointGroup(
        [
            asyncres.Endpoint("http://10.0.1.7:8000", zone="eu-west-1a"),
            asyncres.Endpoint("http://10.0.2.7:8000", zone="eu-west-1b"),
            asyncres.Endpoint("http://10.0.3.7:8000", zone="eu-west-1c"),
        ],
        zone="eu-west-1a",  # where this process runs: preferred while healthy
        name="inventory",
    )
    retry = asyncres.Retry(on=ConnectionError, max_attempts=3)

    DOWN.add("eu-west-1a")  # the caller's own zone goes dark
    served: Counter[str] = Counter()
    for _ in range(50):
        route = replicas.route()  # one logical call: its retries avoid used endpoints
        answer = await retry.call(route, fetch, "book")
        served[answer.split(" from ")[1]] += 1
    print("served by:", dict(served))
    stats = replicas.statistics()
    print("ejected:", [row.endpoint.zone for row in stats.endpoints if row.ejected])

    # Each tenant gets its own 2 of the 3 (here) endpoints: a poison tenant takes down only
    # the tenants that drew the very same pair.
    tenant = replicas.for_key("tenant-42", 2)
    print("tenant-42 uses:", [e.zone for e in tenant.endpoints])
    radius = blast_radius(100, 5)
    print(f"100 endpoints, shards of 5: {radius.shards:,} shards")


if __name__ == "__main__":
    anyio.run(main, backend=sys.argv[1] if len(sys.argv) > 1 else "asyncio")
