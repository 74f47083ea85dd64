"""The cluster manager of one worker: each managed cluster's state, its starts and stops, and each
routing group's autoscaling.

Every worker reads the clusters' records from the store (what the manager last did to each: STARTING,
READY, DRAINING, TERMINATING, STOPPED) and routes by them: a managed cluster takes new queries only
when READY. One worker of the fleet decides for each group at a time, under a lease in the store (as
health checks are shared): it looks at the group every ``scaling.interval``, and acts on the policy's
step (``gateway.clusters.policy``). A state moves by compare-and-set in the store, so a cluster is
never started or stopped twice at once, whatever node asks; the scaler's command runs in the
background, bounded by its timeout, and never holds up routing.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable

from gateway.backends.health import HealthChecker
from gateway.backends.registry import BackendRegistry
from gateway.clusters import policy
from gateway.clusters.operations import ClusterOperations, Moved
from gateway.clusters.policy import Action, ClusterView
from gateway.clusters.states import (
    DEACTIVATED,
    DRAINING,
    READY,
    STARTING,
    STOPPED,
    TERMINATING,
    state_of,
)
from gateway.config import GroupConfig, GroupScalingConfig, ScalingConfig
from gateway.store import BackendWork, ClusterRecord, Store, now_ms
from gateway.store.backend import Backend

log = logging.getLogger("gateway.clusters")

# A start of a cluster in a group without scaling settings (an operator's): how long it may take.
DEFAULT_START_TIMEOUT = 120.0
# A stopped cluster's checks, until one fails (within its scaler's timeout): then it is STOPPED.
GONE_POLL_SECONDS = 0.5
STILL_ANSWERS = "stopped, but it still answers its health checks"


class NotManaged(Exception):
    """The cluster cannot be started or stopped by the gateway: no scaler, deactivated, or unknown."""


class ClusterManager:
    def __init__(
        self,
        store: Store,
        registry: BackendRegistry,
        health: HealthChecker,
        groups: dict[str, GroupConfig],
        settings: ScalingConfig,
        holder: str,
        queued: Callable[[str], int],
        queued_now: Callable[[], Awaitable[dict[str, int]]],
        work: Callable[[], Awaitable[dict[str, BackendWork]]],
        on_action: Callable[[str, str, str], None] = lambda backend, action, outcome: None,
        on_move: Moved | None = None,
    ) -> None:
        """``queued(group)``: queries of the group waiting in the gateway (every node's, on a shared
        store), as admission control last counted them; ``queued_now()``: per group, as they stand now
        (a read of a shared store); ``work()``: what each backend still runs (the store's count);
        ``on_action`` and ``on_move``: as ``ClusterOperations`` takes them."""
        self.store = store
        self.registry = registry
        self.health = health
        self.groups = groups
        self.settings = settings
        self.holder = holder
        self.queued = queued
        self.queued_now = queued_now
        self.work = work
        self.ops = ClusterOperations(store, health, on_action, on_move)
        self._high_since: dict[str, float] = {}
        self._low_since: dict[str, float] = {}

    @property
    def records(self) -> dict[str, ClusterRecord]:
        """This worker's copy of the clusters' records (``ClusterOperations`` keeps it)."""
        return self.ops.records

    # -- what every worker reads -----------------------------------------------------------------------
    def state(self, backend: Backend) -> str:
        return state_of(backend, self.health.health.get(backend.name), self.records.get(backend.name))

    def detail(self, name: str) -> str | None:
        """What the manager last did to cluster ``name``, and why (None: nothing yet)."""
        record = self.records.get(name)
        return record.detail if record is not None else None

    def takes_queries(self, backend: Backend) -> bool:
        """Whether a new query may go to ``backend`` as far as cluster management says (its health and
        active flag are the decider's to check): a managed cluster only while READY."""
        return backend.scaler is None or self.state(backend) == READY

    def scalable(self, group: str) -> bool:
        """Whether ``group``'s queries wait for a cluster to start rather than fall back to the default group."""
        settings = self.groups.get(group)
        return settings is not None and settings.scaling is not None

    def start_wait(self, group: str) -> float | None:
        """How long a query of ``group`` may wait for a cluster to start (None: not a scaled group)."""
        settings = self.groups.get(group)
        if settings is None or settings.scaling is None:
            return None
        members = [b for b in self.registry.cached() if b.routing_group == group and b.scaler is not None]
        return settings.scaling.start_timeout * max(1, len(members))

    def why_waiting(self, group: str) -> str | None:
        """Why ``group``'s queries still wait, for the error of one that waited too long."""
        if not self.scalable(group):
            return None
        members = [b for b in self.registry.cached() if b.routing_group == group]
        if any(self.state(backend) == READY for backend in members):
            return None  # it waited for room on a ready cluster: the queue's own limit
        told = []
        for backend in members:
            record = self.records.get(backend.name)
            detail = f" ({record.detail})" if record is not None and record.detail else ""
            told.append(f"{backend.name} {self.state(backend)}{detail}")
        return f"trino-gateway: routing group '{group}' has no READY cluster; none started in time: " + (
            "; ".join(told) or "it has no clusters"
        )

    async def refresh(self) -> None:
        await self.ops.refresh()

    # -- an operator's start and stop ------------------------------------------------------------------
    async def start(self, name: str, why: str) -> str:
        """Start cluster ``name`` (its state afterwards); NotManaged when the gateway cannot."""
        backend = self._managed(await self.registry.get(name), name)
        if self.state(backend) in (READY, STARTING):
            return self.state(backend)
        if self.state(backend) in (DRAINING,):
            await self.ops.move(backend, DRAINING, READY, f"back in service: {why}")
            return READY
        await self.ops.start(backend, why)
        return self.state(backend)

    async def stop(self, name: str, why: str) -> str:
        """Drain cluster ``name``, then stop it once drained (its state now)."""
        backend = self._managed(await self.registry.get(name), name)
        state = self.state(backend)
        if state in (STOPPED, TERMINATING, DRAINING):
            return state
        await self.ops.move(backend, None, DRAINING, why)
        return self.state(backend)

    @staticmethod
    def _managed(backend: Backend | None, name: str) -> Backend:
        if backend is None:
            raise NotManaged(f"no backend named {name!r}")
        if backend.scaler is None:
            raise NotManaged(f"backend {name} has no scaler: it is started and stopped by hand")
        if not backend.active:
            raise NotManaged(f"backend {name} is deactivated: activate it first")
        return backend

    async def close(self) -> None:
        await self.ops.close()

    # -- the loop ---------------------------------------------------------------------------------------
    async def run_forever(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception as error:  # the loop must outlive any one failure
                log.error("cluster management failed: %s", error)
            await asyncio.sleep(self.settings.interval)

    async def tick(self) -> None:
        await self.refresh()
        backends = await self.registry.all()
        managed: dict[str, list[Backend]] = {}
        for backend in backends:
            if backend.scaler is not None:
                managed.setdefault(backend.routing_group, []).append(backend)
        now = now_ms()
        lease_until = now + int(self.settings.interval * 3000)
        held = [
            group
            for group in managed
            if await self.store.claim_lease(f"scaling:{group}", self.holder, now, lease_until)
        ]
        if not held:
            return  # another worker or node decides for every group: this one only routes by the records
        work = await self.work()
        queued = {group: self.queued(group) for group in held}
        if any(queued.values()):
            # The last count (up to a second old on a shared store) may still hold queries sent since,
            # which ``work`` counts as running: that would start a cluster for a queue that found room.
            # Read after ``work``, a query sent between the reads is in neither (a start waits a look).
            # (An empty queue is not read again: a look stays short, and keeps its lease.)
            queued = await self.queued_now()
        for group in held:
            await self._tick_group(group, managed[group], work, queued.get(group, 0), now_ms())

    async def _tick_group(
        self, group: str, members: list[Backend], work: dict[str, BackendWork], queued: int, now: int
    ) -> None:
        views = [self._view(backend, work.get(backend.name, BackendWork())) for backend in members if backend.active]
        for backend in members:
            if not backend.active:
                continue
            if self.state(backend) == READY and (record := self.records.get(backend.name)) is not None:
                if record.state == STARTING:
                    await self.ops.move(backend, STARTING, READY, "its health checks pass")
            elif self.state(backend) == TERMINATING:
                self.ops.stop_again_if_due(backend, now)  # (a stop that failed, or whose worker went away)
        settings = self.groups[group].scaling if group in self.groups else None
        if settings is None:
            await self._operator_steps(views, members, now)
            return
        high_for, low_for = self._load(group, settings, views, queued)
        minimum = policy.minimum_now(settings, dt.datetime.now(dt.UTC))
        settle = int(self.settings.interval * 2000) + 1000
        action = policy.plan(settings, views, queued, high_for, low_for, now, settle, minimum)
        if action is not None:
            await self._act(action, {b.name: b for b in members}, group)

    async def _operator_steps(self, views: list[ClusterView], members: list[Backend], now: int) -> None:
        """A group without scaling settings: only what an operator began (a drain to finish, a start to
        time out)."""
        settle = int(self.settings.interval * 2000) + 1000
        by_name = {b.name: b for b in members}
        for view in views:
            if view.state == DRAINING and now - view.since_ms >= settle and view.running == view.transactions == 0:
                await self._act(Action(policy.STOP, view.name, "drained"), by_name, None)
            elif view.state == STARTING and now - view.since_ms > DEFAULT_START_TIMEOUT * 1000:
                await self._act(Action(policy.GIVE_UP, view.name, "not READY in time"), by_name, None)

    def _view(self, backend: Backend, work: BackendWork) -> ClusterView:
        record = self.records.get(backend.name)
        health = self.health.health.get(backend.name)
        reported = health.stats.running if health is not None and health.stats.running is not None else 0
        return ClusterView(
            backend.name,
            self.state(backend),
            record.since_ms if record is not None else 0,
            running=max(work.unfinished_queries, reported),
            transactions=work.open_transactions,
            capacity=backend.max_running,
            failed_ms=record.failed_ms if record is not None else None,
        )

    def _load(
        self, group: str, settings: GroupScalingConfig, views: list[ClusterView], queued: int
    ) -> tuple[float, float]:
        """Seconds the group's load has been high, and low (this worker's watch: a new leader starts
        counting afresh, which only ever delays a step)."""
        used = policy.utilisation(views)
        ready = [view for view in views if view.state == READY]
        if used is None:
            low = queued == 0 and all(view.running == 0 for view in ready)
            high = False
        else:
            low = queued == 0 and used < settings.scale_down_utilisation
            high = used > settings.scale_up_utilisation
        now = time.monotonic()
        for flag, since in ((high, self._high_since), (low, self._low_since)):
            if flag:
                since.setdefault(group, now)
            else:
                since.pop(group, None)
        return now - self._high_since.get(group, now), now - self._low_since.get(group, now)

    async def _act(self, action: Action, backends: dict[str, Backend], group: str | None) -> None:
        backend = backends[action.cluster]
        log.info("routing group %r, cluster %s: %s (%s)", group, backend.name, action.verb, action.why)
        if action.verb == policy.START:
            await self.ops.start(backend, action.why)
        elif action.verb == policy.UNDRAIN:
            await self.ops.move(backend, DRAINING, READY, f"back in service: {action.why}")
        elif action.verb == policy.DRAIN:
            await self.ops.move(backend, READY, DRAINING, action.why, also=frozenset({None, STARTING}))
            self._low_since.pop(backend.routing_group, None)
        elif action.verb == policy.STOP:
            await self.ops.terminate(backend, action.why)
        elif action.verb == policy.GIVE_UP:
            await self.ops.give_up(backend, action.why)


__all__ = ["DEACTIVATED", "ClusterManager", "NotManaged"]
