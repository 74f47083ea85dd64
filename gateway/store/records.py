"""What the store holds, as the rest of the gateway sees it, and the errors it raises."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

FAILED = "FAILED"


class StoreError(RuntimeError):
    """The store cannot be reached or used; the message says which and why."""


class DuplicateBackend(ValueError):
    """A backend of that name exists already."""


class DuplicateQuery(ValueError):
    """A query of that id is recorded already."""


# What a change told to every worker and node is about (Store.watch_changes).
BACKENDS_CHANGED = "backends"
RULES_CHANGED = "rules"
ADMISSION_CHANGED = "admission"  # a slot was freed or a waiting query admitted (gateway.queries.admission)
ANYTHING_CHANGED = "*"
"""Listening (again): anything may have changed meanwhile."""


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class QueryRecord:
    """One routed query in the query history: where it ran, for whom, and how it ended."""

    query_id: str
    backend_name: str
    backend_url: str
    routing_group: str
    user_name: str | None
    source: str | None
    client_tags: str | None
    query_text: str | None
    submitted_at: int
    state: str | None = None
    error_name: str | None = None
    finished_at: int | None = None
    elapsed_ms: int | None = None
    trace_parent: str | None = None
    transaction_id: str | None = None
    routing_source: str | None = None
    """What chose the routing group: header, rule, external or default (the selector's
    ``Selection.source``); transaction or kill_query when the statement had to go to one backend."""
    routing_rule: str | None = None
    """The rule that set the group (``external`` for the routing service), if one did."""
    gateway_query_id: str | None = None
    """The id the gateway gave the query while it waited in the gateway's queue: the id its client saw
    first (None: it was sent to its backend at once)."""
    queued_ms: int | None = None
    """How long it waited in the gateway before a backend had room (None: it did not wait)."""
    attempts: str | None = None
    """Earlier attempts on other backends that failed before any row reached the client, joined by
    "; " ("trino-1: connection refused"); None when the first backend took it."""
    estimate_source: str | None = None
    """Where routing had the query's estimate from: cache or planner; none when it asked and had none;
    None when routing asked for none."""
    estimate: str | None = None
    """The estimate routing had (JSON: available, source, latencyMs, cause, total, max and the plan's
    shape), when it asked for one."""
    cache: str | None = None
    """The result cache's word on the query: hit, miss, waited (for another query's result), refused
    (the client said no-cache), off, or "not eligible: <why>"; None when the gateway kept no word."""


@dataclass
class TransactionBinding:
    """A transaction and the backend that owns it: every statement of the transaction goes there."""

    transaction_id: str
    backend_name: str
    backend_url: str
    started_at: int
    last_used_at: int
    started_by: str | None = None
    """The query (START TRANSACTION) whose answer carried the transaction's id."""
    ended_at: int | None = None
    end_reason: str | None = None
    """committed, rolled back, unknown to its backend, backend restarted, idle."""

    @property
    def open(self) -> bool:
        return self.ended_at is None


@dataclass(frozen=True)
class BackendWork:
    """What a backend still has to finish, over every worker and gateway node on the store."""

    unfinished_queries: int = 0
    oldest_query_at: int | None = None
    open_transactions: int = 0
    oldest_transaction_at: int | None = None


@dataclass
class AuditEntry:
    """One change (or refused attempt) through the admin API: who, when, from where, what."""

    at: int
    actor: str
    method: str
    """How the actor was authenticated (password, ldap, oidc, session, open)."""
    address: str
    action: str
    """What was asked, e.g. backend.add, backend.deactivate."""
    target: str | None
    outcome: str
    """done, or refused (no right to), or failed (invalid, unknown)."""
    before: str | None = None
    """The target before the change, as JSON."""
    after: str | None = None
    id: int | None = None


@dataclass(frozen=True)
class QueryOutcome:
    """How a query ended (state, Trino's error name if it failed), when the gateway saw it end."""

    query_id: str
    state: str
    error_name: str | None
    finished_at: int
    gateway_query_id: str | None = None
    """Set with the outcome when the gateway named the query only after it was submitted (an attempt
    that failed over: its id ties it to the attempts after it)."""


@dataclass(frozen=True, order=True)
class QueryCount:
    """How many queries of one routing group and backend were submitted in one time bucket."""

    at: int
    """The bucket's start (epoch ms): a multiple of the bucket's length since the epoch."""
    routing_group: str
    backend_name: str
    queries: int
    failed: int
    """Of them, how many ended FAILED (so far)."""


def count_queries(records: Iterable[QueryRecord], since_ms: int, until_ms: int, step_ms: int) -> list[QueryCount]:
    """The query counts of ``Store.query_stats``, counted in Python (the in-memory store uses this)."""
    counts: dict[tuple[int, str, str], list[int]] = {}
    for record in records:
        if since_ms <= record.submitted_at < until_ms:
            key = (record.submitted_at // step_ms * step_ms, record.routing_group, record.backend_name)
            count = counts.setdefault(key, [0, 0])
            count[0] += 1
            count[1] += record.state == FAILED
    return [QueryCount(*key, *count) for key, count in sorted(counts.items())]


@dataclass
class QueryFilter:
    user: str | None = None
    backend: str | None = None
    routing_group: str | None = None
    state: str | None = None
    since_ms: int | None = None
    until_ms: int | None = None
    transaction_id: str | None = None
    text: str | None = None
    """A part of the SQL, any case; ``%`` and ``_`` are themselves, not wildcards."""
    id_prefix: str | None = None
    """The start of the query id (``20261201_``), or all of it; or of the gateway id it waited under."""
    routing_rule: str | None = None

    def matches(self, record: QueryRecord) -> bool:
        """The same test the SQL store runs as a WHERE clause (the in-memory store uses this). Text
        is compared in lower case; SQLite's lower() folds ASCII letters only."""
        if self.user is not None and record.user_name != self.user:
            return False
        if self.backend is not None and record.backend_name != self.backend:
            return False
        if self.routing_group is not None and record.routing_group != self.routing_group:
            return False
        if self.state is not None:
            if self.state == "RUNNING" and record.state is not None:
                return False
            if self.state != "RUNNING" and record.state != self.state:
                return False
        if self.transaction_id is not None and record.transaction_id != self.transaction_id:
            return False
        if self.routing_rule is not None and record.routing_rule != self.routing_rule:
            return False
        if self.id_prefix is not None and not (
            record.query_id.startswith(self.id_prefix) or (record.gateway_query_id or "").startswith(self.id_prefix)
        ):
            return False
        if self.text is not None and self.text.lower() not in (record.query_text or "").lower():
            return False
        if self.since_ms is not None and record.submitted_at < self.since_ms:
            return False
        return not (self.until_ms is not None and record.submitted_at >= self.until_ms)


@dataclass
class SharedCheck:
    """The last health check of a backend, as its lease holder wrote it for every other worker."""

    backend_name: str
    checked_at: int
    """Epoch ms: a worker applies each result once, in order."""
    outcome: str
    """ok, failed or starting."""
    error: str | None = None
    stats: dict[str, float | int | None] | None = None
    """The cluster's figures (running, queued, workers, uptime) when the check read them."""
    seconds: float | None = None
    """How long the check took."""


@dataclass
class SharedRulesText:
    """The routing rules as last changed on any node."""

    text: str
    changed_at: int
    changed_by: str


ALL_GROUPS = "*"
"""The result cache's purge mark of a purge of every routing group (``Store.cache_purge_marks``)."""


@dataclass(frozen=True)
class CachedResult:
    """One entry of the result cache as the store keeps it: a finished query's result, as bytes the
    store never reads, under its key."""

    key: str
    """64 hexadecimal characters: what the entry answers."""
    group: str
    """The routing group of the query it came from: a purge of the group removes it."""
    created_ms: int
    expires_ms: int
    """From this time on (epoch ms) the store returns it no more."""
    blob: bytes


CLUSTER_DETAIL_LENGTH = 512
"""The most characters of a cluster record's detail every store keeps (the rest is cut)."""


@dataclass(frozen=True)
class ClusterRecord:
    """What the cluster manager last did to one managed cluster, shared by every worker and node."""

    backend: str
    state: str
    """The manager's word: STOPPED, STARTING, READY, DRAINING, TERMINATING (other states are derived live)."""
    since_ms: int
    """When it entered this state (epoch ms)."""
    detail: str | None = None
    """Why, for operators ("started by the autoscaler: 3 queries waiting", "start failed: ..."); cut to
    ``CLUSTER_DETAIL_LENGTH`` characters."""
    failed_ms: int | None = None
    """When its last start failed (the autoscaler tries another cluster for a while)."""
    starts: int = 0
    """Starts issued, ever."""
