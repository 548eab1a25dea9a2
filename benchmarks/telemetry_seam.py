"""What the telemetry seam adds to a call when nothing is instrumented, counted exactly.

Run: ``python -m benchmarks.telemetry_seam [--before COMMIT]`` (needs git). The seam
(`asyncres._telemetry.hooks`, checked once per call by `Retry`, `Pipeline`, `Hedge` and the
httpx adapter) cannot be both absent and present in one process, so this compares two
source trees: the checkout and ``COMMIT`` (default: the last commit without the seam),
checked out in a temporary git worktree. It counts the Python bytecode instructions that
asyncres itself executes per call (``sys.settrace`` with opcode events, over 100 calls
after a warm-up), which repeat exactly from run to run; wall-clock time on this shared
machine drifts by 10-50 %, and callgrind's instruction counts drift by several percent on
these calls (allocator and timer-heap state). ``--markdown PATH`` writes the table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from types import FrameType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
#: The last commit without the seam.
BEFORE = "31374b7"
CASES = ("Retry.call (success)", "CircuitBreaker.call (closed)", "canonical 5-layer Pipeline.call")
CALLS = 100


async def ok() -> int:
    return 1


def _call(case: str) -> Any:
    import asyncres

    if case == "Retry.call (success)":
        return asyncres.Retry(on=OSError, max_attempts=3).call
    if case == "CircuitBreaker.call (closed)":
        return asyncres.CircuitBreaker().call
    from benchmarks.overhead import _canonical_pipeline  # the tree's own

    return _canonical_pipeline().call


def _count(case: str, backend: str) -> float:
    """Run in the tree under test: asyncres bytecodes per call."""
    import anyio

    import asyncres

    package = str(Path(asyncres.__file__).parent)
    executed = 0

    def tracer(frame: FrameType, event: str, arg: object) -> Any:
        nonlocal executed
        if not frame.f_code.co_filename.startswith(package):
            return None
        frame.f_trace_opcodes = True
        if event == "opcode":
            executed += 1
        return tracer

    async def main() -> None:
        call = _call(case)
        for _ in range(10):
            await call(ok)
        sys.settrace(tracer)
        try:
            for _ in range(CALLS):
                await call(ok)
        finally:
            sys.settrace(None)

    anyio.run(main, backend=backend)
    return executed / CALLS


def _measure(tree: Path) -> dict[str, dict[str, float]]:
    env = dict(os.environ, PYTHONPATH=str(tree))
    out = subprocess.run(
        [sys.executable, str(Path(__file__)), "--measure"],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        cwd=tempfile.gettempdir(),  # never import the checkout by accident
    ).stdout
    result: dict[str, dict[str, float]] = json.loads(out)
    return result


def table(before: str) -> str:
    with tempfile.TemporaryDirectory(prefix="asyncres-before-") as folder:
        old = Path(folder) / "tree"
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(old), before],
            check=True,
        )
        try:
            was = _measure(old)
        finally:
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(old)], check=True
            )
    now = _measure(ROOT)
    rows = [
        f"| backend | case | bytecodes / call before ({before}) | after | added | after ÷ before |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for backend in ("asyncio", "trio"):
        for case in CASES:
            a, b = was[backend][case], now[backend][case]
            rows.append(
                f"| {backend} | {case} | {a:,.0f} | {b:,.0f} | {b - a:+,.0f} | {b / a:.3f} |"
            )
    return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv == ["--measure"]:
        counts = {b: {c: _count(c, b) for c in CASES} for b in ("asyncio", "trio")}
        print(json.dumps(counts))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default=BEFORE, help=f"the tree to compare (default {BEFORE})")
    parser.add_argument("--markdown", type=Path, help="write the table here")
    args = parser.parse_args(argv)
    text = table(args.before)
    print(text, end="")
    if args.markdown:
        args.markdown.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
