"""The proxy: new queries are routed, every later request of a query follows it to its cluster.

Request path (docs/architecture.md draws it): client -> classify -> a new query (``submit``) or a
request of a known one: held by the gateway (``held_requests``) or forwarded to its backend
(``forward``) -> URI rewrite -> query book (one call per event) -> client.

This is a plain ASGI application: every proxied request passes here, so it does no more per request
than it must (no framework request objects, headers kept as the bytes they arrive as).
"""

from __future__ import annotations

import logging
from urllib.parse import parse_qsl

from gateway import errors
from gateway.backends.health import HealthChecker
from gateway.backends.registry import BackendRegistry
from gateway.config import FailoverConfig, ProxyConfig
from gateway.dataplane import headers as hdr
from gateway.dataplane import oauth2
from gateway.dataplane.answers import too_long
from gateway.dataplane.attempt import Attempts
from gateway.dataplane.cached import CachedAnswers
from gateway.dataplane.classify import Classified, Route
from gateway.dataplane.client_auth import ClientAuth
from gateway.dataplane.exchange import BodyRefused, Exchange, Receive, Scope, Send
from gateway.dataplane.forward import Forwarder, ResponseAborted
from gateway.dataplane.held_requests import HeldRequests
from gateway.dataplane.rewrite import BACKEND_PARAM
from gateway.dataplane.sending import Sender
from gateway.dataplane.submit import Submitter
from gateway.queries.admission import Admission
from gateway.queries.book import QueryBook
from gateway.queries.transactions import is_transaction_id
from gateway.routing.cost_routing import CostRouting
from gateway.routing.decider import NoBackendAvailable, RouteDecider
from gateway.routing.rules import GroupSelector
from gateway.upstream import Upstream
from observability.observer import Observer

log = logging.getLogger("gateway.dataplane")

# Where a request's ObservedRequest travels with it, for the ASGI entry's last-resort error answer.
OBSERVED = "trino_gateway.observed"

__all__ = ["OBSERVED", "Proxy", "ResponseAborted"]


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
        admission: Admission,
        failover: FailoverConfig,
        client_auth: ClientAuth | None = None,
        cost_routing: CostRouting | None = None,
        cached: CachedAnswers | None = None,
    ) -> None:
        self.max_query_length = settings.max_query_length
        self.max_body_bytes = settings.max_body_bytes
        self.body_timeout = settings.body_timeout
        self.client_auth = client_auth
        self.registry = registry
        self.decider = decider
        self.book = book
        self.observer = observer
        self.admission = admission
        attempts = Attempts(upstream, health, settings.forwarded_headers)
        self.forwarder = Forwarder(upstream, health, book, settings.forwarded_headers)
        self.sender = Sender(attempts, book, admission, decider, registry, upstream, failover)
        self.held = HeldRequests(attempts, self.sender, admission, book)
        self.cached = cached
        self.submitter = Submitter(
            settings, failover, registry, selector, decider, book, admission, self.sender, cost_routing, cached
        )

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
                await self.submitter.submit(exchange)
            elif route is Route.OF_QUERY:
                await self.follow(exchange, statement=False)
            elif route is Route.CACHED and self.cached is not None:
                await self.cached.page(exchange)
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

    async def follow(self, x: Exchange, statement: bool) -> None:
        """A request of a known query: the gateway's own answer if it holds the query, else its backend's."""
        query_id = x.classified.query_id
        assert query_id is not None
        # The book answers almost every poll; only a miss costs a look in the queue or the store.
        query = self.book.get(query_id)
        if query is None:
            waiting = await self.admission.find(query_id)
            if waiting is not None:
                await self.held.of_waiting(x, waiting, statement)
                return
            query = await self.book.find(query_id)
            if query is not None and query.transaction is None:
                # Another worker or node routed it before its record was in the store: the client names
                # its transaction on every request (a COMMIT's last page, fetched here, ends it).
                transaction = x.header(b"x-trino-transaction-id")
                query.transaction = transaction if is_transaction_id(transaction) else None
        if query is None:
            await x.respond_text(404, "Query not found")
            return
        x.observed.located(query_id, query.backend.name, query.trace_parent)
        if query.transaction is not None:
            x.observed.transaction = query.transaction
        self.book.polled(query)
        method = x.method
        if (
            statement
            and method in ("GET", "DELETE")
            and (query.submission is not None or query.holder is not None)
            and await self.held.of_held(x, query)
        ):
            return
        body = b"" if method in ("GET", "HEAD", "DELETE") else await x.body()
        if statement and method != "HEAD":
            await self.forwarder.statement(x, query.backend, body, query)
        else:
            await self.forwarder.stream(x, query.backend, body, query)

    async def forward_other(self, x: Exchange) -> None:
        """Everything else (UI, /v1/info, spooled segments): to the backend the URI is marked with, else
        the default group's best."""
        marked = dict(parse_qsl(x.scope["query_string"].decode("latin-1"))).get(BACKEND_PARAM)
        path = x.scope["path"]
        if marked is None and path == oauth2.CALLBACK_PATH:
            marked = oauth2.login_backend(x.header(b"cookie"))
        backend = await self.registry.get(marked) if marked else None
        if backend is None:
            try:
                ranked = self.decider.decide(await self.registry.all(), None).ranked
            except NoBackendAvailable as error:
                await x.respond_json(503, {"error": str(error)})
                return
            if not ranked:
                await x.respond_json(503, {"error": "trino-gateway: no cluster of the default group is ready yet"})
                return
            backend = ranked[0]
        extra: hdr.RawHeaders = []
        if marked is not None and path.startswith(oauth2.INITIATE_PREFIX):
            extra.append(oauth2.login_cookie(backend.name, x.base))
        body = b"" if x.method in ("GET", "HEAD") else await x.body()
        await self.forwarder.stream(x, backend, body, None, extra)

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
                message = too_long(None, self.max_query_length)
            document = errors.failed_query(x.base, message, "QUERY_TEXT_TOO_LARGE", 35, "USER_ERROR")
        else:
            document = errors.failed_query(
                x.base, f"trino-gateway: {refused.message}", "GENERIC_USER_ERROR", 0, "USER_ERROR"
            )
        x.observed.unreachable(document["error"]["message"])
        await x.respond_json(200, document)
