"""Acceptance 1 and 2 of issue 6: one trace per query, exported over OTLP, propagated to the backend,
continued across workers and restarts; an unreachable collector costs the queries nothing."""

from __future__ import annotations

import requests

from tests.observability.conftest import ManualQuery, backends_config, tracing_config
from trinosim import TrinoSimProcess
from trinosim.gateway_process import GatewayProcess, free_port
from trinosim.otlp_receiver import ReceivedSpan

CLIENT_TRACE = "0af7651916cd43dd8448eb211c80319c"
CLIENT_TRACEPARENT = f"00-{CLIENT_TRACE}-b7ad6b7169203331-01"


def _of_query(spans: list[ReceivedSpan], query_id: str) -> list[ReceivedSpan]:
    return [s for s in spans if s.attributes.get("trino.query.id") == query_id]


def _server_spans(spans: list[ReceivedSpan], query_id: str) -> list[ReceivedSpan]:
    return [s for s in _of_query(spans, query_id) if s.kind == "SERVER"]


def _sim_traceparents(clusters: list[TrinoSimProcess], query_id: str) -> list[str]:
    for cluster in clusters:
        for query in cluster.queries():
            if query["queryId"] == query_id:
                return [r["headers"].get("traceparent", "") for r in query["requests"]]
    raise AssertionError(f"no cluster ran {query_id}")


def _complete(query_id: str, requests: int):
    """All server spans of the query have arrived, and the upstream call spans of each."""

    def check(spans: list[ReceivedSpan]) -> bool:
        servers = _server_spans(spans, query_id)
        ids = {s.span_id for s in servers}
        clients = [s for s in spans if s.kind == "CLIENT" and s.parent_span_id in ids]
        return len(servers) >= requests and len(clients) >= requests

    return check


def test_one_query_with_polls_and_a_cancel_is_one_trace_with_its_attributes(clusters, receiver):
    config = tracing_config(clusters, receiver.url, service_name="gateway-under-test")
    with GatewayProcess(config=config) as gateway:
        query = ManualQuery(gateway.url)
        for _ in range(3):
            query.poll()
        assert query.cancel() == 204
        spans = receiver.wait_for(_complete(query.id, 5))

    servers = _server_spans(spans, query.id)
    assert sorted(s.attributes["trino.request.kind"] for s in servers) == ["cancel", "poll", "poll", "poll", "submit"]
    trace_ids = {s.trace_id for s in _of_query(spans, query.id)}
    assert len(trace_ids) == 1, "every request of the query is in one trace"
    trace_id = trace_ids.pop()
    in_trace = [s for s in spans if s.trace_id == trace_id]
    assert {s.service_name for s in in_trace} == {"gateway-under-test"}

    submit = next(s for s in servers if s.attributes["trino.request.kind"] == "submit")
    assert submit.name == "POST /v1/statement"
    assert submit.parent_span_id == "", "no client trace: the submission starts the trace"
    backend = submit.attributes["trino.backend"]
    assert backend in {"trino-1", "trino-2"}
    assert submit.attributes["trino.user"] == "alice"
    assert submit.attributes["trino.source"] == "obs-test"
    assert submit.attributes["trino.routing.group"] == "adhoc"
    assert submit.attributes["trino.retry.count"] == 0
    assert submit.attributes["http.response.status_code"] == 200
    assert submit.attributes["http.request.method"] == "POST"
    # No routing rules configured: no rule chose the group.
    assert "trino.routing.rule" not in submit.attributes

    # Polls and the cancel are children of the submission, each with the query id and backend.
    for span in servers:
        if span is not submit:
            assert span.parent_span_id == submit.span_id
            assert span.attributes["trino.backend"] == backend
            assert span.attributes["trino.user"] == "alice"
    cancel = next(s for s in servers if s.attributes["trino.request.kind"] == "cancel")
    assert cancel.name == "DELETE /v1/statement/{queryId}"
    assert cancel.attributes["http.response.status_code"] == 204

    # The routing decision and the upstream call are children of the submission's span.
    route = [s for s in in_trace if s.name == "route"]
    assert len(route) == 1 and route[0].parent_span_id == submit.span_id
    assert route[0].attributes["trino.routing.outcome"] == "routed"
    assert route[0].attributes["trino.routing.candidates"][0] == backend
    assert submit.start_ns <= route[0].start_ns <= route[0].end_ns <= submit.end_ns
    server_ids = {s.span_id for s in servers}
    calls = [s for s in in_trace if s.kind == "CLIENT"]
    assert len(calls) == 5 and {c.parent_span_id for c in calls} == server_ids
    for call in calls:
        assert call.attributes["trino.backend"] == backend
        assert call.attributes["server.address"] == "127.0.0.1"
        assert call.attributes["url.full"].startswith(next(c.url for c in clusters if c.name == backend))

    # trinosim received, with every request, a traceparent of this trace naming the call span.
    received = _sim_traceparents(clusters, query.id)
    assert len(received) == 5
    call_ids = {c.span_id for c in calls}
    for value in received:
        version, trace, span_id, flags = value.split("-")
        assert (version, trace) == ("00", trace_id)
        assert int(flags, 16) & 1, "sampled"
        assert span_id in call_ids


def test_a_clients_traceparent_is_continued(clusters, receiver):
    with GatewayProcess(config=tracing_config(clusters, receiver.url)) as gateway:
        query = ManualQuery(gateway.url, headers={"traceparent": CLIENT_TRACEPARENT, "tracestate": "vendor=1"})
        query.poll()
        query.cancel()
        spans = receiver.wait_for(_complete(query.id, 3))
    servers = _server_spans(spans, query.id)
    assert {s.trace_id for s in servers} == {CLIENT_TRACE}
    submit = next(s for s in servers if s.attributes["trino.request.kind"] == "submit")
    assert submit.parent_span_id == "b7ad6b7169203331"
    received = _sim_traceparents(clusters, query.id)
    assert all(v.split("-")[1] == CLIENT_TRACE for v in received)
    assert CLIENT_TRACEPARENT not in received, "the backend gets the gateway's call span as parent"


def test_a_query_is_one_trace_across_two_workers(clusters, receiver):
    with GatewayProcess(config=tracing_config(clusters, receiver.url), workers=2) as gateway:
        queries = [ManualQuery(gateway.url) for _ in range(6)]
        workers: set[str] = set()
        for query in queries:
            for _ in range(4):
                uri = query.page["nextUri"]
                # A new connection per poll, so polls spread over both workers.
                response = requests.get(uri, headers=query.headers, timeout=30)
                response.raise_for_status()
                query.page = response.json()
                workers.add(response.headers["X-Trino-Gateway-Worker"])
            query.cancel()
        assert len(workers) == 2, "the polls reached both workers"
        for query in queries:
            spans = receiver.wait_for(_complete(query.id, 6))
            assert len({s.trace_id for s in _of_query(spans, query.id)}) == 1


def test_a_query_keeps_its_trace_across_a_gateway_restart(clusters, receiver, tmp_path):
    store = f"sqlite:///{tmp_path / 'gateway.db'}"
    port = free_port()
    with GatewayProcess(store=store, config=tracing_config(clusters, receiver.url), port=port) as gateway:
        query = ManualQuery(gateway.url)
        query.poll()
    # A new gateway process on the same address and store: its caches are empty.
    with GatewayProcess(store=store, config=tracing_config(clusters, receiver.url), port=port) as gateway:
        query.poll()
        query.poll()
        assert query.cancel() == 204
        spans = receiver.wait_for(_complete(query.id, 4))
    servers = _server_spans(spans, query.id)
    assert len({s.trace_id for s in servers}) == 1
    submit = next(s for s in servers if s.attributes["trino.request.kind"] == "submit")
    assert all(s.parent_span_id == submit.span_id for s in servers if s is not submit)
    assert {v.split("-")[1] for v in _sim_traceparents(clusters, query.id)} == {submit.trace_id}


def test_queries_succeed_when_the_collector_is_down_and_spans_queue_boundedly(clusters, refused_port):
    endpoint = f"http://127.0.0.1:{refused_port}"  # nothing listens there
    config = tracing_config(clusters, endpoint, max_queue_size=16, export_timeout=0.5)
    with GatewayProcess(config=config) as gateway:
        for _ in range(20):
            query = ManualQuery(gateway.url)
            query.poll()
            assert query.cancel() == 204
        # 20 queries made 60 requests and 120 spans; at most 16 wait, the rest were dropped.
        status, bean = gateway.call("GET", "/v1/jmx/mbean/trino.gateway:name=Tracing")
        assert status == 200
        attributes = {a["name"]: a["value"] for a in bean["attributes"]}
        assert attributes["Enabled"] is True
        assert attributes["MaxQueueSize"] == 16
        assert 0 <= attributes["QueuedSpans"] <= 16
        # The backend still gets a traceparent: propagation does not depend on the collector.
        assert _sim_traceparents(clusters, query.id)[0].startswith("00-")
    assert "Traceback" not in gateway.log()


def test_without_an_endpoint_nothing_is_traced_and_the_clients_traceparent_passes_through(clusters, monkeypatch):
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    with GatewayProcess(config=backends_config(clusters)) as gateway:
        query = ManualQuery(gateway.url, headers={"traceparent": CLIENT_TRACEPARENT})
        query.cancel()
        _, bean = gateway.call("GET", "/v1/jmx/mbean/trino.gateway:name=Tracing")
        assert {a["name"]: a["value"] for a in bean["attributes"]}["Enabled"] is False
    assert _sim_traceparents(clusters, query.id)[0] == CLIENT_TRACEPARENT


def test_the_endpoint_can_come_from_the_standard_environment_variables(clusters, receiver, monkeypatch):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url)
    monkeypatch.setenv("OTEL_SERVICE_NAME", "from-env")
    with GatewayProcess(config=backends_config(clusters)) as gateway:
        query = ManualQuery(gateway.url)
        query.cancel()
        spans = receiver.wait_for(_complete(query.id, 2))
    assert {s.service_name for s in _of_query(spans, query.id)} == {"from-env"}


def test_the_routing_rule_that_chose_the_group_is_on_the_spans(clusters, receiver, tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        'name: "obs-source"\ncondition: \'request.getHeader("X-Trino-Source") == "obs-test"\'\n'
        'actions: [\'result.put("routingGroup", "adhoc")\']\n'
    )
    config = tracing_config(clusters, receiver.url)
    config["routing_rules"] = {"enabled": True, "rules_file": str(rules)}
    with GatewayProcess(config=config) as gateway:
        query = ManualQuery(gateway.url)
        assert query.cancel() == 204
        spans = receiver.wait_for(_complete(query.id, 2))
    submit = next(s for s in _server_spans(spans, query.id) if s.attributes["trino.request.kind"] == "submit")
    assert submit.attributes["trino.routing.rule"] == "obs-source"
    route = next(s for s in spans if s.name == "route" and s.trace_id == submit.trace_id)
    assert route.attributes["trino.routing.rule"] == "obs-source"


def test_the_statements_of_a_transaction_carry_its_id(clusters, receiver):
    from trino.transaction import IsolationLevel

    from tests.conftest import connect

    config = tracing_config(clusters, receiver.url)
    with GatewayProcess(config=config) as gateway:
        with connect(gateway.url, isolation_level=IsolationLevel.READ_COMMITTED) as conn:
            cursor = conn.cursor()
            cursor.execute("SELECT 1")
            cursor.fetchall()
            query_id, transaction_id = cursor.query_id, conn.transaction.id
            conn.commit()
        spans = receiver.wait_for(lambda spans: _server_spans(spans, query_id))

    statement = _server_spans(spans, query_id)
    assert statement and all(s.attributes["trino.transaction.id"] == transaction_id for s in statement)
    submit = next(s for s in statement if s.attributes["trino.request.kind"] == "submit")
    # Routed by the transaction, not by the routers: the routing rule says so.
    assert submit.attributes["trino.routing.rule"] == "transaction"
