"""A backend (one Trino cluster behind the gateway) as one record: the same model in the config file,
the store and the admin API.

The config file writes keys in snake case (``proxy_to``), trinodb/trino-gateway's admin API in camel
case (``proxyTo``); both spellings are accepted everywhere and each surface writes its own.
"""

from __future__ import annotations

from typing import Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

MonitorKind = Literal["INFO_API", "UI_API", "JMX", "METRICS", "QUERY", "NOOP"]
MONITOR_KINDS: tuple[str, ...] = MonitorKind.__args__  # type: ignore[attr-defined]
NAME_PATTERN = r"^[A-Za-z0-9_.\-]+$"
# Free text (a group, a file path) may hold anything but control characters, which no store, file
# system or log line takes as they are.
TEXT_PATTERN = r"^[^\x00-\x1f\x7f]*$"
# The store's column lengths (gateway.store.schema): a longer value would be cut there.
URL_LENGTH = 1024


def normalise_url(value: str) -> str:
    """A URL as stored: ``http(s)://host[:port][/path]`` without a trailing slash."""
    value = value.strip().rstrip("/")
    if not value.startswith(("http://", "https://")) or len(value.split("://", 1)[1]) == 0:
        raise ValueError(f"must be an http:// or https:// URL, got {value!r}")
    try:
        # The client that will call it must be able to read it (a control character, a port that is no number).
        httpx.URL(value)
    except httpx.InvalidURL as error:
        raise ValueError(f"is not a valid URL: {error}") from None
    return value


class _Record(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, alias_generator=to_camel, populate_by_name=True, serialize_by_alias=False
    )


class BackendTls(_Record):
    """How the gateway verifies (and proves itself to) an ``https://`` backend."""

    ca_file: str | None = Field(
        None, max_length=4096, pattern=TEXT_PATTERN, description="PEM file of the CAs to trust (default: the system's)"
    )
    cert_file: str | None = Field(
        None, max_length=4096, pattern=TEXT_PATTERN, description="client certificate (PEM) for mutual TLS"
    )
    key_file: str | None = Field(
        None, max_length=4096, pattern=TEXT_PATTERN, description="the client certificate's key (PEM)"
    )
    verify: bool = Field(True, description="false turns certificate checks off: only by explicit choice")

    @field_validator("key_file")
    @classmethod
    def _pair(cls, value: str | None, info: Any) -> str | None:
        if value is not None and info.data.get("cert_file") is None:
            raise ValueError("key_file needs cert_file")
        return value


ScalerKind = Literal["command", "docker"]
# A command or container name is one line a shell or the Docker engine reads: no control characters.
COMMAND_LENGTH = 4096


class BackendScaler(_Record):
    """How the gateway starts and stops this cluster (docs/scaling.md). Ready means its health checks pass."""

    kind: ScalerKind = Field(description="command: shell commands; docker: a container, through the Docker engine")
    start: str | None = Field(
        None,
        max_length=COMMAND_LENGTH,
        pattern=TEXT_PATTERN,
        description="command: what starts it, run by /bin/sh (e.g. kubectl scale statefulset/trino-etl --replicas=1)",
    )
    stop: str | None = Field(
        None, max_length=COMMAND_LENGTH, pattern=TEXT_PATTERN, description="command: what stops it, run by /bin/sh"
    )
    status: str | None = Field(
        None,
        max_length=COMMAND_LENGTH,
        pattern=TEXT_PATTERN,
        description="command: exits 0 while it is started, non-zero while stopped (optional: without it, a "
        "cluster that fails its health checks and was not started by the gateway counts as stopped)",
    )
    container: str | None = Field(
        None, max_length=256, pattern=NAME_PATTERN, description="docker: the container's name (or id)"
    )
    timeout: float = Field(
        120.0, gt=0, le=3600, description="seconds a start, stop or status may take; then it is stopped and failed"
    )

    @model_validator(mode="after")
    def _complete(self) -> BackendScaler:
        if self.kind == "command":
            missing = [key for key in ("start", "stop") if not getattr(self, key)]
            if missing:
                raise ValueError(f"a command scaler needs {' and '.join(missing)}")
        elif not self.container:
            raise ValueError("a docker scaler needs container")
        return self


class Backend(_Record):
    """A Trino cluster behind the gateway: where it is, which routing group it serves, the operator's
    intent (``active``), how it is weighed and checked."""

    name: str = Field(min_length=1, max_length=256, pattern=NAME_PATTERN)
    proxy_to: str = Field(
        max_length=URL_LENGTH,
        description="URL the gateway sends requests to, e.g. http://trino-1:8080",
        # What normalise_url checks first, shown to readers of the API's schema (not checked as a pattern:
        # normalise_url's message is the one a caller reads).
        json_schema_extra={"pattern": r"^\s*https?://"},
    )
    external_url: str | None = Field(
        None, max_length=URL_LENGTH, description="URL users see for this cluster (default: proxy_to)"
    )
    routing_group: str = Field("adhoc", min_length=1, max_length=256, pattern=TEXT_PATTERN)
    active: bool = Field(True, description="takes new queries (when healthy); inactive: running work finishes")
    weight: float = Field(1.0, ge=0, le=1_000_000, description="share of queries under the weighted router")
    max_running: int | None = Field(
        None,
        ge=1,
        le=1_000_000,
        strict=True,
        description="the most queries the gateway runs on this cluster at once; more wait in the gateway "
        "(default: no limit)",
    )
    monitor: MonitorKind | None = Field(None, description="health check for this backend (default: health.monitor)")
    tls: BackendTls | None = Field(None, description="TLS settings for an https:// proxy_to")
    scaler: BackendScaler | None = Field(
        None, description="how the gateway starts and stops it (default: none, the operator does)"
    )

    @field_validator("proxy_to")
    @classmethod
    def _url(cls, value: str) -> str:
        return normalise_url(value)

    @field_validator("external_url", mode="before")
    @classmethod
    def _external_url(cls, value: Any) -> Any:
        # trinodb/trino-gateway's clients send "" for "none"; what is no string is left to the type check.
        if value == "":
            return None
        return normalise_url(value) if isinstance(value, str) else value
