"""``python -m bench.estimates``: what cost-aware routing costs a query.

1. Routing on a cache hit, in process: one routing decision (the group selector, the cost router, the
   decider's ranking) for a new query whose estimate is in the cache, against the same decision
   without estimates. Two pairs: a rules file whose rule reads ``queryEstimate.max.outputRowCount``
   against one whose rule reads the user (the same shape of rule, no estimate), and the cost router
   (no rules) against no cost router. Median of rounds, microseconds per decision.
2. A submission's time through a gateway (in this process, in front of in-process trinosim) when the
   planner is healthy but each statement is new (one EXPLAIN each), when it hangs, answers 500 or
   garbage (each a new statement: each waits its budget or its failure), and without estimates:
   the median and the largest time to the submission's answer, and what the planner adds beyond
   the gateway without estimates, against the budget (300 ms).

Figures are printed and written to ``bench/results/estimates-<time>.json``; never asserted.
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import requests

from bench.__main__ import machine, save_report
from gateway.backends.health import HealthChecker
from gateway.config import EstimatesConfig, HealthConfig, RoutingConfig
from gateway.routing.cost_routing import CostRouting
from gateway.routing.decider import RouteDecider
from gateway.routing.estimates import Estimator
from gateway.routing.rules import FileRulesSelector, HeaderSelector, parse_rules
from gateway.routing.rules.request import UserSource
from gateway.store.backend import Backend
from gateway.upstream import Upstream
from tests.inprocess import InProcessGateway
from trinosim.inprocess import InProcessSim, LoopThread

SQL = "SELECT c.name, count(*) FROM tpch.tiny.orders o JOIN tpch.tiny.customer c ON o.custkey = c.custkey GROUP BY 1"
BY_ESTIMATE = """---
name: large
condition: 'queryEstimate.max.outputRowCount > 1000'
actions: ['result.put("routingGroup", "large")']
"""
BY_USER = """---
name: large
condition: 'trinoRequestUser.userExistsAndEquals("etl-bot")'
actions: ['result.put("routingGroup", "large")']
"""
COST_ROUTER = {"targets": [{"group": "small", "limits": {"max": {"outputRowCount": 1000}}}, {"group": "large"}]}


class _Registry:
    def __init__(self, backends: list[Backend]) -> None:
        self.backends = backends

    async def all(self) -> list[Backend]:
        return self.backends


class _Loaded:
    def __init__(self, text: str) -> None:
        self.rules = parse_rules(text)


def _scope() -> dict[str, Any]:
    return {
        "type": "http",
        "method": "POST",
        "path": "/v1/statement",
        "query_string": b"",
        "headers": [(b"x-trino-user", b"bench"), (b"x-trino-source", b"bench-client"), (b"x-trino-catalog", b"tpch")],
        "client": ("127.0.0.1", 50000),
    }


async def routing_on_cache_hit(planner_url: str, iterations: int, rounds: int) -> dict[str, Any]:
    backends = [
        Backend(name="small-1", proxy_to="http://127.0.0.1:9001", routing_group="small"),
        Backend(name="large-1", proxy_to="http://127.0.0.1:9002", routing_group="large"),
        Backend(name="planner", proxy_to=planner_url, routing_group="planning"),
    ]
    health = HealthChecker(None, None, HealthConfig(monitor="NOOP"))  # type: ignore[arg-type]
    for backend in backends:
        health.of(backend.name).succeeded(None)
    decider = RouteDecider(RoutingConfig(default_group="small"), health, lambda name: 0)
    upstream = Upstream(5.0, 30.0, 64, 64)
    settings = EstimatesConfig.model_validate(
        {"budget": "30s", "planner": {"backend": "planner"}, "cost_router": COST_ROUTER}
    )
    estimator = Estimator(settings, "small", upstream, _Registry(backends), decider)  # type: ignore[arg-type]
    users = UserSource()
    by_estimate = FileRulesSelector(_Loaded(BY_ESTIMATE), 1_000_000, users, None, estimator)  # type: ignore[arg-type]
    by_user = FileRulesSelector(_Loaded(BY_USER), 1_000_000, users, None, estimator)  # type: ignore[arg-type]
    header = HeaderSelector()
    routing_off = CostRouting(estimator, EstimatesConfig(), "small")
    routing_on = CostRouting(estimator, settings, "small")
    scope, body = _scope(), SQL.encode()
    warmed = await by_estimate.select(scope, body)  # the one EXPLAIN: from here on, cache hits
    assert warmed.estimate is not None and warmed.estimate.source == "planner", warmed.estimate

    async def decide(selector: Any, routing: CostRouting) -> None:
        selection = await selector.select(scope, body)
        selection = await routing.apply(selection, scope, SQL, "bench")
        decider.decide(backends, selection.group, user="bench")

    cases = {
        "rules, no estimate read": (by_user, routing_off),
        "rules reading queryEstimate (cache hit)": (by_estimate, routing_off),
        "header, no cost router": (header, routing_off),
        "cost router (cache hit)": (header, routing_on),
    }
    wall: dict[str, list[float]] = {name: [] for name in cases}
    cpu: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, (selector, routing) in cases.items():  # interleaved: load on the machine hits every case
            started, started_cpu = time.perf_counter(), time.thread_time()
            for _ in range(iterations):
                await decide(selector, routing)
            cpu[name].append((time.thread_time() - started_cpu) / iterations * 1e6)
            wall[name].append((time.perf_counter() - started) / iterations * 1e6)
    await upstream.close()
    # CPU time of the thread that decides: what a decision costs, least disturbed by other processes on a
    # busy machine (wall time beside it).
    out: dict[str, Any] = {
        name: {"cpu_us": round(statistics.median(cpu[name]), 2), "wall_us": round(statistics.median(wall[name]), 2)}
        for name in cases
    }
    for added, (with_estimate, without) in {
        "added by queryEstimate on a cache hit": ("rules reading queryEstimate (cache hit)", "rules, no estimate read"),
        "added by the cost router on a cache hit": ("cost router (cache hit)", "header, no cost router"),
    }.items():
        out[added] = {unit: round(out[with_estimate][unit] - out[without][unit], 2) for unit in ("cpu_us", "wall_us")}
    out["explains"] = estimator.explains
    return out


def _submission_ms(url: str, sql: str) -> float:
    started = time.perf_counter()
    answer = requests.post(f"{url}/v1/statement", data=sql, headers={"X-Trino-User": "bench"}, timeout=60)
    elapsed = (time.perf_counter() - started) * 1000
    answer.raise_for_status()
    next_uri = answer.json().get("nextUri")
    if next_uri:
        requests.delete(next_uri, timeout=30)
    return elapsed


def submissions(loop: LoopThread, count: int) -> dict[str, Any]:
    small, large, planner = (InProcessSim(loop, name=n).start() for n in ("small", "large", "planner"))
    directory = Path(tempfile.mkdtemp(prefix="bench-estimates-"))
    rules = directory / "rules.yaml"
    rules.write_text(BY_ESTIMATE)
    backends = [
        {"name": "small", "proxy_to": small.url, "routing_group": "small"},
        {"name": "large", "proxy_to": large.url, "routing_group": "large"},
        {"name": "planner", "proxy_to": planner.url, "routing_group": "planning"},
    ]
    with_rules = {"enabled": True, "rules_file": str(rules)}
    # One user sends every statement here: a rate it stays under, so that each case is the planner's.
    rate = {"per_second": 1000, "burst": 1000}
    estimates = {"budget": "300ms", "timeout": "2s", "planner": {"backend": "planner"}, "user_rate": rate}
    gateways = {
        "no estimates": InProcessGateway(loop, {"backends": backends, "routing": {"default_group": "small"}}),
        "estimates": InProcessGateway(
            loop,
            {
                "backends": backends,
                "routing_rules": with_rules,
                "routing": {"default_group": "small", "estimates": estimates},
            },
        ),
    }
    planner_faults = {
        "healthy planner, new statements": {},
        "planner hangs": {"hang_polls": True},
        "planner answers 500": {"error_rate": 1.0, "error_status": 500},
        "planner answers garbage": {"garbage_rate": 1.0},
    }
    out: dict[str, Any] = {"budget_ms": 300}
    try:
        for gateway in gateways.values():
            gateway.start()
        sequence = 0
        cases = [("no estimates", "no estimates", {}), *(("estimates", name, f) for name, f in planner_faults.items())]
        for gateway_name, case, faults in cases:
            planner.set_faults(**({"hang_polls": False, "error_rate": 0.0, "garbage_rate": 0.0} | faults))
            times = []
            for _ in range(count):
                sequence += 1  # a new statement each time: never in the cache
                times.append(
                    _submission_ms(gateways[gateway_name].url, f"SELECT {sequence}, name FROM tpch.tiny.nation")
                )
            out[case] = {"p50_ms": round(statistics.median(times), 1), "max_ms": round(max(times), 1)}
            if gateway_name == "estimates":
                # The gateway's own measure of the wait for the estimate (the history's latencyMs).
                waits = [q["estimate"]["latencyMs"] for q in gateways[gateway_name].queries(limit=count)["queries"]]
                out[case]["estimate_wait_p50_ms"] = round(statistics.median(waits), 1)
                out[case]["estimate_wait_max_ms"] = round(max(waits), 1)
        base = out["no estimates"]["p50_ms"]
        for case in planner_faults:
            out[case]["added_p50_ms"] = round(out[case]["p50_ms"] - base, 1)
    finally:
        planner.set_faults(hang_polls=False, error_rate=0.0, garbage_rate=0.0)
        for gateway in gateways.values():
            gateway.stop()
        for sim in (small, large, planner):
            sim.stop()
        shutil.rmtree(directory, ignore_errors=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--iterations", type=int, default=2000, help="routing decisions per round and case")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--submissions", type=int, default=15, help="submissions per planner case")
    args = parser.parse_args()
    loop = LoopThread()
    report: dict[str, Any] = {"date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "machine": machine()}
    try:
        planner = InProcessSim(loop, name="bench-planner").start()
        try:
            report["routing_decision_us"] = loop.run(
                routing_on_cache_hit(planner.url, args.iterations, args.rounds), timeout=600
            )
        finally:
            planner.stop()
        report["submission"] = submissions(loop, args.submissions)
    finally:
        loop.close()
    print_report(report)
    save_report("estimates", report)


def print_report(report: dict[str, Any]) -> None:
    print(f"\nmachine: {report['machine']}")
    print("\n1. routing decision in process, microseconds per decision (median of rounds)")
    print("   (CPU time of the deciding thread, and wall time)")
    for name, value in report["routing_decision_us"].items():
        shown = f"cpu {value['cpu_us']:>7}  wall {value['wall_us']:>7}" if isinstance(value, dict) else value
        print(f"   {name:<45} {shown}")
    submission = report["submission"]
    print(f"\n2. submission through an in-process gateway (budget {submission['budget_ms']} ms), ms:")
    for name, row in submission.items():
        if isinstance(row, dict):
            added = f", added p50 {row['added_p50_ms']}" if "added_p50_ms" in row else ""
            if "estimate_wait_p50_ms" in row:
                added += (
                    f"; waited for the estimate p50 {row['estimate_wait_p50_ms']}, max {row['estimate_wait_max_ms']}"
                )
            print(f"   {name:<35} p50 {row['p50_ms']}, max {row['max_ms']}{added}")


if __name__ == "__main__":
    main()
