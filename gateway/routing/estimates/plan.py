"""Reading ``EXPLAIN (TYPE DISTRIBUTED, FORMAT JSON)``'s plan into a ``QueryEstimate``.

The plan is a map of fragment id to the fragment's root node; a node has ``name``, ``descriptor``,
``estimates`` (one ``{outputRowCount, outputSizeInBytes, cpuCost, memoryCost, networkCost}`` per plan
node it stands for: a ``ScanFilterProject`` has three, scan first) and ``children``; a ``RemoteSource``
names the fragments it reads in ``descriptor.sourceFragmentIds`` and has no estimates. Unknown numbers
are the string ``"NaN"``. (A logical plan, one node tree, is read too.)

Rows and bytes are each plan node's output: ``total`` sums them over every node, ``max`` takes the
largest. Costs need one more step: Trino writes each node's cost **cumulative** (its inputs' included:
its cost calculator's ``calculateCost`` is "the cumulative cost of a node"), so summing them over nodes
would count the leaves once per ancestor, the crude model trino-lb's issue #11 names. Here each node's
own cost is its cumulative one less its inputs' (within a fragment its children, across fragments the
roots of the fragments its remote sources read), ``total`` is the root's cumulative cost (the sum of
the own costs), and ``max`` the largest own cost of one node. A plan whose costs are each node's own
already (trinosim writes them so) is read as it is: ``plan_costs: auto`` tells the two apart, since
a cumulative cost is never less than its inputs' and an own one usually is somewhere (the ``Output``
node's is 0).

"NaN" is unknown, never 0: a total with an unknown part is unknown (as Trino's own totals are), and
``max`` is the largest of the known values (NaN when none is known).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from gateway.routing.estimates.estimate import ESTIMATE_NAMES, NAN, Estimates, QueryEstimate

PlanCosts = Literal["auto", "cumulative", "own"]

# A plan beyond this many nodes is not read (a plan is a few hundred nodes at most; this bounds the work).
MAX_NODES = 50_000
_COSTS = ("cpuCost", "memoryCost", "networkCost")
_SIZES = ("outputRowCount", "outputSizeInBytes")
# Steps of an aggregation that are parts of one (Trino splits an aggregation into PARTIAL and FINAL).
_PARTIAL_STEPS = frozenset({"PARTIAL", "INTERMEDIATE"})


class BadPlan(ValueError):
    """The text is not a plan this module can read; the message says what is wrong with it."""


@dataclass(eq=False)
class _Node:
    name: str
    descriptor: dict[str, Any]
    entries: list[dict[str, float]]
    children: list[_Node] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)  # a RemoteSource's fragments


def read_plan(text: str | bytes, costs: PlanCosts = "auto") -> QueryEstimate:
    """The estimate of a plan in Trino's JSON; raises ``BadPlan`` for anything else."""
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError as error:
        raise BadPlan(f"the plan is not JSON: {error}") from None
    if isinstance(data, dict) and _is_node(data):
        fragments = {"0": data}  # a logical plan: one tree
    elif isinstance(data, dict) and data and all(isinstance(v, dict) and _is_node(v) for v in data.values()):
        fragments = data
    else:
        raise BadPlan("the plan is neither a map of fragments to nodes nor a node")
    counter = [0]
    roots = {str(key): _node(value, counter) for key, value in fragments.items()}
    root_id = "0" if "0" in roots else next(iter(roots))
    nodes = [node for root in roots.values() for node in _walk(root)]
    entries = [entry for node in nodes for entry in node.entries]
    totals: dict[str, float] = {name: _sum(entry[name] for entry in entries) for name in _SIZES}
    maxima: dict[str, float] = {name: _max(entry[name] for entry in entries) for name in _SIZES}
    cumulative = costs == "cumulative" or (costs == "auto" and _looks_cumulative(nodes, roots))
    own = _own_costs(nodes, roots) if cumulative else [entry for entry in entries]
    for name in _COSTS:
        if cumulative:
            top = roots[root_id].entries
            totals[name] = top[-1][name] if top else NAN
        else:
            totals[name] = _sum(entry[name] for entry in own)
        maxima[name] = _max(entry[name] for entry in own)
    return QueryEstimate(
        total=Estimates(**{name: totals[name] for name in ESTIMATE_NAMES}),
        max=Estimates(**{name: maxima[name] for name in ESTIMATE_NAMES}),
        fragments=len(roots),
        joins=sum(1 for node in nodes if node.name.endswith("Join")),
        tableScans=sum(1 for node in nodes if node.name == "TableScan" or node.name.startswith("Scan")),
        remoteExchanges=sum(1 for node in nodes if node.name.startswith("Remote")),
        aggregations=sum(
            1
            for node in nodes
            if node.name == "Aggregate" and str(node.descriptor.get("type", "")).upper() not in _PARTIAL_STEPS
        ),
        nodes=len(nodes),
    )


def _is_node(value: dict[str, Any]) -> bool:
    return isinstance(value.get("name"), str) and isinstance(value.get("children", []), list)


def _node(data: dict[str, Any], counter: list[int]) -> _Node:
    """The tree below ``data``, read without recursion (a plan may be deep)."""
    root = _make(data, counter)
    pending: list[tuple[_Node, list[Any]]] = [(root, data.get("children") or [])]
    while pending:
        parent, children = pending.pop()
        for child in children:
            if not isinstance(child, dict) or not _is_node(child):
                raise BadPlan(f"a child of {parent.name} is not a plan node")
            node = _make(child, counter)
            parent.children.append(node)
            pending.append((node, child.get("children") or []))
    return root


def _make(data: dict[str, Any], counter: list[int]) -> _Node:
    counter[0] += 1
    if counter[0] > MAX_NODES:
        raise BadPlan(f"the plan has more than {MAX_NODES} nodes")
    estimates = data.get("estimates") or []
    if not isinstance(estimates, list):
        raise BadPlan(f"{data['name']}: estimates is not a list")
    descriptor = data.get("descriptor") or {}
    if not isinstance(descriptor, dict):
        raise BadPlan(f"{data['name']}: descriptor is not an object")
    entries = []
    for estimate in estimates:
        if not isinstance(estimate, dict):
            raise BadPlan(f"{data['name']}: an estimate is not an object")
        entries.append({name: _number(estimate.get(name)) for name in ESTIMATE_NAMES})
    sources = str(descriptor.get("sourceFragmentIds", "")).strip("[]")
    return _Node(
        data["name"],
        descriptor,
        entries,
        sources=[part.strip() for part in sources.split(",") if part.strip()],
    )


def _number(value: Any) -> float:
    """A JSON number, or Jackson's strings for doubles JSON cannot hold ("NaN", "Infinity")."""
    if isinstance(value, bool):
        return NAN
    if isinstance(value, int | float):
        return float(value)
    if value in ("Infinity", "-Infinity"):
        return float(value)
    return NAN  # "NaN", null, a missing field: unknown


def _walk(root: _Node) -> list[_Node]:
    out, pending = [], [root]
    while pending:
        node = pending.pop()
        out.append(node)
        pending.extend(node.children)
    return out


def _sum(values: Any) -> float:
    total = 0.0
    for value in values:
        if math.isnan(value):
            return NAN
        total += value
    return total


def _max(values: Any) -> float:
    known = [value for value in values if not math.isnan(value)]
    return max(known) if known else NAN


def _input_cost(node: _Node, roots: dict[str, _Node], name: str) -> float:
    """The cumulative ``name`` cost of what flows into ``node``'s bottom plan node: its children's
    (a remote source's: the roots of the fragments it reads)."""
    total = 0.0
    for child in node.children:
        if child.entries:
            total += child.entries[-1][name]
        elif child.sources:
            for source in child.sources:
                root = roots.get(source)
                if root is None or not root.entries:
                    return NAN
                total += root.entries[-1][name]
        # A child without estimates or sources (a bare Values, say) adds nothing that is known.
    return total


def _own_costs(nodes: list[_Node], roots: dict[str, _Node]) -> list[dict[str, float]]:
    """Each plan node's own costs, from cumulative ones (NaN where a part is unknown)."""
    own: list[dict[str, float]] = []
    for node in nodes:
        for position, entry in enumerate(node.entries):
            costs: dict[str, float] = {}
            for name in _COSTS:
                below = node.entries[position - 1][name] if position else _input_cost(node, roots, name)
                # Memory is not quite additive in Trino's model (what runs at once): never below 0.
                costs[name] = max(entry[name] - below, 0.0) if not math.isnan(entry[name] - below) else NAN
            own.append(costs)
    return own


def _looks_cumulative(nodes: list[_Node], roots: dict[str, _Node]) -> bool:
    """Whether every known CPU cost is at least its inputs' (cumulative costs always are; own costs are
    not, wherever a node costs less than what feeds it, as an ``Output`` that costs 0)."""
    for node in nodes:
        for position, entry in enumerate(node.entries):
            below = node.entries[position - 1]["cpuCost"] if position else _input_cost(node, roots, "cpuCost")
            value = entry["cpuCost"]
            if not math.isnan(value) and not math.isnan(below) and value < below * (1 - 1e-9) - 1e-9:
                return False
    return True
