"""The proxy: new queries are routed, every later request of a query follows it to its cluster.

Request path: client -> route (new query) or locate (known query) -> upstream call -> URI rewrite
-> record (history, in-flight count) -> client. Statement answers are read whole (a page is at most
a few MB) because their URIs are rewritten; everything else is streamed through untouched.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import AsyncIterator
from urllib.parse import parse_qsl, urlencode

import httpx
import orjson
from quart import Request, Response
from werkzeug.datastructures import Headers

from gateway import errors
from gateway.backends import BackendRegistry
from gateway.config import GatewayConfig
from gateway.history import QueryHistory
from gateway.query_ids import STATEMENT_PREFIX, killed_query_id, query_id_of
from gateway.query_locator import QueryLocator
from gateway.rewrite import BACKEND_PARAM, rewrite_uris
from gateway.routing import InFlight, NoBackendAvailable, Router
from gateway.store import BackendRecord, QueryRecord, now_ms

log = logging.getLogger("gateway.proxy")

# Hop-by-hop headers (RFC 9110 7.6.1) and those the HTTP stacks set themselves.
_NOT_FORWARDED = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)
_FORWARDED = ("x-forwarded-proto", "x-forwarded-host", "x-forwarded-port")
# Failures where the request cannot have reached the backend, so another backend may take it.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


class Proxy:
    def __init__(
        self,
        config: GatewayConfig,
        registry: BackendRegistry,
        router: Router,
        locator: QueryLocator,
        history: QueryHistory,
        in_flight: InFlight,
        client: httpx.AsyncClient,
    ) -> None:
        self.config = config
        self.registry = registry
        self.router = router
        self.locator = locator
        self.history = history
        self.in_flight = in_flight
        self.client = client

    # -- new queries ------------------------------------------------------------------------
    async def submit(self, request: Request) -> Response:
        body = await request.get_data()
        base = gateway_base(request)
        sql = body.decode("utf-8", errors="replace")
        target = killed_query_id(sql)
        if target is not None:
            # CALL system.runtime.kill_query must reach the cluster running its target.
            located = await self.locator.locate(target)
            if located is not None:
                return await self._forward_to(request, located[0], located[1], body, statement=True)
        requested = request.headers.get("X-Trino-Routing-Group", "").strip() or None
        try:
            decision = self.router.decide(await self.registry.all(), requested)
        except NoBackendAvailable as error:
            log.warning("%s", error)
            return errors.no_backend(base, str(error))
        if decision.fell_back:
            log.info(
                "routing group %r has no active backend; using the default group %r",
                decision.requested_group,
                decision.group,
            )
        refused: list[str] = []
        for backend in decision.ranked:
            try:
                upstream = await self._send(request, backend.proxy_to, body, statement=True)
            except _NOT_SENT as error:
                # Nothing reached this backend: the next-best one may take the query.
                refused.append(f"{backend.name} ({_reason(error)})")
                log.warning("backend %s refused a new query, trying the next one: %s", backend.name, error)
                continue
            except httpx.HTTPError as error:
                # The statement may have reached the backend: sending it elsewhere could run it twice.
                return errors.upstream_failure(
                    base, f"trino-gateway: backend {backend.name} failed while taking the query: {_reason(error)}", 502
                )
            return await self._submitted(request, upstream, backend, decision.group, sql, base)
        return errors.no_backend(
            base,
            f"trino-gateway: no backend of routing group '{decision.group}' could be reached: " + ", ".join(refused),
        )

    async def _submitted(
        self, request: Request, upstream: httpx.Response, backend: BackendRecord, group: str, sql: str, base: str
    ) -> Response:
        content = upstream.content
        if upstream.status_code == 200:
            query_id = _field(content, "id")
            if query_id:
                self.locator.remember(query_id, backend.name, backend.proxy_to)
                self.in_flight.started(query_id, backend.name)
                headers = request.headers
                await self.history.submitted(
                    QueryRecord(
                        query_id=query_id,
                        backend_name=backend.name,
                        backend_url=backend.proxy_to,
                        routing_group=group,
                        user_name=headers.get("X-Trino-User"),
                        source=headers.get("X-Trino-Source"),
                        client_tags=headers.get("X-Trino-Client-Tags"),
                        query_text=sql,
                        submitted_at=now_ms(),
                    )
                )
                if b'"nextUri"' not in content:
                    self._finished(query_id, content)
        content = rewrite_uris(content, base, backend.proxy_to, backend.name)
        return _response(upstream, content)

    # -- requests of a known query ----------------------------------------------------------
    async def follow_query(self, request: Request, query_id: str) -> Response:
        located = await self.locator.locate(query_id)
        if located is None:
            return Response("Query not found", status=404, content_type="text/plain")
        self.in_flight.seen(query_id)
        body = await request.get_data()
        statement = request.path.startswith(STATEMENT_PREFIX)
        return await self._forward_to(request, located[0], located[1], body, statement, query_id)

    async def _forward_to(
        self, request: Request, name: str, url: str, body: bytes, statement: bool, query_id: str | None = None
    ) -> Response:
        base = gateway_base(request)
        try:
            upstream = await self._send(request, url, body, statement)
        except httpx.TimeoutException as error:
            return errors.upstream_failure(
                base, f"trino-gateway: backend {name} did not answer in time: {_reason(error)}", 504, query_id
            )
        except httpx.HTTPError as error:
            return errors.upstream_failure(
                base,
                f"trino-gateway: backend {name} running query {query_id or '?'} is unreachable: {_reason(error)}",
                502,
                query_id,
            )
        if not statement:
            return _streamed(upstream)
        content = upstream.content
        if query_id is not None:
            if request.method == "DELETE" and upstream.status_code == 204:
                self.in_flight.finished(query_id)
                self.history.finished(query_id, "FAILED", "USER_CANCELED")
            elif upstream.status_code == 200 and request.method == "GET" and b'"nextUri"' not in content:
                self._finished(query_id, content)
        return _response(upstream, rewrite_uris(content, base, url, name))

    def _finished(self, query_id: str, content: bytes) -> None:
        self.in_flight.finished(query_id)
        self.history.finished_from_page(query_id, content)

    # -- everything else (UI, /v1/info, spooled segments) -----------------------------------
    async def forward_other(self, request: Request) -> Response:
        query_id = query_id_of(request.path, request.query_string.decode("latin-1"))
        if query_id is not None:
            return await self.follow_query(request, query_id)
        marked = request.args.get(BACKEND_PARAM)
        backend = await self.registry.get(marked) if marked else None
        if backend is None:
            try:
                backend = self.router.decide(await self.registry.all(), None).ranked[0]
            except NoBackendAvailable as error:
                return errors.api_error(503, str(error))
        return await self._forward_to(
            request, backend.name, backend.proxy_to, await request.get_data(), statement=False
        )

    # -- the upstream call ------------------------------------------------------------------
    async def _send(self, request: Request, backend_url: str, body: bytes, statement: bool) -> httpx.Response:
        params = [
            (k, v)
            for k, v in parse_qsl(request.query_string.decode("latin-1"), keep_blank_values=True)
            if k != BACKEND_PARAM
        ]
        url = backend_url + request.path + (f"?{urlencode(params)}" if params else "")
        upstream_request = self.client.build_request(
            request.method, url, content=body or None, headers=self._upstream_headers(request, statement)
        )
        response = await self.client.send(upstream_request, stream=True)
        if statement:
            try:
                await response.aread()
            finally:
                await response.aclose()
        return response

    def _upstream_headers(self, request: Request, statement: bool) -> list[tuple[str, str]]:
        headers = []
        client_forwarded_for = None
        for name, value in request.headers.items():
            lower = name.lower()
            if lower in _NOT_FORWARDED or (statement and lower == "accept-encoding"):
                continue
            if lower == "x-forwarded-for":
                client_forwarded_for = value
                continue
            if self.config.proxy.forwarded_headers and lower in _FORWARDED:
                continue
            headers.append((name, value))
        if self.config.proxy.forwarded_headers:
            remote = request.remote_addr or "unknown"
            headers.append(("X-Forwarded-For", f"{client_forwarded_for}, {remote}" if client_forwarded_for else remote))
            base = gateway_base(request)
            scheme, authority = base.split("://", 1)
            headers.append(("X-Forwarded-Proto", scheme))
            headers.append(("X-Forwarded-Host", authority))
            if ":" in authority.rsplit("]", 1)[-1]:
                headers.append(("X-Forwarded-Port", authority.rsplit(":", 1)[1]))
        headers.append(("Via", "1.1 trino-gateway"))
        return headers


def gateway_base(request: Request) -> str:
    """``scheme://host[:port]`` the client reached the gateway at (a fronting proxy may say so)."""
    scheme = request.headers.get("X-Forwarded-Proto", request.scheme).split(",")[0].strip()
    host = request.headers.get("X-Forwarded-Host", request.headers.get("Host", request.host)).split(",")[0].strip()
    return f"{scheme}://{host}"


def _field(content: bytes, name: str) -> str | None:
    try:
        value = orjson.loads(content).get(name)
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return value if isinstance(value, str) else None


def _reason(error: httpx.HTTPError) -> str:
    text = str(error) or type(error).__name__
    return f"{type(error).__name__}: {text}" if text != type(error).__name__ else text


# Which gateway process answered: lets operators (and tests) see workers share queries.
_WORKER = f"{socket.gethostname()}:{os.getpid()}"


def _client_headers(upstream: httpx.Response, decoded: bool) -> Headers:
    headers = Headers()
    for name, value in upstream.headers.multi_items():
        lower = name.lower()
        if lower in _NOT_FORWARDED or (decoded and lower == "content-encoding"):
            continue
        # add(), never set: repeated X-Trino-Set-Session lines must reach the client as separate lines.
        headers.add(name, value)
    headers.add("X-Trino-Gateway-Worker", _WORKER)
    return headers


def _response(upstream: httpx.Response, content: bytes) -> Response:
    return Response(content, status=upstream.status_code, headers=_client_headers(upstream, decoded=True))


def _streamed(upstream: httpx.Response) -> Response:
    async def body() -> AsyncIterator[bytes]:
        try:
            async for chunk in upstream.aiter_raw():
                yield chunk
        finally:
            await upstream.aclose()

    return Response(body(), status=upstream.status_code, headers=_client_headers(upstream, decoded=False))
