"""Choosing a backend for a new query: the routing group, then the least-loaded active backend.

Admin intent (the ``active`` flag) decides who may take new queries; load decides who takes the
next one. Queries already running are never routed here: they follow their query id (``proxy``).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

from gateway.store import BackendRecord


class NoBackendAvailable(Exception):
    """No active backend in the requested group nor in the default group."""

    def __init__(self, group: str, default_group: str) -> None:
        self.group = group
        self.default_group = default_group
        if group == default_group:
            message = f"no active backend in routing group '{group}'"
        else:
            message = f"no active backend in routing group '{group}' nor in the default group '{default_group}'"
        super().__init__(f"trino-gateway: {message}")


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
    def __init__(self, default_group: str, in_flight: InFlight) -> None:
        self.default_group = default_group
        self.in_flight = in_flight

    def decide(self, backends: list[BackendRecord], requested_group: str | None) -> Decision:
        """The group and the backends to try, best first, for a new query."""
        group = requested_group or self.default_group
        active = [b for b in backends if b.active]
        candidates = [b for b in active if b.routing_group == group]
        chosen_group = group
        if not candidates:
            # An empty or unknown group falls back to the default group, as trinodb/trino-gateway does.
            candidates = [b for b in active if b.routing_group == self.default_group]
            chosen_group = self.default_group
        if not candidates:
            raise NoBackendAvailable(group, self.default_group)
        # Least loaded first; a random tie-break spreads a burst over equally loaded backends.
        ranked = sorted(candidates, key=lambda b: (self.in_flight.count(b.name), random.random()))
        return Decision(group, chosen_group, ranked)
