"""The ``asyncres`` command line.

::

    asyncres drill [--quick] [--seed N] [--schedule FILE.toml] [--output DIR]
    asyncres proxy --upstream 127.0.0.1:5432 --listen 127.0.0.1:15432 --toxic latency=200ms

Each subcommand is a function ``add_<name>(subparsers)`` that registers its parser and
sets ``handler``; `main` parses and calls it.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence
from typing import Any

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``asyncres`` command line; return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    status: int = args.handler(parser, args)
    return status


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="asyncres",
        description="asyncres: resilience toolkit on anyio — fault injection and drills.",
    )
    parser.add_argument("--version", action="version", version=f"asyncres {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_drill(subparsers)
    add_proxy(subparsers)
    return parser


def add_drill(subparsers: Any) -> None:
    """``asyncres drill``: the GameDay (needs the ``drill`` extra, imported on use)."""
    parser = subparsers.add_parser(
        "drill",
        help="run a GameDay: a naive and a protected client side by side through faults",
        description=(
            "Start a small HTTP service over SQLite on 127.0.0.1 behind a fault proxy, run a "
            "schedule of faults (latency spike, error burst with Retry-After, hard outage, "
            "slow database) and drive the same open-loop traffic through a naive httpx "
            "client (tenacity-style retries) and one protected by asyncres. Shows live "
            "numbers, writes report.json and chart.png to the output folder, and exits "
            "with status 3 if the protected client did not win."
        ),
    )
    parser.add_argument("--quick", action="store_true", help="a 37-second drill")
    parser.add_argument("--seed", type=int, default=1, help="randomness seed (default 1)")
    parser.add_argument(
        "--rate", type=float, default=40.0, help="requests per second per client (default 40)"
    )
    parser.add_argument(
        "--schedule",
        metavar="FILE",
        help="a chaos.Schedule TOML file of [[phases]] tables (default: the built-in schedule)",
    )
    parser.add_argument(
        "--scenario",
        dest="scenario",
        metavar="FILE",
        help="deprecated spelling of --schedule (until asyncres 0.3)",
    )
    parser.add_argument(
        "--output", default="drill-output", metavar="DIR", help="results folder (drill-output)"
    )
    parser.add_argument(
        "--backend", choices=("asyncio", "trio"), default="asyncio", help="the clients' loop"
    )
    parser.add_argument("--no-live", action="store_true", help="no live table, phase lines only")
    parser.add_argument(
        "--metrics-port",
        type=int,
        metavar="PORT",
        help="serve the policies' Prometheus metrics on 127.0.0.1:PORT/metrics during the run "
        "(needs prometheus-client)",
    )
    parser.set_defaults(handler=_run_drill)


def _run_drill(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    try:
        from .drill._cli import run
    except ImportError as exc:
        parser.exit(
            2, f"asyncres drill needs the drill extra: pip install 'asyncres[drill]' ({exc})\n"
        )
    if args.rate <= 0:
        parser.error("--rate must be > 0")
    if args.metrics_port is not None and not 0 <= args.metrics_port <= 65535:
        parser.error("--metrics-port must be a TCP port, 0-65535 (0: any free one)")
    _deprecated_scenario_option(parser, args)
    return run(args)


def _deprecated_scenario_option(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """``--scenario FILE`` still works as ``--schedule FILE``, with a warning."""
    if args.scenario is None:
        return
    if args.schedule is not None:
        parser.error("--scenario is the deprecated spelling of --schedule: give only --schedule")
    print(
        "asyncres drill: --scenario is deprecated and will be removed in asyncres 0.3; "
        "use --schedule FILE",
        file=sys.stderr,
    )
    args.schedule = args.scenario


def add_proxy(subparsers: Any) -> None:
    """``asyncres proxy``: a FaultProxy in front of a server, until Ctrl-C."""
    parser = subparsers.add_parser(
        "proxy",
        help="run a TCP fault proxy (Toxiproxy's toxics) in front of a server",
        description=(
            "Forward 127.0.0.1:PORT to an upstream server, injecting network faults. "
            "Runs until Ctrl-C (or SIGTERM)."
        ),
        epilog=(
            "toxics: latency=200ms[,jitter=20ms]  bandwidth=64KB/s  slow_close=1s  "
            "timeout[=5s]  reset_peer[=2s]  slicer=16[,size_variation=8,delay=1ms]  "
            "limit_data=1000; each also takes direction=upstream|downstream|both "
            "(default downstream) and toxicity=0..1"
        ),
    )
    parser.add_argument("--upstream", required=True, metavar="HOST:PORT", help="the server")
    parser.add_argument(
        "--listen",
        default="127.0.0.1:0",
        metavar="HOST:PORT",
        help="where clients connect (default 127.0.0.1 on a free port, printed at start)",
    )
    parser.add_argument(
        "--toxic",
        action="append",
        default=[],
        metavar="SPEC",
        help="a toxic, e.g. latency=200ms,jitter=20ms (repeatable)",
    )
    parser.add_argument("--down", action="store_true", help="start down (refusing)")
    parser.add_argument("--seed", type=int, default=None, help="seed for toxicity and jitter")
    parser.add_argument("--backend", choices=("asyncio", "trio"), default="asyncio")
    parser.set_defaults(handler=_run_proxy)


def _run_proxy(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    import anyio

    from .chaos import FaultProxy, parse_toxic
    from .chaos._proxy import parse_address

    try:
        upstream = parse_address(args.upstream, "upstream")
        listen = parse_address(args.listen, "listen")
        toxics = [parse_toxic(spec) for spec in args.toxic]
    except ValueError as exc:
        parser.error(str(exc).replace("`", ""))

    async def serve() -> None:
        proxy = FaultProxy(
            upstream=upstream, listen=listen, toxics=toxics, enabled=not args.down, seed=args.seed
        )
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with proxy:
                host, port = proxy.address
                shown = f"[{host}]" if ":" in host else host
                state = " (down)" if args.down else ""
                print(f"asyncres proxy: {shown}:{port} -> {args.upstream}{state}", flush=True)
                for toxic in proxy.toxics:
                    print(f"  {toxic!r}", flush=True)
                print("Ctrl-C stops.", flush=True)
                async for _ in signals:
                    break
                stats = proxy.statistics()
        print(
            f"asyncres proxy: stopped after {stats.accepted} connections, "
            f"{stats.bytes_upstream} bytes up, {stats.bytes_downstream} bytes down",
            flush=True,
        )

    try:
        anyio.run(serve, backend=args.backend)
    except OSError as exc:
        print(f"asyncres proxy: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
