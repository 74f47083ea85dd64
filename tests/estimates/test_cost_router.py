"""The cost router: ordered targets, limits that must all hold (an unknown value holds none),
trino-gateway's thresholds of which none may be met (an unknown value meets none), and where a query
goes without an estimate."""

from __future__ import annotations

import math
from typing import Any

import pytest

from gateway.config import ConfigError, CostRouterConfig, parse_config
from gateway.routing.estimates import CostRouter, QueryEstimate
from gateway.routing.estimates.estimate import Estimates

NAN = math.nan


def estimate(max_rows: float = 25, total_cpu: float = 2e3, joins: int = 0, **counts: int) -> QueryEstimate:
    shape = {"fragments": 2, "joins": joins, "tableScans": 1, "remoteExchanges": 1, "aggregations": 0, "nodes": 3}
    shape.update(counts)
    return QueryEstimate(
        total=Estimates(max_rows * 2, max_rows * 100, total_cpu, 0.0, 0.0),
        max=Estimates(max_rows, max_rows * 100, total_cpu / 2, 0.0, NAN),
        **shape,
    )


def router(**settings: Any) -> CostRouter:
    return CostRouter(CostRouterConfig.model_validate(settings), "adhoc")


BI_THEN_ETL = {
    "targets": [
        {"group": "bi", "limits": {"max": {"outputRowCount": 1000}, "total": {"cpuCost": 5e9}, "joins": 2}},
        {"group": "etl"},
    ]
}


def test_the_first_target_whose_limits_all_hold_wins():
    cost = router(**BI_THEN_ETL)
    assert cost.place(estimate()).group == "bi"
    assert cost.place(estimate(max_rows=1000)).group == "bi"  # a limit holds up to and including its value
    placed = cost.place(estimate(max_rows=60_175))
    assert placed.group == "etl" and "max.outputRowCount 60175 > 1000" in placed.why
    assert cost.place(estimate(joins=3)).group == "etl"
    assert cost.place(estimate(total_cpu=6e9)).group == "etl"


def test_a_value_the_planner_could_not_estimate_holds_no_limit():
    cost = router(targets=[{"group": "bi", "limits": {"max": {"networkCost": 1e9}}}, {"group": "etl"}])
    placed = cost.place(estimate())
    assert placed.group == "etl" and "max.networkCost unknown" in placed.why


def test_trino_gateways_rule_large_if_any_threshold_is_met_unknown_meets_none():
    # trino-gateway's defaults: any of these met sends a query to the large group.
    thresholds = {"max": {"cpuCost": 1e6, "outputRowCount": 1e6, "networkCost": 1e8}, "joins": 2, "fragments": 3}
    cost = router(targets=[{"group": "small", "thresholds": thresholds}, {"group": "large"}], unavailable="small")
    assert cost.place(estimate()).group == "small"  # max networkCost is unknown: meets no threshold
    assert cost.place(estimate(joins=2)).group == "large"  # met at its value
    assert cost.place(estimate(fragments=3)).group == "large"
    assert cost.place(estimate(total_cpu=2.5e6)).group == "large"  # max cpu 1.25e6
    assert cost.place(None).group == "small"  # as trino-gateway: no estimate, the small group


def test_without_an_estimate_or_a_taker_the_query_goes_where_it_was_headed_unless_told():
    cost = router(targets=[{"group": "bi", "limits": {"joins": 0}}])
    assert cost.place(None).group is None  # as if no estimate had been asked for
    assert cost.place(estimate(joins=1)).group is None
    told = router(targets=[{"group": "bi", "limits": {"joins": 0}}], unavailable="etl")
    assert told.place(None).group == told.place(estimate(joins=1)).group == "etl"


def test_the_router_places_the_default_group_unless_told_which_groups():
    assert router(**BI_THEN_ETL).applies_to("adhoc") and not router(**BI_THEN_ETL).applies_to("etl")
    told = router(**BI_THEN_ETL, groups=["auto", "adhoc"])
    assert told.applies_to("auto") and told.applies_to("adhoc") and not told.applies_to("bi")


@pytest.mark.parametrize(
    ("settings", "says"),
    [
        ({"targets": []}, "targets: List should have at least 1 item"),
        ({"targets": [{"group": "bi"}, {"group": "bi"}]}, "'bi' is a target twice"),
        ({"targets": [{"group": "bi", "limits": {"max": {"rows": 1}}}]}, "limits.max.rows.[key]"),
        ({"targets": [{"group": "bi", "limits": {"joins": -1}}]}, "limits.joins: Input should be greater than"),
        ({"targets": [{"group": "bi", "limits": {"total": {"cpuCost": "lots"}}}]}, "cpuCost: Input should be a valid"),
        ({"targets": [{"group": "bi", "limit": {}}]}, "targets.0.limit: unknown key"),
    ],
)
def test_a_cost_router_config_with_a_mistake_names_it(settings, says):
    with pytest.raises(ConfigError) as refused:
        parse_config({"routing": {"estimates": {"cost_router": settings}}})
    assert says in str(refused.value), str(refused.value)


def test_numbers_in_yaml_as_operators_write_them():
    import yaml

    text = """
routing:
  estimates:
    budget: 300ms
    ttl: 10m
    cost_router:
      targets:
        - group: bi
          limits: {max: {outputRowCount: 1e6}, total: {cpuCost: 5e9}}
        - group: etl
"""
    config = parse_config(yaml.safe_load(text))
    estimates = config.routing.estimates
    assert (estimates.budget, estimates.ttl) == (0.3, 600.0)
    assert estimates.cost_router is not None
    assert estimates.cost_router.targets[0].limits.max == {"outputRowCount": 1e6}
