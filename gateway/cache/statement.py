"""Which statements the result cache may answer, and their normalised text.

The cache answers a query again without a cluster, so it must only ever hold answers that the same
query, sent again, would give. It is fail-closed: a statement is cached only when every part of it is
known to be safe, and anything this module does not recognise is never cached.

Cached: one read-only query, that is a ``SELECT``, ``WITH ... SELECT``, a set operation (``UNION``,
``INTERSECT``, ``EXCEPT``), ``VALUES`` or ``TABLE t``, built of tables, literals, operators, casts,
lambdas and functions whose result follows from their arguments alone.

Never cached, with the reason (``why_not``) operators read in the query history:

- what sqlglot cannot read as Trino SQL ("cannot be parsed"), and none or several statements ("not one
  statement");
- anything but a query ("not a query (INSERT)"): writes, DDL, ``SHOW``, ``EXPLAIN``, ``DESCRIBE``,
  ``CALL``, ``SET``, ``USE``, ``PREPARE``/``EXECUTE``, transactions, and ``SELECT ... INTO``;
- what changes with the clock ("depends on the time: current_date"): ``now()``,
  ``current_timestamp``, ``current_date``, ``current_time``, ``localtime``, ``localtimestamp``;
- what changes from one call to the next ("non-deterministic: random()"): ``random()``/``rand()``,
  ``uuid()``, ``shuffle()``, and ``TABLESAMPLE`` ("samples rows at random: TABLESAMPLE");
- what depends on who asks ("depends on the caller: current_user"): ``current_user``,
  ``current_role``, ``current_groups()``, ``current_catalog``, ``current_schema``, ``current_path``,
  ``current_timezone()``; and ``version()``, which depends on the cluster that answers;
- a function sqlglot does not model and that is not on this module's list of deterministic Trino
  functions ("unknown function: foo()"), a function named with its catalog and schema (a user's
  function, whose body is not known here: "unknown function: example.udf.f()"), a function the query defines
  ("defines a function: f()", ``WITH FUNCTION``), and table functions ("calls a table function",
  ``TABLE(...)``);
- tables whose contents change without a write to them: the ``system`` catalog ("reads
  system.runtime.queries") and any ``information_schema`` ("reads information_schema"), which follow
  the queries running and every DDL. A two-part name whose schema is one of the system catalog's
  (``runtime``, ``metadata``, ``jdbc``) reads it when the session's catalog is ``system``, which is not
  known here: those are never cached either ("may read the system catalog: runtime.nodes");
- a parameter ("has a parameter: ?"): its value is not in the text.

Normalised: parsed as Trino SQL and written again with every identifier quoted, so that case
(keywords; identifiers, which Trino folds whether quoted or not), quotes, whitespace and comments do
not tell two statements apart. Literals are kept as written: ``WHERE name = 'ABC'`` and ``'abc'`` are
two statements. The text alone does not make a key: what the session decides (the user, the catalog
and schema that one- and two-part names resolve in, the time zone, session properties) belongs in the
key, and so does a one-part name's session catalog being ``system``; the caller also bounds the size
of what it passes here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlglot import exp

from gateway.routing.estimates.statement import normalise, parse_statements

UNPARSED = "cannot be parsed"
NOT_ONE = "not one statement"
READS_INFORMATION_SCHEMA = "reads information_schema"
TABLESAMPLE = "samples rows at random: TABLESAMPLE"
TABLE_FUNCTION = "calls a table function"
PARAMETER = "has a parameter: ?"

_TIME = "depends on the time"
_RANDOM = "non-deterministic"
_CALLER = "depends on the caller"
_CLUSTER = "depends on the cluster"

# sqlglot's classes for the functions whose result is not given by their arguments, with the name a
# Trino user knows them by. By class name, so that a class another sqlglot version lacks costs nothing.
_REFUSED_CLASSES: dict[str, tuple[str, str]] = {
    "CurrentTimestamp": (_TIME, "now()/current_timestamp"),
    "CurrentTimestampLTZ": (_TIME, "current_timestamp"),
    "CurrentDatetime": (_TIME, "current_timestamp"),
    "CurrentDate": (_TIME, "current_date"),
    "CurrentTime": (_TIME, "current_time"),
    "Localtime": (_TIME, "localtime"),
    "Localtimestamp": (_TIME, "localtimestamp"),
    "Systimestamp": (_TIME, "systimestamp"),
    "Rand": (_RANDOM, "random()"),
    "Randn": (_RANDOM, "randn()"),
    "Randstr": (_RANDOM, "randstr()"),
    "Uuid": (_RANDOM, "uuid()"),
    "Shuffle": (_RANDOM, "shuffle()"),
    "NextValueFor": (_RANDOM, "next value for"),
    "CurrentUser": (_CALLER, "current_user"),
    "SessionUser": (_CALLER, "session_user"),
    "CurrentRole": (_CALLER, "current_role"),
    "CurrentCatalog": (_CALLER, "current_catalog"),
    "CurrentSchema": (_CALLER, "current_schema"),
    "CurrentTimezone": (_CALLER, "current_timezone()"),
    "SessionParameter": (_CALLER, "a session parameter"),
    "CurrentVersion": (_CLUSTER, "version()"),
}

# Trino's CURRENT_SCHEMA, CURRENT_PATH and CURRENT_ROLE are reserved words, yet sqlglot reads them,
# unquoted and unqualified, as a column: there they are the functions. Quoted, they are columns.
_CALLER_WORDS = {
    "current_schema",
    "current_path",
    "current_role",
    "current_catalog",
    "current_user",
}

# Functions sqlglot does not model (exp.Anonymous) that are refused for a known reason rather than as
# unknown, so that the reason names it.
_REFUSED_NAMES: dict[str, tuple[str, str]] = {
    "current_groups": (_CALLER, "current_groups()"),
    "current_timezone": (_CALLER, "current_timezone()"),
    "now": (_TIME, "now()"),
    "random": (_RANDOM, "random()"),
    "rand": (_RANDOM, "rand()"),
    "uuid": (_RANDOM, "uuid()"),
    "shuffle": (_RANDOM, "shuffle()"),
}

# Trino scalar and aggregate functions that sqlglot keeps as exp.Anonymous (it does not model them)
# and whose result follows from their arguments alone (the session's time zone and language, which
# some of them read, are in the cache key). Only these unknown functions are cached; a function that
# sqlglot models is cached unless it is refused above. tests/cache/test_statement.py checks that each
# still parses as a plain function.
DETERMINISTIC_FUNCTIONS: frozenset[str] = frozenset(
    {
        # dates and times
        "at_timezone",
        "with_timezone",
        "format_datetime",
        "to_iso8601",
        "to_milliseconds",
        "from_unixtime_nanos",
        "human_readable_seconds",
        "parse_duration",
        "millisecond",
        "timezone_hour",
        "timezone_minute",
        "yow",
        # strings
        "codepoint",
        "hamming_distance",
        "luhn_check",
        "word_stem",
        "strrev",
        "split_to_multimap",
        "regexp_position",
        "format_number",
        "parse_data_size",
        # URLs
        "url_extract_host",
        "url_extract_path",
        "url_extract_parameter",
        "url_extract_protocol",
        "url_extract_port",
        "url_extract_query",
        "url_extract_fragment",
        "url_encode",
        "url_decode",
        # JSON
        "json_exists",
        "json_array_length",
        "json_array_get",
        "json_size",
        "is_json_scalar",
        # arrays and maps
        "array_union",
        "arrays_overlap",
        "combinations",
        "contains_sequence",
        "ngrams",
        "trim_array",
        "zip",
        "zip_with",
        "any_match",
        "all_match",
        "none_match",
        "array_frequency",
        "array_histogram",
        "map_concat",
        "map_entries",
        "map_filter",
        "map_values",
        "map_zip_with",
        "map_from_arrays",
        "transform_keys",
        "transform_values",
        "multimap_from_entries",
        # mathematics and bits
        "e",
        "infinity",
        "nan",
        "is_finite",
        "is_infinite",
        "to_base",
        "bit_count",
        "bitwise_left_shift",
        "bitwise_right_shift",
        "cosine_similarity",
        "normal_cdf",
        "inverse_normal_cdf",
        "beta_cdf",
        "inverse_beta_cdf",
        "wilson_interval_lower",
        "wilson_interval_upper",
        # hashes and encodings
        "xxhash64",
        "crc32",
        "murmur3",
        "spooky_hash_v2_32",
        "spooky_hash_v2_64",
        "hmac_md5",
        "hmac_sha1",
        "hmac_sha256",
        "hmac_sha512",
        "to_base64url",
        "from_base64url",
        "from_big_endian_32",
        "from_big_endian_64",
        "to_big_endian_32",
        "to_big_endian_64",
        "from_ieee754_32",
        "from_ieee754_64",
        "to_ieee754_32",
        "to_ieee754_64",
        # IP addresses
        "ip_prefix",
        "ip_subnet_min",
        "ip_subnet_max",
        "is_subnet_of",
        # aggregates (exact: the same rows give the same result in any order)
        "every",
        "checksum",
        "histogram",
        "map_agg",
        "multimap_agg",
        "geometric_mean",
    }
)

# The system catalog's schemas other than information_schema: under a session catalog of system, a
# two-part name in one of them reads it.
_SYSTEM_SCHEMAS = {"runtime", "metadata", "jdbc"}

# Statements nested in a query that make it something else (sqlglot reads ``SELECT ... INTO t``).
_NOT_READS: tuple[type[exp.Expression], ...] = (exp.DML, exp.DDL, exp.Command, exp.Into)


@dataclass(frozen=True, slots=True)
class Examined:
    """A statement's normalised text when the cache may answer it, else why it never does."""

    normalised: str | None
    why_not: str | None = None


def examine(sql: str) -> Examined:
    """Whether the cache may answer ``sql``, with its normalised text, or why not (never raises)."""
    try:
        return _examine(sql)
    except Exception:
        # Fail-closed: what sqlglot trips on while reading or writing the statement (a SqlglotError, a
        # RecursionError on deep nesting, a ValueError, or anything else) is not cached.
        return Examined(None, UNPARSED)


def _examine(sql: str) -> Examined:
    parsed = parse_statements(sql)  # (read as the estimates read it: one statement, one normalised text)
    if parsed is None:
        return Examined(None, UNPARSED)
    if len(parsed) != 1:
        return Examined(None, NOT_ONE)  # none, or several: Trino takes one statement at a time
    statement = parsed[0]
    if isinstance(statement, exp.Condition):
        return Examined(None, UNPARSED)  # a bare expression (``foo``, ``1 + 1``): sqlglot reads it, Trino does not
    if not isinstance(statement, (exp.Query, exp.Values)):
        return Examined(None, f"not a query ({_kind(statement)})")
    # A function the query defines may shadow a built-in one that is called as if it were known.
    udf = statement.find(exp.UserDefinedFunction)
    if udf is not None:
        return Examined(None, f"defines a function: {udf.this.name or '?'}()")
    for node in statement.walk():
        why_not = _refused(node)
        if why_not is not None:
            return Examined(None, why_not)
    return Examined(normalise(statement))


def _kind(statement: exp.Expression) -> str:
    """The statement's kind as its first keywords say it: INSERT, CREATE TABLE, SHOW, ..."""
    if isinstance(statement, exp.Command):
        return str(statement.this).upper()  # the keyword sqlglot kept: SHOW, EXPLAIN, CALL, EXECUTE, ...
    if isinstance(statement, exp.Transaction):
        return "START TRANSACTION"
    words = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", type(statement).__name__).upper()
    if isinstance(statement, (exp.Create, exp.Drop)) and statement.args.get("kind"):
        return f"{words} {str(statement.args['kind']).upper()}"
    return words


def _refused(node: exp.Expression) -> str | None:
    """Why this node keeps its statement out of the cache, or None when it does not."""
    if isinstance(node, _NOT_READS):
        return f"not a query ({'SELECT INTO' if isinstance(node, exp.Into) else _kind(node)})"
    if isinstance(node, exp.TableSample):
        return TABLESAMPLE
    if isinstance(node, (exp.Placeholder, exp.Parameter)):
        return PARAMETER
    if isinstance(node, exp.Table):
        return _refused_table(node)
    if isinstance(node, exp.Column):
        identifier = node.this
        if (
            not node.table
            and isinstance(identifier, exp.Identifier)
            and not identifier.quoted
            and identifier.name.lower() in _CALLER_WORDS
        ):
            return f"{_CALLER}: {identifier.name.lower()}"
        return None
    if isinstance(node, exp.Func):
        return _refused_function(node)
    return None


def _refused_function(node: exp.Func) -> str | None:
    parent = node.parent
    if isinstance(parent, exp.Dot) and parent.expression is node:
        # catalog.schema.f(): a function a user defined, whose body is not known here.
        return f"unknown function: {parent.sql(dialect='trino').split('(', 1)[0].lower()}()"
    name = type(node).__name__
    if isinstance(node, exp.Anonymous):
        function = str(node.this).lower()
        if function in DETERMINISTIC_FUNCTIONS:
            return None
        if function in _REFUSED_NAMES:
            reason, shown = _REFUSED_NAMES[function]
            return f"{reason}: {shown}"
        return f"unknown function: {function}()"
    if name in _REFUSED_CLASSES:
        reason, shown = _REFUSED_CLASSES[name]
        return f"{reason}: {shown}"
    # A class a later sqlglot adds for another engine's session or random function (CurrentWarehouse,
    # RandomString, ...) is refused by its name, without waiting for this list to learn it.
    if name.startswith(("Current", "Session", "Local")):
        return f"{_CALLER}: {node.sql_name().lower()}"
    if re.search("Rand|Uuid|Shuffle|Sample", name):
        return f"{_RANDOM}: {node.sql_name().lower()}()"
    return None


def _refused_table(table: exp.Table) -> str | None:
    if isinstance(table.this, exp.Func):
        return TABLE_FUNCTION  # TABLE(f(...)): what a table function returns is not known here
    if not isinstance(table.this, exp.Identifier):
        return f"not a table name: {table.sql(dialect='trino')}"
    catalog, schema, name = table.catalog.lower(), table.db.lower(), table.name.lower()
    if catalog == "system":
        return f"reads system.{schema}.{name}"
    if schema == "information_schema":
        return READS_INFORMATION_SCHEMA
    if not catalog and schema in _SYSTEM_SCHEMAS:
        return f"may read the system catalog: {schema}.{name}"
    return None
