"""Cluster management across a fleet (issue 26, acceptance 4): three gateway nodes on one PostgreSQL,
each client talking to one node directly. A burst from zero that reaches every node starts exactly the
clusters it needs, once each, whichever node the queries came to: one node decides for the group at a
time (the store's lease), and a cluster's start is a compare-and-set of its record."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.clusters.helpers import CommandCluster, wait_for
from tests.clusters.test_scale_from_zero import scaling_config
from tests.conftest import connect
from tests.postgres import PostgresServer
from trinosim.gateway_process import GatewayProcess

pytestmark = pytest.mark.slow  # PostgreSQL, three gateway nodes and the trinosim processes they start

NODES = 3
# The most queries the gateway runs on one cluster at once: the first burst fits in one.
MAX_RUNNING = 60


@pytest.fixture
def clusters(tmp_path: Path) -> Iterator[list[CommandCluster]]:
    made = [CommandCluster(tmp_path, f"etl-{i}", "etl", max_running=MAX_RUNNING) for i in (1, 2)]
    yield made
    for cluster in made:
        cluster.kill()


@pytest.fixture
def fleet(clusters: list[CommandCluster]) -> Iterator[list[GatewayProcess]]:
    # Idle for a minute before a drain: nothing is stopped while the test looks.
    config = scaling_config(clusters, idle_time="60s")
    with PostgresServer() as postgres:
        nodes = [GatewayProcess(store=postgres.url(), config=config, workers=2) for _ in range(NODES)]
        try:
            # Together, as a fleet starts (the first migrates the schema, the others wait on its lock).
            with ThreadPoolExecutor(NODES) as pool:
                list(pool.map(lambda node: node.start(), nodes))
            yield nodes
        finally:
            for node in nodes:
                node.stop()


def states(node: GatewayProcess) -> dict[str, str]:
    status, backends = node.call("GET", "/gateway/backend/all")
    assert status == 200, backends
    return {backend["name"]: backend["state"] for backend in backends}


def burst(nodes: list[GatewayProcess], count: int, run_time: str, first: int = 0) -> list[list[Any]]:
    """``count`` queries at once, round robin over the nodes (each client talks to one node only)."""
    urls = itertools.cycle([node.url for node in nodes])
    work = [(number, next(urls)) for number in range(first, first + count)]

    def query(item: tuple[int, str]) -> list[Any]:
        number, url = item
        with connect(
            url, user=f"user-{number % 7}", request_timeout=120, session_properties={"sim_run_time": run_time}
        ) as conn:
            cursor = conn.cursor()
            cursor.execute(f"SELECT {number} AS n, count(*) FROM tpch.tiny.nation")
            return cursor.fetchall()

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(query, work))


def test_a_burst_from_zero_through_three_nodes_starts_each_needed_cluster_once(
    clusters: list[CommandCluster], fleet: list[GatewayProcess]
):
    etl_1, etl_2 = clusters
    for node in fleet:
        assert states(node) == {"etl-1": "STOPPED", "etl-2": "STOPPED"}
    answers = burst(fleet, 60, "0.1s")
    assert [rows[0][0] for rows in answers] == list(range(60))
    assert all(rows[0][1] == 25 for rows in answers)
    # One cluster was needed: started once, whatever node its queries reached; the other never.
    assert (etl_1.start_count(), etl_2.start_count()) == (1, 0)
    for node in fleet:
        assert states(node) == {"etl-1": "READY", "etl-2": "STOPPED"}

    # More than etl-1 may run at once: the rest wait in the fleet's queue, and the second cluster is
    # started for them, once.
    answers = burst(fleet, 90, "5s", first=100)
    assert [rows[0][0] for rows in answers] == list(range(100, 190))
    assert (etl_1.start_count(), etl_2.start_count()) == (1, 1)
    wait_for(
        "every node to see both READY", lambda: all(states(n) == dict.fromkeys(states(n), "READY") for n in fleet), 10
    )
    for cluster in clusters:
        assert cluster.stopped_with() == []
