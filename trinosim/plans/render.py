"""Plans in Trino's JSON shapes.

A node, as Trino's ``JsonRenderer`` writes it, in this order: ``id`` (a string), ``name``,
``descriptor`` (string to string), ``outputs`` (``{"type", "name"}`` per symbol), ``details`` (a list of
strings), ``estimates`` (one ``{outputRowCount, outputSizeInBytes, cpuCost, memoryCost, networkCost}``
per plan node the node stands for; an empty list when nothing about the node is known, as for a
RemoteSource) and ``children``. The logical plan is the Output node's tree; the distributed plan a map
of fragment id (a string) to the fragment's root node. Unknown numbers are NaN, written ``"NaN"``.
"""

from __future__ import annotations

import math
from typing import Any

from trinosim.plans import jackson
from trinosim.plans.distribute import fragments
from trinosim.plans.nodes import PlanNode


def estimates(node: PlanNode) -> list[dict[str, float]]:
    costs = node.costs or []
    if all(math.isnan(rows) for rows in node.rows) and not any(cost.known for cost in costs):
        return []
    width = node.row_bytes()
    return [
        {
            "outputRowCount": float(rows),
            "outputSizeInBytes": float(rows * width),
            "cpuCost": float(cost.cpu),
            "memoryCost": float(cost.memory),
            "networkCost": float(cost.network),
        }
        for rows, cost in zip(node.rows, costs, strict=False)
    ]


def node_json(node: PlanNode) -> dict[str, Any]:
    return {
        "id": str(node.id),
        "name": node.name,
        "descriptor": dict(node.descriptor),
        "outputs": [{"type": symbol.type, "name": symbol.name} for symbol in node.outputs],
        "details": list(node.details),
        "estimates": estimates(node),
        "children": [node_json(child) for child in node.children],
    }


def logical(root: PlanNode) -> str:
    """``EXPLAIN (TYPE LOGICAL, FORMAT JSON)``: the whole plan as one tree."""
    return jackson.dumps(node_json(root))


def distributed(root: PlanNode) -> str:
    """``EXPLAIN (TYPE DISTRIBUTED, FORMAT JSON)``: fragment id to the fragment's plan."""
    return jackson.dumps({str(fragment_id): node_json(node) for fragment_id, node in fragments(root).items()})
