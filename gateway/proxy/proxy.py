"""The proxy: new queries are routed, every later request of a query follows it to its cluster.

Request path: client -> classify -> route (new query) or look up (known query) -> upstream call ->
URI rewrite -> query book (one call per event) -> client. Statement answers are read whole (a page is
at most a few MB) because their URIs are rewritten; everything else is streamed through untouched.

This is a plain ASGI application: every proxied request passes here, so it does no more per
request than it must (no framework request objects, headers kept as the bytes they arrive as).
"""

from __future__ import annotations

import logging
import time
from urllib.parse import parse_qsl, urlencode

import orjson

from gateway import errors
from gateway.backends.record import Backend
from gateway.backends.registry import BackendRegistry
from gateway.classify import Classified, Route
from gateway.config import ProxyConfig
from gateway.health import HealthChecker
from gateway.proxy import headers as hdr
from gateway.proxy import oauth2
from gateway.proxy.client_auth import ClientAuth
from gateway.proxy.exchange import WORKER, BodyRefused, Exchange, Receive, Scope, Send
from gateway.query_book import FAILED, Query, QueryBook
from gateway.query_ids import killed_query_id
from gateway.rewrite import BACKEND_PARAM, rewrite_uris
from gateway.routing import NoBackendAvailable, RouteDecider
from gateway.rules import VERIFIED_USER, GroupSelector
from gateway.transactions import is_transaction_id, transaction_control
from gateway.upstream import Answer, NotSent, Upstream, UpstreamError, UpstreamTimeout, describe
from observability.observer import Observer

log = logging.getLogger("gateway.proxy")

# Answers to a submission that mean no query was created: it may go to the next backend.
_NOT_TAKEN = frozenset({502, 503, 504})
NOT_A_DOCUMENT = "answered something that is not a Trino query result"
_PARTIAL_CANCEL = "/partialCancel/"
# How a statement was routed when no selector chose its group (the history's routing_source).
ROUTED_TO_TRANSACTION_OWNER = "transaction"
ROUTED_TO_KILL_TARGET = "kill_query"


class ResponseAborted(Exception):
    """The backend failed in the middle of a streamed answer: the client's connection is dropped so
    that it sees a cut-off answer as one (the failure is logged where it happened)."""


class Proxy:
    """ASGI application for every proxied Trino path (the ASGI entry classifies the request first)."""

    def __init__(
        self,
        settings: ProxyConfig,
        registry: BackendRegistry,
        selector: GroupSelector,
        decider: RouteDecider,
        book: QueryBook,
        health: HealthChecker,
        upstream: Upstream,
        observer: Observer,
        client_auth: ClientAuth | None = None,
    ) -> None:
        self.forwarded = settings.forwarded_headers
        self.max_query_length = settings.max_query_length
        self.max_body_bytes = settings.max_body_bytes
        self.body_timeout = settings.body_timeout
        self.client_auth = client_auth
        self.registry = registry
        self.selector = selector
        self.decider = decider
        self.book = book
        self.health = health
        self.upstream = upstream
        self.observer = observer

    async def __call__(self, scope: Scope, receive: Receive, send: Send, classified: Classified) -> None:
        observed = self.observer.begin(scope, send, classified.kind)
        scope[OBSERVED] = observed
        exchange = Exchange(scope, receive, observed, classified, self.max_body_bytes, self.body_timeout)
        try:
            route = classified.route
            if self.client_auth is not None and not await self.client_auth.admit(exchange):
                return
            if route is Route.STATEMENT:
                await self.follow(exchange, statement=True)
            elif route is Route.SUBMIT:
                await self.submit(exchange)
            elif route is Route.OF_QUERY:
                await self.follow(exchange, statement=False)
            elif route is Route.OTHER:
                await self.forward_other(exchange)
            elif route is Route.NOT_ALLOWED:
                await exchange.respond_text(405, "Method not allowed")
            else:
                await exchange.respond_text(404, "Query not found")
        except BodyRefused as refused:
            await self._body_refused(exchange, refused)
        except Exception as error:
            observed.crashed(error)
            raise
        finally:
            observed.finish()

    # -- new queries ------------------------------------------------------------------------
    async def submit(self, x: Exchange) -> None:
        # A statement of max_query_length characters has at most four UTF-8 bytes per character.
        body = await x.body(limit=4 * self.max_query_length)
        sql = body.decode("utf-8", errors="replace")
        if len(body) > self.max_query_length and len(sql) > self.max_query_length:
            raise BodyRefused(413, _too_long(len(sql), self.max_query_length))
        observed = x.observed
        user = x.scope.get(VERIFIED_USER) or x.header(b"x-trino-user")
        transaction = x.header(b"x-trino-transaction-id")
        transaction = transaction if is_transaction_id(transaction) else None
        target = killed_query_id(sql)
        killed = None if target is None else await self.book.find(target)
        binding = None if transaction is None else await self.book.transactions.owner(transaction)
        extra: tuple[tuple[str, str], ...] = ()
        if killed is not None:
            # CALL system.runtime.kill_query must reach the cluster running its target.
            group, ranked = killed.group, [killed.backend]
            routed_by: tuple[str, str | None] = (ROUTED_TO_KILL_TARGET, None)
        elif binding is not None:
            # A statement of a transaction goes to the backend that owns it, whatever the rules, the
            # routers, its health or its active flag say: no other backend knows the transaction.
            observed.transaction = transaction
            owner = await self.book.backend_at(binding.backend_name, binding.backend_url)
            group, ranked = owner.routing_group, [owner]
            routed_by = (ROUTED_TO_TRANSACTION_OWNER, None)
            observed.decided(group, group, [owner.name], observed.clock(), "transaction")
        else:
            routing_began = observed.clock()
            selection = await self.selector.select(x.scope, body)
            if selection.rejected:
                message = "trino-gateway: the routing service rejected the query: " + "; ".join(selection.rejected)
                await x.respond_text(400, message)
                return
            try:
                decision = self.decider.decide(await self.registry.all(), selection.group, user=user)
            except NoBackendAvailable as error:
                observed.no_backend(error.group, routing_began, str(error))
                log.warning("%s", error)
                await x.respond_json(200, errors.no_backend_document(x.base, str(error)))
                return
            group, ranked, extra = decision.group, decision.ranked, selection.headers
            routed_by = (selection.source, selection.rule)
            observed.decided(decision.requested_group, group, [b.name for b in ranked], routing_began, selection.rule)
            if decision.fell_back:
                log.info(
                    "routing group %r has no active backend; using the default group %r",
                    decision.requested_group,
                    group,
                )
        headers = hdr.to_backend(x.scope, x.base, True, self.forwarded)
        if extra:
            headers = hdr.with_extra(headers, extra)
        refused: list[str] = []
        last = ranked[-1]
        for backend in ranked:
            began = time.perf_counter()
            sent = observed.upstream_begin(backend.name, "POST", backend.proxy_to + "/v1/statement", headers)
            try:
                answer = await self.upstream.send(backend, "POST", "/v1/statement", sent, body)
            except NotSent as error:
                self._call_failed(x, backend, error, refused=True)
                if binding is not None:
                    await self._query_failed(x, None, _owner_unreachable(backend.name, transaction, error))
                    return
                # Nothing reached this backend: the next-best one may take the query.
                refused.append(f"{backend.name} ({describe(error)})")
                log.warning("backend %s refused a new query, trying the next one: %s", backend.name, error)
                continue
            except UpstreamError as error:
                # The statement may have reached the backend: sending it elsewhere could run it twice.
                self._call_failed(x, backend, error)
                message = f"trino-gateway: backend {backend.name} failed while taking the query: {describe(error)}"
                await self._query_failed(x, None, message)
                return
            status, content = answer.status, answer.body
            observed.upstream_end(status)
            if status in _NOT_TAKEN and backend is not last:
                # The backend (or a proxy in front of it) did not take the query: the next one may.
                observed.not_taken()
                self.health.request_failed(backend.name, f"HTTP {status} to a new query")
                refused.append(f"{backend.name} (HTTP {status})")
                log.warning("backend %s answered HTTP %d to a new query, trying the next one", backend.name, status)
                continue
            if status >= 500:
                self.health.request_failed(backend.name, f"HTTP {status} to a new query")
            elif status == 200 and not _is_document(content):
                # The statement reached the backend: it is not sent elsewhere.
                self.health.request_failed(backend.name, NOT_A_DOCUMENT)
                await self._query_failed(
                    x, None, f"trino-gateway: backend {backend.name} {NOT_A_DOCUMENT} to a new query"
                )
                return
            else:
                self.health.request_succeeded(backend.name, time.perf_counter() - began)
            if status == 200:
                await self._accepted(x, backend, group, sql, transaction, answer, routed_by)
            response_headers = hdr.to_client(answer.headers)
            if status == 401:
                response_headers = oauth2.challenge_on_gateway(response_headers, x.base, backend.name)
            await x.respond(status, response_headers, rewrite_uris(content, x.base, backend.proxy_to, backend.name))
            return
        message = f"trino-gateway: no backend of routing group '{group}' could be reached: " + ", ".join(refused)
        observed.unreachable(message)
        await x.respond_json(200, errors.no_backend_document(x.base, message))

    async def _accepted(
        self,
        x: Exchange,
        backend: Backend,
        group: str,
        sql: str,
        transaction: str | None,
        answer: Answer,
        routed_by: tuple[str, str | None],
    ) -> None:
        """A backend took the query (``routed_by``: what chose its group, and the rule that did)."""
        content = answer.body
        query_id = _field(content, "id")
        if query_id is None:
            return
        trace_parent = x.observed.accepted(query_id, backend.name, group)
        query = Query(
            query_id,
            backend,
            group,
            user=x.scope.get(VERIFIED_USER) or x.header(b"x-trino-user"),
            trace_parent=trace_parent,
            transaction=transaction,
            control=transaction_control(sql),
            routing_source=routed_by[0],
            routing_rule=routed_by[1],
        )
        self.book.accepted(query, sql, x.header(b"x-trino-source"), x.header(b"x-trino-client-tags"))
        await self._answered(query, answer)

    async def _answered(self, query: Query, answer: Answer) -> None:
        """A result page of ``query`` came: what it says about the query's life goes to the book."""
        if query.control is not None:
            await self.book.transaction_answer(query, answer.headers)
        if b'"nextUri"' not in answer.body:
            self.book.finished_with_page(query, answer.body)
            if query.transaction is not None:
                await self.book.transaction_outcome(query)

    # -- requests of a known query ----------------------------------------------------------
    async def follow(self, x: Exchange, statement: bool) -> None:
        query_id = x.classified.query_id
        assert query_id is not None
        # The book answers almost every poll; only a miss costs a store lookup.
        query = self.book.get(query_id) or await self.book.find(query_id)
        if query is None:
            await x.respond_text(404, "Query not found")
            return
        x.observed.located(query_id, query.backend.name, query.trace_parent)
        if query.transaction is not None:
            x.observed.transaction = query.transaction
        self.book.polled(query)
        method = x.method
        body = b"" if method in ("GET", "HEAD", "DELETE") else await x.body()
        if statement and method != "HEAD":
            await self._statement(x, query.backend, body, query)
        else:
            await self._stream(x, query.backend, body, query)

    async def _statement(self, x: Exchange, backend: Backend, body: bytes, query: Query) -> None:
        """A poll or cancel of ``query``: the answer is read whole and its URIs rewritten."""
        method = x.method
        target = x.scope["path"] + _query_string(x.scope)
        name = backend.name
        observed = x.observed
        headers = observed.upstream_begin(
            name, method, backend.proxy_to + target, hdr.to_backend(x.scope, x.base, True, self.forwarded)
        )
        try:
            answer = await self.upstream.send(backend, method, target, headers, body)
        except UpstreamError as error:
            self._call_failed(x, backend, error)
            await self._query_failed(x, query, _failure_message(name, query.id, error))
            return
        status, content = answer.status, answer.body
        observed.upstream_end(status)
        if status >= 500:
            self.health.request_failed(name, f"HTTP {status}")
        elif status == 200 and method == "GET":
            if not _is_document(content):
                self.health.request_failed(name, NOT_A_DOCUMENT)
                await self._query_failed(
                    x, query, f"trino-gateway: backend {name} {NOT_A_DOCUMENT} for query {query.id}"
                )
                return
            self.health.poll_answered(name)
            await self._answered(query, answer)
        elif method == "DELETE" and status == 204 and _PARTIAL_CANCEL not in target:
            # (A partial cancel stops one stage: the query goes on.)
            self.book.finished(query, FAILED, "USER_CANCELED")
        await x.respond(status, hdr.to_client(answer.headers), rewrite_uris(content, x.base, backend.proxy_to, name))

    async def _stream(
        self, x: Exchange, backend: Backend, body: bytes, query: Query | None, extra: hdr.RawHeaders | None = None
    ) -> None:
        """Anything else (UI, spooled segments, HEAD): passed through as it arrives, untouched
        (``extra``: response headers the gateway adds)."""
        method = x.method
        target = x.scope["path"] + _query_string(x.scope)
        observed = x.observed
        headers = observed.upstream_begin(
            backend.name, method, backend.proxy_to + target, hdr.to_backend(x.scope, x.base, False, self.forwarded)
        )
        query_id = None if query is None else query.id
        try:
            async with self.upstream.stream(backend, method, target, headers, body) as answer:
                observed.upstream_end(answer.status)
                response_headers = hdr.to_client(answer.headers, keep_length=True)
                if answer.status == 401:
                    response_headers = oauth2.challenge_on_gateway(response_headers, x.base, backend.name)
                if extra:
                    response_headers.extend(extra)
                response_headers.append(WORKER)
                await x.send({"type": "http.response.start", "status": answer.status, "headers": response_headers})
                try:
                    async for chunk in answer.body:
                        await x.send({"type": "http.response.body", "body": chunk, "more_body": True})
                except UpstreamError as error:
                    self.health.request_failed(backend.name, describe(error))
                    log.warning("backend %s failed in the middle of an answer to %s: %s", backend.name, target, error)
                    raise ResponseAborted(str(error)) from None
                await x.send({"type": "http.response.body", "body": b""})
        except UpstreamError as error:
            self._call_failed(x, backend, error)
            status = 504 if isinstance(error, UpstreamTimeout) else 502
            await x.respond_json(
                status, errors.failed_query(x.base, _failure_message(backend.name, query_id, error), query_id)
            )

    # -- everything else (UI, /v1/info, spooled segments) -----------------------------------
    async def forward_other(self, x: Exchange) -> None:
        marked = dict(parse_qsl(x.scope["query_string"].decode("latin-1"))).get(BACKEND_PARAM)
        path = x.scope["path"]
        if marked is None and path == oauth2.CALLBACK_PATH:
            marked = oauth2.login_backend(x.header(b"cookie"))
        backend = await self.registry.get(marked) if marked else None
        if backend is None:
            try:
                backend = self.decider.decide(await self.registry.all(), None).ranked[0]
            except NoBackendAvailable as error:
                await x.respond_json(503, {"error": str(error)})
                return
        extra: hdr.RawHeaders = []
        if marked is not None and path.startswith(oauth2.INITIATE_PREFIX):
            extra.append(oauth2.login_cookie(backend.name, x.base))
        body = b"" if x.method in ("GET", "HEAD") else await x.body()
        await self._stream(x, backend, body, None, extra)

    async def _body_refused(self, x: Exchange, refused: BodyRefused) -> None:
        """A request whose body the gateway would not take: nothing of it reached a backend."""
        if refused.status == 499:
            log.warning("client %s left while sending %s %s", x.scope.get("client"), x.method, x.scope["path"])
            return  # nobody to answer
        log.warning("refused %s %s from %s: %s", x.method, x.scope["path"], x.scope.get("client"), refused.message)
        x.observed.refused_by_gateway(refused.message)
        if x.classified.route is not Route.SUBMIT:
            await x.respond_text(refused.status, f"trino-gateway: {refused.message}")
            return
        # A new query is answered as Trino answers a statement it refuses: a FAILED query.
        if refused.status == 413:
            message = refused.message
            if not message.startswith("Query text length"):
                message = _too_long(None, self.max_query_length)
            document = errors.failed_query(x.base, message, "QUERY_TEXT_TOO_LARGE", 35, "USER_ERROR")
        else:
            document = errors.failed_query(
                x.base, f"trino-gateway: {refused.message}", "GENERIC_USER_ERROR", 0, "USER_ERROR"
            )
        x.observed.unreachable(document["error"]["message"])
        await x.respond_json(200, document)

    # -- failures: one place for the bookkeeping ----------------------------------------------
    def _call_failed(self, x: Exchange, backend: Backend, error: UpstreamError, refused: bool = False) -> None:
        """A call to ``backend`` ended without an answer: the request's observation and the backend's
        health both hear of it."""
        x.observed.upstream_failed(error, isinstance(error, UpstreamTimeout), refused=refused)
        self.health.request_failed(backend.name, describe(error))

    async def _query_failed(self, x: Exchange, query: Query | None, message: str) -> None:
        """A statement request whose backend is gone, hung or talking nonsense: the query is FAILED,
        said the way every Trino client reads it (HTTP 200 and the error in the document). A 502/504
        made clients retry in vain and then report only the status: the Python client raised
        "error 502: bad gateway"; garbage passed on made it raise a JSON decoding error."""
        document = errors.failed_query(x.base, message, query_id=None if query is None else query.id)
        if query is not None:
            self.book.finished(query, FAILED, document["error"]["errorName"])
        await x.respond_json(200, document)


# Where a request's ObservedRequest travels with it, for the ASGI entry's last-resort error answer.
OBSERVED = "trino_gateway.observed"


def _too_long(length: int | None, maximum: int) -> str:
    # Trino's words (DispatchManager), so that clients and people recognise the error.
    shown = "more than " + str(maximum) if length is None else str(length)
    return f"Query text length ({shown}) exceeds the maximum length ({maximum})"


def _is_document(content: bytes) -> bool:
    """A statement answer is one JSON object. Two byte comparisons on the hot path catch the cut-off
    and non-JSON answers a broken backend (or something in front of it) sends."""
    return content[:1] == b"{" and content.endswith((b"}", b"}\n", b"}\r\n"))


def _owner_unreachable(name: str, transaction: str | None, error: BaseException) -> str:
    return (
        f"trino-gateway: backend {name}, which holds transaction {transaction}, cannot be reached "
        f"({describe(error)}); the transaction cannot continue on another backend"
    )


def _failure_message(name: str, query_id: str | None, error: BaseException) -> str:
    if isinstance(error, UpstreamTimeout):
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
