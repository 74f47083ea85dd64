"""Scenarios 3 and 4: an operator takes clusters out for maintenance under load."""

from __future__ import annotations

import time

from chaos import faults
from chaos.conftest import every_cluster_kind
from chaos.observe import backend_health, routed_backends, wait_drained, wait_state
from chaos.report import SUMMARY, summarise
from chaos.workload import FAILED, LOST, SUCCEEDED, Workload, seed_users


def test_deactivated_cluster_finishes_its_queries_takes_no_new_ones_and_returns(kind, three_clusters, gateway):
    victim = three_clusters[0].name
    with Workload(gateway.url, seed_users()) as load:
        load.wait_completed(8)
        busy = lambda: backend_health(gateway)[victim]["inFlight"] >= 2  # noqa: E731
        load.wait_for(f"queries in flight on {victim}", busy)
        fault_at = load.mark("deactivate")
        gateway.deactivate(victim)
        deactivated_at = load.mark("deactivated")
        drain_s = wait_drained(gateway, victim)
        load.wait_completed(10, where=lambda r: r.submitted > deactivated_at)
        activate_at = load.mark("activate")
        gateway.activate(victim)
        activated_at = load.mark("activated")

        def took_load_again() -> bool:
            routed = routed_backends(gateway)
            return any(routed.get(r.query_id) == victim for r in load.completed(lambda r: r.submitted > activated_at))

        load.wait_for(f"{victim} to take new queries again", took_load_again)
    records = load.records
    SUMMARY.add(
        summarise(
            "3 deactivate mid-query", kind, records, fault_at=fault_at, notes=f"{victim} drained in {drain_s:.2f}s"
        )
    )
    routed = routed_backends(gateway)
    assert [r for r in records if r.outcome in (FAILED, LOST)] == []
    # Every query that was running on the cluster when it was deactivated completed.
    in_flight = [r for r in records if routed.get(r.query_id) == victim and r.submitted < fault_at < r.ended]
    assert in_flight and all(r.outcome == SUCCEEDED for r in in_flight)
    # None of the queries submitted while it was inactive went there.
    while_inactive = [r for r in records if deactivated_at < r.submitted and r.ended < activate_at]
    assert while_inactive and not [r for r in while_inactive if routed.get(r.query_id) == victim]


@every_cluster_kind
def test_rolling_maintenance_of_every_cluster_fails_no_query(kind, three_clusters, gateway):
    with Workload(gateway.url, seed_users()) as load:
        load.wait_completed(6)
        fault_at = load.mark("maintenance")
        for cluster in three_clusters:
            gateway.deactivate(cluster.name)
            wait_drained(gateway, cluster.name)
            faults.restart(cluster)  # the "upgrade"
            wait_state(gateway, cluster.name, {"HEALTHY"}, checked_after=time.time())
            gateway.activate(cluster.name)
            done = len(load.completed())
            load.wait_completed(done + 4)
    records = load.records
    SUMMARY.add(summarise("4 rolling maintenance", kind, records, fault_at=fault_at))
    assert [r for r in records if r.outcome != SUCCEEDED] == []
    assert len(records) >= 18
