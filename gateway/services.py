"""Everything a gateway worker holds while it serves: store, upstream client, routing state."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

import aiohttp

from gateway.backends import BackendRegistry
from gateway.config import GatewayConfig
from gateway.history import QueryHistory
from gateway.query_locator import QueryLocator
from gateway.routing import InFlight, Router
from gateway.store import Store
from gateway.upstream import create_session


@dataclass
class Services:
    config: GatewayConfig
    store: Store
    session: aiohttp.ClientSession
    registry: BackendRegistry
    in_flight: InFlight
    router: Router
    locator: QueryLocator
    history: QueryHistory
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @classmethod
    async def start(cls, config: GatewayConfig, migrate: bool) -> Services:
        store = await Store.open(config.store.url, migrate=migrate)
        session = create_session(config.proxy)
        registry = BackendRegistry(store, config.routing.backend_refresh_seconds)
        in_flight = InFlight()
        history = QueryHistory(store, config.history.sql_chars, config.history.retention_hours)
        services = cls(
            config=config,
            store=store,
            session=session,
            registry=registry,
            in_flight=in_flight,
            router=Router(config.routing.default_group, in_flight),
            locator=QueryLocator(store, registry, session),
            history=history,
        )
        services.tasks = [
            asyncio.create_task(history.purge_forever()),
            asyncio.create_task(history.flush_forever()),
            asyncio.create_task(_sweep_forever(in_flight)),
        ]
        return services

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.history.drain()
        await self.session.close()
        await self.store.close()


async def _sweep_forever(in_flight: InFlight) -> None:
    while True:
        await asyncio.sleep(60)
        in_flight.sweep()
