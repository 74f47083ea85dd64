"""Sending a query to a backend: to the first of its candidates that takes it, and, for a read-only
query whose backend fails before any row reached its client, to another one (failover).

``Sender.send`` is the one loop of a query's sending. Each turn is one attempt (``attempt``), and the
loop acts on its outcome:

    answered ─────────▶ the client gets the page; a read-only page without rows is held (the gateway
                        fetches the next one for the client, so the query may still move)
    not taken ────────▶ the next candidate; none left: a query that waited waits again, others fail
                        with the group's NO_NODES_AVAILABLE
    failed ───────────▶ read-only: recorded as an attempt, then an untried backend of the group (back
                        first in its line where admission control counts the group), or, with none left
                        or after failover.max_attempts, the failure; else the failure at once

Nothing here calls back into its caller: a held poll whose backend failed (``held_requests``) hands
the query to ``fail_over``, which moves it and sends it again through the same loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from gateway import errors
from gateway.backends.registry import BackendRegistry
from gateway.config import FailoverConfig
from gateway.dataplane import headers as hdr
from gateway.dataplane import oauth2
from gateway.dataplane.answers import continues, field, no_rows_yet
from gateway.dataplane.attempt import Attempts, Kind, Outcome
from gateway.dataplane.exchange import Exchange
from gateway.dataplane.forward import fail_query
from gateway.dataplane.pages import JSON, held_page
from gateway.dataplane.rewrite import rewrite_uris
from gateway.queries.admission import Admission, Slot
from gateway.queries.book import FAILED, Origin, Query, QueryBook
from gateway.queries.held import HeldQuery, Replay
from gateway.queries.states import ADMITTED, STARTED
from gateway.queries.submission import Submission
from gateway.queries.transactions import transaction_control
from gateway.routing.decider import NoBackendAvailable, RouteDecider
from gateway.store.backend import Backend
from gateway.upstream import Answer, Upstream, UpstreamError

log = logging.getLogger("gateway.dataplane")

# The outcome recorded for an attempt of a query that was sent to another backend after it.
FAILED_OVER = "FAILED_OVER"
# What to try next: backends (the first with a slot taken already), or None when the client is answered.
NextTry = tuple[list[Backend], Slot | None] | None


class Sender:
    def __init__(
        self,
        attempts: Attempts,
        book: QueryBook,
        admission: Admission,
        decider: RouteDecider,
        registry: BackendRegistry,
        upstream: Upstream,
        failover: FailoverConfig,
    ) -> None:
        self.attempts = attempts
        self.book = book
        self.admission = admission
        self.decider = decider
        self.registry = registry
        self.upstream = upstream
        self.failover = failover
        self._background: set[asyncio.Task[None]] = set()

    async def send(
        self,
        x: Exchange,
        submission: Submission,
        candidates: list[Backend],
        slot: Slot | None = None,
        held: HeldQuery | None = None,
        bound: bool = False,
        headers: hdr.RawHeaders | None = None,
    ) -> None:
        """``submission`` goes to the first of ``candidates`` that takes it, and the client gets the
        answer (``slot``: taken on the first already; ``held``: the gateway holds the query, because it
        waited or was sent before; ``bound``: it belongs to a transaction, whose backend is the only
        one; ``headers``: the submission's, unpacked already)."""
        refused: list[str] = []
        tried: set[str] = set()
        last: tuple[Backend, Outcome] | None = None
        candidates = list(candidates)
        while candidates:
            backend = candidates.pop(0)
            tried.add(backend.name)
            if slot is not None and slot.backend != backend.name:
                slot.release()
                slot = None
            if slot is None:
                # (None: nothing counts this backend's queries.)
                slot = await self.admission.claim_slot(backend, submission.user)
            # Counted in flight while on its way; once answered, the book counts it from _taken's
            # acceptance, which runs before anything else can (no await before it).
            with self.book.sending(backend.name):
                outcome = await self.attempts.submit(x, backend, submission, headers or submission.headers)
            if outcome.kind is Kind.ANSWERED:
                await self._taken(x, backend, submission, outcome, slot, held)
                return
            if slot is not None:
                slot.release()
            slot, last = None, (backend, outcome)
            if outcome.kind is Kind.NOT_TAKEN:
                if bound:
                    await fail_query(x, self.book, None, _owner_unreachable(backend.name, submission, outcome), None)
                    return
                refused.append(f"{backend.name} ({outcome.why})")
                log.warning("backend %s did not take a query (%s), trying the next one", backend.name, outcome.why)
                if outcome.answer is not None and (candidates or held is not None):
                    x.observed.not_taken()
                if not candidates and held is not None and held.waits:
                    next_try = await self._wait_again(x, held, tried)
                    if next_try is None:
                        return
                    candidates, slot = next_try
                continue
            if not submission.failover:
                await self._failed_in_place(x, backend, outcome, held)
                return
            held = held or HeldQuery(submission)
            next_try = await self._move(x, held, backend.name, outcome)
            if next_try is None:
                return
            candidates, slot = next_try
        await self._unreachable(x, submission, refused, last, held)

    async def fail_over(self, x: Exchange, query: Query, outcome: Outcome) -> None:
        """A held query's backend failed before any row reached the client: it is sent elsewhere (the
        client's poll then gets that backend's first page), or it fails as it would without failover.
        Two polls that saw it fail take turns; the second finds it moved (and its answer kept)."""
        held = query.holder
        if held is None:
            assert query.submission is not None
            held = query.holder = HeldQuery(query.submission)
            held.query = query
        async with held.locked():
            if held.query is not query:
                await self._answered_meanwhile(x, held)
                return
            next_try = await self._move(x, held, query.backend.name, outcome)
            if next_try is not None:
                candidates, slot = next_try
                await self.send(x, held.submission, candidates, slot, held)

    async def _answered_meanwhile(self, x: Exchange, held: HeldQuery) -> None:
        """A poll of a query another request moved while this one waited its turn: the answer that
        request gave, if it was to this same page, else the query's end or its page is gone."""
        replay = held.replay
        if replay is not None and replay.path == x.scope["path"]:
            await x.respond(replay.status, list(replay.headers), replay.body)
        elif held.ended:
            await self.respond_held(x, held)
        else:
            await x.respond_text(410, "Query page is gone")

    # -- what the outcomes lead to ---------------------------------------------------------------------
    async def _taken(
        self,
        x: Exchange,
        backend: Backend,
        submission: Submission,
        outcome: Outcome,
        slot: Slot,
        held: HeldQuery | None,
    ) -> None:
        """The backend answered: the client gets the page, and a read-only one without rows is held."""
        answer = outcome.answer
        assert answer is not None
        status, content = answer.status, answer.body
        query = await self._accepted(x, backend, submission, answer, slot, held) if status == 200 else None
        if slot is not None:
            if query is None:
                slot.release()
            else:
                await slot.bind(query.id)
        headers = hdr.to_client(answer.headers)
        if status == 401:
            headers = oauth2.challenge_on_gateway(headers, x.base, backend.name)
        rewritten = rewrite_uris(content, x.base, backend.proxy_to, backend.name)
        if query is not None and submission.failover and no_rows_yet(content):
            # The client will poll for rows; until they come a read-only query may still move: the
            # book's record keeps what sending it again takes.
            query.submission = submission
        if held is not None:
            held.query = query
            if query is not None:
                held.trace_parent = held.trace_parent or query.trace_parent
                query.holder = held
            if held.waits:
                self.admission.started(held)
            held.state = STARTED
            # An answer to a poll (of the gateway's page, or of a backend that failed) is a page its
            # backend cannot give again: kept for a client that asks again.
            held.replay = Replay(x.scope["path"], status, list(headers), rewritten) if x.method != "POST" else None
        await x.respond(status, headers, rewritten)

    async def _accepted(
        self,
        x: Exchange,
        backend: Backend,
        submission: Submission,
        answer: Answer,
        slot: Slot | None,
        held: HeldQuery | None,
    ) -> Query | None:
        """A backend took the query: the query (holding ``slot``), if the backend gave it an id."""
        query_id = field(answer.body, "id")
        if query_id is None:
            return None
        query = Query(
            query_id,
            backend,
            submission.group,
            user=submission.user,
            trace_parent=x.observed.accepted(query_id, backend.name, submission.group),
            transaction=submission.transaction,
            control=transaction_control(submission.sql),
            slot=slot,
        )
        if submission.capture is not None and submission.capture.open:
            submission.capture.attach()
            query.capture = submission.capture
        origin = Origin(
            submission.routing_source, submission.routing_rule, estimate=submission.estimate, cache=submission.cache
        )
        if held is not None and (held.waits or held.attempts):
            origin.gateway_id = held.id
            origin.queued_ms = round(held.waited * 1000) or None if held.waits else None
            origin.attempts = list(held.attempts) if held.attempts else None
        self.book.accepted(query, submission.sql, submission.source, submission.client_tags, origin)
        await self.book.page_seen(query, answer.headers, answer.body, not continues(answer.body))
        return query

    async def _move(self, x: Exchange, held: HeldQuery, backend: str, outcome: Outcome) -> NextTry:
        """A read-only query's backend failed before any row reached the client: it goes to a backend
        of its group that has not failed it. With none left (or after ``failover.max_attempts``) it
        fails with the outcome's message, as it would without failover."""
        held.failed_on(backend, outcome.why)
        ranked = self._ranked(await self.registry.all(), held.group)
        untried = [candidate for candidate in ranked if candidate.name not in held.excluded]
        attempts = held.attempts or []
        giving_up = not untried or len(attempts) >= self.failover.max_attempts
        previous, held.query = held.query, None
        if giving_up:
            message = outcome.message
            if len(attempts) > 1:
                message += " (after failing on " + "; ".join(attempts[:-1]) + ")"
            self.admission.fail(held, "GENERIC_INTERNAL_ERROR", message)
            # Named by the id its client saw last: its last attempt's (the gateway's if it waited since).
            await self.respond_held(x, held, held.id if previous is None else previous.id)
        if previous is not None:
            assert isinstance(previous, Query)
            # That attempt ends here (its slot with it); the next gets an id of its own. (After the
            # answer: a query the gateway failed keeps its holder, which has that answer to give again.)
            outcome_name = "GENERIC_INTERNAL_ERROR" if giving_up else FAILED_OVER
            self.book.finished(previous, FAILED, outcome_name, gateway_id=held.id)
            self._cancel_quietly(previous, held.user)
            # Its client's poll is answered by the next backend's page (or the failure), which the
            # holder keeps: a retry of that poll, at this attempt's URI, gets it again.
            previous.holder = held
        if giving_up:
            return None
        x.observed.failed_over(held.group, backend, outcome.why)
        log.warning("a query failed on %s before returning a row (%s); it is sent again", backend, outcome.why)
        if not self.admission.counts_any(untried, self.admission.user_limit(held.submission.user_limit)):
            return untried, None
        await self.admission.requeue(held, ranked)
        return await self._go_or_wait(x, held, set())

    async def _wait_again(self, x: Exchange, held: HeldQuery, tried: set[str]) -> NextTry:
        """A query that waited, refused by the backend it was admitted to: back first in line."""
        log.warning("query %s was not taken; it waits again", held.id)
        await self.admission.requeue(held, self._ranked(await self.registry.all(), held.group))
        return await self._go_or_wait(x, held, tried)

    async def _go_or_wait(self, x: Exchange, held: HeldQuery, tried: set[str]) -> NextTry:
        """After ``held`` joined the queue again: sent at once if a backend had room (not one that
        refused it in this request), else its client gets the QUEUED page."""
        backend = held.backend
        if (
            held.state == ADMITTED
            and backend is not None
            and backend.name not in tried
            and await self.admission.claim(held)
        ):
            return [backend], held.slot
        await self.respond_held(x, held)
        return None

    async def _failed_in_place(self, x: Exchange, backend: Backend, outcome: Outcome, held: HeldQuery | None) -> None:
        """A query that may not run twice failed where it may have reached its backend."""
        answer = outcome.answer
        if answer is None or answer.status == 200:
            await self.fail(x, None, outcome.message, held)
            return
        # The backend's own error answer, as it came.
        rewritten = rewrite_uris(answer.body, x.base, backend.proxy_to, backend.name)
        headers = hdr.to_client(answer.headers)
        if held is not None and held.waits:
            self.admission.fail(held, "GENERIC_INTERNAL_ERROR", outcome.message)
            held.replay = Replay(x.scope["path"], answer.status, list(headers), rewritten)
            await self.admission.persist(held)
        await x.respond(answer.status, headers, rewritten)

    async def _unreachable(
        self,
        x: Exchange,
        submission: Submission,
        refused: list[str],
        last: tuple[Backend, Outcome] | None,
        held: HeldQuery | None,
    ) -> None:
        """No candidate took the query."""
        if held is None and last is not None and last[1].answer is not None:
            # The last one's own answer (502, 503, 504): a client retries a 503, as from Trino.
            backend, answer = last[0], last[1].answer
            body = rewrite_uris(answer.body, x.base, backend.proxy_to, backend.name)
            await x.respond(answer.status, hdr.to_client(answer.headers), body)
            return
        message = f"trino-gateway: no backend of routing group '{submission.group}' could be reached: "
        message += ", ".join(refused)
        if held is not None and held.attempts:
            message += " after it failed on " + "; ".join(held.attempts)
        x.observed.unreachable(message)
        if held is None:
            await x.respond_json(200, errors.no_backend_document(x.base, message))
            return
        self.admission.fail(held, "NO_NODES_AVAILABLE", message)
        await self.respond_held(x, held)

    # -- answers ---------------------------------------------------------------------------------------
    async def fail(self, x: Exchange, query: Query | None, message: str, held: HeldQuery | None = None) -> None:
        """The query fails with ``message`` (a Trino FAILED document); a held one keeps the answer."""
        if held is None or not held.waits:
            await fail_query(x, self.book, query, message, query.id if query is not None else None)
            return
        document = errors.failed_query(x.base, message, query_id=held.id)
        self.admission.fail(held, document["error"]["errorName"], message)
        await self.respond_held(x, held)

    async def respond_held(self, x: Exchange, held: HeldQuery, shown_id: str | None = None) -> None:
        """The page the gateway writes for ``held`` (QUEUED, or its end), kept for a client that asks again."""
        body = held_page(x.base, held, shown_id)
        held.replay = Replay(x.scope["path"], 200, JSON, body)
        await self.admission.persist(held)
        await x.respond(200, list(JSON), body)

    # -- helpers ---------------------------------------------------------------------------------------
    def _ranked(self, backends: list[Backend], group: str) -> list[Backend]:
        """The routable backends of ``group`` (or its fallback), best first."""
        self.admission.refresh(backends)
        try:
            return self.decider.decide(backends, group).ranked
        except NoBackendAvailable:
            return []

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


def _owner_unreachable(name: str, submission: Submission, outcome: Outcome) -> str:
    return (
        f"trino-gateway: backend {name}, which holds transaction {submission.transaction}, cannot be reached "
        f"({outcome.why}); the transaction cannot continue on another backend"
    )
