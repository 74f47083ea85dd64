"""Draining a backend: what it still has to finish, counted over every worker and gateway node
(from the store), and the reconciliation that keeps that count honest.

A query is unfinished while the history has no outcome for it. The gateway writes an outcome
when it sees the query end (its last page, a cancel, a failure it answered). A client that walks
away never lets it see that, so queries no client has asked about for a while are looked up on
their backend (``GET /v1/query/{id}``): once the backend reports them done (for a query its client
abandoned, after Trino's ``query.client.timeout``), the outcome is recorded and the query stops
holding the drain.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

import orjson

from gateway.backends.registry import BackendRegistry
from gateway.queries.book import QueryBook
from gateway.store import BackendWork, QueryOutcome, QueryRecord, Store, now_ms
from gateway.store.backend import Backend
from gateway.upstream import Upstream, UpstreamError

log = logging.getLogger("gateway.control.drain")

_DONE = frozenset({"FINISHED", "FAILED"})
# The backend does not know the query (it restarted, or forgot it after its history expired): how it
# ended cannot be told, only that it is not running there.
FORGOTTEN = "FORGOTTEN_BY_BACKEND"


@dataclass(frozen=True)
class DrainStatus:
    name: str
    active: bool
    work: BackendWork

    @property
    def drained(self) -> bool:
        """Safe to stop: no new queries go there and nothing of it is left running."""
        return not self.active and self.work.unfinished_queries == 0 and self.work.open_transactions == 0


class Reconciler:
    """Asks backends how the queries nobody is watching ended, and records it."""

    def __init__(
        self,
        store: Store,
        registry: BackendRegistry,
        upstream: Upstream,
        book: QueryBook,
        quiet: float = 30.0,
        recheck: float = 300.0,
        batch: int = 200,
        concurrency: int = 16,
    ) -> None:
        self.store = store
        self.registry = registry
        self.upstream = upstream
        self.book = book
        self.quiet = quiet
        self.recheck = recheck
        self.batch = batch
        self._slots = asyncio.Semaphore(concurrency)
        self._checked: dict[str, float] = {}

    async def reconcile(
        self, backend: str | None = None, quiet: float | None = None, recheck: float | None = None
    ) -> int:
        """Look up unfinished queries older than ``quiet`` that no client of this worker asked about
        within it, each at most once per ``recheck``; how many outcomes were recorded."""
        quiet = self.quiet if quiet is None else quiet
        recheck = self.recheck if recheck is None else recheck
        now = time.monotonic()
        self._checked = {q: at for q, at in self._checked.items() if now - at < max(recheck, self.recheck)}
        records = await self.store.unfinished_queries(backend, now_ms() - int(quiet * 1000), self.batch * 10)
        chosen = [
            r
            for r in records
            if now - self._checked.get(r.query_id, float("-inf")) >= recheck and not self._watched(r.query_id, quiet)
        ][: self.batch]
        if not chosen:
            return 0
        backends = {b.name: b for b in await self.registry.all()}
        outcomes = await asyncio.gather(*(self._ask(r, backends.get(r.backend_name)) for r in chosen))
        for record in chosen:
            self._checked[record.query_id] = now
        found = [o for o in outcomes if o is not None]
        if found:
            await self.store.finish_queries(found)
            for outcome in found:
                query = self.book.get(outcome.query_id)
                if query is not None:
                    self.book.finished(query, outcome.state, outcome.error_name)
            log.info("recorded how %d queries no client was watching ended", len(found))
        return len(found)

    def _watched(self, query_id: str, quiet: float) -> bool:
        query = self.book.get(query_id)
        return query is not None and query.state is None and time.monotonic() - query.last_seen < quiet

    async def _ask(self, record: QueryRecord, backend: Backend | None) -> QueryOutcome | None:
        target = backend or Backend(name=record.backend_name, proxy_to=record.backend_url)
        async with self._slots:
            try:
                answer = await self.upstream.fetch(
                    f"{record.backend_url}/v1/query/{record.query_id}",
                    backend=target,
                    headers={"X-Trino-User": "trino-gateway"},
                    timeout=5,
                )
            except UpstreamError:
                return None  # the backend cannot tell now; asked again later
        if answer.status in (404, 410):  # Trino answers 410 Gone for a query it does not know
            return QueryOutcome(record.query_id, "UNKNOWN", FORGOTTEN, now_ms())
        if answer.status != 200:
            return None
        try:
            info = orjson.loads(answer.body)
        except orjson.JSONDecodeError:
            return None
        state = info.get("state") if isinstance(info, dict) else None
        if state not in _DONE:
            return None
        error = info.get("errorCode")
        error_name = error.get("name") if isinstance(error, dict) else None
        return QueryOutcome(record.query_id, state, error_name, now_ms())

    async def reconcile_forever(self, every: float = 30.0) -> None:
        while True:
            await asyncio.sleep(every)
            try:
                await self.reconcile()
            except Exception as error:
                log.error("cannot reconcile unfinished queries: %s", error)
