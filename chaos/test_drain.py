"""Scenario 4b: rolling maintenance driven only by ``trino-gateway backend drain --wait``, with
users running transactions: each cluster is stopped the moment the command says it is drained,
restarted, and activated with ``trino-gateway backend activate``."""

from __future__ import annotations

import subprocess
import sys
import time

from chaos import faults
from chaos.observe import wait_state
from chaos.report import SUMMARY, summarise
from chaos.workload import SUCCEEDED, Workload, seed_users, transactional_users

DRAIN_TIMEOUT = 120


def _command(gateway_url: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", "backend", *argv, "--server", gateway_url],
        capture_output=True,
        text=True,
        timeout=DRAIN_TIMEOUT + 30,
        stdin=subprocess.DEVNULL,
    )


def _work_left(cluster) -> tuple[list[str], list[str]]:
    """What the cluster itself still runs: unfinished queries, open transactions."""
    running = [q["queryId"] for q in cluster.queries() if q["state"] not in ("FINISHED", "FAILED")]
    return running, [t["id"] for t in cluster.transactions()]


def test_rolling_maintenance_by_the_drain_command_fails_no_query_and_no_transaction(kind, three_clusters, gateway):
    left_at_stop: dict[str, tuple[list[str], list[str]]] = {}
    drain_seconds: dict[str, float] = {}
    with Workload(gateway.url, seed_users() + transactional_users(2)) as load:
        load.wait_completed(6)
        load.wait_completed(2, where=lambda r: r.transaction_statements > 0)
        fault_at = load.mark("maintenance")
        for cluster in three_clusters:
            began = time.monotonic()
            drained = _command(gateway.url, "drain", cluster.name, "--wait", "--timeout", str(DRAIN_TIMEOUT))
            assert drained.returncode == 0, drained.stdout + drained.stderr
            assert drained.stdout.splitlines()[-1] == f"{cluster.name}: drained: safe to stop"
            drain_seconds[cluster.name] = time.monotonic() - began
            # Checked at the cluster itself, the moment the command said so.
            left_at_stop[cluster.name] = _work_left(cluster)
            faults.restart(cluster)  # the "upgrade"
            wait_state(gateway, cluster.name, {"HEALTHY"}, checked_after=time.time())
            activated = _command(gateway.url, "activate", cluster.name)
            assert activated.returncode == 0, activated.stderr
            done = len(load.completed())
            load.wait_completed(done + 4)
    records = load.records
    transactions = [r for r in records if r.transaction_statements]
    SUMMARY.add(
        summarise(
            "4b drain --wait, transactions",
            kind,
            records,
            fault_at=fault_at,
            notes=f"{len(transactions)} transactions; drained in "
            + ", ".join(f"{name} {seconds:.1f}s" for name, seconds in drain_seconds.items()),
        )
    )
    assert [r for r in records if r.outcome != SUCCEEDED] == []
    assert len(transactions) >= 4 and all(r.outcome == SUCCEEDED for r in transactions)
    # No cluster was stopped while it still ran a query or held a transaction.
    assert {name: left for name, left in left_at_stop.items() if left != ([], [])} == {}
