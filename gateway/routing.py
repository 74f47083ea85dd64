"""Choosing a backend for a new query: the routing group, then the group's router.

Admin intent (the ``active`` flag) and observed health (HEALTHY) together decide who may take new
queries; the group's router decides who takes the next one. Queries already running are never
routed here: they follow their query id (``query_locator``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from gateway.health import HealthChecker
from gateway.routers import ROUTERS, RankContext, Strategy
from gateway.scoring import ScoreWeights
from gateway.store import BackendRecord


class NoBackendAvailable(Exception):
    """No active and healthy backend in the requested group nor in the default group."""

    def __init__(self, group: str, default_group: str, detail: str = "") -> None:
        self.group = group
        self.default_group = default_group
        if group == default_group:
            message = f"no active and healthy backend in routing group '{group}'"
        else:
            message = (
                f"no active and healthy backend in routing group '{group}' nor in the default group '{default_group}'"
            )
        super().__init__(f"trino-gateway: {message}{detail}")


@dataclass(frozen=True)
class Decision:
    requested_group: str
    group: str
    ranked: list[BackendRecord]

    @property
    def fell_back(self) -> bool:
        return self.group != self.requested_group


class InFlight:
    """Queries this gateway process routed and has not yet seen finish, per backend."""

    def __init__(self, idle_expiry: float = 600.0) -> None:
        self.idle_expiry = idle_expiry
        self._queries: dict[str, tuple[str, float]] = {}
        self._counts: dict[str, int] = {}

    def started(self, query_id: str, backend: str) -> None:
        if query_id not in self._queries:
            self._counts[backend] = self._counts.get(backend, 0) + 1
        self._queries[query_id] = (backend, time.monotonic())

    def seen(self, query_id: str) -> None:
        entry = self._queries.get(query_id)
        if entry is not None:
            self._queries[query_id] = (entry[0], time.monotonic())

    def finished(self, query_id: str) -> None:
        entry = self._queries.pop(query_id, None)
        if entry is not None:
            self._counts[entry[0]] -= 1

    def count(self, backend: str) -> int:
        return self._counts.get(backend, 0)

    def sweep(self) -> None:
        """Forget queries whose client went away without finishing them."""
        cutoff = time.monotonic() - self.idle_expiry
        for query_id, (_, last_seen) in list(self._queries.items()):
            if last_seen < cutoff:
                self.finished(query_id)


class Router:
    def __init__(
        self,
        default_group: str,
        in_flight: InFlight,
        health: HealthChecker,
        default_router: str = "score",
        group_routers: dict[str, str] | None = None,
        weights: ScoreWeights | None = None,
        backend_weights: dict[str, float] | None = None,
    ) -> None:
        self.default_group = default_group
        self.in_flight = in_flight
        self.health = health
        self.default_strategy: Strategy = ROUTERS[default_router]()
        self.group_strategies: dict[str, Strategy] = {
            group: ROUTERS[name]() for group, name in (group_routers or {}).items()
        }
        self.weights = weights or ScoreWeights()
        self.backend_weights = backend_weights or {}
        self._indexed: list[BackendRecord] | None = None
        self._indexed_size = 0
        self._active_members: dict[str, list[BackendRecord]] = {}

    def _routable(self, backends: list[BackendRecord], group: str) -> list[BackendRecord]:
        if backends is not self._indexed or len(backends) != self._indexed_size:
            # The registry hands out the same list until it re-reads the store: index it once.
            members: dict[str, list[BackendRecord]] = {}
            for backend in backends:
                if backend.active:
                    members.setdefault(backend.routing_group, []).append(backend)
            self._indexed, self._indexed_size, self._active_members = backends, len(backends), members
        known = self.health.health
        return [b for b in self._active_members.get(group, ()) if (h := known.get(b.name)) is not None and h.routable]

    def decide(self, backends: list[BackendRecord], requested_group: str | None, user: str | None = None) -> Decision:
        """The group and the backends to try, best first, for a new query."""
        group = requested_group or self.default_group
        candidates = self._routable(backends, group)
        chosen_group = group
        if not candidates:
            # An empty, unhealthy or unknown group falls back to the default group, as
            # trinodb/trino-gateway does.
            candidates = self._routable(backends, self.default_group)
            chosen_group = self.default_group
        if not candidates:
            raise NoBackendAvailable(group, self.default_group, self._why(backends, group))
        strategy = self.group_strategies.get(chosen_group, self.default_strategy)
        context = RankContext(
            chosen_group,
            user,
            self.health.of,
            self.in_flight.count,
            lambda name: self.backend_weights.get(name, 1.0),
            self.weights,
        )
        return Decision(group, chosen_group, strategy.rank(candidates, context))

    def _why(self, backends: list[BackendRecord], group: str) -> str:
        members = [b for b in backends if b.routing_group in (group, self.default_group)]
        if not members:
            return ""
        states = ", ".join(f"{b.name} {'inactive' if not b.active else self.health.of(b.name).state}" for b in members)
        return f" ({states})"
