"""The health score of a backend: how good a place it is for the next query.

    load    = queued / workers * w_queued + running / workers * w_running
    cost    = load + latency_seconds * w_latency + error_rate * w_errors
    score   = 1 / (1 + cost)                     (1 = idle and fast, toward 0 = busy or failing)

``queued``, ``running`` and ``workers`` come from the monitor (UI_API, JMX and METRICS report them);
``running`` adds the queries this gateway routed there since that check, so a burst spreads out
instead of herding onto the backend that looked idlest. Monitors that report no counts (INFO_API,
QUERY, NOOP) leave the gateway's own in-flight count as ``running`` (``QueryBook.count``: unfinished
queries and submissions on their way). ``latency`` and
``error_rate`` are moving averages of the backend's real proxied submissions and health checks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from gateway.backends.health.state import BackendHealth
from gateway.config import ScoreWeights


def score_of(cost: float) -> float:
    """The score (higher is better) of a cost (lower is better)."""
    return 1.0 / (1.0 + cost)


def costs(healths: Iterable[BackendHealth], in_flight: Callable[[str], int], weights: ScoreWeights) -> list[float]:
    """The cost of each backend (``in_flight``: the gateway's own count, used when the monitor
    reports no running figure). One loop: the score router ranks a group for every new query."""
    w_queued, w_running, w_latency, w_errors = weights.queued, weights.running, weights.latency, weights.errors
    out = []
    for health in healths:
        stats = health.stats
        running = (stats.running + health.routed_since_check) if stats.running is not None else in_flight(health.name)
        load = ((stats.queued or 0) * w_queued + running * w_running) / (stats.workers or 1)
        out.append(load + health.latency * w_latency + health.error_rate * w_errors)
    return out


def cost(health: BackendHealth, in_flight: int, weights: ScoreWeights) -> float:
    return costs((health,), lambda _: in_flight, weights)[0]


def score(health: BackendHealth, in_flight: int, weights: ScoreWeights) -> float:
    return score_of(cost(health, in_flight, weights))
