"""Instructions per request for a bare ASGI app and the `asyncres.asgi` middleware.

Run: ``python -m benchmarks.asgi_callgrind [--markdown PATH]`` (needs valgrind). Each case
of `benchmarks.asgi_overhead` (the same apps, the same ``Request-Timeout`` header) is
requested through ``httpx.ASGITransport``, the smallest end-to-end in-process path, and
counted by callgrind: the steadier view of the middleware's cost than wall-clock ratios
(see ``benchmarks/_callgrind.py``). ``--direct`` counts the bare ASGI call instead (the
middleware's own instructions, nothing else around them).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import anyio
import httpx

from ._callgrind import per_unit
from .asgi_overhead import APPS, direct_calls, httpx_requests

MODULE = "benchmarks.asgi_callgrind"


async def _requests(case: str, n: int, direct: bool) -> None:
    await (direct_calls if direct else httpx_requests)(APPS[case])(n)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--run"]:
        case, n, backend, path = argv[1:5]
        anyio.run(_requests, case, int(n), path == "direct", backend=backend)
        return 0
    parser = argparse.ArgumentParser(prog=f"python -m {MODULE}", description=__doc__)
    parser.add_argument("--number", type=int, default=100, help="N: runs of N and 3N requests")
    parser.add_argument("--direct", action="store_true", help="bare ASGI calls, no httpx")
    parser.add_argument("--markdown", type=Path, default=None, help="write the table here")
    args = parser.parse_args(argv)
    path = "direct" if args.direct else "httpx"
    lines = [
        "| backend | app | instructions / request | × bare |",
        "| --- | --- | ---: | ---: |",
    ]
    for backend in ("asyncio", "trio"):
        per = {case: per_unit(MODULE, case, args.number, backend, path) for case in APPS}
        base = per["bare app"]
        for case, value in per.items():
            lines.append(f"| {backend} | {case} | {value:,.0f} | {value / base:.3f} |")
            print(lines[-1], flush=True)
    where = "direct ASGI calls" if args.direct else "requests through `httpx.ASGITransport`"
    text = (
        "# asyncres.asgi cost per request in instructions (callgrind)\n\n"
        + "\n".join(lines)
        + f"\n\n{where[0].upper()}{where[1:]}, `Request-Timeout: 1.5`; (3N − N) / 2N with "
        f"N = {args.number}. Python {sys.version.split()[0]}, httpx {httpx.__version__}. "
        f"Regenerate: `python -m {MODULE}"
        + (" --direct" if args.direct else "")
        + " --markdown PATH`.\n"
    )
    if args.markdown is not None:
        args.markdown.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
