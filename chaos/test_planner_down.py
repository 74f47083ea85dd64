"""Scenario 17: the planning cluster killed mid-burst.

Two groups: ``small`` (trino-1, the default) and ``large`` (trino-2); a rule sends a query whose largest
plan node outputs more than 1,000 rows to ``large``, by the estimate the gateway asks of a third
cluster, ``planner`` (its own group, ``planning``: no query runs there). Six users run a burst of
queries, most of them statements the gateway has not seen (each needs an EXPLAIN), some repeated
(answered from the estimate cache), small ones (``nation``, ``region``) and large ones (``lineitem``).

Mid-burst, once estimates have routed queries both ways, the planner is SIGKILLed. What it proves:
no query fails and none is lost because of it (an EXPLAIN cut by the kill, refused, or asked while the
gateway still took the planner for healthy is a fallback: the query is routed as if no estimate had
been asked for, to ``small``); statements in the cache are still routed by their estimate; the
gateway marks the planner UNHEALTHY (then new queries do not even try it: ``no_planner``); once the
planner is back, estimates flow again. The fallbacks by cause are in the summary's notes.
"""

from __future__ import annotations

import collections
import time
from pathlib import Path
from typing import Any

from chaos.conftest import ClusterFactory, GatewayFactory
from chaos.observe import query_history, wait_state
from chaos.report import SUMMARY, summarise
from chaos.workload import FAILED, LOST, QueryKind, User, Workload

RULES = """---
name: by rows
condition: 'queryEstimate.max.outputRowCount > 1000'
actions: ['result.put("routingGroup", "large")']
"""
# Statements the gateway has not seen, most of the time: a literal in each (literals tell statements apart).
NEW_SMALL = tuple(f"SELECT {n} AS k, name FROM tpch.tiny.nation WHERE regionkey < {n % 5}" for n in range(400))
NEW_LARGE = tuple(f"SELECT {n} AS k, count(*) FROM tpch.tiny.lineitem WHERE linenumber < {n % 7}" for n in range(400))
# And the same few statements again and again: estimated once, then from the cache.
REPEATED = (
    "SELECT name FROM tpch.tiny.region ORDER BY name",
    "SELECT returnflag, count(*) FROM tpch.tiny.lineitem GROUP BY returnflag",
)
SMALL_RUN, LARGE_RUN = (0.02, 0.1), (0.1, 0.3)  # trinosim's sim_run_time, seconds
KINDS = (
    QueryKind("new small", NEW_SMALL, SMALL_RUN, bound=60.0),
    QueryKind("new large", NEW_LARGE, LARGE_RUN, bound=60.0),
    QueryKind("repeated", REPEATED, SMALL_RUN, bound=60.0),
)
CONFIG: dict[str, Any] = {
    "default_group": "small",
    # A budget that a healthy planner meets on a busy machine, and a per-user rate the burst stays
    # under: before the kill, queries are routed by their estimates (the kill is what this is about).
    "estimates": {
        "budget": "3s",
        "timeout": "5s",
        "planner": {"backend": "planner"},
        "user_rate": {"per_second": 100, "burst": 100},
        # Each query sets trinosim's sim_run_time, which changes no plan: it must not tell statements apart.
        "session_properties": ["join_distribution_type"],
    },
}
FALLBACK_CAUSES = {"unreachable", "planner_error", "no_planner", "budget", "planner_timeout"}


def _burst_users() -> list[User]:
    # No routing group header: the rule (or, without an estimate, the default group) decides.
    return [User(f"analyst-{n}", None, KINDS, think_time=0.02) for n in range(6)]


def test_the_planning_cluster_killed_mid_burst_fails_no_query(
    kind, cluster_factory: ClusterFactory, gateway_factory: GatewayFactory, tmp_path: Path
):
    small, large, planner = (cluster_factory(kind, name) for name in ("trino-1", "trino-2", "planner"))
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    gateway = gateway_factory(
        [(small.name, small.url, "small"), (large.name, large.url, "large"), ("planner", planner.url, "planning")],
        routing=CONFIG,
        routing_rules={"enabled": True, "rules_file": str(rules)},
    )
    with Workload(gateway.url, _burst_users(), seed=17) as load:
        load.wait_completed(30, timeout=90)
        load.wait_for("queries routed by their estimates", lambda: _estimated_both_ways(gateway), timeout=90)
        fault_at = load.mark("fault")
        planner.kill()
        detect_s = wait_state(gateway, "planner", {"UNHEALTHY"})
        detected_at = load.mark("detected")
        load.wait_completed(40, where=lambda r: r.submitted > detected_at, timeout=120)
        planner.start()
        wait_state(gateway, "planner", {"HEALTHY"}, timeout=60)
        back_at = load.mark("planner back")
        back_ms = time.time() * 1000
        load.wait_completed(20, where=lambda r: r.submitted > back_at, timeout=120)
        # New statements come now and then among the repeated ones: wait for one, bounded.
        load.wait_for(
            "a new statement estimated by the planner again",
            lambda: _planner_estimated_since(gateway, back_ms + 1000),
            timeout=90,
        )
    records = load.records
    history = query_history(gateway)

    # None lost, none failed: the kill cost queries their estimates, never their run.
    assert [r for r in records if r.outcome in (FAILED, LOST)] == []
    seen = {r.query_id: r for r in records if r.query_id}
    routed = [(seen[query_id], query) for query_id, query in history.items() if query_id in seen]
    assert len(routed) == len(records)
    after_kill = [(r, q) for r, q in routed if r.submitted > fault_at and r.submitted < back_at]
    causes = collections.Counter(q["estimate"]["cause"] for _, q in after_kill if not q["estimate"]["available"])
    assert causes and set(causes) <= FALLBACK_CAUSES, causes
    # Without an estimate a query goes where it would have gone without the rule: the default group.
    assert all(q["backend"] == "trino-1" for _, q in after_kill if not q["estimate"]["available"])
    # Statements in the cache are still routed by their estimate while the planner is down.
    cached = [(r, q) for r, q in after_kill if q["estimate"]["source"] == "cache"]
    assert cached and all(
        q["backend"] == ("trino-2" if q["estimate"]["max"]["outputRowCount"] > 1000 else "trino-1") for _, q in cached
    )
    # Once the planner is back, new statements are estimated again: the history has one submitted over
    # a second after its return (waited for above, bounded; the workload's records may end before
    # such a query completes).
    assert _planner_estimated_since(gateway, back_ms + 1000)
    SUMMARY.add(
        summarise(
            "17 planner killed mid-burst",
            kind,
            records,
            detect_s=detect_s,
            fault_at=fault_at,
            notes=(
                f"after the kill, until the planner was back ({back_at - fault_at:.1f} s, {len(after_kill)} queries): "
                f"fallbacks {dict(causes)}, {len(cached)} routed by a cached estimate"
            ),
        )
    )


def _planner_estimated_since(gateway: Any, since_ms: float) -> bool:
    """A query submitted after ``since_ms`` (epoch ms) had its estimate from the planner."""
    status, body = gateway.call("GET", "/gateway/queries?limit=200")
    assert status == 200, body
    return any(
        q["submittedAt"] > since_ms and (q["estimate"] or {}).get("source") == "planner" for q in body["queries"]
    )


def _estimated_both_ways(gateway: Any) -> bool:
    """The latest queries went to both groups by their planner's estimates."""
    status, body = gateway.call("GET", "/gateway/queries?limit=200")
    assert status == 200, body
    estimated = [q for q in body["queries"] if (q["estimate"] or {}).get("source") == "planner"]
    return {q["backend"] for q in estimated} >= {"trino-1", "trino-2"}
