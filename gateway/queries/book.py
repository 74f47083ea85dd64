"""The query book: one owner for each query's life in this gateway worker.

    accepted ──poll/cancel──▶ (running) ──last page, cancel, FAILED──▶ finished
        │                                                                ▲
        └──────────── no client request for ``idle_expiry`` ─────────▶ abandoned

One call per event (``accepted``, ``polled``, ``finished``, ``abandoned`` by the sweep), and everything
that follows from an event happens here: the query history (the store, where every worker and a
restarted gateway find the query), the per-backend in-flight counts the routers and gauges read, the
health checker's routed-since-check count. The proxy never updates any of these itself.

Live queries stay in the book until they end; finished ones move to a bounded list of recent
queries (late requests of a query, such as its ``infoUri`` page, still find it) and leave the book
when that list is full. A query the book does not know is looked up in the store, and as a last
resort by asking every backend (``find``); a query found there is *adopted*: routed by this worker
from then on, but counted in the in-flight figures of the worker that accepted it only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.backends.registry import BackendRegistry
from gateway.cache.capture import Capture
from gateway.queries.held import HeldQuery
from gateway.queries.history import QueryHistory
from gateway.queries.slots import Slot
from gateway.queries.submission import Submission
from gateway.queries.transactions import (
    COMMITTED,
    ROLLED_BACK,
    UNKNOWN,
    TransactionBindings,
    is_transaction_id,
    transaction_control,
)
from gateway.routing.estimates import EstimateUse
from gateway.store import QueryRecord, Store, now_ms
from gateway.store.backend import Backend
from gateway.upstream import Upstream, UpstreamError

log = logging.getLogger("gateway.queries.book")

# The control word of a query another worker routed, when its text is not at hand: its answers are
# read for the transaction headers as a START's, COMMIT's or ROLLBACK's are.
UNSURE = "?"

FINISHED, FAILED, ABANDONED = "FINISHED", "FAILED", "ABANDONED"


@dataclass(slots=True)
class Origin:
    """How a query came to its backend, written once to its history record (not kept per query)."""

    routing_source: str | None = None
    """What chose its routing group (header, rule, external, default, transaction, kill_query)."""
    routing_rule: str | None = None
    """The rule that set its group, if one did."""
    gateway_id: str | None = None
    """The id the gateway gave it, if it waited or moved: the id its client saw first while it
    waited, and what ties a moved query's attempts together."""
    queued_ms: int | None = None
    """How long it waited in the gateway before a backend had room."""
    attempts: list[str] | None = None
    """Earlier attempts on other backends that failed before any row reached the client ("trino-1:
    connection refused"), when it was sent again (transparent failover)."""
    estimate: EstimateUse | None = None
    """What routing had of the planner's estimate, if it asked for one."""
    cache: str | None = None
    """The result cache's word on it (miss, refused, waited, not eligible: why), if the cache applies."""


@dataclass(slots=True, eq=False)
class Query:
    """A query the gateway routed (or adopted): where it runs and whose it is."""

    id: str
    backend: Backend
    group: str
    user: str | None = None
    trace_parent: str | None = None
    """W3C traceparent of the query's trace: every request of the query joins it."""
    transaction: str | None = None
    """The X-Trino-Transaction-Id it was submitted in, if any."""
    control: str | None = None
    """START, COMMIT or ROLLBACK for the statements that start or end a transaction; UNSURE for one
    another worker or node routed whose text this worker could not read (its answers are read too)."""
    counted: bool = False
    """Accepted by this worker: it counts in this worker's in-flight figures while it runs."""
    last_seen: float = 0.0
    state: str | None = None
    """None while it runs; FINISHED, FAILED or ABANDONED once it ended."""
    error_name: str | None = None
    slot: Slot | None = None
    """Its claim on its backend's and its user's capacity (admission control), released when it ends."""
    submission: Submission | None = None
    """Kept until its first rows reach its client (a read-only query held for failover): while it is
    here, the worker that sent it fetches the query's pages for the client, free to send it elsewhere.
    The client's URIs are the backend's own, as for any query: a poll reaching another worker or node
    is passed through."""
    holder: HeldQuery | None = None
    """The gateway's record of it once it waited in the gateway's queue or moved from another backend
    (``gateway.queries.held``): its attempts, and an answer only the gateway can give again."""
    capture: Capture | None = None
    """Its result on the way into the result cache: every page this worker sees of it goes there."""


def _estimate_source(use: EstimateUse | None) -> str | None:
    """The history's estimate_source: cache or planner, none (asked, but none could be had), or null."""
    if use is None:
        return None
    return use.source or "none"


def outcome_of_page(body: bytes) -> tuple[str, str | None]:
    """(state, Trino error name) of a query's last page."""
    try:
        page: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        return FAILED, None
    if not isinstance(page, dict):
        return FAILED, None
    error = page.get("error")
    state = (page.get("stats") or {}).get("state") or (FAILED if error else FINISHED)
    return str(state), (error.get("errorName") if isinstance(error, dict) else None)


# Asking every backend about a query id (one it does not have in the store): how many such fan-outs
# run at once, how long an id no backend knew stays unknown, how many such ids are remembered.
PROBES_IN_FLIGHT = 8
UNKNOWN_ID_SECONDS = 30.0
UNKNOWN_IDS_KEPT = 10_000


class QueryBook:
    def __init__(
        self,
        store: Store,
        registry: BackendRegistry,
        upstream: Upstream,
        history: QueryHistory,
        transactions: TransactionBindings,
        on_routed: Callable[[str], None] = lambda backend: None,
        on_ended: Callable[[Query], None] = lambda query: None,
        idle_expiry: float = 600.0,
        recent_capacity: int = 10_000,
        settle_seconds: float = 0.0,
    ) -> None:
        self.store = store
        self.registry = registry
        self.upstream = upstream
        self.history = history
        self.transactions = transactions
        self.on_routed = on_routed
        # Told of a query that ended here without a slot of this worker's (a fleet frees it by id).
        self.on_ended = on_ended
        self.idle_expiry = idle_expiry
        self.recent_capacity = recent_capacity
        # With tracing on: how long a query unknown to the store may still be on its way there (the
        # history's flush interval), worth one more look before asking the backends, which cannot
        # tell its trace context.
        self.settle_seconds = settle_seconds
        self._live: dict[str, Query] = {}
        self._recent: dict[str, Query] = {}
        self._counts: dict[str, int] = {}
        self._sending: dict[str, int] = {}  # submissions on their way to each backend, not yet answered
        self._pending: set[asyncio.Task[None]] = set()
        # Ids found nowhere lately (made up, or long gone): asked about again, they cost nothing.
        self._unknown: dict[str, float] = {}
        # Asking every backend about an id is a fan-out: a flood of made-up ids waits its turn here
        # rather than multiplying onto the clusters.
        self._asking = asyncio.Semaphore(PROBES_IN_FLIGHT)

    # -- events ------------------------------------------------------------------------------
    def accepted(
        self, query: Query, sql: str, source: str | None, client_tags: str | None, origin: Origin | None = None
    ) -> None:
        """A backend took a new query this worker routed (``origin``: how it came there)."""
        origin = origin or Origin()
        query.counted = True
        query.last_seen = time.monotonic()
        self._live[query.id] = query
        name = query.backend.name
        self._counts[name] = self._counts.get(name, 0) + 1
        self.on_routed(name)
        self.history.submitted(
            QueryRecord(
                query_id=query.id,
                backend_name=name,
                backend_url=query.backend.proxy_to,
                routing_group=query.group,
                user_name=query.user,
                source=source,
                client_tags=client_tags,
                query_text=sql,
                submitted_at=now_ms(),
                trace_parent=query.trace_parent,
                transaction_id=query.transaction,
                routing_source=origin.routing_source,
                routing_rule=origin.routing_rule,
                gateway_query_id=origin.gateway_id,
                queued_ms=origin.queued_ms,
                attempts="; ".join(origin.attempts) if origin.attempts else None,
                estimate_source=_estimate_source(origin.estimate),
                estimate=origin.estimate.to_json() if origin.estimate is not None else None,
                cache=origin.cache,
            )
        )
        if query.transaction is not None:
            self.transactions.used(query.transaction)

    @staticmethod
    def polled(query: Query) -> None:
        """A client asked about the query (a poll, a cancel, its UI page): it is not abandoned."""
        query.last_seen = time.monotonic()

    def finished(self, query: Query, state: str, error_name: str | None, gateway_id: str | None = None) -> None:
        """The query ended: its last page came, it was cancelled, or the gateway failed it (``gateway_id``:
        the id the gateway gave it since, if any)."""
        if query.state is not None:
            return
        query.state, query.error_name = state, error_name
        if query.capture is not None:
            query.capture.ended()  # (after its last page: nothing more to do)
            query.capture = None
        self._leave(query)
        self.history.finished(query.id, state, error_name, gateway_id)

    def finished_with_page(self, query: Query, page: bytes) -> None:
        state, error_name = outcome_of_page(page)
        self.finished(query, state, error_name)

    async def page_seen(
        self, query: Query, headers: list[tuple[bytes, bytes]], page: bytes, last: bool, path: str | None = None
    ) -> None:
        """A result page of ``query`` came (``last``: it has no nextUri; ``path``: the one its client
        asked for, None for the submission's answer): what it says about the query's life (its
        transaction, its end, its result for the cache) is recorded."""
        if query.capture is not None:
            query.capture.page(page, last, path)
        if query.control is not None:
            await self.transaction_answer(query, headers)
        if last:
            self.finished_with_page(query, page)
            if query.transaction is not None:
                await self.transaction_outcome(query)

    async def transaction_answer(self, query: Query, headers: list[tuple[bytes, bytes]]) -> None:
        """An answer to a START TRANSACTION, COMMIT or ROLLBACK: the transaction it started is bound to
        the backend that answered; the one it ended is released."""
        for name, value in headers:
            lower = name.lower()
            if lower == b"x-trino-started-transaction-id":
                transaction_id = value.decode("latin-1").strip()
                if is_transaction_id(transaction_id):
                    await self.transactions.started(
                        transaction_id, query.backend.name, query.backend.proxy_to, query.id
                    )
            elif lower == b"x-trino-clear-transaction-id" and query.transaction is not None:
                await self.transactions.ended(
                    query.transaction, COMMITTED if query.control == "COMMIT" else ROLLED_BACK
                )

    async def transaction_outcome(self, query: Query) -> None:
        """A statement of a transaction ended: when its backend did not know the transaction, no
        statement of it can run anywhere, and its binding is released."""
        if query.transaction is not None and query.error_name == "UNKNOWN_TRANSACTION":
            await self.transactions.ended(query.transaction, UNKNOWN)

    def sweep(self) -> int:
        """Queries no client asked about for ``idle_expiry`` are abandoned; how many."""
        cutoff = time.monotonic() - self.idle_expiry
        idle = [query for query in self._live.values() if query.last_seen < cutoff]
        for query in idle:
            query.state = ABANDONED
            self._leave(query)
        return len(idle)

    def _leave(self, query: Query) -> None:
        # Ended: the recent list keeps the query for late requests, and its holder only while it has
        # an answer to give again that no backend can (the page of a failure the gateway answered).
        query.submission = None
        if query.holder is not None and query.holder.replay is None:
            query.holder = None
        if self._live.pop(query.id, None) is not None and query.counted:
            self._counts[query.backend.name] -= 1
        if query.slot is not None:
            query.slot.release()
        else:
            self.on_ended(query)
        recent = self._recent
        recent[query.id] = query
        if len(recent) > self.recent_capacity:
            del recent[next(iter(recent))]

    # -- views -------------------------------------------------------------------------------
    def get(self, query_id: str) -> Query | None:
        """The query, if this worker knows it (the hot path: one or two dict lookups)."""
        return self._live.get(query_id) or self._recent.get(query_id)

    def count(self, backend: str) -> int:
        """Queries this worker accepted for ``backend`` that have not ended, and its submissions on
        their way there: a burst of new queries is decided before the first is answered, and each
        decision must see the ones before it, or every one goes to the backend that looked idlest."""
        return self._counts.get(backend, 0) + self._sending.get(backend, 0)

    @contextlib.contextmanager
    def sending(self, backend: str) -> Iterator[None]:
        """A submission on its way to ``backend``, counted in ``count`` until its answer is handled."""
        self._sending[backend] = self._sending.get(backend, 0) + 1
        try:
            yield
        finally:
            self._sending[backend] -= 1

    def seen_since(self, moment: float) -> list[str]:
        """The ids of running queries whose clients asked about them since monotonic ``moment``."""
        return [query.id for query in self._live.values() if query.last_seen >= moment]

    @property
    def live(self) -> int:
        return len(self._live)

    # -- finding a query another worker routed ---------------------------------------------
    async def find(self, query_id: str) -> Query | None:
        """The query with this id: from the book, else the store, else whichever backend knows it."""
        found = self.get(query_id)
        if found is not None:
            return found
        record = await self._from_store(query_id)
        if record is None and self.settle_seconds > 0:
            await asyncio.sleep(self.settle_seconds)
            record = await self._from_store(query_id)
        if record is not None:
            backend = await self.backend_at(record.backend_name, record.backend_url)
            query = Query(query_id, backend, record.routing_group, record.user_name, record.trace_parent)
            if record.state is not None:
                query.state, query.error_name = record.state, record.error_name
            # A START TRANSACTION's last page (the one naming the transaction) may come through any
            # worker or node: whichever serves it binds the transaction.
            query.transaction = record.transaction_id
            query.control = UNSURE if record.query_text is None else transaction_control(record.query_text)
        else:
            backend = await self._ask_backends(query_id)
            if backend is None:
                return None
            query = Query(query_id, backend, backend.routing_group, control=UNSURE)
            if self.settle_seconds > 0:
                # Its trace context is still on its way to the store: pick it up for later polls.
                task = asyncio.create_task(self._trace_later(query))
                self._pending.add(task)
                task.add_done_callback(self._pending.discard)
        return self._adopt(query)

    def _adopt(self, query: Query) -> Query:
        # Another worker may have been quicker: one Query per id in this book.
        known = self.get(query.id)
        if known is not None:
            return known
        query.last_seen = time.monotonic()
        if query.state is None:
            self._live[query.id] = query
        else:
            self._recent[query.id] = query
        return query

    async def backend_at(self, name: str, url: str) -> Backend:
        """The record of the backend a query (or transaction) runs on, at the URL it was sent to (a
        backend deleted or moved since is still reached where the query is)."""
        backend = await self.registry.get(name)
        if backend is not None and backend.proxy_to == url:
            return backend
        return Backend(name=name, proxy_to=url) if backend is None else backend.model_copy(update={"proxy_to": url})

    async def _trace_later(self, query: Query) -> None:
        for _ in range(3):
            await asyncio.sleep(self.settle_seconds * 2)
            record = await self._from_store(query.id)
            if record is not None:
                query.trace_parent = record.trace_parent
                return

    async def _from_store(self, query_id: str) -> QueryRecord | None:
        try:
            return await self.store.get_query(query_id)
        except Exception as error:
            log.error("cannot look up query %s in the store: %s", query_id, error)
            return None

    async def _ask_backends(self, query_id: str) -> Backend | None:
        """Every backend is asked whether it knows the query; the first that does owns it. An id no
        backend knows is remembered as unknown for a while."""
        now = time.monotonic()
        if self._unknown.get(query_id, 0.0) > now:
            return None
        async with self._asking:
            backend, all_answered = await self._ask_every_backend(query_id)
        if backend is None and all_answered:
            # Only when every backend said it does not know the id: one that could not be asked
            # may be running it.
            if len(self._unknown) >= UNKNOWN_IDS_KEPT:
                self._unknown = {k: t for k, t in self._unknown.items() if t > now}
                if len(self._unknown) >= UNKNOWN_IDS_KEPT:
                    self._unknown.clear()
            self._unknown[query_id] = now + UNKNOWN_ID_SECONDS
        return backend

    async def _ask_every_backend(self, query_id: str) -> tuple[Backend | None, bool]:
        """The backend that knows the query, if any; and whether every backend answered."""
        backends = await self.registry.all()

        async def knows(backend: Backend) -> bool | None:
            try:
                answer = await self.upstream.fetch(
                    f"{backend.proxy_to}/v1/query/{query_id}",
                    backend=backend,
                    headers={"X-Trino-User": "trino-gateway"},
                    timeout=3,
                )
            except UpstreamError:
                return None
            return True if answer.status == 200 else False if answer.status in (404, 410) else None

        answers = await asyncio.gather(*(knows(b) for b in backends))
        for backend, known in zip(backends, answers, strict=True):
            if known:
                log.info("query %s found on backend %s by asking every backend", query_id, backend.name)
                return backend, True
        return None, all(known is False for known in answers)

    # -- housekeeping ------------------------------------------------------------------------
    async def sweep_forever(self, every: float = 60.0) -> None:
        while True:
            await asyncio.sleep(every)
            abandoned = self.sweep()
            if abandoned:
                log.info("%d queries no client asked about for %.0f s are forgotten", abandoned, self.idle_expiry)

    def close(self) -> None:
        for task in self._pending:
            task.cancel()
