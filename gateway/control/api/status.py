"""The gateway's own status: liveness, readiness, the health of every backend (and, with their own
blueprint, the routing rules)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from quart import Blueprint, Response

from gateway.clusters.states import state_of
from gateway.control.admission_status import group_queues
from gateway.control.api.access import principal, public, reader
from gateway.control.api.models import (
    ESTIMATE_CACHE_BYTES,
    ESTIMATE_CACHE_ENTRIES,
    RESULT_CACHE_BYTES,
    RESULT_CACHE_ENTRIES,
    RESULT_CACHE_HITS,
    RESULT_CACHE_MISSES,
    RESULT_CACHE_WAITED,
    BackendHealth,
    HealthHeaders,
    json_response,
)
from gateway.control.api.openapi import Answer, answers, plain
from gateway.control.drain import DrainStatus
from gateway.errors import api_error
from gateway.store import BackendWork

if TYPE_CHECKING:
    from gateway.control.services import Services


def status_api(services: Services) -> Blueprint:
    api = Blueprint("status", __name__)

    @api.get("/gateway")
    @public
    @answers({200: plain("ok")})
    async def ok() -> Response:
        """The gateway answers."""
        return Response("ok", content_type="text/plain")

    @api.get("/gateway/health")
    @reader
    @answers({200: Answer("the backends", list[BackendHealth], headers=HealthHeaders)})
    async def health() -> Response:
        """Every backend's observed health, beside its admin state and drain; its capacity, and the queries
        of its group waiting in the gateway.

        Its state, last check, last error, the monitor's figures, this worker's load on it and the routing
        score; its max_running and the slots in use on it; the queries of its group waiting in this
        worker (a caller who may not see every query sees no other user's name there). The headers tell
        the size of this worker's cache of query estimates, and its result cache's counts and size."""
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
            running = services.admission.running.get(backend.name, 0)
            clusters = services.clusters
            state = clusters.state(backend) if clusters is not None else state_of(backend, status.health, None)
            detail = clusters.detail(backend.name) if clusters is not None else None
            out.append(BackendHealth.of(status, drain, running, queues[backend.routing_group], state, detail))
        answer = json_response(out)
        cache = services.estimator.cache
        answer.headers[ESTIMATE_CACHE_ENTRIES] = str(len(cache))
        answer.headers[ESTIMATE_CACHE_BYTES] = str(cache.bytes)
        results = services.result_cache
        if results is not None:
            counts = results.totals()
            answer.headers[RESULT_CACHE_HITS] = str(counts["hit"])
            answer.headers[RESULT_CACHE_WAITED] = str(counts["waited"])
            answer.headers[RESULT_CACHE_MISSES] = str(counts["miss"] + counts["refused"])
            tiers = results.tiers().values()
            answer.headers[RESULT_CACHE_ENTRIES] = str(sum(entries for entries, _ in tiers))
            answer.headers[RESULT_CACHE_BYTES] = str(sum(size for _, size in tiers))
        return answer

    @api.get("/gateway/livez")
    @reader
    @answers({200: plain("ok")})
    async def livez() -> Response:
        """Liveness."""
        return Response("ok", content_type="text/plain")

    @api.get("/gateway/readyz")
    @reader
    @answers({200: plain("ok"), 503: "the store cannot be read, or the node is shutting down"})
    async def readyz() -> Response:
        """Readiness: the store can be read, and the node is not shutting down.

        Answered at once from what the worker knows of the store (any statement that returned lately, else
        the worker's own ping, sent in the background on a connection of its own), never after a round
        trip, so that a load balancer's check does not wait behind the work it guards. Where readyz is not
        among auth.public_paths this handler answers it, with the same verdict; otherwise the node's ASGI
        entry answers before any other work."""
        verdict = services.readiness.verdict()
        if not verdict.ready:
            return api_error(503, verdict.reason)
        return Response("ok", content_type="text/plain")

    return api
