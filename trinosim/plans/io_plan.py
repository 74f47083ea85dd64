"""``EXPLAIN (TYPE IO)``: the tables a statement reads and writes, with estimates, in Trino's shape.

``inputTableColumnInfos``: one entry per table read (identical entries once, as Trino's set), each
with ``table`` (``catalog``, ``schemaTable``: ``schema``, ``table``), ``constraint`` (``none`` and the
``columnConstraints`` of the filters pushed into the scan that compare a column with a constant:
``columnName``, ``type``, ``domain`` with ``nullsAllowed`` and ``ranges`` of ``low``/``high`` markers,
each a ``value`` and a ``bound`` EXACTLY, ABOVE or BELOW) and the scan's ``estimate``
(``outputRowCount``, ``outputSizeInBytes``, ``cpuCost``, ``maxMemory``, ``networkCost``);
``outputTable`` for a write; and the whole plan's ``estimate``, its costs summed (NaN once any
part is unknown, as for a partial aggregation's).
"""

from __future__ import annotations

import re
from typing import Any

from trinosim.plans import jackson
from trinosim.plans.costs import cumulative
from trinosim.plans.nodes import Cost, Kind, PlanNode
from trinosim.plans.translate import wrapped

_COMPARISON = re.compile(r"^\(?\s*\"?([A-Za-z_][\w$]*)\"?\s*(=|<>|!=|<=|>=|<|>)\s*(.+?)\s*\)?$", re.DOTALL)
_NOT_NULL = re.compile(r"^\(?\s*\"?([A-Za-z_][\w$]*)\"?\s+IS NOT NULL\s*\)?$", re.IGNORECASE)
_LITERAL = re.compile(r"^'((?:[^']|'')*)'(?:::[A-Z ]+)?$|^(-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)(?:::[A-Z ]+)?$")


def _estimate(rows: float, size: float, cost: Cost) -> dict[str, float]:
    return {
        "outputRowCount": float(rows),
        "outputSizeInBytes": float(size),
        "cpuCost": float(cost.cpu),
        "maxMemory": float(cost.memory),
        "networkCost": float(cost.network),
    }


def _conjuncts(text: str) -> list[str]:
    """``text`` split at its top-level ANDs."""
    text = text.strip()
    while wrapped(text):
        text = text[1:-1].strip()
    parts, depth, quote, start, position = [], 0, "", 0, 0
    upper = text.upper()
    while position < len(text):
        char = text[position]
        if quote:
            quote = "" if char == quote else quote
        elif char == "'":
            quote = char
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif depth == 0 and upper.startswith(" AND ", position):
            parts.append(text[start:position].strip())
            position += 5
            start = position
            continue
        position += 1
    parts.append(text[start:].strip())
    return [part for part in parts if part]


def _literal(text: str) -> str | None:
    match = _LITERAL.match(text.strip())
    if not match:
        return None
    return match.group(1).replace("''", "'") if match.group(1) is not None else match.group(2)


def _before(a: str, b: str) -> bool:
    try:
        return float(a) < float(b)
    except ValueError:
        return a < b


class _Range:
    """One column's range from the comparisons with constants: low and high markers."""

    def __init__(self) -> None:
        self.low: tuple[str, str] | None = None  # (value, EXACTLY | ABOVE)
        self.high: tuple[str, str] | None = None  # (value, EXACTLY | BELOW)

    def add(self, op: str, value: str) -> bool:
        if op in ("<>", "!="):
            return False
        if op in ("=", ">=", ">"):
            bound = "ABOVE" if op == ">" else "EXACTLY"
            if self.low is None or _before(self.low[0], value) or (self.low[0] == value and bound == "ABOVE"):
                self.low = (value, bound)
        if op in ("=", "<=", "<"):
            bound = "BELOW" if op == "<" else "EXACTLY"
            if self.high is None or _before(value, self.high[0]) or (self.high[0] == value and bound == "BELOW"):
                self.high = (value, bound)
        return True

    def to_json(self) -> dict[str, Any]:
        low = {"value": self.low[0], "bound": self.low[1]} if self.low else {"bound": "ABOVE"}
        high = {"value": self.high[0], "bound": self.high[1]} if self.high else {"bound": "BELOW"}
        return {"low": low, "high": high}


def _constraint(scan: PlanNode, column_types: dict[str, str]) -> dict[str, Any]:
    ranges: dict[str, _Range] = {}
    for predicate in scan.predicates:
        for conjunct in _conjuncts(predicate):
            not_null = _NOT_NULL.match(conjunct)
            if not_null and not_null.group(1) in column_types:
                ranges.setdefault(not_null.group(1), _Range())
                continue
            comparison = _COMPARISON.match(conjunct)
            if not comparison or comparison.group(1) not in column_types:
                continue
            value = _literal(comparison.group(3))
            if value is not None:
                ranges.setdefault(comparison.group(1), _Range()).add(comparison.group(2), value)
    constraints = [
        {
            "columnName": column,
            "type": column_types[column],
            "domain": {"nullsAllowed": False, "ranges": [found.to_json()]},
        }
        for column, found in ranges.items()
    ]
    return {"none": False, "columnConstraints": constraints}


def _table(catalog: str, schema: str, table: str) -> dict[str, Any]:
    return {"catalog": catalog, "schemaTable": {"schema": schema, "table": table}}


def io_plan(root: PlanNode, column_types: dict[tuple[str, str, str], dict[str, str]]) -> str:
    """The IO plan of the distributed plan under ``root`` (costs applied). ``column_types`` gives
    each scanned table's column types by (catalog, schema, table)."""
    inputs: list[dict[str, Any]] = []
    output: dict[str, Any] | None = None
    for node in root.walk():
        if node.kind is Kind.SCAN and node.table is not None:
            rows = node.rows[0]
            info = {
                "table": _table(*node.table),
                "constraint": _constraint(node, column_types.get(node.table, {})),
                "estimate": _estimate(rows, rows * node.row_bytes(), node.costs[0] if node.costs else Cost()),
            }
            if info not in inputs:
                inputs.append(info)
        elif node.kind is Kind.COMMIT and node.descriptor.get("target"):
            output = _table(*node.descriptor["target"].split(":", 2))
    plan: dict[str, Any] = {"inputTableColumnInfos": inputs}
    if output is not None:
        plan["outputTable"] = output
    plan["estimate"] = _estimate(root.output_rows, root.output_bytes(), cumulative(root))
    return jackson.dumps(plan)
