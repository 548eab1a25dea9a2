"""The `asyncres` command line: the proxy subcommand as a real process, the drill's options."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from asyncres import cli

if TYPE_CHECKING:
    from servers import RunningServer

ROOT = Path(__file__).resolve().parent.parent


@contextmanager
def proxy_process(*args: str) -> Iterator[tuple[subprocess.Popen[str], int, list[str]]]:
    """Start ``asyncres proxy ARGS``; yield the process, its port and its first lines."""
    process = subprocess.Popen(
        [sys.executable, "-m", "asyncres.cli", "proxy", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        lines = []
        while not lines or lines[-1] != "Ctrl-C stops.":
            line = process.stdout.readline()
            if not line:
                pytest.fail(f"the proxy did not start: {process.stderr.read()}")  # type: ignore[union-attr]
            lines.append(line.strip())
        match = re.search(r":(\d+) -> ", lines[0])
        assert match, lines
        yield process, int(match.group(1)), lines
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_proxy_command_injects_latency_and_stops_on_ctrl_c(
    http_server: RunningServer, backend: str
) -> None:
    """`asyncres proxy --toxic latency=150ms` slows real requests; Ctrl-C stops it cleanly."""
    upstream = f"127.0.0.1:{http_server.port}"
    with proxy_process(
        "--upstream", upstream, "--toxic", "latency=150ms", "--backend", backend
    ) as (process, port, lines):
        assert lines[0] == f"asyncres proxy: 127.0.0.1:{port} -> {upstream}"
        assert lines[1] == "LatencyToxic(latency=0.15, jitter=0.0, direction='downstream')"
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            start = time.perf_counter()
            response = client.get("/bytes", params={"n": 100})
            elapsed = time.perf_counter() - start
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=10)
    assert response.status_code == 200
    assert 0.15 <= elapsed < 1.0
    assert process.returncode == 0, err
    assert "stopped after 1 connections" in out


def test_proxy_command_can_start_down() -> None:
    """--down starts refusing connections; SIGTERM stops the proxy too."""
    with proxy_process("--upstream", "127.0.0.1:9", "--down") as (process, port, lines):
        assert lines[0].endswith("(down)")
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{port}/")
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=10)
    assert process.returncode == 0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["proxy", "--upstream", "nowhere"], "upstream must be HOST:PORT"),
        (["proxy", "--upstream", "127.0.0.1:1", "--toxic", "jam"], "toxic type must be one of"),
        (["proxy", "--upstream", "127.0.0.1:1", "--toxic", "latency=soon"], "latency must be"),
        (["proxy"], "the following arguments are required: --upstream"),
        (["drill", "--schedule", "a.toml", "--scenario", "b.toml"], "give only --schedule"),
        ([], "the following arguments are required: COMMAND"),
    ],
)
def test_bad_arguments_exit_with_usage(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Bad arguments print the reason and exit with status 2."""
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_listen_address_in_use_is_reported() -> None:
    """A listen port already taken is an error message and status 1, not a traceback."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "asyncres.cli",
                "proxy",
                "--upstream",
                "127.0.0.1:9",
                "--listen",
                f"127.0.0.1:{port}",
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert result.returncode == 1
    assert "Address already in use" in result.stderr


def test_drill_help_offers_schedule_and_marks_scenario_deprecated(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`drill --help` documents --schedule FILE and calls --scenario its deprecated spelling."""
    with pytest.raises(SystemExit) as info:
        cli.main(["drill", "--help"])
    assert info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--schedule FILE a chaos.Schedule TOML file of [[phases]] tables" in text
    assert "--scenario FILE deprecated spelling of --schedule" in text


def test_deprecated_scenario_option_becomes_schedule(capsys: pytest.CaptureFixture[str]) -> None:
    """--scenario FILE is read as --schedule FILE, with a warning on stderr."""
    parser = cli.build_parser()
    args = parser.parse_args(["drill", "--scenario", "old.toml"])
    assert (args.schedule, args.scenario) == (None, "old.toml")
    cli._deprecated_scenario_option(parser, args)
    assert args.schedule == "old.toml"
    assert "--scenario is deprecated and will be removed in asyncres 0.3; use --schedule FILE" in (
        capsys.readouterr().err
    )
    plain = parser.parse_args(["drill", "--schedule", "new.toml"])
    cli._deprecated_scenario_option(parser, plain)
    assert plain.schedule == "new.toml"
    assert capsys.readouterr().err == ""
