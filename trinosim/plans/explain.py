"""EXPLAIN's options, and the Trino-shaped plan of a statement: DuckDB's plan, translated,
distributed, costed and rendered."""

from __future__ import annotations

import re
from dataclasses import dataclass

import duckdb
from sqlglot import exp

from trinosim import catalog
from trinosim.errors import TrinoError
from trinosim.plans import costs, io_plan, render
from trinosim.plans.costs import value_bytes
from trinosim.plans.distribute import distribute
from trinosim.plans.duckdb_plan import physical_plan
from trinosim.plans.nodes import Kind, PlanNode, Symbol
from trinosim.plans.tables import Tables
from trinosim.plans.translate import Translator, WriteTarget, prune_join_outputs
from trinosim.types import trino_type

_TYPES = ("LOGICAL", "DISTRIBUTED", "VALIDATE", "IO")
_FORMATS = ("TEXT", "GRAPHVIZ", "JSON")
_OPTION = re.compile(r"^\s*(TYPE|FORMAT)\s+([A-Za-z]+)\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class ExplainOptions:
    """``EXPLAIN (TYPE ..., FORMAT ...)``; Trino's defaults: the distributed plan, as text."""

    type: str = "DISTRIBUTED"
    format: str = "TEXT"

    @property
    def trino_shaped(self) -> bool:
        """Whether the answer is one of Trino's JSON plans (the text formats show DuckDB's plan)."""
        return self.format == "JSON" or self.type == "IO"


def parse_options(text: str | None) -> ExplainOptions:
    """The options between EXPLAIN's parentheses; as Trino, the first of each kind counts."""
    if not text or not text.strip():
        return ExplainOptions()
    found: dict[str, str] = {}
    for part in text.split(","):
        match = _OPTION.match(part)
        if not match:
            raise TrinoError(
                "SYNTAX_ERROR", f"line 1:10: mismatched input '{part.strip()}'. Expecting: 'FORMAT', 'TYPE'"
            )
        key, value = match.group(1).upper(), match.group(2).upper()
        allowed = _TYPES if key == "TYPE" else _FORMATS
        if value not in allowed:
            expecting = ", ".join(f"'{a}'" for a in allowed)
            raise TrinoError("SYNTAX_ERROR", f"line 1:10: mismatched input '{match.group(2)}'. Expecting: {expecting}")
        found.setdefault(key, value)
    return ExplainOptions(type=found.get("TYPE", "DISTRIBUTED"), format=found.get("FORMAT", "TEXT"))


def _named_tpch_schemas(statement: exp.Expression) -> dict[str, str]:
    """TPC-H tables the statement names at a scale factor other than ``tiny``, with that schema
    (the largest scale factor, if it names one table at several)."""
    named: dict[str, str] = {}
    for table in statement.find_all(exp.Table):
        schema, name = table.args.get("db"), table.name
        if table.catalog == "tpch" and schema is not None and name in catalog.TPCH_ROWS_AT_SF1:
            schema_name = schema.name
            scale = catalog.TPCH_SCHEMAS.get(schema_name)
            if scale is None or schema_name == "tiny":
                continue
            if name not in named or scale > catalog.TPCH_SCHEMAS[named[name]]:
                named[name] = schema_name
    return named


def _write_target(statement: exp.Expression) -> WriteTarget | None:
    target = statement.this if isinstance(statement, exp.Insert | exp.Create | exp.Delete | exp.Update) else None
    if isinstance(target, exp.Schema):
        target = target.this
    if not isinstance(target, exp.Table):
        return None
    return WriteTarget(target.catalog, target.db, target.name)


def _aliases(statement: exp.Expression) -> dict[str, exp.Expression]:
    """The outermost select list's aliased items, alias to expression."""
    select = statement.find(exp.Select) if isinstance(statement, exp.Query | exp.Insert | exp.Create) else None
    if select is None:
        return {}
    return {item.alias: item.this for item in select.expressions if isinstance(item, exp.Alias)}


def _result_columns(db: duckdb.DuckDBPyConnection, statement: exp.Expression, sql: str) -> list[tuple[str, str]]:
    """The statement's result columns (name, Trino type), as running it would give them."""
    if not isinstance(statement, exp.Query):
        return [("rows", "bigint")]
    description = db.execute(f"SELECT * FROM ({sql}) AS explained LIMIT 0").description or []
    return [(name, trino_type(duck_type).name) for name, duck_type, *_ in description]


def _output(translator: Translator, root: PlanNode, columns: list[Symbol], result: list[tuple[str, str]]) -> PlanNode:
    """Trino's Output node over the plan: the result's column names over the plan's symbols."""
    if len(columns) != len(result):
        columns = _by_name(columns, [name for name, _ in result])
    if len(columns) == len(result):
        for symbol, (_, type_name) in zip(columns, result, strict=True):
            if symbol.type != type_name:
                symbol.type, symbol.value_bytes = type_name, value_bytes(type_name)
        symbols = columns
    else:
        symbols = [translator.symbol(name, type_name) for name, type_name in result]
        if not root.outputs:
            root.outputs = list(symbols)
    details = [
        f"{name} := {symbol.name}" for (name, _), symbol in zip(result, symbols, strict=True) if name != symbol.name
    ]
    return PlanNode(
        translator.ids.new(),
        "Output",
        Kind.OUTPUT,
        {"columnNames": "[" + ", ".join(name for name, _ in result) + "]"},
        symbols,
        details,
        children=[root],
        rows=[root.output_rows],
    )


def _by_name(columns: list[Symbol], names: list[str]) -> list[Symbol]:
    """The columns that are the result's, matched by name (DuckDB names a repeated one ``name_1``);
    as many as it finds."""
    picked: list[Symbol] = []
    for name in names:
        for candidate in (name, re.sub(r"_\d+$", "", name)):
            found = next((c for c in columns if c.source_name == candidate and c not in picked), None)
            if found is not None:
                picked.append(found)
                break
    return picked


@dataclass(frozen=True)
class Cluster:
    """What a plan is made for: the workers (a broadcast is sent to each) and the session's
    ``join_distribution_type``."""

    tasks: int = 1
    join_distribution: str = "AUTOMATIC"


def plan(
    db: duckdb.DuckDBPyConnection, statement: exp.Expression, duckdb_sql: str, cluster: Cluster
) -> tuple[PlanNode, Tables]:
    """The distributed, costed plan of ``statement`` (qualified, as the planner left it), planned
    by DuckDB as ``duckdb_sql``."""
    tables = Tables(db, _named_tpch_schemas(statement))
    translator = Translator(tables, _write_target(statement), _aliases(statement))
    try:
        translated = translator.translate(physical_plan(db, duckdb_sql))
        result = _result_columns(db, statement, duckdb_sql)
    except duckdb.Error as exc:
        from trinosim.errors import from_duckdb

        raise from_duckdb(exc) from None
    root = _output(translator, translated.node, translated.columns, result)
    prune_join_outputs(root)
    distribute(root, translator.ids, cluster.join_distribution)
    costs.apply(root, cluster.tasks)
    return root, tables


def explain(
    db: duckdb.DuckDBPyConnection,
    statement: exp.Expression,
    duckdb_sql: str,
    options: ExplainOptions,
    cluster: Cluster,
) -> str:
    """The text of the one ``Query Plan`` cell ``EXPLAIN (options)`` answers, in Trino's JSON shapes."""
    root, tables = plan(db, statement, duckdb_sql, cluster)
    if options.type == "IO":
        return io_plan.io_plan(root, tables.column_types())
    if options.type == "LOGICAL":
        return render.logical(root)
    return render.distributed(root)
