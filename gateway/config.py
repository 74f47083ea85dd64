"""The gateway's settings: typed, validated at start-up, every unknown key an error naming it."""

from __future__ import annotations

import math
import re
import zoneinfo
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator

from gateway.store.backend import Backend, BackendTls, MonitorKind, normalise_url
from observability.tracing import TracingConfig


class ConfigError(ValueError):
    """A configuration problem, phrased for the operator who wrote the file."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


RouterKind = Literal["score", "least-queued", "round-robin", "random", "weighted", "user-hash"]

_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ns|us|ms|s|m|h|d)\s*$")


def _repeated(values: Iterable[str]) -> str | None:
    """The first value that comes a second time, if one does."""
    seen: set[str] = set()
    for value in values:
        if value in seen:
            return value
        seen.add(value)
    return None


def _seconds(value: Any) -> Any:
    """A duration as Trino's configuration writes one (airlift's ``500ms``, ``2s``, ``10m``), or a number of
    seconds; anything else is left for the field's own check to refuse."""
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match is None:
            try:
                return float(value)
            except ValueError:
                raise ValueError(
                    f"{value!r} is not a duration: write a number and a unit, e.g. 300ms, 2s, 10m"
                ) from None
        return float(match.group(1)) * _DURATION_UNITS[match.group(2)]
    return value


Duration = Annotated[float, BeforeValidator(_seconds)]


def duration_seconds(value: Any) -> float:
    """A duration (``300ms``, ``5m``, or a number of seconds) in seconds; ValueError if it is none."""
    seconds = _seconds(value)
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or math.isnan(seconds):
        raise ValueError(f"{value!r} is not a duration")
    return float(seconds)


"""Seconds, written as a number or with a unit (``300ms``, ``2s``, ``10m``)."""


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
    shutdown_grace: float = Field(
        5.0,
        ge=0,
        le=3600,
        description="on SIGTERM, seconds the node keeps serving everything (new connections too) while "
        "/gateway/readyz answers 503, so that load balancers take it out of rotation first; 0: none",
    )
    shutdown_timeout: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="then, seconds to answer the requests in flight and flush the query history; "
        "a worker still busy after that is killed",
    )


class StoreConfig(_Strict):
    url: str = Field(
        "sqlite:///gateway.db",
        description="sqlite:///path.db, postgresql://user:pw@host/db, or memory:// (one worker, nothing kept)",
    )


QueuePolicy = Literal["fair", "fifo"]


class GroupCacheConfig(_Strict):
    """The result cache, turned on for one routing group (docs/cache.md)."""

    ttl: Duration = Field(gt=0, le=7 * 86400, description="how long a cached result is served (e.g. 5m)")
    shared: bool = Field(
        False,
        description="one entry for every user of the group (its data is the same for all of them); false: each "
        "user's results are their own",
    )
    opt_in: bool = Field(
        False, description="cache only the queries whose client asks for it (client tag cache or cache-ttl=N)"
    )


_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_CLOCK = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


class ScalingWindow(_Strict):
    """A time of the week when the group keeps more clusters running (office hours, a nightly batch)."""

    days: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] = Field(
        default_factory=lambda: list(_WEEKDAYS), description="the days it applies (default: every day)"
    )
    start: str = Field(description="HH:MM, when it begins (the gateway's local time unless timezone says)")
    end: str = Field(description="HH:MM, when it ends (before start: it ends the next day)")
    min_clusters: int = Field(ge=0, le=1000, description="clusters kept started meanwhile")
    timezone: str | None = Field(None, description="an IANA time zone (e.g. Europe/Berlin); default: the gateway's")

    @field_validator("start", "end")
    @classmethod
    def _clock(cls, value: str) -> str:
        if not _CLOCK.match(value):
            raise ValueError(f"{value!r} is not a time of day: write HH:MM, e.g. 08:00")
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                zoneinfo.ZoneInfo(value)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"{value!r} is not a time zone this machine knows") from None
        return value


class GroupScalingConfig(_Strict):
    """Clusters of the group started and stopped with its load, through their scalers (docs/scaling.md)."""

    min_clusters: int = Field(0, ge=0, le=1000, description="clusters kept started (0: scale to zero when idle)")
    max_clusters: int | None = Field(
        None, ge=1, le=1000, description="the most started at once (default: every cluster of the group)"
    )
    windows: list[ScalingWindow] = Field(default_factory=list, description="times with a minimum of their own")
    scale_up_queued: int = Field(
        1, ge=1, description="start a cluster when this many queries of the group wait in the gateway"
    )
    scale_up_utilisation: float = Field(
        0.8, gt=0, le=1, description="... or when running / Σ max_running of its ready clusters stays above this"
    )
    scale_up_after: Duration = Field(30.0, ge=0, description="... for this long (e.g. 30s)")
    scale_down_utilisation: float = Field(
        0.25, ge=0, lt=1, description="drain one cluster when utilisation stays under this for idle_time"
    )
    idle_time: Duration = Field(
        30.0, ge=0, description="how long the group's load stays low before a cluster is drained, then stopped"
    )
    start_timeout: Duration = Field(
        120.0,
        gt=0,
        description="how long a cluster may take to become READY; then the next one is tried, and "
        "queries waiting for one fail once no other can start",
    )

    @model_validator(mode="after")
    def _bounds(self) -> GroupScalingConfig:
        if self.max_clusters is not None and self.max_clusters < self.min_clusters:
            raise ValueError(f"max_clusters ({self.max_clusters}) is below min_clusters ({self.min_clusters})")
        if self.scale_down_utilisation >= self.scale_up_utilisation:
            raise ValueError("scale_down_utilisation must be below scale_up_utilisation")
        return self


class GroupConfig(_Strict):
    router: RouterKind = "score"
    max_queued: int | None = Field(
        None,
        ge=0,
        description="queries that may wait in the gateway for room on a backend of the group (backends' "
        "max_running); one more fails at once with QUERY_QUEUE_FULL; unset: no limit, 0: none may wait",
    )
    max_queue_wait: float | None = Field(
        None,
        gt=0,
        description="seconds a query may wait in the gateway; then it fails with EXCEEDED_TIME_LIMIT; unset: no limit",
    )
    queue_policy: QueuePolicy = Field(
        "fair",
        description="which waiting query starts next: fair (users take turns, by their weights) or fifo",
    )
    cache: GroupCacheConfig | None = Field(
        None, description="answer repeated read-only queries of the group from the result cache (e.g. {ttl: 5m})"
    )
    scaling: GroupScalingConfig | None = Field(
        None, description="start and stop the group's clusters with its load (their scalers: docs/scaling.md)"
    )


class AdmissionConfig(_Strict):
    """Queries the gateway holds back when a group's backends are full (their ``max_running``) or a user
    runs as many as they may (docs/admission.md)."""

    user_max_running: int | None = Field(
        None, ge=1, description="queries one user may run at once through the gateway (a rule's maxRunning wins)"
    )
    user_weights: dict[str, float] = Field(
        default_factory=dict,
        description="a user's share of the starts among waiting users (default 1; a rule's queueWeight wins)",
    )
    fair_by: Literal["user", "source", "user_and_source"] = Field(
        "user", description="whose turns the fair queue takes: users, client sources (X-Trino-Source), or both"
    )
    poll_wait: float = Field(
        1.0, gt=0, le=30, description="seconds a poll of a waiting query is held before it is answered QUEUED again"
    )
    abandon_after: float = Field(
        60.0,
        gt=0,
        description="a waiting query whose client has not polled for this many seconds leaves the queue",
    )
    slot_lease: float = Field(
        300.0,
        gt=0,
        description="a running query's slot is freed if no worker or node has seen its client poll for this "
        "many seconds (Trino's query.client.timeout is 5 minutes)",
    )

    @field_validator("user_weights")
    @classmethod
    def _positive(cls, weights: dict[str, float]) -> dict[str, float]:
        for user, weight in weights.items():
            if not weight > 0:
                raise ValueError(f"the weight of {user!r} must be above 0, got {weight}")
        return weights


class ScoreWeights(_Strict):
    """Weights of the health score's cost terms (``gateway.routing.scoring``)."""

    queued: float = Field(1.0, ge=0, description="per queued query, per worker")
    running: float = Field(0.25, ge=0, description="per running query, per worker")
    latency: float = Field(4.0, ge=0, description="per second of average submission latency")
    errors: float = Field(5.0, ge=0, description="at a 100% error rate")


# What a plan's estimate holds (gateway.routing.estimates): Trino's five estimates, per node and summed,
# and the plan's shape. The names are Trino's (and the routing rules' ``queryEstimate``'s).
EstimateName = Literal["outputRowCount", "outputSizeInBytes", "cpuCost", "memoryCost", "networkCost"]
ShapeName = Literal["fragments", "joins", "tableScans", "remoteExchanges", "aggregations", "nodes"]


class EstimateBounds(_Strict):
    """Bounds on a query's estimate: ``total`` (summed over the plan's nodes) and ``max`` (the largest of one
    node) for each of Trino's estimates, and the plan's shape (counts)."""

    total: dict[EstimateName, float] = Field(default_factory=dict, description="summed over every node of the plan")
    max: dict[EstimateName, float] = Field(default_factory=dict, description="the largest of any one node")
    fragments: int | None = Field(None, ge=0, description="stages of the distributed plan")
    joins: int | None = Field(None, ge=0)
    tableScans: int | None = Field(None, ge=0)
    remoteExchanges: int | None = Field(None, ge=0)
    aggregations: int | None = Field(None, ge=0)
    nodes: int | None = Field(None, ge=0, description="plan nodes")

    @field_validator("total", "max")
    @classmethod
    def _numbers(cls, values: dict[str, float]) -> dict[str, float]:
        for name, value in values.items():
            if math.isnan(value) or value < 0:
                raise ValueError(f"{name}: a bound must be a number of at least 0, got {value}")
        return values

    def is_empty(self) -> bool:
        return not self.total and not self.max and all(getattr(self, name) is None for name in _SHAPE_NAMES)


_SHAPE_NAMES: tuple[str, ...] = ("fragments", "joins", "tableScans", "remoteExchanges", "aggregations", "nodes")


class CostTarget(_Strict):
    """A routing group the cost router may choose, and what a query's estimate must meet for it."""

    group: str = Field(min_length=1, description="the routing group")
    limits: EstimateBounds = Field(
        default_factory=EstimateBounds,
        description="the group takes the query if every limit holds: a value at most its limit (a value the "
        "planner could not estimate holds no limit)",
    )
    thresholds: EstimateBounds = Field(
        default_factory=EstimateBounds,
        description="trino-gateway's rule: the group takes the query unless a threshold is met: a value at least its "
        "threshold (a value the planner could not estimate meets none)",
    )


class CostRouterConfig(_Strict):
    """Routing groups chosen by a query's estimate, without rules: the first target that takes it wins."""

    groups: list[str] | None = Field(
        None,
        description="queries headed for these routing groups (by the header, a rule or the default) are placed by "
        "cost; default: the default group",
    )
    targets: list[CostTarget] = Field(min_length=1, description="tried in order; the first that takes the query wins")
    unavailable: str | None = Field(
        None,
        min_length=1,
        description="where a query goes when no estimate could be had (or no target takes it); default: the group it "
        "was headed for, as if no estimate had been asked for",
    )

    @field_validator("targets")
    @classmethod
    def _distinct(cls, targets: list[CostTarget]) -> list[CostTarget]:
        if (twice := _repeated(target.group for target in targets)) is not None:
            raise ValueError(f"routing group {twice!r} is a target twice")
        return targets


class PlannerConfig(_Strict):
    """Where EXPLAIN is asked: one backend, or the best backend of a group (default: of the default group)."""

    backend: str | None = Field(None, min_length=1, description="a backend by name")
    group: str | None = Field(None, min_length=1, description="the best backend of this routing group")

    @model_validator(mode="after")
    def _one(self) -> PlannerConfig:
        if self.backend is not None and self.group is not None:
            raise ValueError("name a backend or a group, not both")
        return self


class EstimateCacheConfig(_Strict):
    max_entries: int = Field(10_000, ge=0, description="estimates kept (0: none); the least recently used go first")
    max_bytes: int = Field(
        16 * 1024 * 1024, ge=0, description="bytes the kept estimates and their statements' texts may take"
    )


class UserExplainRate(_Strict):
    """EXPLAINs one user's queries may cause (a token bucket): a user over it is routed without estimates."""

    per_second: float = Field(1.0, gt=0, description="EXPLAINs per second, on average")
    burst: int = Field(20, ge=1, description="EXPLAINs at once after a quiet while")


class EstimatesConfig(_Strict):
    """A query's cost, from the planner's EXPLAIN, for routing rules (``queryEstimate``) and the cost router
    (docs/routing.md). Nothing is asked unless a rule reads an estimate, the cost router places the query, or
    ``always`` is on."""

    budget: Duration = Field(
        0.3,
        gt=0,
        le=60,
        description="how long a query may wait for its estimate (e.g. 300ms); then it is routed as if none had been "
        "asked for (the EXPLAIN goes on, up to timeout, and its answer is kept for the next query)",
    )
    ttl: Duration = Field(600.0, gt=0, description="how long an estimate is kept (e.g. 10m)")
    timeout: Duration = Field(10.0, gt=0, le=600, description="the most an EXPLAIN may take in all (e.g. 10s)")
    planner: PlannerConfig = Field(default_factory=PlannerConfig)
    cache: EstimateCacheConfig = Field(default_factory=EstimateCacheConfig)
    user_rate: UserExplainRate = Field(default_factory=UserExplainRate)
    max_in_flight: int = Field(
        8, ge=1, description="EXPLAINs this worker has open at once; a query that would need one more goes without"
    )
    max_statement_length: int = Field(
        100_000, ge=1, description="longer statements are not estimated (their parse alone would cost)"
    )
    session_properties: list[str] | None = Field(
        None,
        description="the session properties that tell two otherwise equal statements' estimates apart (the cache's "
        "key); default: all of them",
    )
    plan_costs: Literal["auto", "cumulative", "own"] = Field(
        "auto",
        description="how the plan's nodes count costs: cumulative (each node's include its inputs', as Trino writes "
        "them), own (each node's alone), or auto (told from the plan)",
    )
    always: bool = Field(
        False, description="estimate every query, for its history and trace, even when nothing routes by it"
    )
    cost_router: CostRouterConfig | None = Field(None, description="routing groups chosen by cost, without rules")


class RoutingConfig(_Strict):
    default_group: str = Field("adhoc", min_length=1)
    router: RouterKind = Field("score", description="router of groups not listed under groups")
    groups: dict[str, GroupConfig] = Field(default_factory=dict, description="per-group settings, e.g. the router")
    score_weights: ScoreWeights = Field(default_factory=ScoreWeights)
    backend_refresh_seconds: float = Field(
        1.0, ge=0, description="how stale the backend list may be; admin changes on another worker count within it"
    )
    estimates: EstimatesConfig = Field(
        default_factory=EstimatesConfig, description="query estimates from the planner (docs/routing.md)"
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
    max_query_length: int = Field(
        1_000_000,
        ge=1,
        le=1_000_000_000,
        description="characters a statement may have (Trino's query.max-length); a longer one fails with "
        "QUERY_TEXT_TOO_LARGE before any backend sees it",
    )
    max_body_bytes: int = Field(
        1_048_576, ge=1024, description="bytes the body of any other proxied request may have (else HTTP 413)"
    )
    body_timeout: float = Field(
        30.0, gt=0, le=3600, description="seconds a client has to send a request's whole body (else HTTP 408)"
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
    token_user_field: str = Field(
        "email", description="the claim of an unverified bearer JWT read as the user (with trust_unverified_jwt)"
    )
    trust_unverified_jwt: bool = Field(
        False,
        description="read the user of a bearer JWT nobody verified (anyone can write such a token); with auth.oidc "
        "the token is verified and this is not needed",
    )
    shared: bool = Field(
        True,
        description="FILE: a change of the rules (the file, or PUT /gateway/routing-rules) on one node counts on "
        "every node on the store, the newest change winning; false: each node keeps to its own file",
    )

    @model_validator(mode="after")
    def _complete(self) -> RoutingRulesConfig:
        if self.enabled and self.type == "FILE" and not self.rules_file:
            raise ValueError("type FILE needs rules_file")
        if self.enabled and self.type == "EXTERNAL" and self.external is None:
            raise ValueError("type EXTERNAL needs external.url")
        return self


class CacheConfig(_Strict):
    """Where the result cache keeps its entries, and its bounds (docs/cache.md). It answers nothing until a
    routing group, a rule or a client turns it on for a query."""

    memory_bytes: int = Field(
        256 * 1024 * 1024,
        ge=0,
        description="entries kept in memory on each node (split evenly between its workers); the least recently "
        "used spill to disk",
    )
    disk_bytes: int = Field(1024 * 1024 * 1024, ge=0, description="entries spilled to disk on each node (0: none)")
    directory: str | None = Field(
        None, description="where spilled entries are written (default: a folder in the system's temporary directory)"
    )
    max_entry_bytes: int = Field(
        64 * 1024 * 1024, ge=1024, description="a result larger than this (as JSON) is not cached"
    )
    shared_entry_bytes: int = Field(
        10 * 1024 * 1024,
        ge=0,
        description="results up to this size are also kept in the store, shared by every worker and node on it "
        "(0: none); larger ones stay on the node that ran them",
    )
    max_statement_length: int = Field(
        100_000, ge=1, description="longer statements are not cached (their parse alone would cost)"
    )
    grace: Duration = Field(
        10.0,
        ge=0,
        le=60,
        description="how long an identical query waits for the same query already running, to be answered from its "
        "result (0: never waits)",
    )
    page_bytes: int = Field(1024 * 1024, ge=1024, description="rows per page of a cached answer, in bytes")
    secret: str | None = Field(
        None,
        min_length=16,
        description="what keys are made with, the same on every node of a fleet (default: the UI session "
        "secret, else one kept in the store)",
    )


class ScalingConfig(_Strict):
    """How often each routing group's clusters are reconciled with its load (groups with ``scaling``)."""

    interval: Duration = Field(5.0, gt=0, le=300, description="seconds between two looks at a group (e.g. 5s)")


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
    shared: bool = Field(
        True,
        description="one check per backend per interval for every worker and node on the store (a lease decides "
        "who checks; the others read the result); false: each worker checks on its own",
    )


class HistoryConfig(_Strict):
    retention_hours: float = Field(24.0, gt=0, description="how long routed queries are kept")
    sql_chars: int = Field(2000, ge=0, description="how much of each statement is kept")


Role = Literal["ADMIN", "USER", "API"]


class LdapConfig(_Strict):
    """Users checked by binding to an LDAP directory as themselves."""

    url: str = Field(description="ldap://host:389 or ldaps://host:636")
    user_dn: str = Field(description="the bind DN of a user, {user} replaced: uid={user},ou=people,dc=example,dc=org")
    group_base: str | None = Field(None, description="where groups are searched for role mapping (group:<cn>)")
    group_filter: str = Field("(member={user_dn})", description="LDAP filter of a user's groups")
    group_attribute: str = Field("cn", description="the attribute that names a group")
    start_tls: bool = False
    ca_file: str | None = Field(None, description="CA of an ldaps:// or StartTLS server (default: the system's)")
    timeout: float = Field(5.0, gt=0, description="seconds to connect and to bind")

    @field_validator("url")
    @classmethod
    def _ldap_url(cls, value: str) -> str:
        if not value.startswith(("ldap://", "ldaps://")):
            raise ValueError(f"must be an ldap:// or ldaps:// URL, got {value!r}")
        return value

    @field_validator("user_dn")
    @classmethod
    def _template(cls, value: str) -> str:
        if "{user}" not in value:
            raise ValueError("must contain {user}")
        return value


class OidcConfig(_Strict):
    """OpenID Connect: bearer JWTs checked against the issuer's keys, and the browser login of the UI."""

    issuer: str = Field(description="the provider's issuer URL; its /.well-known/openid-configuration is read")
    audience: str | list[str] = Field(description="the audience a bearer token must name (often the client id)")
    client_id: str | None = Field(None, description="for the UI's browser login (authorization code)")
    client_secret: str | None = None
    scopes: list[str] = Field(default_factory=lambda: ["openid", "profile", "email"])
    principal_claim: str = Field("sub", description="the claim that names the user")
    groups_claim: str | None = Field("groups", description="the claim that lists the user's groups, if any")
    clock_skew: float = Field(60.0, ge=0, le=600, description="seconds of clock difference accepted on exp/nbf/iat")
    ca_file: str | None = Field(None, description="CA of the provider's https endpoints (default: the system's)")
    keys_cooldown: float = Field(
        5.0,
        ge=0,
        le=300,
        description="seconds between two reads of the provider's keys for tokens no known key verifies (a rotation); "
        "bounds what a flood of forged tokens costs the provider",
    )

    @field_validator("issuer")
    @classmethod
    def _issuer(cls, value: str) -> str:
        return normalise_url(value)


class SessionConfig(_Strict):
    secret: str | None = Field(
        None,
        min_length=32,
        description="signs UI session cookies; every worker and node must share it (default: a random one per "
        "start of this node, so sessions end with a restart)",
    )
    secret_file: str | None = Field(
        None,
        description="a file holding the secret (a Kubernetes Secret mounted in every pod), instead of secret",
    )
    max_age: float = Field(8 * 3600, gt=0, description="seconds a UI session lasts")
    secure_cookie: bool | None = Field(None, description="cookies only over HTTPS (default: when server.tls is set)")

    @model_validator(mode="before")
    @classmethod
    def _secret_from_file(cls, data: Any) -> Any:
        # Read at start-up, so that a missing or short file stops the node with the reason.
        if not isinstance(data, dict) or data.get("secret_file") is None:
            return data
        if data.get("secret") is not None:
            raise ValueError("set secret or secret_file, not both")
        path = data["secret_file"]
        try:
            secret = Path(str(path)).read_text().strip()
        except OSError as error:
            raise ValueError(f"secret_file {path}: {error.strerror}") from None
        if len(secret) < 32:
            raise ValueError(f"secret_file {path}: the secret must have at least 32 characters")
        return {**data, "secret": secret}


class LoginLimitConfig(_Strict):
    failures: int = Field(5, ge=1, description="failed logins allowed per user within window")
    address_failures: int = Field(
        30, ge=1, description="failed logins allowed per client address within window (several users may share one)"
    )
    window: float = Field(300.0, gt=0, description="seconds")


class AuthConfig(_Strict):
    """Who may use the gateway's own API (and its web UI), and with which role. Unset: the admin API is
    open to anyone who can reach the port (make demo), and the gateway says so loudly."""

    password_file: str | None = Field(None, description="user:hash lines (bcrypt or PBKDF2), as Trino's password.db")
    ldap: LdapConfig | None = None
    oidc: OidcConfig | None = None
    roles: dict[Role, list[str]] = Field(
        default_factory=dict,
        description="ADMIN, USER, API: users, 'group:<name>' for members of a group (LDAP or the OIDC groups "
        "claim), or '*' for anyone who logs in",
    )
    public_paths: list[str] = Field(
        default_factory=lambda: ["/gateway/livez", "/gateway/readyz", "/metrics"],
        description="paths answered without credentials",
    )
    trino_path: bool = Field(
        False,
        description="also authenticate Trino clients' requests (with the same methods) before any backend sees "
        "them; off: the Authorization header passes to the backends, which authenticate their users",
    )
    session: SessionConfig = Field(default_factory=SessionConfig)
    login_limit: LoginLimitConfig = Field(default_factory=LoginLimitConfig)

    @model_validator(mode="after")
    def _a_method(self) -> AuthConfig:
        if self.password_file is None and self.ldap is None and self.oidc is None:
            raise ValueError("auth needs at least one method: password_file, ldap or oidc")
        if self.password_file is not None and not Path(self.password_file).is_file():
            raise ValueError(f"password_file {self.password_file!r} is not a readable file")
        if not self.roles:
            raise ValueError("auth.roles maps nobody to a role: nobody could use the admin API")
        return self


class FailoverConfig(_Strict):
    """Read-only queries sent again to another backend of their group when theirs fails before any row
    reached the client (docs/admission.md)."""

    enabled: bool = Field(True, description="false: a query whose backend fails fails, as without failover")
    max_attempts: int = Field(3, ge=1, le=10, description="backends a query may be sent to, the first included")


class TransactionsConfig(_Strict):
    idle_timeout: float = Field(
        600.0,
        gt=0,
        description="a transaction with no statement for this long is no longer bound to its backend (Trino "
        "aborts idle ones after transaction.idle-timeout, 5 minutes by default)",
    )


TRACE_ID_FIELD = "{trace_id}"


class GatewayTracingConfig(TracingConfig):
    """The tracing settings, and where operators look at a trace."""

    ui_url: str | None = Field(
        None,
        description="a trace's page in a tracing UI, {trace_id} replaced by the trace id, e.g. "
        "http://localhost:16686/trace/{trace_id} (Jaeger); the query history links each query to it",
    )

    @field_validator("ui_url")
    @classmethod
    def _ui_url(cls, value: str | None) -> str | None:
        if value is None or value.strip() == "":
            return None
        if TRACE_ID_FIELD not in value:
            raise ValueError(f"must contain {TRACE_ID_FIELD}, where the trace id goes, got {value!r}")
        return value.strip()

    def trace_url(self, trace_id: str | None) -> str | None:
        """The page of the trace in the tracing UI, if one is configured and there is a trace."""
        if self.ui_url is None or trace_id is None:
            return None
        return self.ui_url.replace(TRACE_ID_FIELD, trace_id)


class ObservabilityConfig(_Strict):
    tracing: GatewayTracingConfig = Field(default_factory=GatewayTracingConfig)


class GatewayConfig(_Strict):
    server: ServerConfig = Field(default_factory=ServerConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    routing: RoutingConfig = Field(default_factory=RoutingConfig)
    routing_rules: RoutingRulesConfig = Field(default_factory=RoutingRulesConfig)
    proxy: ProxyConfig = Field(default_factory=ProxyConfig)
    history: HistoryConfig = Field(default_factory=HistoryConfig)
    health: HealthConfig = Field(default_factory=HealthConfig)
    transactions: TransactionsConfig = Field(default_factory=TransactionsConfig)
    admission: AdmissionConfig = Field(default_factory=AdmissionConfig)
    failover: FailoverConfig = Field(default_factory=FailoverConfig)
    cache: CacheConfig = Field(default_factory=CacheConfig, description="the result cache (docs/cache.md)")
    scaling: ScalingConfig = Field(
        default_factory=ScalingConfig, description="clusters started and stopped with the load (docs/scaling.md)"
    )
    auth: AuthConfig | None = Field(None, description="authentication and roles for the admin API and the UI")
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
        if (twice := _repeated(backend.name for backend in backends)) is not None:
            raise ValueError(f"backend name {twice!r} appears twice")
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
    auth = data.get("auth")
    password_file = auth.get("password_file") if isinstance(auth, dict) else None
    if isinstance(password_file, str) and not Path(password_file).is_absolute():
        auth["password_file"] = str((directory / password_file).resolve())  # type: ignore[index]


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
