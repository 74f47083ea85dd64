"""Fixtures of the chaos suite: clusters of every registered kind, a gateway tuned to notice
faults within a second or two, and the summary table printed at the end of the session.

A test that takes a ``kind`` argument runs on trinosim processes; a scenario marked
``every_cluster_kind`` runs once per kind in ``CLUSTER_KINDS``: trinosim as a process, and trinosim
in a container (skipped, with the reason, when no Docker engine answers). That mark is for the
scenarios whose fault the kind changes: a container is killed, paused and restarted by the engine
(``docker kill``, ``docker pause``, a new container under the same name and port), a process by a
signal. A fault the cluster itself plays (503s, garbage, hanging polls, health flapping), a fault
between the gateway and the cluster (the TCP proxy) or in the gateway, its store or the fleet in
front of it (a node killed, PostgreSQL stopped) is the same whatever runs the cluster; that the
container kind obeys trinosim's knobs, and is killed, paused and restarted as a cluster should be,
``test_containers.py`` proves on its own. The real ``trinodb/trino`` kind is exercised by
``test_containers.py`` only: the scenarios' workload and faults need trinosim (slow queries by
session property, 5xx/garbage/hang knobs).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from chaos.clusters import Cluster, ProcessCluster
from chaos.containers import ContainerCluster, unavailable_reasons
from chaos.report import RESULTS, SUMMARY
from trinosim.gateway_process import GatewayProcess

# kind name -> class constructed with the cluster's name (and trinosim's options as keywords).
CLUSTER_KINDS: dict[str, Callable[..., Cluster]] = {"process": ProcessCluster, "container": ContainerCluster}
# The kind of a scenario not marked ``every_cluster_kind``.
DEFAULT_KIND = "process"
every_cluster_kind = pytest.mark.every_cluster_kind

# Health checked every 0.5 s, two failures in a row make a backend UNHEALTHY, two successes
# HEALTHY again; a backend that does not answer a request within 3 s has timed out (trinosim holds
# an idle poll up to 1 s, so 3 s is a hang, not a slow page).
CHAOS_GATEWAY_CONFIG: dict[str, Any] = {
    "health": {"interval": 0.5, "timeout": 1.0, "failure_threshold": 2, "success_threshold": 2},
    "proxy": {"connect_timeout": 1.0, "read_timeout": 3.0},
    "routing": {"backend_refresh_seconds": 0.5},
}


# Set at configuration: this process is a pytest-xdist worker (the summary is printed elsewhere).
_on_xdist_worker = False


def pytest_configure(config: pytest.Config) -> None:
    global _on_xdist_worker
    _on_xdist_worker = hasattr(config, "workerinput")
    config.addinivalue_line("markers", "every_cluster_kind: the scenario runs on each kind of CLUSTER_KINDS")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every chaos scenario starts processes and waits on real time: none is in ``make check``."""
    here = Path(__file__).parent
    for item in items:
        path = Path(str(item.path))
        if here in path.parents:
            item.add_marker(pytest.mark.slow)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "kind" in metafunc.fixturenames:
        reasons = unavailable_reasons()
        kinds = list(CLUSTER_KINDS) if metafunc.definition.get_closest_marker("every_cluster_kind") else [DEFAULT_KIND]
        metafunc.parametrize(
            "kind",
            [
                pytest.param(kind, marks=pytest.mark.skip(reason=f"{kind} clusters: {reasons[kind]}"))
                if kind in reasons
                else kind
                for kind in kinds
            ],
        )


ClusterFactory = Callable[..., Cluster]


@pytest.fixture
def cluster_factory() -> Iterator[ClusterFactory]:
    """``cluster_factory(kind, name, **options)``: a started cluster (``options``: trinosim's, e.g.
    ``page_rows``), stopped after the test."""
    started: list[Cluster] = []

    def make(kind: str, name: str, **options: Any) -> Cluster:
        cluster = CLUSTER_KINDS[kind](name, **options)
        started.append(cluster)
        cluster.start()
        return cluster

    yield make
    for cluster in started:
        cluster.stop()


@pytest.fixture
def three_clusters(kind: str, cluster_factory: ClusterFactory) -> list[Cluster]:
    """trino-1, trino-2 and trino-3 of ``kind``, started side by side."""
    with ThreadPoolExecutor(3) as pool:
        return list(pool.map(lambda name: cluster_factory(kind, name), ["trino-1", "trino-2", "trino-3"]))


# (name, url, routing group), or with a fourth element: the backend's max_running.
BackendSpec = tuple[str, str, str] | tuple[str, str, str, int]


def gateway_config(backends: list[BackendSpec], **sections: dict[str, Any]) -> dict[str, Any]:
    """The chaos gateway's config for ``(name, url, routing group[, max_running])`` backends;
    ``sections`` are merged over the chaos defaults."""
    config: dict[str, Any] = {key: dict(value) for key, value in CHAOS_GATEWAY_CONFIG.items()}
    for key, value in sections.items():
        config.setdefault(key, {}).update(value)
    config["backends"] = [
        {"name": n, "proxy_to": url, "routing_group": g} | ({"max_running": rest[0]} if rest else {})
        for n, url, g, *rest in backends
    ]
    return config


GatewayFactory = Callable[..., GatewayProcess]


@pytest.fixture
def gateway_factory(tmp_path) -> Iterator[GatewayFactory]:
    """``gateway_factory(backends, store=None, **sections)``: a started gateway, stopped after the test."""
    started: list[GatewayProcess] = []

    def make(backends: list[BackendSpec], store: str | None = None, **sections: Any) -> GatewayProcess:
        gateway = GatewayProcess(store=store, config=gateway_config(backends, **sections))
        started.append(gateway)
        return gateway.start()

    yield make
    for gateway in started:
        gateway.stop()


# A test's summary rows travel in its report, as a user property of this name; the reports are
# gathered where the session prints its summary (under pytest-xdist: the controller, not a worker).
SUMMARY_PROPERTY = "chaos summary rows"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[pytest.TestReport]:
    report = yield
    rows = SUMMARY.reported()
    if rows:
        report.user_properties.append((SUMMARY_PROPERTY, rows))
    return report


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Where reports are gathered (the controller under pytest-xdist, else the one process)."""
    if _on_xdist_worker:
        return
    for name, rows in report.user_properties:
        if name == SUMMARY_PROPERTY:
            SUMMARY.receive(rows)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not SUMMARY.rows:
        return
    path = SUMMARY.write(RESULTS)
    terminalreporter.section("chaos summary")
    terminalreporter.write_line(SUMMARY.table())
    terminalreporter.write_line(f"written to {path}")


# trino-1 and trino-2 serve the BI analysts and the data scientist (group adhoc, the default);
# trino-3 serves the data engineers (group etl).
GROUPS = {"trino-1": "adhoc", "trino-2": "adhoc", "trino-3": "etl"}


@pytest.fixture
def gateway(three_clusters: list[Cluster], gateway_factory: GatewayFactory) -> GatewayProcess:
    """The chaos gateway in front of ``three_clusters`` (SQLite store)."""
    return gateway_factory([(c.name, c.url, GROUPS[c.name]) for c in three_clusters])
