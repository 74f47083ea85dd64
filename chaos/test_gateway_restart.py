"""Scenario 7: the gateway itself is killed and restarted under load."""

from __future__ import annotations

from chaos import faults
from chaos.observe import backend_health
from chaos.report import SUMMARY, summarise
from chaos.workload import RESTART_MAX_ATTEMPTS, SUCCEEDED, Workload, seed_users


def test_queries_in_flight_complete_after_the_gateway_is_killed_and_restarted(kind, three_clusters, gateway):
    # The client retries connection errors; its default 3 attempts (0.1-0.8 s apart) do not
    # outlast a restart, so the workload allows RESTART_MAX_ATTEMPTS.
    with Workload(gateway.url, seed_users(), max_attempts=RESTART_MAX_ATTEMPTS) as load:
        load.wait_completed(8)
        busy = lambda: sum(h["inFlight"] for h in backend_health(gateway).values()) >= 3  # noqa: E731
        load.wait_for("queries in flight", busy)
        fault_at = load.mark("gateway killed")
        down_s = faults.kill_and_restart_gateway(gateway)
        restarted_at = load.mark("gateway back")
        load.wait_completed(12, where=lambda r: r.submitted > restarted_at)
    records = load.records
    notes = f"gateway unreachable for {down_s:.2f}s; client max_attempts={RESTART_MAX_ATTEMPTS}"
    SUMMARY.add(summarise("7 gateway restart", kind, records, fault_at=fault_at, notes=notes))
    in_flight = [r for r in records if r.submitted < fault_at < r.ended]
    assert in_flight and all(r.outcome == SUCCEEDED for r in in_flight), [
        r for r in in_flight if r.outcome != SUCCEEDED
    ]
    assert [r for r in records if r.outcome != SUCCEEDED] == []
