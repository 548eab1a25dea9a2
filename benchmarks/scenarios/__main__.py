"""``python -m benchmarks.scenarios [--smoke] [--only N ...] [--output PATH]``."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from . import SCENARIOS, run_scenario
from ._report import render

DEFAULT_OUTPUT = Path(__file__).resolve().parent.parent / "results" / "scenarios.md"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scenarios", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="a reduced run of a few seconds")
    parser.add_argument(
        "--only",
        type=int,
        action="append",
        choices=sorted(SCENARIOS),
        metavar="N",
        help="run scenario N only (repeatable)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help=f"markdown file to write (default: {DEFAULT_OUTPUT} for a full run of all "
        "scenarios, standard output otherwise)",
    )
    parser.add_argument("--seed", type=int, default=None, help="override every scenario's seed")
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="processes for independent runs (default: 2, or 1 with --smoke)",
    )
    args = parser.parse_args(argv)
    numbers = sorted(set(args.only or SCENARIOS))
    workers = args.workers or (1 if args.smoke else min(2, os.cpu_count() or 1))
    started = time.perf_counter()
    results = []
    for number in numbers:
        print(f"scenario {number}...", file=sys.stderr, flush=True)
        result = run_scenario(number, smoke=args.smoke, seed=args.seed, workers=workers)
        print(f"scenario {number}: {result.seconds:.1f} s", file=sys.stderr, flush=True)
        results.append(result)
    total = time.perf_counter() - started
    command = (
        "python -m benchmarks.scenarios"
        + (" --smoke" if args.smoke else "")
        + "".join(f" --only {n}" for n in (args.only or []))
    )
    text = render(results, command=command, seconds=total, workers=workers)
    output = args.output
    if output is None and not args.smoke and not args.only and args.seed is None:
        output = DEFAULT_OUTPUT
    if output is None:
        sys.stdout.write(text)
    else:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text)
        print(f"wrote {output} ({total:.0f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
