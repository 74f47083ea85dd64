"""One health check per backend per interval for every worker and node on one store.

Without it, each worker of each node checks every backend on its own: 3 nodes of 2 workers send a
backend 6 checks per interval. Here a lease in the store names the worker that checks a backend;
it writes each result to the store, and every other worker reads it there and feeds it to its own
state machine (``gateway.backends.health.state``), so all of them see the same sequence of results. A holder
that dies stops renewing its lease, and after ``lease`` seconds another worker takes the backend
over; a worker that stops hands its leases back at once. Passive signals from real traffic stay
with each worker.

When the store cannot be reached, each worker checks on its own again (as before: health must not
depend on the store), and takes up the lease once the store answers.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid

from gateway.store import SharedCheck, Store, now_ms

log = logging.getLogger("gateway.backends.health")


def holder_name() -> str:
    """This worker, as the store's leases name it: which node, which process (and which gateway in it)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class SharedChecks:
    def __init__(self, store: Store, interval: float, timeout: float, holder: str | None = None) -> None:
        self.store = store
        self.holder = holder or holder_name()
        # Renewed at every check; long enough that a slow check or a busy store does not lose it.
        self.lease = 3 * interval + timeout
        # How often the others read results: a result is seen within a second of its check.
        self.read_every = min(interval, 1.0)
        self._snapshot: dict[str, SharedCheck] = {}
        self._read_at = float("-inf")
        self._reading: asyncio.Lock | None = None
        self._applied: dict[str, int] = {}
        self._store_failing = False

    async def claim(self, backend: str) -> bool:
        """Whether this worker checks ``backend`` now (it holds the lease, or the store is down)."""
        now = now_ms()
        try:
            held = await self.store.claim_health_check(backend, self.holder, now, now + int(self.lease * 1000))
        except Exception as error:
            self._failing(error)
            return True
        self._answering()
        return held

    async def publish(self, check: SharedCheck) -> None:
        try:
            await self.store.publish_health_check(self.holder, check)
        except Exception as error:
            self._failing(error)
        else:
            self._applied[check.backend_name] = check.checked_at

    async def latest(self, backend: str) -> SharedCheck | None:
        """The holder's result this worker has not applied yet, if there is one."""
        if self._reading is None:
            self._reading = asyncio.Lock()
        async with self._reading:
            # One read of every backend's result serves all the per-backend loops of this worker.
            loop = asyncio.get_running_loop()
            if loop.time() - self._read_at >= self.read_every * 0.9:
                try:
                    self._snapshot = await self.store.health_checks()
                except Exception as error:
                    self._failing(error)
                self._read_at = loop.time()
        check = self._snapshot.get(backend)
        if check is None or check.checked_at <= self._applied.get(backend, 0):
            return None
        self._applied[backend] = check.checked_at
        return check

    async def release(self) -> None:
        """This worker stops: the backends it checked go to another worker now, not after the lease."""
        try:
            await self.store.release_health_checks(self.holder)
        except Exception as error:
            log.warning("health checks: could not hand the leases back (%s); they run out in %.0f s", error, self.lease)

    def _failing(self, error: Exception) -> None:
        if not self._store_failing:
            log.warning("health checks: the store cannot be used (%s); this worker checks every backend itself", error)
            self._store_failing = True

    def _answering(self) -> None:
        if self._store_failing:
            log.warning("health checks: the store answers again; one check per backend for all workers")
            self._store_failing = False
