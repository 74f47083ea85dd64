"""Acceptance 4: a real Prometheus scrapes a gateway under load and every PromQL expression of every
dashboard panel evaluates without error and returns data.

The workload: queries through the gateway to two trinosim clusters, plus a backend that refuses
connections (its health check is NOOP, so it keeps coming back), so retries and connect errors exist.
"""

from __future__ import annotations

import math
import threading
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import run_query
from tests.observability_ops import dashboards
from tests.observability_ops.prometheus import PrometheusServer, find_binary
from trinosim import TrinoSimProcess
from trinosim.gateway_process import GatewayProcess, free_port

pytestmark = pytest.mark.slow

WORKLOAD_SECONDS = 6.0
# Each dashboard is evaluated with these choices of its variables: the default "All" view and a
# concrete routing group or backend, as a user would pick them.
BINDINGS = {
    "overview.json": [{"group": ".*", "backend": ".*"}, {"group": "adhoc", "backend": ".*"}],
    "backend.json": [{"backend": "trino-1"}, {"backend": "trino-2"}],
}


@dataclass
class Scraped:
    prometheus: PrometheusServer
    gateway: GatewayProcess


def _gateway_metric(gateway: GatewayProcess, name: str) -> float:
    with urllib.request.urlopen(f"{gateway.url}/metrics", timeout=10) as response:
        text = response.read().decode()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    )


def _wait(check, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not within {timeout}s")
        time.sleep(0.2)


def _workload(gateway: GatewayProcess) -> None:
    """Short queries from three clients for WORKLOAD_SECONDS, and one slow query running meanwhile."""
    stop = threading.Event()

    def client() -> int:
        done = 0
        while not stop.is_set():
            assert run_query(gateway.url, "SELECT 1") == [[1]]
            done += 1
        return done

    with ThreadPoolExecutor(max_workers=4) as pool:
        slow = pool.submit(run_query, gateway.url, "SELECT 2", session_properties={"sim_run_time": "3"})
        clients = [pool.submit(client) for _ in range(3)]
        time.sleep(WORKLOAD_SECONDS)
        stop.set()
        assert sum(future.result(timeout=60) for future in clients) > 0
        assert slow.result(timeout=60) == [[2]]


@pytest.fixture(scope="module")
def scraped() -> Iterator[Scraped]:
    if find_binary() is None:
        pytest.skip("the prometheus binary is missing: `make system-deps` installs the Debian package prometheus")
    clusters = [TrinoSimProcess(name="trino-1"), TrinoSimProcess(name="trino-2")]
    gateway: GatewayProcess | None = None
    prometheus: PrometheusServer | None = None
    try:
        for cluster in clusters:
            cluster.start()
        config = {
            "health": {"monitor": "METRICS", "interval": 0.5},
            # Round-robin puts the refusing backend first for every other new query while it is HEALTHY.
            "routing": {"router": "round-robin"},
            "backends": [
                *({"name": c.name, "proxy_to": c.url, "routing_group": "adhoc"} for c in clusters),
                {"name": "refusing", "proxy_to": f"http://127.0.0.1:{free_port()}", "monitor": "NOOP"},
            ],
        }
        gateway = GatewayProcess(config=config).start()
        host = gateway.url.removeprefix("http://")
        prometheus = PrometheusServer(
            [
                {"job_name": "trino-gateway", "static_configs": [{"targets": [host]}]},
                {
                    "job_name": "trino",
                    "static_configs": [
                        {"targets": [c.url.removeprefix("http://")], "labels": {"backend": c.name}} for c in clusters
                    ],
                },
            ]
        ).start()
        server = prometheus
        _wait(lambda: len(server.targets_up()) == 3 and all(server.targets_up().values()), 30, "every target up")
        _workload(gateway)
        # The last of the workload is in Prometheus once it has scraped the gateway's final count.
        final = _gateway_metric(gateway, "trino_gateway_requests_total")
        assert _gateway_metric(gateway, "trino_gateway_retries_total") > 0, "the workload produced no retry"

        def scraped_all() -> bool:
            result = server.query("sum(trino_gateway_requests_total)")["data"]["result"]
            return bool(result) and float(result[0]["value"][1]) >= final

        _wait(scraped_all, 20, "Prometheus scraping the workload's last requests")
        yield Scraped(prometheus, gateway)
    finally:
        if prometheus is not None:
            prometheus.stop()
        if gateway is not None:
            gateway.stop()
        for cluster in clusters:
            cluster.stop()


def _cases() -> list[tuple[dashboards.Expression, dict[str, str]]]:
    cases = []
    for path in dashboards.files():
        for expression in dashboards.expressions(path):
            for binding in BINDINGS[path.name]:
                cases.append((expression, binding))
    return cases


def _case_id(case: tuple[dashboards.Expression, dict[str, str]]) -> str:
    expression, binding = case
    chosen = ",".join(f"{k}={v}" for k, v in binding.items())
    return f"{expression.dashboard}:{expression.panel}:{expression.ref}[{chosen}]"


@pytest.mark.parametrize("case", _cases(), ids=_case_id)
def test_panel_expression_evaluates_with_data(scraped: Scraped, case) -> None:
    expression, binding = case
    promql = dashboards.substitute(expression.expr, binding)
    answer = scraped.prometheus.query(promql)
    assert answer["status"] == "success", f"{expression}\n{promql}\n{answer.get('error')}"
    result = answer["data"]["result"]
    assert result, f"no data: {promql}"
    values = [float(sample["value"][1]) for sample in result]
    assert any(math.isfinite(value) for value in values), f"only NaN/Inf for {promql}: {values}"


@pytest.mark.parametrize("path", dashboards.files(), ids=lambda p: p.name)
def test_variable_queries_list_the_workloads_names(scraped: Scraped, path) -> None:
    """Each label_values(...) variable offers the names the bindings above use."""
    dashboard = dashboards.load(path.name)
    for name, variable in dashboards.variables(dashboard).items():
        if variable["type"] != "query":
            continue
        metric, label = dashboards.label_values_query(variable)
        answer = scraped.prometheus.api(f"label/{label}/values", **{"match[]": metric})
        assert answer["status"] == "success", answer
        offered = set(answer["data"])
        wanted = {b[name] for b in BINDINGS[path.name]} - {".*"}
        assert wanted <= offered, f"{path.name} ${name}: {label} values {offered} lack {wanted - offered}"
