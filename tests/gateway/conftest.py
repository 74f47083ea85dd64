"""Fixtures for gateway tests.

In process (the fast loop, ``make check``): ``sims`` (three trinosim servers), ``make_sim``,
``make_gateway`` and ``gateway`` (the gateway in front of ``sims``), all on one event loop in a
background thread of the test process, with real sockets and real clients.

Child processes (what needs them: killing, pausing, restarting, several workers): ``clusters``
(three trinosim processes) and ``GatewayProcess``.

A test that uses a store runs on the in-memory one unless it says otherwise: ``every_store`` (in
memory, the embedded SQLite and PostgreSQL) for what a store itself promises, proved case by case in
``test_store_contract.py`` and by the tests of what a store keeps and shares (the history's filters
and migrations, a transaction's binding between gateways, state across workers and restarts);
``one_store_per_query_path`` for the query path, which differs where the gateway holds its waiting
queries in the store.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.inprocess import InProcessGateway
from trinosim import TrinoSimProcess
from trinosim.gateway_process import running
from trinosim.inprocess import InProcessSim, LoopThread

STORES = ["memory", "sqlite", "postgres"]

# For what a store promises (the contract of gateway.store.base.Store, what it keeps and shares
# between gateways, workers and restarts): the same cases on each kind.
every_store = pytest.mark.parametrize("store_kind", STORES, indirect=True, scope="session")
# For a test whose store plays no part in what it proves (a backend's health, a router): the in-memory
# store, as for every test that says nothing (the default, written out where a reader might ask).
store_plays_no_part = pytest.mark.parametrize("store_kind", ["memory"], indirect=True, scope="session")
# For a test of the query path whose store plays no other part (clients, a backend failing under a
# query): the queue is a worker's memory on the in-memory store and the store's on SQLite and
# PostgreSQL (gateway.queries.admission), so it runs in memory and on PostgreSQL, once per path;
# SQLite would take PostgreSQL's path again (one SQL state; tests/gateway/test_admission.py and the
# queue state's contract test run on all three).
one_store_per_query_path = pytest.mark.parametrize("store_kind", ["memory", "postgres"], indirect=True, scope="session")


# Modules kept by their owners as they are, whose tests of the query path run once per path as if
# marked ``one_store_per_query_path``.
QUERY_PATH_MODULES = frozenset({"test_queue_views.py"})


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "store_kind" not in metafunc.fixturenames or Path(str(metafunc.definition.path)).name not in QUERY_PATH_MODULES:
        return
    if not any("store_kind" in str(mark.args[0]) for mark in metafunc.definition.iter_markers("parametrize")):
        metafunc.parametrize("store_kind", ["memory", "postgres"], indirect=True, scope="session")


@pytest.fixture(scope="session")
def clusters() -> Iterator[list[TrinoSimProcess]]:
    """trino-1 and trino-2 build URIs from X-Forwarded-* headers; trino-3 ignores them, so the
    gateway must rewrite its URIs itself."""
    servers = [
        TrinoSimProcess(name="trino-1"),
        TrinoSimProcess(name="trino-2"),
        TrinoSimProcess(name="trino-3", forwarded="ignore"),
    ]
    with running(servers):
        yield servers


@pytest.fixture(scope="session")
def store_kind(request: pytest.FixtureRequest) -> str:
    """The in-memory store unless the test is marked ``every_store`` or ``one_store_per_query_path``."""
    return getattr(request, "param", "memory")


@pytest.fixture(scope="session")
def postgres(store_kind: str):
    if store_kind != "postgres":
        yield None
        return
    from tests.postgres import PostgresServer

    with PostgresServer() as server:
        yield server


@pytest.fixture
def store_url(store_kind: str, postgres, tmp_path) -> str:
    """A fresh, empty store for one test."""
    if store_kind == "postgres":
        postgres.reset()
        return postgres.url(driver="postgresql")
    if store_kind == "memory":
        return "memory://"
    return f"sqlite:///{tmp_path / 'gateway.db'}"


@pytest.fixture
def lasting_store_url(store_url: str) -> str:
    """A store that outlives a gateway: the SQL ones."""
    if store_url.startswith("memory:"):
        pytest.skip("the in-memory store ends with its gateway")
    return store_url


@pytest.fixture
def make_gateway(loop_thread: LoopThread, store_url: str) -> Iterator[Callable[..., InProcessGateway]]:
    """Start in-process gateways (on the test's store unless told otherwise); all stop after the test."""
    started: list[InProcessGateway] = []

    def start(config: dict[str, Any] | None = None, store: str | None = None) -> InProcessGateway:
        gateway = InProcessGateway(loop_thread, config, store or store_url).start()
        started.append(gateway)
        return gateway

    yield start
    for gateway in started:
        gateway.stop()


def three_backends(servers: list[Any]) -> dict[str, Any]:
    return {
        "backends": [
            {"name": "trino-1", "proxy_to": servers[0].url, "routing_group": "adhoc"},
            {"name": "trino-2", "proxy_to": servers[1].url, "routing_group": "adhoc"},
            {"name": "trino-3", "proxy_to": servers[2].url, "routing_group": "etl"},
        ]
    }


@pytest.fixture
def gateway(make_gateway: Callable[..., InProcessGateway], sims: list[InProcessSim]) -> InProcessGateway:
    """A gateway with trino-1 and trino-2 in group adhoc and trino-3 in group etl."""
    return make_gateway(three_backends(sims))


def owner(clusters: list[Any], query_id: str) -> list[str]:
    """Names of the clusters that have a record of ``query_id``."""
    return [c.name for c in clusters if any(q["queryId"] == query_id for q in c.queries())]
