"""The gateway's settings: typed, validated at start-up, every unknown key an error naming it."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from gateway.backends.record import Backend, BackendTls, MonitorKind, normalise_url
from observability.tracing import TracingConfig


class ConfigError(ValueError):
    """A configuration problem, phrased for the operator who wrote the file."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


RouterKind = Literal["score", "least-queued", "round-robin", "random", "weighted", "user-hash"]


class TlsListenerConfig(_Strict):
    """HTTPS beside (or instead of) plain HTTP. The files are read again when they change."""

    port: int = Field(8443, ge=0, le=65535, description="port of the HTTPS listener")
    certificate: str = Field(description="the server certificate chain (PEM)")
    key: str = Field(description="its private key (PEM)")

    @model_validator(mode="after")
    def _readable(self) -> TlsListenerConfig:
        for name in ("certificate", "key"):
            path = Path(getattr(self, name))
            if not path.is_file():
                raise ValueError(f"{name} {str(path)!r} is not a readable file")
        return self


class ServerConfig(_Strict):
    host: str = "0.0.0.0"
    port: int = Field(8080, ge=0, le=65535, description="port of the plain HTTP listener")
    http: bool = Field(True, description="serve plain HTTP on port (false: HTTPS only, with tls)")
    tls: TlsListenerConfig | None = Field(None, description="serve HTTPS on tls.port with this certificate")
    header_read_timeout: float = Field(
        10.0, gt=0, le=600, description="a client must send a request's headers within this many seconds"
    )
    workers: int = Field(1, ge=1, le=64, description="worker processes sharing the port")
    # granian serves ~10x the requests/s of hypercorn on this hardware (docs/performance.md);
    # hypercorn stays available.
    engine: Literal["granian", "hypercorn"] = "granian"


class StoreConfig(_Strict):
    url: str = Field(
        "sqlite:///gateway.db",
        description="sqlite:///path.db, postgresql://user:pw@host/db, or memory:// (one worker, nothing kept)",
    )


class GroupConfig(_Strict):
    router: RouterKind = "score"


class ScoreWeights(_Strict):
    """Weights of the health score's cost terms (``gateway.scoring``)."""

    queued: float = Field(1.0, ge=0, description="per queued query, per worker")
    running: float = Field(0.25, ge=0, description="per running query, per worker")
    latency: float = Field(4.0, ge=0, description="per second of average submission latency")
    errors: float = Field(5.0, ge=0, description="at a 100% error rate")


class RoutingConfig(_Strict):
    default_group: str = Field("adhoc", min_length=1)
    router: RouterKind = Field("score", description="router of groups not listed under groups")
    groups: dict[str, GroupConfig] = Field(default_factory=dict, description="per-group settings, e.g. the router")
    score_weights: ScoreWeights = Field(default_factory=ScoreWeights)
    backend_refresh_seconds: float = Field(
        1.0, ge=0, description="how stale the backend list may be; admin changes on another worker count within it"
    )


class ProxyConfig(_Strict):
    connect_timeout: float = Field(5.0, gt=0, description="seconds to open a connection to a backend")
    read_timeout: float = Field(25.0, gt=0, description="seconds to wait for a backend's answer")
    forwarded_headers: bool = Field(True, description="send X-Forwarded-For/-Proto/-Host/-Port to backends")
    max_connections: int = Field(
        512, ge=1, description="requests in flight to all backends together, per worker (statements and streams)"
    )
    max_connections_per_backend: int = Field(
        128,
        ge=1,
        description="requests in flight to one backend, per worker: a backend that hangs holds at most these, and "
        "a request that finds none free within connect_timeout fails as not sent (a new query tries the next backend)",
    )


class ExternalRoutingConfig(_Strict):
    url: str = Field(description="the routing service's URL; the gateway POSTs each new query's details to it")
    exclude_headers: list[str] = Field(default_factory=list, description="request headers not sent to the service")
    propagate_errors: bool = Field(False, description="errors in the service's answer reject the query (HTTP 400)")
    timeout: float = Field(1.0, gt=0, description="seconds to wait for the service; then the header decides")
    tls: BackendTls | None = Field(None, description="TLS settings for an https:// service: CA, client certificate")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return normalise_url(value)


class RoutingRulesConfig(_Strict):
    enabled: bool = Field(False, description="off: the X-Trino-Routing-Group header picks the group")
    type: Literal["FILE", "EXTERNAL"] = "FILE"
    rules_file: str | None = Field(None, description="FILE: multi-document YAML of rules (trino-gateway's format)")
    refresh_seconds: float = Field(1.0, gt=0, description="FILE: how often the file is checked for changes")
    external: ExternalRoutingConfig | None = None
    max_body_size: int = Field(1_000_000, ge=0, description="longer statements are not analysed for rules")
    token_user_field: str = Field("email", description="JWT claim read as the user when there is no X-Trino-User")

    @model_validator(mode="after")
    def _complete(self) -> RoutingRulesConfig:
        if self.enabled and self.type == "FILE" and not self.rules_file:
            raise ValueError("type FILE needs rules_file")
        if self.enabled and self.type == "EXTERNAL" and self.external is None:
            raise ValueError("type EXTERNAL needs external.url")
        return self


class HealthConfig(_Strict):
    monitor: MonitorKind = Field("INFO_API", description="health check of backends that name none")
    interval: float = Field(5.0, gt=0, description="seconds between checks of a backend")
    timeout: float = Field(3.0, gt=0, description="a check that takes longer fails")
    failure_threshold: int = Field(2, ge=1, description="failures in a row that make a backend UNHEALTHY")
    success_threshold: int = Field(2, ge=1, description="successes in a row that make it HEALTHY again")
    user: str = Field("trino-gateway", description="X-Trino-User of JMX, METRICS and QUERY checks")
    ui_user: str = Field("trino-gateway", description="UI_API login")
    ui_password: str = ""
    probe_sql: str = Field("SELECT 1", description="statement the QUERY check runs")
    metric_minimums: dict[str, float] = Field(
        default_factory=lambda: {"trino_metadata_name_DiscoveryNodeManager_ActiveNodeCount": 1.0},
        description="METRICS check: a metric below its minimum makes the backend fail the check",
    )
    metric_maximums: dict[str, float] = Field(default_factory=dict, description="METRICS check: ... above its maximum")


class HistoryConfig(_Strict):
    retention_hours: float = Field(24.0, gt=0, description="how long routed queries are kept")
    sql_chars: int = Field(2000, ge=0, description="how much of each statement is kept")


class TransactionsConfig(_Strict):
    idle_timeout: float = Field(
        600.0,
        gt=0,
        description="a transaction with no statement for this long is no longer bound to its backend (Trino "
        "aborts idle ones after transaction.idle-timeout, 5 minutes by default)",
    )


class ObservabilityConfig(_Strict):
    tracing: TracingConfig = Field(default_factory=TracingConfig)


class GatewayConfig(_Strict):
    server: ServerConfig = Field(default_factory=ServerConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    routing: RoutingConfig = Field(default_factory=RoutingConfig)
    routing_rules: RoutingRulesConfig = Field(default_factory=RoutingRulesConfig)
    proxy: ProxyConfig = Field(default_factory=ProxyConfig)
    history: HistoryConfig = Field(default_factory=HistoryConfig)
    health: HealthConfig = Field(default_factory=HealthConfig)
    transactions: TransactionsConfig = Field(default_factory=TransactionsConfig)
    observability: ObservabilityConfig = Field(default_factory=ObservabilityConfig)
    backends: list[Backend] = Field(default_factory=list)

    @model_validator(mode="after")
    def _a_listener(self) -> GatewayConfig:
        if not self.server.http and self.server.tls is None:
            raise ValueError("server.http is false and server.tls is not set: the gateway would listen nowhere")
        if self.server.http and self.server.tls is not None and self.server.tls.port == self.server.port != 0:
            raise ValueError("server.tls.port and server.port are the same port")
        return self

    @model_validator(mode="after")
    def _memory_store_has_one_worker(self) -> GatewayConfig:
        if self.store.url.startswith("memory:") and self.server.workers > 1:
            raise ValueError("store.url memory:// keeps state in one process: it needs server.workers 1")
        return self

    @field_validator("backends")
    @classmethod
    def _unique_names(cls, backends: list[Backend]) -> list[Backend]:
        seen: set[str] = set()
        for backend in backends:
            if backend.name in seen:
                raise ValueError(f"backend name {backend.name!r} appears twice")
            seen.add(backend.name)
        return backends


# The backend record's camel-case aliases (the admin API's spelling) and the config file's names.
_FIELD_OF_ALIAS = {
    field.alias: name
    for model in (Backend, BackendTls)
    for name, field in model.model_fields.items()
    if field.alias is not None
}


def describe_errors(error: ValidationError, source: str, snake_case: bool = False) -> str:
    """One line per problem, naming where it is. ``snake_case``: keys as the config file writes them
    (a backend's fields have camel-case aliases, which the admin API speaks)."""
    lines = []
    for problem in error.errors():
        parts = [_FIELD_OF_ALIAS.get(p, p) if snake_case and isinstance(p, str) else str(p) for p in problem["loc"]]
        where = ".".join(parts) or "(top level)"
        message = problem["msg"]
        if problem["type"] == "extra_forbidden":
            message = "unknown key"
        lines.append(f"{source}: {where}: {message}")
    return "\n".join(lines)


def parse_config(data: Any, source: str = "config") -> GatewayConfig:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of sections (server, store, backends, ...)")
    try:
        return GatewayConfig.model_validate(data)
    except ValidationError as error:
        raise ConfigError(describe_errors(error, source, snake_case=True)) from None


def _resolve_relative_files(data: dict[str, Any], directory: Path) -> None:
    """File names in the file are relative to it, wherever the gateway is started from."""
    tls = (data.get("server") or {}).get("tls") if isinstance(data.get("server"), dict) else None
    if isinstance(tls, dict):
        for key in ("certificate", "key"):
            if isinstance(tls.get(key), str) and not Path(tls[key]).is_absolute():
                tls[key] = str((directory / tls[key]).resolve())


def load_config(path: str | Path | None) -> GatewayConfig:
    """The configuration in ``path`` (YAML), or the defaults when there is no file."""
    if path is None:
        return GatewayConfig()
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as error:
        raise ConfigError(f"{path}: cannot read: {error.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
    if isinstance(data, dict):
        _resolve_relative_files(data, path.parent)
    config = parse_config(data, str(path))
    rules_file = config.routing_rules.rules_file
    if rules_file is not None and not Path(rules_file).is_absolute():
        # Relative to the configuration file, wherever the gateway is started from.
        config.routing_rules.rules_file = str((path.parent / rules_file).resolve())
    return config
