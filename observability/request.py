"""What the gateway records about one proxied request: its metrics and, when tracing, its spans.

The proxy creates one ``ObservedRequest`` per request and calls its hooks at the few points that
matter (routing decided, upstream call sent and answered, query located or accepted). Every hook
first does the metrics work (a cached label child, one increment) and touches OpenTelemetry only
when a tracer exists, so a gateway without a collector pays no tracing cost.

Spans of one request: a SERVER span (``POST /v1/statement``, ``GET /v1/statement/{queryId}``...),
its child ``route`` span for the routing decision of a new query (with the query's estimate, when
routing asked for one: ``trino.estimate.*``, and an ``estimate`` span for the time it waited for it),
and one CLIENT span per call to a backend (HTTP semantic conventions; its context goes to the
backend as ``traceparent``). The server span of a later request of a query (poll, cancel) is a child
of the query's submission span, found through the ``traceparent`` kept with the query: all requests
of a query form one trace.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer, set_span_in_context

from observability.propagation import format_traceparent, parent_from_traceparent

if TYPE_CHECKING:
    from observability.metrics import HotPathMetrics

Send = Callable[[dict[str, Any]], Awaitable[None]]

# Span attribute names: OpenTelemetry's HTTP semantic conventions, and the gateway's own (trino.*).
QUERY_ID = "trino.query.id"
TRANSACTION_ID = "trino.transaction.id"
USER = "trino.user"
SOURCE = "trino.source"
ROUTING_GROUP = "trino.routing.group"
REQUESTED_GROUP = "trino.routing.requested_group"
ROUTING_OUTCOME = "trino.routing.outcome"
ROUTING_RULE = "trino.routing.rule"
CANDIDATES = "trino.routing.candidates"
BACKEND = "trino.backend"
RETRY_COUNT = "trino.retry.count"
REQUEST_KIND = "trino.request.kind"
QUEUE_WAIT = "trino.queue.wait_seconds"
RESULT_CACHE = "trino.gateway.cache"
HTTP_METHOD = "http.request.method"
HTTP_STATUS = "http.response.status_code"
HTTP_ROUTE = "http.route"
URL_PATH = "url.path"
URL_FULL = "url.full"
SERVER_ADDRESS = "server.address"
SERVER_PORT = "server.port"
ERROR_TYPE = "error.type"

_ROUTES = {
    "submit": "/v1/statement",
    "poll": "/v1/statement/{queryId}",
    "cancel": "/v1/statement/{queryId}",
}


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


def _route(kind: str, path: str) -> str:
    route = _ROUTES.get(kind)
    if route is not None:
        return route if not path.startswith("/v1/query/") else "/v1/query/{queryId}"
    # The first two path segments (/v1/info, /ui/api): bounded, unlike the full path.
    return "/" + "/".join(path.split("/", 3)[1:3])


class ObservedRequest:
    """One proxied request. ``send`` replaces the ASGI send to learn the status answered; ``kind``
    (submit, poll, cancel, other) is the ``kind`` label of ``trino_gateway_requests_total``."""

    __slots__ = (
        "_send",
        "backend",
        "cache",
        "estimate",
        "group",
        "kind",
        "metrics",
        "parent",
        "query_id",
        "refused",
        "responded",
        "retries",
        "rule",
        "scope",
        "span",
        "start_ns",
        "started",
        "status",
        "tracer",
        "transaction",
        "up_backend",
        "up_began",
        "up_span",
    )

    def __init__(
        self, metrics: HotPathMetrics, tracer: Tracer | None, scope: dict[str, Any], send: Send, kind: str
    ) -> None:
        self.metrics = metrics
        self.tracer = tracer
        self.scope = scope
        self._send = send
        self.kind = kind
        self.started = time.perf_counter()
        self.status = 0
        self.responded = False  # the answer has started: an error can no longer replace it
        self.query_id: str | None = None
        self.backend: str | None = None
        self.group: str | None = None
        self.rule: str | None = None
        self.estimate: dict[str, Any] | None = None
        self.cache: str | None = None
        self.retries = 0
        self.transaction: str | None = None  # the request's transaction (X-Trino-Transaction-Id), if any
        self.refused: str | None = None
        self.up_backend = ""
        self.up_began = 0.0
        self.span: Span | None = None
        self.up_span: Span | None = None
        self.parent: Context | None = None
        self.start_ns = 0
        if tracer is not None:
            self.start_ns = time.time_ns()
            # A client's trace is continued; a query's own trace (see ``located``) wins over it.
            self.parent = parent_from_traceparent(_header(scope, b"traceparent"))

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.responded = True
        await self._send(message)

    # -- hooks the proxy calls ----------------------------------------------------------------
    def clock(self) -> float:
        return time.perf_counter()

    def estimated(self, attributes: dict[str, Any], seconds: float) -> None:
        """Routing had the new query's estimate (or asked and had none), waiting ``seconds`` for it:
        ``attributes`` (``trino.estimate.*``: source, latency, the numbers, or the cause) go on the route
        span, and an ``estimate`` span covers the wait."""
        self.estimate = attributes
        if self.tracer is None:
            return
        end = time.time_ns()
        span = self.tracer.start_span(
            "estimate",
            context=set_span_in_context(self._server()),
            kind=SpanKind.INTERNAL,
            start_time=end - int(seconds * 1e9),
            attributes=attributes,
        )
        span.end(end_time=end)

    def decided(
        self, requested_group: str, group: str, candidates: list[str], began: float, rule: str | None = None
    ) -> None:
        """A new query's routing decision was made (``began`` from ``clock()``): ``group`` (which is not
        ``requested_group`` when the request fell back to the default group) and its ``candidates``,
        best first; ``rule`` is the routing rule (or ``external`` for the routing service) that
        picked the group."""
        seconds = time.perf_counter() - began
        outcome = "fallback" if group != requested_group else "routed"
        self.metrics.decision(group, outcome, seconds)
        self.group = group
        self.rule = rule
        if self.tracer is not None:
            self._routing_span(
                began,
                seconds,
                {
                    ROUTING_GROUP: group,
                    REQUESTED_GROUP: requested_group,
                    ROUTING_OUTCOME: outcome,
                    CANDIDATES: candidates,
                    **({ROUTING_RULE: str(self.rule)} if self.rule is not None else {}),
                    **(self.estimate or {}),
                },
            )

    def cached(self, word: str, query_id: str | None = None) -> None:
        """The result cache's word on a new query (hit, waited, miss, refused, not eligible: why): on
        its span; ``query_id``: the gateway's, when the cache answered it."""
        self.cache = word
        if query_id is not None:
            self.query_id = query_id

    def no_backend(self, group: str, began: float, why: str) -> None:
        """Routing found no backend for a new query; the client gets Trino's no-backend error."""
        seconds = time.perf_counter() - began
        self.metrics.decision(group, "no_backend", seconds)
        self.metrics.error("no_backend")
        self.group = group
        if self.tracer is not None:
            self._routing_span(began, seconds, {ROUTING_GROUP: group, ROUTING_OUTCOME: "no_backend"}, error=why)

    def unreachable(self, why: str) -> None:
        """Every backend of the chosen group refused the new query."""
        self.metrics.error("no_backend")
        if self.tracer is not None:
            self._server().set_status(Status(StatusCode.ERROR, why))

    def refused_by_gateway(self, why: str) -> None:
        """The gateway refused the client's request itself (too large, too slow, bad credentials)."""
        self.metrics.error("refused")
        if self.tracer is not None:
            self._server().set_status(Status(StatusCode.ERROR, why))

    def located(self, query_id: str, backend: str, traceparent: str | None) -> None:
        """A request of a known query: it continues the query's trace."""
        self.query_id = query_id
        self.backend = backend
        if self.tracer is not None and traceparent is not None and self.span is None:
            self.parent = parent_from_traceparent(traceparent) or self.parent

    def accepted(self, query_id: str, backend: str, group: str) -> str | None:
        """A backend accepted a new query; returns the trace context to keep with the query."""
        self.query_id = query_id
        self.backend = backend
        self.metrics.routed(group, backend)
        if self.tracer is None:
            return None
        return format_traceparent(self._server().get_span_context())

    def waiting(self, query_id: str, group: str) -> str | None:
        """A new query waits in the gateway under ``query_id``; returns the trace context to keep."""
        self.query_id = query_id
        self.group = group
        if self.tracer is None:
            return None
        return format_traceparent(self._server().get_span_context())

    def queue_waited(self, group: str, seconds: float) -> None:
        """The query of this poll waited ``seconds`` in the gateway and is sent now: a ``queue`` span
        ending now shows the wait in the query's trace."""
        self.group = group
        if self.tracer is None:
            return
        end = time.time_ns()
        span = self.tracer.start_span(
            "queue",
            context=set_span_in_context(self._server()),
            kind=SpanKind.INTERNAL,
            start_time=end - int(seconds * 1e9),
            attributes={ROUTING_GROUP: group, QUEUE_WAIT: seconds},
        )
        span.end(end_time=end)

    def failed_over(self, group: str, backend: str, reason: str) -> None:
        """The query's backend failed before it returned a row; it is sent to another one."""
        self.group = group
        self.metrics.failover(group, backend)
        if self.tracer is not None:
            self._server().add_event("failover", {BACKEND: backend, "trino.failover.reason": reason})

    def upstream_begin(
        self, backend: str, method: str, url: str, headers: list[tuple[bytes, bytes]]
    ) -> list[tuple[bytes, bytes]]:
        """A call to ``backend`` starts; returns the headers to send (with ``traceparent``)."""
        if self.refused is not None:
            # The previous backend refused this new query: this call is its retry.
            self.metrics.retry(self.refused)
            self.retries += 1
            self.refused = None
        self.up_backend = backend
        self.backend = backend
        self.up_began = time.perf_counter()
        if self.tracer is None:
            return headers
        parts = urlsplit(url)
        span = self.up_span = self.tracer.start_span(
            method,
            context=set_span_in_context(self._server()),
            kind=SpanKind.CLIENT,
            attributes={
                HTTP_METHOD: method,
                URL_FULL: url,
                SERVER_ADDRESS: parts.hostname or "",
                SERVER_PORT: parts.port or (443 if parts.scheme == "https" else 80),
                BACKEND: backend,
            },
        )
        # The client's own traceparent is replaced by the gateway's call span (same trace).
        sent = [h for h in headers if h[0].lower() != b"traceparent"]
        sent.append((b"traceparent", format_traceparent(span.get_span_context()).encode()))
        return sent

    def upstream_end(self, status: int) -> None:
        """The backend answered with ``status``."""
        self.metrics.upstream(self.up_backend, self.kind, time.perf_counter() - self.up_began)
        if status >= 500:
            self.metrics.error("upstream_5xx")
        span = self.up_span
        if span is not None:
            self.up_span = None
            span.set_attribute(HTTP_STATUS, status)
            if status >= 500:
                span.set_attribute(ERROR_TYPE, str(status))
                span.set_status(Status(StatusCode.ERROR))
            span.end()

    def upstream_failed(self, error: BaseException, timeout: bool, refused: bool = False) -> None:
        """The backend could not be reached, or did not answer; ``refused``: nothing reached it."""
        self.metrics.error("timeout" if timeout else "connect")
        if refused:
            self.refused = self.up_backend
        span = self.up_span
        if span is not None:
            self.up_span = None
            span.set_attribute(ERROR_TYPE, type(error).__qualname__)
            span.set_status(Status(StatusCode.ERROR, str(error) or type(error).__name__))
            span.end()

    def not_taken(self) -> None:
        """The backend answered a new query with a status that means it did not take it; the next
        call is its retry."""
        self.refused = self.up_backend

    def crashed(self, error: BaseException) -> None:
        """A bug: the application answers 500 (unless the answer had started)."""
        self.metrics.error("internal")
        if self.status == 0:
            self.status = 500
        if self.tracer is not None:
            span = self._server()
            span.record_exception(error)
            span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))

    def finish(self) -> None:
        self.metrics.request(self.kind, self.status)
        if self.tracer is not None:
            span = self._server()
            scope = self.scope
            attributes: dict[str, Any] = {HTTP_STATUS: self.status, RETRY_COUNT: self.retries}
            if self.query_id is not None:
                attributes[QUERY_ID] = self.query_id
            if self.backend is not None:
                attributes[BACKEND] = self.backend
            if self.group is not None:
                attributes[ROUTING_GROUP] = self.group
            if self.rule is not None:
                attributes[ROUTING_RULE] = str(self.rule)
            if self.transaction is not None:
                attributes[TRANSACTION_ID] = self.transaction
            if self.cache is not None:
                attributes[RESULT_CACHE] = self.cache
            for name, header_name in ((USER, b"x-trino-user"), (SOURCE, b"x-trino-source")):
                value = _header(scope, header_name)
                if value is not None:
                    attributes[name] = value
            span.set_attributes(attributes)
            if self.status >= 500:
                span.set_attribute(ERROR_TYPE, str(self.status))
                span.set_status(Status(StatusCode.ERROR))
            span.end()

    # -- spans ----------------------------------------------------------------------------------
    def _server(self) -> Span:
        """The request's server span, started (back-dated to the request's arrival) when first needed:
        for a poll, only once its query's trace is known."""
        span = self.span
        if span is None:
            assert self.tracer is not None
            scope = self.scope
            method, path = scope["method"], scope["path"]
            route = _route(self.kind, path)
            span = self.span = self.tracer.start_span(
                f"{method} {route}",
                context=self.parent,
                kind=SpanKind.SERVER,
                start_time=self.start_ns,
                attributes={HTTP_METHOD: method, HTTP_ROUTE: route, URL_PATH: path, REQUEST_KIND: self.kind},
            )
        return span

    def _routing_span(self, began: float, seconds: float, attributes: dict[str, Any], error: str | None = None) -> None:
        assert self.tracer is not None
        start = self.start_ns + int((began - self.started) * 1e9)
        span = self.tracer.start_span(
            "route",
            context=set_span_in_context(self._server()),
            kind=SpanKind.INTERNAL,
            start_time=start,
            attributes=attributes,
        )
        if error is not None:
            span.set_status(Status(StatusCode.ERROR, error))
        span.end(end_time=start + int(seconds * 1e9))
