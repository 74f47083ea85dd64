"""Scenarios 11-13: a fleet of three gateway nodes (two workers each) on one PostgreSQL, behind
haproxy (health checks on /gateway/readyz, retries of what can be retried on another node).

11. One node SIGKILLed under load: the queries in flight go on through the other nodes (their next
    poll reaches another node, which finds the query in the store); a submission caught on the dead
    node fails with a clear error or is resubmitted by the client; none is lost.
12. A rolling restart of every node with SIGTERM: each fails its readiness check, haproxy takes it
    out, it finishes what it was answering and exits; zero failed queries.
13. An admin change on node A (deactivate) is obeyed by nodes B and C within a second.

The three scenarios share one fleet (its clusters, PostgreSQL, nodes and haproxy start once per
module): each finds every node up, every cluster active and no query unfinished in the store, and the
one that kills a node runs last.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest

from chaos.clusters import Cluster
from chaos.conftest import CLUSTER_KINDS, DEFAULT_KIND, GROUPS, gateway_config
from chaos.load_balancer import TAKEN_OUT_WITHIN, Haproxy
from chaos.report import SUMMARY, summarise
from chaos.workload import FAILED, LOST, SUCCEEDED, Workload, seed_users
from tests.postgres import PostgresServer
from tests.trinosim.helpers import wait_until
from trinosim.gateway_process import GatewayProcess


@dataclass
class Fleet:
    postgres: PostgresServer
    nodes: list[GatewayProcess]
    balancer: Haproxy
    clusters: list[Cluster]

    def unfinished(self) -> int:
        """Queries every node together has running, as the store counts them."""
        for node in self.nodes:
            if node.process is not None and node.process.poll() is None:
                status, health = node.call("GET", "/gateway/health")
                if status == 200:
                    return sum(entry["unfinishedQueries"] for entry in health)
        return 0


@pytest.fixture(scope="module")
def shared_fleet() -> Iterator[Fleet]:
    """trino-1, trino-2 and trino-3 (trinosim processes) behind three nodes on one PostgreSQL."""
    clusters: list[Cluster] = [CLUSTER_KINDS[DEFAULT_KIND](name) for name in GROUPS]
    try:
        with ThreadPoolExecutor(len(clusters)) as pool:
            list(pool.map(lambda cluster: cluster.start(), clusters))
        # haproxy takes a node out within TAKEN_OUT_WITHIN seconds of its readiness failing (checks every
        # second, three failures): the grace covers that, with a second to spare.
        grace = TAKEN_OUT_WITHIN + 1.0
        config = gateway_config([(c.name, c.url, GROUPS[c.name]) for c in clusters], server={"shutdown_grace": grace})
        with PostgresServer() as postgres:
            nodes = [GatewayProcess(store=postgres.url(), config=config, workers=2) for _ in range(3)]
            balancer = None
            try:
                # Together, as a fleet starts (the first migrates the schema, the others wait on its lock).
                with ThreadPoolExecutor(len(nodes)) as pool:
                    list(pool.map(lambda node: node.start(), nodes))
                balancer = Haproxy({f"node-{i}": node.port for i, node in enumerate(nodes)}).start()
                yield Fleet(postgres, nodes, balancer, clusters)
            finally:
                if balancer is not None:
                    balancer.stop()
                for node in nodes:
                    node.stop()
    finally:
        for cluster in clusters:
            cluster.stop()


@pytest.fixture
def fleet(kind: str, shared_fleet: Fleet) -> Fleet:
    """The module's fleet as a scenario starts: every node running, every cluster active, and no query
    of the scenario before still unfinished in the store (the scenarios wait for their own in flight)."""
    assert kind == DEFAULT_KIND, f"the shared fleet runs {DEFAULT_KIND} clusters, not {kind}"
    for node in shared_fleet.nodes:
        if node.process is None or node.process.poll() is not None:
            node.start()
    for cluster in shared_fleet.clusters:
        shared_fleet.nodes[0].activate(cluster.name)
    wait_until(lambda: shared_fleet.unfinished() == 0, timeout=60, what="the scenario before to leave no query")
    return shared_fleet


def test_12_a_rolling_restart_with_sigterm_fails_no_query(kind, fleet):
    with Workload(fleet.balancer.url, seed_users()) as load:
        load.wait_completed(8)
        started_at = load.mark("rolling restart")
        for node in fleet.nodes:
            load.wait_for("queries in flight", lambda: fleet.unfinished() >= 2)
            # SIGTERM to the main process, as Kubernetes (and systemd with KillMode=mixed) stop a
            # node: it fails readiness, serves through the grace, drains and exits by itself.
            node.terminate()
            assert node.process is not None
            assert node.process.wait(timeout=90) == 0, node.log()
            node.start()
        ended_at = load.mark("rolling restart done")
        load.wait_completed(6, where=lambda r: r.submitted > ended_at)
    records = load.records
    SUMMARY.add(
        summarise("12 rolling restart (SIGTERM)", kind, records, fault_at=started_at, notes="3 nodes behind haproxy")
    )
    assert [r for r in records if r.outcome != SUCCEEDED] == []


def test_13_a_change_on_one_node_is_obeyed_by_the_others_within_a_second(kind, fleet):
    a, b, c = fleet.nodes
    # Users on nodes B and C directly: what they route is what B and C know.
    with Workload(b.url, seed_users(etl=None)) as on_b, Workload(c.url, seed_users(etl=None), seed=11) as on_c:
        on_b.wait_completed(5)
        on_c.wait_completed(5)
        changed_b, changed_c = on_b.mark("trino-1 deactivated on node A"), on_c.mark("trino-1 deactivated on node A")
        a.deactivate("trino-1")
        on_b.wait_completed(6, where=lambda r: r.submitted > changed_b + 1.0)
        on_c.wait_completed(6, where=lambda r: r.submitted > changed_c + 1.0)
    late = []
    for load, changed in ((on_b, changed_b), (on_c, changed_c)):
        for record in load.records:
            if record.submitted > changed + 1.0 and record.query_id is not None:
                status, query = a.call("GET", f"/gateway/queries/{record.query_id}")
                assert status == 200, query
                if query["backend"] == "trino-1":
                    late.append(record)
    records = on_b.records + on_c.records
    SUMMARY.add(summarise("13 admin change on node A", kind, records, notes="obeyed by B and C within 1 s"))
    assert late == [], f"queries sent to trino-1 over a second after it was deactivated: {late}"
    assert [r for r in records if r.outcome != SUCCEEDED] == []


def test_11_a_node_killed_under_load_loses_no_query(kind, fleet):
    with Workload(fleet.balancer.url, seed_users()) as load:
        load.wait_completed(8)
        load.wait_for("queries in flight", lambda: fleet.unfinished() >= 3)
        fault_at = load.mark("node-1 killed")
        fleet.nodes[1].kill()
        load.wait_completed(10, where=lambda r: r.submitted > fault_at)
    records = load.records
    SUMMARY.add(summarise("11 gateway node killed", kind, records, fault_at=fault_at, notes="3 nodes behind haproxy"))
    assert [r for r in records if r.outcome == LOST] == []
    in_flight = [r for r in records if r.submitted < fault_at < (r.ended or fault_at)]
    assert in_flight, "no query was in flight when the node died"
    failed = [r for r in records if r.outcome == FAILED]
    # Only a submission can be caught on the dead node (its answer, with the query's id, never came
    # back): every such failure is a clear error, and came right at the fault.
    for record in failed:
        assert record.error, record
        assert record.submitted <= fault_at + 1.0 and record.query_id is None, record
    assert len([r for r in in_flight if r.outcome == SUCCEEDED]) >= len(in_flight) - len(failed)
