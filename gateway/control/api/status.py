"""The gateway's own status: liveness, readiness, the health of every backend (and, with their own
blueprint, the routing rules)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from quart import Blueprint, Response

from gateway.control.admission_status import backend_json, group_queues
from gateway.control.api.access import principal, public, reader
from gateway.control.drain import DrainStatus
from gateway.errors import api_error, json_response
from gateway.store import BackendWork

if TYPE_CHECKING:
    from gateway.control.services import Services


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
        the monitor's figures, this worker's load on it, and the routing score; its max_running and
        the slots this worker uses on it, and the queries of its group waiting in this worker (a
        caller who may not see every query sees no other user's name there)."""
        statuses = services.backend_statuses(await services.store.list_backends())
        work = await services.publish_backend_work()
        caller = principal()
        queues = group_queues(
            services.admission,
            (status.backend.routing_group for status in statuses),
            lambda user: caller.sees_all_queries or user == caller.name,
        )
        out = []
        for status in statuses:
            backend = status.backend
            drain = DrainStatus(backend.name, backend.active, work.get(backend.name, BackendWork()))
            document = status.api_json()
            document.update({k: v for k, v in drain.api_json().items() if k not in ("name", "active")})
            document.update(backend_json(backend, services.admission))
            document["gatewayQueue"] = queues[backend.routing_group].api_json()
            out.append(document)
        return json_response(out)

    @api.get("/gateway/livez")
    @reader
    async def livez() -> Response:
        return Response("ok", content_type="text/plain")

    @api.get("/gateway/readyz")
    @reader
    async def readyz() -> Response:
        """Where readyz needs credentials (not among auth.public_paths); otherwise the ASGI entry
        answers it first. The same verdict either way, read, not awaited (gateway.control.readiness)."""
        verdict = services.readiness.verdict()
        if not verdict.ready:
            return api_error(503, verdict.reason)
        return Response("ok", content_type="text/plain")

    return api
