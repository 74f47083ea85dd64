"""``queryEstimate`` in routing rules: every name the rules reference documents, read from an estimator
in front of a scripted planner; asked only when a rule reads it; NaN as unknown."""

from __future__ import annotations

from typing import Any

from gateway.routing.estimates import Estimator
from gateway.routing.rules.file_rules import parse_rules
from gateway.routing.rules.selector import FileRulesSelector
from tests.estimates.conftest import Estimators
from tests.rules.helpers import UNVERIFIED, _LoadedRules, scope

BIG = """---
name: big
condition: 'queryEstimate.max.outputRowCount > 1000'
actions: ['result.put("routingGroup", "large")']
"""
NATION = "SELECT * FROM tpch.tiny.nation"
THREE_WAY = (
    "SELECT count(*) FROM tpch.tiny.lineitem l JOIN tpch.tiny.orders o ON l.orderkey = o.orderkey "
    "JOIN tpch.tiny.customer c ON o.custkey = c.custkey"
)


def rules_selector(
    rules_yaml: str, estimator: Estimator | None, fired: list[list[str]] | None = None
) -> FileRulesSelector:
    on_fired = fired.append if fired is not None else None
    return FileRulesSelector(_LoadedRules(parse_rules(rules_yaml)), 1_000_000, UNVERIFIED, on_fired, estimator)  # type: ignore[arg-type]


def select(estimators: Estimators, selector: FileRulesSelector, sql: str, source: str | None = None) -> Any:
    headers = {"X-Trino-User": "alice"} | ({"X-Trino-Source": source} if source is not None else {})
    return estimators.run(selector.select(scope(headers), sql.encode()))


def test_a_rule_on_the_largest_nodes_rows_sends_a_three_way_join_to_the_large_group(estimators: Estimators, make_sim):
    planner = make_sim(name="planner")
    selector = rules_selector(BIG, estimators.make(planner.url, budget="30s"))
    small, large = select(estimators, selector, NATION), select(estimators, selector, THREE_WAY)
    assert (small.group, large.group) == (None, "large")
    assert small.estimate.source == large.estimate.source == "planner"
    assert small.estimate.estimate.max.outputRowCount == 25 and large.estimate.estimate.max.outputRowCount > 60_000
    again = select(estimators, selector, THREE_WAY)
    assert (again.group, again.estimate.source) == ("large", "cache")
    assert planner.load()["explained"] == 2


def test_rules_that_do_not_read_an_estimate_cost_no_explain(estimators: Estimators, scripted):
    planner = scripted()
    estimator = estimators.make(planner.url, budget="30s")
    header_guarded = """---
name: airflow-big
condition: 'request.getHeader("X-Trino-Source") == "airflow" && queryEstimate.joins >= 2'
actions: ['result.put("routingGroup", "etl")']
---
name: bi
condition: 'trinoQueryProperties.tablesContains("tpch.tiny.nation")'
actions: ['result.put("routingGroup", "bi")']
"""
    selector = rules_selector(header_guarded, estimator)
    selected = select(estimators, selector, NATION, source="superset")
    assert (selected.group, selected.estimate) == ("bi", None)
    assert planner.posts == [] and len(estimator.cache) == 0
    # The same rules for a query whose header lets the rule read an estimate: now one is asked.
    assert select(estimators, selector, NATION, source="airflow").estimate.source == "planner"
    assert len(planner.posts) == 1


def test_every_name_of_the_rules_reference_reads(estimators: Estimators, scripted):
    planner = scripted()
    names = [
        "available",
        "source",
        *(f"{kind}.{name}" for kind in ("total", "max") for name in _ESTIMATES),
        "fragments",
        "joins",
        "tableScans",
        "remoteExchanges",
        "aggregations",
        "nodes",
    ]
    rules = "".join(
        f"""---
name: read {name}
condition: 'true'
actions: ['result.put("{name}", queryEstimate.{name})']
"""
        for name in names
    )
    selector = rules_selector(rules, estimators.make(planner.url, budget="30s"))
    outcome = estimators.run(selector.decide(scope({"X-Trino-User": "alice"}), NATION.encode()))
    assert outcome.failed == []
    read = outcome.result
    assert (read["available"], read["source"]) == (True, "planner")
    assert (read["max.outputRowCount"], read["total.outputRowCount"], read["max.cpuCost"]) == (25.0, 50.0, 400.0)
    assert (read["fragments"], read["tableScans"], read["remoteExchanges"], read["joins"]) == (2.0, 1.0, 1.0, 0.0)
    assert (read["aggregations"], read["nodes"]) == (0.0, 3.0)
    # Getter spellings read the same (MVEL's x.getName() for x.name).
    getters = """---
name: getters
condition: 'queryEstimate.isAvailable() && queryEstimate.getMax().getOutputRowCount() == 25'
actions: ['result.put("routingGroup", "small")']
"""
    assert select(estimators, rules_selector(getters, selector.estimator), NATION).group == "small"


_ESTIMATES = ("outputRowCount", "outputSizeInBytes", "cpuCost", "memoryCost", "networkCost")


def test_without_an_estimate_every_number_is_nan_and_no_comparison_holds(estimators: Estimators, scripted):
    planner = scripted()
    planner.mode = "500"
    rules = """---
name: big
condition: 'queryEstimate.max.outputRowCount > 1000 || queryEstimate.joins >= 2'
actions: ['result.put("routingGroup", "large")']
---
name: small
condition: 'queryEstimate.max.outputRowCount <= 1000'
actions: ['result.put("routingGroup", "small")']
---
name: none
condition: '!queryEstimate.available && queryEstimate.total.cpuCost != queryEstimate.total.cpuCost'
actions: ['result.put("routingGroup", "fallback")']
"""
    selected = select(estimators, rules_selector(rules, estimators.make(planner.url, budget="30s")), NATION)
    assert selected.group == "fallback" and selected.estimate.cause == "planner_error"


def test_rules_that_wait_for_the_planner_run_again_and_fire_once(estimators: Estimators, scripted):
    planner = scripted()
    fired: list[list[str]] = []
    rules = """---
name: everyone
condition: 'true'
actions: ['state.put("seen", 1)']
---
name: big
condition: 'queryEstimate.max.outputRowCount > 10'
actions: ['result.put("routingGroup", "large")']
"""
    selector = rules_selector(rules, estimators.make(planner.url, budget="30s"), fired)
    assert select(estimators, selector, NATION).group == "large"
    assert fired == [["everyone", "big"]]


def test_a_slow_planner_leaves_the_rules_to_decide_without_an_estimate_within_the_budget(
    estimators: Estimators, scripted
):
    planner = scripted()
    planner.mode = "hang"
    selector = rules_selector(BIG, estimators.make(planner.url, budget="150ms", timeout="1s"))
    selected = select(estimators, selector, THREE_WAY)
    assert (selected.group, selected.estimate.cause) == (None, "budget")


def test_without_an_estimator_no_estimate_is_ever_available(estimators: Estimators):
    selected = select(estimators, rules_selector(BIG, None), THREE_WAY)
    assert (selected.group, selected.estimate.available) == (None, False)
