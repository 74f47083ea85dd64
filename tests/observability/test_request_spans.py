"""The spans and counts of one proxied request, in process: the hooks proxy.py calls, in the order it calls them."""

from __future__ import annotations

import asyncio
from typing import Any

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from observability import metrics
from observability.request import ObservedRequest


def _scope(method: str, path: str, **headers: str) -> dict[str, Any]:
    return {
        "type": "http",
        "method": method,
        "path": path,
        "query_string": b"",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
    }


async def _sent(_: dict[str, Any]) -> None:
    return None


def _tracer() -> tuple[Any, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider.get_tracer("test"), exporter


def _counter(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


def test_a_submission_retried_after_a_refusal_names_the_rule_and_counts_the_retry():
    tracer, exporter = _tracer()
    observed = ObservedRequest(
        metrics.HotPathMetrics(), tracer, _scope("POST", "/v1/statement", **{"X-Trino-User": "carol"}), _sent, "submit"
    )
    retries_before = _counter("trino_gateway_retries_total", backend="r-down")
    began = observed.clock()
    observed.decided("etl", "etl", ["r-down", "r-up"], began, rule="etl-by-source")
    observed.upstream_begin("r-down", "POST", "http://127.0.0.1:1/v1/statement", [])
    observed.upstream_failed(ConnectionRefusedError(111, "Connection refused"), timeout=False, refused=True)
    client_traceparent = (b"traceparent", b"00-" + b"1" * 32 + b"-" + b"2" * 16 + b"-01")
    headers = observed.upstream_begin("r-up", "POST", "http://127.0.0.1:2/v1/statement", [client_traceparent])
    observed.upstream_end(200)
    traceparent = observed.accepted("20261123_000000_00001_abcde", "r-up", "etl")
    asyncio.run(observed.send({"type": "http.response.start", "status": 200, "headers": []}))
    observed.finish()

    assert _counter("trino_gateway_retries_total", backend="r-down") == retries_before + 1
    spans = {(s.name, s.attributes.get("trino.backend")): s for s in exporter.get_finished_spans()}
    server = spans[("POST /v1/statement", "r-up")]
    assert server.kind == SpanKind.SERVER
    assert server.attributes["trino.routing.rule"] == "etl-by-source"
    assert server.attributes["trino.retry.count"] == 1
    assert server.attributes["trino.user"] == "carol"
    route = next(s for s in exporter.get_finished_spans() if s.name == "route")
    assert route.attributes["trino.routing.rule"] == "etl-by-source"
    assert list(route.attributes["trino.routing.candidates"]) == ["r-down", "r-up"]
    failed = spans[("POST", "r-down")]
    assert failed.status.status_code == StatusCode.ERROR and failed.attributes["error.type"] == "ConnectionRefusedError"
    answered = spans[("POST", "r-up")]
    assert answered.attributes["http.response.status_code"] == 200
    # A traceparent among the headers is replaced by the call span's; the query's trace is the server span's.
    flags = int(server.context.trace_flags)
    assert [h for h in headers if h[0] == b"traceparent"] == [
        (b"traceparent", f"00-{answered.context.trace_id:032x}-{answered.context.span_id:016x}-{flags:02x}".encode())
    ]
    assert traceparent == f"00-{server.context.trace_id:032x}-{server.context.span_id:016x}-{flags:02x}"


def test_no_backend_marks_the_routing_span_failed_and_counts_the_error():
    tracer, exporter = _tracer()
    observed = ObservedRequest(metrics.HotPathMetrics(), tracer, _scope("POST", "/v1/statement"), _sent, "submit")
    errors_before = _counter("trino_gateway_errors_total", cause="no_backend")
    decisions_before = _counter("trino_gateway_routing_decisions_total", routing_group="nowhere", outcome="no_backend")
    observed.no_backend("nowhere", observed.clock(), "no active and healthy backend")
    asyncio.run(observed.send({"type": "http.response.start", "status": 200, "headers": []}))
    observed.finish()
    assert _counter("trino_gateway_errors_total", cause="no_backend") == errors_before + 1
    assert (
        _counter("trino_gateway_routing_decisions_total", routing_group="nowhere", outcome="no_backend")
        == decisions_before + 1
    )
    route = next(s for s in exporter.get_finished_spans() if s.name == "route")
    assert route.status.status_code == StatusCode.ERROR
    assert route.attributes["trino.routing.outcome"] == "no_backend"


def test_without_a_tracer_a_request_only_counts():
    observed = ObservedRequest(metrics.HotPathMetrics(), None, _scope("GET", "/v1/info"), _sent, "other")
    before = _counter("trino_gateway_requests_total", kind="other", status="200")
    headers = [(b"via", b"1.1 trino-gateway")]
    assert observed.upstream_begin("b", "GET", "http://127.0.0.1:1/v1/info", headers) is headers
    observed.upstream_end(200)
    assert observed.accepted("q", "b", "adhoc") is None
    asyncio.run(observed.send({"type": "http.response.start", "status": 200, "headers": []}))
    observed.finish()
    assert observed.span is None
    assert _counter("trino_gateway_requests_total", kind="other", status="200") == before + 1
