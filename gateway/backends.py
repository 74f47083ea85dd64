"""The backend registry: the store's backends, with the last good list kept for store outages."""

from __future__ import annotations

import logging

from gateway.store import BackendRecord, Store

log = logging.getLogger("gateway.backends")


class BackendRegistry:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._last: list[BackendRecord] = []

    async def all(self) -> list[BackendRecord]:
        """Every backend, read fresh so that a deactivation on any worker counts at once.

        If the store cannot be read, routing goes on with the last list read.
        """
        try:
            self._last = await self.store.list_backends()
        except Exception as error:
            log.error("cannot read backends from the store, routing with the last known list: %s", error)
        return self._last

    async def get(self, name: str) -> BackendRecord | None:
        for backend in await self.all():
            if backend.name == name:
                return backend
        return None
