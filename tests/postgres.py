"""A throwaway PostgreSQL server for tests, started from the machine's binaries and stopped by PID.

Tests get a real PostgreSQL without Docker or a system service: ``initdb`` into a temporary directory, then
``postgres`` on a free port of 127.0.0.1 only. PostgreSQL refuses to run as root, so as root the server runs as
the ``postgres`` system user.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import pytest

HOST = "127.0.0.1"
DATABASE = "gateway"
SUPERUSER = "postgres"
MISSING = (
    "PostgreSQL server binaries (initdb, postgres) are missing: `make test` installs the Debian package "
    "`postgresql` (apt-get install -y postgresql)"
)


def find_bindir() -> Path:
    """The directory holding ``initdb`` and ``postgres``: pg_config's, else the newest Debian one, else PATH's.

    Debian's ``pg_config`` comes with libpq-dev and may name a directory without the server, hence the check.
    """
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True)
            candidates.append(Path(out.stdout.strip()))
        except (OSError, subprocess.SubprocessError):
            pass
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key, reverse=True)
    candidates.extend(Path(found) for found in versions)
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(initdb).resolve().parent)
    for bindir in candidates:
        if (bindir / "initdb").is_file() and (bindir / "postgres").is_file():
            return bindir
    raise RuntimeError(MISSING)


def _version_key(bindir: str) -> tuple[int, ...]:
    """Sort ``/usr/lib/postgresql/<version>/bin`` numerically, so 16 comes after 9.6."""
    return tuple(int(part) for part in re.findall(r"\d+", Path(bindir).parent.name))


def free_port() -> int:
    """A port nobody listens on right now; the kernel picks it, so parallel test runs do not collide."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _server_user() -> pwd.struct_passwd | None:
    """Who runs initdb and postgres: nobody special unless we are root, which PostgreSQL refuses."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam("postgres")
    except KeyError:
        pass
    try:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "postgres"], check=True, capture_output=True, timeout=30
        )
        return pwd.getpwnam("postgres")
    except (OSError, subprocess.SubprocessError, KeyError):
        return pwd.getpwnam("nobody")


def _client_env() -> dict[str, str]:
    """Our environment without ``PG*`` variables, so psql talks to our server and nothing else."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
    env["PGCONNECT_TIMEOUT"] = "5"
    return env


class PostgresServer:
    """``initdb`` into a temporary directory and ``postgres`` on a free loopback port, with a ``gateway`` database.

    Durability is off (fsync, full-page writes, synchronous commit): the data is thrown away anyway.
    """

    def __init__(self, start_timeout: float = 30.0) -> None:
        self.start_timeout = start_timeout
        self.bindir = find_bindir()
        self.user = _server_user()
        self.port = 0
        self.dir: Path | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.version_num = 0

    @property
    def pid(self) -> int | None:
        """The PID of the postmaster (setpriv execs, so it is postgres itself, not a wrapper)."""
        return self.process.pid if self.process is not None else None

    @property
    def log_path(self) -> Path:
        """The server's log file, inside the temporary directory."""
        assert self.dir is not None, "server not started"
        return self.dir / "postgres.log"

    def url(self, driver: str = "postgresql+asyncpg") -> str:
        """A SQLAlchemy URL for the ``gateway`` database, e.g. ``postgresql+asyncpg://postgres@127.0.0.1:PORT/gateway``."""
        return f"{driver}://{SUPERUSER}@{HOST}:{self.port}/{DATABASE}"

    def _as_server_user(self, args: list[str]) -> list[str]:
        """Drop root privileges with setpriv, which execs (keeping the PID) rather than forking like runuser."""
        if self.user is None:
            return args
        return [
            "setpriv",
            f"--reuid={self.user.pw_uid}",
            f"--regid={self.user.pw_gid}",
            "--clear-groups",
            "--",
            *args,
        ]

    def start(self) -> PostgresServer:
        """Initialise a cluster, start the server and wait until the ``gateway`` database exists."""
        if self.process is not None:
            return self
        self.dir = Path(tempfile.mkdtemp(prefix="pgtest-"))
        try:
            if self.user is not None:
                os.chown(self.dir, self.user.pw_uid, self.user.pw_gid)
            self._initdb()
            for attempt in range(3):
                self.port = free_port()
                if self._launch():
                    break
                if attempt == 2:
                    raise RuntimeError(f"postgres did not start:\n{self._log_tail()}")
            self.version_num = int(self.sql("SHOW server_version_num", database="postgres"))
            self.sql(f"CREATE DATABASE {DATABASE}", database="postgres")
        except BaseException:
            self.stop()
            raise
        atexit.register(self.stop)
        return self

    def _initdb(self) -> None:
        """Create the cluster; trust authentication, since only loopback can reach it."""
        assert self.dir is not None
        result = subprocess.run(
            self._as_server_user(
                [
                    str(self.bindir / "initdb"),
                    "--pgdata",
                    str(self.dir / "data"),
                    "--auth=trust",
                    f"--username={SUPERUSER}",
                    "--encoding=UTF8",
                    "--locale=C",
                    "--no-sync",
                ]
            ),
            cwd=self.dir,
            env=_client_env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        if result.returncode != 0:
            raise RuntimeError(f"initdb failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")

    def _launch(self) -> bool:
        """Start postgres on ``self.port``; False when it exited early, e.g. because the port was taken meanwhile."""
        assert self.dir is not None
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self._as_server_user(
                    [
                        str(self.bindir / "postgres"),
                        "-D",
                        str(self.dir / "data"),
                        "-p",
                        str(self.port),
                        "-k",
                        str(self.dir),
                        "-c",
                        f"listen_addresses={HOST}",
                        "-c",
                        "fsync=off",
                        "-c",
                        "full_page_writes=off",
                        "-c",
                        "synchronous_commit=off",
                    ]
                ),
                cwd=self.dir,
                env=_client_env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Its own process group: Ctrl-C in pytest does not hit it, and stop() can kill backends too.
                start_new_session=True,
            )
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.process = None
                return False
            if self._accepts_connections():
                return True
            time.sleep(0.05)
        raise TimeoutError(f"postgres did not accept connections within {self.start_timeout} s:\n{self._log_tail()}")

    def _accepts_connections(self) -> bool:
        """The port is open and a query runs (the socket opens before recovery has finished)."""
        try:
            with socket.create_connection((HOST, self.port), timeout=1):
                pass
        except OSError:
            return False
        return self._psql("SELECT 1", database="postgres").returncode == 0

    def _psql(self, sql: str, database: str) -> subprocess.CompletedProcess[str]:
        """Run one statement with psql over TCP; as root that is fine, since psql is only a client."""
        psql = self.bindir / "psql"
        return subprocess.run(
            [
                str(psql) if psql.is_file() else "psql",
                "--no-psqlrc",
                "--quiet",
                "--no-align",
                "--tuples-only",
                "--set=ON_ERROR_STOP=1",
                f"--host={HOST}",
                f"--port={self.port}",
                f"--username={SUPERUSER}",
                f"--dbname={database}",
                f"--command={sql}",
            ],
            env=_client_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )

    def sql(self, sql: str, database: str = DATABASE) -> str:
        """Run one statement and return psql's unaligned output; raise with psql's message if it fails."""
        result = self._psql(sql, database)
        if result.returncode != 0:
            raise RuntimeError(f"psql failed on {sql!r}: {result.stderr.strip()}")
        return result.stdout.strip()

    def reset(self) -> None:
        """Drop and recreate ``gateway``, so a test starts from an empty database whatever ran before it."""
        self.sql(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE datname = '{DATABASE}' AND pid <> pg_backend_pid()",
            database="postgres",
        )
        force = " WITH (FORCE)" if self.version_num >= 130000 else ""
        self.sql(f"DROP DATABASE IF EXISTS {DATABASE}{force}", database="postgres")
        self.sql(f"CREATE DATABASE {DATABASE}", database="postgres")

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the server by PID and remove its directory; safe to call twice.

        SIGTERM is a "smart" shutdown that waits for clients to leave, so after a short wait SIGINT ("fast")
        disconnects them, and SIGKILL to the process group is the last resort.
        """
        atexit.unregister(self.stop)
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            pid = process.pid
            deadline = time.monotonic() + timeout
            for sig, wait in ((signal.SIGTERM, min(2.0, timeout / 3)), (signal.SIGINT, None)):
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    break
                try:
                    process.wait(wait if wait is not None else max(0.1, deadline - time.monotonic()))
                    break
                except subprocess.TimeoutExpired:
                    continue
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
                process.wait(10)
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def _log_tail(self, chars: int = 3000) -> str:
        """The end of the server log, for error messages."""
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except (OSError, AssertionError):
            return "(no log)"

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One server for the whole session: starting one takes about a second; call ``reset()`` per test."""
    with PostgresServer() as server:
        yield server
