"""What the admin API answers and takes, as pydantic models: every JSON answer of a handler is one of
these (or a list of them), serialised by ``json_response``, and ``GET /gateway/openapi.json`` is built
from their JSON schemas (``gateway.control.api.openapi``). A model's docstring and its fields'
descriptions are the document's.

Answers are written in camel case (trinodb/trino-gateway's spelling), every field always present
(null where there is no value) and nothing else. An answer made from what the gateway holds is built
by its model's ``of``, so that each field is named in one place.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter
from pydantic.alias_generators import to_camel
from quart import Response

from gateway.auth.principal import Role
from gateway.backends.health.state import Health
from gateway.config import GatewayTracingConfig, QueuePolicy
from gateway.control.admission_status import GroupQueue, worker_name
from gateway.control.api.access import CSRF_HEADER
from gateway.control.backend_status import BackendStatus
from gateway.control.drain import DrainStatus as Drain
from gateway.routing.estimates import EstimateUse
from gateway.routing.estimates.estimate import Estimates
from gateway.routing.rules.file_rules import Outcome, RulesFile
from gateway.routing.rules.file_rules import Rule as WrittenRule
from gateway.routing.rules.file_rules import RuleGroup as WrittenGroup
from gateway.routing.rules.selector import Selection
from gateway.store import AuditEntry as Entry
from gateway.store import QueryCount, QueryRecord, now_ms
from gateway.store.backend import URL_LENGTH, Backend, MonitorKind
from observability import jmx
from observability.metrics import QUEUED_USERS_SHOWN
from observability.propagation import trace_id_of

# /gateway/health's headers (the answer's body is the backends' list): the estimate cache's size ...
ESTIMATE_CACHE_ENTRIES = "X-Trino-Gateway-Estimate-Cache-Entries"
ESTIMATE_CACHE_BYTES = "X-Trino-Gateway-Estimate-Cache-Bytes"
# ... and the result cache's counts in this worker, and its entries in this worker and node.
RESULT_CACHE_HITS = "X-Trino-Gateway-Result-Cache-Hits"
RESULT_CACHE_WAITED = "X-Trino-Gateway-Result-Cache-Waited"
RESULT_CACHE_MISSES = "X-Trino-Gateway-Result-Cache-Misses"
RESULT_CACHE_ENTRIES = "X-Trino-Gateway-Result-Cache-Entries"
RESULT_CACHE_BYTES = "X-Trino-Gateway-Result-Cache-Bytes"

# The stores keep times as SQL BIGINT and count rows in it: a larger number is no filter they can run.
BIGINT_MAX = 2**63 - 1
# Query counts: the bucket lengths (seconds) an answer may use.
STATS_STEP_MIN, STATS_STEP_MAX = 10, 3600

EpochMs = Annotated[int, Field(ge=0, le=BIGINT_MAX, description="epoch milliseconds")]


class ApiModel(BaseModel):
    """The base of the answers: camel case out, snake case in Python, every field written."""

    model_config = ConfigDict(
        alias_generator=to_camel, validate_by_name=True, serialize_by_alias=True, extra="forbid", frozen=True
    )


_ANY = TypeAdapter(Any)


def json_response(body: BaseModel | Sequence[BaseModel], status: int = 200) -> Response:
    """``body`` as the API writes it: by alias, NaN as null. (Errors are ``gateway.errors.api_error``'s,
    an ``Error`` model too.)"""
    return Response(_ANY.dump_json(body, by_alias=True), status=status, content_type="application/json")


# --- backends -------------------------------------------------------------------------------------


ClusterState = Literal["STOPPED", "STARTING", "READY", "UNHEALTHY", "DRAINING", "TERMINATING", "DEACTIVATED"]


class StoredBackend(Backend):
    """A backend as the store holds it: every field written, ``externalUrl`` filled in with ``proxyTo``
    where none was set."""

    model_config = ConfigDict(serialize_by_alias=True, json_schema_serialization_defaults_required=True)

    external_url: str = Field(max_length=URL_LENGTH, description="URL users see for this cluster (proxyTo unless set)")
    state: ClusterState | None = Field(
        None,
        description="its state now (docs/scaling.md): STOPPED, STARTING, READY, UNHEALTHY, DRAINING, TERMINATING or "
        "DEACTIVATED; a backend without a scaler is READY, UNHEALTHY or DEACTIVATED",
    )

    @classmethod
    def of(cls, backend: Backend, state: str | None = None) -> StoredBackend:
        values = {**dict(backend), "external_url": backend.external_url or backend.proxy_to, "state": state}
        return cls.model_validate(values)


class Deleted(ApiModel):
    deleted: str = Field(description="the deleted backend's name")


Drained = Annotated[bool, Field(description="inactive, and nothing of it is left running: safe to stop")]


class DrainStatus(ApiModel):
    """What a backend still has to finish, over every worker and gateway node."""

    name: str
    active: bool
    unfinished_queries: int
    oldest_query_age_seconds: float | None
    open_transactions: int
    oldest_transaction_age_seconds: float | None
    drained: Drained

    @classmethod
    def of(cls, drain: Drain) -> DrainStatus:
        now, work = now_ms(), drain.work
        return cls(
            name=drain.name,
            active=drain.active,
            unfinished_queries=work.unfinished_queries,
            oldest_query_age_seconds=_age(now, work.oldest_query_at),
            open_transactions=work.open_transactions,
            oldest_transaction_age_seconds=_age(now, work.oldest_transaction_at),
            drained=drain.drained,
        )


def _age(now: int, since: int | None) -> float | None:
    return None if since is None else round(max(0, now - since) / 1000, 1)


class UserWaiting(ApiModel):
    user: str | None
    waiting: int = Field(ge=1)


class GatewayQueue(ApiModel):
    """The queries of the backend's routing group waiting in the gateway (every worker's and node's on
    SQLite and PostgreSQL, read from the store each second; the worker's own on the in-memory store),
    and the group's queue settings."""

    worker: str = Field(description="the worker (host:pid) that answered")
    waiting: int = Field(ge=0)
    waiting_by_user: list[UserWaiting] = Field(
        description=f"most waiting first, at most {QUEUED_USERS_SHOWN} users (as the queued-queries gauge); a "
        "caller who may not see every query sees its own user only"
    )
    other_users_waiting: int = Field(ge=0, description="waiting queries of the users not named")
    max_queued: int | None
    max_queue_wait: float | None = Field(description="seconds")
    queue_policy: QueuePolicy

    @classmethod
    def of(cls, queue: GroupQueue) -> GatewayQueue:
        return cls(
            worker=worker_name(),
            waiting=queue.waiting,
            waiting_by_user=[UserWaiting(user=user, waiting=count) for user, count in queue.by_user],
            other_users_waiting=queue.other_users,
            max_queued=queue.settings.max_queued,
            max_queue_wait=queue.settings.max_queue_wait,
            queue_policy=queue.settings.queue_policy,
        )


class BackendHealth(ApiModel):
    """A backend's admin state beside what this worker observes of it, its drain, and its capacity."""

    name: str
    routing_group: str
    active: bool
    state: Health
    cluster_state: ClusterState = Field(
        description="its state as cluster management sees it (docs/scaling.md); state is its health alone"
    )
    cluster_detail: str | None = Field(
        None,
        description='what cluster management last did to it, and why (e.g. "start failed: ..."); null: it '
        "never started or stopped it",
    )
    last_check: int | None = Field(description="epoch milliseconds")
    last_error: str | None
    consecutive_failures: int
    request_failures: int
    monitor: MonitorKind = Field(
        description="the health check that watches it (its own, else health.monitor): INFO_API, QUERY and NOOP "
        "report no load, so runningQueries, queuedQueries and workers are null under them"
    )
    running_queries: int | None
    queued_queries: int | None
    workers: int | None
    in_flight: int = Field(
        description="queries this worker routed there that have not ended, and its submissions on their way there"
    )
    requests_in_flight: int = Field(description="requests this worker has open to it now")
    routed_since_check: int
    latency_ms: float
    error_rate: float
    score: float = Field(description="higher is better: 1 is idle and fast")
    cost: float = Field(description="the score router's cost: lower is better")
    unfinished_queries: int
    oldest_query_age_seconds: float | None
    open_transactions: int
    oldest_transaction_age_seconds: float | None
    drained: Drained
    max_running: int | None = Field(description="the most queries the gateway runs there at once; null: no limit")
    running_slots: int = Field(
        ge=0,
        description="queries run there under admission control (slots in use): every worker's and node's on "
        "SQLite and PostgreSQL (read from the store each second), the worker's own on the in-memory store",
    )
    gateway_queue: GatewayQueue

    @classmethod
    def of(
        cls,
        status: BackendStatus,
        drain: Drain,
        running_slots: int,
        queue: GroupQueue,
        cluster_state: str,
        cluster_detail: str | None = None,
    ) -> BackendHealth:
        backend, health, stats = status.backend, status.health, status.health.stats
        figures = DrainStatus.of(drain).model_dump(by_alias=False, exclude={"name", "active"})
        return cls(
            name=backend.name,
            routing_group=backend.routing_group,
            active=backend.active,
            state=health.state,
            cluster_state=cluster_state,
            cluster_detail=cluster_detail,
            last_check=health.last_check_ms,
            last_error=health.last_error,
            consecutive_failures=health.consecutive_failures,
            request_failures=health.request_failures,
            monitor=status.monitor,
            running_queries=stats.running,
            queued_queries=stats.queued,
            workers=stats.workers,
            in_flight=status.in_flight,
            requests_in_flight=status.requests_in_flight,
            routed_since_check=health.routed_since_check,
            latency_ms=round(health.latency * 1000, 2),
            error_rate=round(health.error_rate, 4),
            score=round(status.score, 4),
            cost=round(status.cost, 4),
            **figures,
            max_running=backend.max_running,
            running_slots=running_slots,
            gateway_queue=GatewayQueue.of(queue),
        )


class BackendName(BaseModel):
    name: str = Field(description="the backend's name", examples=["trino-1"])


class DeleteByName(BaseModel):
    name: str


# The body of a delete names the backend: raw text, as trinodb/trino-gateway takes it, or JSON.
BackendToDelete = Annotated[str, Field(min_length=1, examples=["spare-1"])]
BackendToDeleteJson = Annotated[BackendToDelete | DeleteByName, Field(examples=[{"name": "spare-1"}])]


# --- queries --------------------------------------------------------------------------------------


class EstimateValues(ApiModel):
    """Trino's five estimates (null: unknown, Trino's "NaN")."""

    output_row_count: float | None
    output_size_in_bytes: float | None
    cpu_cost: float | None
    memory_cost: float | None
    network_cost: float | None

    @classmethod
    def of(cls, values: Estimates) -> EstimateValues:
        data = values.as_json()
        return cls(
            output_row_count=data["outputRowCount"],
            output_size_in_bytes=data["outputSizeInBytes"],
            cpu_cost=data["cpuCost"],
            memory_cost=data["memoryCost"],
            network_cost=data["networkCost"],
        )


class Estimate(ApiModel):
    """What routing had of the planner's estimate of a query (docs/routing.md)."""

    available: bool = Field(description="false: none could be had (cause says why); the query routed without")
    source: Literal["cache", "planner"] | None = Field(description="where it came from")
    latency_ms: float = Field(ge=0, description="how long routing waited for it")
    cause: str | None = Field(
        description="why there is none: not_explainable, unparsed, too_long, rate_limited, busy, no_planner, "
        "budget, unreachable, planner_timeout, planner_error, refused, bad_answer"
    )
    total: EstimateValues | None = Field(description="summed over every node of the plan")
    max: EstimateValues | None = Field(description="the largest of any one node")
    fragments: int | None = Field(description="stages of the distributed plan")
    joins: int | None
    table_scans: int | None
    remote_exchanges: int | None
    aggregations: int | None
    nodes: int | None = Field(description="plan nodes")

    @classmethod
    def of(cls, use: EstimateUse) -> Estimate:
        estimate = use.estimate
        return cls(
            available=use.available,
            source=use.source,
            latency_ms=round(use.seconds * 1000, 3),
            cause=use.cause,
            total=EstimateValues.of(estimate.total) if estimate is not None else None,
            max=EstimateValues.of(estimate.max) if estimate is not None else None,
            fragments=estimate.fragments if estimate is not None else None,
            joins=estimate.joins if estimate is not None else None,
            table_scans=estimate.tableScans if estimate is not None else None,
            remote_exchanges=estimate.remoteExchanges if estimate is not None else None,
            aggregations=estimate.aggregations if estimate is not None else None,
            nodes=estimate.nodes if estimate is not None else None,
        )

    @classmethod
    def of_json(cls, text: str | None) -> Estimate | None:
        use = EstimateUse.from_json(text)
        return cls.of(use) if use is not None else None


class Query(ApiModel):
    """One routed query."""

    query_id: str
    user: str | None
    source: str | None
    client_tags: list[str]
    routing_group: str
    backend: str
    backend_url: str
    query: str | None
    submitted_at: EpochMs
    state: str = Field(description="RUNNING until the gateway saw the query end")
    error_name: str | None
    finished_at: int | None
    elapsed_ms: int | None
    transaction_id: str | None
    routing_source: str | None = Field(
        description="what chose the routing group: header, rule, external, default, cost (the cost router); "
        "transaction (sent to its transaction's backend) or kill_query (sent to its target's backend); null for "
        "queries recorded before the gateway kept it"
    )
    routing_rule: str | None = Field(
        description="the routing rule that set the group (external for the routing service)"
    )
    gateway_query_id: str | None = Field(
        description="the id the gateway gave the query while it waited in the gateway's queue (the id its client "
        "saw first); null: it was sent to its backend at once"
    )
    queued_ms: int | None = Field(
        ge=0, description="how long it waited in the gateway before a backend had room; null: it did not wait"
    )
    attempts: str | None = Field(
        description='earlier attempts on other backends that failed before any row reached the client, joined by "; " '
        '(e.g. "trino-1: connection refused"); null: the first backend took it'
    )
    trace_id: str | None = Field(
        pattern="^[0-9a-f]{32}$", description="the query's trace (W3C trace id), when tracing was on"
    )
    trace_url: str | None = Field(
        description="the trace's page in the tracing UI (observability.tracing.ui_url), if configured"
    )
    estimate: Estimate | None = Field(
        description="the planner's estimate routing had, or why none (null: routing asked for none)"
    )
    cache: str | None = Field(
        description="the result cache's word on the query: hit, miss, waited (for another query's result), refused "
        '(the client said no-cache), off, or "not eligible: <why>"; null: the gateway kept none'
    )

    @classmethod
    def of(cls, record: QueryRecord, tracing: GatewayTracingConfig) -> Query:
        """``tracing`` links the query's trace to the tracing UI, if one is configured."""
        trace_id = trace_id_of(record.trace_parent)
        return cls(
            query_id=record.query_id,
            user=record.user_name,
            source=record.source,
            client_tags=record.client_tags.split(",") if record.client_tags else [],
            routing_group=record.routing_group,
            backend=record.backend_name,
            backend_url=record.backend_url,
            query=record.query_text,
            submitted_at=record.submitted_at,
            state=record.state or "RUNNING",
            error_name=record.error_name,
            finished_at=record.finished_at,
            elapsed_ms=record.elapsed_ms,
            transaction_id=record.transaction_id,
            routing_source=record.routing_source,
            routing_rule=record.routing_rule,
            gateway_query_id=record.gateway_query_id,
            queued_ms=record.queued_ms,
            attempts=record.attempts,
            trace_id=trace_id,
            trace_url=tracing.trace_url(trace_id),
            estimate=Estimate.of_json(record.estimate),
            cache=record.cache,
        )


class Page(ApiModel):
    total: int
    limit: int
    offset: int


class QueryPage(Page):
    queries: list[Query]


Step = Annotated[int, Field(ge=STATS_STEP_MIN, le=STATS_STEP_MAX, description="seconds per bucket")]


class QueryBucket(ApiModel):
    at: EpochMs = Field(description="the bucket's start: a multiple of step since the epoch")
    routing_group: str
    backend: str
    queries: int = Field(ge=1)
    failed: int = Field(ge=0, description="of them, ended FAILED")

    @classmethod
    def of(cls, count: QueryCount) -> QueryBucket:
        return cls(
            at=count.at,
            routing_group=count.routing_group,
            backend=count.backend_name,
            queries=count.queries,
            failed=count.failed,
        )


class QueryStats(ApiModel):
    """Routed queries counted per time bucket, routing group and backend."""

    since: EpochMs
    until: EpochMs
    step: Step
    buckets: list[QueryBucket] = Field(
        description="by bucket, routing group, backend; buckets with no query are left out"
    )


Limit = Annotated[int, Field(ge=1, le=1000, description="at most this many")]
Offset = Annotated[int, Field(ge=0, le=BIGINT_MAX, description="skip this many")]


class QueriesArgs(BaseModel):
    user: str | None = Field(None, description="only this user's (callers who see every query)")
    backend: str | None = Field(None, description="only those routed to this backend")
    group: str | None = Field(None, description="only those of this routing group")
    transaction: str | None = Field(None, description="only those of this transaction")
    state: str | None = Field(None, description="only those in this state; RUNNING for unfinished ones")
    since: EpochMs | None = Field(None, description="submitted at or after (epoch milliseconds)")
    until: EpochMs | None = Field(None, description="submitted before (epoch milliseconds)")
    text: str | None = Field(None, description="only those whose SQL contains this, in any case (% and _ are literal)")
    id: str | None = Field(
        None,
        description="only those whose query id, or the gateway id they waited under, starts with this",
        examples=["20261201_"],
    )
    rule: str | None = Field(None, description="only those whose group this routing rule chose")
    limit: Limit = 100
    offset: Offset = 0


class StatsArgs(BaseModel):
    since: EpochMs | None = Field(None, description="submitted at or after (epoch ms; default: until - 1 hour)")
    until: EpochMs | None = Field(None, description="submitted before (epoch ms; default: now)")
    step: Step = 60


class QueryIdPath(BaseModel):
    query_id: str = Field(description="the query's id", examples=["20261201_101500_00001_abcde"])


# --- the audit trail ------------------------------------------------------------------------------


class AuditEntry(ApiModel):
    """One change through the admin API, or a refused attempt at one; or a move of a cluster's state by
    cluster management (actor ``cluster-manager``, action ``cluster.move``)."""

    id: int | None
    at: EpochMs
    actor: str
    method: str = Field(description="how the actor was authenticated (gateway: the gateway itself)")
    address: str = Field(description="the caller's address; for the gateway's own moves, the worker's name")
    action: str = Field(description="the handler, e.g. backend.deactivate; or cluster.move")
    target: str | None
    outcome: str = Field(description="done, or refused")
    before: Any = Field(
        description="the target before the change (a backend; a rules file's text; a cluster's {state}), or null"
    )
    after: Any = Field(
        description="the target after the change (a backend; a rules file's text; a cluster's {state, why}), or null"
    )

    @classmethod
    def of(cls, entry: Entry) -> AuditEntry:
        return cls(
            id=entry.id,
            at=entry.at,
            actor=entry.actor,
            method=entry.method,
            address=entry.address,
            action=entry.action,
            target=entry.target,
            outcome=entry.outcome,
            before=None if entry.before is None else _JSON_TEXT.validate_json(entry.before),
            after=None if entry.after is None else _JSON_TEXT.validate_json(entry.after),
        )


_JSON_TEXT = TypeAdapter(Any)


class AuditPage(Page):
    entries: list[AuditEntry]


class AuditArgs(BaseModel):
    actor: str | None = Field(None, description="only this actor's")
    since: EpochMs | None = Field(None, description="at or after (epoch milliseconds)")
    limit: Limit = 100
    offset: Offset = 0


# --- routing rules --------------------------------------------------------------------------------


class Rule(ApiModel):
    """A rule as written, and how many times it fired for new queries on this node."""

    name: str
    description: str
    priority: int
    condition: str
    actions: list[str]
    fired: int = Field(ge=0)


class RuleGroup(ApiModel):
    """A composite rule as written (its type and composing rules); its composing rules are counted."""

    name: str
    description: str
    priority: int
    composite_rule_type: str
    composing_rules: list[Rule | RuleGroup]
    fired: None = Field(description="null: its composing rules are counted")


def rule_of(rule: WrittenRule | WrittenGroup, fired: Mapping[str, int]) -> Rule | RuleGroup:
    """``rule`` as written, and how often it fired (``fired``: rule name -> count)."""
    if isinstance(rule, WrittenRule):
        return Rule(
            name=rule.name,
            description=rule.description,
            priority=rule.priority,
            condition=rule.condition_source,
            actions=rule.action_sources,
            fired=fired.get(rule.name, 0),
        )
    return RuleGroup(
        name=rule.name,
        description=rule.description,
        priority=rule.priority,
        composite_rule_type=rule.kind,
        composing_rules=[rule_of(child, fired) for child in rule.rules],
        fired=None,
    )


class RulesOff(ApiModel):
    """Routing rules are off: the X-Trino-Routing-Group header picks the group."""

    enabled: Literal[False]
    type: None


class RulesFromFile(ApiModel):
    """The rules file in use (this worker's copy), how often each rule fired, and why the last change did
    not load, if it did not."""

    enabled: Literal[True]
    type: Literal["FILE"]
    file: str = Field(description="the rules file (as path)")
    path: str = Field(description="the rules file")
    text: str = Field(description="the text the rules in use were read from")
    rules: list[Rule | RuleGroup]
    last_error: str | None
    reloads: int

    @classmethod
    def of(cls, rules: RulesFile, fired: Mapping[str, int]) -> RulesFromFile:
        path = str(rules.path)
        return cls(
            enabled=True,
            type="FILE",
            file=path,
            path=path,
            text=rules.text,
            rules=[rule_of(rule, fired) for rule in rules.rules.rules],
            last_error=rules.last_error,
            reloads=rules.reloads,
        )


class RulesFromService(ApiModel):
    """An external routing service chooses the group."""

    enabled: Literal[True]
    type: Literal["EXTERNAL"]
    url: str


RoutingRules = RulesOff | RulesFromFile | RulesFromService


class RulesError(ApiModel):
    """Rules that do not load (or a body that holds none): why, and the line of the text where."""

    error: str
    line: int | None = Field(ge=1, description="where in the rules' text, if known")


class RulesTest(ApiModel):
    """What the rules decide for the request."""

    routing_group: str | None = Field(description="null: the default group")
    rule: str | None = Field(description="the rule that set the group")
    fired: list[str] = Field(description="every rule that fired, in order")
    # A pair as a list of two (not tuple[str, str]: its prefixItems schema is one schemathesis cannot read).
    failed: list[Annotated[list[str], Field(min_length=2, max_length=2)]] = Field(
        description="rules that failed while running (skipped): [rule, error]"
    )
    source: Literal["rule", "header", "default"] = Field(description="what chose the group")
    estimate: Estimate | None = Field(
        description="the query's estimate the rules read (asked of the planner if the cache had none); null: no "
        "rule read one"
    )

    @classmethod
    def of(cls, selection: Selection, outcome: Outcome) -> RulesTest:
        return cls(
            routing_group=selection.group,
            rule=selection.rule,
            fired=outcome.fired,
            failed=[[rule, error] for rule, error in outcome.failed],
            source=selection.source,
            estimate=Estimate.of(outcome.estimate) if outcome.estimate is not None else None,
        )


RULES_EXAMPLE = """---
name: airflow
condition: 'request.getHeader("X-Trino-Source") == "airflow"'
actions: ['result.put("routingGroup", "etl")']
"""


class RulesText(BaseModel):
    """A new rules file."""

    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={"examples": [{"text": RULES_EXAMPLE}]})

    text: str = Field(description="the rules file (YAML)")


class RulesTrial(BaseModel):
    """Rules to try, and the new query to try them on: its headers, user and SQL."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "examples": [{"headers": {"X-Trino-Source": "airflow"}, "user": "alice", "sql": "SELECT 1"}]
        },
    )

    text: str | None = Field(None, description="rules to try (YAML); default: those in use")
    headers: dict[str, str] | None = None
    user: str | None = None
    sql: str | None = None


# --- metrics --------------------------------------------------------------------------------------


class MBeanAttribute(ApiModel):
    name: str
    type: Literal["boolean", "java.lang.String", "double", "long"]
    readable: bool
    writable: bool
    value: bool | int | float | str | None = Field(description="a number, string or boolean (null for NaN)")


class MBean(ApiModel):
    """An MBean as Trino's JMX REST API writes it (airlift's MBeanRepresentation)."""

    object_name: str
    class_name: str
    description: str
    attributes: list[MBeanAttribute]
    operations: tuple[()]

    @classmethod
    def of(cls, object_name: str, attributes: Mapping[str, Any]) -> MBean:
        """Every attribute carries its ``value``, typed as Java would."""
        typed = []
        for name, raw in attributes.items():
            kind, value = jmx.java_type(raw, name)
            typed.append(MBeanAttribute(name=name, type=kind, readable=True, writable=False, value=value))
        return cls(object_name=object_name, class_name=jmx.CLASS_NAME, description="", attributes=typed, operations=())


class MBeanName(BaseModel):
    name: str = Field(description="the MBean's object name (URL-encoded)", examples=["trino.gateway:name=ProxyHandler"])


# --- the UI's login -------------------------------------------------------------------------------


class Session(ApiModel):
    user: str
    roles: list[Role]
    csrf_token: str = Field(description=f"what the UI's POSTs send as {CSRF_HEADER}")


class NextPage(BaseModel):
    next: str | None = Field(None, description="a path of this gateway to go to after the login")


class LoginForm(BaseModel):
    # A form holds no null: a field left out reads as empty.
    username: str = ""
    password: str = ""
    csrf_token: str = Field("", description="the login form's token")
    next: str = Field("", description="where to go after the login")


class OidcCallback(BaseModel):
    code: str | None = Field(None, description="the authorization code")
    state: str | None = Field(None, description="the state the login started with")


class CsrfHeader(BaseModel):
    token: str | None = Field(None, alias=CSRF_HEADER, description="the session's CSRF token")


# --- the result cache -----------------------------------------------------------------------------


class CacheTier(ApiModel):
    entries: int = Field(ge=0)
    size: int = Field(ge=0, description="bytes")


class CacheGroup(ApiModel):
    """One routing group's use of the result cache, from the query history (every worker and node)."""

    group: str
    ttl_seconds: float | None = Field(description="the group's cache.ttl; null: the group does not cache (a rule may)")
    shared: bool = Field(description="one entry for all of the group's users")
    opt_in: bool = Field(description="only the queries whose client asks (client tag cache) are cached")
    hits: int = Field(ge=0, description="answered from an entry")
    waited: int = Field(ge=0, description="answered from the result of an identical query that was running")
    misses: int = Field(ge=0, description="ran on a cluster (their result cached if it could be)")
    refused: int = Field(ge=0, description="the client refused a cached answer (client tag no-cache)")
    not_eligible: int = Field(ge=0, description="never cached: not read-only, non-deterministic, system tables...")
    hit_ratio: float | None = Field(
        description="(hits + waited) / (hits + waited + misses + refused); null when there were none"
    )


class CacheStatus(ApiModel):
    """The result cache: each group's hits and misses since ``since``, and what each tier holds."""

    since: EpochMs
    groups: list[CacheGroup]
    tiers: dict[str, CacheTier] = Field(
        description="memory (this worker's), disk (this node's), store (the fleet's, on SQLite or PostgreSQL)"
    )
    flights: int = Field(ge=0, description="queries running in this worker whose identical twins may wait for them")


class CachePurged(ApiModel):
    group: str | None = Field(description="the group purged; null: every group")
    purged: int = Field(ge=0, description="entries deleted")


class CacheArgs(BaseModel):
    group: str | None = Field(None, min_length=1, max_length=255, description="only this routing group's entries")


class CacheStatusArgs(BaseModel):
    since: EpochMs | None = Field(None, description="counts of queries submitted at or after (default: an hour ago)")


# --- headers of answers ---------------------------------------------------------------------------


class Redirect(BaseModel):
    location: str = Field(alias="Location")


class Challenge(BaseModel):
    www_authenticate: str | None = Field(None, alias="WWW-Authenticate", description="the schemes to try")


class EstimateCache(BaseModel):
    entries: str = Field(
        alias=ESTIMATE_CACHE_ENTRIES,
        pattern=r"^\d+$",
        description="entries of this worker's estimate cache (estimates, and the statement texts that lead to them)",
    )
    size: str = Field(alias=ESTIMATE_CACHE_BYTES, pattern=r"^\d+$", description="bytes they take")


class HealthHeaders(EstimateCache):
    result_cache_hits: str = Field(
        alias=RESULT_CACHE_HITS, pattern=r"^\d+$", description="queries this worker answered from the result cache"
    )
    result_cache_waited: str = Field(
        alias=RESULT_CACHE_WAITED,
        pattern=r"^\d+$",
        description="... from the result of an identical query that was running (single flight)",
    )
    result_cache_misses: str = Field(
        alias=RESULT_CACHE_MISSES, pattern=r"^\d+$", description="... that ran on a cluster (refused ones too)"
    )
    result_cache_entries: str = Field(
        alias=RESULT_CACHE_ENTRIES, pattern=r"^\d+$", description="entries in this worker's memory and the node's disk"
    )
    result_cache_bytes: str = Field(alias=RESULT_CACHE_BYTES, pattern=r"^\d+$", description="bytes they take")


class RetryAfter(BaseModel):
    retry_after: str = Field(alias="Retry-After", pattern=r"^\d+$", description="seconds")
