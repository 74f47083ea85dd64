"""A gateway worker's observability: its tracer, its metric children, and the gauges it keeps current."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from gateway.config import TracingConfig
from gateway.scoring import ScoreWeights, cost
from observability import metrics
from observability.request import ObservedRequest, Send
from observability.tracing import Tracing

if TYPE_CHECKING:
    from gateway.backends import BackendRegistry
    from gateway.health import HealthChecker
    from gateway.routing import InFlight

log = logging.getLogger("gateway.observability")

GAUGE_REFRESH_SECONDS = 1.0


class Observer:
    def __init__(self, tracing: Tracing) -> None:
        self.tracing = tracing
        self.tracer = tracing.tracer
        self.metrics = metrics.HotPathMetrics()
        self._sources: tuple[BackendRegistry, HealthChecker, InFlight, ScoreWeights] | None = None
        self._known: set[str] = set()

    @classmethod
    def start(cls, config: TracingConfig) -> Observer:
        return cls(Tracing.start(config))

    def begin(self, scope: dict[str, Any], send: Send) -> ObservedRequest:
        return ObservedRequest(self.metrics, self.tracer, scope, send)

    # -- gauges ---------------------------------------------------------------------------------
    def watch(
        self, registry: BackendRegistry, health: HealthChecker, in_flight: InFlight, weights: ScoreWeights
    ) -> None:
        """Where the gauges' values come from (the worker's services)."""
        self._sources = (registry, health, in_flight, weights)

    async def refresh_gauges(self) -> None:
        """Copy this worker's view of the backends into the gauges."""
        if self._sources is None:
            return
        registry, health, in_flight, weights = self._sources
        backends = await registry.all()
        names = set()
        for backend in backends:
            name = backend.name
            names.add(name)
            state = health.of(name)
            running = in_flight.count(name)
            stats = state.stats
            metrics.IN_FLIGHT.labels(name).set(running)
            metrics.BACKEND_UP.labels(name).set(1 if state.state.value == "HEALTHY" else 0)
            for value in metrics.HEALTH_STATES:
                metrics.BACKEND_STATE.labels(name, value).set(1 if state.state.value == value else 0)
            metrics.BACKEND_ACTIVE.labels(name).set(1 if backend.active else 0)
            metrics.BACKEND_SCORE.labels(name).set(cost(state, running, weights))
            metrics.BACKEND_RUNNING.labels(name).set(stats.running or 0)
            metrics.BACKEND_QUEUED.labels(name).set(stats.queued or 0)
            metrics.BACKEND_WORKERS.labels(name).set(stats.workers or 0)
        for gone in self._known - names:
            self._forget(gone)
        self._known = names

    def _forget(self, name: str) -> None:
        for gauge in (
            metrics.IN_FLIGHT,
            metrics.BACKEND_UP,
            metrics.BACKEND_ACTIVE,
            metrics.BACKEND_SCORE,
            metrics.BACKEND_RUNNING,
            metrics.BACKEND_QUEUED,
            metrics.BACKEND_WORKERS,
        ):
            with contextlib.suppress(KeyError):
                gauge.remove(name)
        for value in metrics.HEALTH_STATES:
            with contextlib.suppress(KeyError):
                metrics.BACKEND_STATE.remove(name, value)

    async def refresh_forever(self) -> None:
        while True:
            try:
                await self.refresh_gauges()
            except Exception as error:
                log.error("cannot update the backend gauges: %s", error)
            await asyncio.sleep(GAUGE_REFRESH_SECONDS)

    async def stop(self) -> None:
        metrics.worker_exited()
        await self.tracing.stop()
