"""A client's requests of a query the gateway holds, answered by the gateway.

- A query that **waits** in the gateway's queue is polled at its gateway URIs
  (``/v1/statement/queued/{gateway id}/{slug}/{token}``): a poll waits until the query may start (then
  it is sent, and the answer is the backend's first page) or ``admission.poll_wait`` passes (the next
  QUEUED page); a DELETE cancels it without any backend knowing. Any worker or node answers, from the
  queue's state; a token's slug proves the page was handed out.
- A query that **runs** on a backend that has returned no row yet is polled at its backend's own URIs,
  as any query: the worker that sent it answers the poll it expects by fetching that page itself, so
  that a backend failing before the first row sends the query elsewhere (``Sender.fail_over``). Any
  other request of it, and the same poll reaching another worker or node, is forwarded as for any
  query.
"""

from __future__ import annotations

import time

from gateway.dataplane import headers as hdr
from gateway.dataplane.answers import continues, no_rows_yet, query_string
from gateway.dataplane.attempt import Attempts, Kind
from gateway.dataplane.exchange import Exchange
from gateway.dataplane.rewrite import rewrite_uris
from gateway.dataplane.sending import Sender
from gateway.queries.admission import Admission
from gateway.queries.book import FAILED, Query, QueryBook
from gateway.queries.held import HeldQuery
from gateway.queries.states import ADMITTED, QUEUED, STARTED

_PARTIAL_CANCEL = "/partialCancel/"


class HeldRequests:
    def __init__(self, attempts: Attempts, sender: Sender, admission: Admission, book: QueryBook) -> None:
        self.attempts = attempts
        self.sender = sender
        self.admission = admission
        self.book = book

    # -- a query running on a backend, held until its first rows ------------------------------------
    async def of_held(self, x: Exchange, query: Query) -> bool:
        """A poll or cancel of a query the gateway holds (it may still move to another backend, or
        the gateway answered one of its pages itself): answered here; False for any other request,
        which is forwarded as for any query."""
        path = x.scope["path"]
        held = query.holder
        if held is not None and held.replay is not None and held.replay.path == path:
            replay = held.replay
            if x.method == "GET":
                # The client asks again for a page the gateway answered (a retry): the same answer.
                await x.respond(replay.status, list(replay.headers), replay.body)
                return True
            if held.ended:
                # A cancel of the query the gateway ended (and cancelled on its backend) with that
                # answer: nothing is left to cancel, on a backend that may be gone.
                await x.respond(204, [], b"")
                return True
        if query.submission is None or _PARTIAL_CANCEL in path:
            return False  # handed over (its rows come from the backend's URIs), or one stage's cancel
        if held is not None:
            held.last_seen = time.monotonic()
        if x.method == "DELETE":
            await self._cancel_running(x, query)
        else:
            await self._poll_running(x, query)
        return True

    async def _poll_running(self, x: Exchange, query: Query) -> None:
        """The page the client asks for, fetched from the query's backend. A page with rows (or the
        last) hands the client over to the backend's own URIs; a backend that fails before that sends
        the query elsewhere."""
        backend = query.backend
        target = x.scope["path"] + query_string(x.scope)
        outcome = await self.attempts.poll(x, backend, "GET", target, query.id)
        if outcome.kind is Kind.FAILED:
            await self.sender.fail_over(x, query, outcome)
            return
        answer = outcome.answer
        assert answer is not None
        if outcome.kind is Kind.PASS_ON:
            await x.respond(answer.status, hdr.to_client(answer.headers), answer.body)
            return
        content = answer.body
        if query.holder is not None:
            query.holder.replay = None  # the client asked for its backend's page: the backend gives it again
        if not no_rows_yet(content):
            # Rows (or the end): from here the client follows the backend's own URIs, as any query.
            query.submission = None
            await self.book.page_seen(query, answer.headers, content, not continues(content), x.scope["path"])
        elif query.capture is not None:
            query.capture.page(content, False, x.scope["path"])  # (its result's pages are a chain: none missed)
        rewritten = rewrite_uris(content, x.base, backend.proxy_to, backend.name)
        await x.respond(200, hdr.to_client(answer.headers), rewritten)

    async def _cancel_running(self, x: Exchange, query: Query) -> None:
        """A DELETE of a held query's page: it is cancelled on its backend (a failure there: it was
        cancelled here, and its backend ends it by itself), and it moves nowhere any more."""
        target = x.scope["path"] + query_string(x.scope)
        await self.attempts.poll(x, query.backend, "DELETE", target, query.id)
        self.book.finished(query, FAILED, "USER_CANCELED")
        held = query.holder
        if held is not None and held.waits:
            self.admission.cancel(held)
            await self.admission.persist(held)
        await x.respond(204, [], b"")

    # -- a query waiting in the gateway ---------------------------------------------------------------
    async def of_waiting(self, x: Exchange, held: HeldQuery, statement: bool) -> None:
        """Any request naming a query that waits (or waited) in the gateway."""
        if statement and x.method in ("GET", "DELETE"):
            await self._poll_waiting(x, held)
        elif held.query is not None:
            # It runs on a backend now, under the backend's id: its pages are there.
            await x.respond_text(404, f"Query {held.id} runs as {held.query.id}")
        elif x.method == "DELETE" and x.scope["path"].startswith("/v1/query/"):
            self.admission.cancel(held)  # Trino's REST cancel: the caller had its id
            await self.admission.persist(held)
            await x.respond(204, [], b"")
        else:
            await x.respond_text(404, f"Query {held.id} waits in the gateway and has no backend page")

    async def _poll_waiting(self, x: Exchange, held: HeldQuery) -> None:
        """A poll (or cancel) of a waiting query's page."""
        path = x.scope["path"]
        token = held.token_of(path)
        if token is None:
            await x.respond_text(404, "Query not found")
            return
        held.last_seen = time.monotonic()
        x.observed.located(held.id, "", held.trace_parent)
        async with held.locked():
            if x.method == "DELETE":
                await self.admission.reread(held)  # another worker or node may have moved it on
                await self._cancel(x, held)
                return
            replay = held.replay
            if replay is not None and replay.path == path:
                # The client asks again for the page it had (a retry): the same answer.
                await x.respond(replay.status, list(replay.headers), replay.body)
                return
            if token > held.token:
                held.token = token  # another worker or node answered its last polls (the slug proves it)
            elif token == held.token - 1 and held.state == QUEUED:
                held.token -= 1  # a retry of a poll whose answer was lost (its worker or node stopped)
            if token != held.token or (held.state == STARTED and held.query is None):
                # (Sent by another worker or node, whose answer moved its client on to the backend's pages.)
                await x.respond_text(410, "Query page is gone")
                return
            await self._answer_waiting(x, held)

    async def _answer_waiting(self, x: Exchange, held: HeldQuery) -> None:
        if held.state == QUEUED:
            await self.admission.wait_turn(held, self._poll_timeout(held))
        if held.state == ADMITTED and held.backend is not None:
            if not await self.admission.claim(held):
                await self.sender.respond_held(x, held)  # another worker or node sends it
                return
            if not held.attempts:
                x.observed.queue_waited(held.group, held.waited)
            await self.sender.send(x, held.submission, [held.backend], held.slot, held)
        elif held.state == STARTED:
            # Sent, and its client has its backend's page: a poll of this page again was answered above.
            await x.respond_text(410, "Query page is gone")
        else:
            await self.sender.respond_held(x, held)

    def _poll_timeout(self, held: HeldQuery) -> float:
        wait = self.admission.settings.poll_wait
        if held.deadline is not None:
            wait = min(wait, max(0.0, held.deadline - time.monotonic()) + 0.01)
        return wait

    async def _cancel(self, x: Exchange, held: HeldQuery) -> None:
        """A DELETE of a waiting query's page: forgotten without any backend knowing; if it was sent
        meanwhile (by another request), cancelled on its backend by Trino's REST cancel."""
        query = held.query
        if held.state == STARTED and query is not None and query.submission is not None:
            await self.attempts.poll(x, query.backend, "DELETE", f"/v1/query/{query.id}", query.id)
            self.book.finished(query, FAILED, "USER_CANCELED")
        if held.state in (QUEUED, ADMITTED) or (held.state == STARTED and query is not None):
            self.admission.cancel(held)
            await self.admission.persist(held)
        await x.respond(204, [], b"")
