"""The live terminal view of a running drill (rich)."""

from __future__ import annotations

from typing import Any

from ._service import PROTECTIONS

__all__ = ["LiveView"]


class LiveView:
    """Feeds drill snapshots into a rich Live table (four refreshes a second)."""

    def __init__(self, console: Any) -> None:
        from rich.live import Live

        self.console = console
        self.live = Live(self._render(None), console=console, refresh_per_second=4, transient=False)

    def __enter__(self) -> LiveView:
        self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.live.__exit__(None, None, None)

    def __call__(self, snapshot: dict[str, Any]) -> None:
        self.live.update(self._render(snapshot))

    def _render(self, snapshot: dict[str, Any] | None) -> Any:
        from rich.table import Table

        if snapshot is None:
            return Table(title="asyncres drill: starting the service, the proxies and the clients")
        title = (
            f"asyncres drill  t={snapshot['t']:5.1f}s / {snapshot['duration']:g}s  "
            f"phase: [bold]{snapshot['phase']}[/bold]"
        )
        table = Table(title=title, title_justify="left")
        for column in (
            "client",
            "done",
            "in flight",
            "success",
            "p50 ms",
            "p99 ms",
            "sent to backend",
            "reached",
            "fast-fail",
            "server shed/expired/cancelled",
            "breaker",
        ):
            table.add_column(column, justify="left" if column in ("client", "breaker") else "right")
        for name, row in snapshot["clients"].items():
            rate = row["success_rate"]
            style = (
                ""
                if rate is None
                else ("green" if rate >= 0.9 else "yellow" if rate >= 0.5 else "red")
            )
            table.add_row(
                name,
                str(row["done"]),
                str(row["in_flight"]),
                "—" if rate is None else f"[{style}]{rate * 100:.0f}%[/{style}]",
                "—" if row["p50"] is None else f"{row['p50'] * 1000:,.0f}",
                "—" if row["p99"] is None else f"{row['p99'] * 1000:,.0f}",
                str(row["sent"]),
                str(row["reached"]),
                str(row["rejected"]),
                "/".join(str(row[key]) for key in PROTECTIONS),
                row["breaker"] if name == "protected" else "(none)",
            )
        return table
