"""Instructions per request for bare httpx and `ResilientTransport`, counted by callgrind.

Run: ``python -m benchmarks.httpx_callgrind`` (needs valgrind); ``--breakdown`` adds the
standard policy with one layer left out at a time, to show where the instructions go.
Wall-clock ratios on shared machines drift by 10-50 %; instruction counts repeat to within a
fraction of a percent, so this is the steadier view of the adapter's cost. Each case runs N
and 3N requests in a fresh process; the difference divided by 2N is the cost of one
request (start-up cancels out).
"""

from __future__ import annotations

import re
import subprocess
import sys

import anyio
import httpx

from asyncres.httpx import ResilientTransport, standard_policy


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


def _count(case: str, n: int, backend: str) -> int:
    out = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            sys.executable,
            "-m",
            "benchmarks.httpx_callgrind",
            "--run",
            case,
            str(n),
            backend,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stderr
    match = re.search(r"Collected : (\d+)", out)
    assert match, out
    return int(match.group(1))


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
        per = {c: (_count(c, 3 * n, backend) - _count(c, n, backend)) / (2 * n) for c in TRANSPORTS}
        base = next(iter(per.values()))
        for case, value in per.items():
            print(f"| {backend} | {case} | {value:,.0f} | {value / base:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
