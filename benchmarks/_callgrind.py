"""Instructions per unit of work, counted by callgrind in a fresh interpreter.

Wall-clock ratios on shared machines drift by 10-50 %; instruction counts repeat to within a
fraction of a percent. A benchmark module runs its case N and 3N times under callgrind; the
difference divided by 2N is the cost of one unit (start-up and warm-up cancel out).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys


def instructions(module: str, *args: str) -> int:
    """Instructions callgrind counts for ``python -m module --run *args``."""
    out = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            sys.executable,
            "-m",
            module,
            "--run",
            *args,
        ],
        capture_output=True,
        text=True,
        check=True,
        # One hash seed for every run: str hashes change dict probing, and so the counts.
        env={**os.environ, "PYTHONHASHSEED": "0"},
    ).stderr
    match = re.search(r"Collected : (\d+)", out)
    if match is None:
        raise RuntimeError(f"callgrind printed no instruction count:\n{out}")
    return int(match.group(1))


def per_unit(module: str, case: str, n: int, *args: str) -> float:
    """Instructions of one unit of ``case``: (3N run - N run) / 2N; ``--run case N *args``."""
    many = instructions(module, case, str(3 * n), *args)
    few = instructions(module, case, str(n), *args)
    return (many - few) / (2 * n)
