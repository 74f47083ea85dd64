"""How many requests may be in flight to backends: in all, and to each one.

Every proxied request (statement or stream) holds one slot of its backend and one of the total
while it runs. The per-backend slots are taken first and waited for at most ``wait_seconds``: a
backend that hangs every request holds only its own slots, and requests for it beyond them fail
at once as not sent (a new query then goes to the next backend), instead of queueing for slots
that healthy backends need.
"""

from __future__ import annotations

import asyncio

from gateway.upstream.errors import BackendBusy


class ConnectionLimits:
    def __init__(self, total: int, per_backend: int, wait_seconds: float) -> None:
        self.total = total
        self.per_backend = per_backend
        self.wait_seconds = wait_seconds
        self._total = asyncio.Semaphore(total)
        self._backends: dict[str, asyncio.Semaphore] = {}

    async def acquire(self, backend: str) -> None:
        """Take a slot of ``backend`` and one of the total; raises ``BackendBusy`` when the backend's
        slots stay taken for ``wait_seconds``."""
        slots = self._backends.get(backend)
        if slots is None:
            slots = self._backends[backend] = asyncio.Semaphore(self.per_backend)
        if slots.locked():
            try:
                async with asyncio.timeout(self.wait_seconds):
                    await slots.acquire()
            except TimeoutError:
                raise BackendBusy(
                    f"all {self.per_backend} connections to the backend stayed busy for {self.wait_seconds:g} s "
                    "(proxy.max_connections_per_backend)"
                ) from None
        else:
            await slots.acquire()  # free: returns at once
        try:
            await self._total.acquire()
        except BaseException:
            slots.release()
            raise

    def release(self, backend: str) -> None:
        self._total.release()
        self._backends[backend].release()

    def in_use(self, backend: str) -> int:
        """Requests in flight to ``backend`` now."""
        slots = self._backends.get(backend)
        return 0 if slots is None else self.per_backend - slots._value
