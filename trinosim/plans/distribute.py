"""Where rows move between nodes: exchanges, the steps of distributed operators, and fragments.

``distribute`` adds what Trino's AddExchanges and AddLocalExchanges add, by simpler rules:

- a table scan runs where the data is (distributed); VALUES on one node;
- an aggregation over distributed rows: a PARTIAL step where the rows are, a RemoteExchange
  REPARTITION on the grouping keys (GATHER without keys), a LocalExchange HASH (SINGLE), the FINAL
  step; over rows already partitioned on its keys, or on one node, one step;
- a join whose build (right) side is at most 100 MB by estimate (Trino's
  ``join_max_broadcast_table_size``), and not RIGHT or FULL, is REPLICATED: the build side goes
  through a RemoteExchange REPLICATE and a LocalExchange HASH, the probe side stays; otherwise it is
  PARTITIONED: both sides REPARTITION on the join keys. The session's ``join_distribution_type``
  BROADCAST or PARTITIONED overrides the size rule. A join without equality criteria (a CrossJoin)
  is always REPLICATED;
- ORDER BY: a PartialSort where the rows are, a LocalMerge, a RemoteMerge to one node;
- TopN and Limit: a partial step where the rows are, a RemoteExchange GATHER, the final step;
- a window: a RemoteExchange REPARTITION on its partitioning (GATHER without) and a LocalExchange HASH;
- UNION ALL: a RemoteExchange GATHER of all its inputs;
- a write: the TableWriter where the rows are, a RemoteExchange GATHER, the TableCommit;
- the Output runs on one node: a RemoteExchange GATHER under it when its input is distributed.

``fragments`` then cuts the plan at each remote exchange, as Trino's fragmenter does: the exchange
becomes a RemoteSource (a RemoteMerge for a merge) naming the fragments its inputs went to.
Fragment 0 holds the Output; the others are numbered as Trino numbers them, each exchange's
inputs left to right, depth first.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

from trinosim.plans.nodes import Kind, NodeIds, PlanNode, Symbol

BROADCAST_LIMIT_BYTES = 100 * 1024 * 1024


@dataclass(frozen=True)
class Distribution:
    """Where a node's rows are: on one node, or spread over the workers (``keys``: hash-partitioned
    on those symbols; empty: however the splits fell)."""

    single: bool
    keys: frozenset[int] = frozenset()

    def partitioned_on(self, symbols: list[Symbol]) -> bool:
        return not self.single and bool(self.keys) and self.keys == frozenset(id(s) for s in symbols)


SINGLE = Distribution(single=True)
SPREAD = Distribution(single=False)


def _hashed(symbols: list[Symbol]) -> Distribution:
    return Distribution(single=False, keys=frozenset(id(s) for s in symbols))


def _names(symbols: list[Symbol]) -> str:
    return "[" + ", ".join(s.name for s in symbols) + "]"


class Distributor:
    def __init__(self, ids: NodeIds, join_distribution: str = "AUTOMATIC") -> None:
        self.ids = ids
        # The session's join_distribution_type: AUTOMATIC (by the build side's size), BROADCAST or PARTITIONED.
        self.join_distribution = join_distribution.upper()

    # -- new nodes ---------------------------------------------------------------------------
    def remote(self, exchange_type: str, sources: list[PlanNode], keys: list[Symbol] | None = None) -> PlanNode:
        return PlanNode(
            self.ids.new(),
            "RemoteExchange",
            Kind.REMOTE_EXCHANGE,
            {
                "partitionCount": "",
                "scaleWriters": "",
                "type": exchange_type,
                "isReplicateNullsAndAny": "",
                "hashColumn": "[]",
            },
            list(sources[0].outputs),
            children=sources,
            rows=[sum((s.output_rows for s in sources), 0.0)],
            keys=list(keys or []),
            exchange_type=exchange_type,
        )

    def local(self, partitioning: str, source: PlanNode, keys: list[Symbol] | None = None) -> PlanNode:
        return PlanNode(
            self.ids.new(),
            "LocalExchange",
            Kind.LOCAL_EXCHANGE,
            {
                "partitioning": partitioning,
                "isReplicateNullsAndAny": "",
                "hashColumn": "[]",
                "arguments": _names(keys or []),
            },
            list(source.outputs),
            children=[source],
            rows=[source.output_rows],
            keys=list(keys or []),
            exchange_type=partitioning,
        )

    def merge(self, scope: str, source: PlanNode, order_by: str) -> PlanNode:
        return PlanNode(
            self.ids.new(),
            f"{scope.capitalize()}Merge",
            Kind.REMOTE_EXCHANGE if scope == "remote" else Kind.LOCAL_EXCHANGE,
            {"orderBy": order_by},
            list(source.outputs),
            children=[source],
            rows=[source.output_rows],
            order_by=order_by,
            exchange_type="GATHER" if scope == "remote" else "SINGLE",
        )

    def partial(self, node: PlanNode, name: str, source: PlanNode, rows: float) -> PlanNode:
        step = copy.copy(node)
        step.id = self.ids.new()
        step.name = name
        step.descriptor = dict(node.descriptor)
        step.children = [source]
        step.rows = [rows]
        step.step = "PARTIAL"
        return step

    # -- the walk ----------------------------------------------------------------------------
    def plan(self, node: PlanNode) -> Distribution:
        """Add exchanges below ``node`` (in place) and say where its rows are."""
        kind = node.kind
        if kind is Kind.SCAN:
            return SPREAD
        if kind is Kind.VALUES:
            return SINGLE
        if kind is Kind.AGGREGATE:
            return self._aggregate(node)
        if kind is Kind.JOIN:
            return self._join(node)
        if kind is Kind.SORT:
            return self._sort(node)
        if kind in (Kind.TOPN, Kind.LIMIT):
            return self._top(node)
        if kind is Kind.WINDOW:
            return self._window(node)
        if kind is Kind.UNION:
            return self._union(node)
        if kind is Kind.COMMIT:
            return self._commit(node)
        if kind is Kind.OUTPUT:
            (child,) = node.children
            if not self.plan(child).single:
                node.children = [self.remote("GATHER", [child])]
            return SINGLE
        below = [self.plan(child) for child in node.children]
        return below[0] if below else SINGLE

    def _aggregate(self, node: PlanNode) -> Distribution:
        (child,) = node.children
        where = self.plan(child)
        keys = node.keys
        if where.single or where.partitioned_on(keys):
            _describe_aggregate(node, "")
            return where
        partial = self.partial(node, "Aggregate", child, child.output_rows)
        partial.outputs = keys + node.partial_outputs
        partial.details = list(node.partial_details)
        _describe_aggregate(partial, "PARTIAL")
        if keys:
            exchange = self.remote("REPARTITION", [partial], keys)
            node.children = [self.local("HASH", exchange, keys)]
            result = _hashed(keys)
        else:
            exchange = self.remote("GATHER", [partial])
            node.children = [self.local("SINGLE", exchange)]
            result = SINGLE
        node.step = "FINAL"
        node.details = list(node.final_details)
        _describe_aggregate(node, "FINAL")
        return result

    def _join(self, node: PlanNode) -> Distribution:
        probe, build = node.children[0], node.children[1]
        probe_at, build_at = self.plan(probe), self.plan(build)
        if probe_at.single and build_at.single:
            return SINGLE
        small = build.output_bytes() <= BROADCAST_LIMIT_BYTES
        if self.join_distribution == "BROADCAST":
            small = True
        elif self.join_distribution == "PARTITIONED":
            small = False
        replicated = node.join_type == "CROSS" or not node.keys or (node.join_type not in ("RIGHT", "FULL") and small)
        if probe_at.single:  # a distributed build side joined on one node: gather it there
            node.children = [probe, self.local("HASH", self.remote("GATHER", [build]), node.build_keys)]
            _describe_join(node, "")
            return SINGLE
        if replicated:
            node.children = [probe, self.local("HASH", self.remote("REPLICATE", [build]), node.build_keys)]
            _describe_join(node, "REPLICATED")
            return probe_at
        if not probe_at.partitioned_on(node.keys):
            probe = self.remote("REPARTITION", [probe], node.keys)
        if not build_at.partitioned_on(node.build_keys):
            build = self.remote("REPARTITION", [build], node.build_keys)
        node.children = [probe, self.local("HASH", build, node.build_keys)]
        _describe_join(node, "PARTITIONED")
        return _hashed(node.keys)

    def _sort(self, node: PlanNode) -> Distribution:
        (child,) = node.children
        if self.plan(child).single:
            return SINGLE
        partial = self.partial(node, "PartialSort", child, child.output_rows)
        local = self.merge("local", partial, node.order_by)
        remote = self.merge("remote", local, node.order_by)
        # The merge replaces the sort: the node becomes the RemoteMerge over the partial sorts.
        _become(node, remote)
        return SINGLE

    def _top(self, node: PlanNode) -> Distribution:
        (child,) = node.children
        if self.plan(child).single:
            return SINGLE
        count = float(node.count or 0)
        rows = count if math.isnan(child.output_rows) else min(count, child.output_rows)
        partial = self.partial(node, f"{node.name}Partial", child, rows)
        node.children = [self.remote("GATHER", [partial])]
        node.step = "FINAL"
        return SINGLE

    def _window(self, node: PlanNode) -> Distribution:
        (child,) = node.children
        where = self.plan(child)
        if where.single or where.partitioned_on(node.keys):
            return where
        if node.keys:
            node.children = [self.local("HASH", self.remote("REPARTITION", [child], node.keys), node.keys)]
            return _hashed(node.keys)
        node.children = [self.local("SINGLE", self.remote("GATHER", [child]))]
        return SINGLE

    def _union(self, node: PlanNode) -> Distribution:
        where = [self.plan(child) for child in node.children]
        if all(w.single for w in where):
            return SINGLE
        exchange = self.remote("GATHER", node.children)
        exchange.outputs = list(node.outputs)
        _become(node, exchange)
        return SINGLE

    def _commit(self, node: PlanNode) -> Distribution:
        (writer,) = node.children
        if not self.plan(writer).single:
            node.children = [self.local("SINGLE", self.remote("GATHER", [writer]))]
        return SINGLE


def _become(node: PlanNode, replacement: PlanNode) -> None:
    """Make ``node`` (which its parent holds) into ``replacement``, keeping the node's id."""
    node_id = node.id
    node.__dict__.update(replacement.__dict__)
    node.id = node_id


def _describe_aggregate(node: PlanNode, step: str) -> None:
    node.step = step
    node.descriptor = {"type": step, "keys": _names(node.keys) if node.keys else "", "hash": "[]"}


def _describe_join(node: PlanNode, distribution: str) -> None:
    node.distribution = distribution
    if distribution:
        if node.name not in ("CrossJoin", "SemiJoin"):
            node.descriptor["distribution"] = distribution
        node.details = [f"Distribution: {distribution}", *node.details]


def distribute(root: PlanNode, ids: NodeIds, join_distribution: str = "AUTOMATIC") -> None:
    """Add the exchanges and distributed steps under ``root`` (the Output), in place."""
    Distributor(ids, join_distribution).plan(root)


def fragments(root: PlanNode) -> dict[int, PlanNode]:
    """The plan cut at its remote exchanges: fragment id to the fragment's root node (copies; the
    plan itself is left as it is)."""
    found: dict[int, PlanNode] = {}
    next_id = [1]

    def cut(node: PlanNode) -> PlanNode:
        if node.kind is Kind.REMOTE_EXCHANGE:
            ids = []
            for source in node.children:
                fragment_id = next_id[0]
                next_id[0] += 1
                ids.append(fragment_id)
                found[fragment_id] = cut(source)
            return PlanNode(
                node.id,
                "RemoteMerge" if node.order_by else "RemoteSource",
                Kind.REMOTE_SOURCE,
                {"sourceFragmentIds": "[" + ", ".join(str(i) for i in ids) + "]"},
                list(node.outputs),
                rows=[math.nan],
                costs=[],
            )
        piece = copy.copy(node)
        piece.children = [cut(child) for child in node.children]
        return piece

    found[0] = cut(root)
    return dict(sorted(found.items()))
