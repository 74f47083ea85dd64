"""OpenTelemetry tracing of the gateway, set up from the config and the standard ``OTEL_*`` variables.

A config key wins; a key left unset falls back to its ``OTEL_*`` variable, then to a default. With no
endpoint anywhere (or ``OTEL_SDK_DISABLED=true``, ``OTEL_TRACES_EXPORTER=none``) there is no tracer
at all, and the proxy skips every tracing step: the cost is one ``is None`` test per request.

An unreachable collector must never slow a query: spans go to a ``BatchSpanProcessor`` (a bounded
queue drained by its own thread; when full, new spans are dropped), each export gives up after
``export_timeout`` seconds, and shutting down waits at most that long for the last export.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass
from typing import Literal

from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import Tracer
from pydantic import BaseModel, ConfigDict, Field, field_validator

log = logging.getLogger("gateway.tracing")

PROTOCOLS = ("http/protobuf", "grpc")
DEFAULT_SERVICE_NAME = "trino-gateway"
# The SDK's default (10 s) would hold an export thread, and a shutdown, far longer than a collector
# that answers at all needs.
DEFAULT_EXPORT_TIMEOUT = 2.0
_TRACES_PATH = "/v1/traces"


class TracingError(ValueError):
    """The tracing settings (config or ``OTEL_*`` variables) cannot be used; the message names the setting."""


class TracingConfig(BaseModel):
    """OpenTelemetry traces. A key left unset falls back to the standard ``OTEL_*`` variable."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    endpoint: str | None = Field(
        None,
        description="OTLP collector, e.g. http://collector:4318 (http/protobuf) or http://collector:4317 (grpc); "
        "default OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or OTEL_EXPORTER_OTLP_ENDPOINT; none set: no tracing",
    )
    protocol: Literal["http/protobuf", "grpc"] | None = Field(
        None,
        description="default OTEL_EXPORTER_OTLP_TRACES_PROTOCOL or OTEL_EXPORTER_OTLP_PROTOCOL, else http/protobuf",
    )
    sampling_ratio: float | None = Field(
        None, ge=0, le=1, description="share of new traces kept (a client's sampled flag is followed); default 1"
    )
    service_name: str | None = Field(None, min_length=1, description="default OTEL_SERVICE_NAME, else trino-gateway")
    export_timeout: float | None = Field(
        None, gt=0, le=60, description="seconds one export may take; default OTEL_EXPORTER_OTLP_TIMEOUT, else 2"
    )
    max_queue_size: int | None = Field(
        None, ge=1, le=1_000_000, description="spans waiting for export; more are dropped (default 2048)"
    )

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        if value is None or value.strip() == "":
            return None
        value = value.strip().rstrip("/")
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"must be an http:// or https:// URL, got {value!r}")
        return value


@dataclass(frozen=True)
class TracingSettings:
    """What the config and the environment together ask for; ``endpoint`` None means no tracing."""

    endpoint: str | None
    protocol: str
    sampling_ratio: float | None
    service_name: str
    export_timeout: float
    max_queue_size: int | None


def _env(*names: str) -> str | None:
    for name in names:
        value = os.environ.get(name, "").strip()
        if value:
            return value
    return None


def resolve(config: TracingConfig) -> TracingSettings:
    """The effective settings; an unusable ``OTEL_*`` value is a TracingError naming it."""
    disabled = (_env("OTEL_SDK_DISABLED") or "").lower() == "true" or (_env("OTEL_TRACES_EXPORTER") or "") == "none"
    endpoint = None
    if not disabled:
        if config.endpoint is not None:
            endpoint = config.endpoint
        elif (traces := _env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")) is not None:
            endpoint = traces
        elif (base := _env("OTEL_EXPORTER_OTLP_ENDPOINT")) is not None:
            endpoint = base
    protocol = config.protocol or _env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")
    protocol = protocol or "http/protobuf"
    if protocol not in PROTOCOLS:
        raise TracingError(f"OTLP protocol {protocol!r} is not supported: use one of {', '.join(PROTOCOLS)}")
    timeout = config.export_timeout
    if timeout is None:
        raw = _env("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT")
        try:
            # The specification gives these in milliseconds.
            timeout = float(raw) / 1000 if raw is not None else DEFAULT_EXPORT_TIMEOUT
        except ValueError:
            raise TracingError(f"OTEL_EXPORTER_OTLP_TIMEOUT must be a number of milliseconds, got {raw!r}") from None
    return TracingSettings(
        endpoint=endpoint,
        protocol=protocol,
        sampling_ratio=config.sampling_ratio,
        service_name=config.service_name or _env("OTEL_SERVICE_NAME") or DEFAULT_SERVICE_NAME,
        export_timeout=timeout,
        max_queue_size=config.max_queue_size,
    )


def _exporter(settings: TracingSettings, from_config: bool) -> SpanExporter:
    # An endpoint from the environment is passed as None: the exporter then reads the variable
    # itself, with the specification's rules (a base URL gets /v1/traces appended).
    endpoint = settings.endpoint if from_config else None
    if settings.protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

        return GrpcExporter(endpoint=endpoint, timeout=settings.export_timeout)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

    if endpoint is not None and not endpoint.rstrip("/").endswith(_TRACES_PATH):
        endpoint = endpoint.rstrip("/") + _TRACES_PATH
    return HttpExporter(endpoint=endpoint, timeout=settings.export_timeout)


class Tracing:
    """The tracer of one gateway worker, or none: ``tracer`` is None when nothing is exported."""

    def __init__(
        self,
        tracer: Tracer | None,
        provider: TracerProvider | None = None,
        processor: BatchSpanProcessor | None = None,
        settings: TracingSettings | None = None,
    ) -> None:
        self.tracer = tracer
        self.provider = provider
        self.processor = processor
        self.settings = settings

    @classmethod
    def disabled(cls) -> Tracing:
        return cls(None)

    @classmethod
    def start(cls, config: TracingConfig) -> Tracing:
        settings = resolve(config)
        if settings.endpoint is None:
            return cls.disabled()
        _quiet_drop_warnings()
        sampler = (
            ParentBased(TraceIdRatioBased(settings.sampling_ratio)) if settings.sampling_ratio is not None else None
        )
        # sampler=None lets the SDK read OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG (default: parent-based, on).
        provider = TracerProvider(
            sampler=sampler,
            resource=Resource.create({SERVICE_NAME: settings.service_name}),
            shutdown_on_exit=False,
        )
        queue_size = settings.max_queue_size
        batch_size = None
        if queue_size is not None:
            # The SDK refuses a batch larger than the queue (its default batch is 512).
            batch_size = min(queue_size, BatchSpanProcessor._default_max_export_batch_size())
        processor = BatchSpanProcessor(
            _exporter(settings, from_config=config.endpoint is not None),
            max_queue_size=queue_size,
            max_export_batch_size=batch_size,
            export_timeout_millis=settings.export_timeout * 1000,
        )
        provider.add_span_processor(processor)
        log.info("tracing: OTLP %s to %s, service %s", settings.protocol, settings.endpoint, settings.service_name)
        return cls(provider.get_tracer("trino-gateway"), provider, processor, settings)

    @property
    def enabled(self) -> bool:
        return self.tracer is not None

    def queued_spans(self) -> int:
        """Spans waiting for export in this worker (bounded by the queue size)."""
        if self.processor is None:
            return 0
        return len(self.processor._batch_processor._queue)

    def max_queue_size(self) -> int:
        if self.processor is None:
            return 0
        return self.processor._batch_processor._max_queue_size

    async def stop(self) -> None:
        """Export what is queued, waiting at most about one export timeout, then stop."""
        if self.processor is None or self.provider is None or self.settings is None:
            return
        processor, provider = self.processor, self.provider
        try:
            async with asyncio.timeout(self.settings.export_timeout + 1):
                await asyncio.to_thread(processor.force_flush)
        except TimeoutError:
            log.warning("tracing: the collector at %s did not take the last spans in time", self.settings.endpoint)
        # Shutting the exporter down first makes a pending retry give up at once.
        processor.span_exporter.shutdown()
        await asyncio.to_thread(provider.shutdown)


def _quiet_drop_warnings() -> None:
    # The batch processor logs a warning for every span it drops while its queue is full: with the
    # collector down under load, that would be one log line per request on the hot path.
    logging.getLogger("opentelemetry.sdk._shared_internal").setLevel(logging.ERROR)
