"""The size and cost model: bytes per value, and each node's CPU, memory and network cost.

Sizes follow Trino's: a fixed-width value takes its width (bigint 8, integer 4, date 4, double 8,
...), a variable-width one (varchar, arrays, ...) its average length (measured on ``tpch.tiny`` for
TPC-H's columns, else Trino's default of 50 bytes) plus a 4-byte offset; every value adds a 1-byte
null flag. A node's ``outputSizeInBytes`` is its rows times the sum over its output symbols.

Costs are each node's own (local) cost, as Trino's plans print them, in bytes, in the spirit of
Trino's ``CostCalculatorUsingExchanges`` (with ``in`` the bytes into a node, ``out`` the bytes out of
it, and ``tasks`` the worker count):

| node | cpu | memory | network |
| --- | --- | --- | --- |
| TableScan | out | 0 | 0 |
| Filter, Project (and each step of a ScanFilterProject after the scan) | in | 0 | 0 |
| Aggregate (single or FINAL) | in | out (the hash table) | 0 |
| Aggregate PARTIAL | unknown | unknown | unknown (as Trino: its input is not known when costed) |
| InnerJoin, LeftJoin, ..., SemiJoin, CrossJoin | probe + build x copies + out | build x copies | 0 |
| RemoteExchange GATHER | 0 | 0 | in |
| RemoteExchange REPARTITION | in | 0 | in |
| RemoteExchange REPLICATE | 0 | 0 | in x tasks |
| LocalExchange HASH / ROUND_ROBIN | in | 0 | 0 |
| Sort, PartialSort, Window | in | in | 0 |
| TopN, TopNPartial | in | out | 0 |
| Limit, LimitPartial | out | 0 | 0 |
| LocalMerge | in | 0 | 0 |
| RemoteMerge | 0 | 0 | in |
| TableWriter | in | 0 | 0 |
| Output, Values, Union, LocalExchange SINGLE, TableCommit | 0 | 0 | 0 |
| any other node | in | 0 | 0 |

where ``copies`` is ``tasks`` for a REPLICATED (broadcast) join and 1 for a PARTITIONED one. A
cost with an unknown input is unknown (NaN), as is everything about a node whose rows are unknown.
"""

from __future__ import annotations

import math
import re

from trinosim.plans.nodes import Cost, Kind, PlanNode

DEFAULT_VALUE_LENGTH = 50.0  # Trino's DEFAULT_DATA_SIZE_PER_COLUMN, for a variable-width value of unknown size
_NULL_FLAG = 1.0
_OFFSET = 4.0
_FIXED = {
    "boolean": 1,
    "tinyint": 1,
    "smallint": 2,
    "integer": 4,
    "bigint": 8,
    "real": 4,
    "double": 8,
    "date": 4,
    "uuid": 16,
    "interval day to second": 8,
    "interval year to month": 4,
    "unknown": 1,
    "ipaddress": 16,
}
_PRECISION = re.compile(r"^(timestamp|time)\((\d+)\)")
_DECIMAL = re.compile(r"^decimal\((\d+)")


def value_bytes(type_name: str, average_length: float | None = None) -> float:
    """Bytes one value of ``type_name`` takes in the size model, null flag included."""
    fixed = _FIXED.get(type_name)
    if fixed is None:
        precision = _PRECISION.match(type_name)
        decimal = _DECIMAL.match(type_name)
        if precision:
            fixed = 8 if int(precision.group(2)) <= (3 if "with time zone" in type_name else 6) else 12
        elif decimal:
            fixed = 8 if int(decimal.group(1)) <= 18 else 16
    if fixed is not None:
        return float(fixed) + _NULL_FLAG
    length = DEFAULT_VALUE_LENGTH if average_length is None else average_length
    return length + _OFFSET + _NULL_FLAG


def _input_bytes(node: PlanNode) -> float:
    return sum((child.output_bytes() for child in node.children), 0.0)


def _local_cost(node: PlanNode, tasks: int) -> Cost:
    """The cost of ``node`` itself (its last step, for a node that stands for several)."""
    kind, out, inp = node.kind, node.output_bytes(), _input_bytes(node)
    if kind in (Kind.OUTPUT, Kind.VALUES, Kind.UNION, Kind.COMMIT, Kind.REMOTE_SOURCE):
        return Cost(0.0, 0.0, 0.0)
    if kind is Kind.SCAN:
        return Cost(out, 0.0, 0.0)
    if kind in (Kind.FILTER_PROJECT, Kind.WRITER, Kind.OTHER):
        return Cost(inp, 0.0, 0.0)
    if kind is Kind.AGGREGATE:
        return Cost() if node.step == "PARTIAL" else Cost(inp, out, 0.0)
    if kind is Kind.JOIN:
        probe, build = (child.output_bytes() for child in node.children[:2])
        copies = tasks if node.distribution == "REPLICATED" else 1
        return Cost(probe + build * copies + out, build * copies, 0.0)
    if kind is Kind.REMOTE_EXCHANGE:
        if node.order_by:  # RemoteMerge
            return Cost(0.0, 0.0, inp)
        return {
            "GATHER": Cost(0.0, 0.0, inp),
            "REPARTITION": Cost(inp, 0.0, inp),
            "REPLICATE": Cost(0.0, 0.0, inp * tasks),
        }.get(node.exchange_type, Cost(0.0, 0.0, inp))
    if kind is Kind.LOCAL_EXCHANGE:  # a LocalMerge merges what it gathers; a SINGLE exchange only gathers
        return Cost(0.0 if node.exchange_type == "SINGLE" and not node.order_by else inp, 0.0, 0.0)
    if kind in (Kind.SORT, Kind.WINDOW):
        return Cost(inp, inp, 0.0)
    if kind is Kind.TOPN:
        return Cost(inp, out, 0.0)
    if kind is Kind.LIMIT:
        return Cost(out, 0.0, 0.0)
    return Cost(inp, 0.0, 0.0)


def _merged_costs(node: PlanNode) -> list[Cost]:
    """Costs of the steps of a node standing for several (scan, then filter, then projection)."""
    width = node.row_bytes()
    costs = []
    for position, rows in enumerate(node.rows):
        if position == 0 and node.kind is Kind.SCAN:
            costs.append(Cost(rows * width, 0.0, 0.0))
        elif position == 0:
            costs.append(Cost(_input_bytes(node), 0.0, 0.0))
        else:
            costs.append(Cost(node.rows[position - 1] * width, 0.0, 0.0))
    return costs


def apply(root: PlanNode, tasks: int) -> None:
    """Fill ``costs`` of every node under ``root`` (children first) for a cluster of ``tasks`` workers."""
    for child in root.children:
        apply(child, tasks)
    if len(root.rows) > 1:
        root.costs = _merged_costs(root)
    else:
        root.costs = [_local_cost(root, max(1, tasks))]
    for cost in root.costs:
        if math.isnan(root.output_rows):
            cost.cpu = cost.memory = cost.network = math.nan


def cumulative(root: PlanNode) -> Cost:
    """The cost of ``root`` and everything below it (NaN once any part is unknown), as Trino's
    ``PlanCostEstimate`` sums it; what ``EXPLAIN (TYPE IO)`` reports for the query."""
    total = Cost(0.0, 0.0, 0.0)
    for node in root.walk():
        for cost in node.costs:
            total.cpu += cost.cpu
            total.network += cost.network
            total.memory = max(total.memory, cost.memory) if not math.isnan(cost.memory) else math.nan
    return total
