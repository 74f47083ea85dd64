"""Choosing a backend for a new query: the routing group's backends that may take queries, ranked
by the group's router (``gateway.routing.routers``).

Admin intent (the ``active`` flag) and observed health (HEALTHY) together decide who may take new
queries; the group's router decides who takes the next one. Queries already running are never
routed here: they follow their query id (``gateway.queries.book``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from gateway.backends.health import HealthChecker
from gateway.config import RoutingConfig, ScoreWeights
from gateway.routing.routers import ROUTERS, RankContext, Router
from gateway.store.backend import Backend


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


class ClusterStates(Protocol):
    """What cluster management says of routing (``gateway.clusters``): a managed cluster takes new queries
    only while READY, and a group whose clusters start with its load waits for one rather than falling
    back to the default group."""

    def takes_queries(self, backend: Backend) -> bool: ...

    def scalable(self, group: str) -> bool: ...


@dataclass(frozen=True)
class Decision:
    requested_group: str
    group: str
    ranked: list[Backend]
    """Best first; empty only for a group whose clusters are starting (its queries wait for one)."""

    @property
    def fell_back(self) -> bool:
        return self.group != self.requested_group


class RouteDecider:
    """Decides where a new query goes: its group (or the default group) and the backends to try."""

    def __init__(self, settings: RoutingConfig, health: HealthChecker, in_flight: Callable[[str], int]) -> None:
        self.default_group = settings.default_group
        self.health = health
        self.in_flight = in_flight
        self.default_router: Router = ROUTERS[settings.router]()
        self.group_routers: dict[str, Router] = {
            group: ROUTERS[group_settings.router]() for group, group_settings in settings.groups.items()
        }
        self.weights: ScoreWeights = settings.score_weights
        self._indexed: list[Backend] | None = None
        self._indexed_size = 0
        self._active_members: dict[str, list[Backend]] = {}
        self.clusters: ClusterStates | None = None
        """Set by the worker's services once cluster management exists (it is built after the decider)."""

    def _routable(self, backends: list[Backend], group: str) -> list[Backend]:
        if backends is not self._indexed or len(backends) != self._indexed_size:
            # The registry hands out the same list until it re-reads the store: index it once.
            members: dict[str, list[Backend]] = {}
            for backend in backends:
                if backend.active:
                    members.setdefault(backend.routing_group, []).append(backend)
            self._indexed, self._indexed_size, self._active_members = backends, len(backends), members
        known = self.health.health
        clusters = self.clusters
        return [
            b
            for b in self._active_members.get(group, ())
            if (h := known.get(b.name)) is not None and h.routable and (clusters is None or clusters.takes_queries(b))
        ]

    def decide(self, backends: list[Backend], requested_group: str | None, user: str | None = None) -> Decision:
        """The group and the backends to try, best first, for a new query."""
        group = requested_group or self.default_group
        candidates = self._routable(backends, group)
        chosen_group = group
        if not candidates and self.clusters is not None and self.clusters.scalable(group):
            # Its clusters start with its load: the query waits for one (admission control holds it).
            return Decision(group, group, [])
        if not candidates:
            # An empty, unhealthy or unknown group falls back to the default group, as
            # trinodb/trino-gateway does.
            candidates = self._routable(backends, self.default_group)
            chosen_group = self.default_group
        if not candidates:
            raise NoBackendAvailable(group, self.default_group, self._why(backends, group))
        router = self.group_routers.get(chosen_group, self.default_router)
        context = RankContext(chosen_group, user, self.health.of, self.in_flight, self.weights)
        return Decision(group, chosen_group, router.rank(candidates, context))

    def routable(self, backends: list[Backend], name: str) -> Backend | None:
        """Backend ``name`` if it may take queries now (active and HEALTHY)."""
        known = self.health.health
        for backend in backends:
            if backend.name == name:
                health = known.get(name)
                takes = self.clusters is None or self.clusters.takes_queries(backend)
                return backend if backend.active and health is not None and health.routable and takes else None
        return None

    def _why(self, backends: list[Backend], group: str) -> str:
        members = [b for b in backends if b.routing_group in (group, self.default_group)]
        if not members:
            return ""
        return " (" + ", ".join(self._state_of(b) for b in members) + ")"

    def _state_of(self, backend: Backend) -> str:
        if not backend.active:
            return f"{backend.name} inactive"
        health = self.health.of(backend.name)
        # Why it is out, too: "UNHEALTHY: cannot connect: [SSL: CERTIFICATE_VERIFY_FAILED] ..."
        why = f": {health.last_error[:200]}" if health.last_error and health.state != "HEALTHY" else ""
        return f"{backend.name} {health.state}{why}"
