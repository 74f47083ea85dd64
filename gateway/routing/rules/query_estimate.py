"""``queryEstimate`` in a rule: what the planner says the query will cost.

    queryEstimate.available                 true when an estimate could be had
    queryEstimate.total.cpuCost             summed over the plan's nodes (outputRowCount,
    queryEstimate.max.outputRowCount        outputSizeInBytes, cpuCost, memoryCost, networkCost);
                                            max: the largest of any one node
    queryEstimate.fragments, .joins, .tableScans, .remoteExchanges, .aggregations, .nodes
    queryEstimate.source                    "cache" or "planner" (null: none)

Numbers are doubles; an unknown one is NaN, and so is every number when no estimate could be had:
every comparison with NaN is false (``x != x`` is true), as in Java.

Nothing is asked until a rule reads it, like ``trinoQueryProperties``. The first read looks in the
estimate cache (a dictionary lookup); when the planner must be asked, the read raises ``EstimateNeeded``
and the selector runs the rules again once the estimate is had (or given up on): rules have no effects
outside their own ``state`` and ``result``, which each run starts afresh.
"""

from __future__ import annotations

from collections.abc import Callable

from gateway.routing.estimates import EstimateRequest, EstimateUse
from gateway.routing.estimates.estimate import NAN, UNKNOWN, Estimates
from gateway.routing.rules.values import RuleObject


class EstimateNeeded(Exception):
    """A rule read ``queryEstimate`` and the cache has none: the planner must be asked first."""

    def __init__(self, request: EstimateRequest) -> None:
        super().__init__("the query's estimate is needed")
        self.request = request


class RuleEstimates(RuleObject):
    """``queryEstimate.total`` or ``queryEstimate.max``."""

    java_name = "Estimates"
    rule_methods = frozenset(
        {"getOutputRowCount", "getOutputSizeInBytes", "getCpuCost", "getMemoryCost", "getNetworkCost", "toString"}
    )

    def __init__(self, values: Estimates) -> None:
        self.values = values

    def getOutputRowCount(self) -> float:
        return self.values.outputRowCount

    def getOutputSizeInBytes(self) -> float:
        return self.values.outputSizeInBytes

    def getCpuCost(self) -> float:
        return self.values.cpuCost

    def getMemoryCost(self) -> float:
        return self.values.memoryCost

    def getNetworkCost(self) -> float:
        return self.values.networkCost

    def toString(self) -> str:
        return str(self.values.as_json())


class QueryEstimateVariable(RuleObject):
    """``queryEstimate``: resolved on its first read."""

    java_name = "QueryEstimate"
    rule_methods = frozenset(
        {
            "isAvailable",
            "getTotal",
            "getMax",
            "getFragments",
            "getJoins",
            "getTableScans",
            "getRemoteExchanges",
            "getAggregations",
            "getNodes",
            "getSource",
        }
    )

    def __init__(
        self, request: Callable[[], EstimateRequest], peek: Callable[[EstimateRequest], EstimateUse | None]
    ) -> None:
        """``request`` makes the query's estimate request (only when a rule reads an estimate); ``peek``
        answers from the cache, or None."""
        self._request = request
        self._peek = peek
        self.use: EstimateUse | None = None
        """The estimate the rules read (None: no rule read one)."""

    @classmethod
    def resolved(cls, use: EstimateUse) -> QueryEstimateVariable:
        variable = cls(_no_request, lambda request: use)
        variable.use = use
        return variable

    def _use(self) -> EstimateUse:
        if self.use is None:
            request = self._request()
            use = self._peek(request)
            if use is None:
                raise EstimateNeeded(request)
            self.use = use
        return self.use

    def _count(self, name: str) -> float:
        estimate = self._use().estimate
        return NAN if estimate is None else float(getattr(estimate, name))

    # -- the rule methods -------------------------------------------------------------------------
    def isAvailable(self) -> bool:
        return self._use().available

    def getTotal(self) -> RuleEstimates:
        estimate = self._use().estimate
        return RuleEstimates(UNKNOWN if estimate is None else estimate.total)

    def getMax(self) -> RuleEstimates:
        estimate = self._use().estimate
        return RuleEstimates(UNKNOWN if estimate is None else estimate.max)

    def getFragments(self) -> float:
        return self._count("fragments")

    def getJoins(self) -> float:
        return self._count("joins")

    def getTableScans(self) -> float:
        return self._count("tableScans")

    def getRemoteExchanges(self) -> float:
        return self._count("remoteExchanges")

    def getAggregations(self) -> float:
        return self._count("aggregations")

    def getNodes(self) -> float:
        return self._count("nodes")

    def getSource(self) -> str | None:
        return self._use().source


def _no_request() -> EstimateRequest:
    raise AssertionError("a resolved estimate needs no request")
