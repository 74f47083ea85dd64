"""Cost-aware routing through a running gateway: a rule on the planner's estimate and the cost router,
with the Python client, the Trino CLI and the JavaScript client; one EXPLAIN for a hundred identical
submissions; a planner that hangs, fails or talks nonsense; statements never sent; the per-user rate;
the estimate in the history, the query's trace, the metrics and /gateway/health."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
from trino.transaction import IsolationLevel

from observability import metrics
from tests.conftest import connect, run_query
from tests.gateway.conftest import every_store, store_plays_no_part
from tests.inprocess import InProcessGateway
from tests.trinosim.helpers import wait_until
from trinosim.inprocess import InProcessSim
from trinosim.otlp_receiver import OtlpReceiver

NATION = "SELECT * FROM tpch.tiny.nation"
THREE_WAY = (
    "SELECT count(*) FROM tpch.tiny.lineitem l JOIN tpch.tiny.orders o ON l.orderkey = o.orderkey "
    "JOIN tpch.tiny.customer c ON o.custkey = c.custkey"
)
# The acceptance's rule: the largest node's rows decide. Without an estimate, the query stays small.
BY_ROWS = """---
name: by rows
condition: 'queryEstimate.max.outputRowCount > 1000'
actions: ['result.put("routingGroup", "large")']
"""


def cost_config(
    sims: list[InProcessSim], planner: InProcessSim, rules: Path | None, **estimates: Any
) -> dict[str, Any]:
    """trino-1 is the small group (the default), trino-2 the large one; EXPLAINs go to ``planner``."""
    config: dict[str, Any] = {
        "backends": [
            {"name": "trino-1", "proxy_to": sims[0].url, "routing_group": "small"},
            {"name": "trino-2", "proxy_to": sims[1].url, "routing_group": "large"},
            {"name": "planner", "proxy_to": planner.url, "routing_group": "planning"},
        ],
        "routing": {
            "default_group": "small",
            # The machine is shared: a generous budget, unless a test is about the budget.
            "estimates": {"budget": "30s", "planner": {"backend": "planner"}, **estimates},
        },
    }
    if rules is not None:
        config["routing_rules"] = {"enabled": True, "rules_file": str(rules)}
    return config


@pytest.fixture
def planner(make_sim: Callable[..., InProcessSim]) -> InProcessSim:
    return make_sim(name="planner")


@pytest.fixture
def rules_file(tmp_path: Path) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(BY_ROWS)
    return path


@pytest.fixture
def by_rows(make_gateway, sims, planner, rules_file) -> InProcessGateway:
    return make_gateway(cost_config(sims, planner, rules_file))


def history(gateway: InProcessGateway, count: int | None = None) -> list[dict[str, Any]]:
    """The gateway's history, oldest first (once it has ``count`` queries)."""

    def rows() -> list[dict[str, Any]]:
        found = gateway.queries(limit=500)["queries"]
        return found if count is None or len(found) >= count else []

    return list(reversed(wait_until(rows, what=f"{count} queries in the history")))


def _routed(gateway: InProcessGateway, count: int) -> list[tuple[str, str, float | None]]:
    """(backend, estimate source, max.outputRowCount) of the history's queries, oldest first."""
    return [
        (q["backend"], q["estimate"]["source"], q["estimate"]["max"]["outputRowCount"]) for q in history(gateway, count)
    ]


@every_store  # the history's estimate, on each store
def test_the_python_client_sends_a_small_query_to_the_small_group_and_a_join_to_the_large_by_its_estimate(
    by_rows, planner
):
    assert len(run_query(by_rows.url, NATION)) == 25
    assert run_query(by_rows.url, THREE_WAY)[0][0] > 0
    assert len(run_query(by_rows.url, NATION)) == 25
    routed = _routed(by_rows, 3)
    assert [(backend, source) for backend, source, _ in routed] == [
        ("trino-1", "planner"),
        ("trino-2", "planner"),
        ("trino-1", "cache"),
    ]
    assert routed[0][2] == 25 and routed[1][2] > 60_000  # lineitem's scan
    nation, join, _ = history(by_rows, 3)
    assert (nation["routingGroup"], join["routingGroup"], join["routingRule"]) == ("small", "large", "by rows")
    assert join["estimate"]["joins"] == 2 and join["estimate"]["tableScans"] == 3
    assert planner.load()["explained"] == 2


@store_plays_no_part
def test_the_trino_cli_is_routed_by_the_estimate(by_rows, trino_cli):
    for sql in (NATION, THREE_WAY):
        done = trino_cli(by_rows.url, sql)
        assert done.returncode == 0, done.stderr
    assert [backend for backend, _, _ in _routed(by_rows, 2)] == ["trino-1", "trino-2"]


@pytest.mark.slow  # node, a child process
@store_plays_no_part
def test_the_javascript_client_is_routed_by_the_estimate(by_rows, trino_js):
    small, large = trino_js(by_rows.url, NATION), trino_js(by_rows.url, THREE_WAY)
    assert small["error"] is None and len(small["rows"]) == 25
    assert large["error"] is None and large["rows"][0][0] > 0
    assert [backend for backend, _, _ in _routed(by_rows, 2)] == ["trino-1", "trino-2"]


@store_plays_no_part
def test_a_hundred_concurrent_submissions_of_one_new_statement_cause_one_explain(
    make_gateway, sims, planner, rules_file
):
    # The planner answers slowly, so that the hundred arrive while its EXPLAIN is under way.
    planner.set_faults(latency_ms=1000)
    gateway = make_gateway(cost_config(sims, planner, rules_file))
    statement = "SELECT name FROM tpch.tiny.region WHERE regionkey < 3"

    def submit(n: int) -> str:
        answer = requests.post(
            f"{gateway.url}/v1/statement", data=statement, headers={"X-Trino-User": f"user-{n % 7}"}, timeout=60
        )
        answer.raise_for_status()
        page = answer.json()
        requests.delete(page["nextUri"], timeout=30)  # the query itself is not the point
        return page["id"]

    with ThreadPoolExecutor(100) as pool:
        ids = list(pool.map(submit, range(100)))
    assert len(set(ids)) == 100
    assert planner.load()["explained"] == 1
    assert len(run_query(gateway.url, statement)) == 3  # a repeat within the TTL: none more
    assert planner.load()["explained"] == 1
    sources = [q["estimate"]["source"] for q in history(gateway, 101)]
    assert sources.count("cache") >= 1 and set(sources) <= {"planner", "cache"}


def _fallbacks(cause: str) -> float:
    return metrics.REGISTRY.get_sample_value("trino_gateway_estimate_fallbacks_total", {"cause": cause}) or 0.0


@store_plays_no_part
@pytest.mark.parametrize(
    ("faults", "cause"),
    [
        ({"hang_polls": True}, "budget"),
        ({"error_rate": 1.0, "error_status": 500}, "planner_error"),
        ({"garbage_rate": 1.0}, "bad_answer"),
    ],
    ids=["hangs", "500", "garbage"],
)
def test_a_planner_that_hangs_fails_or_talks_nonsense_never_fails_a_query(
    make_gateway, sims, planner, rules_file, faults, cause
):
    planner.set_faults(**faults)
    gateway = make_gateway(cost_config(sims, planner, rules_file, budget="300ms", timeout="2s"))
    before = _fallbacks(cause)
    assert len(run_query(gateway.url, NATION)) == 25
    assert run_query(gateway.url, THREE_WAY)[0][0] > 0
    routed = history(gateway, 2)
    # Without an estimate both routed as if none had been asked for: the default group.
    assert [q["backend"] for q in routed] == ["trino-1", "trino-1"]
    assert [(q["estimate"]["available"], q["estimate"]["cause"]) for q in routed] == [(False, cause)] * 2
    assert _fallbacks(cause) == before + 2
    if cause == "budget":
        # It waited its budget and no longer (the figure of how much longer: make bench).
        assert all(q["estimate"]["latencyMs"] >= 300 for q in routed)
    assert sum(f"without an estimate: {cause}" in line for line in gateway.log().splitlines()) == 1
    planner.set_faults(hang_polls=False, error_rate=0.0, garbage_rate=0.0)


@store_plays_no_part
def test_statements_that_cannot_be_explained_never_reach_the_planner(by_rows, planner):
    with connect(by_rows.url, catalog="memory", schema="default") as conn:
        cursor = conn.cursor()
        for sql in (
            "SET SESSION join_distribution_type = 'BROADCAST'",
            "RESET SESSION join_distribution_type",
            "CREATE TABLE memory.default.facts (a bigint)",
            "SHOW TABLES FROM memory.default",
            "DESCRIBE memory.default.facts",
            "EXPLAIN SELECT * FROM tpch.tiny.nation",
            "DROP TABLE memory.default.facts",
            "USE tpch.tiny",
        ):
            cursor.execute(sql)
            cursor.fetchall()
    with connect(by_rows.url, isolation_level=IsolationLevel.READ_UNCOMMITTED) as conn:  # START TRANSACTION
        cursor = conn.cursor()
        cursor.execute("SELECT 1")
        cursor.fetchall()
        conn.commit()
    assert planner.load()["explained"] == 0
    estimates = {q["query"].split()[0].upper(): q["estimate"] for q in history(by_rows, 11)}
    for verb in ("SET", "RESET", "CREATE", "SHOW", "DESCRIBE", "EXPLAIN", "DROP", "USE", "START"):
        assert estimates[verb] is not None and estimates[verb]["cause"] == "not_explainable", verb
    # A transaction's statements go to the backend that owns it, whatever the rules: no estimate asked.
    assert estimates["SELECT"] is None and estimates["COMMIT"] is None


@store_plays_no_part
def test_a_user_over_the_explain_rate_is_routed_without_estimates(make_gateway, sims, planner, rules_file):
    gateway = make_gateway(cost_config(sims, planner, rules_file, user_rate={"per_second": 0.001, "burst": 2}))
    for n in range(4):
        run_query(gateway.url, f"SELECT {n}, count(*) FROM tpch.tiny.lineitem", user="heavy")
    run_query(gateway.url, "SELECT 9, count(*) FROM tpch.tiny.lineitem", user="light")
    routed = history(gateway, 5)
    assert [(q["user"], q["estimate"]["source"] or q["estimate"]["cause"]) for q in routed] == [
        ("heavy", "planner"),
        ("heavy", "planner"),
        ("heavy", "rate_limited"),
        ("heavy", "rate_limited"),
        ("light", "planner"),
    ]
    # Routed without an estimate: the default group; with one (lineitem's scan): large.
    assert [q["backend"] for q in routed] == ["trino-2", "trino-2", "trino-1", "trino-1", "trino-2"]
    assert planner.load()["explained"] == 3


@store_plays_no_part
def test_the_cost_router_places_queries_by_their_estimate_without_rules(make_gateway, sims, planner):
    router = {
        "groups": ["small"],
        "targets": [
            {"group": "small", "limits": {"max": {"outputRowCount": 1000}, "joins": 1}},
            {"group": "large"},
        ],
    }
    gateway = make_gateway(cost_config(sims, planner, None, cost_router=router))
    run_query(gateway.url, NATION)
    run_query(gateway.url, THREE_WAY)
    run_query(gateway.url, THREE_WAY, http_headers={"X-Trino-Routing-Group": "planning"})  # not placed by cost
    routed = history(gateway, 3)
    assert [(q["backend"], q["routingSource"]) for q in routed] == [
        ("trino-1", "cost"),
        ("trino-2", "cost"),
        ("planner", "header"),
    ]
    assert routed[2]["estimate"] is None  # nothing asked for it
    assert planner.load()["explained"] == 2


@store_plays_no_part
def test_always_estimates_every_query_for_its_history_whatever_routes_it(make_gateway, sims, planner):
    gateway = make_gateway(cost_config(sims, planner, None, always=True))
    run_query(gateway.url, NATION, http_headers={"X-Trino-Routing-Group": "large"})
    (query,) = history(gateway, 1)
    assert (query["backend"], query["routingSource"], query["estimate"]["source"]) == ("trino-2", "header", "planner")


@store_plays_no_part
def test_without_a_rule_router_or_setting_that_asks_no_explain_is_made(make_gateway, sims, planner):
    gateway = make_gateway(cost_config(sims, planner, None))
    run_query(gateway.url, THREE_WAY)
    (query,) = history(gateway, 1)
    assert query["estimate"] is None and planner.load()["explained"] == 0
    assert len(gateway.services.estimator.cache) == 0


@store_plays_no_part
def test_health_shows_the_cache_size_and_metrics_count_hits_misses_and_explains(by_rows):
    hits = metrics.REGISTRY.get_sample_value("trino_gateway_estimate_cache_total", {"result": "hit"}) or 0.0
    for _ in range(3):
        run_query(by_rows.url, NATION)
    answer = requests.get(f"{by_rows.url}/gateway/health", timeout=15)
    assert answer.status_code == 200 and isinstance(answer.json(), list)
    # The statement as sent and as normalised: two entries.
    assert answer.headers["X-Trino-Gateway-Estimate-Cache-Entries"] == "2"
    assert int(answer.headers["X-Trino-Gateway-Estimate-Cache-Bytes"]) > 0
    assert metrics.REGISTRY.get_sample_value("trino_gateway_estimate_cache_total", {"result": "hit"}) == hits + 2
    exposition = requests.get(f"{by_rows.url}/metrics", timeout=15).text
    assert 'trino_gateway_explain_seconds_count{outcome="ok"}' in exposition
    assert "trino_gateway_estimate_cache_entries" in exposition


@store_plays_no_part
def test_the_querys_trace_carries_its_estimate(make_gateway, sims, planner, rules_file, monkeypatch):
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
    with OtlpReceiver() as receiver:
        config = cost_config(sims, planner, rules_file)
        config["observability"] = {"tracing": {"endpoint": receiver.url}}
        gateway = make_gateway(config)
        run_query(gateway.url, THREE_WAY)
        spans = receiver.wait_for(lambda got: {"route", "estimate"} <= {s.name for s in got})
    route = next(s for s in spans if s.name == "route")
    assert route.attributes["trino.routing.group"] == "large"
    assert route.attributes["trino.estimate.source"] == "planner"
    assert route.attributes["trino.estimate.max.outputRowCount"] > 60_000
    assert route.attributes["trino.estimate.joins"] == 2
    estimate = next(s for s in spans if s.name == "estimate")
    assert estimate.trace_id == route.trace_id and estimate.end_ns - estimate.start_ns > 0
