"""The gateway's own HTTP API (Quart): backends, query history, status, metrics. Each part is a
blueprint built around the worker's ``Services``, handed in explicitly."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from quart import Quart, Response, request
from werkzeug.exceptions import HTTPException

from gateway.api.backends import backends_api
from gateway.api.metrics import metrics_api
from gateway.api.queries import queries_api
from gateway.api.status import status_api
from gateway.errors import api_error
from gateway.proxy.exchange import WORKER

if TYPE_CHECKING:
    from gateway.services import Services

log = logging.getLogger("gateway")


def create_admin_app(services: Services) -> Quart:
    app = Quart("trino-gateway")
    for blueprint in (backends_api, queries_api, status_api, metrics_api):
        app.register_blueprint(blueprint(services))

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
