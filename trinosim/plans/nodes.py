"""The plan as Trino shows it: nodes with Trino's names, symbols, estimates and costs.

A node stands for one Trino plan node, or for several Trino prints as one (``ScanFilterProject`` is
a table scan, a filter and a projection; it carries one estimate for each, in that order, as Trino
does). ``kind`` is the node's role, which the distribution and the cost model act on; ``name`` and
``descriptor`` are what EXPLAIN prints.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field

NAN = math.nan


class Kind(enum.Enum):
    SCAN = "scan"  # TableScan, ScanFilter, ScanProject, ScanFilterProject
    VALUES = "values"
    FILTER_PROJECT = "filter_project"  # Filter, Project, FilterProject
    AGGREGATE = "aggregate"
    JOIN = "join"  # InnerJoin, LeftJoin, RightJoin, FullJoin, CrossJoin, SemiJoin
    SORT = "sort"
    TOPN = "topn"
    LIMIT = "limit"
    WINDOW = "window"
    UNION = "union"
    WRITER = "writer"  # TableWriter, MergeWriter
    COMMIT = "commit"  # TableCommit
    OUTPUT = "output"
    REMOTE_EXCHANGE = "remote_exchange"  # RemoteExchange, RemoteMerge
    LOCAL_EXCHANGE = "local_exchange"  # LocalExchange, LocalMerge
    REMOTE_SOURCE = "remote_source"  # RemoteSource, RemoteMerge (in a fragment)
    OTHER = "other"


@dataclass(eq=False)
class Symbol:
    """A column flowing between nodes: Trino's symbol name and type, and the bytes a value takes
    (the size model's, see costs.value_bytes)."""

    name: str
    type: str
    value_bytes: float
    # The name DuckDB's plan uses for it (a table column's name), to resolve DuckDB's expressions.
    source_name: str = ""


@dataclass
class Cost:
    """A node's own (local) cost, as Trino's cost model counts it: bytes of CPU work, bytes of
    memory held, bytes sent over the network. NaN is unknown."""

    cpu: float = NAN
    memory: float = NAN
    network: float = NAN

    @property
    def known(self) -> bool:
        return not (math.isnan(self.cpu) and math.isnan(self.memory) and math.isnan(self.network))


@dataclass(eq=False)
class PlanNode:
    id: int
    name: str
    kind: Kind
    descriptor: dict[str, str]
    outputs: list[Symbol]
    details: list[str] = field(default_factory=list)
    children: list[PlanNode] = field(default_factory=list)
    # Estimated rows out of each plan node this one stands for (the last is this node's output).
    rows: list[float] = field(default_factory=lambda: [NAN])
    # One cost per entry of ``rows``, filled by the cost model.
    costs: list[Cost] = field(default_factory=list)
    # What the distribution and the cost model need to know:
    keys: list[Symbol] = field(default_factory=list)  # grouping / partitioning / probe-side join keys
    build_keys: list[Symbol] = field(default_factory=list)  # build-side join keys
    step: str = ""  # an aggregation's, top-N's or limit's step: "", PARTIAL or FINAL
    count: int | None = None  # a limit's or top-N's row count
    order_by: str = ""  # "[name ASC NULLS LAST, ...]"
    exchange_type: str = ""  # GATHER, REPARTITION, REPLICATE (remote); SINGLE, HASH, ROUND_ROBIN (local)
    distribution: str = ""  # a join's: REPLICATED or PARTITIONED
    join_type: str = ""  # INNER, LEFT, RIGHT, FULL, CROSS, SEMI
    # A scan's filters as DuckDB pushed them into it, over the table's column names (for TYPE IO).
    predicates: list[str] = field(default_factory=list)
    # A scan's table: catalog, schema (as the statement named it) and name.
    table: tuple[str, str, str] | None = None
    # Filled when the aggregation is split into steps: the final step's details over the partial symbols.
    final_details: list[str] = field(default_factory=list)
    partial_outputs: list[Symbol] = field(default_factory=list)
    partial_details: list[str] = field(default_factory=list)

    @property
    def output_rows(self) -> float:
        return self.rows[-1]

    def row_bytes(self) -> float:
        return sum(symbol.value_bytes for symbol in self.outputs)

    def output_bytes(self) -> float:
        """Estimated bytes out of this node: its rows times its outputs' value sizes."""
        return self.output_rows * self.row_bytes()

    def walk(self) -> list[PlanNode]:
        """This node and every node below it, parents first."""
        found = [self]
        for child in self.children:
            found.extend(child.walk())
        return found


class SymbolAllocator:
    """Unique symbol names, as Trino's allocator makes them: the hint itself, then ``hint_N``."""

    def __init__(self) -> None:
        self._used: set[str] = set()
        self._next = 0

    def new(self, hint: str, type_name: str, value_bytes: float, source_name: str = "") -> Symbol:
        hint = hint or "expr"
        name = hint
        while name in self._used:
            name = f"{hint}_{self._next}"
            self._next += 1
        self._used.add(name)
        return Symbol(name=name, type=type_name, value_bytes=value_bytes, source_name=source_name or hint)


class NodeIds:
    """Plan node ids, in the order nodes are made (a table scan first, as in Trino's plans)."""

    def __init__(self) -> None:
        self._next = 0

    def new(self) -> int:
        value = self._next
        self._next += 1
        return value
