"""Scenarios 1 and 2: a cluster dies or freezes under load; 2b: its statement protocol hangs.

Every statement of these workloads is a SELECT, which the gateway fails over (``failover``, on by
default): a query the broken cluster had returned no row of goes on on the other cluster of its
group, and its client never notices. Only a query that had returned rows from the broken cluster
fails, with the gateway's clear error naming it. Scenarios 1 and 2 run through two gateways in
front of the same clusters at once, one with failover off (as before the gateway had it), one with
it on, so that one fault hits both; their users include exporters whose long results come in many
pages, and the fault comes when the cluster has, for each gateway, a query that has returned rows
and one that has not.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest

from chaos import faults
from chaos.clusters import Cluster
from chaos.conftest import GROUPS, ClusterFactory, GatewayFactory, every_cluster_kind
from chaos.observe import backend_health, query_history, wait_state
from chaos.report import SUMMARY, summarise
from chaos.workload import FAILED, LOST, SUCCEEDED, QueryOutcome, User, Workload, read_only_users, seed_users
from trinosim.durations import parse_duration
from trinosim.gateway_process import GatewayProcess

# The Python client's errors for a query the server answered FAILED (the gateway's clear message).
TRINO_QUERY_ERRORS = {"TrinoQueryError", "TrinoExternalError", "TrinoUserError"}
# An exporter's 15,000 rows come in 75 pages: it reads for a while after its first rows.
PAGE_ROWS = 200


@dataclass
class Run:
    """One scenario run: its workload, when the fault came and was detected, the gateway's last
    error for the victim then."""

    load: Workload
    fault_at: float
    detected_at: float
    why: str
    history: dict[str, dict[str, Any]]  # the gateway's, by query id

    @functools.cached_property
    def routed(self) -> dict[str, str]:
        """Query id -> the backend the gateway sent it to."""
        return {query_id: query["backend"] for query_id, query in self.history.items()}

    def notes(self, victim: str) -> str:
        """What the fault hit and what failed, for the summary."""
        hit = self.on_victim_at_fault(victim)
        returning = [r for r in hit if r.rows_at is not None and r.rows_at < self.fault_at]
        failed = [r for r in self.load.records if r.outcome == FAILED]
        return (
            f"on {victim} at the fault: {len(hit)} queries, {len(returning)} of them returning rows; "
            f"failed: {sum(r.rows_at is None for r in failed)} without a row, "
            f"{sum(r.rows_at is not None for r in failed)} after rows; moved to another cluster: "
            f"{len(self.moved())}; {victim}'s last error: {self.why}"
        )

    def moved(self) -> list[QueryOutcome]:
        """Queries that went on on another cluster: in the gateway's history, their first attempt
        (the id their client saw) FAILED_OVER."""
        return [
            r for r in self.load.records if self.history.get(r.query_id or "", {}).get("errorName") == "FAILED_OVER"
        ]

    def on_victim_at_fault(self, victim: str) -> list[QueryOutcome]:
        """The queries the victim had when it broke (by the id their client saw: for a query that
        moved, the first attempt's)."""
        return [
            r
            for r in self.load.records
            if r.submitted < self.fault_at
            and (r.ended is None or r.ended > self.fault_at)
            and self.routed.get(r.query_id or "") == victim
        ]


# Whether ``victim`` is busy enough to break, for a gateway and its workload; given what the victim
# runs (trinosim's /_sim/queries, read once for every gateway).
Busy = Callable[[GatewayProcess, Cluster, Workload, list[dict[str, Any]]], bool]


def two_in_flight(
    gateway: GatewayProcess, victim: Cluster, load: Workload, victim_queries: list[dict[str, Any]]
) -> bool:
    return backend_health(gateway)[victim.name]["inFlight"] >= 2


def returning_rows_and_not(
    gateway: GatewayProcess, victim: Cluster, load: Workload, victim_queries: list[dict[str, Any]]
) -> bool:
    """The victim runs, for ``gateway``, a query that has returned rows and has more to come, and one
    that has returned none and will not for a second yet (a long one in its ``sim_run_time``)."""
    with_rows = {r.query_id for r in list(load.records) if not r.done and r.rows_at is not None}
    running = [q for q in victim_queries if q["state"] == "RUNNING" and _through(gateway, q)]
    returning = [q for q in running if q["queryId"] in with_rows]
    waiting = [q for q in running if q["queryId"] not in with_rows and _run_time_left(q) >= 1.0]
    return bool(returning and waiting)


def _through(gateway: GatewayProcess, query: dict[str, Any]) -> bool:
    """Whether ``gateway`` sent the cluster's ``query`` (its X-Forwarded-Port)."""
    return query["receivedHeaders"].get("X-Forwarded-Port") == str(gateway.port)


def _run_time_left(query: dict[str, Any]) -> float:
    """Seconds until the cluster's ``query`` has its rows: its ``sim_run_time`` from its submission."""
    run_time = parse_duration(query["session"]["systemProperties"].get("sim_run_time", "0s"))
    return run_time - (time.time() - query["requests"][0]["time"])


def _break_under_load(
    scenarios: dict[str, GatewayProcess],
    kind: str,
    victim: Cluster,
    fault,
    repair,
    users: list[User] | None = None,
    busy: Busy = two_in_flight,
) -> dict[str, Run]:
    """Load through each gateway of ``scenarios`` (scenario name -> gateway, all in front of the
    same clusters), wait until ``victim`` is ``busy`` for each, break it, wait for each gateway to
    mark it UNHEALTHY, keep the load on for a while, repair it; each scenario's run."""
    gateways = list(scenarios.values())
    with contextlib.ExitStack() as stack:
        loads = [
            stack.enter_context(Workload(g.url, users or seed_users(), seed=7 + 4 * i)) for i, g in enumerate(gateways)
        ]
        stack.callback(_stop_together, loads)
        for load in loads:
            load.wait_completed(8)

        def everywhere() -> bool:
            running = victim.queries()
            return all(busy(g, victim, load, running) for g, load in zip(gateways, loads, strict=True))

        loads[0].wait_for(f"queries in flight on {victim.name}", everywhere)
        fault_at = [load.mark("fault") for load in loads]
        broken = time.monotonic()
        fault(victim)
        detect_s, detected_at, why = [], [], []
        for gateway, load in zip(gateways, loads, strict=True):
            wait_state(gateway, victim.name, {"UNHEALTHY"})
            detect_s.append(time.monotonic() - broken)
            detected_at.append(load.mark("detected"))
            why.append(backend_health(gateway)[victim.name]["lastError"] or "")
        for load, at in zip(loads, detected_at, strict=True):
            load.wait_completed(12, where=lambda r, at=at: r.submitted > at, timeout=60)
        repair(victim)
    runs = {}
    for i, (scenario, gateway) in enumerate(scenarios.items()):
        run = runs[scenario] = Run(loads[i], fault_at[i], detected_at[i], why[i], query_history(gateway))
        SUMMARY.add(
            summarise(
                scenario,
                kind,
                run.load.records,
                detect_s=detect_s[i],
                fault_at=run.fault_at,
                notes=run.notes(victim.name),
            )
        )
    return runs


def _stop_together(loads: list[Workload]) -> None:
    """Every workload stops submitting at once; then each waits for its queries."""
    with ThreadPoolExecutor(len(loads)) as pool:
        list(pool.map(Workload.stop, loads))


def _assert_failover_guarantees(run: Run, victim: str, failover: bool = True) -> None:
    """None lost; only queries that were on ``victim`` fail, with the gateway's clear error; every
    query submitted after detection succeeds elsewhere; every query of a statement returns the same
    rows. With ``failover``: a query fails only if it
    had returned rows from ``victim``, and queries it had returned none of went on elsewhere."""
    records = run.load.records
    lost = [r for r in records if r.outcome == LOST]
    assert lost == [], f"queries without an answer within their bound: {lost}"
    failed = [r for r in records if r.outcome == FAILED]
    for record in failed:
        assert record.submitted < run.detected_at, record
        assert record.error_type in TRINO_QUERY_ERRORS, record
        assert victim in (record.error or ""), record
    after = [r for r in records if r.submitted > run.detected_at]
    assert after and all(r.outcome == SUCCEEDED for r in after), [r for r in after if r.outcome != SUCCEEDED]
    assert not [r for r in after if run.routed.get(r.query_id or "") == victim]
    # A query that moved to another cluster neither lost nor doubled a row: the same statement
    # returned the same rows every time.
    results: dict[str, list[tuple[Any, ...]]] = {}
    for record in records:
        if record.outcome == SUCCEEDED:
            rows = sorted(map(tuple, record.rows or []))
            assert results.setdefault(record.sql, rows) == rows, record.sql
    if failover:
        no_row = [r for r in failed if r.rows_at is None]
        assert no_row == [], f"failed before any row reached the client (failover should have moved them): {no_row}"
        assert all(run.routed.get(r.query_id or "") == victim for r in failed), failed


def _assert_moved(run: Run, victim: str) -> None:
    """Queries ``victim`` had returned no row of went on on another cluster and ended with their
    rows: in the gateway's history their attempt on ``victim`` (the id their client saw) FAILED_OVER."""
    moved = run.moved()
    assert moved, "no query moved off the victim"
    assert all(r.outcome == SUCCEEDED and r.rows and run.routed[r.query_id or ""] == victim for r in moved), moved


@pytest.fixture
def paging_clusters(kind: str, cluster_factory: ClusterFactory) -> list[Cluster]:
    """trino-1, trino-2 and trino-3 of ``kind`` with pages of ``PAGE_ROWS`` rows."""
    with ThreadPoolExecutor(3) as pool:
        names = ["trino-1", "trino-2", "trino-3"]
        return list(pool.map(lambda name: cluster_factory(kind, name, page_rows=PAGE_ROWS), names))


def _before_and_after(
    scenario: str, kind: str, clusters: list[Cluster], gateway_factory: GatewayFactory, fault, repair
) -> tuple[Run, Run]:
    """The scenario through two gateways in front of the same clusters at once, one with failover
    off (as before it existed), one with it on: the same fault hits both."""
    victim = clusters[0]
    backends = [(c.name, c.url, GROUPS[c.name]) for c in clusters]
    with ThreadPoolExecutor(2) as pool:
        off, on = pool.map(lambda enabled: gateway_factory(backends, failover={"enabled": enabled}), (False, True))
    users = read_only_users()
    runs = _break_under_load(
        {f"{scenario}, failover off": off, scenario: on}, kind, victim, fault, repair, users, returning_rows_and_not
    )
    before, after = runs[f"{scenario}, failover off"], runs[scenario]
    _assert_failover_guarantees(before, victim.name, failover=False)
    _assert_failover_guarantees(after, victim.name)
    return before, after


@every_cluster_kind
def test_killed_cluster_fails_only_queries_that_returned_rows_and_new_ones_go_elsewhere(
    kind, paging_clusters, gateway_factory
):
    start_again = lambda cluster: cluster.start()  # noqa: E731
    before, after = _before_and_after(
        "1 kill a cluster", kind, paging_clusters, gateway_factory, faults.kill, start_again
    )
    _assert_moved(after, paging_clusters[0].name)
    # What a kill looks like from the gateway: new connections refused, or (a request in flight at
    # the kill: a submission, a page) its connection closed or broken without an answer.
    kill_signs = (
        "connection refused",
        "closed the connection without answering",
        "the connection broke",
        "the backend closed the connection",  # the same close, as worded where httpx saw it
    )
    for run in (before, after):
        assert any(sign in run.why for sign in kill_signs), run.why


@every_cluster_kind
def test_paused_cluster_is_detected_by_timeouts_and_only_queries_that_returned_rows_fail(
    kind, paging_clusters, gateway_factory
):
    before, after = _before_and_after(
        "2 pause a cluster", kind, paging_clusters, gateway_factory, faults.pause, faults.resume
    )
    _assert_moved(after, paging_clusters[0].name)
    for run in (before, after):
        assert "timed out" in run.why or "no answer within" in run.why, run.why


def test_cluster_whose_statement_protocol_hangs_is_detected_by_the_query_monitor(kind, three_clusters, gateway_factory):
    # /v1/info keeps answering while polls hang: the default INFO_API check passes every 0.5 s and
    # resets the passive failure count, so only a check through the protocol (QUERY) sees it.
    gateway = gateway_factory([(c.name, c.url, GROUPS[c.name]) for c in three_clusters], health={"monitor": "QUERY"})
    victim = three_clusters[0]
    unhang = lambda cluster: cluster.set_faults(hang_polls=False)  # noqa: E731
    run = _break_under_load({"2b polls hang": gateway}, kind, victim, faults.hang_polls, unhang)["2b polls hang"]
    _assert_failover_guarantees(run, victim.name)
    assert "timed out" in run.why or "no answer within" in run.why
