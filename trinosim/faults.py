"""Fault injection (a middleware) and trinosim's own admin endpoints under ``/_sim``."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable

import orjson
from aiohttp import web
from pydantic import ValidationError

from trinosim.config import Faults
from trinosim.state import STATE, SimState

ADMIN_PREFIX = "/_sim"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# What a broken backend might send: a JSON document cut off halfway.
GARBAGE = b'{"id": "20240101_000000_00000_xxxxx", "stats": {"state": "RUNN\x00\xff<html>'


def _in_scope(request: web.Request, faults: Faults) -> bool:
    path = request.path
    if path.startswith(ADMIN_PREFIX):
        return False
    return faults.scope == "all" or path.startswith("/v1/statement")


def _is_poll(request: web.Request) -> bool:
    return request.method == "GET" and request.path.startswith(("/v1/statement/queued/", "/v1/statement/executing/"))


@web.middleware
async def inject_faults(request: web.Request, handler: Handler) -> web.StreamResponse:
    state: SimState = request.app[STATE]
    faults = state.faults
    if not _in_scope(request, faults):
        return await handler(request)
    if faults.latency_ms:
        await asyncio.sleep(faults.latency_ms / 1000)
    if faults.drop_rate and random.random() < faults.drop_rate:
        if request.transport is not None:
            request.transport.abort()
        raise asyncio.CancelledError
    if faults.error_rate and random.random() < faults.error_rate:
        return web.Response(
            status=faults.error_status, text=f"trinosim injected error {faults.error_status}", content_type="text/plain"
        )
    if faults.garbage_rate and random.random() < faults.garbage_rate:
        return web.Response(body=GARBAGE, content_type="application/json")
    while faults.hang_polls and _is_poll(request):
        await asyncio.sleep(0.05)
        faults = state.faults
    return await handler(request)


async def get_faults(request: web.Request) -> web.Response:
    state: SimState = request.app[STATE]
    return web.json_response(state.faults.model_dump())


async def set_faults(request: web.Request) -> web.Response:
    """Change some faults: the body is a JSON object of the fields to change."""
    state: SimState = request.app[STATE]
    try:
        changes = orjson.loads(await request.read())
    except orjson.JSONDecodeError as error:
        return web.json_response({"error": f"body is not JSON: {error}"}, status=400)
    if not isinstance(changes, dict):
        return web.json_response({"error": "body must be a JSON object of fault fields"}, status=400)
    try:
        updated = Faults.model_validate({**state.faults.model_dump(), **changes})
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        return web.json_response({"error": problems}, status=400)
    state.faults = state.config.faults = updated
    if "starting_seconds" in changes:
        state.manager.set_starting(updated.starting_seconds)
    return web.json_response(updated.model_dump())


async def list_queries(request: web.Request) -> web.Response:
    state: SimState = request.app[STATE]
    return web.Response(
        body=orjson.dumps([q.to_json() for q in state.manager.queries.values()]), content_type="application/json"
    )


async def get_query(request: web.Request) -> web.Response:
    state: SimState = request.app[STATE]
    query = state.manager.get(request.match_info["query_id"])
    if query is None:
        return web.json_response({"error": "unknown query"}, status=404)
    return web.Response(body=orjson.dumps(query.to_json()), content_type="application/json")


async def segment_counters(request: web.Request) -> web.Response:
    state: SimState = request.app[STATE]
    segments = state.manager.segments
    return web.json_response({**segments.counters, "held": segments.held})


async def load(request: web.Request) -> web.Response:
    """Queries running and queued now, the most that ever ran at once (the admission tests check a
    gateway's limit here, at the cluster), and the counters. DELETE resets the peak to what runs now."""
    manager = request.app[STATE].manager
    if request.method == "DELETE":
        manager.peak_running = len(manager.running)
    return web.json_response(
        {"running": len(manager.running), "queued": len(manager.queue), "peak_running": manager.peak_running}
        | manager.counters
    )


async def list_transactions(request: web.Request) -> web.Response:
    state: SimState = request.app[STATE]
    return web.Response(body=orjson.dumps(state.manager.transactions.to_json()), content_type="application/json")


async def get_config(request: web.Request) -> web.Response:
    state: SimState = request.app[STATE]
    return web.json_response(state.config.model_dump())


def add_routes(app: web.Application) -> None:
    app.router.add_get(f"{ADMIN_PREFIX}/faults", get_faults)
    app.router.add_put(f"{ADMIN_PREFIX}/faults", set_faults)
    app.router.add_patch(f"{ADMIN_PREFIX}/faults", set_faults)
    app.router.add_get(f"{ADMIN_PREFIX}/queries", list_queries)
    app.router.add_get(f"{ADMIN_PREFIX}/queries/{{query_id}}", get_query)
    app.router.add_get(f"{ADMIN_PREFIX}/config", get_config)
    app.router.add_get(f"{ADMIN_PREFIX}/transactions", list_transactions)
    app.router.add_get(f"{ADMIN_PREFIX}/segments", segment_counters)
    app.router.add_get(f"{ADMIN_PREFIX}/load", load)
    app.router.add_delete(f"{ADMIN_PREFIX}/load", load)
