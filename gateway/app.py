"""The gateway application: wires the store, routing, proxy and admin API into one Quart app."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import httpx
from quart import Quart, Response, request
from werkzeug.exceptions import HTTPException

from gateway.api import admin
from gateway.backends import BackendRegistry
from gateway.config import GatewayConfig
from gateway.errors import api_error
from gateway.history import QueryHistory
from gateway.proxy import Proxy
from gateway.query_ids import query_id_of
from gateway.query_locator import QueryLocator
from gateway.routing import InFlight, Router
from gateway.store import Store

log = logging.getLogger("gateway")
_ALL_METHODS = ["GET", "POST", "PUT", "DELETE", "HEAD", "PATCH", "OPTIONS"]
# Trino paths proxied besides the statement protocol (trinodb/trino-gateway's list).
_PROXIED_PREFIXES = ("/v1/query", "/v1/info", "/v1/node", "/v1/status", "/v1/spooled", "/ui", "/oauth2")


def create_app(config: GatewayConfig, migrate: bool = True) -> Quart:
    app = Quart("trino-gateway")
    app.config["GATEWAY"] = config
    # Upstream timeouts bound every proxied answer; Quart's own 60 s cap would cut long downloads.
    app.config["RESPONSE_TIMEOUT"] = None
    app.config["BODY_TIMEOUT"] = config.proxy.read_timeout
    app.register_blueprint(admin)

    @app.before_serving
    async def start() -> None:
        store = await Store.open(config.store.url, migrate=migrate)
        client = httpx.AsyncClient(
            timeout=httpx.Timeout(config.proxy.read_timeout, connect=config.proxy.connect_timeout),
            limits=httpx.Limits(
                max_connections=config.proxy.max_connections, max_keepalive_connections=config.proxy.max_connections
            ),
            follow_redirects=False,
        )
        registry = BackendRegistry(store)
        in_flight = InFlight()
        history = QueryHistory(store, config.history.sql_chars, config.history.retention_hours)
        locator = QueryLocator(store, registry, client)
        app.config.update(STORE=store, CLIENT=client, HISTORY=history, IN_FLIGHT=in_flight)
        app.config["PROXY"] = Proxy(
            config, registry, Router(config.routing.default_group, in_flight), locator, history, in_flight, client
        )
        app.config["TASKS"] = [
            asyncio.create_task(history.purge_forever()),
            asyncio.create_task(_sweep_forever(in_flight)),
        ]

    @app.after_serving
    async def stop() -> None:
        for task in app.config.get("TASKS", []):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await app.config["HISTORY"].drain()
        await app.config["CLIENT"].aclose()
        await app.config["STORE"].close()

    @app.post("/v1/statement")
    async def submit() -> Response:
        return await app.config["PROXY"].submit(request)

    @app.route("/v1/statement/<path:rest>", methods=_ALL_METHODS)
    async def statement(rest: str) -> Response:
        query_id = query_id_of(request.path, "")
        if query_id is None:
            return Response("Query not found", status=404, content_type="text/plain")
        return await app.config["PROXY"].follow_query(request, query_id)

    async def other() -> Response:
        return await app.config["PROXY"].forward_other(request)

    for prefix in _PROXIED_PREFIXES:
        app.add_url_rule(prefix, f"proxy{prefix}", other, methods=_ALL_METHODS)
        app.add_url_rule(f"{prefix}/<path:rest>", f"proxy{prefix}/rest", lambda rest: other(), methods=_ALL_METHODS)

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


async def _sweep_forever(in_flight: InFlight) -> None:
    while True:
        await asyncio.sleep(60)
        in_flight.sweep()
