"""Reading EXPLAIN's JSON plan into an estimate: trinosim's plans of a small and a large query, Trino's
cumulative costs, NaN as unknown, and text that is not a plan."""

from __future__ import annotations

import math
from typing import Any

import orjson
import pytest

from gateway.routing.estimates.plan import MAX_NODES, BadPlan, read_plan
from tests.conftest import run_query

NATION = "SELECT * FROM tpch.tiny.nation"
THREE_WAY = (
    "SELECT c.name, sum(l.extendedprice) FROM tpch.tiny.lineitem l "
    "JOIN tpch.tiny.orders o ON l.orderkey = o.orderkey "
    "JOIN tpch.tiny.customer c ON o.custkey = c.custkey GROUP BY c.name"
)


def explain(url: str, sql: str) -> str:
    (plan,) = run_query(url, f"EXPLAIN (TYPE DISTRIBUTED, FORMAT JSON) {sql}")[0]
    assert isinstance(plan, str)
    return plan


def node(name: str, estimates: list[dict[str, Any]], children: list[Any] = (), **descriptor: str) -> dict[str, Any]:
    return {
        "id": name,
        "name": name,
        "descriptor": descriptor,
        "outputs": [],
        "details": [],
        "estimates": estimates,
        "children": list(children),
    }


def figures(rows: Any, size: Any, cpu: Any, memory: Any = 0.0, network: Any = 0.0) -> dict[str, Any]:
    return {
        "outputRowCount": rows,
        "outputSizeInBytes": size,
        "cpuCost": cpu,
        "memoryCost": memory,
        "networkCost": network,
    }


def test_a_small_and_a_large_query_differ_by_orders_of_magnitude_in_trinosims_plans(sims):
    small = read_plan(explain(sims[0].url, NATION))
    large = read_plan(explain(sims[0].url, THREE_WAY))
    assert small.max.outputRowCount == 25
    assert large.max.outputRowCount >= 60_000  # lineitem's scan
    assert large.max.outputRowCount / small.max.outputRowCount > 1000
    assert (small.joins, small.tableScans, small.aggregations) == (0, 1, 0)
    assert (large.joins, large.tableScans, large.aggregations) == (2, 3, 1)
    assert large.fragments > small.fragments >= 2
    assert large.remoteExchanges == large.fragments - 1  # each fragment but the root is read by one remote source
    # trinosim's costs are each node's own (its Output costs 0): summed, not read off the root.
    assert small.total.cpuCost == small.max.cpuCost > 0
    # A partial aggregation's costs are unknown (as in Trino): the total is unknown, the max is not.
    assert math.isnan(large.total.cpuCost) and large.max.cpuCost > small.max.cpuCost
    # The same statement gives the same estimate every time.
    assert read_plan(explain(sims[1].url, THREE_WAY)) == large


# Trino writes each node's costs cumulative (its inputs' included), as in its documentation's example:
# a scan, filter and projection (three estimates, cumulative), gathered into the Output of fragment 0.
TRINO_PLAN = {
    "0": node(
        "Output",
        [figures(22.0, 1734.0, 6148.25, 0.0, 1734.25)],
        [node("RemoteSource", [], sourceFragmentIds="[1]")],
    ),
    "1": node(
        "ScanFilterProject",
        [figures(25.0, 1940.0, 2207.0), figures(22.0, 1734.0, 4414.0), figures(22.0, 1734.0, 4414.0)],
        table="tpch:nation:sf1.0",
    ),
}


def test_trinos_cumulative_costs_become_each_nodes_own():
    estimate = read_plan(orjson.dumps(TRINO_PLAN))  # auto: every cost at least its inputs', so cumulative
    assert estimate.total.cpuCost == 6148.25  # the root's cumulative cost, not the sum of every node's
    assert estimate.total.networkCost == 1734.25
    # Own costs: scan 2207, filter 2207, project 0, Output (with the exchange it reads) 1734.25.
    assert estimate.max.cpuCost == 2207.0
    assert estimate.max.networkCost == 1734.25
    # Rows and bytes are each node's output whatever the costs: summed and maxed.
    assert (estimate.total.outputRowCount, estimate.max.outputRowCount) == (91.0, 25.0)
    assert (estimate.tableScans, estimate.fragments, estimate.remoteExchanges, estimate.nodes) == (1, 2, 1, 3)
    # Read as own costs (as summing them would, trino-lb's way) the total counts the scan four times over.
    assert read_plan(orjson.dumps(TRINO_PLAN), "own").total.cpuCost == 2207.0 + 4414.0 + 4414.0 + 6148.25
    assert read_plan(orjson.dumps(TRINO_PLAN), "cumulative") == estimate


def test_nan_is_unknown_never_zero():
    plan = {
        "0": node(
            "Output",
            [figures(10.0, "NaN", 0.0)],
            [
                node(
                    "Aggregate",
                    [figures(10.0, 80.0, "NaN", "NaN", "NaN")],
                    [node("TableScan", [figures("NaN", 800.0, 800.0)])],
                    type="PARTIAL",
                )
            ],
        )
    }
    estimate = read_plan(orjson.dumps(plan), "own")
    assert math.isnan(estimate.total.outputRowCount) and estimate.max.outputRowCount == 10.0
    assert math.isnan(estimate.total.outputSizeInBytes) and estimate.max.outputSizeInBytes == 800.0
    assert math.isnan(estimate.total.cpuCost) and estimate.max.cpuCost == 800.0
    assert estimate.aggregations == 0  # a partial step is part of an aggregation, not one
    everything_unknown = read_plan(orjson.dumps({"0": node("Values", [figures("NaN", "NaN", "NaN", "NaN", "NaN")])}))
    assert all(math.isnan(everything_unknown.max.get(name)) for name in ("outputRowCount", "cpuCost", "networkCost"))


def test_a_logical_plan_one_tree_is_read_too():
    tree = node("Output", [figures(1.0, 9.0, 0.0)], [node("TableScan", [figures(25.0, 200.0, 200.0)])])
    estimate = read_plan(orjson.dumps(tree))
    assert (estimate.fragments, estimate.tableScans, estimate.max.outputRowCount) == (1, 1, 25.0)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "not JSON"),
        ("[1, 2]", "neither a map of fragments"),
        ('{"0": {"id": "1"}}', "neither a map of fragments"),
        ('{"0": {"name": "Output", "children": [3]}}', "not a plan node"),
        ('{"0": {"name": "Output", "estimates": {"a": 1}}}', "estimates is not a list"),
        ('{"0": {"name": "Output", "estimates": [7]}}', "an estimate is not an object"),
        ('{"0": {"name": "Output", "descriptor": "x"}}', "descriptor is not an object"),
    ],
)
def test_text_that_is_not_a_plan_is_refused_with_the_reason(text, says):
    with pytest.raises(BadPlan, match=says):
        read_plan(text)


def _nested(depth: int) -> str:
    """A plan of ``depth`` Project nodes over a scan, as text."""
    estimate = orjson.dumps([figures(1.0, 8.0, 8.0)]).decode()
    opening = f'{{"name": "Project", "estimates": {estimate}, "children": ['
    return '{"0": ' + opening * depth + f'{{"name": "TableScan", "estimates": {estimate}}}' + "]}" * depth + "}"


def test_a_deep_or_huge_plan_is_read_or_refused_with_the_reason_never_a_crash():
    assert read_plan(_nested(400)).nodes == 401
    with pytest.raises(BadPlan, match="not JSON"):
        read_plan(_nested(5_000))  # deeper than the JSON parser goes
    wide = node("Union", [], [node("Values", []) for _ in range(MAX_NODES)])
    with pytest.raises(BadPlan, match="more than"):
        read_plan(orjson.dumps(wide))
