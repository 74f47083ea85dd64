"""Cluster management across a fleet (issue 26, acceptance 4): three gateway nodes on one PostgreSQL,
each client talking to one node directly. A burst from zero that reaches every node starts exactly the
clusters it needs, once each, whichever node the queries came to: one node decides for the group at a
time (the store's lease), and a cluster's start is a compare-and-set of its record."""

from __future__ import annotations

import contextlib
import itertools
import json
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import trino

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


def load(cluster: CommandCluster) -> dict[str, int]:
    """What the cluster itself runs and queues (trinosim's ``/_sim/load``)."""
    with urllib.request.urlopen(f"{cluster.url}/_sim/load", timeout=5) as answer:
        return json.load(answer)


class Holder:
    """A query that runs until the test cancels it (its cursor's cancel, as a client's Ctrl-C would)."""

    def __init__(self, pool: ThreadPoolExecutor, url: str, number: int) -> None:
        options = {"sim_run_time": "600s"}
        self.conn = connect(url, user=f"user-{number % 7}", request_timeout=120, session_properties=options)
        self.cursor = self.conn.cursor()
        self.done = pool.submit(self.cursor.execute, f"SELECT {number} AS n, count(*) FROM tpch.tiny.nation")

    def release(self) -> None:
        with contextlib.suppress(Exception):  # (one not sent yet has nothing to cancel: it fails below)
            self.cursor.cancel()

    def ended_by_cancel(self) -> bool:
        """Whether its query ended by its client's cancel and by nothing else (it would run ten minutes)."""
        try:
            self.done.result(timeout=60)
            return True  # (the client saw its own cancel first and stopped reading)
        except trino.exceptions.TrinoUserError as error:
            return error.error_name == "USER_CANCELED"
        finally:
            self.conn.close()


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

    # Sixty long queries fill etl-1 (its max_running); thirty more, sent once the sixty run there, can
    # only wait in the fleet's queue, and the second cluster is started for them, once. (Waiting for the
    # sixty to run first, rather than timing a burst, keeps the overload there however slowly a loaded
    # machine sends the burst.)
    pool = ThreadPoolExecutor(MAX_RUNNING)
    nodes = itertools.cycle(node.url for node in fleet)
    holders = [Holder(pool, next(nodes), number) for number in range(100, 100 + MAX_RUNNING)]
    try:
        wait_for("etl-1 to run sixty", lambda: load(etl_1)["running"] == MAX_RUNNING, 60)
        # (A cancel before a client has read its query's first answer would do nothing.)
        wait_for("each holder's client to read its first answer", lambda: all(h.cursor.query_id for h in holders), 30)
        answers = burst(fleet, 30, "0.1s", first=200)
        assert [rows[0][0] for rows in answers] == list(range(200, 230))
        assert (etl_1.start_count(), etl_2.start_count()) == (1, 1)
        assert load(etl_1)["running"] == MAX_RUNNING  # the thirty ran on etl-2, beside the sixty
    finally:
        for holder in holders:
            holder.release()
        pool.shutdown(wait=False)  # (should one hang, the fleet's end ends it)
    assert all(holder.ended_by_cancel() for holder in holders)
    wait_for(
        "every node to see both READY", lambda: all(states(n) == dict.fromkeys(states(n), "READY") for n in fleet), 10
    )
    for cluster in clusters:
        assert cluster.stopped_with() == []
