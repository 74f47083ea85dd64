"""The gateway's own HTTP API (Quart): backends, query history, status, metrics, the audit trail,
the login. Each part is a blueprint built around the worker's ``Services``, handed in explicitly;
``access`` authenticates every request and holds it to the access its handler declares."""

from __future__ import annotations

import logging
import secrets
from datetime import timedelta
from typing import TYPE_CHECKING

from quart import Blueprint, Quart, Response, request
from werkzeug.exceptions import HTTPException

from gateway.control.api import access, openapi
from gateway.control.api.audit import audit_api
from gateway.control.api.backends import backends_api
from gateway.control.api.cache import cache_api
from gateway.control.api.login import login_api
from gateway.control.api.metrics import metrics_api
from gateway.control.api.queries import queries_api
from gateway.control.api.routing_rules import routing_rules_api
from gateway.control.api.status import status_api
from gateway.dataplane.exchange import WORKER
from gateway.errors import api_error

if TYPE_CHECKING:
    from gateway.control.services import Services

log = logging.getLogger("gateway")


def create_admin_app(services: Services, pages: Blueprint | None = None) -> Quart:
    """The gateway's own app: the admin API and, given ``pages``, the web UI, which calls the API."""
    # No static folder: Quart's default would serve files under the working directory at /static/.
    app = Quart("trino-gateway", static_folder=None)
    configure_sessions(app, services)
    blueprints = (backends_api, queries_api, routing_rules_api, metrics_api, audit_api, login_api, cache_api)
    for blueprint in blueprints:
        app.register_blueprint(blueprint(services))
    app.register_blueprint(status_api(services))
    openapi.install(app, services)
    if pages is not None:
        # After the OpenAPI document is built: the UI's pages are no API operations.
        app.register_blueprint(pages)
    access.install(app, services)

    @app.after_request
    async def name_the_worker(response: Response) -> Response:
        # As on proxied answers: which worker process answered (operators and tests see workers share state).
        response.headers[WORKER[0].decode()] = WORKER[1].decode()
        return response

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


def configure_sessions(app: Quart, services: Services) -> None:
    """Signed UI session cookies: HttpOnly, SameSite=Lax, Secure when the gateway serves HTTPS."""
    auth = services.config.auth
    if auth is None:
        log.warning(
            "no auth configured: the admin API is OPEN to anyone who can reach this port "
            "(they may change and delete backends and read every query); set auth in the configuration"
        )
        app.secret_key = secrets.token_urlsafe(48)
        return
    # Without a configured secret, `trino-gateway serve` makes one for all workers of this node;
    # a gateway built in process (tests) makes its own.
    app.secret_key = auth.session.secret or secrets.token_urlsafe(48)
    secure = auth.session.secure_cookie
    if secure is None:
        secure = services.config.server.tls is not None
    app.config.update(
        SESSION_COOKIE_NAME="trino_gateway_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=secure,
        PERMANENT_SESSION_LIFETIME=timedelta(seconds=auth.session.max_age),
    )
