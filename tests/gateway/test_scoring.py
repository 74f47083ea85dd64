"""The score formula and the score router's order, in process."""

from __future__ import annotations

import pytest

from gateway.backends.health.state import BackendHealth, ClusterStats
from gateway.config import ScoreWeights
from gateway.routing.routers import COST_RESOLUTION, RankContext, ScoreRouter
from gateway.routing.scoring import cost, costs, score
from gateway.store.backend import Backend


def _health(name: str, running=None, queued=None, workers=None, latency=0.0, error_rate=0.0, routed=0):
    health = BackendHealth(name)
    health.stats = ClusterStats(running=running, queued=queued, workers=workers)
    health.latency, health.error_rate, health.routed_since_check = latency, error_rate, routed
    return health


def test_cost_follows_the_documented_formula():
    weights = ScoreWeights(queued=1.0, running=0.25, latency=4.0, errors=5.0)
    health = _health("a", running=6, queued=4, workers=2, latency=0.1, error_rate=0.2, routed=2)
    # load = 4/2*1 + (6+2)/2*0.25 = 3; cost = 3 + 0.1*4 + 0.2*5 = 4.4
    assert cost(health, in_flight=99, weights=weights) == pytest.approx(4.4)
    assert score(health, 99, weights) == pytest.approx(1 / 5.4)
    # A monitor without counts: the gateway's own in-flight count is the running figure.
    assert cost(_health("b"), in_flight=8, weights=weights) == pytest.approx(8 * 0.25)
    assert costs([health, _health("b")], {"a": 99, "b": 8}.__getitem__, weights) == pytest.approx([4.4, 2.0])


def test_the_score_router_ranks_by_cost_and_breaks_near_ties_at_random():
    healths = {
        "busy": _health("busy", running=0, queued=10, workers=1),
        "idle-1": _health("idle-1", running=0, queued=0, workers=1),
        "idle-2": _health("idle-2", running=0, queued=0, workers=1, latency=COST_RESOLUTION / 100),
        "slow": _health("slow", running=0, queued=0, workers=1, latency=0.5),
    }
    candidates = [Backend(name=name, proxy_to=f"http://{name}") for name in healths]
    context = RankContext("adhoc", None, healths.__getitem__, lambda name: 0, ScoreWeights())
    firsts = set()
    for _ in range(200):
        ranked = [b.name for b in ScoreRouter().rank(candidates, context)]
        assert ranked[2:] == ["slow", "busy"]
        firsts.add(ranked[0])
    assert firsts == {"idle-1", "idle-2"}
