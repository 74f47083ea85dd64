"""The DuckDB database behind trinosim: Trino's ``tpch`` and ``memory`` catalogs.

``tpch.tiny`` holds the real TPC-H scale-factor-0.01 data (what Trino's tpch connector calls
``tiny``), generated once by ``tpchgen-cli`` and cached on disk, with Trino's column names and
types. The connector's other schemas (``sf1``, ``sf100``, ... ``sf100000``) exist too, as views of
``tiny``'s tables: they can be listed, described and planned (EXPLAIN estimates their rows from
TPC-H's row counts), and their ``nation`` and ``region``, the same at every scale factor, can be
read; their other tables cannot (statements.py refuses them). ``memory.default`` is writable, like
Trino's memory connector.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import duckdb

TPCH_TABLES = ("nation", "region", "part", "supplier", "partsupp", "customer", "orders", "lineitem")
# TPC-H's money columns are DECIMAL(15,2) in the generated files but DOUBLE in Trino's tpch connector.
_DOUBLE_COLUMNS = {"quantity", "extendedprice", "discount", "tax", "totalprice", "acctbal", "retailprice", "supplycost"}
# Every tpch column carries a one- or two-letter table prefix (n_, ps_, ...) that Trino drops.
_PREFIX = {
    "nation": "n_",
    "region": "r_",
    "part": "p_",
    "supplier": "s_",
    "partsupp": "ps_",
    "customer": "c_",
    "orders": "o_",
    "lineitem": "l_",
}
CATALOGS = ("memory", "system", "tpch")

# The schemas Trino's tpch connector lists, by scale factor.
TPCH_SCHEMAS = {
    "tiny": 0.01,
    "sf1": 1.0,
    "sf100": 100.0,
    "sf300": 300.0,
    "sf1000": 1000.0,
    "sf3000": 3000.0,
    "sf10000": 10000.0,
    "sf30000": 30000.0,
    "sf100000": 100000.0,
}
# TPC-H's rows at scale factor 1; every table but nation and region grows linearly with the scale
# factor (which is how Trino's tpch connector estimates them too).
TPCH_ROWS_AT_SF1 = {
    "nation": 25,
    "region": 5,
    "supplier": 10_000,
    "customer": 150_000,
    "part": 200_000,
    "partsupp": 800_000,
    "orders": 1_500_000,
    "lineitem": 6_001_215,
}
TPCH_FIXED_TABLES = frozenset({"nation", "region"})


def data_dir() -> Path:
    configured = os.environ.get("TRINOSIM_DATA_DIR")
    if configured:
        return Path(configured)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "trinosim"


def _tpchgen() -> str:
    beside_python = Path(sys.executable).parent / "tpchgen-cli"
    found = str(beside_python) if beside_python.exists() else shutil.which("tpchgen-cli")
    if not found:
        raise RuntimeError("tpchgen-cli is not installed; install trino-ha-gateway's dependencies")
    return found


def tpch_files(scale: float = 0.01) -> Path:
    """The directory of generated TPC-H parquet files for ``scale``, generating it once."""
    target = data_dir() / f"tpch-sf{scale}"
    if all((target / f"{t}.parquet").exists() for t in TPCH_TABLES):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # Several servers may start at once on a fresh machine: generate aside, then rename atomically.
    staging = Path(tempfile.mkdtemp(prefix="tpch-", dir=target.parent))
    try:
        subprocess.run(
            [_tpchgen(), "parquet", "-s", str(scale), f"--output-dir={staging}"],
            check=True,
            capture_output=True,
            timeout=300,
        )
        try:
            staging.rename(target)
        except OSError:
            if not target.exists():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def create_database() -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB laid out like a Trino cluster's catalogs."""
    # Nothing may be downloaded here: never let DuckDB try to fetch an extension.
    db = duckdb.connect(":memory:", config={"autoinstall_known_extensions": False})
    db.execute("SET TimeZone = 'UTC'")
    # DuckDB names the in-memory database "memory" already: that is Trino's memory catalog.
    db.execute('CREATE SCHEMA memory."default"')
    db.execute("ATTACH ':memory:' AS tpch")
    db.execute("CREATE SCHEMA tpch.tiny")
    files = tpch_files(0.01)
    for table in TPCH_TABLES:
        path = files / f"{table}.parquet"
        names = [r[0] for r in db.execute(f"DESCRIBE SELECT * FROM read_parquet('{path}')").fetchall()]
        projections = []
        for name in names:
            short = name.removeprefix(_PREFIX[table])
            expr = f'CAST("{name}" AS DOUBLE)' if short in _DOUBLE_COLUMNS else f'"{name}"'
            projections.append(f'{expr} AS "{short}"')
        db.execute(f"CREATE TABLE tpch.tiny.{table} AS SELECT {', '.join(projections)} FROM read_parquet('{path}')")
    for schema in TPCH_SCHEMAS:
        if schema != "tiny":
            db.execute(f"CREATE SCHEMA tpch.{schema}")
            for table in TPCH_TABLES:
                db.execute(f"CREATE VIEW tpch.{schema}.{table} AS SELECT * FROM tpch.tiny.{table}")
    # Trino's system catalog, as far as clients and the gateway's tests read it: the cluster's nodes
    # (io.trino.connector.system.NodeSystemTable's columns), this server the one coordinator.
    system = in_duckdb("system")
    db.execute(f"ATTACH ':memory:' AS {system}")
    db.execute(f"CREATE SCHEMA {system}.runtime")
    db.execute(
        f"CREATE TABLE {system}.runtime.nodes (node_id VARCHAR, http_uri VARCHAR, node_version VARCHAR, "
        "coordinator BOOLEAN, state VARCHAR)"
    )
    db.execute(f"INSERT INTO {system}.runtime.nodes VALUES ('trinosim', 'http://127.0.0.1', '446', true, 'active')")
    db.execute('USE memory."default"')
    return db


# Catalogs whose name DuckDB keeps for itself, and the database that holds each.
_DUCKDB_NAMES = {"system": "trino_system"}


def in_duckdb(catalog: str) -> str:
    """The DuckDB database that holds Trino catalog ``catalog``."""
    return _DUCKDB_NAMES.get(catalog, catalog)


def schema_exists(db: duckdb.DuckDBPyConnection, catalog: str, schema: str) -> bool:
    row = db.execute(
        "SELECT count(*) FROM duckdb_schemas() WHERE database_name = ? AND schema_name = ?",
        [in_duckdb(catalog), schema],
    ).fetchone()
    return bool(row and row[0])


def table_exists(db: duckdb.DuckDBPyConnection, catalog: str, schema: str, table: str) -> bool:
    row = db.execute(
        "SELECT count(*) FROM (SELECT database_name, schema_name, table_name FROM duckdb_tables() "
        "UNION ALL SELECT database_name, schema_name, view_name FROM duckdb_views() WHERE NOT internal) "
        "WHERE database_name = ? AND schema_name = ? AND table_name = ?",
        [in_duckdb(catalog), schema, table],
    ).fetchone()
    return bool(row and row[0])


def tpch_rows(table: str, scale: float) -> float:
    """TPC-H's rows of ``table`` at scale factor ``scale``."""
    rows = TPCH_ROWS_AT_SF1[table]
    return float(rows if table in TPCH_FIXED_TABLES else rows * scale)


def is_scaled_tpch(catalog: str, schema: str, table: str) -> bool:
    """Whether ``catalog.schema.table`` is a TPC-H table whose rows trinosim does not hold (only
    planned): one of the growing tables at a scale factor other than ``tiny``."""
    return catalog == "tpch" and schema in TPCH_SCHEMAS and schema != "tiny" and table not in TPCH_FIXED_TABLES
