"""The gateway application: the proxy for Trino's paths, the admin API (Quart) for the rest.

One ASGI callable. Proxied paths go straight to ``proxy.Proxy`` (plain ASGI: the hot path);
``/gateway/...`` goes to the Quart app. Start-up and shut-down of the shared services
(store, upstream client, routing state) happen in the ASGI lifespan.
"""

from __future__ import annotations

import gc
import logging
from typing import Any

import orjson
from quart import Quart, Response, request
from werkzeug.exceptions import HTTPException

from gateway import errors
from gateway.api import admin
from gateway.config import GatewayConfig
from gateway.errors import api_error
from gateway.proxy import OBSERVED, Proxy, Receive, Scope, Send, gateway_base
from gateway.services import Services
from observability.endpoints import endpoints as observability_endpoints

log = logging.getLogger("gateway")
# Trino paths the proxy serves (trinodb/trino-gateway's list, plus /v1/status).
PROXIED_PREFIXES = ("/v1/statement", "/v1/query", "/v1/info", "/v1/node", "/v1/status", "/v1/spooled", "/ui", "/oauth2")

_PROXIED_EXACT = frozenset(PROXIED_PREFIXES)
_PROXIED_BELOW = tuple(prefix + "/" for prefix in PROXIED_PREFIXES)


def _admin_app(services: Any) -> Quart:
    app = Quart("trino-gateway")
    app.config["SERVICES"] = services
    app.register_blueprint(admin)
    # /metrics and /v1/jmx/...: not in PROXIED_PREFIXES, so they are the gateway's own.
    app.register_blueprint(observability_endpoints)

    @app.errorhandler(404)
    async def not_found(_: Exception) -> Response:
        return api_error(404, f"trino-gateway has nothing at {request.path}")

    @app.errorhandler(Exception)
    async def unexpected(error: Exception) -> Response:
        if isinstance(error, HTTPException):
            return api_error(error.code or 500, f"{error.name}: {request.method} {request.path}")
        log.exception("unexpected error on %s %s", request.method, request.path)
        return api_error(500, f"trino-gateway internal error: {type(error).__name__}: {error}")

    return app


class GatewayApp:
    def __init__(self, config: GatewayConfig, migrate: bool = True) -> None:
        self.config = config
        self.migrate = migrate
        self.services: Services | None = None
        self.admin = _admin_app(self)
        self.proxy = Proxy(self._services)

    def _services(self) -> Services:
        if self.services is None:
            raise RuntimeError("the gateway has not started")
        return self.services

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            path = scope["path"]
            # The prefixes themselves and paths below them (``/ui`` and ``/ui/...``, not ``/uix``).
            if path.startswith(_PROXIED_BELOW) or path in _PROXIED_EXACT:
                await self._proxy(scope, receive, send)
                return
            await self.admin(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        else:
            await self.admin(scope, receive, send)

    async def _proxy(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.proxy(scope, receive, send)
        except Exception as error:
            # A bug must still reach the client as an error it can read, never a bare 500 page.
            log.exception("unexpected error proxying %s %s", scope["method"], scope["path"])
            observed = scope.get(OBSERVED)
            if observed is not None and observed.responded:
                raise
            body = orjson.dumps(
                errors.failed_query(
                    gateway_base(scope), f"trino-gateway internal error: {type(error).__name__}: {error}"
                )
            )
            await send(
                {
                    "type": "http.response.start",
                    "status": 500,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
                }
            )
            await send({"type": "http.response.body", "body": body})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    self.services = await Services.start(self.config, self.migrate)
                    await self.admin.startup()
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
                    await self.admin.shutdown()
                    if self.services is not None:
                        await self.services.stop()
                finally:
                    await send({"type": "lifespan.shutdown.complete"})
                return


def create_app(config: GatewayConfig, migrate: bool = True) -> GatewayApp:
    return GatewayApp(config, migrate)
