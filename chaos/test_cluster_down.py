"""Scenarios 1 and 2: a cluster dies or freezes under load."""

from __future__ import annotations

from chaos import faults
from chaos.clusters import Cluster
from chaos.conftest import GROUPS
from chaos.observe import backend_health, routed_backends, wait_state
from chaos.report import SUMMARY, summarise
from chaos.workload import FAILED, LOST, SUCCEEDED, Workload, seed_users
from trinosim.gateway_process import GatewayProcess

# The Python client's errors for a query the server answered FAILED (the gateway's clear message).
TRINO_QUERY_ERRORS = {"TrinoQueryError", "TrinoExternalError", "TrinoUserError"}


def _break_under_load(
    scenario: str, kind: str, gateway: GatewayProcess, victim: Cluster, fault, repair
) -> tuple[Workload, float, str]:
    """Load, wait until ``victim`` has queries in flight, break it, wait for the gateway to mark it
    UNHEALTHY, keep the load on for a while; the workload, the detection time and the gateway's
    last error for ``victim`` then."""
    with Workload(gateway.url, seed_users()) as load:
        load.wait_completed(8)
        busy = lambda: backend_health(gateway)[victim.name]["inFlight"] >= 2  # noqa: E731
        load.wait_for(f"queries in flight on {victim.name}", busy)
        fault_at = load.mark("fault")
        fault(victim)
        detect_s = wait_state(gateway, victim.name, {"UNHEALTHY"})
        detected_at = load.mark("detected")
        why = backend_health(gateway)[victim.name]["lastError"] or ""
        load.wait_completed(12, where=lambda r: r.submitted > detected_at, timeout=60)
        repair(victim)
    SUMMARY.add(summarise(scenario, kind, load.records, detect_s=detect_s, fault_at=fault_at, notes=why))
    return load, detected_at, why


def _assert_failover_guarantees(load: Workload, gateway: GatewayProcess, victim: str, detected_at: float) -> None:
    records = load.records
    lost = [r for r in records if r.outcome == LOST]
    assert lost == [], f"queries without an answer within their bound: {lost}"
    routed = routed_backends(gateway)
    failed = [r for r in records if r.outcome == FAILED]
    for record in failed:
        # Only queries that were on the broken cluster may fail, with the gateway's clear error.
        assert record.submitted < detected_at, record
        assert record.error_type in TRINO_QUERY_ERRORS, record
        assert victim in (record.error or ""), record
    after = [r for r in records if r.submitted > detected_at]
    assert after and all(r.outcome == SUCCEEDED for r in after), [r for r in after if r.outcome != SUCCEEDED]
    assert not [r for r in after if routed.get(r.query_id) == victim]


def test_killed_cluster_fails_its_queries_clearly_and_new_ones_go_elsewhere(kind, three_clusters, gateway):
    victim = three_clusters[0]
    start_again = lambda cluster: cluster.start()  # noqa: E731
    load, detected_at, why = _break_under_load("1 kill a cluster", kind, gateway, victim, faults.kill, start_again)
    _assert_failover_guarantees(load, gateway, victim.name, detected_at)
    # What a kill looks like from the gateway: new connections refused, or (a submission in flight
    # at the kill, which is not sent twice) its connection closed without an answer.
    assert "connection refused" in why or "closed the connection without answering" in why, why


def test_paused_cluster_is_detected_by_timeouts_and_new_queries_go_elsewhere(kind, three_clusters, gateway):
    victim = three_clusters[0]
    load, detected_at, why = _break_under_load("2 pause a cluster", kind, gateway, victim, faults.pause, faults.resume)
    _assert_failover_guarantees(load, gateway, victim.name, detected_at)
    assert "timed out" in why or "no answer within" in why


def test_cluster_whose_statement_protocol_hangs_is_detected_by_the_query_monitor(kind, three_clusters, gateway_factory):
    # /v1/info keeps answering while polls hang: the default INFO_API check passes every 0.5 s and
    # resets the passive failure count, so only a check through the protocol (QUERY) sees it.
    gateway = gateway_factory([(c.name, c.url, GROUPS[c.name]) for c in three_clusters], health={"monitor": "QUERY"})
    victim = three_clusters[0]
    unhang = lambda cluster: cluster.set_faults(hang_polls=False)  # noqa: E731
    load, detected_at, why = _break_under_load("2b polls hang", kind, gateway, victim, faults.hang_polls, unhang)
    _assert_failover_guarantees(load, gateway, victim.name, detected_at)
    assert "timed out" in why or "no answer within" in why
