"""Routing rules through a running gateway: real clients, real clusters, a rules file that changes
under the gateway, and an external routing service."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
import trino

from gateway.control.api.models import RulesFromFile
from gateway.routing.rules import RulesFile
from tests.conftest import connect
from tests.inprocess import InProcessGateway
from trinosim.gateway_process import GatewayAdmin, GatewayProcess, free_port

RULES = """
---
name: "airflow"
condition: 'request.getHeader("X-Trino-Source") == "airflow"'
actions: ['result.put("routingGroup", "etl")']
---
name: "alice"
condition: 'trinoRequestUser.userExistsAndEquals("alice")'
actions: ['result.put("routingGroup", "bi")']
---
name: "reports"
condition: 'request.getHeader("X-Trino-Client-Tags") contains "label=report"'
actions: ['result.put("routingGroup", "bi")']
---
name: "writes"
condition: 'trinoQueryProperties.getQueryType() == "CreateTableAsSelect" || trinoQueryProperties.getQueryType() == "Insert"'
actions: ['result.put("routingGroup", "etl")']
---
name: "lineitem"
condition: 'trinoQueryProperties.tablesContains("tpch.tiny.lineitem")'
actions: ['result.put("routingGroup", "etl")']
---
name: "raises"
condition: 'request.getHeader("X-Trino-Client-Info").startsWith("x")'
actions: ['result.put("routingGroup", "bi")']
"""


def _write(path: Path, text: str) -> None:
    temporary = path.with_suffix(".tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def _wait_for(predicate, what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _backends(clusters) -> list[dict[str, str]]:
    return [
        {"name": "trino-1", "proxy_to": clusters[0].url, "routing_group": "adhoc"},
        {"name": "trino-2", "proxy_to": clusters[1].url, "routing_group": "etl"},
        {"name": "trino-3", "proxy_to": clusters[2].url, "routing_group": "bi"},
    ]


@pytest.fixture
def rules_gateway(sims, loop_thread, tmp_path) -> Iterator[tuple[InProcessGateway, Path]]:
    rules = tmp_path / "rules.yaml"
    _write(rules, RULES)
    config = {
        "routing_rules": {"enabled": True, "type": "FILE", "rules_file": str(rules), "refresh_seconds": 0.2},
        "backends": _backends(sims),
    }
    with InProcessGateway(loop_thread, config) as gateway:
        yield gateway, rules


def _routed(gateway: GatewayAdmin, sql: str = "SELECT 1", **options: Any) -> tuple[str, str]:
    """Run ``sql`` through the gateway; the backend and group the gateway recorded for it."""
    with connect(gateway.url, **options) as conn:
        cursor = conn.cursor()
        cursor.execute(sql)
        cursor.fetchall()
        query_id = cursor.query_id
    record = gateway.queries(id=query_id)["queries"][0]
    return record["backend"], record["routingGroup"]


def test_rules_route_by_source_user_client_tags_query_type_and_tables(rules_gateway):
    gateway, _ = rules_gateway
    assert _routed(gateway) == ("trino-1", "adhoc")
    assert _routed(gateway, source="airflow") == ("trino-2", "etl")
    assert _routed(gateway, user="alice") == ("trino-3", "bi")
    assert _routed(gateway, client_tags=["team=x", "label=report"]) == ("trino-3", "bi")
    assert _routed(gateway, "CREATE TABLE memory.default.rules_ctas AS SELECT 1 AS x") == ("trino-2", "etl")
    assert _routed(gateway, "SELECT count(*) FROM lineitem", catalog="tpch", schema="tiny") == ("trino-2", "etl")
    assert _routed(gateway, "SELECT count(*) FROM nation", catalog="tpch", schema="tiny") == ("trino-1", "adhoc")


def test_the_history_names_the_rule_that_chose_the_group(rules_gateway):
    gateway, _ = rules_gateway
    _routed(gateway, user="alice")
    _routed(gateway, user="nobody-special", http_headers={"X-Trino-Routing-Group": "etl"})
    alice = gateway.queries(user="alice")["queries"]
    assert [(q["routingSource"], q["routingRule"], q["routingGroup"]) for q in alice] == [("rule", "alice", "bi")]
    # No rule set a group: the header did, and the history says so.
    other = gateway.queries(user="nobody-special")["queries"]
    assert [(q["routingSource"], q["routingRule"], q["routingGroup"]) for q in other] == [("header", None, "etl")]
    assert [q["user"] for q in gateway.queries(rule="alice")["queries"]] == ["alice"]


def _fired(gateway: GatewayAdmin) -> dict[str, int]:
    status, described = gateway.call("GET", "/gateway/routing-rules")
    assert status == 200
    return {rule["name"]: rule["fired"] for rule in described["rules"]}


def test_the_rules_show_how_often_each_fired_their_file_and_its_text(rules_gateway):
    gateway, rules = rules_gateway
    before = _fired(gateway)  # the counters belong to the process, which other tests share
    for options in ({"source": "airflow"}, {"source": "airflow"}, {"user": "alice", "source": "airflow"}):
        _routed(gateway, **options)
    after = _fired(gateway)
    assert {name: after[name] - before[name] for name in after} == {
        "airflow": 3,
        "alice": 1,
        "reports": 0,
        "writes": 0,
        "lineitem": 0,
        "raises": 0,  # it failed: it did not fire
    }
    described = gateway.call("GET", "/gateway/routing-rules")[1]
    assert (described["path"], described["file"], described["text"]) == (str(rules), str(rules), RULES)
    metrics = gateway.call("GET", "/metrics")[1]
    assert f'trino_gateway_routing_rule_fired_total{{rule="alice"}} {float(after["alice"])}' in metrics


def test_fired_counts_are_the_sum_over_the_workers_of_a_node(clusters, tmp_path):
    rules = tmp_path / "rules.yaml"
    _write(rules, RULES)
    config = {"routing_rules": {"enabled": True, "rules_file": str(rules)}, "backends": _backends(clusters)}
    headers = {"X-Trino-User": "u", "X-Trino-Source": "airflow"}

    def submit(_: int) -> str:
        answer = requests.post(f"{gateway.url}/v1/statement", data="SELECT 1", headers=headers, timeout=15)
        assert answer.status_code == 200
        return answer.headers["x-trino-gateway-worker"]

    def ask(_: int) -> requests.Response:
        return requests.get(f"{gateway.url}/gateway/routing-rules", timeout=15)

    with GatewayProcess(config=config, workers=2) as gateway, ThreadPoolExecutor(max_workers=8) as pool:
        # Many connections at once: the workers share the port and each takes some of them.
        routed_by: list[str] = []
        deadline = time.monotonic() + 30
        while len(set(routed_by)) < 2 and time.monotonic() < deadline:
            routed_by.extend(pool.map(submit, range(16)))
        assert len(set(routed_by)) == 2, f"only {set(routed_by)} took queries"
        answers: dict[str, int] = {}
        while len(answers) < 2 and time.monotonic() < deadline + 30:
            for answer in pool.map(ask, range(16)):
                fired = {rule["name"]: rule["fired"] for rule in answer.json()["rules"]}
                answers[answer.headers["x-trino-gateway-worker"]] = fired["airflow"]
    assert answers == dict.fromkeys(set(routed_by), len(routed_by))


def test_a_composite_rule_counts_in_its_composing_rules(tmp_path):
    path = tmp_path / "rules.yaml"
    _write(
        path,
        """
name: group
compositeRuleType: ActivationRuleGroup
composingRules:
  - {name: first, condition: "true", actions: ['result.put("routingGroup", "etl")']}
  - {name: second, condition: "true", actions: ['result.put("routingGroup", "bi")']}
""",
    )
    described = RulesFromFile.of(RulesFile(path), {"first": 2, "group": 5}).model_dump(mode="json")
    group = described["rules"][0]
    assert group["fired"] is None
    assert [(rule["name"], rule["fired"]) for rule in group["composingRules"]] == [("first", 2), ("second", 0)]


def test_a_rule_that_raises_leaves_the_query_to_the_header(rules_gateway):
    gateway, _ = rules_gateway
    # No X-Trino-Client-Info: the "raises" rule calls startsWith on null and is skipped.
    assert _routed(gateway, http_headers={"X-Trino-Routing-Group": "bi"}) == ("trino-3", "bi")
    assert "routing rule 'raises' failed and was skipped" in gateway.log()


def test_the_rules_file_is_reloaded_without_a_restart(rules_gateway):
    gateway, rules = rules_gateway
    assert _routed(gateway, source="airflow") == ("trino-2", "etl")
    _write(
        rules,
        RULES.replace(
            'result.put("routingGroup", "etl")\']\n---\nname: "alice"',
            'result.put("routingGroup", "bi")\']\n---\nname: "alice"',
        ),
    )
    _wait_for(lambda: gateway.call("GET", "/gateway/routing-rules")[1]["reloads"] >= 1, "the reload")
    assert _routed(gateway, source="airflow") == ("trino-3", "bi")


def test_a_broken_rules_file_keeps_the_rules_in_use(rules_gateway):
    gateway, rules = rules_gateway
    _write(rules, RULES + "\n---\nname: broken\ncondition: 'request.getHeader(\"a\") =='\n")
    _wait_for(lambda: gateway.call("GET", "/gateway/routing-rules")[1]["lastError"], "the load error")
    status, state = gateway.call("GET", "/gateway/routing-rules")
    assert status == 200 and "rule 'broken', condition: syntax error" in state["lastError"]
    assert len(state["rules"]) == 6
    assert "routing rules not reloaded, the previous 6 rules stay in use" in gateway.log()
    assert _routed(gateway, source="airflow") == ("trino-2", "etl")


def test_a_broken_rules_file_stops_the_start_with_the_reason(clusters, tmp_path):
    rules = tmp_path / "rules.yaml"
    _write(rules, "name: a\ncondition: 'x ==='\n")
    config = {
        "routing_rules": {"enabled": True, "rules_file": str(rules)},
        "backends": _backends(clusters),
    }
    gateway = GatewayProcess(config=config)
    with pytest.raises(RuntimeError) as error:
        gateway.start(timeout=30)
    gateway.stop()
    assert "routing_rules.rules_file" in str(error.value) + gateway.log()
    assert "rule 'a', condition: syntax error" in str(error.value) + gateway.log()


# -- the external routing service ---------------------------------------------------------------
class RoutingService:
    """A routing service on loopback whose answer each test sets."""

    def __init__(self) -> None:
        self.answer: Any = {"routingGroup": None}
        self.status = 200
        self.delay = 0.0
        self.requests: list[dict[str, Any]] = []
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                headers = {name.lower(): value for name, value in self.headers.items()}
                service.requests.append({"headers": headers, "body": json.loads(body)})
                time.sleep(service.delay)
                payload = service.answer if isinstance(service.answer, bytes) else json.dumps(service.answer).encode()
                self.send_response(service.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/route"

    def __enter__(self) -> RoutingService:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


@pytest.fixture
def service() -> Iterator[RoutingService]:
    with RoutingService() as routing_service:
        yield routing_service


@pytest.fixture
def external_gateway(sims, loop_thread) -> Callable[..., InProcessGateway]:
    def make(url: str, **external: Any) -> InProcessGateway:
        config = {
            "routing_rules": {"enabled": True, "type": "EXTERNAL", "external": {"url": url, **external}},
            "backends": _backends(sims),
        }
        return InProcessGateway(loop_thread, config)

    return make


def test_the_service_picks_the_group_and_adds_headers(sims, service, external_gateway):
    service.answer = {"routingGroup": "bi", "errors": [], "externalHeaders": {"X-Trino-Client-Info": "routed"}}
    with external_gateway(service.url, exclude_headers=["Authorization"]) as gateway:
        http_headers = {"X-Secret-Header": "kept", "Authorization": "Basic YWxpY2U6eA=="}
        with connect(gateway.url, user="alice", source="dashboards", http_headers=http_headers) as conn:
            cursor = conn.cursor()
            cursor.execute("SELECT * FROM tpch.tiny.nation")
            cursor.fetchall()
            query_id = cursor.query_id
    sent = service.requests[-1]
    assert sent["headers"]["x-trino-user"] == "alice"
    assert sent["headers"]["x-secret-header"] == "kept"
    body_headers = {name.lower(): value for name, value in sent["body"]["headers"].items()}
    assert body_headers["x-trino-user"] == "alice" and body_headers["x-secret-header"] == "kept"
    assert "authorization" not in sent["headers"] and "authorization" not in body_headers
    assert sent["body"]["trinoRequestUser"] == {"user": "alice"}
    properties = sent["body"]["trinoQueryProperties"]
    assert properties["queryType"] == "Query" and properties["tables"] == ["tpch.tiny.nation"]
    record = next(q for q in sims[2].queries() if q["queryId"] == query_id)
    assert record["session"]["clientInfo"] == "routed"  # the service's header reached the cluster


def test_errors_reject_the_query_only_when_propagated(service, external_gateway):
    service.answer = {"routingGroup": "bi", "errors": ["user alice may not run ETL"]}
    with (
        external_gateway(service.url, propagate_errors=True) as gateway,
        pytest.raises(trino.exceptions.HttpError, match=r"400.*user alice may not run ETL"),
        connect(gateway.url, user="alice", max_attempts=1) as conn,
    ):
        conn.cursor().execute("SELECT 1")
    with external_gateway(service.url, propagate_errors=False) as gateway:
        assert _routed(gateway, user="alice") == ("trino-3", "bi")
        assert "reported errors: user alice may not run ETL" in gateway.log()


@pytest.mark.parametrize(
    ("fault", "logged"),
    [
        ({"delay": 3.0, "answer": {"routingGroup": "bi"}}, "did not answer within 0.3 s"),
        ({"status": 500}, "answered HTTP 500"),
        ({"answer": b"<html>oops</html>"}, "answered something that is not JSON"),
        ({"answer": {"routingGroup": 7}}, "routingGroup is not a string"),
    ],
)
def test_a_failing_service_leaves_the_query_to_the_header(service, external_gateway, fault, logged):
    for key, value in fault.items():
        setattr(service, key, value)
    with external_gateway(service.url, timeout=0.3) as gateway:
        # Had the gateway waited for the slow answer, the query would have gone to group bi.
        assert _routed(gateway, http_headers={"X-Trino-Routing-Group": "etl"}) == ("trino-2", "etl")
        assert _routed(gateway) == ("trino-1", "adhoc")
        assert logged in gateway.log()
    assert service.requests


def test_an_unreachable_service_leaves_the_query_to_the_header(external_gateway, refused_port):
    with external_gateway(f"http://127.0.0.1:{refused_port}/route") as gateway:
        assert _routed(gateway, http_headers={"X-Trino-Routing-Group": "etl"}) == ("trino-2", "etl")
        assert "cannot be reached" in gateway.log()
