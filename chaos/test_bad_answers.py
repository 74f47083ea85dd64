"""Scenario 6: a cluster answers 5xx or garbage."""

from __future__ import annotations

import pytest

from chaos import faults
from chaos.observe import backend_health, routed_backends, wait_state
from chaos.report import SUMMARY, summarise
from chaos.workload import FAILED, LOST, SUCCEEDED, Workload, seed_users

# What the trino client raises for a FAILED query (the message is the server's) and for an HTTP
# error status (the message names the status).
CLEAR_ERRORS = {
    "5xx": ({"TrinoQueryError", "TrinoExternalError", "OperationalError", "HttpError", "Http503Error"}, "503"),
    "garbage": ({"TrinoQueryError", "TrinoExternalError"}, "trino-1"),
}
INJECT = {"5xx": lambda c: faults.http_errors(c, 503), "garbage": faults.garbage}


@pytest.mark.parametrize("answer", ["5xx", "garbage"])
def test_cluster_answering_5xx_or_garbage_gives_clear_errors_and_is_marked_unhealthy(
    kind, answer, three_clusters, gateway
):
    victim = three_clusters[0]
    with Workload(gateway.url, seed_users()) as load:
        load.wait_completed(8)
        busy = lambda: backend_health(gateway)[victim.name]["inFlight"] >= 2  # noqa: E731
        load.wait_for(f"queries in flight on {victim.name}", busy)
        fault_at = load.mark("fault")
        INJECT[answer](victim)
        detect_s = wait_state(gateway, victim.name, {"UNHEALTHY"})
        detected_at = load.mark("detected")
        last_error = backend_health(gateway)[victim.name]["lastError"]
        load.wait_completed(12, where=lambda r: r.submitted > detected_at)
        faults.clear(victim)
    records = load.records
    SUMMARY.add(
        summarise(f"6 {answer} answers", kind, records, detect_s=detect_s, fault_at=fault_at, notes=f"{last_error}")
    )
    assert [r for r in records if r.outcome == LOST] == []
    error_types, named = CLEAR_ERRORS[answer]
    failed = [r for r in records if r.outcome == FAILED]
    for record in failed:
        assert record.submitted < detected_at, record
        assert record.error_type in error_types and named in (record.error or ""), record
    routed = routed_backends(gateway)
    after = [r for r in records if r.submitted > detected_at]
    assert after and all(r.outcome == SUCCEEDED and routed.get(r.query_id) != victim.name for r in after)
