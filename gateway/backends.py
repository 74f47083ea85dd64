"""The backend registry: the store's backends, read at most every ``refresh_seconds``.

Changes made through this worker's admin API count at once; changes made through another worker
count within ``refresh_seconds``. If the store cannot be read, routing goes on with the last list.
"""

from __future__ import annotations

import logging
import time

from gateway.store import BackendRecord, Store

log = logging.getLogger("gateway.backends")


class BackendRegistry:
    def __init__(self, store: Store, refresh_seconds: float = 1.0) -> None:
        self.store = store
        self.refresh_seconds = refresh_seconds
        self._last: list[BackendRecord] = []
        self._read_at = float("-inf")

    async def all(self) -> list[BackendRecord]:
        if time.monotonic() - self._read_at < self.refresh_seconds:
            return self._last
        try:
            self._last = await self.store.list_backends()
            self._read_at = time.monotonic()
        except Exception as error:
            log.error("cannot read backends from the store, routing with the last known list: %s", error)
        return self._last

    def invalidate(self) -> None:
        """Read the store again before the next routing decision."""
        self._read_at = float("-inf")

    async def get(self, name: str) -> BackendRecord | None:
        for backend in await self.all():
            if backend.name == name:
                return backend
        return None
