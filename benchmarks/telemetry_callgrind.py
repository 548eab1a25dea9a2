"""What the telemetry seam costs a call when nothing is instrumented, counted by callgrind.

Run: ``python -m benchmarks.telemetry_callgrind [--before COMMIT]`` (needs valgrind and git).
The seam (`asyncres._telemetry.hooks`) cannot be absent and present in one process, so this
compares two source trees instead of two cases: the checkout and ``COMMIT`` (default: the
commit before the seam), checked out in a temporary git worktree. Instruction counts repeat
to within a fraction of a percent, where wall-clock time on a shared machine drifts by
10-50 %. Each case runs N and 3N calls in a fresh process; the difference divided by 2N is
one call (start-up cancels out). ``--markdown PATH`` writes the table.
"""

from __future__ import annotations

import argparse
import gc
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import anyio

ROOT = Path(__file__).resolve().parent.parent
#: The last commit without the seam.
BEFORE = "31374b7"


async def ok() -> int:
    return 1


def _cases() -> dict[str, object]:
    import asyncres

    return {
        "Retry.call (success)": asyncres.Retry(on=OSError, max_attempts=3).call,
        "CircuitBreaker.call (closed)": asyncres.CircuitBreaker().call,
        "canonical 5-layer Pipeline.call": asyncres.Pipeline(
            asyncres.Timeout(10.0),
            asyncres.Retry(on=OSError, max_attempts=4),
            asyncres.CircuitBreaker(failure_rate=0.5, window=30.0),
            asyncres.Bulkhead(max_concurrent=20, max_queued=50),
            asyncres.Timeout(2.0),
        ).call,
    }


CASES = ("Retry.call (success)", "CircuitBreaker.call (closed)", "canonical 5-layer Pipeline.call")


async def _calls(case: str, n: int) -> None:
    call = _cases()[case]
    for _ in range(100):  # warm: first-call costs (specialisation, caches) out of the count
        await call(ok)  # type: ignore[operator]
    gc.disable()  # a collection landing in one run but not the other is noise
    for _ in range(n):
        await call(ok)  # type: ignore[operator]


def _count(tree: Path, case: str, n: int, backend: str) -> int:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tree), str(ROOT)]))
    out = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            sys.executable,
            str(Path(__file__)),
            "--run",
            case,
            str(n),
            backend,
        ],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    ).stderr
    match = re.search(r"Collected : (\d+)", out)
    assert match, out
    return int(match.group(1))


def _per_call(tree: Path, case: str, backend: str, n: int = 2000) -> float:
    return (_count(tree, case, 3 * n, backend) - _count(tree, case, n, backend)) / (2 * n)


def table(before: str) -> str:
    rows = [
        f"| backend | case | before ({before}) | after | after ÷ before |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    with tempfile.TemporaryDirectory(prefix="asyncres-before-") as folder:
        old = Path(folder) / "tree"
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(old), before],
            check=True,
        )
        try:
            for backend in ("asyncio", "trio"):
                for case in CASES:
                    was = _per_call(old, case, backend)
                    now = _per_call(ROOT, case, backend)
                    rows.append(
                        f"| {backend} | {case} | {was:,.0f} | {now:,.0f} | {now / was:.3f} |"
                    )
        finally:
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(old)], check=True
            )
    return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) == 4 and argv[0] == "--run":
        anyio.run(_calls, argv[1], int(argv[2]), backend=argv[3])
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
