"""The gateway's own status: liveness, readiness, the health of every backend, the routing rules."""

from __future__ import annotations

from typing import TYPE_CHECKING

from quart import Blueprint, Response

from gateway.api.access import public, reader
from gateway.drain import DrainStatus
from gateway.errors import api_error, json_response
from gateway.rules import FileRulesSelector
from gateway.store import BackendWork
from observability import metrics

if TYPE_CHECKING:
    from gateway.services import Services


def status_api(services: Services) -> Blueprint:
    api = Blueprint("status", __name__)

    @api.get("/gateway")
    @public
    async def ok() -> Response:
        return Response("ok", content_type="text/plain")

    @api.get("/gateway/health")
    @reader
    async def health() -> Response:
        """Observed health of every backend, beside its admin state: state, last check, last error,
        the monitor's figures, this worker's load on it, and the routing score."""
        statuses = services.backend_statuses(await services.store.list_backends())
        work = await services.publish_backend_work()
        out = []
        for status in statuses:
            backend = status.backend
            drain = DrainStatus(backend.name, backend.active, work.get(backend.name, BackendWork()))
            document = status.api_json()
            document.update({k: v for k, v in drain.api_json().items() if k not in ("name", "active")})
            out.append(document)
        return json_response(out)

    @api.get("/gateway/livez")
    @reader
    async def livez() -> Response:
        return Response("ok", content_type="text/plain")

    @api.get("/gateway/readyz")
    @reader
    async def readyz() -> Response:
        try:
            await services.store.ping()
        except Exception as error:
            return api_error(503, f"the store cannot be read: {error}")
        return Response("ok", content_type="text/plain")

    @api.get("/gateway/routing-rules")
    @reader
    async def routing_rules() -> Response:
        """The routing rules in use (this worker's copy), and why the last change did not load, if it did not."""
        settings = services.config.routing_rules
        if not settings.enabled:
            return json_response({"enabled": False, "type": None})
        if isinstance(services.selector, FileRulesSelector):
            # Fired counts as /metrics shows them: summed over this node's workers.
            described = services.selector.rules.describe(metrics.rule_fired_counts())
            return json_response({"enabled": True, "type": "FILE", **described})
        assert settings.external is not None
        return json_response({"enabled": True, "type": "EXTERNAL", "url": settings.external.url})

    return api
