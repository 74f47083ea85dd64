"""The statement protocol: ``POST /v1/statement`` and the ``nextUri`` chain behind it."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from trinosim import protocol, spooling
from trinosim.protocol import EXECUTING, QUEUED
from trinosim.queries import CachedResponse, Query, QueryManager, recorded_headers
from trinosim.session import SessionError, parse_session
from trinosim.state import STATE, SimState

JSON = "application/json"
# The longest a poll is held when nothing changes; Trino's default and cap for maxWait.
MAX_WAIT = 1.0


def _text(status: int, message: str) -> web.Response:
    return web.Response(status=status, text=message, content_type="text/plain")


def _json(body: bytes, headers: list[tuple[str, str]] | None = None) -> web.Response:
    response = web.Response(body=body, content_type=JSON)
    for name, value in headers or []:
        # add(), not []=: repeated X-Trino-Set-Session lines must stay separate lines.
        response.headers.add(name, value)
    return response


def _max_wait(request: web.Request) -> float:
    from trinosim.durations import parse_duration

    value = request.query.get("maxWait")
    if not value:
        return MAX_WAIT
    try:
        return min(MAX_WAIT, parse_duration(value))
    except ValueError:
        return MAX_WAIT


def _lookup(request: web.Request, manager: QueryManager, context: int) -> Query | web.Response:
    query = manager.get(request.match_info["query_id"])
    try:
        token = int(request.match_info["token"])
    except ValueError:
        return _text(404, "Query not found")
    if query is None or request.match_info["slug"] != protocol.slug(query.slug_key, context, token):
        return _text(404, "Query not found")
    return query


def _page(state: SimState, document: dict[str, Any]) -> bytes:
    return protocol.encode(document, state.config.key_order)


def _base(request: web.Request, state: SimState) -> str:
    return protocol.base_uri(request, state.config.forwarded == "honour")


async def submit(request: web.Request) -> web.Response:
    state: SimState = request.app[STATE]
    sql = (await request.read()).decode("utf-8", errors="replace")
    if not sql.strip():
        return _text(400, "SQL statement is empty")
    try:
        session = parse_session(request.headers)
    except SessionError as error:
        return _text(400, str(error))
    query = state.manager.create(sql, session, recorded_headers(request.headers))
    if state.config.spooling:
        query.encoding = spooling.choose_encoding(request.headers.get(spooling.HEADER))
    query.record_request("POST", "submit", None, recorded_headers(request.headers))
    base = _base(request, state)
    body = protocol.results(query, base, state.workers, protocol.statement_uri(base, query, QUEUED, 1))
    return _json(_page(state, body))


async def poll_queued(request: web.Request) -> web.Response:
    state: SimState = request.app[STATE]
    found = _lookup(request, state.manager, QUEUED)
    if isinstance(found, web.Response):
        return found
    query = found
    token = int(request.match_info["token"])
    query.record_request("GET", "queued", token, recorded_headers(request.headers))
    cached = query.queued_cache
    if cached is not None and token == cached.token:
        return _json(cached.body, cached.headers)
    expected = cached.token + 1 if cached is not None else 1
    if token != expected:
        return _text(410, "Invalid token")
    state.manager.dispatch(query)
    if query.state == "QUEUED":
        await query.wait_for_change(_max_wait(request))
    base = _base(request, state)
    if query.state == "QUEUED":
        next_uri = protocol.statement_uri(base, query, QUEUED, token + 1)
    elif query.state == "FAILED" and query.outcome is None and query.executing_cache is None:
        next_uri = None
    else:
        next_uri = protocol.statement_uri(base, query, EXECUTING, 0)
    body = _page(state, protocol.results(query, base, state.workers, next_uri))
    query.queued_cache = CachedResponse(token, body, [])
    return _json(body)


async def poll_executing(request: web.Request) -> web.Response:
    state: SimState = request.app[STATE]
    found = _lookup(request, state.manager, EXECUTING)
    if isinstance(found, web.Response):
        return found
    query = found
    token = int(request.match_info["token"])
    query.record_request(request.method, "executing", token, recorded_headers(request.headers))
    if request.method == "HEAD":
        return web.Response(status=200)
    async with query.page_lock:
        cached = query.executing_cache
        last = cached.token if cached is not None else -1
        if cached is not None and token == last:
            return _json(cached.body, cached.headers)
        if token < last:
            return _text(410, "Gone")
        if token != last + 1 or (cached is not None and b'"nextUri"' not in cached.body):
            return _text(404, "Query not found")
        body, headers = await _next_page(request, state, query, token)
        query.executing_cache = CachedResponse(token, body, headers)
        return _json(body, headers)


async def _next_page(
    request: web.Request, state: SimState, query: Query, token: int
) -> tuple[bytes, list[tuple[str, str]]]:
    manager = state.manager
    state.manager.dispatch(query)
    if query.outcome is None and not query.done:
        await query.wait_for_change(_max_wait(request))
    base = _base(request, state)
    following = protocol.statement_uri(base, query, EXECUTING, token + 1)
    outcome = query.outcome
    if query.error is not None:
        return _page(
            state, protocol.results(query, base, state.workers, None, columns=outcome.columns if outcome else None)
        ), []
    if outcome is None:
        return _page(state, protocol.results(query, base, state.workers, following)), []
    rows: list[Any] = await manager.next_rows(query) if not query.done else []
    if query.error is not None:
        return _page(state, protocol.results(query, base, state.workers, None, columns=outcome.columns)), []
    next_uri = following if rows else None
    data: list[Any] | dict[str, Any] = rows
    if rows and query.encoding is not None:
        data = manager.segments.encode_page(query.id, rows, query.encoding, base, query.rows_delivered)
    body = _page(state, protocol.results(query, base, state.workers, next_uri, outcome.columns, data))
    query.rows_delivered += len(rows)
    query.bytes_delivered += len(body)
    return body, outcome.headers


async def cancel(request: web.Request) -> web.Response:
    state: SimState = request.app[STATE]
    context = QUEUED if request.match_info["phase"] == "queued" else EXECUTING
    query = state.manager.get(request.match_info["query_id"])
    # Any token is accepted for a DELETE, but the slug must match that token.
    found = _lookup(request, state.manager, context)
    if isinstance(found, web.Response) or query is None:
        return _text(404, "Query not found")
    query.record_request(
        "DELETE", request.match_info["phase"], int(request.match_info["token"]), recorded_headers(request.headers)
    )
    state.manager.cancel(query)
    return web.Response(status=204)


async def partial_cancel(request: web.Request) -> web.Response:
    return web.Response(status=204)


async def download_segment(request: web.Request) -> web.StreamResponse:
    """``GET /v1/spooled/download/{id}``: the segment's bytes, with the key its ``headers`` named."""
    state: SimState = request.app[STATE]
    segment = state.manager.segments.get(
        request.match_info["identifier"], request.headers.get(spooling.SEGMENT_KEY_HEADER)
    )
    if segment is None:
        return _text(404, "Segment not found, expired, or its key is missing")
    response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
    response.content_length = len(segment.data)
    await response.prepare(request)
    # Written in parts, as a coordinator streams from storage.
    view = memoryview(segment.data)
    for start in range(0, len(view), 1 << 20):
        await response.write(view[start : start + (1 << 20)])
    await response.write_eof()
    return response


async def acknowledge_segment(request: web.Request) -> web.Response:
    """``GET /v1/spooled/ack/{id}``: the client has the segment; it may be deleted."""
    state: SimState = request.app[STATE]
    state.manager.segments.acknowledge(request.match_info["identifier"])
    return web.Response(status=200)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/statement", submit)
    app.router.add_get("/v1/statement/queued/{query_id}/{slug}/{token}", poll_queued)
    app.router.add_route("GET", "/v1/statement/executing/{query_id}/{slug}/{token}", poll_executing)
    app.router.add_route("HEAD", "/v1/statement/executing/{query_id}/{slug}/{token}", poll_executing)
    app.router.add_delete("/v1/statement/{phase:queued|executing}/{query_id}/{slug}/{token}", cancel)
    app.router.add_delete("/v1/statement/executing/partialCancel/{query_id}/{stage}/{slug}/{token}", partial_cancel)
    app.router.add_get("/v1/spooled/download/{identifier}", download_segment)
    app.router.add_get("/v1/spooled/ack/{identifier}", acknowledge_segment)
