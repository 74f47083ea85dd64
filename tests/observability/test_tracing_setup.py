"""Tracing set-up from the config and the OTEL_* variables, in process: what is exported where, and what
an unreachable collector does to the code that makes spans."""

from __future__ import annotations

import asyncio

import pytest

from gateway.config import ConfigError, parse_config
from observability.propagation import format_traceparent, parse_traceparent
from observability.tracing import Tracing, TracingConfig, TracingError, resolve
from trinosim.otlp_receiver import OtlpReceiver

OTEL_VARIABLES = (
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_SERVICE_NAME",
    "OTEL_SDK_DISABLED",
    "OTEL_TRACES_EXPORTER",
    "OTEL_EXPORTER_OTLP_TIMEOUT",
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in OTEL_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def test_the_tracing_section_is_strict():
    with pytest.raises(ConfigError, match=r"observability.tracing.colour: unknown key"):
        parse_config({"observability": {"tracing": {"colour": "blue"}}})
    with pytest.raises(ConfigError, match=r"observability.tracing.protocol"):
        parse_config({"observability": {"tracing": {"protocol": "http/json"}}})
    with pytest.raises(ConfigError, match=r"observability.tracing.sampling_ratio"):
        parse_config({"observability": {"tracing": {"sampling_ratio": 1.5}}})
    with pytest.raises(ConfigError, match=r"observability.tracing.endpoint"):
        parse_config({"observability": {"tracing": {"endpoint": "collector:4318"}}})


def test_no_endpoint_anywhere_means_no_tracer():
    tracing = Tracing.start(TracingConfig())
    assert tracing.tracer is None and not tracing.enabled


def test_config_wins_over_the_environment_and_the_environment_fills_the_rest(monkeypatch):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://from-env:4318")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "env-name")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "500")
    from_env = resolve(TracingConfig())
    assert (from_env.endpoint, from_env.protocol, from_env.service_name) == ("http://from-env:4318", "grpc", "env-name")
    assert from_env.export_timeout == 0.5
    configured = resolve(TracingConfig(endpoint="http://configured:4318", protocol="http/protobuf", service_name="gw"))
    assert (configured.endpoint, configured.protocol, configured.service_name) == (
        "http://configured:4318",
        "http/protobuf",
        "gw",
    )


def test_the_standard_switches_turn_tracing_off(monkeypatch):
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert resolve(TracingConfig(endpoint="http://configured:4318")).endpoint is None
    monkeypatch.delenv("OTEL_SDK_DISABLED")
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    assert resolve(TracingConfig(endpoint="http://configured:4318")).endpoint is None


def test_an_unsupported_protocol_in_the_environment_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
    with pytest.raises(TracingError, match="'http/json' is not supported: use one of http/protobuf, grpc"):
        resolve(TracingConfig(endpoint="http://collector:4318"))


def test_grpc_export_is_set_up(refused_port):
    tracing = Tracing.start(TracingConfig(endpoint=f"http://127.0.0.1:{refused_port}", protocol="grpc"))
    try:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        assert isinstance(tracing.processor.span_exporter, OTLPSpanExporter)
    finally:
        asyncio.run(tracing.stop())


def test_http_export_reaches_a_receiver_with_the_sampling_ratio_applied():
    with OtlpReceiver() as receiver:
        tracing = Tracing.start(TracingConfig(endpoint=receiver.url, sampling_ratio=0.0, service_name="unit"))
        assert tracing.tracer is not None
        tracing.tracer.start_span("dropped by the sampler").end()
        parent = parse_traceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
        from opentelemetry.trace import NonRecordingSpan, set_span_in_context

        # A sampled parent is followed even at ratio 0.
        tracing.tracer.start_span("kept", context=set_span_in_context(NonRecordingSpan(parent))).end()
        asyncio.run(tracing.stop())
        spans = receiver.snapshot()
    assert [(s.name, s.service_name, s.trace_id) for s in spans] == [
        ("kept", "unit", "0af7651916cd43dd8448eb211c80319c")
    ]


def test_with_the_collector_down_making_spans_neither_blocks_nor_grows_without_bound(refused_port):
    tracing = Tracing.start(
        TracingConfig(endpoint=f"http://127.0.0.1:{refused_port}", max_queue_size=100, export_timeout=0.2)
    )
    assert tracing.tracer is not None
    # An export that blocked the span's maker (0.2 s each) would take far beyond the test time-out here.
    for i in range(5000):
        tracing.tracer.start_span(f"span {i}").end()
        assert tracing.queued_spans() <= 100
    assert tracing.max_queue_size() == 100
    asyncio.run(tracing.stop())


def test_traceparent_round_trip_and_invalid_values():
    value = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    context = parse_traceparent(value)
    assert context is not None and format_traceparent(context) == value
    for bad in (
        None,
        "",
        "garbage",
        "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "00-00000000000000000000000000000000-b7ad6b7169203331-01",
        "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",
    ):
        assert parse_traceparent(bad) is None, bad
