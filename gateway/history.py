"""Query history: what the gateway routed, where, for whom, and how it ended."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson

from gateway.store import QueryRecord, Store, now_ms

log = logging.getLogger("gateway.history")


class QueryHistory:
    def __init__(self, store: Store, sql_chars: int, retention_hours: float) -> None:
        self.store = store
        self.sql_chars = sql_chars
        self.retention_ms = int(retention_hours * 3600 * 1000)
        self._pending: set[asyncio.Task[None]] = set()

    async def submitted(self, record: QueryRecord) -> None:
        """Record a routed query before its client hears back: other workers route its polls by it."""
        record.query_text = (record.query_text or "")[: self.sql_chars]
        try:
            await self.store.record_query(record)
        except Exception as error:
            # The query runs anyway; only history (and cross-worker lookup) misses it.
            log.error("cannot record query %s in the store: %s", record.query_id, error)

    def finished(self, query_id: str, state: str, error_name: str | None) -> None:
        """Record a final state without delaying the client's answer."""
        task = asyncio.get_running_loop().create_task(self._finish(query_id, state, error_name))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    def finished_from_page(self, query_id: str, body: bytes) -> None:
        try:
            page: dict[str, Any] = orjson.loads(body)
        except orjson.JSONDecodeError:
            return
        state = (page.get("stats") or {}).get("state") or ("FAILED" if page.get("error") else "FINISHED")
        error = page.get("error") or {}
        self.finished(query_id, state, error.get("errorName"))

    async def _finish(self, query_id: str, state: str, error_name: str | None) -> None:
        try:
            await self.store.finish_query(query_id, state, error_name, now_ms())
        except Exception as error:
            log.error("cannot record the end of query %s: %s", query_id, error)

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
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)
