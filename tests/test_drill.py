"""asyncres drill: the scenario format, and the whole drill end to end in --quick mode."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from asyncres.drill import default_scenario, load_scenario, scenario_from_dict

ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args: str, timeout: float = 90) -> tuple[subprocess.CompletedProcess[str], float]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    start = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "asyncres.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=ROOT,
    )
    return result, time.monotonic() - start


def assert_png(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG file"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert width > 300
    assert height > 300
    assert data.rstrip(b"\x00").endswith(b"IEND\xaeB`\x82")
    return width, height


def test_default_scenarios_fit_the_time_limits() -> None:
    """The full drill's traffic fits 60 s with its grace period, --quick fits 15 s."""
    full, quick = default_scenario(), default_scenario(quick=True)
    assert [p.name for p in full.phases] == [
        "steady",
        "latency spike",
        "error burst",
        "hard outage",
        "slow database",
        "recovery",
    ]
    assert [p.name for p in quick.phases] == [p.name for p in full.phases]
    assert full.duration + 6.0 <= 60.0
    assert quick.duration + 1.5 <= 15.0
    assert full.phases[3].faults.outage
    assert full.phases[2].faults.error_period


def test_scenario_files_are_validated(tmp_path: Path) -> None:
    """A TOML scenario is parsed into phases; mistakes name the offending key."""
    path = tmp_path / "gameday.toml"
    path.write_text(
        '[[phase]]\nname = "calm"\nduration = 2\n\n'
        '[[phase]]\nname = "down"\nduration = 3\noutage = true\n\n'
        '[[phase]]\nname = "slow"\nduration = 1.5\nlatency = 0.2\njitter = 0.05\n'
    )
    scenario = load_scenario(path)
    assert scenario.duration == 6.5
    assert scenario.phases[1].faults.outage
    assert scenario.phases[2].faults.latency == 0.2
    bad: list[tuple[dict[str, Any], str]] = [
        ({}, "`phase`"),
        ({"phase": [{"name": "x"}]}, "phase[0].duration"),
        ({"phase": [{"duration": -1}]}, "phase[0].duration"),
        ({"phase": [{"duration": 1, "latency": -0.1}]}, "phase[0].latency"),
        ({"phase": [{"duration": 1, "outage": "yes"}]}, "phase[0].outage"),
        ({"phase": [{"duration": 1, "bogus": 1}]}, "unknown keys"),
    ]
    for data, message in bad:
        with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
            scenario_from_dict(data)


def test_quick_drill_end_to_end(tmp_path: Path) -> None:
    """`asyncres drill --quick` runs in 15 s, writes its report and chart, and protected wins."""
    result, elapsed = run_cli("drill", "--quick", "--no-live", "--output", str(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert elapsed < 25.0  # 15 s of drill, plus interpreter and server start-up
    assert "The protected client won" in result.stdout
    assert str(tmp_path.resolve()) in result.stdout

    report = json.loads((tmp_path / "report.json").read_text())
    assert report["version"] == 1
    assert next(p["name"] for p in report["phases"]) == "steady"
    for name in ("naive", "protected"):
        client = report["clients"][name]
        assert set(client) == {"phases", "timeline", "totals", "breaker"}
        assert set(client["phases"]) == {p["name"] for p in report["phases"]}
        steady = client["phases"]["steady"]
        assert steady["success_rate"] == 1.0
        for key in ("offered", "succeeded", "p50_ms", "p99_ms", "amplification", "sent_to_backend"):
            assert key in steady
        assert client["timeline"]
    verdict = report["verdict"]
    assert verdict["protected_wins"] is True, verdict
    assert set(verdict["checks"]) == {
        "outage_fails_fast",
        "recovers_after_outage",
        "error_burst_success",
    }
    protected, naive = report["clients"]["protected"], report["clients"]["naive"]
    assert protected["phases"]["hard outage"]["amplification"] <= 1.25
    assert naive["phases"]["hard outage"]["amplification"] > 1.25  # the naive one piles on
    assert (
        protected["phases"]["error burst"]["success_rate"]
        > naive["phases"]["error burst"]["success_rate"]
    )
    states = [event["state"] for event in protected["breaker"]]
    assert "open" in states
    assert states[-1] == "closed"
    assert_png(Path(report["chart"]))


def test_drill_with_a_scenario_file(tmp_path: Path) -> None:
    """--scenario runs a user's phases instead of the default schedule."""
    scenario = tmp_path / "short.toml"
    scenario.write_text(
        '[[phase]]\nname = "calm"\nduration = 1\n\n'
        '[[phase]]\nname = "outage"\nduration = 1.5\noutage = true\n'
    )
    out = tmp_path / "out"
    result, _ = run_cli(
        "drill", "--scenario", str(scenario), "--no-live", "--rate", "20", "--output", str(out)
    )
    # No error burst, and recovery cannot be seen within 2.5 s: the exit status may be 3.
    assert result.returncode in (0, 3), result.stdout + result.stderr
    report = json.loads((out / "report.json").read_text())
    assert [p["name"] for p in report["phases"]] == ["calm", "outage"]
    assert report["clients"]["naive"]["phases"]["calm"]["offered"] == 20
    assert "outage_fails_fast" in report["verdict"]["checks"]


def test_bad_arguments_exit_with_usage_errors() -> None:
    """A bad rate is refused before anything starts."""
    result, _ = run_cli("drill", "--rate", "0")
    assert result.returncode == 2
    assert "--rate" in result.stderr
