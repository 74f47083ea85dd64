"""The proxy: new queries are routed, every later request of a query follows it to its cluster.

Request path: client -> classify -> route (new query) or look up (known query) -> upstream call ->
URI rewrite -> query book (one call per event) -> client. Statement answers are read whole (a page is
at most a few MB) because their URIs are rewritten; everything else is streamed through untouched.

This is a plain ASGI application: every proxied request passes here, so it does no more per
request than it must (no framework request objects, headers kept as the bytes they arrive as).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import re
import time
from urllib.parse import parse_qsl, urlencode

import orjson

from gateway import errors
from gateway.backends.health import HealthChecker
from gateway.backends.registry import BackendRegistry
from gateway.config import FailoverConfig, ProxyConfig
from gateway.dataplane import headers as hdr
from gateway.dataplane import oauth2
from gateway.dataplane.classify import Classified, Route
from gateway.dataplane.client_auth import ClientAuth
from gateway.dataplane.exchange import WORKER, BodyRefused, Exchange, Receive, Scope, Send
from gateway.dataplane.query_ids import killed_query_id
from gateway.dataplane.rewrite import BACKEND_PARAM, rewrite_uris
from gateway.queries.admission import ADMITTED, CANCELED, QUEUED, STARTED, Admission, QueueFull, Slot, WaitingQuery
from gateway.queries.admission import FAILED as FAILED_WAITING
from gateway.queries.admission.pages import ERROR_CODES, queued_page, refused_page
from gateway.queries.book import FAILED, Query, QueryBook, outcome_of_page
from gateway.queries.read_only import is_read_only
from gateway.queries.submission import Submission
from gateway.queries.transactions import is_transaction_id, transaction_control
from gateway.routing.decider import NoBackendAvailable, RouteDecider
from gateway.routing.rules import VERIFIED_USER, GroupSelector
from gateway.store.backend import Backend
from gateway.upstream import Answer, NotSent, Upstream, UpstreamError, UpstreamTimeout, describe
from observability.observer import Observer

log = logging.getLogger("gateway.dataplane")

# Trino errors that are the cluster's fault, not the query's: a read-only query that has returned no
# row may run on another cluster instead.
CLUSTER_FAULTS = frozenset(
    {"SERVER_SHUTTING_DOWN", "SERVER_STARTING_UP", "NO_NODES_AVAILABLE", "REMOTE_HOST_GONE", "TOO_MANY_REQUESTS_FAILED"}
)
# A page's nextUri, the first occurrence (in pages without rows, the protocol's own).
_NEXT_URI = re.compile(rb'"nextUri"\s*:\s*"([^"]*)"')
# The largest page the gateway keeps for a repeated request once the query runs on its backend's URIs.
REPLAYED_PAGE_BYTES = 65_536
# The outcome recorded for an attempt of a query that was sent to another backend after it.
FAILED_OVER = "FAILED_OVER"
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
        admission: Admission,
        failover: FailoverConfig,
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
        self.admission = admission
        self.failover = failover
        self._background: set[asyncio.Task[None]] = set()

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
            limits: tuple[int | None, float | None, bool | None] = (None, None, False)
            routed_by: tuple[str, str | None] = (ROUTED_TO_KILL_TARGET, None)
        elif binding is not None:
            # A statement of a transaction goes to the backend that owns it, whatever the rules, the
            # routers, its health or its active flag say: no other backend knows the transaction.
            observed.transaction = transaction
            owner = await self.book.backend_at(binding.backend_name, binding.backend_url)
            group, ranked = owner.routing_group, [owner]
            limits = (None, None, False)
            routed_by = (ROUTED_TO_TRANSACTION_OWNER, None)
            observed.decided(group, group, [owner.name], observed.clock(), "transaction")
        else:
            routing_began = observed.clock()
            selection = await self.selector.select(x.scope, body)
            if selection.rejected:
                message = "trino-gateway: the routing service rejected the query: " + "; ".join(selection.rejected)
                await x.respond_text(400, message)
                return
            backends = await self.registry.all()
            self.admission.refresh(backends)
            try:
                decision = self.decider.decide(backends, selection.group, user=user)
            except NoBackendAvailable as error:
                observed.no_backend(error.group, routing_began, str(error))
                log.warning("%s", error)
                await x.respond_json(200, errors.no_backend_document(x.base, str(error)))
                return
            group, ranked, extra = decision.group, decision.ranked, selection.headers
            limits = (selection.max_running, selection.queue_weight, selection.failover)
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
        submission = Submission(
            sql,
            body,
            user,
            x.header(b"x-trino-source"),
            x.header(b"x-trino-client-tags"),
            transaction,
            group,
            routed_by,
            headers,
            # Read-only and in no transaction: it may run again elsewhere (unless a rule says no).
            failover=self.failover.enabled
            and transaction is None
            and limits[2] is not False
            and killed is None
            and is_read_only(sql),
        )
        taken: Slot | None = None
        if killed is None and binding is None and self.admission.enabled:
            # Statements of a transaction and kill_query calls must go where they go: never held back.
            try:
                room, taken, waiting = await self.admission.admit(
                    ranked, submission, self.admission.user_limit(limits[0]), limits[1]
                )
            except QueueFull as full:
                log.warning("routing group %r: %s", group, full)
                x.observed.refused_by_gateway(str(full))
                await x.respond_json(200, refused_page(x.base, "QUERY_QUEUE_FULL", str(full)))
                return
            if waiting is not None:
                # No backend of the group has room (or the user is at their limit): the query waits
                # here, and the client gets Trino's QUEUED page for it.
                waiting.trace_parent = x.observed.waiting(waiting.id, group)
                await self._respond_waiting(x, waiting)
                return
            ranked = room
        await self._start(x, submission, ranked, bound=binding is not None, taken=taken)

    async def _start(
        self,
        x: Exchange,
        submission: Submission,
        ranked: list[Backend],
        bound: bool = False,
        waited: WaitingQuery | None = None,
        taken: Slot | None = None,
    ) -> None:
        """``submission`` is sent to the first of ``ranked`` that takes it, and the client gets its
        answer (``bound``: it belongs to a transaction, whose backend is the only one; ``waited``: the
        gateway holds it under its own id, with a slot on ``ranked[0]`` taken already; ``taken``: a
        slot on ``ranked[0]`` admission control took for it)."""
        observed = x.observed
        group, body = submission.group, submission.body
        refused: list[str] = []
        last = ranked[-1]
        for backend in ranked:
            slot = waited.slot if waited is not None and waited.slot is not None else None
            if slot is None and taken is not None and taken.backend == backend.name:
                slot, taken = taken, None
            slot = slot or await self.admission.claim_slot(backend, submission.user)
            began = time.perf_counter()
            sent = observed.upstream_begin(backend.name, "POST", backend.proxy_to + "/v1/statement", submission.headers)
            try:
                answer = await self.upstream.send(backend, "POST", "/v1/statement", sent, body)
            except NotSent as error:
                self._call_failed(x, backend, error, refused=True)
                if bound:
                    slot.release()
                    await self._query_failed(x, None, _owner_unreachable(backend.name, submission.transaction, error))
                    return
                if waited is not None:
                    # Back to the head of its line: another backend (or this one, later) takes it.
                    log.warning("backend %s refused query %s, which waits again: %s", backend.name, waited.id, error)
                    waited.excluded.add(backend.name)
                    waited.slot = slot
                    await self._wait_again(x, waited)
                    return
                # Nothing reached this backend: the next-best one may take the query.
                slot.release()
                refused.append(f"{backend.name} ({describe(error)})")
                log.warning("backend %s refused a new query, trying the next one: %s", backend.name, error)
                continue
            except UpstreamError as error:
                slot.release()
                self._call_failed(x, backend, error)
                message = f"trino-gateway: backend {backend.name} failed while taking the query: {describe(error)}"
                if submission.failover:
                    # Read-only: running it twice does no harm, so it may go elsewhere.
                    await self._fail_over(x, submission, waited, backend.name, describe(error), message)
                    return
                # The statement may have reached the backend: sending it elsewhere could run it twice.
                await self._query_failed(x, None, message, waited)
                return
            status, content = answer.status, answer.body
            observed.upstream_end(status)
            if status in _NOT_TAKEN and (backend is not last or waited is not None):
                # The backend (or a proxy in front of it) did not take the query: the next one may.
                observed.not_taken()
                self.health.request_failed(backend.name, f"HTTP {status} to a new query")
                if waited is not None:
                    log.warning(
                        "backend %s answered HTTP %d to query %s, which waits again", backend.name, status, waited.id
                    )
                    waited.excluded.add(backend.name)
                    waited.slot = slot
                    await self._wait_again(x, waited)
                    return
                slot.release()
                refused.append(f"{backend.name} (HTTP {status})")
                log.warning("backend %s answered HTTP %d to a new query, trying the next one", backend.name, status)
                continue
            broken = status >= 500 or (status == 200 and not _is_document(content))
            if broken:
                why = f"HTTP {status}" if status >= 500 else NOT_A_DOCUMENT
                self.health.request_failed(backend.name, f"{why} to a new query")
                message = f"trino-gateway: backend {backend.name} {NOT_A_DOCUMENT} to a new query"
                if submission.failover and status not in _NOT_TAKEN:
                    slot.release()
                    if status != 200:
                        message = f"trino-gateway: backend {backend.name} answered HTTP {status} to a new query"
                    await self._fail_over(x, submission, waited, backend.name, why, message)
                    return
                if status == 200:
                    # The statement reached the backend: it is not sent elsewhere.
                    slot.release()
                    await self._query_failed(x, None, message, waited)
                    return
            else:
                self.health.request_succeeded(backend.name, time.perf_counter() - began)
            holder = waited
            held = status == 200 and submission.failover and _no_rows_yet(content)
            if held and holder is None:
                # The client will poll the gateway until rows come: until then the query may move.
                holder = self.admission.track(submission)
            query = await self._accepted(x, backend, submission, answer, slot, holder) if status == 200 else None
            if query is None:
                slot.release()
            else:
                await slot.bind(query.id)
            response_headers = hdr.to_client(answer.headers)
            if status == 401:
                response_headers = oauth2.challenge_on_gateway(response_headers, x.base, backend.name)
            rewritten = rewrite_uris(content, x.base, backend.proxy_to, backend.name)
            if query is not None and held and holder is not None:
                holder.trace_parent = holder.trace_parent or query.trace_parent
                holder.query, query.holder = query, holder
                self.admission.started(holder)
                self._held_page(x, holder, content, rewritten, response_headers)
            elif holder is not None and waited is None:
                self.admission.forget(holder)  # no id came back: nothing to hold
            elif waited is not None:
                waited.query = query
                self.admission.started(waited)
                waited.last = (x.scope["path"], status, list(response_headers), rewritten)
            await x.respond(status, response_headers, rewritten)
            return
        message = f"trino-gateway: no backend of routing group '{group}' could be reached: " + ", ".join(refused)
        observed.unreachable(message)
        await x.respond_json(200, errors.no_backend_document(x.base, message))

    def _held_page(
        self, x: Exchange, holder: WaitingQuery, content: bytes, rewritten: bytes, headers: hdr.RawHeaders
    ) -> None:
        """A backend's page without rows goes to the client as any page (its URIs the backend's, on
        the gateway); the gateway notes its ``nextUri``, to poll it for the client (the query may
        still move), and keeps the page for a client that asks again."""
        found = _NEXT_URI.search(content)
        assert found is not None  # _no_rows_yet saw "nextUri"
        holder.upstream_next = found.group(1).decode()
        holder.last = (x.scope["path"], 200, list(headers), rewritten)

    async def _fail_over(
        self, x: Exchange, submission: Submission, holder: WaitingQuery | None, backend: str, why: str, message: str
    ) -> None:
        """A read-only query's backend failed before any row reached the client: it goes back first in
        its group's line, to another backend at once if one has room, and the client, whose poll gets
        that backend's first page, does not notice. With no other backend to try (or after
        ``failover.max_attempts``) it fails with ``message``, as it would without failover."""
        holder = holder or self.admission.track(submission)
        holder.attempts.append(f"{backend}: {why}")
        holder.excluded.add(backend)
        backends = await self.registry.all()
        self.admission.refresh(backends)
        untried = self._untried(backends, holder)
        giving_up = not untried or len(holder.attempts) >= self.failover.max_attempts
        # The id the client saw last: its last attempt's (the gateway's own if it waited in between).
        shown_id = holder.id if holder.query is None else holder.query.id
        if holder.query is not None:
            # That attempt ends here (its slot with it); the next gets an id of its own.
            self.book.finished(holder.query, FAILED, "GENERIC_INTERNAL_ERROR" if giving_up else FAILED_OVER)
            self._cancel_quietly(holder.query, submission.user)
            holder.query = None
        if giving_up:
            if len(holder.attempts) > 1:
                message += " (after failing on " + "; ".join(holder.attempts[:-1]) + ")"
            slot, holder.slot = holder.slot, None
            if slot is not None:
                slot.release()
            self.admission.fail(holder, "GENERIC_INTERNAL_ERROR", message)
            await self._respond_waiting(x, holder, shown_id)
            return
        x.observed.failed_over(holder.group, backend, why)
        log.warning("query %s failed on %s before returning a row (%s); it is sent again", holder.id, backend, why)
        await self._wait_again(x, holder)

    def _cancel_quietly(self, query: Query, user: str | None) -> None:
        """The gateway gave up on ``query`` on its backend: should the backend still run it (slow, not
        dead), it is cancelled there, in the background."""

        async def cancel() -> None:
            with contextlib.suppress(UpstreamError):
                headers = [(b"x-trino-user", (user or "trino-gateway").encode())]
                await self.upstream.send(query.backend, "DELETE", f"/v1/query/{query.id}", headers)

        task = asyncio.create_task(cancel())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _untried(self, backends: list[Backend], holder: WaitingQuery) -> list[Backend]:
        """The routable backends of the query's group (or its fallback) that have not failed it."""
        try:
            ranked = self.decider.decide(backends, holder.group).ranked
        except NoBackendAvailable:
            return []
        return [backend for backend in ranked if backend.name not in holder.excluded]

    async def _wait_again(self, x: Exchange, holder: WaitingQuery) -> None:
        """``holder`` goes back first in line; started at once if a backend has room, else QUEUED."""
        backends = await self.registry.all()
        self.admission.refresh(backends)
        if not self.admission.requeues:
            await self._send_elsewhere(x, holder, backends)
            return
        self.admission.requeue(holder)
        if holder.state == ADMITTED and holder.backend is not None:
            await self._start(x, holder.submission, [holder.backend], waited=holder)
        else:
            await self._respond_waiting(x, holder)

    async def _send_elsewhere(self, x: Exchange, holder: WaitingQuery, backends: list[Backend]) -> None:
        """Where this worker queues nothing (several workers, or a fleet: a waiting query's URIs would
        be known to it alone), a query whose backend failed goes to the next untried one at once."""
        slot, holder.slot = holder.slot, None
        if slot is not None:
            slot.release()
        untried = self._untried(backends, holder)
        if untried:
            await self._start(x, holder.submission, untried[:1], waited=holder)
            return
        message = f"trino-gateway: no backend of routing group '{holder.group}' could take the query"
        if holder.attempts:
            message += " after it failed on " + "; ".join(holder.attempts)
        self.admission.fail(holder, "GENERIC_INTERNAL_ERROR", message)
        await self._respond_waiting(x, holder)

    async def _accepted(
        self,
        x: Exchange,
        backend: Backend,
        submission: Submission,
        answer: Answer,
        slot: Slot,
        waited: WaitingQuery | None = None,
    ) -> Query | None:
        """A backend took the query: the query (holding ``slot``), if the backend gave it an id."""
        content = answer.body
        query_id = _field(content, "id")
        if query_id is None:
            return None
        trace_parent = x.observed.accepted(query_id, backend.name, submission.group)
        query = Query(
            query_id,
            backend,
            submission.group,
            user=submission.user,
            trace_parent=trace_parent,
            transaction=submission.transaction,
            control=transaction_control(submission.sql),
            routing_source=submission.routed_by[0],
            routing_rule=submission.routed_by[1],
            slot=slot,
            gateway_id=None if waited is None else waited.id,
            queued_ms=None if waited is None else round(waited.waited * 1000) or None,
            attempts=None if waited is None else list(waited.attempts) or None,
        )
        self.book.accepted(query, submission.sql, submission.source, submission.client_tags)
        await self._answered(query, answer)
        return query

    # -- queries that wait in the gateway ------------------------------------------------------
    async def _respond_waiting(self, x: Exchange, waiting: WaitingQuery, shown_id: str | None = None) -> None:
        """The answer to request ``waiting.token``: the QUEUED page pointing at the next token, or the
        query's end if it ended while waiting (``shown_id``: the id its client knows it by, if not the
        gateway's). Kept for a client that asks again."""
        if waiting.state == FAILED_WAITING and waiting.error is not None:
            name, message = waiting.error
            if name in ERROR_CODES:
                document = refused_page(x.base, name, message, waiting.id)
            elif name == "NO_NODES_AVAILABLE":
                document = errors.no_backend_document(x.base, message, shown_id or waiting.id)
            else:
                document = errors.failed_query(x.base, message, query_id=shown_id or waiting.id)
        elif waiting.state == CANCELED:
            document = errors.failed_query(x.base, "Query was canceled", "USER_CANCELED", 1, "USER_ERROR", waiting.id)
        else:
            waiting.token += 1
            document = queued_page(x.base, waiting)
        body = orjson.dumps(document)
        waiting.last = (x.scope["path"], 200, [(b"content-type", b"application/json")], body)
        await self.admission.persist(waiting)
        await x.respond(200, [(b"content-type", b"application/json")], body)

    async def _poll_waiting(self, x: Exchange, waiting: WaitingQuery) -> None:
        """A request for a query waiting in the gateway: a poll is held until the query may start (then
        it is sent, and the answer is the backend's first page) or ``poll_wait`` passes; a DELETE
        cancels it without any backend knowing."""
        token = _token_of(x.scope["path"], waiting)
        if token is None:
            await x.respond_text(404, "Query not found")
            return
        waiting.last_seen = time.monotonic()
        x.observed.located(waiting.id, "", waiting.trace_parent)
        async with waiting.lock:
            if x.method == "DELETE":
                await self.admission.reread(waiting)  # in a fleet, another node may have moved it on
                await self._cancel_waiting(x, waiting)
                return
            last = waiting.last
            if last is not None and last[0] == x.scope["path"]:
                # The client asks again for the page it had (a retry): the same answer.
                await x.respond(last[1], list(last[2]), last[3])
                return
            if waiting.stored and token > waiting.token:
                # In a fleet another node answered its last polls (the slug proves it gave this token).
                waiting.token = token
            elif token == waiting.token - 1 and waiting.stored and waiting.state == QUEUED:
                # A retry of a poll whose answer was lost (its node stopped): that page again.
                waiting.token -= 1
            if token != waiting.token:
                await x.respond_text(410, "Query page is gone")
                return
            if waiting.stored and waiting.state == STARTED and waiting.query is None:
                # Sent by another node, whose answer moved its client on to the backend's pages.
                await x.respond_text(410, "Query page is gone")
                return
            if waiting.state == QUEUED:
                await self.admission.wait_turn(waiting, self._poll_timeout(waiting))
            if waiting.state == ADMITTED and waiting.backend is not None and not await self.admission.claim(waiting):
                await self._respond_waiting(x, waiting)  # another node sends it
                return
            if waiting.state == ADMITTED and waiting.backend is not None:
                if not waiting.attempts:
                    x.observed.queue_waited(waiting.group, waiting.waited)
                await self._start(x, waiting.submission, [waiting.backend], waited=waiting)
            elif waiting.state == STARTED and waiting.upstream_next is not None:
                await self._poll_held(x, waiting)
            else:
                await self._respond_waiting(x, waiting)

    async def _cancel_waiting(self, x: Exchange, waiting: WaitingQuery) -> None:
        """A DELETE of a query the gateway holds: a waiting one is forgotten without any backend
        knowing; one running is cancelled on its backend."""
        query = waiting.query
        if waiting.state == STARTED and query is not None and waiting.upstream_next is not None:
            backend = query.backend
            target = _upstream_target(x.scope, waiting.upstream_next)
            headers = x.observed.upstream_begin(
                backend.name, "DELETE", backend.proxy_to + target, hdr.to_backend(x.scope, x.base, True, self.forwarded)
            )
            try:
                answer = await self.upstream.send(backend, "DELETE", target, headers)
                x.observed.upstream_end(answer.status)
            except UpstreamError as error:
                self._call_failed(x, backend, error)  # it was cancelled here; its backend ends it by itself
            self.book.finished(query, FAILED, "USER_CANCELED")
        if waiting.state in (QUEUED, ADMITTED, STARTED) and (waiting.state != STARTED or waiting.upstream_next):
            self.admission.cancel(waiting)
            await self.admission.persist(waiting)
        await x.respond(204, [], b"")

    async def _poll_held(self, x: Exchange, holder: WaitingQuery) -> None:
        """A poll of a query running on a backend that has sent no row yet: the backend's next page is
        fetched for the client. A page with rows (or the last) hands the client over to the backend's
        own URIs; a backend that fails before that sends the query elsewhere."""
        query = holder.query
        assert query is not None and holder.upstream_next is not None
        backend = query.backend
        observed = x.observed
        target = _upstream_target(x.scope, holder.upstream_next)
        headers = observed.upstream_begin(
            backend.name, "GET", backend.proxy_to + target, hdr.to_backend(x.scope, x.base, True, self.forwarded)
        )
        try:
            answer = await self.upstream.send(backend, "GET", target, headers)
        except UpstreamError as error:
            self._call_failed(x, backend, error)
            message = _failure_message(backend.name, query.id, error)
            await self._fail_over(x, holder.submission, holder, backend.name, describe(error), message)
            return
        status, content = answer.status, answer.body
        observed.upstream_end(status)
        if status == 503 or (400 <= status < 500 and status not in (404, 410)):
            # Busy (the client retries this same URI, as Trino clients do), or a refusal of this
            # request: the client gets it as it is.
            await x.respond(status, hdr.to_client(answer.headers), content)
            return
        if status != 200 or not _is_document(content):
            # A 404/410: the backend forgot the query (it restarted); else it is broken.
            why = f"HTTP {status}" if status != 200 else NOT_A_DOCUMENT
            self.health.request_failed(backend.name, why)
            message = f"trino-gateway: backend {backend.name} answered {why} for query {query.id}"
            await self._fail_over(x, holder.submission, holder, backend.name, why, message)
            return
        self.health.poll_answered(backend.name)
        failed_by_cluster = _cluster_fault(content)
        if failed_by_cluster is not None:
            holder.upstream_next = None
            message = f"trino-gateway: backend {backend.name} failed query {query.id}: {failed_by_cluster}"
            await self._fail_over(x, holder.submission, holder, backend.name, failed_by_cluster, message)
            return
        response_headers = hdr.to_client(answer.headers)
        rewritten = rewrite_uris(content, x.base, backend.proxy_to, backend.name)
        if _no_rows_yet(content):
            self._held_page(x, holder, content, rewritten, response_headers)
        else:
            # Rows (or the end): from here the client follows the backend's own URIs, as any query.
            holder.upstream_next = None
            # Kept for a client that asks for this page again, unless it is large (rows): the gateway
            # would hold every such page for a while; a repeat of a large one is answered 410.
            small = len(rewritten) <= REPLAYED_PAGE_BYTES
            holder.last = (x.scope["path"], 200, list(response_headers), rewritten) if small else None
            await self._answered(query, answer)
        await x.respond(200, response_headers, rewritten)

    async def _of_held(self, x: Exchange, holder: WaitingQuery, query: Query) -> bool:
        """A poll or cancel of a query that may still move to another backend: answered here when it
        asks for the page the gateway polls for the client (or the one it had, again); False for any
        other request, which goes to the backend as for any query (the backend checks its URIs)."""
        path = x.scope["path"]
        last = holder.last
        if holder.upstream_next is None and (last is None or last[0] != path):
            return False  # handed over: its rows come from the backend's URIs, as any query's
        async with holder.lock:
            last = holder.last
            if last is not None and last[0] == path:
                if x.method == "GET":
                    # The client asks again for the page it had (a retry): the same answer.
                    await x.respond(last[1], list(last[2]), last[3])
                    return True
                if holder.state in (FAILED_WAITING, CANCELED):
                    # A cancel of the query the gateway ended (and cancelled on its backend) with
                    # that answer: nothing is left to cancel, on a backend that may be gone.
                    await x.respond(204, [], b"")
                    return True
            upstream = holder.upstream_next
            if holder.query is not query or upstream is None or path != _path_of(upstream):
                return False
            holder.last_seen = time.monotonic()
            if x.method == "DELETE":
                await self._cancel_waiting(x, holder)
            else:
                await self._poll_held(x, holder)
            return True

    async def _of_waiting(self, x: Exchange, waiting: WaitingQuery, statement: bool) -> None:
        """Any request naming a query that waits (or waited) in the gateway."""
        if statement and x.method in ("GET", "DELETE"):
            await self._poll_waiting(x, waiting)
        elif waiting.query is not None:
            # It runs on a backend now, under the backend's id: its pages are there.
            await x.respond_text(404, f"Query {waiting.id} runs as {waiting.query.id}")
        elif x.method == "DELETE" and x.scope["path"].startswith("/v1/query/"):
            self.admission.cancel(waiting)  # Trino's REST cancel: the caller had its id
            await self.admission.persist(waiting)
            await x.respond(204, [], b"")
        else:
            await x.respond_text(404, f"Query {waiting.id} waits in the gateway and has no backend page")

    def _poll_timeout(self, waiting: WaitingQuery) -> float:
        wait = self.admission.settings.poll_wait
        if waiting.deadline is not None:
            wait = min(wait, max(0.0, waiting.deadline - time.monotonic()) + 0.01)
        return wait

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
        query = self.book.get(query_id)
        if query is None:
            waiting = self.admission.get(query_id) or await self.admission.find(query_id)
            if waiting is not None:
                await self._of_waiting(x, waiting, statement)
                return
            query = await self.book.find(query_id)
        if query is None:
            await x.respond_text(404, "Query not found")
            return
        x.observed.located(query_id, query.backend.name, query.trace_parent)
        if query.transaction is not None:
            x.observed.transaction = query.transaction
        self.book.polled(query)
        method = x.method
        holder = query.holder
        if holder is not None and statement and method in ("GET", "DELETE") and await self._of_held(x, holder, query):
            return
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

    async def _query_failed(
        self, x: Exchange, query: Query | None, message: str, waited: WaitingQuery | None = None
    ) -> None:
        """A statement request whose backend is gone, hung or talking nonsense: the query is FAILED,
        said the way every Trino client reads it (HTTP 200 and the error in the document). A 502/504
        made clients retry in vain and then report only the status: the Python client raised
        "error 502: bad gateway"; garbage passed on made it raise a JSON decoding error."""
        query_id = query.id if query is not None else waited.id if waited is not None else None
        document = errors.failed_query(x.base, message, query_id=query_id)
        if query is not None:
            self.book.finished(query, FAILED, document["error"]["errorName"])
        if waited is not None:
            self.admission.fail(waited, document["error"]["errorName"], message)
            waited.last = (x.scope["path"], 200, [(b"content-type", b"application/json")], orjson.dumps(document))
            await self.admission.persist(waited)
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


def _no_rows_yet(content: bytes) -> bool:
    """A page that continues (``nextUri``) and has handed out no rows (no ``data``, inline or spooled)."""
    return b'"nextUri"' in content and b'"data"' not in content


def _cluster_fault(content: bytes) -> str | None:
    """The error of a FAILED page when it is the cluster's fault, not the query's (another cluster
    would run it): its name, else None."""
    if b'"FAILED"' not in content:
        return None
    state, error_name = outcome_of_page(content)
    return error_name if state == FAILED and error_name in CLUSTER_FAULTS else None


def _target(url: str) -> str:
    """The path and query string of a backend's URL (``scheme://host[:port]/path?query``)."""
    slash = url.find("/", url.find("//") + 2)
    return url[slash:] if slash != -1 else "/"


def _upstream_target(scope: Scope, upstream_next: str) -> str:
    """What to ask a held query's backend for: the client's own request when it asks for the page
    the gateway polls (its query string kept, as for any query), else that page."""
    target = _target(upstream_next)
    if scope["path"] == _path_of(upstream_next):
        return scope["path"] + _query_string(scope)
    return target


def _path_of(url: str) -> str:
    """The path of a backend's URL, without its query string."""
    target = _target(url)
    question = target.find("?")
    return target if question == -1 else target[:question]


def _token_of(path: str, waiting: WaitingQuery) -> int | None:
    """The token of a request for a waiting query's page: ``/v1/statement/queued/{id}/{slug}/{token}``;
    None if the slug is not the query's (an id alone, guessed or seen in a log, controls nothing)."""
    parts = path.split("/")
    if len(parts) != 7 or not parts[6].isdigit() or len(parts[6]) > 9:
        return None
    token = int(parts[6])
    return token if hmac.compare_digest(parts[5], waiting.slug_for(token)) else None


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
