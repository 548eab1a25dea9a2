"""A throwaway PostgreSQL server for tests and benchmarks: initdb + pg_ctl in a temp dir.

The machine's own binaries are used (Debian puts them in ``/usr/lib/postgresql/<v>/bin``,
else ``pg_config --bindir`` and ``$PATH`` are tried; ``ASYNCRES_PG_BIN`` names the directory
and disables the search). The
server listens on 127.0.0.1 only, on a free port, with its unix socket inside the temp dir.
PostgreSQL refuses to run as root: when we are root the server runs as the ``postgres``
system user (or a system user created for the purpose), and the temp dir is handed to it.

Used by ``tests/conftest.py`` (a session fixture) and ``benchmarks/db_slowdown.py``.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PostgresServer", "PostgresUnavailable", "find_bindir"]

_FALLBACK_USER = "asyncres-pg"
# Settings for a fast, disposable test cluster: durability is not the point here.
_SETTINGS = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "60",
    "shared_buffers": "32MB",
    "listen_addresses": "127.0.0.1",
    "log_min_messages": "warning",
}


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL binaries on this machine, or the server would not start."""


def find_bindir() -> Path | None:
    """The directory holding initdb/pg_ctl/postgres, or None."""
    candidates: list[str] = []
    if os.environ.get("ASYNCRES_PG_BIN"):
        # An explicit choice is the only candidate (also how tests simulate a bare machine).
        path = Path(os.environ["ASYNCRES_PG_BIN"])
        found = all((path / tool).exists() for tool in ("initdb", "pg_ctl", "postgres"))
        return path if found else None
    versioned = glob.glob("/usr/lib/postgresql/*/bin/initdb")
    versioned.sort(key=lambda p: _version_key(Path(p).parent.parent.name), reverse=True)
    candidates += [str(Path(p).parent) for p in versioned]
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True
            )
            candidates.append(out.stdout.strip())
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(str(Path(initdb).parent))
    for candidate in candidates:
        path = Path(candidate)
        if all((path / tool).exists() for tool in ("initdb", "pg_ctl", "postgres")):
            return path
    return None


def _version_key(name: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in name.split("."))
    except ValueError:
        return (0,)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class _RunAs:
    uid: int | None
    gid: int | None

    def kwargs(self) -> dict[str, object]:
        if self.uid is None:
            return {}
        return {"user": self.uid, "group": self.gid, "extra_groups": []}


def _run_as() -> _RunAs:
    """Who runs the server: ourselves, or (as root) an unprivileged system user."""
    if os.geteuid() != 0:
        return _RunAs(None, None)
    for name in ("postgres", _FALLBACK_USER):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        return _RunAs(entry.pw_uid, entry.pw_gid)
    useradd = shutil.which("useradd")
    if useradd is None:
        raise PostgresUnavailable("running as root and no unprivileged user to run postgres")
    subprocess.run(
        [useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", _FALLBACK_USER],
        check=True,
        capture_output=True,
        timeout=30,
    )
    entry = pwd.getpwnam(_FALLBACK_USER)
    return _RunAs(entry.pw_uid, entry.pw_gid)


class PostgresServer:
    """One PostgreSQL cluster in a temp dir; `start()`, `stop()`, `destroy()`.

    ``dsn`` connects as the superuser to database ``postgres`` over TCP on 127.0.0.1.
    A cluster can be cloned from another stopped one (`clone_from`), which is much faster
    than a second ``initdb``.
    """

    def __init__(self, bindir: Path, *, settings: dict[str, str] | None = None) -> None:
        self.bindir = bindir
        self.runas = _run_as()
        self.root = Path(tempfile.mkdtemp(prefix="asyncres-pg-"))
        os.chmod(self.root, 0o755)
        self.datadir = self.root / "data"
        self.sockdir = self.root / "sock"
        self.logfile = self.root / "server.log"
        self.settings = {**_SETTINGS, **(settings or {})}
        self.port = 0
        self.user = "postgres"
        self.running = False
        self.sockdir.mkdir()
        self.logfile.touch()
        if self.runas.uid is not None:
            for path in (self.root, self.sockdir, self.logfile):
                os.chown(path, self.runas.uid, self.runas.gid or 0)

    @property
    def dsn(self) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            list(args),
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.root,
            **self.runas.kwargs(),  # type: ignore[arg-type]
        )
        if result.returncode != 0:
            raise PostgresUnavailable(
                f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n"
                f"{result.stderr}\n{self.log_tail()}"
            )
        return result

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def initdb(self) -> None:
        self._run(
            str(self.bindir / "initdb"),
            "-D",
            str(self.datadir),
            "-U",
            self.user,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        )

    def clone_from(self, other: PostgresServer) -> None:
        """Copy another (stopped) cluster's data directory instead of running initdb."""
        self._run("cp", "-a", str(other.datadir), str(self.datadir))

    def start(self) -> None:
        """Start on a free port; a port taken in the meantime is retried."""
        last: Exception | None = None
        for _ in range(3):
            self.port = _free_port()
            options = [f"-p {self.port}", f"-k {self.sockdir}"]
            options += [f"-c {key}={value}" for key, value in self.settings.items()]
            try:
                self._run(
                    str(self.bindir / "pg_ctl"),
                    "-D",
                    str(self.datadir),
                    "-l",
                    str(self.logfile),
                    "-o",
                    " ".join(options),
                    "-w",
                    "-t",
                    "60",
                    "start",
                    timeout=90,
                )
            except PostgresUnavailable as exc:
                last = exc
                continue
            self.running = True
            return
        raise PostgresUnavailable(f"postgres did not start: {last}")

    def base_backup_from(self, primary: PostgresServer) -> None:
        """Make this cluster a streaming standby of the running ``primary``
        (``pg_basebackup -R``: it starts in recovery, following the primary)."""
        self._run(
            str(self.bindir / "pg_basebackup"),
            "-h", "127.0.0.1", "-p", str(primary.port), "-U", primary.user,
            "-D", str(self.datadir), "-R", "-X", "stream", "--no-sync",
            timeout=120,
        )  # fmt: skip

    def promote(self) -> None:
        """Promote a standby to primary (``pg_ctl promote``, waiting until it is done)."""
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-w", "promote")

    def restart_same_port(self) -> None:
        """Start again on the port it had (clients keep their DSN across an outage)."""
        options = [f"-p {self.port}", f"-k {self.sockdir}"]
        options += [f"-c {key}={value}" for key, value in self.settings.items()]
        deadline = time.monotonic() + 30
        while True:
            try:
                self._run(
                    str(self.bindir / "pg_ctl"),
                    "-D",
                    str(self.datadir),
                    "-l",
                    str(self.logfile),
                    "-o",
                    " ".join(options),
                    "-w",
                    "-t",
                    "60",
                    "start",
                    timeout=90,
                )
            except PostgresUnavailable:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)  # the old socket may linger for a moment
                continue
            self.running = True
            return

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast`` disconnects clients; ``immediate`` is a crash)."""
        if not self.running:
            return
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-m", mode, "-w", "stop")
        self.running = False

    def destroy(self) -> None:
        with contextlib.suppress(PostgresUnavailable, OSError, subprocess.SubprocessError):
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    def psql(self, sql: str) -> None:
        """Run SQL through psql against the running server."""
        psql = self.bindir / "psql"
        self._run(
            str(psql), "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user,
            "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-q", "-c", sql,
        )  # fmt: skip
