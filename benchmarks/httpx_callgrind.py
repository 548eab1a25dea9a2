"""Instructions per request for bare httpx and `ResilientTransport`, counted by callgrind.

Run: ``python -m benchmarks.httpx_callgrind`` (needs valgrind); ``--breakdown`` adds the
standard policy with one layer left out at a time, to show where the instructions go.
Instruction counts are the steadier view of the adapter's cost than wall-clock ratios (see
``benchmarks/_callgrind.py``).
"""

from __future__ import annotations

import sys

import anyio
import httpx

from asyncres.httpx import ResilientTransport, standard_policy

from ._callgrind import per_unit


def handler(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, content=b"ok")


TRANSPORTS = {
    "bare httpx (MockTransport)": lambda: httpx.MockTransport(handler),
    "ResilientTransport, standard policy": lambda: ResilientTransport(httpx.MockTransport(handler)),
}
BREAKDOWN = {
    "  without the deadline header": lambda: ResilientTransport(
        httpx.MockTransport(handler), deadline_header=None
    ),
    "  without breaker and bulkhead": lambda: ResilientTransport(
        httpx.MockTransport(handler), policy=standard_policy(breaker=False, bulkhead=False)
    ),
    "  without timeouts (so no scope, no header)": lambda: ResilientTransport(
        httpx.MockTransport(handler),
        policy=standard_policy(total_timeout=None, attempt_timeout=None),
    ),
    "  retry only (no timeouts, breaker, bulkhead)": lambda: ResilientTransport(
        httpx.MockTransport(handler),
        policy=standard_policy(
            total_timeout=None, attempt_timeout=None, breaker=False, bulkhead=False
        ),
    ),
}


async def _requests(case: str, n: int) -> None:
    TRANSPORTS.update(BREAKDOWN)
    async with httpx.AsyncClient(transport=TRANSPORTS[case](), base_url="http://svc") as c:
        for _ in range(n):
            await c.get("/item")


def main() -> int:
    if len(sys.argv) == 5 and sys.argv[1] == "--run":
        anyio.run(_requests, sys.argv[2], int(sys.argv[3]), backend=sys.argv[4])
        return 0
    if "--breakdown" in sys.argv:
        TRANSPORTS.update(BREAKDOWN)
    n = 100
    print("| backend | case | instructions / request | × bare |")
    print("| --- | --- | ---: | ---: |")
    for backend in ("asyncio", "trio"):
        per = {c: per_unit("benchmarks.httpx_callgrind", c, n, backend) for c in TRANSPORTS}
        base = next(iter(per.values()))
        for case, value in per.items():
            print(f"| {backend} | {case} | {value:,.0f} | {value / base:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
