"""Beyond the nine scenarios: a cluster whose health flaps (all 503, then fine, every 0.7 s)."""

from __future__ import annotations

from chaos import faults
from chaos.observe import wait_state
from chaos.report import SUMMARY, summarise
from chaos.workload import FAILED, LOST, Workload, seed_users

CLEAR_ERROR_TYPES = {"TrinoQueryError", "TrinoExternalError", "OperationalError", "HttpError", "Http503Error"}


def test_flapping_cluster_loses_no_query_and_every_failure_is_clear(kind, three_clusters, gateway):
    victim = three_clusters[0]
    with Workload(gateway.url, seed_users()) as load:
        load.wait_completed(8)
        fault_at = load.mark("flapping")
        with faults.HealthFlapping(victim, period=0.7) as flapping:
            detect_s = wait_state(gateway, victim.name, {"UNHEALTHY"})
            load.wait_completed(20, where=lambda r: r.submitted > fault_at)
        calm_at = load.mark("calm")
        load.wait_completed(6, where=lambda r: r.submitted > calm_at)
    records = load.records
    notes = f"{flapping.flips} flips"
    SUMMARY.add(summarise("10 health flapping", kind, records, detect_s=detect_s, fault_at=fault_at, notes=notes))
    assert [r for r in records if r.outcome == LOST] == []
    unclear = [
        r
        for r in records
        if r.outcome == FAILED
        and (r.error_type not in CLEAR_ERROR_TYPES or not ("503" in r.error or victim.name in r.error))
    ]
    assert unclear == []
