"""What the planner says a query will cost, and what routing made of asking.

``QueryEstimate`` holds Trino's five estimates twice, summed over every node of the plan (``total``) and
the largest of any one node (``max``), and the plan's shape (fragments, joins, table scans, remote
exchanges, aggregations, nodes). An unknown number is NaN (Trino writes ``"NaN"``), never 0: every
comparison with it is false.

``EstimateUse`` is one query's side of it: the estimate, where it came from (``cache`` or ``planner``)
and how long the query waited for it; or, when none could be had, why (``cause``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import orjson

# Trino's estimates of a plan node (PlanNodeStatsAndCostSummary), in its order.
ESTIMATE_NAMES: tuple[str, ...] = ("outputRowCount", "outputSizeInBytes", "cpuCost", "memoryCost", "networkCost")
# The plan's shape, as the routing rules name it.
SHAPE_NAMES: tuple[str, ...] = ("fragments", "joins", "tableScans", "remoteExchanges", "aggregations", "nodes")

NAN = math.nan

Source = Literal["cache", "planner"]

# Why a query was routed without an estimate (a bounded set: the fallback counter's label).
NOT_EXPLAINABLE = "not_explainable"  # DDL, SET, USE, a transaction's control, SHOW, EXECUTE, ...: never sent
UNPARSED = "unparsed"  # sqlglot cannot read it: it cannot be normalised, and is not sent
TOO_LONG = "too_long"  # longer than max_statement_length
RATE_LIMITED = "rate_limited"  # its user is over the EXPLAIN rate
BUSY = "busy"  # max_in_flight EXPLAINs are open already
NO_PLANNER = "no_planner"  # no active and healthy backend to ask
BUDGET = "budget"  # the query's time budget ran out first
UNREACHABLE = "unreachable"  # the planner could not be reached (refused, connect timeout, no connection free)
PLANNER_TIMEOUT = "planner_timeout"  # the EXPLAIN took longer than its timeout
PLANNER_ERROR = "planner_error"  # an HTTP error, a broken connection, or the EXPLAIN failed on the server's side
REFUSED = "refused"  # the planner refused the statement (a user error: no such table, no access, bad syntax)
BAD_ANSWER = "bad_answer"  # not the Trino protocol, or no plan that can be read
CAUSES: tuple[str, ...] = (
    NOT_EXPLAINABLE,
    UNPARSED,
    TOO_LONG,
    RATE_LIMITED,
    BUSY,
    NO_PLANNER,
    BUDGET,
    UNREACHABLE,
    PLANNER_TIMEOUT,
    PLANNER_ERROR,
    REFUSED,
    BAD_ANSWER,
)
# Causes that are the statement's, not a fault: expected, and not worth a warning.
EXPECTED_CAUSES = frozenset({NOT_EXPLAINABLE, UNPARSED, TOO_LONG})


@dataclass(frozen=True, slots=True)
class Estimates:
    """Trino's five estimates (NaN: unknown)."""

    outputRowCount: float = NAN
    outputSizeInBytes: float = NAN
    cpuCost: float = NAN
    memoryCost: float = NAN
    networkCost: float = NAN

    def get(self, name: str) -> float:
        value: float = getattr(self, name)
        return value

    def as_json(self) -> dict[str, float | None]:
        return {name: _json_number(getattr(self, name)) for name in ESTIMATE_NAMES}

    @classmethod
    def from_json(cls, data: Any) -> Estimates:
        if not isinstance(data, dict):
            return cls()
        return cls(**{name: _number(data.get(name)) for name in ESTIMATE_NAMES})


UNKNOWN = Estimates()


@dataclass(frozen=True, slots=True)
class QueryEstimate:
    """A query's estimate, read from its distributed plan (``gateway.routing.estimates.plan``)."""

    total: Estimates
    max: Estimates
    fragments: int
    joins: int
    tableScans: int
    remoteExchanges: int
    aggregations: int
    nodes: int

    def value(self, name: str) -> float:
        """``total.cpuCost``, ``max.outputRowCount`` or a count (``joins``) by its rule name."""
        kind, _, quantity = name.partition(".")
        if kind in ("total", "max") and quantity in ESTIMATE_NAMES:
            return (self.total if kind == "total" else self.max).get(quantity)
        if name in SHAPE_NAMES:
            return float(getattr(self, name))
        raise KeyError(name)

    def as_json(self) -> dict[str, Any]:
        return {
            "total": self.total.as_json(),
            "max": self.max.as_json(),
            **{name: getattr(self, name) for name in SHAPE_NAMES},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> QueryEstimate:
        return cls(
            Estimates.from_json(data.get("total")),
            Estimates.from_json(data.get("max")),
            *(int(data.get(name) or 0) for name in SHAPE_NAMES),
        )

    def summary(self) -> str:
        """One line for logs and spans: ``max rows 60175, total cpu 2.9e+06, 3 joins, ...``."""
        return (
            f"max rows {self.max.outputRowCount:.4g}, total rows {self.total.outputRowCount:.4g}, "
            f"total cpu {self.total.cpuCost:.4g}, max memory {self.max.memoryCost:.4g}, "
            f"{self.fragments} fragments, {self.joins} joins, {self.tableScans} scans"
        )


@dataclass(frozen=True, slots=True)
class EstimateUse:
    """What one query had of an estimate: the estimate and its source, or why there was none."""

    estimate: QueryEstimate | None
    source: Source | None
    seconds: float
    """How long the query waited for it (a cache hit: about nothing)."""
    cause: str | None = None
    """Why there is no estimate (one of ``CAUSES``); None when there is one."""

    @property
    def available(self) -> bool:
        return self.estimate is not None

    def as_json(self) -> dict[str, Any]:
        return {
            "available": self.available,
            "source": self.source,
            "latencyMs": round(self.seconds * 1000, 3),
            "cause": self.cause,
            **(self.estimate.as_json() if self.estimate is not None else {}),
        }

    def to_json(self) -> str:
        """As the query history keeps it (NaN written as null: JSON has no NaN)."""
        return orjson.dumps(self.as_json()).decode()

    @classmethod
    def from_json(cls, text: str | None) -> EstimateUse | None:
        if not text:
            return None
        try:
            data = orjson.loads(text)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(data, dict):
            return None
        estimate = QueryEstimate.from_json(data) if data.get("available") else None
        source = data.get("source") if data.get("source") in ("cache", "planner") else None
        return cls(estimate, source, float(data.get("latencyMs") or 0) / 1000, data.get("cause"))

    def span_attributes(self) -> dict[str, Any]:
        """The estimate as span attributes (``trino.estimate.*``); unknown numbers left out."""
        attributes: dict[str, Any] = {
            "trino.estimate.available": self.available,
            "trino.estimate.latency_ms": round(self.seconds * 1000, 3),
        }
        if self.source is not None:
            attributes["trino.estimate.source"] = self.source
        if self.cause is not None:
            attributes["trino.estimate.cause"] = self.cause
        estimate = self.estimate
        if estimate is not None:
            for kind, values in (("total", estimate.total), ("max", estimate.max)):
                for name in ESTIMATE_NAMES:
                    value = values.get(name)
                    if not math.isnan(value):
                        attributes[f"trino.estimate.{kind}.{name}"] = value
            for name in SHAPE_NAMES:
                attributes[f"trino.estimate.{name}"] = getattr(estimate, name)
        return attributes


def fallback(cause: str, seconds: float = 0.0) -> EstimateUse:
    """No estimate, because of ``cause``."""
    return EstimateUse(None, None, seconds, cause)


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return NAN
    return float(value)


def _json_number(value: float) -> float | None:
    return None if math.isnan(value) else value
