"""The instruction-count benchmarks' ``--run`` entries (what callgrind executes) work.

callgrind is too slow for CI; these run each case a few times in process on both backends,
so a renamed case or a broken app shows here and not on the next benchmark day.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

asgi_callgrind = pytest.importorskip("benchmarks.asgi_callgrind")
httpx_callgrind = pytest.importorskip("benchmarks.httpx_callgrind")

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("direct", [True, False], ids=["direct", "httpx"])
async def test_every_asgi_case_serves_its_requests(direct: bool) -> None:
    for case in asgi_callgrind.APPS:
        await asgi_callgrind._requests(case, 3, direct)


async def test_every_httpx_case_sends_its_requests() -> None:
    for case in [*httpx_callgrind.TRANSPORTS, *httpx_callgrind.BREAKDOWN]:
        await httpx_callgrind._requests(case, 3)


def test_the_otel_cases_run_under_the_sdk() -> None:
    pytest.importorskip("opentelemetry.sdk")
    for case in ("bare", "pipeline", "sdk floor", "instrumented"):
        done = subprocess.run(
            [sys.executable, "-m", "benchmarks.otel_callgrind", "--run", case, "3", "trio"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
