"""What ``asyncres drill`` does once its arguments are parsed (see `asyncres.cli`)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

__all__ = ["run"]

EXIT_PROTECTED_LOST = 3


def run(args: argparse.Namespace) -> int:
    import anyio
    from rich.console import Console

    from . import DrillConfig, default_scenario, load_scenario, run_drill
    from ._live import LiveView
    from ._report import summary_table, write_chart, write_json

    scenario = load_scenario(args.scenario) if args.scenario else default_scenario(quick=args.quick)
    config = DrillConfig(scenario, rate=args.rate, seed=args.seed, grace=2.0 if args.quick else 8.0)
    console = Console()
    live = not args.no_live and console.is_terminal
    if not console.is_terminal:
        console = Console(width=140)  # logs and CI: do not squeeze the tables to 80 columns
    console.print(
        f"[bold]asyncres drill[/bold]: {len(scenario.phases)} phases, "
        f"{scenario.duration:g} s, {args.rate:g} requests/s per client, seed {args.seed}"
    )
    last_phase: list[str] = [""]

    def log_phase(snapshot: dict[str, Any]) -> None:
        if snapshot["phase"] != last_phase[0]:
            last_phase[0] = snapshot["phase"]
            console.print(f"  t={snapshot['t']:5.1f}s  phase: {snapshot['phase']}")

    started = time.monotonic()
    if live:
        with LiveView(console) as view:
            report = anyio.run(_run, run_drill, config, view, backend=args.backend)
    else:
        report = anyio.run(_run, run_drill, config, log_phase, backend=args.backend)
    report["wall_seconds"] = round(time.monotonic() - started, 2)

    folder = Path(args.output)
    folder.mkdir(parents=True, exist_ok=True)
    report["chart"] = str(write_chart(report, folder))
    json_path = write_json(report, folder)
    console.print(summary_table(report))
    verdict = report["verdict"]
    for name, check in verdict["checks"].items():
        mark = "[green]PASS[/green]" if check["passed"] else "[red]FAIL[/red]"
        console.print(f"{mark} {name}: {check['detail']}")
    outcome = "won" if verdict["protected_wins"] else "did NOT win"
    console.print(f"The protected client {outcome}. Results: {folder.resolve()}/")
    console.print(f"  report: {json_path}\n  chart:  {report['chart']}")
    return 0 if verdict["protected_wins"] else EXIT_PROTECTED_LOST


async def _run(run_drill: Any, config: Any, on_tick: Any) -> Any:
    return await run_drill(config, on_tick=on_tick)
