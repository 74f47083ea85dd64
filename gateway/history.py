"""Query history: what the gateway routed, where, for whom, and how it ended.

Writes are buffered and flushed together every ``flush_interval`` (one transaction for many
queries), so the store stays off the path of each submission. A poll reaching another worker
before its query is flushed is still routed right: the locator then asks the backends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import orjson

from gateway.store import QueryRecord, Store, now_ms

log = logging.getLogger("gateway.history")


class QueryHistory:
    def __init__(self, store: Store, sql_chars: int, retention_hours: float, flush_interval: float = 0.05) -> None:
        self.store = store
        self.sql_chars = sql_chars
        self.retention_ms = int(retention_hours * 3600 * 1000)
        self.flush_interval = flush_interval
        self._submitted: list[QueryRecord] = []
        self._finished: list[tuple[str, str, str | None, int]] = []
        self._wake = asyncio.Event()
        # One flush at a time: a query's outcome must never be written before its row.
        self._flushing = asyncio.Lock()

    def submitted(self, record: QueryRecord) -> None:
        record.query_text = (record.query_text or "")[: self.sql_chars]
        self._submitted.append(record)
        self._wake.set()

    def finished(self, query_id: str, state: str, error_name: str | None) -> None:
        self._finished.append((query_id, state, error_name, now_ms()))
        self._wake.set()

    def finished_from_page(self, query_id: str, body: bytes) -> None:
        try:
            page: dict[str, Any] = orjson.loads(body)
        except orjson.JSONDecodeError:
            return
        state = (page.get("stats") or {}).get("state") or ("FAILED" if page.get("error") else "FINISHED")
        error = page.get("error") or {}
        self.finished(query_id, state, error.get("errorName"))

    async def flush(self) -> None:
        """Write what is buffered: new queries first, so that their outcomes find their rows."""
        async with self._flushing:
            await self._write()

    async def _write(self) -> None:
        submitted, self._submitted = self._submitted, []
        finished, self._finished = self._finished, []
        if submitted:
            try:
                await self.store.record_queries(submitted)
            except Exception as error:
                # The queries run anyway; only history (and the cross-worker lookup) misses them.
                log.error("cannot record %d queries in the store: %s", len(submitted), error)
        if finished:
            try:
                await self.store.finish_queries(finished)
            except Exception as error:
                log.error("cannot record the end of %d queries: %s", len(finished), error)

    async def flush_forever(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await asyncio.sleep(self.flush_interval)
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
