"""Scenario 18: a rolling restart of the gateway fleet during a scale-down (issue 26).

Three gateway nodes on one PostgreSQL behind haproxy (as scenarios 11-13) manage routing group
``etl``: two trinosim clusters the gateway starts and stops through the command scaler
(``tests/clusters/helpers.py``), ``min_clusters: 1``, ``max_running: 4`` each. A burst of data
engineers' long queries makes the group start its second cluster; two users hold a transaction open,
one on each cluster. The burst ends, the load stays low, and the group drains one cluster: it keeps
the open transaction, so it cannot stop yet. While it drains, every node is restarted in turn with
SIGTERM, the one deciding for the group (the lease holder) first. Once every node is new, the
draining cluster's transaction commits, and the node that holds the lease now stops it.

Proven: no query is lost or fails (BI analysts query all along); the draining cluster is not
stopped while a transaction is open on it, nor while it runs a query (its own ``/_sim/load`` and
``/_sim/transactions``, read by the stop command: running 0, queued 0, no transaction); it is
stopped once, after the commit, by a node that was not running when the drain began; no cluster is
started more than once.

Not marked ``alone``: three nodes of one worker each and a few users keep about half of the two
cores busy (28 s of CPU in a 54 s run).
"""

from __future__ import annotations

import json
import os
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import trino
from trino.transaction import IsolationLevel

from chaos.conftest import DEFAULT_KIND, gateway_config
from chaos.load_balancer import TAKEN_OUT_WITHIN, Haproxy
from chaos.report import SUMMARY, summarise
from chaos.workload import ETL, INTERACTIVE, SUCCEEDED, User, Workload
from tests.clusters.helpers import CommandCluster, wait_for
from tests.postgres import PostgresServer
from trinosim.gateway_process import GatewayProcess

GROUP = "etl"
MAX_RUNNING = 4


@dataclass
class ScalingFleet:
    postgres: PostgresServer
    nodes: list[GatewayProcess]
    balancer: Haproxy
    clusters: list[CommandCluster]

    def states(self) -> dict[str, str]:
        """Each cluster's state, as the first node that answers sees it."""
        for node in self.nodes:
            if node.process is not None and node.process.poll() is None:
                status, backends = node.call("GET", "/gateway/backend/all")
                if status == 200:
                    return {backend["name"]: backend["state"] for backend in backends}
        return {}

    def diagnosis(self, name: str) -> str:
        """What the fleet says of cluster ``name``, for a failure's message."""
        status, health = self.nodes[0].call("GET", "/gateway/health")
        mine = [entry for entry in health if entry["name"] == name] if status == 200 else health
        logs = [line for node in self.nodes for line in node.log().splitlines() if name in line]
        return f"states {self.states()}; health {mine}; log {logs[-10:]}"

    def lease_holder(self) -> GatewayProcess | None:
        """The node whose worker decides for the group now (the store's lease names its process)."""
        holder = self.postgres.sql(f"SELECT holder FROM gateway_lease WHERE name = 'scaling:{GROUP}'")
        if not holder:
            return None
        pid = int(holder.split(":")[-2])
        try:
            group = os.getpgid(pid)  # each node leads a process group of its own (its workers are in it)
        except ProcessLookupError:
            return None
        return next((n for n in self.nodes if n.process is not None and n.process.pid == group), None)


@pytest.fixture
def scaling_fleet(tmp_path: Path) -> Iterator[ScalingFleet]:
    clusters = [CommandCluster(tmp_path, f"etl-{i}", GROUP, max_running=MAX_RUNNING) for i in (1, 2)]
    # haproxy takes a node out within TAKEN_OUT_WITHIN seconds of its readiness failing: the grace covers it.
    config = gateway_config(
        [],
        server={"shutdown_grace": TAKEN_OUT_WITHIN + 1.0},
        routing={
            "default_group": GROUP,
            "groups": {
                GROUP: {
                    "scaling": {
                        "min_clusters": 1,
                        "scale_up_queued": 2,
                        # Only the queue starts a cluster here; a low load drains one after 2 s.
                        "scale_up_after": "120s",
                        "scale_down_utilisation": 0.4,
                        "idle_time": "2s",
                        "start_timeout": "30s",
                    }
                }
            },
        },
        scaling={"interval": "0.5s"},
    )
    config["backends"] = [cluster.record() for cluster in clusters]
    try:
        with PostgresServer() as postgres:
            nodes = [GatewayProcess(store=postgres.url(), config=config) for _ in range(3)]
            balancer = None
            try:
                with ThreadPoolExecutor(len(nodes)) as pool:
                    list(pool.map(lambda node: node.start(), nodes))
                balancer = Haproxy({f"node-{i}": node.port for i, node in enumerate(nodes)}).start()
                yield ScalingFleet(postgres, nodes, balancer, clusters)
            finally:
                if balancer is not None:
                    balancer.stop()
                for node in nodes:
                    node.stop()
    finally:
        for cluster in clusters:
            cluster.kill()


class OpenTransaction:
    """A BI tool's session holding a transaction open (one statement run, no COMMIT yet)."""

    def __init__(self, url: str, user: str) -> None:
        host, port = url.removeprefix("http://").rsplit(":", 1)
        self.connection = trino.dbapi.connect(
            host=host,
            port=int(port),
            user=user,
            source="chaos-workload",
            isolation_level=IsolationLevel.READ_COMMITTED,
            max_attempts=6,
            request_timeout=15,
        )
        cursor = self.connection.cursor()
        cursor.execute("SELECT count(*) FROM tpch.tiny.nation")
        assert cursor.fetchall() == [[25]]
        assert self.connection.transaction is not None
        self.transaction_id = self.connection.transaction.id

    def commit(self) -> None:
        self.connection.commit()
        self.connection.close()

    def rollback(self) -> None:
        self.connection.rollback()
        self.connection.close()


def open_transactions(cluster: CommandCluster) -> set[str]:
    """The ids of the transactions open on the cluster, as it says."""
    with urllib.request.urlopen(f"{cluster.url}/_sim/transactions", timeout=5) as answer:
        return {transaction["id"] for transaction in json.load(answer)}


def hold_one_transaction_per_cluster(fleet: ScalingFleet) -> dict[str, OpenTransaction]:
    held: dict[str, OpenTransaction] = {}
    for attempt in range(12):
        opened = OpenTransaction(fleet.balancer.url, f"bi-tool-{attempt}")
        owner = next(c.name for c in fleet.clusters if opened.transaction_id in open_transactions(c))
        if owner in held:
            opened.rollback()
        else:
            held[owner] = opened
        if len(held) == len(fleet.clusters):
            return held
    raise AssertionError(f"no transaction could be opened on every cluster: {sorted(held)}")


def test_18_a_rolling_restart_during_a_scale_down_loses_nothing_and_stops_no_cluster_with_work(
    kind, scaling_fleet: ScalingFleet
):
    assert kind == DEFAULT_KIND
    fleet = scaling_fleet
    # min_clusters 1: the fleet starts etl-1 by itself.
    wait_for("etl-1 READY", lambda: fleet.states() == {"etl-1": "READY", "etl-2": "STOPPED"}, 30)
    analysts = [User(f"bi-analyst-{i}", GROUP, (INTERACTIVE,)) for i in (1, 2)]
    engineers = [User(f"data-engineer-{i}", GROUP, (ETL,), think_time=0.05) for i in range(1, 9)]
    with Workload(fleet.balancer.url, analysts) as steady:
        # Eight long queries at once on clusters of four: they queue, and the second cluster starts.
        with Workload(fleet.balancer.url, engineers, seed=18) as burst:
            wait_for("etl-2 READY", lambda: fleet.states().get("etl-2") == "READY", 30)
            held = hold_one_transaction_per_cluster(fleet)
            burst.wait_completed(8)
        # The burst is over (leaving the block waited for its last queries): the load is low.
        low_at = steady.mark("the burst ended")
        try:
            draining = wait_for(
                "a cluster to drain",
                lambda: next((name for name, state in fleet.states().items() if state == "DRAINING"), None),
                30,
            )
        except AssertionError as error:
            queue = fleet.postgres.sql("SELECT state, count(*) FROM gateway_waiting_query GROUP BY state")
            lease = fleet.postgres.sql(f"SELECT holder, lease_until FROM gateway_lease WHERE name = 'scaling:{GROUP}'")
            clusters = "; ".join(fleet.diagnosis(cluster.name) for cluster in fleet.clusters)
            raise AssertionError(f"{error}: queue {queue!r}; lease {lease!r}; {clusters}") from None
        leader = wait_for("the lease holder", fleet.lease_holder, 10)
        drained_in = steady.now() - low_at
        cluster = next(c for c in fleet.clusters if c.name == draining)
        other = next(c for c in fleet.clusters if c.name != draining)

        restart_at = steady.mark("rolling restart")
        for node in [leader, *(n for n in fleet.nodes if n is not leader)]:
            # As scenario 12: SIGTERM, readiness fails, haproxy takes the node out, it exits by itself.
            node.terminate()
            assert node.process is not None
            assert node.process.wait(timeout=60) == 0, node.log()
            node.start()
            name = f"node-{fleet.nodes.index(node)}"
            wait_for(f"haproxy to take {name} back", lambda n=name: fleet.balancer.server_states()[n] == "UP", 20)
            # Its transaction is still open: the drain goes on, whoever holds the lease.
            assert fleet.states()[draining] == "DRAINING"
            assert cluster.stopped_with() == []
        restarted_at = steady.mark("rolling restart done")
        new_leader = wait_for("a lease holder", fleet.lease_holder, 10)
        assert new_leader is not None

        committed_at = time.time()
        held.pop(draining).commit()
        try:
            wait_for(f"{draining} stopped", lambda: fleet.states()[draining] == "STOPPED" and not cluster.answers(), 30)
        except AssertionError as error:
            unfinished = fleet.postgres.sql(
                "SELECT query_id, user_name, query_text FROM query_history WHERE state IS NULL"
            )
            raise AssertionError(f"{error}: {fleet.diagnosis(draining)}; unfinished {unfinished!r}") from None
        stopped_in = time.time() - committed_at
        steady.wait_completed(4, where=lambda r: r.submitted > restarted_at)
    for opened in held.values():
        opened.commit()

    records = steady.records + burst.records
    SUMMARY.add(
        summarise(
            "18 rolling restart during a scale-down",
            kind,
            records,
            fault_at=restart_at,
            notes=f"{draining} drained {drained_in:.1f} s after the burst, stopped {stopped_in:.1f} s after its "
            f"transaction committed, by a node restarted since",
        )
    )
    assert [r for r in records if r.outcome != SUCCEEDED] == []
    # Stopped once, and then with nothing on it (checked at the cluster by the stop command).
    stops = [json.loads(line) for line in cluster.stopped_with()]
    assert len(stops) == 1, stops
    assert (stops[0]["running"], stops[0]["queued"], stops[0]["transactions"]) == (0, 0, 0), stops
    assert stops[0]["at"] >= committed_at
    # The other cluster serves on; nothing was started twice.
    assert other.stopped_with() == [] and fleet.states()[other.name] == "READY"
    assert [c.start_count() for c in fleet.clusters] == [1, 1]
