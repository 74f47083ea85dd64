"""The proxy: new queries are routed, every later request of a query follows it to its cluster.

Request path: client -> route (new query) or locate (known query) -> upstream call -> URI rewrite
-> record (history, in-flight count) -> client. Statement answers are read whole (a page is at most
a few MB) because their URIs are rewritten; everything else is streamed through untouched.

This is a plain ASGI application: every proxied request passes here, so it does no more per
request than it must (no framework request objects, headers kept as the bytes they arrive as).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Iterable
from typing import Any
from urllib.parse import parse_qsl, urlencode

import orjson

from gateway import errors
from gateway.query_ids import STATEMENT_PREFIX, killed_query_id, query_id_of
from gateway.rewrite import BACKEND_PARAM, rewrite_uris
from gateway.routing import NoBackendAvailable
from gateway.scope import header
from gateway.services import Services
from gateway.store import BackendRecord, QueryRecord, now_ms
from gateway.upstream import FAILURES, NOT_SENT, TIMEOUTS, describe
from observability.request import ObservedRequest

log = logging.getLogger("gateway.proxy")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

# Hop-by-hop headers (RFC 9110 7.6.1) and those the HTTP stacks set themselves.
_NOT_FORWARDED = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"host",
        b"content-length",
    }
)
_FORWARDED = frozenset({b"x-forwarded-proto", b"x-forwarded-host", b"x-forwarded-port", b"x-forwarded-for"})
# Which gateway process answered: lets operators (and tests) see workers share queries.
_WORKER = (b"x-trino-gateway-worker", f"{socket.gethostname()}:{os.getpid()}".encode())
_VIA = (b"via", b"1.1 trino-gateway")
_IDENTITY = (b"accept-encoding", b"identity")
# Answers to a submission that mean no query was created: it may go to the next backend.
_NOT_TAKEN = frozenset({502, 503, 504})
# Where a request's ObservedRequest (metrics and spans) travels with it.
OBSERVED = "trino_gateway.observed"


def gateway_base(scope: Scope) -> str:
    """``scheme://host[:port]`` the client reached the gateway at (a fronting proxy may say so)."""
    scheme = host = None
    for key, value in scope["headers"]:
        if key == b"host" and host is None:
            host = value.decode("latin-1")
        elif key == b"x-forwarded-host":
            host = value.decode("latin-1").split(",")[0].strip()
        elif key == b"x-forwarded-proto":
            scheme = value.decode("latin-1").split(",")[0].strip()
    if host is None:
        server = scope.get("server") or ("localhost", 80)
        host = f"{server[0]}:{server[1]}"
    return f"{scheme or scope.get('scheme', 'http')}://{host}"


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def _respond(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    headers.append((b"content-length", str(len(body)).encode()))
    headers.append(_WORKER)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _respond_json(send: Send, status: int, document: Any) -> None:
    await _respond(send, status, [(b"content-type", b"application/json")], orjson.dumps(document))


async def _respond_text(send: Send, status: int, text: str) -> None:
    await _respond(send, status, [(b"content-type", b"text/plain; charset=utf-8")], text.encode())


def _client_headers(raw: Iterable[tuple[bytes, bytes]], keep_length: bool = False) -> list[tuple[bytes, bytes]]:
    # Every line kept as it came: repeated X-Trino-Set-Session lines must stay separate lines.
    return [
        (k, v) for k, v in raw if k.lower() not in _NOT_FORWARDED or (keep_length and k.lower() == b"content-length")
    ]


class Proxy:
    """ASGI application for every proxied Trino path."""

    def __init__(self, services: Callable[[], Services]) -> None:
        self._services = services

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        services = self._services()
        observed = scope[OBSERVED] = services.observer.begin(scope, send)
        try:
            await self._dispatch(services, scope, receive, observed.send)
        except Exception as error:
            observed.crashed(error)
            raise
        finally:
            observed.finish()

    async def _dispatch(self, services: Services, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"]
        if path.startswith(STATEMENT_PREFIX):
            query_id = query_id_of(path, "")
            if query_id is None:
                await _respond_text(send, 404, "Query not found")
                return
            await self.follow_query(services, scope, receive, send, query_id)
        elif path == "/v1/statement":
            if scope["method"] != "POST":
                await _respond_text(send, 405, "Method not allowed")
                return
            await self.submit(services, scope, receive, send)
        else:
            await self.forward_other(services, scope, receive, send)

    # -- new queries ------------------------------------------------------------------------
    async def submit(self, services: Services, scope: Scope, receive: Receive, send: Send) -> None:
        body = await _read_body(receive)
        base = gateway_base(scope)
        sql = body.decode("utf-8", errors="replace")
        target = killed_query_id(sql)
        observed: ObservedRequest = scope[OBSERVED]
        if target is not None:
            # CALL system.runtime.kill_query must reach the cluster running its target.
            located = await services.locator.locate(target)
            if located is not None:
                await self._forward(services, scope, send, located[0], located[1], body, True, None)
                return
        routing_began = observed.clock()
        selection = await services.selector.select(scope, body)
        if selection.rejected:
            await _respond_text(
                send, 400, "trino-gateway: the routing service rejected the query: " + "; ".join(selection.rejected)
            )
            return
        try:
            decision = services.router.decide(
                await services.registry.all(), selection.group, user=header(scope, b"x-trino-user")
            )
        except NoBackendAvailable as error:
            observed.no_backend(error.group, routing_began, str(error))
            log.warning("%s", error)
            await _respond_json(send, 200, errors.no_backend_document(base, str(error)))
            return
        observed.decided(decision, routing_began, selection.rule)
        if decision.fell_back:
            log.info(
                "routing group %r has no active backend; using the default group %r",
                decision.requested_group,
                decision.group,
            )
        headers = self._upstream_headers(services, scope, base, statement=True)
        if selection.headers:
            extra = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in selection.headers]
            added = {name for name, _ in extra}
            headers = [(k, v) for k, v in headers if k not in added] + extra
        refused: list[str] = []
        loop_time = asyncio.get_running_loop().time
        for backend in decision.ranked:
            began = loop_time()
            url = backend.proxy_to + "/v1/statement"
            sent = observed.upstream_begin(backend.name, "POST", url, headers)
            try:
                answer = await services.pool.request(backend.proxy_to, "POST", "/v1/statement", sent, body)
                status, raw_headers, content = answer.status, answer.headers, answer.body
            except NOT_SENT as error:
                # Nothing reached this backend: the next-best one may take the query.
                observed.upstream_failed(error, isinstance(error, TIMEOUTS), refused=True)
                services.health.request_failed(backend.name, describe(error))
                refused.append(f"{backend.name} ({describe(error)})")
                log.warning("backend %s refused a new query, trying the next one: %s", backend.name, error)
                continue
            except FAILURES as error:
                # The statement may have reached the backend: sending it elsewhere could run it twice.
                observed.upstream_failed(error, isinstance(error, TIMEOUTS))
                services.health.request_failed(backend.name, describe(error))
                message = f"trino-gateway: backend {backend.name} failed while taking the query: {describe(error)}"
                await self._query_failed(services, send, base, None, message)
                return
            observed.upstream_end(status)
            if status in _NOT_TAKEN and backend is not decision.ranked[-1]:
                # The backend (or a proxy in front of it) did not take the query: the next one may.
                observed.not_taken()
                services.health.request_failed(backend.name, f"HTTP {status} to a new query")
                refused.append(f"{backend.name} (HTTP {status})")
                log.warning("backend %s answered HTTP %d to a new query, trying the next one", backend.name, status)
                continue
            if status >= 500:
                services.health.request_failed(backend.name, f"HTTP {status} to a new query")
            elif status == 200 and not _is_document(content):
                # The statement reached the backend: it is not sent elsewhere.
                services.health.request_failed(backend.name, NOT_A_DOCUMENT)
                message = f"trino-gateway: backend {backend.name} {NOT_A_DOCUMENT} to a new query"
                await self._query_failed(services, send, base, None, message)
                return
            else:
                services.health.request_succeeded(backend.name, loop_time() - began)
            await self._submitted(
                services, scope, send, backend, decision.group, sql, base, status, raw_headers, content
            )
            return
        message = f"trino-gateway: no backend of routing group '{decision.group}' could be reached: " + ", ".join(
            refused
        )
        observed.unreachable(message)
        await _respond_json(send, 200, errors.no_backend_document(base, message))

    async def _submitted(
        self,
        services: Services,
        scope: Scope,
        send: Send,
        backend: BackendRecord,
        group: str,
        sql: str,
        base: str,
        status: int,
        raw_headers: list[tuple[bytes, bytes]],
        content: bytes,
    ) -> None:
        if status == 200:
            query_id = _field(content, "id")
            services.health.of(backend.name).routed_since_check += 1
            if query_id:
                trace_parent = scope[OBSERVED].accepted(query_id, backend.name, group)
                services.locator.remember(query_id, backend.name, backend.proxy_to, trace_parent)
                services.in_flight.started(query_id, backend.name)
                services.history.submitted(
                    QueryRecord(
                        query_id=query_id,
                        backend_name=backend.name,
                        backend_url=backend.proxy_to,
                        routing_group=group,
                        user_name=header(scope, b"x-trino-user"),
                        source=header(scope, b"x-trino-source"),
                        client_tags=header(scope, b"x-trino-client-tags"),
                        query_text=sql,
                        submitted_at=now_ms(),
                        trace_parent=trace_parent,
                    )
                )
                if b'"nextUri"' not in content:
                    self._finished(services, query_id, content)
        content = rewrite_uris(content, base, backend.proxy_to, backend.name)
        await _respond(send, status, _client_headers(raw_headers), content)

    # -- requests of a known query ----------------------------------------------------------
    async def follow_query(self, services: Services, scope: Scope, receive: Receive, send: Send, query_id: str) -> None:
        # The cache answers almost every poll; only a miss costs a store lookup.
        located = services.locator.cached(query_id) or await services.locator.locate(query_id)
        if located is None:
            await _respond_text(send, 404, "Query not found")
            return
        scope[OBSERVED].located(query_id, located[0], located[2])
        services.in_flight.seen(query_id)
        method = scope["method"]
        body = b"" if method in ("GET", "HEAD", "DELETE") else await _read_body(receive)
        statement = scope["path"].startswith(STATEMENT_PREFIX)
        await self._forward(services, scope, send, located[0], located[1], body, statement, query_id)

    async def _forward(
        self,
        services: Services,
        scope: Scope,
        send: Send,
        name: str,
        url: str,
        body: bytes,
        statement: bool,
        query_id: str | None,
    ) -> None:
        base = gateway_base(scope)
        method = scope["method"]
        path = scope["path"] + _query_string(scope)
        target = url + path
        observed: ObservedRequest = scope[OBSERVED]
        headers = observed.upstream_begin(
            name, method, target, self._upstream_headers(services, scope, base, statement)
        )
        if not statement or method == "HEAD":
            await self._stream(services, send, method, target, headers, body, name, base, query_id, observed)
            return
        try:
            answer = await services.pool.request(url, method, path, headers, body)
            status, raw_headers, content = answer.status, answer.headers, answer.body
        except FAILURES as error:
            observed.upstream_failed(error, isinstance(error, TIMEOUTS))
            services.health.request_failed(name, describe(error))
            await self._query_failed(services, send, base, query_id, _failure_message(name, query_id, error))
            return
        observed.upstream_end(status)
        if status >= 500:
            services.health.request_failed(name, f"HTTP {status}")
        elif status == 200 and method == "GET" and not _is_document(content):
            services.health.request_failed(name, NOT_A_DOCUMENT)
            message = f"trino-gateway: backend {name} {NOT_A_DOCUMENT} for query {query_id or '?'}"
            await self._query_failed(services, send, base, query_id, message)
            return
        if query_id is not None:
            if method == "DELETE" and status == 204:
                services.in_flight.finished(query_id)
                services.history.finished(query_id, "FAILED", "USER_CANCELED")
            elif status == 200 and method == "GET":
                services.health.poll_answered(name)
                if b'"nextUri"' not in content:
                    self._finished(services, query_id, content)
        await _respond(send, status, _client_headers(raw_headers), rewrite_uris(content, base, url, name))

    async def _stream(
        self,
        services: Services,
        send: Send,
        method: str,
        target: str,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        name: str,
        base: str,
        query_id: str | None,
        observed: ObservedRequest,
    ) -> None:
        try:
            text_headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in headers]
            upstream = await services.session.request(method, target, data=body or None, headers=text_headers)
        except FAILURES as error:
            observed.upstream_failed(error, isinstance(error, TIMEOUTS))
            services.health.request_failed(name, describe(error))
            await self._upstream_failed(send, base, name, query_id, error)
            return
        observed.upstream_end(upstream.status)
        try:
            response_headers = _client_headers(upstream.raw_headers, keep_length=True)
            response_headers.append(_WORKER)
            await send({"type": "http.response.start", "status": upstream.status, "headers": response_headers})
            async for chunk in upstream.content.iter_any():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        finally:
            upstream.release()

    async def _query_failed(
        self, services: Services, send: Send, base: str, query_id: str | None, message: str
    ) -> None:
        """A statement request whose backend is gone, hung or talking nonsense: the query is FAILED,
        said the way every Trino client reads it (HTTP 200 and the error in the document). A 502/504
        made clients retry in vain and then report only the status: the Python client raised
        "error 502: bad gateway"; garbage passed on made it raise a JSON decoding error."""
        document = errors.failed_query(base, message, query_id=query_id)
        if query_id is not None:
            services.in_flight.finished(query_id)
            services.history.finished(query_id, "FAILED", document["error"]["errorName"])
        await _respond_json(send, 200, document)

    async def _upstream_failed(
        self, send: Send, base: str, name: str, query_id: str | None, error: BaseException
    ) -> None:
        status = 504 if isinstance(error, TIMEOUTS) else 502
        await _respond_json(send, status, errors.failed_query(base, _failure_message(name, query_id, error), query_id))

    def _finished(self, services: Services, query_id: str, content: bytes) -> None:
        services.in_flight.finished(query_id)
        services.history.finished_from_page(query_id, content)

    # -- everything else (UI, /v1/info, spooled segments) -----------------------------------
    async def forward_other(self, services: Services, scope: Scope, receive: Receive, send: Send) -> None:
        query_id = query_id_of(scope["path"], scope["query_string"].decode("latin-1"))
        if query_id is not None:
            await self.follow_query(services, scope, receive, send, query_id)
            return
        marked = dict(parse_qsl(scope["query_string"].decode("latin-1"))).get(BACKEND_PARAM)
        backend = await services.registry.get(marked) if marked else None
        if backend is None:
            try:
                backend = services.router.decide(await services.registry.all(), None).ranked[0]
            except NoBackendAvailable as error:
                await _respond_json(send, 503, {"error": str(error)})
                return
        body = b"" if scope["method"] in ("GET", "HEAD") else await _read_body(receive)
        await self._forward(services, scope, send, backend.name, backend.proxy_to, body, False, None)

    # -- headers to the backend -------------------------------------------------------------
    def _upstream_headers(
        self, services: Services, scope: Scope, base: str, statement: bool
    ) -> list[tuple[bytes, bytes]]:
        return upstream_headers(scope, base, statement, services.config.proxy.forwarded_headers)


def upstream_headers(scope: Scope, base: str, statement: bool, forwarded: bool) -> list[tuple[bytes, bytes]]:
    """The client's headers as the backend gets them: hop-by-hop ones dropped, forwarding added.
    Names are lower case (as ASGI servers give them) and kept as bytes all the way through."""
    headers = []
    client_forwarded_for = None
    for key, value in scope["headers"]:
        if key in _NOT_FORWARDED or (statement and key == b"accept-encoding"):
            continue
        if forwarded and key in _FORWARDED:
            if key == b"x-forwarded-for":
                client_forwarded_for = value
            continue
        headers.append((key, value))
    if forwarded:
        client = scope.get("client")
        remote = client[0].encode() if client else b"unknown"
        headers.append((b"x-forwarded-for", client_forwarded_for + b", " + remote if client_forwarded_for else remote))
        scheme, authority = base.split("://", 1)
        headers.append((b"x-forwarded-proto", scheme.encode("latin-1")))
        headers.append((b"x-forwarded-host", authority.encode("latin-1")))
        if ":" in authority.rsplit("]", 1)[-1]:
            headers.append((b"x-forwarded-port", authority.rsplit(":", 1)[1].encode("latin-1")))
    headers.append(_VIA)
    if statement:
        # Statement answers are rewritten, so they must arrive uncompressed.
        headers.append(_IDENTITY)
    return headers


NOT_A_DOCUMENT = "answered something that is not a Trino query result"


def _is_document(content: bytes) -> bool:
    """A statement answer is one JSON object. Two byte comparisons on the hot path catch the cut-off
    and non-JSON answers a broken backend (or something in front of it) sends."""
    return content[:1] == b"{" and content.endswith((b"}", b"}\n", b"}\r\n"))


def _failure_message(name: str, query_id: str | None, error: BaseException) -> str:
    if isinstance(error, TIMEOUTS):
        return f"trino-gateway: backend {name} did not answer in time for query {query_id or '?'}: {describe(error)}"
    return f"trino-gateway: backend {name} running query {query_id or '?'} is unreachable: {describe(error)}"


def _query_string(scope: Scope) -> str:
    raw = scope["query_string"]
    if not raw:
        return ""
    if BACKEND_PARAM.encode() not in raw:
        return "?" + raw.decode("latin-1")
    params = [(k, v) for k, v in parse_qsl(raw.decode("latin-1"), keep_blank_values=True) if k != BACKEND_PARAM]
    return f"?{urlencode(params)}" if params else ""


def _field(content: bytes, name: str) -> str | None:
    try:
        value = orjson.loads(content).get(name)
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return value if isinstance(value, str) else None
