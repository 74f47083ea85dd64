"""The backend registry: the store's backends, read at most every ``refresh_seconds``.

Changes made through this worker's admin API count at once; changes made through another worker
or node count as soon as the store tells (PostgreSQL's LISTEN/NOTIFY), and within ``refresh_seconds``
in any case (SQLite, or a lost notification). If the store cannot be read, routing goes on with the last list
and the store is tried again every ``refresh_seconds``.
"""

from __future__ import annotations

import logging
import time

from gateway.store import Store
from gateway.store.backend import Backend
from gateway.store.records import ANYTHING_CHANGED, BACKENDS_CHANGED

log = logging.getLogger("gateway.backends")


class BackendRegistry:
    def __init__(self, store: Store, refresh_seconds: float = 1.0) -> None:
        self.store = store
        self.refresh_seconds = refresh_seconds
        self._last: list[Backend] = []
        self._read_at = float("-inf")
        self._failing_since: float | None = None

    async def all(self) -> list[Backend]:
        if time.monotonic() - self._read_at < self.refresh_seconds:
            return self._last
        try:
            self._last = await self.store.list_backends()
        except Exception as error:
            # Tried again after refresh_seconds, not on every request: a store that is down is not
            # hammered, and the log says so once per try, not once per query.
            if self._failing_since is None:
                self._failing_since = time.monotonic()
            log.error(
                "cannot read backends from the store, routing with the last known list of %d backends: %s",
                len(self._last),
                error,
            )
        else:
            if self._failing_since is not None:
                log.warning(
                    "the store can be read again after %.1fs; routing with its backend list",
                    time.monotonic() - self._failing_since,
                )
                self._failing_since = None
        self._read_at = time.monotonic()
        return self._last

    def cached(self) -> list[Backend]:
        """The list as last read, without a look at the store (for what may not wait on it)."""
        return self._last

    def invalidate(self) -> None:
        """Read the store again before the next routing decision."""
        self._read_at = float("-inf")

    def changed(self, what: str) -> None:
        """The store says another worker or node changed something (PostgreSQL's NOTIFY)."""
        if what in (BACKENDS_CHANGED, ANYTHING_CHANGED):
            self.invalidate()

    async def get(self, name: str) -> Backend | None:
        for backend in await self.all():
            if backend.name == name:
                return backend
        return None
