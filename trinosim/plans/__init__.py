"""Trino-shaped plans for EXPLAIN: ``(FORMAT JSON)`` of the logical and the distributed plan, and
``(TYPE IO)``, built from DuckDB's own plan and estimates.

The layers, each a module: ``duckdb_plan`` reads DuckDB's physical plan; ``tables`` knows the
scanned tables (columns, rows, TPC-H scale); ``translate`` turns DuckDB's operators into Trino's
nodes with symbols and rows; ``distribute`` adds exchanges and partial steps and cuts fragments;
``costs`` is the size and cost model; ``render`` and ``io_plan`` write Trino's JSON shapes with
``jackson``, the writer that lays them out as Trino does. ``explain`` ties them together.
"""

from trinosim.plans.explain import Cluster, ExplainOptions, explain, parse_options

__all__ = ["Cluster", "ExplainOptions", "explain", "parse_options"]
