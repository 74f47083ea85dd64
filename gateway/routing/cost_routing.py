"""After the group selector: the estimate a new query's routing needs beyond its rules, and the cost
router's group for it.

A query headed for a group the cost router places (``routing.estimates.cost_router.groups``, default the
default group) gets its estimate (the one its rules read, else one asked for now, within the budget)
and goes to the first target that takes it. With ``routing.estimates.always``, every query gets its
estimate (for its history and trace) whatever routes it. Otherwise nothing is asked and this costs an
attribute read per query.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from gateway.config import EstimatesConfig
from gateway.routing.estimates import CostRouter, Estimator
from gateway.routing.rules import Selection

log = logging.getLogger("gateway.routing")

# The history's routing_source of a query the cost router placed.
BY_COST = "cost"


class CostRouting:
    def __init__(self, estimator: Estimator, settings: EstimatesConfig, default_group: str) -> None:
        self.estimator = estimator
        self.default_group = default_group
        self.always = settings.always
        self.router = CostRouter(settings.cost_router, default_group) if settings.cost_router is not None else None
        self.active = self.always or self.router is not None

    async def apply(self, selection: Selection, scope: dict[str, Any], sql: str, user: str | None) -> Selection:
        """``selection`` with the query's estimate, and the cost router's group where it places the query."""
        if not self.active:
            return selection
        headed = selection.group or self.default_group
        placed = self.router is not None and self.router.applies_to(headed)
        if not (placed or self.always):
            return selection
        use = selection.estimate
        if use is None:
            estimator = self.estimator
            request = estimator.request(scope, sql, user)
            # A cache hit is answered without a coroutine: the common case costs a lookup.
            use = estimator.peek(request) or await estimator.estimate(request)
        if placed:
            assert self.router is not None
            placement = self.router.place(use.estimate)
            log.debug("cost router: %s", placement.why)
            if placement.group is not None:
                return replace(selection, group=placement.group, source=BY_COST, rule=None, estimate=use)
        # Not placed (or no placement: as if no estimate had been asked for, where it was headed).
        return selection if selection.estimate is use else replace(selection, estimate=use)
