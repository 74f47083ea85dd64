"""Running a plan on DuckDB and handing its result out page by page."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import duckdb

from trinosim.errors import TrinoError, from_duckdb
from trinosim.session import Session
from trinosim.statements import Plan
from trinosim.types import BIGINT, VARCHAR, TrinoType, column, row_encoder, trino_type

_STATIC_TYPES = {
    "varchar": VARCHAR,
    "bigint": BIGINT,
    "boolean": TrinoType("boolean", {"rawType": "boolean", "arguments": []}, None),
}


@dataclass
class Outcome:
    """A statement's result: its shape, and a blocking function that returns the next rows."""

    columns: list[dict[str, Any]]
    update_type: str | None = None
    update_count: int | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)
    fetch: Callable[[int], list[list[Any]]] = lambda _: []


def _rows_outcome(columns: list[dict[str, Any]], rows: list[list[Any]], **extra: Any) -> Outcome:
    remaining = list(rows)

    def fetch(limit: int) -> list[list[Any]]:
        page = remaining[:limit]
        del remaining[:limit]
        return page

    return Outcome(columns=columns, fetch=fetch, **extra)


def _static(plan: Plan) -> Outcome:
    columns = [column(name, _STATIC_TYPES[type_name]) for name, type_name in plan.static_columns or []]
    return _rows_outcome(columns, plan.static_rows, update_type=plan.update_type, headers=plan.headers)


def _set_session_context(cursor: duckdb.DuckDBPyConnection, session: Session) -> None:
    if session.time_zone:
        try:
            cursor.execute(f"SET TimeZone = '{session.time_zone.replace(chr(39), '')}'")
        except duckdb.Error:
            raise TrinoError("GENERIC_USER_ERROR", f"Time zone not supported: {session.time_zone}") from None


def execute(plan: Plan, cursor: duckdb.DuckDBPyConnection, session: Session) -> Outcome:
    """Run ``plan`` on ``cursor`` (blocking: call it from a worker thread)."""
    if plan.static_columns is not None:
        return _static(plan)
    try:
        _set_session_context(cursor, session)
        if plan.describe_sql is not None:
            return _describe(plan, cursor)
        assert plan.duckdb_sql is not None
        cursor.execute(plan.duckdb_sql)
        if plan.update_type is not None:
            if plan.counts_rows:
                row = cursor.fetchone()
                count = int(row[0]) if row else 0
                return _rows_outcome(
                    [column("rows", BIGINT)],
                    [[count]],
                    update_type=plan.update_type,
                    update_count=count,
                    headers=plan.headers,
                )
            return Outcome(columns=[], update_type=plan.update_type, headers=plan.headers)
        description = cursor.description or []
        types = [trino_type(d[1]) for d in description]
        encode = row_encoder(types)

        def fetch(limit: int) -> list[list[Any]]:
            try:
                return encode(cursor.fetchmany(limit))
            except duckdb.Error as exc:
                raise from_duckdb(exc) from None

        return Outcome(
            columns=[column(d[0], t) for d, t in zip(description, types, strict=True)],
            headers=plan.headers,
            fetch=fetch,
        )
    except duckdb.Error as exc:
        raise from_duckdb(exc) from None


def _describe(plan: Plan, cursor: duckdb.DuckDBPyConnection) -> Outcome:
    columns = [
        column("Column Name", VARCHAR),
        column("Catalog", VARCHAR),
        column("Schema", VARCHAR),
        column("Table", VARCHAR),
        column("Type", VARCHAR),
        column("Type Size", BIGINT),
        column("Aliased", _STATIC_TYPES["boolean"]),
    ]
    if plan.update_type is not None:
        return _rows_outcome(columns, [])
    cursor.execute(f"SELECT * FROM ({plan.describe_sql}) LIMIT 0")
    rows = [[d[0], "", "", "", trino_type(d[1]).name, 0, False] for d in cursor.description or []]
    return _rows_outcome(columns, rows)
