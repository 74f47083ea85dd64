"""Query estimates: what the planner says a query will cost, asked only when routing needs it.

``estimator`` asks (cache, single flight, budget, rate limit, fallbacks); ``planner`` speaks the Trino
protocol to the planning backend; ``plan`` reads the JSON plan into an estimate (``estimate``);
``statement`` normalises a statement and tells whether EXPLAIN can plan it; ``cache`` and ``rate`` are
the bounds; ``cost_router`` chooses a routing group by cost, without rules. docs/routing.md says how an
operator uses them.
"""

from __future__ import annotations

from gateway.routing.estimates.cost_router import CostRouter, Placement
from gateway.routing.estimates.estimate import CAUSES, ESTIMATE_NAMES, SHAPE_NAMES, EstimateUse, QueryEstimate
from gateway.routing.estimates.estimator import EstimateEvents, Estimator
from gateway.routing.estimates.request import EstimateRequest

__all__ = [
    "CAUSES",
    "ESTIMATE_NAMES",
    "SHAPE_NAMES",
    "CostRouter",
    "EstimateEvents",
    "EstimateRequest",
    "EstimateUse",
    "Estimator",
    "Placement",
    "QueryEstimate",
]
