"""The gateway's Prometheus metrics (the contract in README's Observability section).

Label values are bounded: backend and routing group names and fixed enums, never query ids; users
only in the queued-queries gauge, at most 20 of them per group (the rest summed as ``(others)``).

Several worker processes: ``trino-gateway serve --workers N`` (N > 1) points every worker at one
fresh directory (``PROMETHEUS_MULTIPROC_DIR``, prometheus-client's multiprocess mode), so
``/metrics`` answered by any worker is the sum over all of them. Counters and histograms add up;
the in-flight gauge is summed over live workers; a backend's health, score and monitored counts are
each worker's own observation of the same cluster, so the most recent one is reported.

On the hot path a request costs a dictionary lookup for its label child (bound once, then cached)
and one increment or observation. Gauges are not touched per request: each worker copies its state
into them once a second and before it answers a scrape.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess
from prometheus_client.metrics_core import Metric

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
HEALTH_STATES = ("PENDING", "HEALTHY", "UNHEALTHY")

REGISTRY = CollectorRegistry(auto_describe=True)

QUERIES_ROUTED = Counter(
    "trino_gateway_queries_routed",
    "New queries handed to a backend (the backend accepted the statement)",
    ["routing_group", "backend"],
    registry=REGISTRY,
)
REQUESTS = Counter(
    "trino_gateway_requests",
    "Proxied requests by kind (submit, poll, cancel, other) and HTTP status answered",
    ["kind", "status"],
    registry=REGISTRY,
)
UPSTREAM_LATENCY = Histogram(
    "trino_gateway_upstream_latency_seconds",
    "Time from sending a request to a backend to its answer (headers and, for statements, the body)",
    ["backend", "kind"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
    registry=REGISTRY,
)
IN_FLIGHT = Gauge(
    "trino_gateway_in_flight_queries",
    "Queries routed by the gateway and not yet seen to finish",
    ["backend"],
    multiprocess_mode="livesum",
    registry=REGISTRY,
)
ROUTING_DECISIONS = Counter(
    "trino_gateway_routing_decisions",
    "Routing decisions by chosen routing group and outcome (routed, fallback, no_backend)",
    ["routing_group", "outcome"],
    registry=REGISTRY,
)
RULE_FIRED = "trino_gateway_routing_rule_fired"
ROUTING_RULE_FIRED = Counter(
    RULE_FIRED,
    "Routing rules that fired for new queries (their condition held and their actions ran), by rule name",
    ["rule"],
    registry=REGISTRY,
)
ROUTING_DECISION_SECONDS = Histogram(
    "trino_gateway_routing_decision_seconds",
    "Time to choose the backends for a new query",
    buckets=(0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.1),
    registry=REGISTRY,
)
RETRIES = Counter(
    "trino_gateway_retries",
    "New queries retried on the next backend after this one refused the connection",
    ["backend"],
    registry=REGISTRY,
)
ERRORS = Counter(
    "trino_gateway_errors",
    "Failed proxied requests by cause (connect, timeout, upstream_5xx, no_backend, internal)",
    ["cause"],
    registry=REGISTRY,
)
BACKEND_UP = Gauge(
    "trino_gateway_backend_up",
    "1 when the backend is HEALTHY",
    ["backend"],
    multiprocess_mode="mostrecent",
    registry=REGISTRY,
)
BACKEND_STATE = Gauge(
    "trino_gateway_backend_state",
    "1 for the backend's current health state, 0 for the others",
    ["backend", "state"],
    multiprocess_mode="mostrecent",
    registry=REGISTRY,
)
BACKEND_ACTIVE = Gauge(
    "trino_gateway_backend_active",
    "1 when the backend is active (takes new queries if healthy)",
    ["backend"],
    multiprocess_mode="mostrecent",
    registry=REGISTRY,
)
BACKEND_SCORE = Gauge(
    "trino_gateway_backend_score",
    "The backend's health score, 1/(1+cost): 1 is idle and fast, toward 0 busy or failing (as /gateway/health)",
    ["backend"],
    multiprocess_mode="mostrecent",
    registry=REGISTRY,
)
BACKEND_COST = Gauge(
    "trino_gateway_backend_cost",
    "The score router's cost of the backend (lower is better)",
    ["backend"],
    multiprocess_mode="mostrecent",
    registry=REGISTRY,
)
BACKEND_RUNNING = Gauge(
    "trino_gateway_backend_running_queries",
    "Running queries the backend's monitor reported",
    ["backend"],
    multiprocess_mode="mostrecent",
    registry=REGISTRY,
)
BACKEND_QUEUED = Gauge(
    "trino_gateway_backend_queued_queries",
    "Queued queries the backend's monitor reported",
    ["backend"],
    multiprocess_mode="mostrecent",
    registry=REGISTRY,
)
BACKEND_WORKERS = Gauge(
    "trino_gateway_backend_workers",
    "Active workers the backend's monitor reported",
    ["backend"],
    multiprocess_mode="mostrecent",
    registry=REGISTRY,
)

TRANSACTIONS = Counter(
    "trino_gateway_transactions",
    "Transactions by backend and event: started, committed, rolled_back, unknown_to_its_backend, "
    "backend_restarted, idle",
    ["backend", "event"],
    registry=REGISTRY,
)
OPEN_TRANSACTIONS = Gauge(
    "trino_gateway_open_transactions",
    "Open transactions the gateway has bound to the backend (all workers and nodes: from the store)",
    ["backend"],
    multiprocess_mode="mostrecent",
    registry=REGISTRY,
)
UNFINISHED_QUERIES = Gauge(
    "trino_gateway_unfinished_queries",
    "Queries routed to the backend with no outcome recorded yet (all workers and nodes: from the store)",
    ["backend"],
    multiprocess_mode="mostrecent",
    registry=REGISTRY,
)

# Queries wait in one worker (SQLite: admission control needs server.workers 1 there) or in the
# fleet's store (PostgreSQL: every worker reads the same counts): the last figure read is the node's,
# not a sum over workers, and every node of a fleet reports the fleet's queue.
QUEUED_IN_GATEWAY = Gauge(
    "trino_gateway_queued_queries",
    "Queries waiting in the gateway for room on a backend, by routing group and user (the "
    '20 users with most waiting by name, the rest as user="(others)"); on PostgreSQL the fleet\'s, '
    "the same on every node",
    ["routing_group", "user"],
    multiprocess_mode="mostrecent",
    registry=REGISTRY,
)
ADMISSIONS = Counter(
    "trino_gateway_admissions",
    "Queries held back by admission control, by routing group and outcome: queued, admitted (after "
    "waiting), queue_full, expired (max_queue_wait), canceled (while waiting), abandoned (client gone)",
    ["routing_group", "outcome"],
    registry=REGISTRY,
)
QUEUE_WAIT = Histogram(
    "trino_gateway_queue_wait_seconds",
    "How long queries that waited in the gateway waited before a backend had room",
    ["routing_group"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0),
    registry=REGISTRY,
)
FAILOVERS = Counter(
    "trino_gateway_failovers",
    "Read-only queries sent to another backend because theirs failed before returning a row, by routing "
    "group and the backend that failed",
    ["routing_group", "backend"],
    registry=REGISTRY,
)
# Query estimates (gateway.routing.estimates): asked only when routing needs one.
EXPLAIN_SECONDS = Histogram(
    "trino_gateway_explain_seconds",
    "Time of the EXPLAINs the gateway asked a planner for a query estimate, by outcome (ok, or why there is "
    "no plan: unreachable, planner_timeout, planner_error, refused, bad_answer, no_planner)",
    ["outcome"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
    registry=REGISTRY,
)
ESTIMATE_CACHE = Counter(
    "trino_gateway_estimate_cache",
    "Lookups of explainable statements in the estimate cache by result: hit, or miss (the planner is asked, or "
    "an EXPLAIN under way joined)",
    ["result"],
    registry=REGISTRY,
)
ESTIMATE_FALLBACKS = Counter(
    "trino_gateway_estimate_fallbacks",
    "Queries routed without an estimate routing asked for, by cause: not_explainable, unparsed, too_long, "
    "rate_limited, busy, no_planner, budget, unreachable, planner_timeout, planner_error, refused, bad_answer",
    ["cause"],
    registry=REGISTRY,
)
ESTIMATE_CACHE_ENTRIES = Gauge(
    "trino_gateway_estimate_cache_entries",
    "Entries of the estimate cache (estimates, and the statement texts that lead to them), per worker",
    multiprocess_mode="livesum",
    registry=REGISTRY,
)
ESTIMATE_CACHE_BYTES = Gauge(
    "trino_gateway_estimate_cache_bytes",
    "Bytes the estimate cache holds, per worker",
    multiprocess_mode="livesum",
    registry=REGISTRY,
)
# The result cache (gateway.cache).
RESULT_CACHE_QUERIES = Counter(
    "trino_gateway_result_cache_queries",
    "New queries of the groups, rules or clients that use the result cache, by routing group and result: hit, "
    "waited (answered from an identical query's result), miss, refused (the client's no-cache), not_eligible",
    ["group", "result"],
    registry=REGISTRY,
)
RESULT_CACHE_ENTRIES = Gauge(
    "trino_gateway_result_cache_entries",
    "Entries of the result cache, by tier: memory (the fullest worker's), disk (the node's), store (the fleet's)",
    ["tier"],
    multiprocess_mode="livemax",
    registry=REGISTRY,
)
RESULT_CACHE_BYTES = Gauge(
    "trino_gateway_result_cache_bytes",
    "Bytes the result cache holds, by tier: memory, disk, store",
    ["tier"],
    multiprocess_mode="livemax",
    registry=REGISTRY,
)
# Cluster management (gateway.clusters).
CLUSTER_STATE = Gauge(
    "trino_gateway_cluster_state",
    "Each backend's state as cluster management sees it: 1 for its state now (STOPPED, STARTING, READY, "
    "UNHEALTHY, DRAINING, TERMINATING, DEACTIVATED), 0 for the others",
    ["backend", "state"],
    multiprocess_mode="mostrecent",
    registry=REGISTRY,
)
CLUSTER_ACTIONS = Counter(
    "trino_gateway_cluster_actions",
    "Starts and stops of clusters through their scalers, by backend, action (start, stop) and outcome (ok, "
    "failed, timeout)",
    ["backend", "action", "outcome"],
    registry=REGISTRY,
)
CLUSTER_STATES = ("STOPPED", "STARTING", "READY", "UNHEALTHY", "DRAINING", "TERMINATING", "DEACTIVATED")

QUEUED_USERS_SHOWN = 20
OTHER_USERS = "(others)"

ERROR_CAUSES = ("connect", "timeout", "upstream_5xx", "no_backend", "refused", "internal")
KINDS = ("submit", "poll", "cancel", "other")
OUTCOMES = ("routed", "fallback", "no_backend")


class HotPathMetrics:
    """Label children of the per-request metrics, bound once and kept (``labels()`` is slow)."""

    def __init__(self) -> None:
        self._requests: dict[tuple[str, int], Any] = {}
        self._latency: dict[tuple[str, str], Any] = {}
        self._routed: dict[tuple[str, str], Any] = {}
        self._decisions: dict[tuple[str, str], Any] = {}
        self._retries: dict[str, Any] = {}
        self.errors = {cause: ERRORS.labels(cause) for cause in ERROR_CAUSES}
        self.decision_seconds = ROUTING_DECISION_SECONDS

    def request(self, kind: str, status: int) -> None:
        child = self._requests.get((kind, status))
        if child is None:
            child = self._requests[(kind, status)] = REQUESTS.labels(kind, str(status))
        child.inc()

    def upstream(self, backend: str, kind: str, seconds: float) -> None:
        child = self._latency.get((backend, kind))
        if child is None:
            child = self._latency[(backend, kind)] = UPSTREAM_LATENCY.labels(backend, kind)
        child.observe(seconds)

    def routed(self, group: str, backend: str) -> None:
        child = self._routed.get((group, backend))
        if child is None:
            child = self._routed[(group, backend)] = QUERIES_ROUTED.labels(group, backend)
        child.inc()

    def decision(self, group: str, outcome: str, seconds: float) -> None:
        child = self._decisions.get((group, outcome))
        if child is None:
            child = self._decisions[(group, outcome)] = ROUTING_DECISIONS.labels(group, outcome)
        child.inc()
        self.decision_seconds.observe(seconds)

    def retry(self, backend: str) -> None:
        child = self._retries.get(backend)
        if child is None:
            child = self._retries[backend] = RETRIES.labels(backend)
        child.inc()

    def error(self, cause: str) -> None:
        self.errors[cause].inc()

    @staticmethod
    def failover(group: str, backend: str) -> None:
        FAILOVERS.labels(group, backend).inc()


class RuleFiredCounts:
    """Label children of ``ROUTING_RULE_FIRED``, bound once per rule name and kept (rule names are
    bounded: they come from the rules file)."""

    def __init__(self) -> None:
        self._children: dict[str, Any] = {}

    def fired(self, rules: Iterable[str]) -> None:
        children = self._children
        for rule in rules:
            child = children.get(rule)
            if child is None:
                child = children[rule] = ROUTING_RULE_FIRED.labels(rule)
            child.inc()


class EstimateMetrics:
    """What the query estimator tells (``gateway.routing.estimates.EstimateEvents``), with its label
    children bound once."""

    def __init__(self) -> None:
        self._hit, self._miss = ESTIMATE_CACHE.labels("hit"), ESTIMATE_CACHE.labels("miss")
        self._explained: dict[str, Any] = {}
        self._fallbacks: dict[str, Any] = {}

    def looked_up(self, hit: bool) -> None:
        (self._hit if hit else self._miss).inc()

    def explained(self, outcome: str, seconds: float) -> None:
        child = self._explained.get(outcome)
        if child is None:
            child = self._explained[outcome] = EXPLAIN_SECONDS.labels(outcome)
        child.observe(seconds)

    def fell_back(self, cause: str) -> None:
        child = self._fallbacks.get(cause)
        if child is None:
            child = self._fallbacks[cause] = ESTIMATE_FALLBACKS.labels(cause)
        child.inc()


class ResultCacheMetrics:
    """The result cache's counts, with their label children bound once."""

    def __init__(self) -> None:
        self._children: dict[tuple[str, str], Any] = {}

    def counted(self, group: str, result: str) -> None:
        child = self._children.get((group, result))
        if child is None:
            child = self._children[(group, result)] = RESULT_CACHE_QUERIES.labels(group, result.replace(" ", "_"))
        child.inc()


class ClusterMetrics:
    """Cluster management's starts and stops."""

    def acted(self, backend: str, action: str, outcome: str) -> None:
        CLUSTER_ACTIONS.labels(backend, action, outcome).inc()


def publish_cluster_states(states: dict[str, str]) -> None:
    for backend, now in states.items():
        for state in CLUSTER_STATES:
            CLUSTER_STATE.labels(backend, state).set(1 if state == now else 0)


def publish_result_cache(tiers: dict[str, tuple[int, int]]) -> None:
    """Each tier's (entries, bytes)."""
    for tier, (entries, size) in tiers.items():
        RESULT_CACHE_ENTRIES.labels(tier).set(entries)
        RESULT_CACHE_BYTES.labels(tier).set(size)


def publish_estimate_cache(entries: int, size: int) -> None:
    ESTIMATE_CACHE_ENTRIES.set(entries)
    ESTIMATE_CACHE_BYTES.set(size)


def rule_fired_counts() -> dict[str, int]:
    """Rule name -> times it fired, as ``/metrics`` shows it (summed over this node's workers)."""
    counts: dict[str, int] = {}
    for family in collect():
        if family.name == RULE_FIRED:
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    rule = sample.labels["rule"]
                    counts[rule] = counts.get(rule, 0) + int(sample.value)
    return counts


@dataclass(frozen=True, slots=True)
class BackendGauges:
    """One backend's gauges as a worker sees it (copied into the gauges once a second)."""

    name: str
    state: str
    active: bool
    score: float
    cost: float
    running: int
    queued: int
    workers: int
    in_flight: int


_PER_BACKEND = (
    IN_FLIGHT,
    OPEN_TRANSACTIONS,
    UNFINISHED_QUERIES,
    BACKEND_UP,
    BACKEND_ACTIVE,
    BACKEND_SCORE,
    BACKEND_COST,
    BACKEND_RUNNING,
    BACKEND_QUEUED,
    BACKEND_WORKERS,
)


def transaction_event(backend: str, event: str) -> None:
    TRANSACTIONS.labels(backend, event).inc()


def publish_backend_work(backend: str, unfinished_queries: int, open_transactions: int) -> None:
    """What the store says the backend still has to finish (set when a scrape or status asks)."""
    UNFINISHED_QUERIES.labels(backend).set(unfinished_queries)
    OPEN_TRANSACTIONS.labels(backend).set(open_transactions)


def publish_backend(values: BackendGauges) -> None:
    name = values.name
    IN_FLIGHT.labels(name).set(values.in_flight)
    BACKEND_UP.labels(name).set(1 if values.state == "HEALTHY" else 0)
    for state in HEALTH_STATES:
        BACKEND_STATE.labels(name, state).set(1 if values.state == state else 0)
    BACKEND_ACTIVE.labels(name).set(1 if values.active else 0)
    BACKEND_SCORE.labels(name).set(values.score)
    BACKEND_COST.labels(name).set(values.cost)
    BACKEND_RUNNING.labels(name).set(values.running)
    BACKEND_QUEUED.labels(name).set(values.queued)
    BACKEND_WORKERS.labels(name).set(values.workers)


def forget_backend(name: str) -> None:
    """A backend was deleted: its series end."""
    for gauge in _PER_BACKEND:
        with contextlib.suppress(KeyError):
            gauge.remove(name)
    for state in HEALTH_STATES:
        with contextlib.suppress(KeyError):
            BACKEND_STATE.remove(name, state)


def admission(group: str, outcome: str) -> None:
    ADMISSIONS.labels(group, outcome).inc()


def queue_waited(group: str, seconds: float) -> None:
    QUEUE_WAIT.labels(group).observe(seconds)


_queued_series: set[tuple[str, str]] = set()


def publish_queued(counts: dict[tuple[str, str], int]) -> None:
    """The waiting queries per (group, user), this worker's or on PostgreSQL the fleet's: user label
    values stay bounded (the users with most waiting by name, the others summed), and series of
    groups and users no longer waiting end (read 0 with several workers)."""
    shown: dict[tuple[str, str], int] = {}
    by_group: dict[str, list[tuple[str, int]]] = {}
    for (group, user), count in counts.items():
        by_group.setdefault(group, []).append((user, count))
    for group, users in by_group.items():
        users.sort(key=lambda pair: -pair[1])
        for user, count in users[:QUEUED_USERS_SHOWN]:
            shown[(group, user or "(none)")] = count
        rest = sum(count for _, count in users[QUEUED_USERS_SHOWN:])
        if rest:
            shown[(group, OTHER_USERS)] = rest
    for key in _queued_series - shown.keys():
        if multiprocess_dir() is not None:
            # prometheus-client cannot remove a series of several workers' files: it would stay
            # at its last count, so it reads 0 from now on.
            QUEUED_IN_GATEWAY.labels(*key).set(0)
            continue
        with contextlib.suppress(KeyError):
            QUEUED_IN_GATEWAY.remove(*key)
    for key, count in shown.items():
        QUEUED_IN_GATEWAY.labels(*key).set(count)
    _queued_series.clear()
    _queued_series.update(shown)


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None


def collect() -> Iterable[Metric]:
    """Every metric family, summed over the workers when there are several."""
    if multiprocess_dir() is None:
        return REGISTRY.collect()
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return registry.collect()


def exposition() -> bytes:
    """``/metrics`` in Prometheus' text format."""
    if multiprocess_dir() is None:
        return generate_latest(REGISTRY)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return generate_latest(registry)


def worker_exited() -> None:
    """This worker stops: its in-flight queries no longer count (live gauges)."""
    if multiprocess_dir() is not None:
        multiprocess.mark_process_dead(os.getpid())
