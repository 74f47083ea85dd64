"""The routers: how a backend is chosen inside a routing group, one class per ``router`` name of the
config (``routing.router``, ``routing.groups.<group>.router``).

Each router ranks the group's routable backends best first; the proxy sends the query to the
first and, if that one refuses it, to the next. ``gateway.routing.decider`` decides which backends are
routable and asks the group's router to rank them.
"""

from __future__ import annotations

import hashlib
import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from gateway.backends.health import BackendHealth
from gateway.config import ScoreWeights
from gateway.routing.scoring import costs
from gateway.store.backend import Backend


@dataclass
class RankContext:
    group: str
    user: str | None
    health: Callable[[str], BackendHealth]
    in_flight: Callable[[str], int]
    weights: ScoreWeights


class Router(Protocol):
    def rank(self, candidates: list[Backend], context: RankContext) -> list[Backend]: ...


# Costs closer than this count as equal (at the default weights, ~12 ms of latency or a twentieth of a
# queued query): otherwise measurement noise alone would send every query to the same backend.
COST_RESOLUTION = 0.05


class ScoreRouter:
    """Best health score first (see ``gateway.routing.scoring``); near-equal scores are chosen at random."""

    def rank(self, candidates: list[Backend], context: RankContext) -> list[Backend]:
        health, in_flight, draw = context.health, context.in_flight, random.random
        values = costs([health(b.name) for b in candidates], in_flight, context.weights)
        # One float per candidate: the cost bucket's number, plus a random fraction that orders
        # candidates within a bucket (cheaper to sort than tuples; this runs for every new query).
        keys = [int(value / COST_RESOLUTION) + draw() for value in values]
        return [candidates[i] for i in sorted(range(len(keys)), key=keys.__getitem__)]


class LeastQueuedRouter:
    """Fewest queued queries first, then fewest running (trinodb/trino-gateway's query-count router)."""

    def rank(self, candidates: list[Backend], context: RankContext) -> list[Backend]:
        def load(backend: Backend) -> tuple[int, int, float]:
            health = context.health(backend.name)
            stats = health.stats
            running = (
                stats.running + health.routed_since_check
                if stats.running is not None
                else context.in_flight(backend.name)
            )
            return (stats.queued or 0, running, random.random())

        return sorted(candidates, key=load)


class RoundRobinRouter:
    def __init__(self) -> None:
        self._turns: dict[str, itertools.count[int]] = {}

    def rank(self, candidates: list[Backend], context: RankContext) -> list[Backend]:
        ordered = sorted(candidates, key=lambda b: b.name)
        turn = next(self._turns.setdefault(context.group, itertools.count())) % len(ordered)
        return ordered[turn:] + ordered[:turn]


class RandomRouter:
    def rank(self, candidates: list[Backend], context: RankContext) -> list[Backend]:
        return random.sample(candidates, len(candidates))


class WeightedRouter:
    """Random, in proportion to each backend's ``weight`` (weighted sampling without replacement)."""

    def rank(self, candidates: list[Backend], context: RankContext) -> list[Backend]:
        def key(backend: Backend) -> float:
            weight = backend.weight
            return random.random() ** (1.0 / weight) if weight > 0 else -1.0

        return sorted(candidates, key=key, reverse=True)


class UserHashRouter:
    """A user keeps going to the same backend while it stays routable (rendezvous hashing: when a
    backend leaves, only its users move)."""

    def rank(self, candidates: list[Backend], context: RankContext) -> list[Backend]:
        user = context.user or ""

        def key(backend: Backend) -> bytes:
            return hashlib.blake2b(f"{user}\0{backend.name}".encode(), digest_size=8).digest()

        return sorted(candidates, key=key, reverse=True)


ROUTERS: dict[str, Callable[[], Router]] = {
    "score": ScoreRouter,
    "least-queued": LeastQueuedRouter,
    "round-robin": RoundRobinRouter,
    "random": RandomRouter,
    "weighted": WeightedRouter,
    "user-hash": UserHashRouter,
}
