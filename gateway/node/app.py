"""The gateway application: the proxy for Trino's paths, the admin API (Quart) for the rest.

One ASGI callable. Each request is classified once (``gateway.dataplane.classify``); proxied ones go straight
to ``gateway.dataplane.Proxy`` (plain ASGI: the hot path), the gateway's own to the Quart app. Both are
built in the ASGI lifespan, around the worker's ``Services``. Readiness (``GET /gateway/readyz``) is
answered here, from what the worker knows (``gateway.control.readiness``), before the Quart app: a load
balancer's check must not wait behind the work it guards.
"""

from __future__ import annotations

import gc
import logging

import orjson
from quart import Quart

from gateway import errors
from gateway.config import GatewayConfig
from gateway.control import readiness
from gateway.control.api import create_admin_app
from gateway.control.ui import ui_pages
from gateway.dataplane import OBSERVED, Proxy, Receive, ResponseAborted, Scope, Send, gateway_base
from gateway.dataplane.classify import Route, classify
from gateway.node.services import Services
from gateway.node.shutdown import ShutdownFlag
from gateway.store import Store

log = logging.getLogger("gateway")


class GatewayApp:
    def __init__(
        self,
        config: GatewayConfig,
        migrate: bool = True,
        store: Store | None = None,
        shutdown: ShutdownFlag | None = None,
    ) -> None:
        self.config = config
        self.migrate = migrate
        # Raised by the node's main process on SIGTERM (gateway.node.shutdown); None: never.
        self.shutdown = shutdown
        # A store opened by the caller (tests hand in an in-memory one); else opened at start-up.
        self._store = store
        self.services: Services | None = None
        self.proxy: Proxy | None = None
        self.admin: Quart | None = None
        # Answered without credentials (no auth, or readyz among auth.public_paths): here, at once.
        auth = config.auth
        self.readyz_open = auth is None or readiness.PATH in auth.public_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            classified = classify(scope["method"], scope["path"], scope["query_string"])
            if classified.route is not Route.ADMIN and self.proxy is not None:
                try:
                    await self.proxy(scope, receive, send, classified)
                except ResponseAborted:
                    raise
                except Exception as error:
                    await self._internal_error(scope, send, error)
                return
            services = self.services
            if (
                scope["path"] == readiness.PATH
                and scope["method"] in ("GET", "HEAD")
                and self.readyz_open
                and services is not None
            ):
                await services.readiness.respond(scope, send)
                return
        elif kind == "lifespan":
            await self._lifespan(receive, send)
            return
        if self.admin is None:
            raise RuntimeError("the gateway has not started")
        await self.admin(scope, receive, send)

    async def _internal_error(self, scope: Scope, send: Send, error: Exception) -> None:
        # A bug must still reach the client as an error it can read, never a bare 500 page.
        log.exception("unexpected error proxying %s %s", scope["method"], scope["path"])
        observed = scope.get(OBSERVED)
        if observed is not None and observed.responded:
            raise error
        body = orjson.dumps(
            errors.failed_query(gateway_base(scope), f"trino-gateway internal error: {type(error).__name__}: {error}")
        )
        await send(
            {
                "type": "http.response.start",
                "status": 500,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def start(self) -> None:
        """What the lifespan's start-up does (tests running the app in process call it directly)."""
        services = self.services = await Services.start(self.config, self.migrate, self._store, self.shutdown)
        self.proxy = services.proxy
        self.admin = create_admin_app(services, pages=ui_pages(services))
        await self.admin.startup()

    async def stop(self) -> None:
        try:
            if self.admin is not None:
                await self.admin.shutdown()
        finally:
            if self.services is not None:
                await self.services.stop()

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.start()
                    # Everything built so far lives as long as the worker: keep it out of the
                    # garbage collector's full passes, which otherwise stall polls for tens of ms.
                    gc.collect()
                    gc.freeze()
                except Exception as error:
                    log.exception("the gateway cannot start")
                    await send({"type": "lifespan.startup.failed", "message": str(error)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                try:
                    await self.stop()
                finally:
                    await send({"type": "lifespan.shutdown.complete"})
                return


def create_app(config: GatewayConfig, migrate: bool = True, shutdown: ShutdownFlag | None = None) -> GatewayApp:
    return GatewayApp(config, migrate, shutdown=shutdown)
