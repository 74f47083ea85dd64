"""A statement as the estimate cache knows it: normalised by sqlglot, and whether EXPLAIN can plan it.

Normalised: parsed as Trino SQL and written again (every identifier quoted), so that case (keywords;
identifiers, which Trino folds whether quoted or not), quotes, whitespace and comments do not tell two
statements apart. Literals
are kept as written: ``WHERE name = 'ABC'`` and ``'abc'`` are two statements, with two plans.

Explainable: a query (``SELECT``, ``WITH``, ``VALUES``, ``TABLE``, set operations), ``INSERT``,
``CREATE TABLE ... AS``, ``UPDATE``, ``DELETE`` and ``MERGE``: what Trino's EXPLAIN plans. Nothing else
is ever sent to the planner: DDL, ``SET``/``RESET SESSION``, ``USE``, a transaction's ``START``,
``COMMIT`` and ``ROLLBACK``, ``SHOW``, ``DESCRIBE``, ``EXPLAIN`` itself, ``CALL``, ``PREPARE`` and
``EXECUTE``, more than one statement, and what sqlglot cannot read.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError
from sqlglot.optimizer.normalize_identifiers import normalize_identifiers

from gateway.routing.estimates.estimate import NOT_EXPLAINABLE, UNPARSED

# sqlglot warns for every statement it keeps as text (SHOW, EXPLAIN, CALL, ...): expected here.
logging.getLogger("sqlglot").setLevel(logging.ERROR)

_PLANNED: tuple[type[exp.Expression], ...] = (exp.Query, exp.Values, exp.Insert, exp.Update, exp.Delete, exp.Merge)


@dataclass(frozen=True, slots=True)
class Statement:
    """A statement's normalised text (None when it cannot be explained, then ``why`` says why)."""

    normalised: str | None
    why: str | None = None


def parse_statements(sql: str) -> list[exp.Expression] | None:
    """The statements in ``sql`` as sqlglot reads Trino SQL (a trailing ``;`` or none); None when it
    cannot read them. Trino takes one at a time: a caller wants a list of one."""
    text = sql.strip().rstrip(";").strip()
    try:
        return [s for s in sqlglot.parse(text, read="trino", error_level=sqlglot.ErrorLevel.RAISE) if s is not None]
    except (SqlglotError, RecursionError, ValueError):
        return None


def normalise(statement: exp.Expression) -> str:
    """``statement`` written again as Trino SQL, every identifier folded and quoted, without comments:
    the form two texts of one statement share (raises what sqlglot raises on one it cannot write)."""
    return normalize_identifiers(statement, dialect="trino").sql(dialect="trino", comments=False, identify=True)


def read_statement(sql: str) -> Statement:
    """The statement in ``sql``, normalised, or why it is not explained (never raises)."""
    parsed = parse_statements(sql)
    if parsed is None:
        return Statement(None, UNPARSED)
    if len(parsed) != 1:
        return Statement(None, NOT_EXPLAINABLE)  # none, or several: Trino takes one statement at a time
    statement = parsed[0]
    if not _explainable(statement):
        return Statement(None, NOT_EXPLAINABLE)
    try:
        normalised = normalise(statement)
    except (SqlglotError, RecursionError, ValueError):
        return Statement(None, UNPARSED)
    return Statement(normalised)


def _explainable(statement: exp.Expression) -> bool:
    if isinstance(statement, exp.Create):
        # CREATE TABLE ... AS <query> is planned (a TableWriter); every other CREATE is DDL.
        return str(statement.args.get("kind") or "").upper() == "TABLE" and statement.expression is not None
    return isinstance(statement, _PLANNED)
