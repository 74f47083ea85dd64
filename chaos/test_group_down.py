"""Scenario 9: every cluster of a routing group is down."""

from __future__ import annotations

import time

import requests

from chaos import faults
from chaos.observe import wait_state
from chaos.report import SUMMARY, summarise
from chaos.workload import FAILED, LOST, SUCCEEDED, Workload, seed_users

NAMES_THE_GROUP = "routing group 'adhoc'"


def test_a_group_without_healthy_clusters_fails_new_queries_at_once_naming_the_group(kind, three_clusters, gateway):
    adhoc = three_clusters[:2]  # adhoc is the default group: there is nowhere to fall back to
    with Workload(gateway.url, seed_users()) as load:
        load.wait_completed(8)
        for cluster in adhoc:
            faults.kill(cluster)
        fault_at = load.mark("group down")  # queries submitted before may have reached a cluster
        began = time.monotonic()
        for cluster in adhoc:
            wait_state(gateway, cluster.name, {"UNHEALTHY"})
        detect_s = time.monotonic() - began
        detected_at = load.mark("detected")
        load.wait_completed(8, where=lambda r: r.group == "adhoc" and r.submitted > detected_at)
        load.wait_completed(2, where=lambda r: r.group == "etl" and r.submitted > detected_at)
        # The submission's own answer is the FAILED query: nothing to poll, no retry, no wait.
        answer = requests.post(
            f"{gateway.url}/v1/statement",
            data=b"SELECT 1",
            headers={"X-Trino-User": "bi-analyst-3", "X-Trino-Routing-Group": "adhoc"},
            timeout=10,
        )
        repair_at = load.mark("repair")
        adhoc[0].start()
        wait_state(gateway, adhoc[0].name, {"HEALTHY"}, checked_after=time.time())
        repaired_at = load.mark("repaired")
        load.wait_completed(4, where=lambda r: r.group == "adhoc" and r.submitted > repaired_at)
    records = load.records
    SUMMARY.add(summarise("9 group down", kind, records, detect_s=detect_s, fault_at=fault_at))
    assert [r for r in records if r.outcome == LOST] == []
    down = [r for r in records if r.group == "adhoc" and fault_at < r.submitted and r.ended < repair_at]
    assert down and all(r.outcome == FAILED for r in down)
    unclear = [r for r in down if r.error_type != "TrinoQueryError" or NAMES_THE_GROUP not in (r.error or "")]
    assert unclear == []
    assert all(r.outcome == SUCCEEDED for r in records if r.group == "etl")
    assert all(r.outcome == SUCCEEDED for r in records if r.submitted > repaired_at)
    document = answer.json()
    assert answer.status_code == 200 and "nextUri" not in document
    assert document["stats"]["state"] == "FAILED" and document["error"]["errorName"] == "NO_NODES_AVAILABLE"
    assert NAMES_THE_GROUP in document["error"]["message"]
