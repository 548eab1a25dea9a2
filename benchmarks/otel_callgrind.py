"""Instructions per call for the canonical pipeline, plain and instrumented, and the SDK floor.

Run: ``python -m benchmarks.otel_callgrind [--number N]`` (needs valgrind and
opentelemetry-sdk). The cases are `benchmarks.overhead`'s: the bare ``await ok()``, the
5-layer pipeline, the OpenTelemetry SDK alone (a call's two ``Histogram.record``), and the
pipeline with ``asyncres.otel.instrument()``. What the bridge itself costs is what the
instrumented call spends beyond the plain call and the floor; callgrind counts it without
the wall clock's cache and noise effects (see ``benchmarks/_callgrind.py``).
"""

from __future__ import annotations

import argparse
import sys

import anyio

from . import overhead
from ._callgrind import per_unit

MODULE = "benchmarks.otel_callgrind"
CASES = ("bare", "pipeline", "sdk floor", "instrumented")


def _case(name: str) -> overhead.Case:
    if name == "bare":
        return overhead.bare
    if name == "pipeline":
        return overhead.asyncres_pipeline_call
    instrumented, floor = overhead._instrumented()
    case = instrumented if name == "instrumented" else floor
    if case is None:
        raise SystemExit("opentelemetry-sdk is not installed: pip install -e '.[bench]'")
    return case


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--run"]:
        name, n, backend = argv[1:4]
        anyio.run(_case(name), int(n), backend=backend)
        return 0
    parser = argparse.ArgumentParser(prog=f"python -m {MODULE}", description=__doc__)
    parser.add_argument("--number", type=int, default=500, help="N: runs of N and 3N calls")
    args = parser.parse_args(argv)
    print(
        "| backend | plain | SDK floor | instrumented | bridge's own "
        "| × plain | floor-bound × plain |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for backend in ("asyncio", "trio"):
        per = {name: per_unit(MODULE, name, args.number, backend) for name in CASES}
        plain, floor, total = per["pipeline"], per["sdk floor"], per["instrumented"]
        # The floor's own `await ok()` is the bare call: counted once, in the plain call.
        own = total - plain - (floor - per["bare"])
        lowest = (plain + floor - per["bare"]) / plain
        print(
            f"| {backend} | {plain:,.0f} | {floor:,.0f} | {total:,.0f} | {own:,.0f} "
            f"| {total / plain:.2f} | {lowest:.2f} |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
