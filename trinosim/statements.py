"""Turning one Trino SQL statement into a plan that trinosim can run on DuckDB.

Session and metadata statements (USE, SET SESSION, PREPARE, SHOW ..., ...) are answered by the
server itself, as Trino's coordinator answers them; everything else is parsed as Trino SQL with
sqlglot, checked against the catalogs (for Trino's error messages), and written out as DuckDB SQL.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, quote_plus

import duckdb
import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, SqlglotError

from trinosim import catalog, plans
from trinosim.errors import TrinoError
from trinosim.session import SESSION_PROPERTIES, Session
from trinosim.transactions import TransactionManager

# sqlglot warns on every statement it keeps as a plain Command; those are handled here.
logging.getLogger("sqlglot").setLevel(logging.ERROR)

_IDENT = r'(?:"(?:[^"]|"")+"|[A-Za-z_][\w$@]*)'
_NAME = rf"{_IDENT}(?:\s*\.\s*{_IDENT})*"


@dataclass
class Plan:
    """What to do for a statement: DuckDB SQL to run, or a result the server makes itself."""

    duckdb_sql: str | None = None
    update_type: str | None = None
    # True when DuckDB's single count row is the statement's updateCount (INSERT, CTAS, ...).
    counts_rows: bool = False
    # A server-made result: column (name, type) pairs and rows; None when DuckDB produces it.
    static_columns: list[tuple[str, str]] | None = None
    static_rows: list[list[Any]] = field(default_factory=list)
    headers: list[tuple[str, str]] = field(default_factory=list)
    # Set for ``CALL system.runtime.kill_query``: the query id to kill.
    kill_query_id: str | None = None
    kill_message: str | None = None
    # Set when the statement needs a DuckDB result's shape only (DESCRIBE OUTPUT).
    describe_sql: str | None = None


def identifier(text: str) -> str:
    """A Trino identifier's canonical name: unquoted ones are case-insensitive."""
    text = text.strip()
    if text.startswith('"'):
        return text[1:-1].replace('""', '"')
    return text.lower()


def _split_name(text: str) -> list[str]:
    return [identifier(m.group(0)) for m in re.finditer(_IDENT, text)]


def _syntax_error(sql: str, error: ParseError) -> TrinoError:
    details = error.errors[0] if error.errors else {}
    line, col = details.get("line", 1), details.get("col", 1)
    highlight = details.get("highlight") or ""
    col = max(1, col - len(highlight) + 1)
    near = f" at or near '{highlight}'" if highlight else ""
    description = details.get("description", "syntax error")
    return TrinoError("SYNTAX_ERROR", f"line {line}:{col}: {description}{near}")


def parse_trino(sql: str) -> exp.Expression:
    try:
        statements = [s for s in sqlglot.parse(sql, read="trino") if s is not None]
    except ParseError as error:
        raise _syntax_error(sql, error) from None
    except SqlglotError as error:
        raise TrinoError("SYNTAX_ERROR", f"line 1:1: {error}") from None
    if len(statements) != 1:
        raise TrinoError("SYNTAX_ERROR", "line 1:1: exactly one statement is expected")
    return statements[0]


class Planner:
    """Plans statements against one DuckDB database for one session."""

    def __init__(
        self,
        db: duckdb.DuckDBPyConnection,
        session: Session,
        transactions: TransactionManager | None = None,
        tasks: int = 1,
    ) -> None:
        self.db = db
        self.session = session
        self.transactions = transactions or TransactionManager(idle_timeout=300.0)
        # The workers a distributed plan is costed for (a broadcast is sent to each).
        self.tasks = max(1, tasks)

    # -- entry point -------------------------------------------------------------------------
    def plan(self, sql: str, nested: bool = False) -> Plan:
        text = _strip_comments(sql).strip().rstrip(";").strip()
        if not text:
            raise TrinoError("SYNTAX_ERROR", "line 1:1: mismatched input '<EOF>'. Expecting: statement")
        for pattern, handler in self._handlers():
            match = pattern.match(text)
            if match:
                if nested and handler in (self._execute, self._execute_immediate, self._prepare):
                    raise TrinoError("NOT_SUPPORTED", "Invalid statement type for prepared statement")
                return handler(match, text)
        return self._sql(parse_trino(text))

    def _handlers(self) -> list[tuple[re.Pattern[str], Any]]:
        flags = re.IGNORECASE | re.DOTALL
        return [
            (re.compile(rf"^USE\s+({_NAME})$", flags), self._use),
            (re.compile(r"^SET\s+SESSION\s+AUTHORIZATION\s+(.+)$", flags), self._set_authorization),
            (re.compile(r"^RESET\s+SESSION\s+AUTHORIZATION$", flags), self._reset_authorization),
            (re.compile(rf"^SET\s+SESSION\s+({_NAME})\s*=\s*(.+)$", flags), self._set_session),
            (re.compile(rf"^RESET\s+SESSION\s+({_NAME})$", flags), self._reset_session),
            (re.compile(r"^SHOW\s+SESSION(?:\s+LIKE\s+'(.*)')?$", flags), self._show_session),
            (re.compile(rf"^SET\s+ROLE\s+({_IDENT})(?:\s+IN\s+({_IDENT}))?$", flags), self._set_role),
            (re.compile(rf"^PREPARE\s+({_IDENT})\s+FROM\s+(.+)$", flags), self._prepare),
            (re.compile(rf"^DEALLOCATE\s+PREPARE\s+({_IDENT})$", flags), self._deallocate),
            (
                re.compile(r"^EXECUTE\s+IMMEDIATE\s+('(?:[^']|'')*')(?:\s+USING\s+(.+))?$", flags),
                self._execute_immediate,
            ),
            (re.compile(rf"^EXECUTE\s+({_IDENT})(?:\s+USING\s+(.+))?$", flags), self._execute),
            (re.compile(rf"^DESCRIBE\s+OUTPUT\s+({_IDENT})$", flags), self._describe_output),
            (re.compile(rf"^DESCRIBE\s+INPUT\s+({_IDENT})$", flags), self._describe_input),
            (re.compile(r"^(START\s+TRANSACTION|BEGIN)\b.*$", flags), self._start_transaction),
            (re.compile(r"^(COMMIT|ROLLBACK)(\s+WORK)?$", flags), self._end_transaction),
            (re.compile(r"^SHOW\s+CATALOGS(?:\s+LIKE\s+'(.*)')?$", flags), self._show_catalogs),
            (
                re.compile(rf"^SHOW\s+SCHEMAS(?:\s+(?:FROM|IN)\s+({_IDENT}))?(?:\s+LIKE\s+'(.*)')?$", flags),
                self._show_schemas,
            ),
            (
                re.compile(rf"^SHOW\s+TABLES(?:\s+(?:FROM|IN)\s+({_NAME}))?(?:\s+LIKE\s+'(.*)')?$", flags),
                self._show_tables,
            ),
            (re.compile(rf"^(?:SHOW\s+COLUMNS\s+(?:FROM|IN)|DESCRIBE|DESC)\s+({_NAME})$", flags), self._show_columns),
            (re.compile(r"^SHOW\s+FUNCTIONS(?:\s+LIKE\s+'(.*)')?$", flags), self._show_functions),
            (re.compile(r"^EXPLAIN\s+ANALYZE\s+(?:VERBOSE\s+)?(?:\([^)]*\)\s*)?(.+)$", flags), self._explain_analyze),
            (re.compile(r"^EXPLAIN\s*(?:\(\s*((?:TYPE|FORMAT)\b[^)]*)\)\s*|\s)(.+)$", flags), self._explain),
            (re.compile(r"^CALL\s+system\s*\.\s*runtime\s*\.\s*kill_query\s*\((.*)\)$", flags), self._kill_query),
        ]

    # -- session statements ------------------------------------------------------------------
    def _use(self, match: re.Match[str], _: str) -> Plan:
        parts = _split_name(match.group(1))
        if len(parts) == 1:
            if not self.session.catalog:
                raise TrinoError("MISSING_CATALOG_NAME", "Catalog must be specified when session catalog is not set")
            parts = [self.session.catalog, parts[0]]
        if len(parts) != 2:
            raise TrinoError("SYNTAX_ERROR", f"line 1:5: invalid schema name {match.group(1)}")
        catalog_name, schema = parts
        self._require_schema(catalog_name, schema)
        return Plan(
            update_type="USE",
            static_columns=[],
            headers=[("X-Trino-Set-Catalog", catalog_name), ("X-Trino-Set-Schema", schema)],
        )

    def _set_session(self, match: re.Match[str], _: str) -> Plan:
        name = ".".join(_split_name(match.group(1)))
        if name not in SESSION_PROPERTIES and "." not in name:
            raise TrinoError("INVALID_SESSION_PROPERTY", f"Session property '{name}' does not exist")
        value = match.group(2).strip()
        literal = parse_trino(f"SELECT {value}").expressions[0]
        if isinstance(literal, exp.Literal | exp.Boolean):
            value = literal.name if not isinstance(literal, exp.Boolean) else str(literal.this).lower()
        return Plan(
            update_type="SET SESSION",
            static_columns=[],
            headers=[("X-Trino-Set-Session", f"{name}={quote(value, safe='')}")],
        )

    def _reset_session(self, match: re.Match[str], _: str) -> Plan:
        name = ".".join(_split_name(match.group(1)))
        return Plan(update_type="RESET SESSION", static_columns=[], headers=[("X-Trino-Clear-Session", name)])

    def _show_session(self, match: re.Match[str], _: str) -> Plan:
        rows = []
        for name, (default, type_name, description) in sorted(SESSION_PROPERTIES.items()):
            value = self.session.properties.get(name, default)
            rows.append([name, value, default, type_name, description])
        rows = _like(rows, match.group(1))
        return Plan(
            static_columns=[(c, "varchar") for c in ("Name", "Value", "Default", "Type", "Description")],
            static_rows=rows,
        )

    def _set_authorization(self, match: re.Match[str], _: str) -> Plan:
        user = match.group(1).strip().strip("'\"")
        return Plan(
            update_type="SET SESSION AUTHORIZATION",
            static_columns=[],
            headers=[("X-Trino-Set-Authorization-User", user)],
        )

    def _reset_authorization(self, match: re.Match[str], _: str) -> Plan:
        return Plan(
            update_type="RESET SESSION AUTHORIZATION",
            static_columns=[],
            headers=[("X-Trino-Reset-Authorization-User", "true")],
        )

    def _set_role(self, match: re.Match[str], _: str) -> Plan:
        role = identifier(match.group(1))
        where = identifier(match.group(2)) if match.group(2) else "system"
        value = role.upper() if role.upper() in ("ALL", "NONE") else f"ROLE{{{role}}}"
        return Plan(
            update_type="SET ROLE",
            static_columns=[],
            headers=[("X-Trino-Set-Role", f"{where}={quote(value, safe='')}")],
        )

    def _start_transaction(self, match: re.Match[str], _: str) -> Plan:
        if self.session.transaction_id:
            raise TrinoError("NOT_SUPPORTED", "Nested transactions not supported")
        return Plan(
            update_type="START TRANSACTION",
            static_columns=[],
            headers=[("X-Trino-Started-Transaction-Id", self.transactions.begin())],
        )

    def _end_transaction(self, match: re.Match[str], _: str) -> Plan:
        if not self.session.transaction_id:
            raise TrinoError("NOT_IN_TRANSACTION", "No transaction in progress")
        kind = match.group(1).upper()
        self.transactions.end(self.session.transaction_id, committed=kind == "COMMIT")
        return Plan(update_type=kind, static_columns=[], headers=[("X-Trino-Clear-Transaction-Id", "true")])

    # -- prepared statements -----------------------------------------------------------------
    def _prepare(self, match: re.Match[str], _: str) -> Plan:
        name, sql = identifier(match.group(1)), match.group(2).strip()
        parse_trino(sql)
        return Plan(
            update_type="PREPARE",
            static_columns=[],
            headers=[("X-Trino-Added-Prepare", f"{_form(name)}={_form(sql)}")],
        )

    def _deallocate(self, match: re.Match[str], _: str) -> Plan:
        name = identifier(match.group(1))
        self._prepared(name)
        return Plan(update_type="DEALLOCATE", static_columns=[], headers=[("X-Trino-Deallocated-Prepare", _form(name))])

    def _prepared(self, name: str) -> str:
        sql = self.session.prepared.get(name)
        if sql is None:
            raise TrinoError("NOT_FOUND", f"Prepared statement not found: {name}")
        return sql

    def _execute(self, match: re.Match[str], _: str) -> Plan:
        return self._bind(self._prepared(identifier(match.group(1))), match.group(2))

    def _execute_immediate(self, match: re.Match[str], _: str) -> Plan:
        sql = match.group(1)[1:-1].replace("''", "'")
        return self._bind(sql, match.group(2))

    def _bind(self, sql: str, using: str | None) -> Plan:
        values = parse_trino(f"SELECT {using}").expressions if using else []
        statement = parse_trino(sql)
        placeholders = list(statement.find_all(exp.Placeholder))
        if len(placeholders) != len(values):
            raise TrinoError(
                "GENERIC_USER_ERROR",
                f"Incorrect number of parameters: expected {len(placeholders)} but found {len(values)}",
            )
        for placeholder, value in zip(placeholders, values, strict=True):
            placeholder.replace(value.copy())
        return self.plan(statement.sql(dialect="trino"), nested=True)

    def _describe_output(self, match: re.Match[str], _: str) -> Plan:
        statement = parse_trino(self._prepared(identifier(match.group(1))))
        for placeholder in list(statement.find_all(exp.Placeholder)):
            placeholder.replace(exp.Null())
        inner = self._sql(statement)
        return Plan(describe_sql=inner.duckdb_sql, update_type=inner.update_type)

    def _describe_input(self, match: re.Match[str], _: str) -> Plan:
        statement = parse_trino(self._prepared(identifier(match.group(1))))
        count = len(list(statement.find_all(exp.Placeholder)))
        return Plan(
            static_columns=[("Position", "bigint"), ("Type", "varchar")],
            static_rows=[[i, "unknown"] for i in range(count)],
        )

    # -- metadata ----------------------------------------------------------------------------
    def _show_catalogs(self, match: re.Match[str], _: str) -> Plan:
        rows = _like([[c] for c in catalog.CATALOGS], match.group(1))
        return Plan(static_columns=[("Catalog", "varchar")], static_rows=rows)

    def _show_schemas(self, match: re.Match[str], _: str) -> Plan:
        catalog_name = identifier(match.group(1)) if match.group(1) else self._session_catalog()
        self._require_catalog(catalog_name)
        names = self.db.execute(
            "SELECT DISTINCT schema_name FROM duckdb_schemas() WHERE database_name = ? AND NOT internal ORDER BY 1",
            [catalog_name],
        ).fetchall()
        rows = [[n] for (n,) in names if n != "main"] + [["information_schema"]]
        return Plan(static_columns=[("Schema", "varchar")], static_rows=_like(sorted(rows), match.group(2)))

    def _show_tables(self, match: re.Match[str], _: str) -> Plan:
        catalog_name, schema = self._resolve_schema(_split_name(match.group(1)) if match.group(1) else [])
        self._require_schema(catalog_name, schema)
        names = self.db.execute(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = ? AND schema_name = ? "
            "UNION SELECT view_name FROM duckdb_views() WHERE database_name = ? AND schema_name = ? "
            "AND NOT internal ORDER BY 1",
            [catalog_name, schema, catalog_name, schema],
        ).fetchall()
        return Plan(static_columns=[("Table", "varchar")], static_rows=_like([[n] for (n,) in names], match.group(2)))

    def _show_columns(self, match: re.Match[str], _: str) -> Plan:
        catalog_name, schema, table = self._resolve_table(_split_name(match.group(1)))
        self._require_table(catalog_name, schema, table)
        description = self.db.execute(f'DESCRIBE "{catalog_name}"."{schema}"."{table}"').fetchall()
        from trinosim.types import trino_type

        shape = self.db.execute(f'SELECT * FROM "{catalog_name}"."{schema}"."{table}" LIMIT 0').description
        rows = [[row[0], trino_type(col[1]).name, "", ""] for row, col in zip(description, shape, strict=True)]
        return Plan(static_columns=[(c, "varchar") for c in ("Column", "Type", "Extra", "Comment")], static_rows=rows)

    def _show_functions(self, match: re.Match[str], _: str) -> Plan:
        names = self.db.execute(
            "SELECT DISTINCT function_name FROM duckdb_functions() WHERE function_type IN "
            "('scalar', 'aggregate', 'table') ORDER BY 1"
        ).fetchall()
        rows = [[n, "", "", "scalar", "true", ""] for (n,) in names]
        columns = ["Function", "Return Type", "Argument Types", "Function Type", "Deterministic", "Description"]
        return Plan(static_columns=[(c, "varchar") for c in columns], static_rows=_like(rows, match.group(1)))

    def _explain_analyze(self, match: re.Match[str], _: str) -> Plan:
        return self._duckdb_explain(self._sql(parse_trino(match.group(1))))

    def _explain(self, match: re.Match[str], _: str) -> Plan:
        options = plans.parse_options(match.group(1))
        statement = parse_trino(match.group(2))
        inner = self._sql(statement, reading=False)
        if inner.duckdb_sql is None:
            raise TrinoError("NOT_SUPPORTED", "EXPLAIN is supported for SQL statements only")
        if options.type == "VALIDATE":
            return Plan(static_columns=[("Valid", "boolean")], static_rows=[[True]])
        if not options.trino_shaped:
            return self._duckdb_explain(inner)
        cluster = plans.Cluster(
            tasks=self.tasks,
            join_distribution=self.session.properties.get("join_distribution_type", "AUTOMATIC"),
        )
        text = plans.explain(self.db, statement, inner.duckdb_sql, options, cluster)
        return Plan(static_columns=[("Query Plan", "varchar")], static_rows=[[text]])

    def _duckdb_explain(self, inner: Plan) -> Plan:
        """EXPLAIN's text formats (and EXPLAIN ANALYZE, which runs nothing here): DuckDB's own plan."""
        if inner.duckdb_sql is None:
            raise TrinoError("NOT_SUPPORTED", "EXPLAIN is supported for SQL statements only")
        try:
            lines = self.db.execute(f"EXPLAIN {inner.duckdb_sql}").fetchall()
        except duckdb.Error as exc:
            from trinosim.errors import from_duckdb

            raise from_duckdb(exc) from None
        text = "\n".join(str(row[-1]) for row in lines)
        return Plan(static_columns=[("Query Plan", "varchar")], static_rows=[[text]])

    def _kill_query(self, match: re.Match[str], _: str) -> Plan:
        args = re.findall(r"'((?:[^']|'')*)'", match.group(1))
        if not args:
            raise TrinoError("INVALID_FUNCTION_ARGUMENT", "query_id must be given")
        return Plan(
            update_type="CALL",
            static_columns=[],
            kill_query_id=args[0],
            kill_message=args[1] if len(args) > 1 else None,
        )

    # -- names -------------------------------------------------------------------------------
    def _session_catalog(self) -> str:
        if not self.session.catalog:
            raise TrinoError("MISSING_CATALOG_NAME", "Catalog must be specified when session catalog is not set")
        return self.session.catalog

    def _resolve_schema(self, parts: list[str]) -> tuple[str, str]:
        if len(parts) == 2:
            return parts[0], parts[1]
        if len(parts) == 1:
            return self._session_catalog(), parts[0]
        if not self.session.schema:
            raise TrinoError("MISSING_SCHEMA_NAME", "Schema must be specified when session schema is not set")
        return self._session_catalog(), self.session.schema

    def _resolve_table(self, parts: list[str]) -> tuple[str, str, str]:
        if len(parts) == 3:
            return parts[0], parts[1], parts[2]
        catalog_name, schema = self._resolve_schema(parts[:-1])
        return catalog_name, schema, parts[-1]

    def _require_catalog(self, catalog_name: str) -> None:
        if catalog_name not in catalog.CATALOGS:
            raise TrinoError("CATALOG_NOT_FOUND", f"Catalog '{catalog_name}' not found")

    def _require_schema(self, catalog_name: str, schema: str) -> None:
        self._require_catalog(catalog_name)
        if not catalog.schema_exists(self.db, catalog_name, schema):
            raise TrinoError("SCHEMA_NOT_FOUND", f"Schema '{catalog_name}.{schema}' does not exist")

    def _require_table(self, catalog_name: str, schema: str, table: str) -> None:
        self._require_schema(catalog_name, schema)
        if not catalog.table_exists(self.db, catalog_name, schema, table):
            raise TrinoError("TABLE_NOT_FOUND", f"Table '{catalog_name}.{schema}.{table}' does not exist")

    # -- SQL statements ----------------------------------------------------------------------
    def _sql(self, statement: exp.Expression, reading: bool = True) -> Plan:
        """The statement as DuckDB SQL. ``reading``: it is to run, so it may not read what trinosim
        only plans (TPC-H tables at scale factors other than tiny); EXPLAIN passes False."""
        update_type, counts_rows = _statement_kind(statement)
        self._qualify_tables(statement)
        if reading:
            _refuse_scaled_reads(statement)
        self._session_functions(statement)
        _name_columns(statement)
        _decimal_literals(statement)
        try:
            sql = statement.sql(dialect="duckdb")
        except SqlglotError as error:
            raise TrinoError("NOT_SUPPORTED", str(error)) from None
        return Plan(duckdb_sql=sql, update_type=update_type, counts_rows=counts_rows)

    def _qualify_tables(self, statement: exp.Expression) -> None:
        kind = (statement.args.get("kind") or "").upper() if isinstance(statement, exp.Create | exp.Drop) else ""
        if kind == "SCHEMA":
            self._qualify_schema(statement)
            return
        ctes = {cte.alias_or_name.lower() for cte in statement.find_all(exp.CTE)}
        target = statement.this if isinstance(statement, exp.Create) else None
        if isinstance(target, exp.Schema):  # CREATE TABLE t (columns...)
            target = target.this
        may_be_missing = isinstance(statement, exp.Drop) and statement.args.get("exists")
        for table in list(statement.find_all(exp.Table)):
            if not table.name or isinstance(table.this, exp.Func):
                continue
            parts = [_part(table.args.get(k)) for k in ("catalog", "db", "this")]
            names = [p for p in parts if p]
            if len(names) == 1 and names[0] in ctes:
                continue
            if len(names) > 1 and names[-2] == "information_schema":
                continue
            catalog_name, schema, name = self._resolve_table(names)
            table.set("catalog", exp.to_identifier(catalog.in_duckdb(catalog_name), quoted=True))
            table.set("db", exp.to_identifier(schema, quoted=True))
            table.set("this", exp.to_identifier(name, quoted=True))
            if table is target:
                self._require_schema(catalog_name, schema)
                if catalog.table_exists(self.db, catalog_name, schema, name) and not statement.args.get("exists"):
                    raise TrinoError("TABLE_ALREADY_EXISTS", f"Table '{catalog_name}.{schema}.{name}' already exists")
            elif not may_be_missing:
                self._require_table(catalog_name, schema, name)

    def _qualify_schema(self, statement: exp.Expression) -> None:
        table = statement.this
        names = [p for p in (_part(table.args.get("db")), _part(table.args.get("this"))) if p]
        catalog_name, schema = self._resolve_schema(names)
        self._require_catalog(catalog_name)
        table.set("db", exp.to_identifier(catalog_name, quoted=True))
        table.set("this", exp.to_identifier(schema, quoted=True))

    def _session_functions(self, statement: exp.Expression) -> None:
        replacements: dict[type, str | None] = {
            exp.CurrentUser: self.session.user,
            exp.CurrentCatalog: self.session.catalog,
        }
        for node in list(statement.walk()):
            value = replacements.get(type(node), False)
            if value is not False:
                node.replace(exp.Literal.string(value) if value is not None else exp.Null())
            elif (
                isinstance(node, exp.Column)
                and not node.table
                and node.name.lower() == "current_schema"
                and not node.this.quoted
            ):
                node.replace(exp.Literal.string(self.session.schema) if self.session.schema else exp.Null())


def _refuse_scaled_reads(statement: exp.Expression) -> None:
    """trinosim holds tpch's rows at scale factor tiny only: the other schemas' tables are views of
    tiny's, which EXPLAIN plans at their own scale, but reading them would give tiny's rows."""
    for table in statement.find_all(exp.Table):
        if table.catalog and table.db and catalog.is_scaled_tpch(table.catalog, table.db, table.name):
            raise TrinoError(
                "NOT_SUPPORTED",
                f"trinosim holds the rows of tpch.tiny only: {table.catalog}.{table.db}.{table.name} "
                "can be explained (EXPLAIN estimates it at its scale factor), not read",
            )


def _part(node: exp.Expression | None) -> str | None:
    """A name part as Trino resolves it: unquoted identifiers are lower-cased."""
    if node is None:
        return None
    if isinstance(node, exp.Identifier):
        return node.this if node.quoted else node.this.lower()
    return node.name.lower()


def _statement_kind(statement: exp.Expression) -> tuple[str | None, bool]:
    """Trino's ``updateType`` for a statement, and whether it reports a row count."""
    if isinstance(statement, exp.Query | exp.Values):
        return None, False
    if isinstance(statement, exp.Insert):
        return "INSERT", True
    if isinstance(statement, exp.Delete):
        return "DELETE", True
    if isinstance(statement, exp.Update):
        return "UPDATE", True
    if isinstance(statement, exp.Merge):
        return "MERGE", True
    if isinstance(statement, exp.Create):
        kind = (statement.args.get("kind") or "TABLE").upper()
        as_select = kind == "TABLE" and isinstance(statement.expression, exp.Query)
        return f"CREATE {kind}", as_select
    if isinstance(statement, exp.Drop):
        return f"DROP {(statement.args.get('kind') or 'TABLE').upper()}", False
    if isinstance(statement, exp.Alter):
        return "ALTER TABLE", False
    raise TrinoError("NOT_SUPPORTED", f"trinosim does not support this statement: {statement.sql()[:80]}")


def _name_columns(statement: exp.Expression) -> None:
    """Trino names an output column that is neither a column nor aliased ``_col<position>``."""
    select = statement
    while isinstance(select, exp.SetOperation):
        select = select.this
    if not isinstance(select, exp.Select):
        return
    for position, projection in enumerate(list(select.expressions)):
        if not isinstance(projection, exp.Alias | exp.Column | exp.Star):
            projection.replace(exp.alias_(projection.copy(), f"_col{position}", quoted=True))


def _decimal_literals(statement: exp.Expression) -> None:
    """``DECIMAL '12.34'`` is decimal(4,2) in Trino, not DuckDB's default decimal(18,3)."""
    for cast in list(statement.find_all(exp.Cast)):
        target = cast.to
        literal = cast.this
        if (
            target.this == exp.DataType.Type.DECIMAL
            and not target.expressions
            and isinstance(literal, exp.Literal)
            and literal.is_string
        ):
            digits = literal.name.strip().lstrip("+-")
            whole, _, fraction = digits.partition(".")
            precision = max(1, len(whole.lstrip("0")) + len(fraction))
            cast.set("to", exp.DataType.build(f"DECIMAL({max(precision, len(fraction), 1)},{len(fraction)})"))


def _like(rows: list[list[Any]], pattern: str | None) -> list[list[Any]]:
    if pattern is None:
        return rows
    regex = re.compile("^" + re.escape(pattern).replace("%", ".*").replace("_", ".") + "$", re.DOTALL)
    return [r for r in rows if regex.match(str(r[0]))]


def is_explain(sql: str) -> bool:
    """Whether ``sql`` is an EXPLAIN that only plans its statement (not EXPLAIN ANALYZE, which runs it)."""
    return re.match(r"^EXPLAIN\b(?!\s+ANALYZE\b)", _strip_comments(sql), re.IGNORECASE) is not None


def _strip_comments(sql: str) -> str:
    """Leading ``--`` and ``/* */`` comments, which the statement patterns would trip over."""
    while True:
        stripped = sql.lstrip()
        if stripped.startswith("--"):
            sql = stripped.split("\n", 1)[1] if "\n" in stripped else ""
        elif stripped.startswith("/*") and "*/" in stripped:
            sql = stripped.split("*/", 1)[1]
        else:
            return stripped


def _form(text: str) -> str:
    """Form-encode like Java's URLEncoder, which Trino uses: it leaves ``*`` as it is."""
    return quote_plus(text, safe="*")
