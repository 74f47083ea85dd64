"""Chaos 19: a burst from zero whose first cluster fails to start.

Group ``etl`` has no cluster running (``scaling: {min_clusters: 0}``) and two clusters behind the
command scaler; the first one's start command fails (``exit 3``: no capacity in the zone). A burst
of 30 clients arrives through the gateway (a child process on SQLite): the gateway starts the first
cluster, marks it failed when its start fails, starts the next, and every query gets its rows from
it. None is lost, none fails, each cluster was asked to start once, and the failed one says why.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import trino

from tests.clusters.helpers import CommandCluster, scaling_config
from trinosim.gateway_process import GatewayProcess


@pytest.fixture
def clusters(tmp_path: Path) -> Iterator[list[CommandCluster]]:
    made = [CommandCluster(tmp_path, "etl-1", "etl", fail_start=True), CommandCluster(tmp_path, "etl-2", "etl")]
    yield made
    for cluster in made:
        cluster.kill()


def test_19_a_burst_from_zero_whose_first_cluster_fails_to_start_loses_nothing(clusters: list[CommandCluster]):
    with GatewayProcess(config=scaling_config(clusters)) as gateway:
        host, port = gateway.url.removeprefix("http://").rsplit(":", 1)
        began = time.monotonic()
        first_rows: list[float] = []

        def query(number: int) -> list[Any]:
            connection = trino.dbapi.connect(host=host, port=int(port), user=f"user-{number % 5}", request_timeout=120)
            with connection:
                cursor = connection.cursor()
                cursor.execute(f"SELECT {number} AS n, count(*) FROM tpch.tiny.nation")
                rows = cursor.fetchall()
                first_rows.append(time.monotonic() - began)
                return rows

        with ThreadPoolExecutor(30) as pool:
            answers = list(pool.map(query, range(30)))
        assert answers == [[[number, 25]] for number in range(30)]
        print(f"\nchaos 19: first submission to first row {min(first_rows):.2f} s, last {max(first_rows):.2f} s")
        assert [cluster.start_count() for cluster in clusters] == [1, 1]
        _, health = gateway.call("GET", "/gateway/health")
        etl_1 = next(backend for backend in health if backend["name"] == "etl-1")
        assert etl_1["clusterState"] == "STOPPED"
        assert "exit code 3" in etl_1["clusterDetail"] and "no capacity in the zone" in etl_1["clusterDetail"]
