"""DuckDB's physical plan of a statement, read from ``EXPLAIN (FORMAT JSON)``, as a tree of operators.

Each operator has DuckDB's name (``SEQ_SCAN``, ``HASH_JOIN``, ...), its ``extra_info`` (the table,
projections, filters, join conditions, groups, ...) and DuckDB's own estimated cardinality. The
plan is taken with a few of DuckDB's rewrites turned off, those that would hide what Trino's plan
shows: statistics propagation (it answers ``count(*)`` of a table from statistics, with no scan),
compressed materialization (it wraps columns in internal compress/decompress projections) and late
materialization (it turns ``ORDER BY ... LIMIT`` into a self-join on row ids). The estimates are
DuckDB's either way.

DuckDB's ``disabled_optimizers`` is a database-wide setting: it is set for the one EXPLAIN and put
back right after, under a lock, so concurrent EXPLAINs plan alike. A query another session plans
in that instant skips those rewrites too; its results are the same.
"""

from __future__ import annotations

import json
import math
import threading
from dataclasses import dataclass, field
from typing import Any

import duckdb

_HIDING_REWRITES = ("statistics_propagation", "compressed_materialization", "late_materialization")
_known_rewrites: tuple[str, ...] | None = None
_settings_lock = threading.Lock()


@dataclass
class Operator:
    """One operator of DuckDB's physical plan."""

    name: str
    info: dict[str, Any]
    children: list[Operator] = field(default_factory=list)

    @property
    def cardinality(self) -> float:
        """DuckDB's estimated rows out of this operator; NaN where DuckDB gives none."""
        text = self.info.get("Estimated Cardinality")
        try:
            return float(text) if text not in (None, "") else math.nan
        except (TypeError, ValueError):
            return math.nan

    def items(self, key: str) -> list[str]:
        """An ``extra_info`` entry as a list: DuckDB writes one item as a string, several as a list."""
        value = self.info.get(key)
        if value is None or value == "":
            return []
        if isinstance(value, list):
            return [str(v) for v in value if str(v) != ""]
        return [str(value)]


def _operator(node: dict[str, Any]) -> Operator:
    return Operator(
        name=str(node.get("name", "")).strip(),
        info=dict(node.get("extra_info") or {}),
        children=[_operator(child) for child in node.get("children") or []],
    )


def _rewrites_to_disable(db: duckdb.DuckDBPyConnection, previous: str) -> str:
    """The setting that turns the hiding rewrites off too (those this DuckDB version knows: an
    unknown name is an error). Called under the lock."""
    global _known_rewrites
    if _known_rewrites is None:
        known = []
        for name in _HIDING_REWRITES:
            try:
                db.execute(f"SET disabled_optimizers = '{name}'")
                known.append(name)
            except duckdb.Error:
                pass
        _known_rewrites = tuple(known)
    names = [n for n in previous.split(",") if n.strip()] + [n for n in _known_rewrites if n not in previous]
    return ",".join(names)


def physical_plan(db: duckdb.DuckDBPyConnection, sql: str) -> Operator:
    """DuckDB's physical plan of ``sql`` (DuckDB SQL), planned on ``db`` without running it."""
    with _settings_lock:
        row = db.execute("SELECT current_setting('disabled_optimizers')").fetchone()
        previous = str(row[0] or "") if row else ""
        db.execute(f"SET disabled_optimizers = '{_rewrites_to_disable(db, previous)}'")
        try:
            rows = db.execute(f"EXPLAIN (FORMAT JSON) {sql}").fetchall()
        finally:
            db.execute(f"SET disabled_optimizers = '{previous}'")
    text = next((row[1] for row in rows if row[0] == "physical_plan"), rows[0][1] if rows else "[]")
    roots = [_operator(node) for node in json.loads(text)]
    if len(roots) == 1:
        return roots[0]
    return Operator(name="UNION", info={}, children=roots)
