"""Scenario 8: the gateway's store (PostgreSQL) goes away under load and comes back."""

from __future__ import annotations

import time

from chaos.conftest import GROUPS
from chaos.faults import StoppablePostgres
from chaos.observe import routed_backends
from chaos.report import SUMMARY, summarise
from chaos.workload import SUCCEEDED, Workload, seed_users

ROUTING_LOG = "cannot read backends from the store, routing with the last known list of 3 backends"
HISTORY_LOG = "query history: cannot write to the store"


def test_routing_goes_on_while_the_store_is_down_and_history_is_written_when_it_is_back(
    kind, three_clusters, gateway_factory
):
    with StoppablePostgres() as postgres:
        gateway = gateway_factory(
            [(c.name, c.url, GROUPS[c.name]) for c in three_clusters], store=postgres.url(driver="postgresql")
        )
        with Workload(gateway.url, seed_users()) as load:
            load.wait_completed(8)
            fault_at = load.mark("store down")
            postgres.go_down()
            began = time.monotonic()
            load.wait_for(
                "/gateway/readyz to report the store", lambda: gateway.call("GET", "/gateway/readyz")[0] == 503
            )
            detect_s = time.monotonic() - began
            load.wait_completed(16, where=lambda r: r.submitted > fault_at)
            back_at = load.mark("store back")
            postgres.come_back()
            load.wait_completed(6, where=lambda r: r.submitted > back_at)
        records = load.records

        def history_complete() -> bool:
            status, body = gateway.call("GET", "/gateway/queries?limit=1000")
            states = {q["queryId"]: q["state"] for q in body["queries"]} if status == 200 else {}
            return all(states.get(r.query_id) == "FINISHED" for r in records)

        load.wait_for("every query's row and outcome in the history", history_complete, timeout=30)
        log = gateway.log()
        routed = routed_backends(gateway)
    during = [r for r in records if fault_at < r.submitted < back_at]
    notes = f"{len(during)} queries submitted while the store was down"
    SUMMARY.add(summarise("8 store unavailable", kind, records, detect_s=detect_s, fault_at=fault_at, notes=notes))
    assert [r for r in records if r.outcome != SUCCEEDED] == []
    assert len(during) >= 16
    assert ROUTING_LOG in log and HISTORY_LOG in log, log
    assert "the store takes writes again" in log
    assert set(routed) >= {r.query_id for r in records}
