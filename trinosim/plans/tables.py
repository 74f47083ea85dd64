"""What a plan knows of the tables it scans: columns with types and value sizes, rows, scale.

Rows are DuckDB's row count of the table it holds, except for TPC-H tables named at another scale
factor than ``tiny`` (``tpch.sf100.lineitem``): those are views of ``tiny``'s table, and their rows
are TPC-H's row counts at that scale factor (``catalog.tpch_rows``), so the plan of a query over
them is estimated at that scale, though only ``tiny``'s rows exist. ``scale`` is the ratio of the
two, which the translation applies to DuckDB's estimates above the scan too.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass

import duckdb

from trinosim import catalog
from trinosim.plans.costs import value_bytes
from trinosim.types import trino_type

_PART = re.compile(r'"((?:[^"]|"")*)"|([^.]+)')
# Average bytes of each varchar value of tpch.tiny's tables, measured once (the data never changes).
_tpch_lengths: dict[str, dict[str, float]] = {}
_tpch_lock = threading.Lock()


@dataclass(frozen=True)
class Column:
    type: str
    value_bytes: float


@dataclass(frozen=True)
class ScannedTable:
    catalog: str
    schema: str  # as the query named it: sf100 for tpch.sf100.lineitem, though DuckDB reads tiny's
    table: str
    columns: dict[str, Column]
    rows: float  # the rows the plan estimates the table has
    scale: float  # rows / the rows DuckDB holds

    @property
    def handle(self) -> str:
        """The table as Trino's plans name it (``tpch:tiny:nation``)."""
        return f"{self.catalog}:{self.schema}:{self.table}"


def split_name(text: str) -> list[str]:
    """``memory."default".t`` as ``["memory", "default", "t"]``."""
    return [(quoted.replace('""', '"') if quoted else bare) for quoted, bare in _PART.findall(text)]


class Tables:
    """Table facts for one plan. ``named`` maps a TPC-H table to the schema the statement named it
    in, when that is not ``tiny`` (DuckDB's plan names the ``tiny`` table the view reads)."""

    def __init__(self, db: duckdb.DuckDBPyConnection, named: dict[str, str]) -> None:
        self.db = db
        self.named = named
        self._seen: dict[tuple[str, str, str], ScannedTable] = {}

    def get(self, duckdb_name: str) -> ScannedTable:
        parts = split_name(duckdb_name)
        if len(parts) == 2:
            parts = ["memory", *parts]
        catalog_name, schema, table = parts[-3:]
        key = (catalog_name, schema, table)
        if key not in self._seen:
            self._seen[key] = self._load(catalog_name, schema, table)
        return self._seen[key]

    def column_types(self) -> dict[tuple[str, str, str], dict[str, str]]:
        """The column types of every table looked up so far, by (catalog, schema as named, table)."""
        return {
            (t.catalog, t.schema, t.table): {name: column.type for name, column in t.columns.items()}
            for t in self._seen.values()
        }

    def _load(self, catalog_name: str, schema: str, table: str) -> ScannedTable:
        description = self.db.execute(f'SELECT * FROM "{catalog_name}"."{schema}"."{table}" LIMIT 0').description or []
        lengths = _tpch_varchar_lengths(self.db, table) if catalog_name == "tpch" else {}
        columns = {}
        for name, duck_type, *_ in description:
            type_name = trino_type(duck_type).name
            columns[name] = Column(type_name, value_bytes(type_name, lengths.get(name)))
        held = self._rows_held(catalog_name, schema, table)
        named_schema = schema
        rows = held
        if catalog_name == "tpch" and table in catalog.TPCH_ROWS_AT_SF1:
            named_schema = self.named.get(table, schema)
            if named_schema != "tiny" and named_schema in catalog.TPCH_SCHEMAS:
                rows = catalog.tpch_rows(table, catalog.TPCH_SCHEMAS[named_schema])
        return ScannedTable(
            catalog=catalog_name,
            schema=named_schema,
            table=table,
            columns=columns,
            rows=rows,
            scale=rows / held if held else 1.0,
        )

    def _rows_held(self, catalog_name: str, schema: str, table: str) -> float:
        row = self.db.execute(
            "SELECT estimated_size FROM duckdb_tables() WHERE database_name = ? AND schema_name = ? AND table_name = ?",
            [catalog_name, schema, table],
        ).fetchone()
        return float(row[0]) if row and row[0] is not None else 0.0


def _tpch_varchar_lengths(db: duckdb.DuckDBPyConnection, table: str) -> dict[str, float]:
    with _tpch_lock:
        known = _tpch_lengths.get(table)
    if known is not None:
        return known
    names = [
        name
        for name, duck_type, *_ in db.execute(f"SELECT * FROM tpch.tiny.{table} LIMIT 0").description or []
        if trino_type(duck_type).name == "varchar"
    ]
    lengths: dict[str, float] = {}
    if names:
        averages = db.execute(
            "SELECT " + ", ".join(f'avg(strlen("{name}"))' for name in names) + f" FROM tpch.tiny.{table}"
        ).fetchone()
        lengths = {name: round(float(avg or 0.0), 2) for name, avg in zip(names, averages or (), strict=False)}
    with _tpch_lock:
        _tpch_lengths[table] = lengths
    return lengths
