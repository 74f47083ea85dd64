"""Everything a gateway worker holds while it serves: store, upstream client, routing state."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

import aiohttp

from gateway.backends import BackendRegistry
from gateway.config import GatewayConfig
from gateway.health import HealthChecker, MonitorSettings, create_monitor
from gateway.history import QueryHistory
from gateway.query_locator import QueryLocator
from gateway.routing import InFlight, Router
from gateway.rules import FileRulesSelector, GroupSelector, create_selector
from gateway.scoring import ScoreWeights
from gateway.store import Store
from gateway.upstream import UpstreamPool, create_session
from observability.observer import Observer


@dataclass
class Services:
    config: GatewayConfig
    store: Store
    session: aiohttp.ClientSession
    pool: UpstreamPool
    registry: BackendRegistry
    in_flight: InFlight
    router: Router
    locator: QueryLocator
    history: QueryHistory
    health: HealthChecker
    selector: GroupSelector
    observer: Observer
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @classmethod
    async def start(cls, config: GatewayConfig, migrate: bool) -> Services:
        store = await Store.open(config.store.url, migrate=migrate)
        session = create_session(config.proxy)
        registry = BackendRegistry(store, config.routing.backend_refresh_seconds)
        in_flight = InFlight()
        history = QueryHistory(store, config.history.sql_chars, config.history.retention_hours)
        health = _health_checker(config, registry, session)
        router = Router(
            config.routing.default_group,
            in_flight,
            health,
            default_router=config.routing.router,
            group_routers={group: settings.router for group, settings in config.routing.groups.items()},
            weights=ScoreWeights(**config.routing.score_weights.model_dump()),
            backend_weights={b.name: b.weight for b in config.backends},
        )
        observer = Observer.start(config.observability.tracing)
        observer.watch(registry, health, in_flight, router.weights)
        # A traced query's first poll may reach another worker before the query's row is written.
        settle = history.flush_interval * 1.5 if observer.tracer is not None else 0.0
        services = cls(
            config=config,
            store=store,
            session=session,
            pool=UpstreamPool(config.proxy.connect_timeout, config.proxy.read_timeout, config.proxy.max_connections),
            registry=registry,
            in_flight=in_flight,
            router=router,
            locator=QueryLocator(store, registry, session, settle_seconds=settle),
            history=history,
            health=health,
            selector=create_selector(config.routing_rules, session),
            observer=observer,
        )
        # Serve only once every backend's health is known: a PENDING backend takes no queries.
        await health.check_all()
        services.tasks = [
            asyncio.create_task(history.purge_forever()),
            asyncio.create_task(history.flush_forever()),
            asyncio.create_task(health.run_forever()),
            asyncio.create_task(_sweep_forever(in_flight)),
            asyncio.create_task(observer.refresh_forever()),
        ]
        if isinstance(services.selector, FileRulesSelector):
            services.tasks.append(asyncio.create_task(services.selector.rules.watch_forever()))
        return services

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.locator.close()
        await self.history.drain()
        await self.observer.stop()
        self.pool.close()
        await self.session.close()
        await self.store.close()


def _health_checker(config: GatewayConfig, registry: BackendRegistry, session: aiohttp.ClientSession) -> HealthChecker:
    settings = config.health
    monitor_settings = MonitorSettings(
        user=settings.user,
        ui_user=settings.ui_user,
        ui_password=settings.ui_password,
        probe_sql=settings.probe_sql,
        metric_minimums=tuple(settings.metric_minimums.items()),
        metric_maximums=tuple(settings.metric_maximums.items()),
    )
    return HealthChecker(
        registry,
        session,
        monitor_for={b.name: create_monitor(b.monitor, monitor_settings) for b in config.backends if b.monitor},
        default_monitor=create_monitor(settings.monitor, monitor_settings),
        interval=settings.interval,
        timeout=settings.timeout,
        failure_threshold=settings.failure_threshold,
        success_threshold=settings.success_threshold,
    )


async def _sweep_forever(in_flight: InFlight) -> None:
    while True:
        await asyncio.sleep(60)
        in_flight.sweep()
