"""The drill's outputs: a summary table, a JSON report and a chart."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ._service import PROTECTIONS

__all__ = ["summary_table", "write_chart", "write_json"]

COLOURS = {"naive": "#d62728", "protected": "#1f77b4"}
PHASE_COLOURS = ["#f2f2f2", "#fff3d6", "#ffe0e0", "#e8e0ff", "#e0f0ff", "#e6ffe6"]


def write_json(report: dict[str, Any], folder: Path) -> Path:
    path = folder / "report.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    return path


def write_chart(report: dict[str, Any], folder: Path) -> Path:
    """Success rate, p99 latency and backend load over time, phases shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 1, figsize=(11, 8.5), sharex=True)
    success, latency, load = axes
    for index, phase in enumerate(report["phases"]):
        for axis in axes:
            axis.axvspan(
                phase["start"], phase["end"], color=PHASE_COLOURS[index % len(PHASE_COLOURS)]
            )
        success.text(
            (phase["start"] + phase["end"]) / 2,
            1.04,
            phase["name"],
            ha="center",
            va="bottom",
            fontsize=8,
            transform=success.get_xaxis_transform(),
        )
    offered = None
    for name, data in report["clients"].items():
        timeline = data["timeline"]
        t = [row["t"] + row["step"] / 2 for row in timeline]
        colour = COLOURS.get(name)
        success.plot(t, [_nan(row["success_rate"]) for row in timeline], color=colour, label=name)
        latency.plot(t, [_nan(row["p99_ms"]) for row in timeline], color=colour, label=name)
        load.plot(
            t, [row["sent_to_backend"] / row["step"] for row in timeline], color=colour, label=name
        )
        offered = [row["offered"] / row["step"] for row in timeline]
    if offered is not None:
        load.plot(t, offered, color="black", linestyle="--", linewidth=1, label="offered")
    success.set_ylabel("success rate")
    success.set_ylim(-0.02, 1.02)
    success.legend(loc="lower left")
    latency.set_ylabel("p99 latency (ms)")
    latency.set_yscale("log")
    load.set_ylabel("requests sent / s")
    load.set_xlabel("seconds since the drill began (by request start)")
    load.legend(loc="upper left")
    fig.suptitle("asyncres drill: naive client vs protected client", y=0.995)
    fig.tight_layout()
    path = folder / "chart.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _nan(value: float | None) -> float:
    return float("nan") if value is None else value


def summary_table(report: dict[str, Any]) -> Any:
    """A rich Table: one row per phase and client."""
    from rich.table import Table

    table = Table(
        title="asyncres drill — per phase (sent/offered: load on the backend; reached: "
        "requests the service saw; server shed/expired/cancelled: what the protected "
        "backend's asyncres.asgi.protect did — shed with 503 + Retry-After, answered 504 on "
        "arrival with no budget left, stopped at the caller's deadline)",
        title_justify="left",
    )
    for column, justify in [
        ("phase", "left"),
        ("client", "left"),
        ("offered", "right"),
        ("success", "right"),
        ("fast-fail", "right"),
        ("p50 ms", "right"),
        ("p99 ms", "right"),
        ("sent/offered", "right"),
        ("reached", "right"),
        ("server shed/expired/cancelled", "right"),
    ]:
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for phase in report["phases"]:
        for name, data in report["clients"].items():
            row = data["phases"][phase["name"]]
            table.add_row(
                phase["name"] if name == "naive" else "",
                name,
                str(row["offered"]),
                _pct(row["success_rate"]),
                str(row["rejected_fast"]),
                _num(row["p50_ms"]),
                _num(row["p99_ms"]),
                "—" if row["amplification"] is None else f"{row['amplification']:.2f}x",
                str(row["reached_backend"]),
                "/".join(str(row[f"backend_{key}"]) for key in PROTECTIONS),
            )
        table.add_section()
    return table


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f}%"


def _num(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f}"


def _cycles(states: list[str]) -> str:
    """``open > half_open > open > half_open > open`` as ``(open > half_open) x2 > open``."""
    parts: list[str] = []
    i = 0
    while i < len(states):
        pair = states[i : i + 2]
        n = 1
        while len(pair) == 2 and states[i + 2 * n : i + 2 * n + 2] == pair:
            n += 1
        if n > 1:
            parts.append(f"({pair[0]} > {pair[1]}) x{n}")
            i += 2 * n
        else:
            parts.append(states[i])
            i += 1
    return " > ".join(parts)


def breaker_line(report: dict[str, Any]) -> str:
    """The protected client's breaker transitions (one breaker per zone), phase by phase."""
    transitions = report["clients"]["protected"]["breaker"]
    if not transitions:
        return "Protected client's breakers: stayed closed."
    phases = report["phases"]

    def phase_at(t: float) -> str:
        for phase in phases:
            if phase["start"] <= t < phase["end"]:
                return str(phase["name"])
        return "after the schedule"

    # phase -> zone -> states, in order of first appearance.
    grouped: dict[str, dict[str, list[str]]] = {}
    for item in transitions:
        zones = grouped.setdefault(phase_at(item["t"]), {})
        zones.setdefault(str(item.get("zone", "")), []).append(str(item["state"]))
    parts = [
        f"{phase}: "
        + ", ".join(f"{zone} {_cycles(states)}".strip() for zone, states in zones.items())
        for phase, zones in grouped.items()
    ]
    return (
        f"Protected client's breakers (one per zone, {len(transitions)} transitions) — "
        + "; ".join(parts)
    )
