"""Query history: what the gateway routed, where, for whom, and how it ended. The query book
(``gateway.queries.book``) writes it; the admin API reads it from the store.

Writes are buffered and flushed together every ``flush_interval`` (one transaction for many
queries), so the store stays off the path of each submission. A poll reaching another worker
before its query is flushed is still routed right: the locator then asks the backends.

When the store cannot be written, the rows stay buffered and are written when it is back (retried
after ``retry_interval``, doubling up to ``max_retry_interval``); only beyond ``max_pending``
buffered rows are the oldest dropped, and the log says how many.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from gateway.store import DuplicateQuery, QueryOutcome, QueryRecord, Store, now_ms

log = logging.getLogger("gateway.queries.history")


class QueryHistory:
    def __init__(
        self,
        store: Store,
        sql_chars: int,
        retention_hours: float,
        flush_interval: float = 0.05,
        max_pending: int = 100_000,
        retry_interval: float = 0.5,
        max_retry_interval: float = 5.0,
    ) -> None:
        self.store = store
        self.sql_chars = sql_chars
        self.retention_ms = int(retention_hours * 3600 * 1000)
        self.flush_interval = flush_interval
        self.max_pending = max_pending
        self.retry_interval = retry_interval
        self.max_retry_interval = max_retry_interval
        self._submitted: list[QueryRecord] = []
        self._finished: list[QueryOutcome] = []
        self._wake = asyncio.Event()
        # One flush at a time: a query's outcome must never be written before its row.
        self._flushing = asyncio.Lock()
        # Seconds before the next attempt while the store fails; 0 while it works.
        self._retry_in = 0.0
        self._failed_since: float | None = None

    def submitted(self, record: QueryRecord) -> None:
        record.query_text = (record.query_text or "")[: self.sql_chars]
        self._submitted.append(record)
        self._wake.set()

    def finished(self, query_id: str, state: str, error_name: str | None, gateway_id: str | None = None) -> None:
        self._finished.append(QueryOutcome(query_id, state, error_name, now_ms(), gateway_id))
        self._wake.set()

    async def flush(self) -> None:
        """Write what is buffered: new queries first, so that their outcomes find their rows."""
        async with self._flushing:
            await self._write()

    async def _write(self) -> None:
        submitted, self._submitted = self._submitted, []
        finished, self._finished = self._finished, []
        if not submitted and not finished:
            return
        try:
            if submitted:
                await self._record(submitted)
                submitted = []
            if finished:
                await self.store.finish_queries(finished)
                finished = []
        except asyncio.CancelledError:
            # The node stops mid-write (its flushing task is cancelled before the last flush):
            # the rows go back to the buffer for that flush, or they would be lost with the task.
            # A batch whose commit went through before the cancel is written again as duplicates.
            self._submitted[:0] = submitted
            self._finished[:0] = finished
            raise
        except Exception as error:
            # The queries run anyway; their rows wait here until the store takes them. Outcomes
            # wait with their rows: written first, they would find no row to update.
            self._keep(submitted, finished, error)
            return
        if self._failed_since is not None:
            log.warning(
                "query history: the store takes writes again after %.1fs; buffered rows written",
                asyncio.get_running_loop().time() - self._failed_since,
            )
            self._failed_since = None
        self._retry_in = 0.0

    async def _record(self, records: list[QueryRecord]) -> None:
        try:
            await self.store.record_queries(records)
        except DuplicateQuery:
            # A row exists already (a retried batch whose commit did succeed): write the others
            # one by one, so that one row cannot hold every later one back.
            for record in records:
                try:
                    await self.store.record_queries([record])
                except DuplicateQuery:
                    log.warning("query history: query %s is recorded already", record.query_id)

    def _keep(self, submitted: list[QueryRecord], finished: list[QueryOutcome], error: Exception) -> None:
        self._submitted[:0] = submitted
        self._finished[:0] = finished
        dropped = 0
        for buffer in (self._submitted, self._finished):
            if len(buffer) > self.max_pending:
                excess = len(buffer) - self.max_pending
                del buffer[:excess]
                dropped += excess
        if dropped:
            log.error(
                "query history: %d buffered rows dropped: more than %d wait for the store", dropped, self.max_pending
            )
        self._retry_in = min(self.max_retry_interval, max(self.retry_interval, self._retry_in * 2))
        if self._failed_since is None:
            self._failed_since = asyncio.get_running_loop().time()
        log.error(
            "query history: cannot write to the store; %d queries and %d outcomes kept, next try in %.1fs: %s",
            len(self._submitted),
            len(self._finished),
            self._retry_in,
            error,
        )
        self._wake.set()

    @property
    def pending(self) -> int:
        """Rows waiting to be written."""
        return len(self._submitted) + len(self._finished)

    async def flush_forever(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            # While the store fails, new queries do not bring the next attempt forward.
            await asyncio.sleep(self._retry_in or self.flush_interval)
            await self.flush()

    async def purge_forever(self) -> None:
        interval = min(3600.0, max(1.0, self.retention_ms / 1000 / 4))
        while True:
            try:
                removed = await self.store.purge_queries(now_ms() - self.retention_ms)
                if removed:
                    log.info("removed %d queries older than the history retention", removed)
            except Exception as error:
                log.error("cannot purge query history: %s", error)
            await asyncio.sleep(interval)

    async def drain(self) -> None:
        with contextlib.suppress(Exception):
            await self.flush()
