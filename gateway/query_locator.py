"""Which backend runs a query: the sticky half of routing.

Any gateway worker, or a restarted gateway, can answer: a per-process cache in front of the
query history in the store, and as a last resort, asking every backend.
"""

from __future__ import annotations

import asyncio
import logging

import aiohttp

from gateway.backends import BackendRegistry
from gateway.store import Store
from gateway.upstream import FAILURES

log = logging.getLogger("gateway.locator")


class QueryLocator:
    def __init__(
        self, store: Store, registry: BackendRegistry, session: aiohttp.ClientSession, capacity: int = 100_000
    ) -> None:
        self.store = store
        self.registry = registry
        self.session = session
        self.capacity = capacity
        # Insertion-ordered: when full, the oldest half is dropped at once, which keeps the hot
        # path to one dict lookup (no LRU bookkeeping on every poll).
        self._cache: dict[str, tuple[str, str]] = {}

    def remember(self, query_id: str, backend_name: str, backend_url: str) -> None:
        if len(self._cache) >= self.capacity:
            for old in list(self._cache)[: self.capacity // 2]:
                del self._cache[old]
        self._cache[query_id] = (backend_name, backend_url)

    def cached(self, query_id: str) -> tuple[str, str] | None:
        return self._cache.get(query_id)

    async def locate(self, query_id: str) -> tuple[str, str] | None:
        """(backend name, backend URL) of ``query_id``, or None when no backend knows it."""
        found = self._cache.get(query_id)
        if found is not None:
            return found
        try:
            found = await self.store.backend_for_query(query_id)
        except Exception as error:
            log.error("cannot look up query %s in the store: %s", query_id, error)
        if found is None:
            found = await self._ask_backends(query_id)
        if found is not None:
            self.remember(query_id, *found)
        return found

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
