"""The dashboards' JSON on its own: importable shape, one data source, and only the metric names of the
contract in README (Observability) plus Trino's own."""

from __future__ import annotations

import re

import pytest

from tests.observability_ops import dashboards

# The gateway's metrics (README, Observability): name -> type.
CONTRACT = {
    "trino_gateway_queries_routed_total": "counter",
    "trino_gateway_requests_total": "counter",
    "trino_gateway_upstream_latency_seconds": "histogram",
    "trino_gateway_in_flight_queries": "gauge",
    "trino_gateway_routing_decisions_total": "counter",
    "trino_gateway_routing_decision_seconds": "histogram",
    "trino_gateway_retries_total": "counter",
    "trino_gateway_errors_total": "counter",
    "trino_gateway_backend_up": "gauge",
    "trino_gateway_backend_state": "gauge",
    "trino_gateway_backend_active": "gauge",
    "trino_gateway_backend_score": "gauge",
    "trino_gateway_backend_cost": "gauge",
    "trino_gateway_backend_running_queries": "gauge",
    "trino_gateway_backend_queued_queries": "gauge",
    "trino_gateway_backend_workers": "gauge",
}
SERIES = {
    f"{name}{suffix}"
    for name, kind in CONTRACT.items()
    for suffix in (("_bucket", "_count", "_sum") if kind == "histogram" else ("",))
}
# Trino's own /metrics names the cluster panels read (trinosim exports the same).
TRINO = {"trino_execution_name_QueryManager_RunningQueries", "trino_execution_name_QueryManager_QueuedQueries"}
PROMETHEUS = {"up"}

FILES = dashboards.files()
METRIC = re.compile(r"\b(trino_[A-Za-z0-9_]+|up)\b(?=\s*[{\[)]|\s*$)")


def test_the_two_dashboards_exist() -> None:
    assert [p.name for p in FILES] == ["backend.json", "overview.json"]


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_dashboard_is_importable_and_uses_one_datasource_variable(path) -> None:
    dashboard = dashboards.load(path.name)
    assert dashboard["uid"] and dashboard["title"] and dashboard["schemaVersion"] >= 36
    variables = dashboards.variables(dashboard)
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus"
    ids = [panel["id"] for panel in dashboards.panels(dashboard)]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    for panel in dashboards.panels(dashboard):
        assert {"x", "y", "w", "h"} <= set(panel["gridPos"]), panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == dashboards.DATASOURCE, panel["title"]
        assert panel["targets"], f"{panel['title']} has no query"
        for target in panel["targets"]:
            assert target["datasource"] == dashboards.DATASOURCE, panel["title"]
    for variable in variables.values():
        if variable["type"] == "query":
            assert variable["datasource"] == dashboards.DATASOURCE


def test_dashboard_uids_differ() -> None:
    uids = [dashboards.load(p.name)["uid"] for p in FILES]
    assert len(uids) == len(set(uids))


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_expressions_use_defined_variables_and_known_metric_names(path) -> None:
    dashboard = dashboards.load(path.name)
    defined = {name: "x" for name in dashboards.variables(dashboard)}
    for expression in dashboards.expressions(path):
        dashboards.substitute(expression.expr, defined)  # raises on an undefined variable
        names = set(METRIC.findall(expression.expr))
        assert names, f"no metric in {expression}"
        unknown = names - SERIES - TRINO - PROMETHEUS
        assert not unknown, f"{expression}: not in the metrics contract: {unknown}"


def test_metric_name_pattern_finds_names_and_ignores_labels() -> None:
    found = METRIC.findall('sum by (backend) (rate(trino_gateway_retries_total{backend=~"trino_x"}[1m])) / up')
    assert found == ["trino_gateway_retries_total", "up"]


def test_overview_shows_what_operators_asked_for() -> None:
    exprs = " ".join(e.expr for e in dashboards.expressions(dashboards.DASHBOARDS / "overview.json"))
    for wanted in (
        "sum by (routing_group, backend) (rate(trino_gateway_queries_routed_total",
        "trino_gateway_in_flight_queries",
        "trino_gateway_errors_total",
        "histogram_quantile(0.5, sum by (backend, le) (rate(trino_gateway_upstream_latency_seconds_bucket",
        "histogram_quantile(0.99, sum by (backend, le) (rate(trino_gateway_upstream_latency_seconds_bucket",
        "trino_gateway_backend_state",
        "trino_gateway_backend_up",
        "trino_gateway_backend_cost",
        "trino_gateway_backend_running_queries",
        "trino_gateway_backend_queued_queries",
        "trino_gateway_backend_workers",
        "trino_execution_name_QueryManager_RunningQueries",
    ):
        assert wanted in exprs, wanted


def test_backend_dashboard_is_about_the_chosen_backend() -> None:
    dashboard = dashboards.load("backend.json")
    variable = dashboards.variables(dashboard)["backend"]
    assert dashboards.label_values_query(variable) == ("trino_gateway_backend_up", "backend")
    assert not variable["multi"], "one backend at a time"
    for expression in dashboards.expressions(dashboards.DASHBOARDS / "backend.json"):
        assert 'backend="$backend"' in expression.expr, expression
