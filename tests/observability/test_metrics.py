"""Acceptance 3 of issue 6: every metric of the contract, with the values a scripted workload implies;
the JMX-style view agrees with /metrics; with two workers, /metrics is their sum."""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.observability.conftest import ManualQuery
from trinosim import TrinoSimProcess
from trinosim.gateway_process import GatewayProcess, running

CONTRACT = [
    "trino_gateway_queries_routed_total",
    "trino_gateway_requests_total",
    "trino_gateway_upstream_latency_seconds_bucket",
    "trino_gateway_upstream_latency_seconds_count",
    "trino_gateway_upstream_latency_seconds_sum",
    "trino_gateway_in_flight_queries",
    "trino_gateway_routing_decisions_total",
    "trino_gateway_routing_decision_seconds_count",
    "trino_gateway_retries_total",
    "trino_gateway_errors_total",
    "trino_gateway_backend_up",
    "trino_gateway_backend_state",
    "trino_gateway_backend_active",
    "trino_gateway_backend_score",
    "trino_gateway_backend_running_queries",
    "trino_gateway_backend_queued_queries",
    "trino_gateway_backend_workers",
]

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str) -> Samples:
    response = requests.get(f"{url}/metrics", timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum over every sample of ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


@pytest.fixture
def sims():
    servers = {name: TrinoSimProcess(name=name) for name in ("trino-1", "trino-2", "dead")}
    with running(servers.values()):
        yield servers


def _no_backend_query(url: str) -> dict[str, Any]:
    response = requests.post(f"{url}/v1/statement", data=b"SELECT 1", headers={"X-Trino-User": "bob"}, timeout=10)
    assert response.status_code == 200
    return response.json()


def test_every_metric_counts_what_a_scripted_workload_did(sims):
    config = {
        "backends": [
            {"name": "trino-1", "proxy_to": sims["trino-1"].url, "routing_group": "adhoc"},
            {"name": "spare", "proxy_to": sims["trino-1"].url, "routing_group": "adhoc", "active": False},
            {"name": "dead", "proxy_to": sims["dead"].url, "routing_group": "etl"},
            {"name": "trino-2", "proxy_to": sims["trino-2"].url, "routing_group": "etl"},
        ],
        # One check at start-up, then none: 'dead' stays HEALTHY in the gateway's eyes after it dies,
        # so the gateway tries it and retries on trino-2.
        "health": {"monitor": "JMX", "interval": 3600, "failure_threshold": 100},
        "routing": {"groups": {"etl": {"router": "round-robin"}}},
        "proxy": {"read_timeout": 3.0},
    }
    with GatewayProcess(config=config) as gateway:
        time.sleep(0.5)  # the health loops' first check, made at start-up, is over
        sims["dead"].kill()
        url = gateway.url

        # 3 adhoc queries: submit, 2 polls, cancel.
        for _ in range(3):
            query = ManualQuery(url)
            query.poll()
            query.poll()
            assert query.cancel() == 204
        # 1 query to an unknown group: it falls back to the default group.
        fallback = ManualQuery(url, headers={"X-Trino-Routing-Group": "nope"})
        assert fallback.cancel() == 204
        # 4 etl queries, round-robin over [dead, trino-2]: every second one retries on trino-2.
        for _ in range(4):
            query = ManualQuery(url, headers={"X-Trino-Routing-Group": "etl"})
            assert query.cancel() == 204
        # No active backend in adhoc: the client gets Trino's no-backend error.
        gateway.deactivate("trino-1")
        assert _no_backend_query(url)["error"]["errorName"] == "NO_NODES_AVAILABLE"
        gateway.activate("trino-1")
        # A poll answered 503 by the backend, then one that times out (read_timeout 3 s).
        query = ManualQuery(url)
        sims["trino-1"].set_faults(error_rate=1.0, error_status=503)
        assert requests.get(query.page["nextUri"], timeout=10).status_code == 503
        sims["trino-1"].set_faults(error_rate=0.0, latency_ms=4000)
        timed_out = requests.get(query.page["nextUri"], timeout=10)
        assert timed_out.status_code == 200 and timed_out.json()["stats"]["state"] == "FAILED"
        sims["trino-1"].clear_faults()
        assert query.cancel() == 204
        # Two requests on other Trino paths.
        for _ in range(2):
            assert requests.get(f"{url}/v1/info", timeout=10).status_code == 200
        # One query left running.
        running = ManualQuery(url)
        running.poll()

        samples = scrape(url)
        jmx_list = requests.get(f"{url}/v1/jmx/mbean", timeout=10).json()
        health = {b["name"]: b for b in gateway.call("GET", "/gateway/health")[1]}

    for name in CONTRACT:
        assert any(n == name for n, _ in samples), f"{name} missing from /metrics"

    routed = "trino_gateway_queries_routed_total"
    assert value(samples, routed, routing_group="adhoc", backend="trino-1") == 3 + 1 + 1 + 1
    assert value(samples, routed, routing_group="etl", backend="trino-2") == 4
    assert total(samples, routed) == 10

    requests_total = "trino_gateway_requests_total"
    assert value(samples, requests_total, kind="submit", status="200") == 3 + 1 + 4 + 1 + 1 + 1
    # The timed-out poll is answered 200 with a FAILED query (what Trino clients read).
    assert value(samples, requests_total, kind="poll", status="200") == 3 * 2 + 1 + 1
    assert value(samples, requests_total, kind="poll", status="503") == 1
    assert value(samples, requests_total, kind="poll", status="504") == 0
    assert value(samples, requests_total, kind="cancel", status="204") == 3 + 1 + 4 + 1
    assert value(samples, requests_total, kind="other", status="200") == 2
    assert total(samples, requests_total) == 11 + 9 + 9 + 2

    decisions = "trino_gateway_routing_decisions_total"
    assert value(samples, decisions, routing_group="adhoc", outcome="routed") == 3 + 2
    assert value(samples, decisions, routing_group="adhoc", outcome="fallback") == 1
    assert value(samples, decisions, routing_group="etl", outcome="routed") == 4
    assert value(samples, decisions, routing_group="adhoc", outcome="no_backend") == 1
    assert value(samples, "trino_gateway_routing_decision_seconds_count") == 11

    assert value(samples, "trino_gateway_retries_total", backend="dead") == 2
    assert total(samples, "trino_gateway_retries_total") == 2
    errors = "trino_gateway_errors_total"
    assert value(samples, errors, cause="connect") == 2
    assert value(samples, errors, cause="timeout") == 1
    assert value(samples, errors, cause="upstream_5xx") == 1
    assert value(samples, errors, cause="no_backend") == 1
    assert value(samples, errors, cause="internal") == 0

    latency = "trino_gateway_upstream_latency_seconds_count"
    # Answers from trino-1: 6 submissions, 7 + 1 (503) polls, 4 cancels; /v1/info goes to either group's backend.
    assert value(samples, latency, backend="trino-1", kind="submit") == 6
    assert value(samples, latency, backend="trino-1", kind="poll") == 8
    # The query whose poll timed out was failed by the gateway (no other backend to send it to),
    # which cancelled it on trino-1 itself; the client's cancel after that stays in the gateway.
    assert value(samples, latency, backend="trino-1", kind="cancel") == 4
    assert value(samples, latency, backend="trino-2", kind="submit") == 4
    assert value(samples, latency, backend="trino-2", kind="cancel") == 4
    assert total(samples, latency, kind="other") == 2
    assert (
        value(samples, "trino_gateway_upstream_latency_seconds_bucket", backend="trino-1", kind="poll", le="+Inf") == 8
    )

    assert value(samples, "trino_gateway_in_flight_queries", backend="trino-1") == 1
    assert value(samples, "trino_gateway_in_flight_queries", backend="trino-2") == 0
    for backend in ("trino-1", "trino-2", "dead", "spare"):
        state = health[backend]["state"]
        assert value(samples, "trino_gateway_backend_up", backend=backend) == (1 if state == "HEALTHY" else 0)
        for each in ("PENDING", "HEALTHY", "UNHEALTHY"):
            assert value(samples, "trino_gateway_backend_state", backend=backend, state=each) == (each == state)
        assert value(samples, "trino_gateway_backend_active", backend=backend) == health[backend]["active"]
        monitored = health[backend]
        assert value(samples, "trino_gateway_backend_running_queries", backend=backend) == monitored["runningQueries"]
        assert value(samples, "trino_gateway_backend_queued_queries", backend=backend) == monitored["queuedQueries"]
        assert value(samples, "trino_gateway_backend_workers", backend=backend) == monitored["workers"]
    assert value(samples, "trino_gateway_backend_active", backend="spare") == 0
    # JMX monitor: ActiveNodeCount of trinosim counts the coordinator too.
    assert value(samples, "trino_gateway_backend_workers", backend="trino-2") >= 1
    # The score is the scorer's cost: an idle, fast backend costs little; trino-1 has a query running.
    assert value(samples, "trino_gateway_backend_score", backend="trino-2") >= 0

    _jmx_agrees(jmx_list, samples)


def _jmx_agrees(beans: list[dict[str, Any]], samples: Samples) -> None:
    by_name = {b["objectName"]: {a["name"]: a["value"] for a in b["attributes"]} for b in beans}
    for bean in beans:
        assert all("value" in a for a in bean["attributes"]), "Trino's JMX monitors need a value everywhere"
    proxy = by_name["trino.gateway:name=ProxyHandler"]
    requests_total = "trino_gateway_requests_total"
    assert proxy["Requests"] == total(samples, requests_total)
    for kind, attribute in (("submit", "SubmitRequests"), ("poll", "PollRequests"), ("cancel", "CancelRequests")):
        assert proxy[attribute] == total(samples, requests_total, kind=kind)
    assert proxy["Responses5xx"] == sum(
        v for (n, ls), v in samples.items() if n == requests_total and dict(ls)["status"].startswith("5")
    )
    for cause, attribute in (
        ("connect", "ConnectErrors"),
        ("timeout", "TimeoutErrors"),
        ("no_backend", "NoBackendErrors"),
    ):
        assert proxy[attribute] == value(samples, "trino_gateway_errors_total", cause=cause)
    assert proxy["Upstream5xxErrors"] == value(samples, "trino_gateway_errors_total", cause="upstream_5xx")
    assert proxy["Retries"] == total(samples, "trino_gateway_retries_total")
    assert proxy["InFlightQueries"] == total(samples, "trino_gateway_in_flight_queries")

    routing = by_name["trino.gateway:name=RoutingManager"]
    assert routing["RoutedQueries"] == total(samples, "trino_gateway_queries_routed_total")
    assert routing["Decisions"] == total(samples, "trino_gateway_routing_decisions_total")
    assert routing["FallbackDecisions"] == total(samples, "trino_gateway_routing_decisions_total", outcome="fallback")
    assert routing["NoBackendDecisions"] == total(
        samples, "trino_gateway_routing_decisions_total", outcome="no_backend"
    )
    assert routing["DecisionTime.Count"] == value(samples, "trino_gateway_routing_decision_seconds_count")
    assert routing["DecisionTime.TotalSeconds"] == pytest.approx(
        value(samples, "trino_gateway_routing_decision_seconds_sum")
    )

    etl = by_name["trino.gateway:name=RoutingGroup,group=etl"]
    assert etl["RoutedQueries"] == 4 and etl["RoutedDecisions"] == 4

    for backend in ("trino-1", "trino-2", "dead", "spare"):
        bean = by_name[f"trino.gateway:name=Backend,backend={backend}"]
        assert bean["Up"] == value(samples, "trino_gateway_backend_up", backend=backend)
        assert bean["Active"] == value(samples, "trino_gateway_backend_active", backend=backend)
        assert bean["Score"] == pytest.approx(value(samples, "trino_gateway_backend_score", backend=backend))
        assert bean["Workers"] == value(samples, "trino_gateway_backend_workers", backend=backend)
        assert bean["InFlightQueries"] == value(samples, "trino_gateway_in_flight_queries", backend=backend)
        assert bean["RoutedQueries"] == total(samples, "trino_gateway_queries_routed_total", backend=backend)
        assert bean["UpstreamRequests"] == total(
            samples, "trino_gateway_upstream_latency_seconds_count", backend=backend
        )
        assert value(samples, "trino_gateway_backend_state", backend=backend, state=bean["State"]) == 1
    assert by_name["trino.gateway:name=Backend,backend=dead"]["Retries"] == 2


def test_one_mbean_by_name_and_an_unknown_one(sims):
    config = {"backends": [{"name": "trino-1", "proxy_to": sims["trino-1"].url}]}
    with GatewayProcess(config=config) as gateway:
        ManualQuery(gateway.url).cancel()
        status, bean = gateway.call("GET", "/v1/jmx/mbean/trino.gateway:name=Backend,backend=trino-1")
        assert status == 200
        assert bean["objectName"] == "trino.gateway:name=Backend,backend=trino-1"
        attributes = {a["name"]: a for a in bean["attributes"]}
        assert attributes["RoutedQueries"]["value"] == 1 and attributes["RoutedQueries"]["type"] == "long"
        assert attributes["State"]["value"] == "HEALTHY"
        # The name percent-encoded, as some HTTP clients send it.
        status, same = gateway.call("GET", "/v1/jmx/mbean/trino.gateway%3Aname%3DBackend%2Cbackend%3Dtrino-1")
        assert status == 200 and same["objectName"] == bean["objectName"]
        status, missing = gateway.call("GET", "/v1/jmx/mbean/trino.gateway:name=Nothing")
        assert status == 404 and "GET /v1/jmx/mbean lists them" in missing["error"]


def test_with_two_workers_metrics_are_the_sum_over_workers(sims):
    config = {"backends": [{"name": "trino-1", "proxy_to": sims["trino-1"].url}]}
    with GatewayProcess(config=config, workers=2) as gateway:
        workers: dict[str, int] = {}
        sent = 0
        # New connections each time, until both workers have served some (at most 200 queries).
        while sent < 200 and (len(workers) < 2 or sent < 12):
            response = requests.post(
                f"{gateway.url}/v1/statement",
                data=b"SELECT 1",
                headers={"X-Trino-User": "w", "Connection": "close"},
                timeout=10,
            )
            worker = response.headers["X-Trino-Gateway-Worker"]
            workers[worker] = workers.get(worker, 0) + 1
            sent += 1
            assert (
                requests.delete(response.json()["nextUri"], headers={"Connection": "close"}, timeout=10).status_code
                == 204
            )
        assert len(workers) == 2, f"both workers served requests: {workers}"
        for _ in range(4):  # whichever worker answers, the totals are the same
            samples = scrape(gateway.url)
            assert value(samples, "trino_gateway_requests_total", kind="submit", status="200") == sent
            assert value(samples, "trino_gateway_requests_total", kind="cancel", status="204") == sent
            assert (
                value(samples, "trino_gateway_queries_routed_total", routing_group="adhoc", backend="trino-1") == sent
            )
            assert value(samples, "trino_gateway_backend_up", backend="trino-1") == 1
