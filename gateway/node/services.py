"""Everything one gateway worker holds while it serves, built at start-up and handed to the proxy
and the admin API (no service locator): who owns which state is written here once.

    store ─── backends (records, admin intent), query history
    registry ─ this worker's copy of the backend list          (from the store)
    health ─── observed health of each backend                 (this worker's checks and traffic)
    book ───── each query's life: location, in-flight counts    (writes the history)
    estimator ─ queries' estimates from the planner, cached     (asked only when routing needs one)
    result_cache ─ cached results, their flights and counts     (memory, the node's disk, the store)
    clusters ─ managed clusters' states, starts and stops       (records in the store; one decider per group)
    upstream ─ connections to backends and their limits
    authenticator ─ who a caller is and its roles               (None: auth is off)
    audit ──── the trail of admin changes and cluster moves    (into the store)
    readiness ─ whether the worker takes new work               (shutdown flag, the store's last word)
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
from dataclasses import dataclass, field

from gateway.auth.authenticator import Authenticator
from gateway.backends.health import HealthChecker
from gateway.backends.health.shared import SharedChecks, holder_name
from gateway.backends.registry import BackendRegistry
from gateway.cache.results import ResultCache
from gateway.clusters.manager import ClusterManager
from gateway.config import GatewayConfig
from gateway.control.audit import AuditTrail
from gateway.control.backend_status import BackendStatus, backend_statuses
from gateway.control.drain import DrainStatus, Reconciler
from gateway.control.readiness import Readiness
from gateway.dataplane import Proxy
from gateway.dataplane.cached import CachedAnswers
from gateway.dataplane.client_auth import ClientAuth
from gateway.node.shutdown import ShutdownFlag
from gateway.queries.admission import Admission, MemoryQueueState, QueueState, SqlQueueState
from gateway.queries.book import QueryBook
from gateway.queries.held import WaitingQueries
from gateway.queries.history import QueryHistory
from gateway.queries.transactions import TransactionBindings
from gateway.routing.cost_routing import CostRouting
from gateway.routing.decider import RouteDecider
from gateway.routing.estimates import Estimator
from gateway.routing.rules import FileRulesSelector, GroupSelector, create_selector
from gateway.routing.rules.shared import SharedRules
from gateway.store import BackendWork, MemoryStore, SqlStore, Store, open_store, seed_backends
from gateway.store.backend import Backend
from gateway.store.records import ADMISSION_CHANGED, ANYTHING_CHANGED
from gateway.upstream import Upstream
from observability import metrics
from observability.observer import Observer

log = logging.getLogger("gateway")

GAUGE_REFRESH_SECONDS = 1.0


@dataclass
class Services:
    config: GatewayConfig
    store: Store
    upstream: Upstream
    registry: BackendRegistry
    health: HealthChecker
    history: QueryHistory
    book: QueryBook
    decider: RouteDecider
    reconciler: Reconciler
    selector: GroupSelector
    observer: Observer
    proxy: Proxy
    authenticator: Authenticator | None
    audit: AuditTrail
    admission: Admission
    """This worker's running counts and the queries waiting in it (``gateway.queries.admission``)."""
    readiness: Readiness
    """The answer to /gateway/readyz, kept current in the background (``gateway.control.readiness``)."""
    estimator: Estimator
    """Queries' estimates (``gateway.routing.estimates``): the cache, the planner's EXPLAINs."""
    result_cache: ResultCache | None = None
    """The result cache (``gateway.cache``): entries, flights and counts."""
    clusters: ClusterManager | None = None
    """Cluster management (``gateway.clusters``): each managed cluster's state, starts, stops, autoscaling."""
    shared_rules: SharedRules | None = None
    """The rules file's changes, shared with every node through the store (FILE rules only)."""
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @classmethod
    async def start(
        cls,
        config: GatewayConfig,
        migrate: bool = True,
        store: Store | None = None,
        shutdown: ShutdownFlag | None = None,
    ) -> Services:
        """Build and start a worker's services (``store``: one opened already, e.g. in tests;
        ``shutdown``: the node's flag, raised while it shuts down)."""
        store = store or await open_store(config.store.url, migrate=migrate)
        if migrate or isinstance(store, MemoryStore):
            # Started on its own (not by ``trino-gateway serve``, which seeds once for all workers),
            # or with a store of its own: the configured backends are made to exist here.
            await seed_backends(store, config.backends)
        observer = Observer.start(config.observability.tracing)
        proxy_settings = config.proxy
        authenticator = Authenticator(config.auth) if config.auth is not None else None
        upstream = Upstream(
            proxy_settings.connect_timeout,
            proxy_settings.read_timeout,
            proxy_settings.max_connections,
            proxy_settings.max_connections_per_backend,
            tracer_provider=observer.tracing.provider,
        )
        registry = BackendRegistry(store, config.routing.backend_refresh_seconds)
        settings = config.health
        shared = SharedChecks(store, settings.interval, settings.timeout) if settings.shared else None
        health = HealthChecker(registry, upstream, settings, shared)
        history = QueryHistory(store, config.history.sql_chars, config.history.retention_hours)
        # A traced query's first poll may reach another worker before the query's row is written.
        settle = history.flush_interval * 1.5 if observer.tracer is not None else 0.0
        transactions = TransactionBindings(store, config.transactions.idle_timeout)
        book = QueryBook(
            store, registry, upstream, history, transactions, on_routed=health.routed, settle_seconds=settle
        )
        health.on_restart = transactions.backend_restarted
        decider = RouteDecider(config.routing, health, book.count)
        routing = config.routing
        estimator = Estimator(
            routing.estimates, routing.default_group, upstream, registry, decider, metrics.EstimateMetrics()
        )
        selector = create_selector(
            config.routing_rules, upstream, on_fired=metrics.RuleFiredCounts().fired, estimator=estimator
        )
        client_auth = None
        if authenticator is not None and config.auth is not None:
            routers = [config.routing.router, *(group.router for group in config.routing.groups.values())]
            rules_need_user = config.routing_rules.enabled or "user-hash" in routers
            client_auth = ClientAuth(authenticator, config.auth, rules_need_user)
        admission = create_admission(config, store, decider, book)
        result_cache = ResultCache(
            config.cache,
            store,
            config.server.workers,
            await cache_secret(config, store),
            on_counted=metrics.ResultCacheMetrics().counted,
        )
        audit = AuditTrail(store)
        clusters = create_cluster_manager(config, store, registry, health, history, admission, audit)
        decider.clusters = clusters
        health.on_healthy = lambda name: admission.dispatch_all()  # (a cluster that started: its queries go)
        proxy = Proxy(
            proxy_settings,
            registry,
            selector,
            decider,
            book,
            health,
            upstream,
            observer,
            admission,
            config.failover,
            client_auth,
            CostRouting(estimator, routing.estimates, routing.default_group),
            CachedAnswers(result_cache, config.routing.groups, book),
        )
        reconciler = Reconciler(store, registry, upstream, book)
        services = cls(
            config,
            store,
            upstream,
            registry,
            health,
            history,
            book,
            decider,
            reconciler,
            selector,
            observer,
            proxy,
            authenticator,
            audit,
            admission,
            Readiness(store, shutdown),
            estimator,
            result_cache,
            clusters,
        )
        await upstream.warm_up()
        # Serve only once every backend's health is known: a PENDING backend takes no queries.
        await health.check_all()
        # ... and only once the clusters' records are read: without them a DRAINING or STOPPED cluster
        # that answers its checks would look READY to a node that just (re)started.
        await clusters.refresh()
        services.tasks = [
            asyncio.create_task(history.purge_forever()),
            asyncio.create_task(history.flush_forever()),
            asyncio.create_task(health.run_forever()),
            asyncio.create_task(book.sweep_forever()),
            asyncio.create_task(transactions.housekeeping_forever()),
            asyncio.create_task(reconciler.reconcile_forever()),
            asyncio.create_task(services.refresh_gauges_forever()),
            asyncio.create_task(admission.run_forever(registry.all)),
            asyncio.create_task(store.watch_changes(services.changed)),
            asyncio.create_task(services.readiness.watch_forever()),
            asyncio.create_task(result_cache.sweep_forever()),
            asyncio.create_task(clusters.run_forever()),
        ]
        if isinstance(selector, FileRulesSelector):
            services.tasks.append(asyncio.create_task(selector.rules.watch_forever()))
            if config.routing_rules.shared:
                services.shared_rules = SharedRules(store, selector.rules, holder_name())
                services.tasks.append(asyncio.create_task(services.shared_rules.follow_forever()))
        return services

    def changed(self, what: str) -> None:
        """Another worker or node changed shared state (the store's notification)."""
        self.registry.changed(what)
        if what in (ADMISSION_CHANGED, ANYTHING_CHANGED):
            self.admission.changed_elsewhere()
        if self.shared_rules is not None:
            self.shared_rules.changed(what)

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.book.close()
        if self.result_cache is not None:
            await self.result_cache.close()
        if self.clusters is not None:
            await self.clusters.close()
        await self.history.drain()
        await self.observer.stop()
        await self.upstream.close()
        await self.store.close()

    def backend_statuses(self, backends: list[Backend]) -> list[BackendStatus]:
        return backend_statuses(backends, self.health, self.book, self.upstream, self.decider.weights)

    async def drain_status(self, name: str) -> DrainStatus | None:
        """What backend ``name`` still has to finish, over every worker and node; None if unknown."""
        backend = await self.store.get_backend(name)
        if backend is None:
            return None
        # This worker's buffered history first; then the quiet queries of the backend looked up on it.
        await self.history.flush()
        await self.reconciler.reconcile(name, quiet=5.0, recheck=5.0)
        work = (await self.store.backend_work()).get(name, BackendWork())
        return DrainStatus(name, backend.active, work)

    async def publish_backend_work(self) -> dict[str, BackendWork]:
        """The store's count of what each backend still has to finish, into the gauges (for a scrape
        or a status page: it costs a store query)."""
        await self.history.flush()
        work = await self.store.backend_work()
        for backend in await self.registry.all():
            done = work.get(backend.name, BackendWork())
            metrics.publish_backend_work(backend.name, done.unfinished_queries, done.open_transactions)
        return work

    async def refresh_gauges(self) -> None:
        """Copy this worker's view of the backends into the gauges."""
        statuses = self.backend_statuses(await self.registry.all())
        self.observer.publish_backends(status.gauges() for status in statuses)
        metrics.publish_queued(self.admission.queued_by_group_and_user())
        metrics.publish_estimate_cache(len(self.estimator.cache), self.estimator.cache.bytes)
        if self.result_cache is not None:
            metrics.publish_result_cache(self.result_cache.tiers())
        if self.clusters is not None:
            backends = self.registry.cached()
            metrics.publish_cluster_states({b.name: self.clusters.state(b) for b in backends})

    async def refresh_gauges_forever(self) -> None:
        while True:
            try:
                await self.refresh_gauges()
            except Exception as error:
                log.error("cannot update the backend gauges: %s", error)
            await asyncio.sleep(GAUGE_REFRESH_SECONDS)


def create_cluster_manager(
    config: GatewayConfig,
    store: Store,
    registry: BackendRegistry,
    health: HealthChecker,
    history: QueryHistory,
    admission: Admission,
    audit: AuditTrail,
) -> ClusterManager:
    """Cluster management, and what it tells admission control: how long a query waits for a cluster to
    start, and why it still waits."""

    async def work() -> dict[str, BackendWork]:
        await history.flush()  # (this worker's last queries counted too)
        return await store.backend_work()

    holder = holder_name()
    manager = ClusterManager(
        store,
        registry,
        health,
        config.routing.groups,
        config.scaling,
        holder,
        admission.queued,
        admission.queued_by_group_now,
        work,
        on_action=metrics.ClusterMetrics().acted,
        on_move=functools.partial(audit.cluster_moved, holder),
    )
    admission.start_wait = manager.start_wait
    admission.why_waiting = manager.why_waiting
    return manager


async def cache_secret(config: GatewayConfig, store: Store) -> bytes:
    """What the result cache's keys are made with: the same on every worker and node of a fleet."""
    if config.cache.secret is not None:
        return config.cache.secret.encode()
    session = config.auth.session.secret if config.auth is not None else None
    if session:
        return hashlib.sha256(b"result-cache:" + session.encode()).digest()
    return await store.shared_secret("result-cache")


def create_admission(config: GatewayConfig, store: Store, decider: RouteDecider, book: QueryBook) -> Admission:
    """One worker's admission control, over the queue every worker and node on the store shares (SQLite
    or PostgreSQL), or this worker's own (the in-memory store: one worker)."""
    settings = config.admission
    state: QueueState = SqlQueueState(store.engine) if isinstance(store, SqlStore) else MemoryQueueState()
    # Routing rules (a file or a service) may give any query a user limit (maxRunning).
    users_limited = settings.user_max_running is not None or config.routing_rules.enabled
    admission = Admission(
        settings,
        config.routing.groups,
        decider,
        state,
        WaitingQueries(settings.abandon_after),
        users_limited,
        book.seen_since,
        on_event=metrics.admission,
        on_wait=metrics.queue_waited,
    )
    # A query that ended here without a slot of this worker's: its slot is freed by its id.
    book.on_ended = lambda query: admission.query_ended(query.id, query.backend)
    return admission
