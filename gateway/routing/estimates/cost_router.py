"""The cost router: a routing group chosen by a query's estimate, from configuration, without rules.

Targets are tried in order and the first that takes the query wins. A target takes it when

- every one of its ``limits`` holds: the value is at most the limit (trino-lb's explainCosts rule; a
  value the planner could not estimate holds no limit, so an unknown cost never lands on a small group),
- and none of its ``thresholds`` is met: the value is at least the threshold (trino-gateway's EXPLAIN
  router: "large if any threshold is met"; an unknown value meets none, as a NaN comparison in Java).

A target with neither takes every query (the last, large group). Each bound names what it bounds as the
rules do: ``total.cpuCost`` (summed over the plan's nodes), ``max.outputRowCount`` (the largest of one
node), or a count of the plan's shape (``joins``, ``fragments``, ...).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from gateway.config import CostRouterConfig, EstimateBounds
from gateway.routing.estimates.estimate import QueryEstimate

_SHAPES = ("fragments", "joins", "tableScans", "remoteExchanges", "aggregations", "nodes")


def _flat(bounds: EstimateBounds) -> list[tuple[str, float]]:
    """``[("total.cpuCost", 5e9), ("max.outputRowCount", 1e6), ("joins", 2), ...]``."""
    flat = [(f"total.{name}", value) for name, value in bounds.total.items()]
    flat += [(f"max.{name}", value) for name, value in bounds.max.items()]
    flat += [(name, float(value)) for name in _SHAPES if (value := getattr(bounds, name)) is not None]
    return flat


@dataclass(frozen=True)
class _Target:
    group: str
    limits: list[tuple[str, float]]
    thresholds: list[tuple[str, float]]

    def refusal(self, estimate: QueryEstimate) -> str | None:
        """Why this target does not take the query (None: it takes it)."""
        for name, limit in self.limits:
            value = estimate.value(name)
            if math.isnan(value):
                return f"{name} unknown (limit {limit:g})"
            if value > limit:
                return f"{name} {value:g} > {limit:g}"
        for name, threshold in self.thresholds:
            value = estimate.value(name)
            if not math.isnan(value) and value >= threshold:
                return f"{name} {value:g} >= {threshold:g}"
        return None


@dataclass(frozen=True)
class Placement:
    group: str | None
    """The group the query goes to; None: the one it was headed for, as if no estimate had been asked."""
    why: str


class CostRouter:
    def __init__(self, settings: CostRouterConfig, default_group: str) -> None:
        self.groups = frozenset(settings.groups if settings.groups is not None else [default_group])
        self.unavailable = settings.unavailable
        self.targets = [_Target(t.group, _flat(t.limits), _flat(t.thresholds)) for t in settings.targets]

    def applies_to(self, group: str) -> bool:
        """Whether queries headed for ``group`` are placed by cost."""
        return group in self.groups

    def place(self, estimate: QueryEstimate | None) -> Placement:
        if estimate is None:
            return Placement(self.unavailable, "no estimate")
        refusals = []
        for target in self.targets:
            refusal = target.refusal(estimate)
            if refusal is None:
                return Placement(target.group, "; ".join([*refusals, f"{target.group} takes it"]))
            refusals.append(f"{target.group}: {refusal}")
        return Placement(self.unavailable, "; ".join([*refusals, "no target takes it"]))
