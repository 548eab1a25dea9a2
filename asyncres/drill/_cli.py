"""What ``asyncres drill`` does once its arguments are parsed (see `asyncres.cli`)."""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path
from typing import Any

__all__ = ["run"]

EXIT_USAGE = 2
EXIT_PROTECTED_LOST = 3


def run(args: argparse.Namespace) -> int:
    import anyio
    from rich.console import Console

    from . import DrillOptions, run_drill
    from ._live import LiveView
    from ._report import breaker_line, summary_table, write_chart, write_json

    try:
        schedule = _schedule(args)
        options = DrillOptions(
            schedule, rate=args.rate, seed=args.seed, grace=2.0 if args.quick else 8.0
        )
    except (OSError, ValueError) as exc:
        print(f"asyncres drill: {args.schedule}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    console = Console()
    live = not args.no_live and console.is_terminal
    if not console.is_terminal:
        console = Console(width=140)  # logs and CI: do not squeeze the tables to 80 columns
    console.print(
        f"[bold]asyncres drill[/bold]: {len(schedule.phases)} phases, "
        f"{schedule.duration:g} s, {args.rate:g} requests/s per client, seed {args.seed}"
    )
    last_phase: list[str] = [""]

    def log_phase(snapshot: dict[str, Any]) -> None:
        if snapshot["phase"] != last_phase[0]:
            last_phase[0] = snapshot["phase"]
            console.print(f"  t={snapshot['t']:5.1f}s  phase: {snapshot['phase']}")

    def announce(url: str) -> None:
        console.print(f"  metrics: {url}")

    port = getattr(args, "metrics_port", None)
    started = time.monotonic()
    if live:
        with LiveView(console) as view:
            report = anyio.run(_run, run_drill, options, view, port, announce, backend=args.backend)
    else:
        report = anyio.run(
            _run, run_drill, options, log_phase, port, announce, backend=args.backend
        )
    report["wall_seconds"] = round(time.monotonic() - started, 2)

    folder = Path(args.output)
    folder.mkdir(parents=True, exist_ok=True)
    report["chart"] = str(write_chart(report, folder))
    json_path = write_json(report, folder)
    console.print(summary_table(report))
    console.print(breaker_line(report))
    verdict = report["verdict"]
    for name, check in verdict["checks"].items():
        mark = "[green]PASS[/green]" if check["passed"] else "[red]FAIL[/red]"
        console.print(f"{mark} {name}: {check['detail']}")
    if verdict["protected_wins"]:
        console.print(f"The protected client won every phase. Results: {folder.resolve()}/")
    else:
        lost = ", ".join(name for name, check in verdict["checks"].items() if not check["passed"])
        console.print(
            f"The protected client did NOT win: it lost {lost}. Results: {folder.resolve()}/"
        )
    console.print(f"  report: {json_path}\n  chart:  {report['chart']}")
    return 0 if verdict["protected_wins"] else EXIT_PROTECTED_LOST


def _schedule(args: argparse.Namespace) -> Any:
    """The schedule to run; a deprecated file format is read, with how to convert it."""
    from . import default_schedule, load_schedule

    if not args.schedule:
        return default_schedule(quick=args.quick)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DeprecationWarning)
        schedule = load_schedule(args.schedule)
    for warning in caught:
        print(f"asyncres drill: {args.schedule}: {warning.message}", file=sys.stderr)
    return schedule


async def _run(
    run_drill: Any, options: Any, on_tick: Any, metrics_port: int | None, announce: Any
) -> Any:
    if metrics_port is None:
        return await run_drill(options, on_tick=on_tick)
    import prometheus_client

    from .. import prometheus

    # Registered on this loop: the server's thread asks it for each scrape's sample.
    registry = prometheus_client.CollectorRegistry()
    prometheus.register(registry)
    server, thread = prometheus_client.start_http_server(
        metrics_port, addr="127.0.0.1", registry=registry
    )
    announce(f"http://127.0.0.1:{server.server_address[1]}/metrics")
    try:
        return await run_drill(options, on_tick=on_tick)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
