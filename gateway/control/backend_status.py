"""A backend as operators see it: its record (admin intent) beside what this worker observes of it
(health, load, score). Read by ``/gateway/health`` and copied into the backend gauges; computed
from their owners, never stored."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.backends.health import BackendHealth, HealthChecker
from gateway.config import ScoreWeights
from gateway.queries.book import QueryBook
from gateway.routing.scoring import cost, score_of
from gateway.store.backend import Backend
from gateway.upstream import Upstream
from observability.metrics import BackendGauges


@dataclass(frozen=True)
class BackendStatus:
    backend: Backend
    health: BackendHealth
    in_flight: int
    """Queries this worker routed there that have not ended."""
    requests_in_flight: int
    """Requests this worker has open to it now (bounded by proxy.max_connections_per_backend)."""
    cost: float
    """The score router's cost: lower is better."""
    monitor: str
    """The kind of health check it gets (its own, else ``health.monitor``): whether running, queued
    and workers can be known at all (``INFO_API``, ``QUERY`` and ``NOOP`` report none)."""

    @property
    def score(self) -> float:
        """Higher is better: 1 is idle and fast."""
        return score_of(self.cost)

    def gauges(self) -> BackendGauges:
        stats = self.health.stats
        return BackendGauges(
            name=self.backend.name,
            state=self.health.state.value,
            active=self.backend.active,
            score=self.score,
            cost=self.cost,
            running=stats.running or 0,
            queued=stats.queued or 0,
            workers=stats.workers or 0,
            in_flight=self.in_flight,
        )


def backend_statuses(
    backends: list[Backend], health: HealthChecker, book: QueryBook, upstream: Upstream, weights: ScoreWeights
) -> list[BackendStatus]:
    out = []
    for backend in backends:
        observed = health.of(backend.name)
        in_flight = book.count(backend.name)
        out.append(
            BackendStatus(
                backend=backend,
                health=observed,
                in_flight=in_flight,
                requests_in_flight=upstream.limits.in_use(backend.name),
                cost=cost(observed, in_flight, weights),
                monitor=health.monitor_kind(backend),
            )
        )
    return out
