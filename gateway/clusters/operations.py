"""What this worker does to clusters: each start and stop a compare-and-set of the cluster's record in
the store (so that no two workers or nodes start or stop one cluster at once), then the scaler's work
in the background, bounded by its timeout (so that it never holds up routing). The records are read
from the store by every worker; this module keeps this worker's copy.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace

from gateway.backends.health import HealthChecker
from gateway.clusters.command import KILL_GRACE_SECONDS
from gateway.clusters.scaler import Scaler, ScalerError, scaler_for
from gateway.clusters.states import DRAINING, STARTING, STOPPED, TERMINATING
from gateway.store import ClusterRecord, Store, StoreError, now_ms
from gateway.store.backend import Backend

log = logging.getLogger("gateway.clusters")

Moved = Callable[[str | None, ClusterRecord], Awaitable[None]]

# A stopped cluster's checks, until one fails (within its scaler's timeout): then it is STOPPED.
GONE_POLL_SECONDS = 0.5
STILL_ANSWERS = "stopped, but it still answers its health checks"


class ClusterOperations:
    def __init__(
        self,
        store: Store,
        health: HealthChecker,
        on_action: Callable[[str, str, str], None] = lambda backend, action, outcome: None,
        on_move: Moved | None = None,
    ) -> None:
        """``on_action(backend, action, outcome)``: each start or stop and how it went (the metrics');
        ``on_move(before, record)``: each move this worker made of a cluster's record, with the state
        it left (None: none on record yet) (the audit trail's)."""
        self.store = store
        self.health = health
        self.on_action = on_action
        self.on_move = on_move
        self.records: dict[str, ClusterRecord] = {}
        self._busy: set[str] = set()  # clusters whose scaler runs in this worker now
        self._failed_stops: set[str] = set()  # clusters whose last stop by this worker failed
        self._tasks: set[asyncio.Task[None]] = set()

    async def refresh(self) -> None:
        try:
            self.records = await self.store.cluster_records()
        except StoreError as error:
            log.warning("cannot read the clusters' records: %s", error)

    async def terminate(self, backend: Backend, why: str) -> None:
        """A drained cluster: TERMINATING, and its stop."""
        if await self.move(backend, DRAINING, TERMINATING, why):
            self._run(backend, self._stop(backend))

    async def give_up(self, backend: Backend, why: str) -> None:
        """A cluster not READY in time: marked failed (the next one is tried), and stopped."""
        record = self.records.get(backend.name)
        failed = ClusterRecord(backend.name, TERMINATING, now_ms(), f"start gave up: {why}", now_ms(), _starts(record))
        if await self._write(failed, frozenset({STARTING})):
            self.on_action(backend.name, "start", "timeout")
            self._run(backend, self._stop(backend, failed=True))

    def stop_again_if_due(self, backend: Backend, now: int) -> None:
        """A TERMINATING cluster whose stop failed, or whose worker went away: stopped again when due."""
        if self._may_stop_again(backend, now):
            self._run(backend, self._stop(backend))

    # -- starts and stops -------------------------------------------------------------------------------
    async def start(self, backend: Backend, why: str) -> None:
        record = self.records.get(backend.name)
        starting = ClusterRecord(backend.name, STARTING, now_ms(), why, record.failed_ms if record else None)
        starting = replace(starting, starts=_starts(record) + 1)
        if not await self._write(starting, frozenset({None, STOPPED})):
            return  # another node started (or stopped) it meanwhile
        self._run(backend, self._start_now(backend, why))

    async def _start_now(self, backend: Backend, why: str) -> None:
        try:
            await self._scaler(backend).start()
        except ScalerError as error:
            log.warning("cluster %s did not start: %s", backend.name, error)
            self.on_action(backend.name, "start", "failed")
            record = self.records.get(backend.name)
            failed = ClusterRecord(
                backend.name, STOPPED, now_ms(), f"start failed: {error}"[:500], now_ms(), _starts(record)
            )
            await self._write(failed, frozenset({STARTING}))
            return
        self.on_action(backend.name, "start", "ok")
        with contextlib.suppress(Exception):
            await self.health.check_now(backend.name)

    async def _stop(self, backend: Backend, failed: bool = False) -> None:
        try:
            await self._scaler(backend).stop()
        except ScalerError as error:
            log.warning("cluster %s did not stop: %s (tried again at the next look)", backend.name, error)
            self.on_action(backend.name, "stop", "failed")
            self._failed_stops.add(backend.name)
            return
        self._failed_stops.discard(backend.name)
        self.on_action(backend.name, "stop", "ok")
        # TERMINATING until it stops answering: a stop command may return while the cluster shuts down.
        gone = await self._gone(backend)
        record = self.records.get(backend.name)
        stopped = ClusterRecord(
            backend.name,
            STOPPED,
            now_ms(),
            record.detail if failed and record is not None else "stopped" if gone else STILL_ANSWERS,
            record.failed_ms if record is not None else None,
            _starts(record),
        )
        await self._write(stopped, frozenset({TERMINATING}))

    async def _gone(self, backend: Backend) -> bool:
        """Whether ``backend`` failed a check (checked now, then every GONE_POLL_SECONDS) within its
        scaler's timeout."""
        assert backend.scaler is not None
        deadline = time.monotonic() + backend.scaler.timeout
        while (await self.health.check(backend)).consecutive_failures == 0:
            if time.monotonic() >= deadline:
                log.warning("cluster %s: %s", backend.name, STILL_ANSWERS)
                return False
            await asyncio.sleep(GONE_POLL_SECONDS)
        return True

    def _may_stop_again(self, backend: Backend, now: int) -> bool:
        """Whether a TERMINATING cluster's stop is run again: at once when this worker's own stop failed;
        else only once the worker that issued it (this group's lease holder before) has surely ended it,
        done or failed: the scaler's timeout and the kill grace after the stop was issued. Never two stops
        of one cluster at once, also when the lease changed hands while the first ran."""
        if backend.name in self._busy:
            return False
        if backend.name in self._failed_stops:
            return True
        record = self.records.get(backend.name)
        timeout = backend.scaler.timeout if backend.scaler is not None else 0.0
        return record is None or now - record.since_ms > (timeout + KILL_GRACE_SECONDS + 1.0) * 1000

    def _scaler(self, backend: Backend) -> Scaler:
        assert backend.scaler is not None
        return scaler_for(backend.scaler, backend.name)

    def _run(self, backend: Backend, work: Awaitable[None]) -> None:
        """The scaler's work on ``backend``, in the background; one at a time per cluster in this worker."""
        if backend.name in self._busy:
            return
        self._busy.add(backend.name)

        async def run() -> None:
            try:
                await work
            except Exception as error:
                log.error("cluster %s: %s", backend.name, error)
            finally:
                self._busy.discard(backend.name)

        task = asyncio.ensure_future(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def move(
        self,
        backend: Backend,
        from_state: str | None,
        to_state: str,
        why: str,
        also: frozenset[str | None] = frozenset(),
    ) -> bool:
        record = self.records.get(backend.name)
        expected: frozenset[str | None] | None = None if from_state is None else frozenset({from_state}) | also
        moved = ClusterRecord(
            backend.name,
            to_state,
            now_ms(),
            why[:500],
            record.failed_ms if record is not None else None,
            _starts(record),
        )
        return await self._write(moved, expected)

    async def _write(self, record: ClusterRecord, expected: frozenset[str | None] | None) -> bool:
        try:
            moved = await self.store.move_cluster(record, expected)
        except StoreError as error:
            log.warning("cannot record cluster %s as %s: %s", record.backend, record.state, error)
            return False
        if moved:
            before = self.records.get(record.backend)
            self.records[record.backend] = record
            if self.on_move is not None:
                await self.on_move(_left(before, expected), record)
        return moved

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


def _starts(record: ClusterRecord | None) -> int:
    return record.starts if record is not None else 0


def _left(before: ClusterRecord | None, expected: frozenset[str | None] | None) -> str | None:
    """The state a move left: this worker's copy's, where the store's compare-and-set agrees with it
    (the copy may be a look old); else the one state the move expected, if it named one."""
    if before is not None and (expected is None or before.state in expected):
        return before.state
    if expected is not None and len(expected) == 1:
        return next(iter(expected))
    return None
