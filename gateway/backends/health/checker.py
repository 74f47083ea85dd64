"""Checking every backend on a schedule, and taking passive signals from real traffic."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from gateway.backends.health.monitors import CheckFailed, Monitor, StillStarting, create_monitor
from gateway.backends.health.shared import SharedChecks
from gateway.backends.health.state import BackendHealth, ClusterStats, Health
from gateway.backends.registry import BackendRegistry
from gateway.store import SharedCheck, now_ms
from gateway.store.backend import Backend
from gateway.upstream import Upstream, UpstreamError, describe

if TYPE_CHECKING:
    from gateway.config import HealthConfig

log = logging.getLogger("gateway.backends.health")


class HealthChecker:
    """Owns each backend's observed health in this worker (``health``), kept apart from the
    operator's intent (the backend record's ``active``)."""

    def __init__(
        self,
        registry: BackendRegistry,
        upstream: Upstream,
        settings: HealthConfig,
        shared: SharedChecks | None = None,
    ) -> None:
        self.registry = registry
        # With a store every worker shares: one check per backend for all of them (health/shared.py).
        self.shared = shared
        self.upstream = upstream
        self.settings = settings
        self.interval = settings.interval
        self.timeout = settings.timeout
        self.failure_threshold = settings.failure_threshold
        self.success_threshold = settings.success_threshold
        self.health: dict[str, BackendHealth] = {}
        # One monitor per kind: the backend's record names its kind, or health.monitor does.
        self._monitors: dict[str, Monitor] = {}
        self._loops: dict[str, asyncio.Task[None]] = {}
        # Told when a check finds that a backend restarted (its uptime went back), with when it
        # started again (epoch ms): what lived in its memory, such as transactions, is gone.
        self.on_restart: Callable[[str, int], Awaitable[None]] | None = None
        # Told when a backend becomes HEALTHY (queries waiting for it go at once, not at the next tick).
        self.on_healthy: Callable[[str], None] = lambda name: None

    def monitor_kind(self, backend: Backend) -> str:
        """The kind of check ``backend`` gets: its record's, else ``health.monitor``."""
        return backend.monitor or self.settings.monitor

    def monitor(self, backend: Backend) -> Monitor:
        kind = self.monitor_kind(backend)
        monitor = self._monitors.get(kind)
        if monitor is None:
            monitor = self._monitors[kind] = create_monitor(kind, self.settings)
        return monitor

    def of(self, name: str) -> BackendHealth:
        health = self.health.get(name)
        if health is None:
            health = self.health[name] = BackendHealth(name, self.failure_threshold, self.success_threshold)
        return health

    async def check(self, backend: Backend) -> BackendHealth:
        """Check one backend now and record the outcome (for every worker too, when this one holds
        the backend's lease)."""
        result = await self._probe(backend)
        if self.shared is not None:
            await self.shared.publish(result)
        return await self._apply(result, first_hand=True)

    async def _probe(self, backend: Backend) -> SharedCheck:
        monitor = self.monitor(backend)
        loop = asyncio.get_running_loop()
        started = loop.time()
        outcome, error, stats = "ok", None, None
        try:
            # (asyncio.timeout, not wait_for: Python 3.11's wait_for loses a cancellation that comes as
            # the check ends, and a health loop so cancelled never ends: the gateway's stop waited on it.)
            async with asyncio.timeout(self.timeout):
                found = await monitor.check(self.upstream, backend)
        except StillStarting:
            outcome = "starting"
        except (CheckFailed, ValueError) as failure:
            outcome, error = "failed", str(failure)
        except TimeoutError:
            outcome, error = "failed", f"no answer within {self.timeout:g}s"
        except UpstreamError as failure:
            outcome, error = "failed", describe(failure)
        else:
            stats = None if found is None else dataclasses.asdict(found)
        return SharedCheck(backend.name, now_ms(), outcome, error, stats, loop.time() - started)

    async def _apply(self, result: SharedCheck, first_hand: bool) -> BackendHealth:
        """Feed a check's result to the backend's state machine: this worker's own check, or the
        lease holder's (``first_hand`` False), which this worker did not make."""
        name = result.backend_name
        health = self.of(name)
        was = health.state
        if result.outcome == "starting":
            health.starting()
        elif result.outcome == "failed":
            health.failed(result.error or "the check failed")
        else:
            stats = None if result.stats is None else ClusterStats(**result.stats)
            previous = health.stats.uptime
            health.succeeded(stats)
            if result.seconds is not None:
                health.observe_request(result.seconds, ok=True)
            # A restart is acted on once: by the worker that saw it first hand.
            if first_hand and stats is not None and _restarted(previous, stats.uptime):
                assert stats.uptime is not None
                log.warning("backend %s restarted (uptime %.0f s, was %.0f s)", name, stats.uptime, previous)
                if self.on_restart is not None:
                    await self.on_restart(name, int((time.time() - stats.uptime) * 1000))
        if first_hand and health.state != Health.HEALTHY:
            log.info("backend %s is %s: %s", name, health.state, health.last_error)
        if health.state == Health.HEALTHY and was != Health.HEALTHY:
            self.on_healthy(name)
        return health

    async def check_all(self) -> None:
        backends = await self.registry.all()
        await asyncio.gather(*(self.check(b) for b in backends))

    async def check_now(self, name: str) -> None:
        """A backend was just added or changed: know its health before routing to it."""
        self.registry.invalidate()
        backend = await self.registry.get(name)
        if backend is not None:
            await self.check(backend)

    async def run_forever(self) -> None:
        """One loop per backend, each on its own schedule; backends come and go with the registry."""
        try:
            while True:
                backends = {b.name: b for b in await self.registry.all()}
                for name in backends:
                    if name not in self._loops:
                        self._loops[name] = asyncio.create_task(self._loop(name), name=f"health {name}")
                for name in list(self._loops):
                    if name not in backends:
                        self._loops.pop(name).cancel()
                        self.health.pop(name, None)
                await asyncio.sleep(min(self.interval, 1.0))
        finally:
            for task in self._loops.values():
                task.cancel()
            for task in self._loops.values():
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if self.shared is not None:
                await self.shared.release()

    async def _loop(self, name: str) -> None:
        loop = asyncio.get_running_loop()
        next_claim = 0.0
        holding = True
        while True:
            backend = await self.registry.get(name)
            if backend is None:
                return
            if loop.time() >= next_claim:
                next_claim = loop.time() + self.interval
                holding = self.shared is None or await self.shared.claim(name)
                if holding:
                    await self.check(backend)
            if not holding:
                assert self.shared is not None
                result = await self.shared.latest(name)
                if result is not None:
                    await self._apply(result, first_hand=False)
            await asyncio.sleep(self.interval if holding else min(self.interval, self.shared.read_every))

    # -- passive signals --------------------------------------------------------------------
    def request_failed(self, name: str, error: str) -> None:
        """A real request could not reach the backend, or got a 5xx: it counts at once."""
        health = self.of(name)
        health.observe_request(None, ok=False)
        health.request_failed(f"proxied request: {error}")
        if health.state == Health.UNHEALTHY:
            log.warning("backend %s is UNHEALTHY after failed requests: %s", name, error)

    def routed(self, name: str) -> None:
        """A query was routed to the backend (the query book says so): it counts as running there
        until the next check reports the backend's own figures."""
        health = self.health.get(name)
        if health is not None:
            health.routed_since_check += 1

    def request_succeeded(self, name: str, seconds: float | None) -> None:
        health = self.health.get(name)
        if health is not None:
            health.observe_request(seconds, ok=True)

    def poll_answered(self, name: str) -> None:
        """A poll got a query result: the backend runs queries (cheap: called on every poll).

        Only polls clear the failed-request count: a cluster may accept submissions and still hang
        every query it accepted."""
        health = self.health.get(name)
        if health is not None and health.request_failures:
            health.request_failures = 0


def _restarted(previous: float | None, now: float | None) -> bool:
    """Uptime went back by more than its printed precision (two decimals of its unit: up to 1 %)."""
    return previous is not None and now is not None and now < previous * 0.99 - 1.0
