"""Which backend runs a query: the sticky half of routing.

Any gateway worker, or a restarted gateway, can answer: a per-process cache in front of the
query history in the store, and as a last resort, asking every backend. Each answer carries the
query's trace context (its ``traceparent``, or None), so every request of a query joins its trace.
"""

from __future__ import annotations

import asyncio
import logging

import aiohttp

from gateway.backends import BackendRegistry
from gateway.store import Store
from gateway.upstream import FAILURES

# (backend name, backend URL, traceparent of the query's trace or None)
Location = tuple[str, str, str | None]

log = logging.getLogger("gateway.locator")


class QueryLocator:
    def __init__(
        self,
        store: Store,
        registry: BackendRegistry,
        session: aiohttp.ClientSession,
        capacity: int = 100_000,
        settle_seconds: float = 0.0,
    ) -> None:
        self.store = store
        self.registry = registry
        self.session = session
        self.capacity = capacity
        # With tracing on: how long a query unknown to the store may still be on its way there (the
        # history flush interval), worth one more look before asking the backends, which cannot
        # tell its trace context.
        self.settle_seconds = settle_seconds
        # Insertion-ordered: when full, the oldest half is dropped at once, which keeps the hot
        # path to one dict lookup (no LRU bookkeeping on every poll).
        self._cache: dict[str, Location] = {}
        self._pending: set[asyncio.Task[None]] = set()

    def remember(self, query_id: str, backend_name: str, backend_url: str, trace_parent: str | None = None) -> None:
        if len(self._cache) >= self.capacity:
            for old in list(self._cache)[: self.capacity // 2]:
                del self._cache[old]
        self._cache[query_id] = (backend_name, backend_url, trace_parent)

    def cached(self, query_id: str) -> Location | None:
        return self._cache.get(query_id)

    async def locate(self, query_id: str) -> Location | None:
        """(backend name, backend URL, traceparent) of ``query_id``, or None when no backend knows it."""
        found = self._cache.get(query_id)
        if found is not None:
            return found
        found = await self._from_store(query_id)
        if found is None and self.settle_seconds > 0:
            await asyncio.sleep(self.settle_seconds)
            found = await self._from_store(query_id)
        if found is None:
            asked = await self._ask_backends(query_id)
            found = None if asked is None else (*asked, None)
            if found is not None and self.settle_seconds > 0:
                # Its trace context is still on its way to the store: pick it up for later polls.
                self._pending.add(asyncio.create_task(self._trace_later(query_id)))
        if found is not None:
            self.remember(query_id, *found)
        return found

    def close(self) -> None:
        for task in self._pending:
            task.cancel()

    async def _trace_later(self, query_id: str) -> None:
        try:
            for _ in range(3):
                await asyncio.sleep(self.settle_seconds * 2)
                found = await self._from_store(query_id)
                if found is not None:
                    if query_id in self._cache:
                        self._cache[query_id] = found
                    return
        finally:
            self._pending.discard(asyncio.current_task())  # type: ignore[arg-type]

    async def _from_store(self, query_id: str) -> Location | None:
        try:
            return await self.store.backend_for_query(query_id)
        except Exception as error:
            log.error("cannot look up query %s in the store: %s", query_id, error)
            return None

    async def _ask_backends(self, query_id: str) -> tuple[str, str] | None:
        """Every backend is asked whether it knows the query; the first that does owns it."""
        backends = await self.registry.all()

        async def knows(url: str) -> bool:
            try:
                async with self.session.get(
                    f"{url}/v1/query/{query_id}",
                    timeout=aiohttp.ClientTimeout(total=3),
                    headers={"X-Trino-User": "trino-gateway"},
                ) as response:
                    return response.status == 200
            except FAILURES:
                return False

        answers = await asyncio.gather(*(knows(b.proxy_to) for b in backends))
        for backend, known in zip(backends, answers, strict=True):
            if known:
                log.info("query %s found on backend %s by asking every backend", query_id, backend.name)
                return backend.name, backend.proxy_to
        return None
