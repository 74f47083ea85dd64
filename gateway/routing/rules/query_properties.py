"""What a statement does and touches, read from its SQL (sqlglot): ``trinoQueryProperties`` in rules.

Only a syntactic analysis, as in trino-gateway: views are not expanded. Unqualified names take the
session's catalog and schema (``X-Trino-Catalog`` / ``X-Trino-Schema``); ``EXECUTE name`` is
analysed as the prepared statement the client sends in ``X-Trino-Prepared-Statement``. Identifiers
are lower-cased, as Trino does.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from urllib.parse import unquote_plus

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

from gateway.routing.rules.values import Optional, RuleObject

log = logging.getLogger("gateway.routing.rules")
# sqlglot warns for every statement it keeps as text (SHOW, EXPLAIN, CALL, ...): expected here.
logging.getLogger("sqlglot").setLevel(logging.ERROR)

# Statement class names of Trino's parser, by sqlglot expression (checked in order: subclasses first).
_BY_EXPRESSION: tuple[tuple[type[exp.Expression], str], ...] = (
    (exp.Insert, "Insert"),
    (exp.Delete, "Delete"),
    (exp.Update, "Update"),
    (exp.Merge, "Merge"),
    (exp.TruncateTable, "TruncateTable"),
    (exp.Describe, "ShowColumns"),
    (exp.Use, "Use"),
    (exp.Set, "SetSession"),
    (exp.Analyze, "Analyze"),
    (exp.Grant, "Grant"),
    (exp.Transaction, "StartTransaction"),
    (exp.Commit, "Commit"),
    (exp.Rollback, "Rollback"),
    (exp.Query, "Query"),
    (exp.Values, "Query"),  # a bare VALUES list is a query in Trino's grammar
)
# Statements sqlglot keeps as text, by their leading keywords.
_BY_KEYWORDS: tuple[tuple[str, str], ...] = (
    ("SHOW CREATE", "ShowCreate"),
    ("SHOW TABLES", "ShowTables"),
    ("SHOW SCHEMAS", "ShowSchemas"),
    ("SHOW CATALOGS", "ShowCatalogs"),
    ("SHOW COLUMNS", "ShowColumns"),
    ("SHOW FUNCTIONS", "ShowFunctions"),
    ("SHOW SESSION", "ShowSession"),
    ("SHOW STATS", "ShowStats"),
    ("SHOW GRANTS", "ShowGrants"),
    ("SHOW ROLE GRANTS", "ShowRoleGrants"),
    ("SHOW CURRENT ROLES", "ShowRoles"),
    ("SHOW ROLES", "ShowRoles"),
    ("SHOW BRANCHES", "ShowBranches"),
    ("EXPLAIN ANALYZE", "ExplainAnalyze"),
    ("EXPLAIN", "Explain"),
    ("DESCRIBE INPUT", "DescribeInput"),
    ("DESCRIBE OUTPUT", "DescribeOutput"),
    ("RESET SESSION AUTHORIZATION", "ResetSessionAuthorization"),
    ("RESET SESSION", "ResetSession"),
    ("SET SESSION AUTHORIZATION", "SetSessionAuthorization"),
    ("SET ROLE", "SetRole"),
    ("SET TIME ZONE", "SetTimeZone"),
    ("SET PATH", "SetPath"),
    ("CALL", "Call"),
    ("PREPARE", "Prepare"),
    ("EXECUTE IMMEDIATE", "ExecuteImmediate"),
    ("EXECUTE", "Execute"),
    ("DEALLOCATE PREPARE", "Deallocate"),
    ("REFRESH MATERIALIZED VIEW", "RefreshMaterializedView"),
    ("REVOKE", "Revoke"),
    ("DENY", "Deny"),
    ("COMMENT", "Comment"),
    ("CREATE ROLE", "CreateRole"),
    ("DROP ROLE", "DropRole"),
    ("CREATE FUNCTION", "CreateFunction"),
    ("DROP FUNCTION", "DropFunction"),
    ("ALTER TABLE", "AlterTable"),
)
# Trino's resource-group query types (StatementUtils); anything else is DATA_DEFINITION.
_RESOURCE_GROUP_TYPES = {
    "Query": "SELECT",
    "Explain": "EXPLAIN",
    "ExplainAnalyze": "EXPLAIN",
    "Insert": "INSERT",
    "CreateTableAsSelect": "INSERT",
    "RefreshMaterializedView": "INSERT",
    "Update": "UPDATE",
    "Delete": "DELETE",
    "Merge": "MERGE",
    "Analyze": "ANALYZE",
    "DescribeInput": "DESCRIBE",
    "DescribeOutput": "DESCRIBE",
    "ShowCatalogs": "DESCRIBE",
    "ShowColumns": "DESCRIBE",
    "ShowCreate": "DESCRIBE",
    "ShowFunctions": "DESCRIBE",
    "ShowGrants": "DESCRIBE",
    "ShowRoleGrants": "DESCRIBE",
    "ShowRoles": "DESCRIBE",
    "ShowSchemas": "DESCRIBE",
    "ShowSession": "DESCRIBE",
    "ShowStats": "DESCRIBE",
    "ShowTables": "DESCRIBE",
    "ShowBranches": "DESCRIBE",
}
# Statements that wrap another one, whose tables count: EXPLAIN [ANALYZE] [(options)] stmt, PREPARE x FROM stmt.
_WRAPPED = re.compile(
    r"^\s*(?:EXPLAIN(?:\s+ANALYZE)?(?:\s+VERBOSE)?(?:\s*\([^)]*\))?|PREPARE\s+\S+\s+FROM)\s+(.*)$",
    re.IGNORECASE | re.DOTALL,
)
_EXECUTE = re.compile(r"^\s*EXECUTE\s+(?!IMMEDIATE\b)(\"[^\"]+\"|\w+)", re.IGNORECASE)
_EXECUTE_IMMEDIATE = re.compile(r"^\s*EXECUTE\s+IMMEDIATE\s+'((?:[^']|'')*)'", re.IGNORECASE | re.DOTALL)
_SHOW_FROM = re.compile(
    r"^\s*SHOW\s+(?:TABLES|SCHEMAS|COLUMNS|CREATE\s+\w+(?:\s+VIEW)?|STATS\s+FOR)\s+(?:FROM|IN)?\s*([\w.\"]+)", re.I
)


@dataclass
class Analysis:
    query_type: str = "Unknown"
    catalogs: set[str] = field(default_factory=set)
    schemas: set[str] = field(default_factory=set)
    catalog_schemas: set[str] = field(default_factory=set)
    tables: set[str] = field(default_factory=set)
    parsed: bool = False
    error: str | None = None


def prepared_statements(header_values: list[str]) -> dict[str, str]:
    """``X-Trino-Prepared-Statement: name=url-encoded-sql, ...`` as a mapping."""
    statements = {}
    for value in header_values:
        for item in value.split(","):
            name, sep, sql = item.strip().partition("=")
            if sep:
                statements[name.strip().lower()] = unquote_plus(sql)
    return statements


def _keywords_type(sql: str) -> str | None:
    words = " ".join(sql.split()[:4]).upper()
    for prefix, name in _BY_KEYWORDS:
        if words == prefix or words.startswith(prefix + " ") or words.startswith(prefix + "("):
            return name
    return None


def _expression_type(statement: exp.Expression) -> str:
    if isinstance(statement, exp.Create):
        kind = (statement.args.get("kind") or "").upper()
        if kind == "TABLE":
            return "CreateTableAsSelect" if statement.expression is not None else "CreateTable"
        if kind == "VIEW":
            materialized = any(isinstance(p, exp.MaterializedProperty) for p in statement.find_all(exp.Property))
            return "CreateMaterializedView" if materialized else "CreateView"
        return {"SCHEMA": "CreateSchema", "FUNCTION": "CreateFunction"}.get(kind, "Create" + kind.title())
    if isinstance(statement, exp.Drop):
        kind = (statement.args.get("kind") or "").upper()
        return {"TABLE": "DropTable", "VIEW": "DropView", "SCHEMA": "DropSchema"}.get(kind, "Drop" + kind.title())
    if isinstance(statement, exp.Alter):
        actions = statement.args.get("actions") or []
        if any(isinstance(a, exp.AlterRename) for a in actions):
            return "RenameTable"
        if any(isinstance(a, exp.ColumnDef) for a in actions):
            return "AddColumn"
        return "AlterTable"
    for expression_type, name in _BY_EXPRESSION:
        if isinstance(statement, expression_type):
            return name
    return "Unknown"


class _Collector:
    def __init__(self, default_catalog: str | None, default_schema: str | None, analysis: Analysis) -> None:
        self.default_catalog = default_catalog
        self.default_schema = default_schema
        self.analysis = analysis

    def add(self, catalog: str | None, schema: str | None, table: str | None, defaults: bool = True) -> None:
        catalog = (catalog or (self.default_catalog if defaults else None) or "").lower() or None
        schema = (schema or (self.default_schema if defaults else None) or "").lower() or None
        if catalog:
            self.analysis.catalogs.add(catalog)
        if schema:
            self.analysis.schemas.add(schema)
        if catalog and schema:
            self.analysis.catalog_schemas.add(f"{catalog}.{schema}")
            if table:
                self.analysis.tables.add(f"{catalog}.{schema}.{table.lower()}")

    def statement(self, statement: exp.Expression) -> None:
        if isinstance(statement, exp.Use):
            return  # USE names a schema to switch to, not one the statement reads
        ctes = {cte.alias_or_name.lower() for cte in statement.find_all(exp.CTE)}
        for table in statement.find_all(exp.Table):
            name = table.name
            if not table.db and not table.catalog and name.lower() in ctes:
                continue
            if isinstance(table.this, exp.Func) or not (name or table.db):
                continue
            if isinstance(statement, exp.Create | exp.Drop) and (statement.args.get("kind") or "").upper() == "SCHEMA":
                # CREATE/DROP SCHEMA [catalog.]schema: sqlglot reads it as a table without a name.
                self.add(table.catalog or None, table.db or None, None)
                continue
            self.add(table.catalog or None, table.db or None, name)


def analyse(
    sql: str,
    default_catalog: str | None = None,
    default_schema: str | None = None,
    prepared: dict[str, str] | None = None,
) -> Analysis:
    """Analyse one statement; an unparseable statement gives ``parsed=False`` and the reason."""
    analysis = Analysis()
    collector = _Collector(default_catalog, default_schema, analysis)
    text = sql.strip().rstrip(";").strip()
    execute = _EXECUTE.match(text)
    if execute is not None and prepared is not None:
        name = execute.group(1).strip('"').lower()
        if name in prepared:
            inner = analyse(prepared[name], default_catalog, default_schema, None)
            return inner
    immediate = _EXECUTE_IMMEDIATE.match(text)
    if immediate is not None:
        inner = analyse(immediate.group(1).replace("''", "'"), default_catalog, default_schema, None)
        inner.query_type = "ExecuteImmediate"
        return inner
    keyword_type = _keywords_type(text)
    wrapped = _WRAPPED.match(text)
    if wrapped is not None:
        inner = analyse(wrapped.group(1), default_catalog, default_schema, None)
        inner.query_type = keyword_type or inner.query_type
        return inner
    try:
        statements = sqlglot.parse(text, dialect="trino", error_level=sqlglot.ErrorLevel.RAISE)
    except SqlglotError as error:
        analysis.error = str(error).splitlines()[0] if str(error) else type(error).__name__
        analysis.query_type = keyword_type or "Unknown"
        return analysis
    statements = [s for s in statements if s is not None]
    if len(statements) != 1:
        analysis.error = "not exactly one statement"
        return analysis
    statement = statements[0]
    if isinstance(statement, exp.Command):
        analysis.query_type = keyword_type or str(statement.this).title().replace(" ", "")
        show = _SHOW_FROM.match(text)
        if show is not None:
            parts = [p.strip('"') for p in show.group(1).split(".")]
            if analysis.query_type == "ShowSchemas":
                collector.add(parts[-1], None, None, defaults=False)
            elif analysis.query_type == "ShowTables":
                collector.add(*([None] * (2 - len(parts[-2:])) + parts[-2:]), None)
            elif len(parts) <= 3:
                collector.add(*([None] * (3 - len(parts)) + parts))
    else:
        analysis.query_type = _expression_type(statement)
        if analysis.query_type == "Unknown":
            analysis.error = f"not a statement: {text[:80]!r}"
            return analysis
        collector.statement(statement)
    analysis.parsed = True
    return analysis


class TrinoQueryProperties(RuleObject):
    """``trinoQueryProperties`` in a rule; the SQL is analysed the first time a rule asks."""

    java_name = "TrinoQueryProperties"
    rule_methods = frozenset(
        {
            "isNewQuerySubmission",
            "isQueryParsingSuccessful",
            "getQueryType",
            "getResourceGroupQueryType",
            "getDefaultCatalog",
            "getDefaultSchema",
            "getCatalogs",
            "getSchemas",
            "getCatalogSchemas",
            "getTables",
            "tablesContains",
            "getBody",
            "getErrorMessage",
        }
    )

    def __init__(
        self,
        body: str,
        default_catalog: str | None,
        default_schema: str | None,
        prepared: dict[str, str] | None = None,
        new_query: bool = True,
        max_body_size: int = 1_000_000,
    ) -> None:
        self.body = body
        self.default_catalog = default_catalog or None
        self.default_schema = default_schema or None
        self.prepared = prepared or {}
        self.new_query = new_query
        self.max_body_size = max_body_size
        self._analysis: Analysis | None = None

    @property
    def analysis(self) -> Analysis:
        if self._analysis is None:
            if not self.new_query:
                self._analysis = Analysis(error="not a new query submission")
            elif len(self.body) >= self.max_body_size:
                self._analysis = Analysis(error=f"statement longer than {self.max_body_size} characters: not analysed")
            else:
                self._analysis = analyse(self.body, self.default_catalog, self.default_schema, self.prepared)
            if self._analysis.error:
                log.debug("query not analysed for routing rules: %s", self._analysis.error)
        return self._analysis

    def as_json(self) -> dict[str, object]:
        analysis = self.analysis
        return {
            "body": self.body,
            "queryType": analysis.query_type,
            "resourceGroupQueryType": self.getResourceGroupQueryType(),
            "defaultCatalog": self.default_catalog,
            "defaultSchema": self.default_schema,
            "catalogs": sorted(analysis.catalogs),
            "schemas": sorted(analysis.schemas),
            "catalogSchemas": sorted(analysis.catalog_schemas),
            "tables": sorted(analysis.tables),
            "isNewQuerySubmission": self.new_query,
            "isQueryParsingSuccessful": analysis.parsed,
            "errorMessage": analysis.error,
        }

    # -- the rule methods -----------------------------------------------------------------------
    def isNewQuerySubmission(self) -> bool:
        return self.new_query

    def isQueryParsingSuccessful(self) -> bool:
        return self.analysis.parsed

    def getQueryType(self) -> str:
        return self.analysis.query_type

    def getResourceGroupQueryType(self) -> str:
        query_type = self.analysis.query_type
        if query_type == "Unknown":
            return "UNKNOWN"
        return _RESOURCE_GROUP_TYPES.get(query_type, "DATA_DEFINITION")

    def getDefaultCatalog(self) -> Optional:
        return Optional(self.default_catalog)

    def getDefaultSchema(self) -> Optional:
        return Optional(self.default_schema)

    def getCatalogs(self) -> frozenset[str]:
        return frozenset(self.analysis.catalogs)

    def getSchemas(self) -> frozenset[str]:
        return frozenset(self.analysis.schemas)

    def getCatalogSchemas(self) -> frozenset[str]:
        return frozenset(self.analysis.catalog_schemas)

    def getTables(self) -> frozenset[str]:
        return frozenset(self.analysis.tables)

    def tablesContains(self, name: str) -> bool:
        return normalise_table_name(name) in self.analysis.tables

    def getBody(self) -> str:
        return self.body

    def getErrorMessage(self) -> Optional:
        return Optional(self.analysis.error)


def normalise_table_name(name: str) -> str:
    """``Cat."Schema".tbl`` → ``cat.schema.tbl``: how a rule names a table, as analysis stores it."""
    try:
        table = exp.to_table(name, dialect="trino")
    except SqlglotError:
        return name.lower()
    return ".".join(part.lower() for part in (table.catalog, table.db, table.name) if part)
